"""OpenVINO int8-static (NNCF, transformer type) of a small *trained* text classifier stays close to fp32.

Regression: a trained 1-layer BERT (hidden 128, sequence 24: the every-other student of a 2-layer teacher in a text
recipe) quantized with both inputs of its attention-score
MatMuls (Q @ K^T) in int8 gave garbage once written to an IR and run at f32 inference precision (SQNR about 0-2 dB,
top-1 42-80% against 100% for fp32), even with every Linear layer kept float. quantize_openvino keeps those MatMuls
float (manifest: quantization.float_attention_scores)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("nncf")

SEQ = 24


@pytest.mark.parametrize("layers", [1, 2])
def test_trained_classifier_openvino_int8_static_matches_fp32(tmp_path, layers):
    from edgestill.artifact import TensorSpec
    from edgestill.compress.distill.text import TextDistillConfig, train_text
    from edgestill.compress.quantize import QuantizeConfig, quantize
    from edgestill.data.text import encode_texts, generated_texts
    from edgestill.models.hf import load_hf_model, make_tiny_hf

    folder = make_tiny_hf(tmp_path / "bert", task="classify", layers=layers, hidden=128, heads=4, intermediate=256,
                          num_labels=4, max_position=64, seed=0)
    train = generated_texts(300, seed=0)
    train_text(folder, train.texts, train.labels, TextDistillConfig(task="classify", epochs=4, lr=0.005, batch_size=16,
                                                                    max_length=SEQ, alpha=1.0), tmp_path / "t")
    loaded = load_hf_model(tmp_path / "t" / "model", seq_len=SEQ)
    names = [s.name for s in loaded.input_shapes]
    specs = tuple(TensorSpec(name=s.name, shape=tuple(s.dims), dtype=s.dtype, kind=s.kind,
                             high=s.high if s.kind == "ids" else None) for s in loaded.input_shapes)

    def encoded(n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        t = generated_texts(n, seed=seed)
        return encode_texts(loaded.source["text"]["tokenizer_path"], t.texts, max_length=SEQ, input_names=names,
                            truncate=True), t.labels

    calib, _ = encoded(64, 1)
    eval_x, eval_y = encoded(60, 2)
    cfg = QuantizeConfig(formats=("openvino",), precision="int8-static", bench_latency=False, name="m",
                         max_accuracy_drop=2.0)
    report = quantize(loaded.model, loaded.example_inputs, cfg, tmp_path / "out", calibration=calib, eval_x=eval_x,
                      eval_y=eval_y, input_specs=specs, task="classify", source=loaded.source)
    (res,) = report.formats
    naive = res.attempts[0]
    assert naive.label == "naive" and naive.float_layers == ()
    assert naive.drop_points <= 2.0 and naive.sqnr_db is not None and naive.sqnr_db >= 20.0, res.to_dict()
    assert res.passed, res.to_dict()
    man = json.loads(res.artifact.manifest_path.read_text())
    assert man["quantization"]["model_type"] == "transformer"
    assert man["quantization"]["float_attention_scores"], man["quantization"]
