"""A Hugging Face text embedder through export: three int64 token inputs named identically in every format's manifest
and session, int64 recorded as int32 (logical int64) in TFLite, the tokenizer kept beside every file, the sequence
length dynamic on ONNX/OpenVINO and static on TFLite, the embedding validated by cosine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgestill.artifact import Artifact
from edgestill.chain.convert import export_model
from edgestill.export.api import ExportConfig
from edgestill.runtimes import RuntimeOptions, load

FORMATS = ("onnx", "openvino", "tflite")


@pytest.fixture(scope="module")
def tiny_embedder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgestill.models.hf import make_tiny_hf

    return make_tiny_hf(tmp_path_factory.mktemp("hf") / "embedder", task="embed", hidden=32, heads=2, intermediate=64,
                        max_position=32)


def test_text_embedder_exports_named_token_inputs_tokenizer_and_lengths(tmp_path: Path, tiny_embedder: Path) -> None:
    """A Hugging Face embedder with three int64 inputs: identical names everywhere, TFLite int32 with logical int64,
    the tokenizer copied beside each file under a relative name, a dynamic length on ONNX/OpenVINO only, and the
    cosine criterion (not top-1) in the parity report."""
    results = export_model(str(tiny_embedder), export=ExportConfig(formats=FORMATS, name="emb"), out_dir=tmp_path,
                           samples=8, seq_len=16, dynamic_seq=True)
    assert [r.passed for r in results] == [True] * 3, [r.error for r in results]
    names = ["input_ids", "attention_mask", "token_type_ids"]
    for r in results:
        art = Artifact.load(r.artifact.manifest_path)
        assert [s.name for s in art.inputs] == names
        assert [s.kind for s in art.inputs] == ["ids", "mask", "type_ids"]
        assert art.inputs[0].high == json.loads((tiny_embedder / "config.json").read_text())["vocab_size"]
        assert [s.name for s in load(art, RuntimeOptions(threads=1)).input_specs] == names
        text = art.source["text"]
        assert text["tokenizer"] == f"{art.name}.tokenizer.json" and "tokenizer_path" not in text
        assert (tmp_path / text["tokenizer"]).read_bytes() == (tiny_embedder / "tokenizer.json").read_bytes()
        assert text["tokenizer"] in art.files
        assert str(tiny_embedder) not in json.dumps({k: v for k, v in art.to_dict().items() if k != "source"})
        assert art.validation["criterion"] == "embedding cosine"
        assert art.validation["outputs"][0]["cosine_min"] >= 0.9999
        assert r.to_dict()["top1_agreement"] is None and r.to_dict()["cosine_min"] >= 0.9999  # top-1 of an embedding: none
        dynamic = r.format != "tflite"
        assert text["dynamic_length"] is dynamic
        assert all((s.shape[1] == "seq") is dynamic for s in art.inputs)
        if r.format == "tflite":
            assert [(s.dtype, s.logical_dtype) for s in art.inputs] == [("int32", "int64")] * 3
            assert all(s.shape == (1, 16) for s in art.inputs)
        session = load(art)
        length = 16 if r.format == "tflite" else 9  # a dynamic file takes a shorter text as it is
        feed = {"input_ids": np.full((1, length), 5, np.int64), "attention_mask": np.ones((1, length), np.int64),
                "token_type_ids": np.zeros((1, length), np.int64)}
        assert session.run(feed)[art.outputs[0].name].shape == (1, 32)
