"""Models with several, named, typed inputs through export: a factory's names identical in every format's manifest and
session, validation on a named NPZ (one array per input) and its bad inputs; per-sample cosine for embeddings."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgestill.artifact import Artifact
from edgestill.export.validate import Tolerances, check_parity, compare_output
from edgestill.chain.convert import export_model
from edgestill.errors import InputError
from edgestill.export.api import ExportConfig
from edgestill.models.loading import parse_input_spec
from edgestill.runtimes import RuntimeOptions, load

FORMATS = ("onnx", "openvino", "tflite")


class ImageAndIds(torch.nn.Module):
    """A float image and token ids per sample (e.g. a camera frame and a prompt)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.embed = torch.nn.Embedding(10, 4)
        self.head = torch.nn.Linear(4, 5)

    def forward(self, image: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        pooled = self.conv(image).mean(dim=(2, 3))
        return self.head(pooled + self.embed(input_ids).mean(dim=1))


def image_and_ids() -> torch.nn.Module:
    torch.manual_seed(0)
    return ImageAndIds().eval()


@pytest.fixture(scope="module")
def tiny_embedder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgestill.models.hf import make_tiny_hf

    return make_tiny_hf(tmp_path_factory.mktemp("hf") / "embedder", task="embed", hidden=32, heads=2, intermediate=64,
                        max_position=32)


def _session_names(art: Artifact) -> list[str]:
    return [s.name for s in load(art, RuntimeOptions(threads=1)).input_specs]


def test_factory_with_an_image_and_ids_keeps_both_names_in_every_format(tmp_path: Path) -> None:
    """Inputs given in another order than the forward's are matched by name; every manifest and session names them
    image and input_ids (no args_0, serving_default_args_1 or port numbers); random ids stay in the vocabulary."""
    shapes = [parse_input_spec("input_ids:1x6:int64", vocab_size=10), parse_input_spec("image:1x3x8x8")]
    results = export_model("tests.export.test_multi_input:image_and_ids", export=ExportConfig(formats=FORMATS, name="two"),
                           out_dir=tmp_path, input_shape=shapes, samples=8)
    assert [r.passed for r in results] == [True] * 3
    for r in results:
        manifest = json.loads(r.artifact.manifest_path.read_text())
        assert [i["name"] for i in manifest["inputs"]] == ["image", "input_ids"], r.name
        assert [(i["kind"], i.get("high")) for i in manifest["inputs"]] == [("float", None), ("ids", 10)]
        assert _session_names(r.artifact) == ["image", "input_ids"]
        out = load(r.artifact).run({"image": np.zeros((1, 3, 8, 8), np.float32), "input_ids": np.array([[1, 2, 3, 4, 5, 6]])})
        assert next(iter(out.values())).shape == (1, 5)


def test_export_api_names_several_inputs_after_the_forward(tmp_path: Path) -> None:
    """export() called without input specs: a model with two inputs keeps its forward's parameter names in OpenVINO
    and TFLite too (which would otherwise call them by port number and args_0/args_1), with kinds inferred."""
    from edgestill.export.api import export

    model = image_and_ids()
    example = (torch.zeros(1, 3, 8, 8), torch.ones(1, 6, dtype=torch.int64))
    samples = [np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32), np.ones((4, 6), np.int64)]
    results = export(model, example, ExportConfig(formats=("openvino", "tflite"), name="api"), tmp_path,
                     validation_inputs=samples)
    for r in results:
        assert [(s.name, s.kind) for s in r.artifact.inputs] == [("image", "float"), ("input_ids", "ids")], r.name
        assert _session_names(r.artifact) == ["image", "input_ids"]


def test_named_npz_validates_and_a_missing_or_uneven_array_is_refused(tmp_path: Path, tiny_embedder: Path) -> None:
    """Validation on a named NPZ (one array per input); bad inputs: an NPZ missing token_type_ids (the message names
    the missing and the present arrays), arrays with different N, ids outside the vocabulary."""
    rng = np.random.default_rng(0)
    n, length = 6, 16
    ids = rng.integers(0, 50, (n, length))
    mask = np.ones((n, length), np.int64)
    mask[:, 10:] = 0
    good = tmp_path / "tokens.npz"
    np.savez(good, input_ids=ids, attention_mask=mask, token_type_ids=np.zeros((n, length), np.int64))
    results = export_model(str(tiny_embedder), export=ExportConfig(formats=("onnx",), name="npz"), out_dir=tmp_path / "ok",
                           data=good, samples=4, seq_len=length)
    assert results[0].passed and results[0].report.n_samples == 4

    missing = tmp_path / "missing.npz"
    np.savez(missing, input_ids=ids, attention_mask=mask)
    with pytest.raises(InputError, match=r"no array named 'token_type_ids'.*\['attention_mask', 'input_ids'\]"):
        export_model(str(tiny_embedder), export=ExportConfig(formats=("onnx",)), out_dir=tmp_path / "a", data=missing,
                     seq_len=length)
    uneven = tmp_path / "uneven.npz"
    np.savez(uneven, input_ids=ids, attention_mask=mask[:4], token_type_ids=np.zeros((n, length), np.int64))
    with pytest.raises(InputError, match="different numbers of samples"):
        export_model(str(tiny_embedder), export=ExportConfig(formats=("onnx",)), out_dir=tmp_path / "b", data=uneven,
                     seq_len=length)
    outside = tmp_path / "outside.npz"
    np.savez(outside, input_ids=ids + 10_000, attention_mask=mask, token_type_ids=np.zeros((n, length), np.int64))
    with pytest.raises(InputError, match="vocabulary"):
        export_model(str(tiny_embedder), export=ExportConfig(formats=("onnx",)), out_dir=tmp_path / "c", data=outside,
                     seq_len=length)
    assert not any((tmp_path / d).exists() for d in "abc")


def test_an_embedding_is_judged_by_its_worst_samples_cosine_not_top1() -> None:
    """One sample's embedding pointing elsewhere fails the fp32 cosine bound though the whole-output cosine stays high;
    the same output as an embedding has no top-1 verdict (argmax of an embedding means nothing)."""
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((50, 16))
    got = ref.copy()
    got[7] = -ref[7] * 0.01  # a small, wrong vector: barely changes the overall cosine
    p = compare_output("embedding", got, ref)
    assert p.cosine > 0.99 and p.cosine_min < 0 and p.cosine_mean > 0.95
    fails = check_parity(p, float(np.abs(ref).max()), dataclasses.replace(Tolerances().fp32, atol=None), embedding=True)
    assert [f["metric"] for f in fails] == ["embedding_cosine_min"]
    near = compare_output("embedding", ref + 1e-7, ref)
    assert check_parity(near, float(np.abs(ref).max()), Tolerances().fp32, embedding=True) == []
    shuffled = compare_output("embedding", ref[:, ::-1].copy(), ref)  # top-1 changes everywhere: ignored for embeddings
    assert "top1_agreement" not in [f["metric"] for f in check_parity(shuffled, 10.0, Tolerances().fp32, embedding=True)]

