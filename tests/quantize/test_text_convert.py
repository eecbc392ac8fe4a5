"""int8 cells of a text model through the one export path (``edgestill.chain.convert``): a Hugging Face embedder's
cells in all three formats publish with their budget facts (cosine to fp32), calibrated on random inputs that respect
each input's meaning, each carrying its tokenizer beside the fp32 file's."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

from edgestill.chain.convert import export_model  # noqa: E402
from edgestill.compress.quantize import QuantizeConfig  # noqa: E402
from edgestill.export.api import ExportConfig  # noqa: E402
from tests.quantize.text_models import SEQ, tiny_folder  # noqa: E402


def test_embedder_int8_cells_in_every_format(tmp_path):
    """fp32 + int8-static (OpenVINO's NNCF transformer route, static QDQ on onnx, PT2E on TFLite): every int8 cell
    is judged by the mean cosine of its embeddings to the fp32 file's, passes, and is published with the tokenizer."""
    folder = tiny_folder(tmp_path, "embed")
    out = tmp_path / "out"
    results = export_model(str(folder), export=ExportConfig(formats=("onnx", "openvino", "tflite"),
                                                             precisions=("fp32", "int8-static"), name="e"),
                           quantize=QuantizeConfig(calibration_samples=32), out_dir=out, seq_len=SEQ, samples=32)
    int8 = [r for r in results if r.precision not in ("fp32", "fp16")]
    assert len(int8) == 3 and all(r.passed for r in results), [r.error for r in results if not r.passed]
    for r in int8:
        facts = r.quantization
        assert facts["metric"] == "mean_cosine_to_fp32" and facts["budget"] == 0.99 and facts["accuracy"] >= 0.99
        assert any("embedder" in n for n in r.notes) and any("random inputs" in n for n in r.notes)
        man = json.loads(r.artifact.manifest_path.read_text())
        assert man["source"]["text"]["task"] == "embed" and (out / man["source"]["text"]["tokenizer"]).is_file()
        assert man["calibration"]["n"] > 0 and [s["kind"] for s in man["inputs"]][:2] == ["ids", "mask"]
        assert r.report is not None and r.report.passed
    ov = json.loads(next(r for r in int8 if r.format == "openvino").artifact.manifest_path.read_text())
    assert ov["quantization"]["model_type"] == "transformer"


def test_int8_asks_each_format_its_own_text_route(tmp_path):
    """export.precisions "int8" (what `edgestill export --precision fp32,int8` and a recipe ask) resolves per format for
    a text model: onnx int8-dynamic, OpenVINO int8-static (NNCF, transformer type), TFLite int8-dynamic; each cell's
    manifest records the route it chose and why."""
    folder = tiny_folder(tmp_path, "classify")
    out = tmp_path / "out"
    results = export_model(str(folder), export=ExportConfig(formats=("onnx", "openvino", "tflite"),
                                                             precisions=("fp32", "int8"), name="c"),
                           quantize=QuantizeConfig(calibration_samples=32, max_accuracy_drop=100.0), out_dir=out,
                           seq_len=SEQ, samples=32)
    assert all(r.passed for r in results), [r.error for r in results if not r.passed]
    int8 = {r.format: r for r in results if r.precision != "fp32"}
    chosen = {fmt: json.loads(r.artifact.manifest_path.read_text())["quantization"]["chosen"]
              for fmt, r in int8.items()}
    assert {f: c["precision"] for f, c in chosen.items()} == {"onnx": "int8-dynamic", "openvino": "int8-static",
                                                             "tflite": "int8-dynamic"}
    assert all(c["why"] for c in chosen.values())
    assert {r.name for r in int8.values()} >= {"c-onnx-int8-dynamic", "c-tflite-int8-dynamic"}


def test_int8_beside_a_named_int8_precision_is_refused_before_anything_is_written(tmp_path):
    """Bad input: precisions [int8, int8-dynamic] would give the onnx and TFLite cells the same file twice."""
    from edgestill.errors import ConfigError

    folder = tiny_folder(tmp_path, "classify")
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="int8 .each format's own int8. beside int8-dynamic"):
        export_model(str(folder), export=ExportConfig(formats=("onnx",), precisions=("int8", "int8-dynamic"), name="c"),
                     quantize=QuantizeConfig(calibration_samples=32), out_dir=out, seq_len=SEQ, samples=32)
    assert not any(out.glob("*.onnx"))
