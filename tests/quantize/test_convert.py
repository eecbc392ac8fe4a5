"""convert(): float cells through export(), int8 cells through the quantize accuracy budget, all as ExportResults."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgestill.artifact import Artifact
from edgestill.chain.convert import convert
from edgestill.compress.quantize import QuantizeConfig, QuantOptions
from edgestill.errors import CheckFailed, ConfigError, InputError
from edgestill.export import ExportConfig


def test_static_int8_without_calibration_is_refused_before_anything_is_written(tmp_path, tiny_cnn, example_inputs, validation_x) -> None:
    """Bad input tried: int8-static with calibration=None (and fp32 asked too: not even fp32 is written)."""
    out = tmp_path / "out"
    with pytest.raises(InputError, match="static int8 needs calibration data"):
        convert(tiny_cnn, example_inputs, export=ExportConfig(formats=("onnx",), precisions=("fp32", "int8-static")),
                quantize=None, out_dir=out, validation_inputs=validation_x)
    assert not out.exists()


def test_a_tflite_recipe_that_does_not_make_the_precision_is_refused_before_writing(tmp_path, tiny_cnn, example_inputs,
                                                                                    validation_x, calibration_x) -> None:
    """Bad input tried: the dynamic-range TFLite recipe asked for an int8-static cell."""
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="'aeq-dynamic' does not make int8-static"):
        convert(tiny_cnn, example_inputs, export=ExportConfig(formats=("tflite",), precisions=("int8-static",)),
                quantize=QuantizeConfig(options=QuantOptions(tflite_recipe="aeq-dynamic")), out_dir=out,
                validation_inputs=validation_x, calibration=calibration_x)
    assert not out.exists()


def test_labels_of_the_wrong_length_are_refused_before_writing(tmp_path, tiny_cnn, example_inputs, validation_x, calibration_x) -> None:
    """Bad input tried: 10 labels for 64 eval samples."""
    out = tmp_path / "out"
    with pytest.raises(InputError, match="one integer class id per eval sample"):
        convert(tiny_cnn, example_inputs, export=ExportConfig(formats=("onnx",), precisions=("int8-static",)), quantize=None,
                out_dir=out, validation_inputs=validation_x, calibration=calibration_x, eval_y=np.zeros(10, np.int64))
    assert not out.exists()


@pytest.mark.slow
def test_label_free_int8_goes_through_the_budget_against_the_fp32_file(tmp_path, monkeypatch, tiny_cnn, example_inputs,
                                                                      validation_x, calibration_x) -> None:
    """No labels: the budget measures top-1 agreement with the fp32 file on onnxruntime, and reuses that fp32 file."""
    import edgestill.export.api as export_api

    real_export, budget_exports = export_api.export, []

    def spy(*args, **kwargs):  # the budget imports export() lazily: a call here would be a second fp32 export
        budget_exports.append(args[2])
        return real_export(*args, **kwargs)

    monkeypatch.setattr(export_api, "export", spy)
    seen = []
    results = convert(
        tiny_cnn, example_inputs, export=ExportConfig(formats=("onnx",), precisions=("fp32", "int8-static"), name="t"),
        quantize=QuantizeConfig(max_accuracy_drop=5.0), out_dir=tmp_path, validation_inputs=validation_x,
        calibration=calibration_x, calibration_ids=[f"c{i}" for i in range(32)], progress=lambda i, n, label="": seen.append((i, n)),
    )
    assert budget_exports == []
    assert [(r.name, r.precision, r.passed) for r in results] == [("t-onnx-fp32", "fp32", True), ("t-onnx-int8-static", "int8-static", True)]
    assert seen[0] == (0, 2) and seen[-1] == (2, 2)
    fp32, int8 = results
    assert fp32.quantization is None
    q = int8.quantization
    assert q["metric"] == "top1_agreement_with_fp32" and q["fp32_accuracy"] == 1.0 and q["budget"] == 5.0
    assert q["budget_met"] is True and q["float_layers"] == []
    (parity,) = int8.report.outputs
    assert q["drop_points"] == pytest.approx(100 * (1 - q["accuracy"])) and q["accuracy"] >= 0.95
    assert parity.sqnr_db >= 25.0 and parity.max_abs > 1e-5  # really quantized, and close to torch
    manifest = Artifact.load(tmp_path / "t-onnx-int8-static.manifest.json")
    assert manifest.validation["passed"] and {"max_abs", "cosine", "sqnr_db", "top1_agreement"} <= set(manifest.validation["outputs"][0])
    assert manifest.quantization["fp32_artifact"] == "t-onnx-fp32" and manifest.quantization["metric"] == "top1_agreement_with_fp32"
    assert manifest.calibration["sample_ids"][:2] == ["c0", "c1"]
    assert any("no labels" in n for n in int8.notes)
    json.dumps([r.to_dict() for r in results])


@pytest.fixture(scope="module")
def outlier_model(digits):
    import torch

    from tests.quantize.models import add_outliers, train_digits_cnn

    torch.set_num_threads(1)
    return add_outliers(train_digits_cnn(digits), factor=400.0)


@pytest.mark.slow
def test_an_impossible_budget_keeps_the_cell_rejected_and_says_by_how_much(tmp_path, digits, outlier_model) -> None:
    """Crafted case: outlier channels wreck all-int8 (>10 points), float fallback forbidden, budget 0 points."""
    import torch

    example = (torch.from_numpy(digits.test.x[:1]),)
    export_config = ExportConfig(formats=("onnx",), precisions=("int8-static",), name="o", strict=False)
    kwargs = dict(quantize=QuantizeConfig(max_accuracy_drop=0.0, max_float_layers=0), validation_inputs=digits.test.x[:64],
                  calibration=digits.train.x[:200], eval_x=digits.test.x, eval_y=digits.test.y)
    (cell,) = convert(outlier_model, example, export=export_config, out_dir=tmp_path / "a", **kwargs)
    q = cell.quantization
    assert cell.passed is False and cell.artifact is None and q["budget_met"] is False and q["metric"] == "top1_accuracy"
    assert q["drop_points"] > 10 and q["fp32_accuracy"] > 0.9
    assert f"missed the accuracy budget by {q['drop_points']:.2f} points" in cell.error
    # what to try, with the options that ran (issue 17): the quantize command with the budget, other methods, float
    assert cell.failure == "budget" and q["options"]["calibration_method"] == "mse" and q["naive_drop_points"] > 10  # onnx's measured default
    assert "`edgestill quantize --model MODEL --format onnx --precision int8-static --data DATA.npz" in cell.error
    assert "another --calibration-method than mse" in cell.error and "--allow-rejected" in cell.error
    assert "--max-float-layers, now 0" in cell.error and "--precision fp16 or fp32" in cell.error
    assert sorted(p.name for p in cell.rejected_files) == ["o-onnx-int8-static.manifest.json.rejected", "o-onnx-int8-static.onnx.rejected"]
    assert not (tmp_path / "a" / "o-onnx-int8-static.onnx").exists()
    kept = json.loads((tmp_path / "a" / "o-onnx-int8-static.manifest.json.rejected").read_text())
    assert kept["validation"]["outputs"] and kept["quantization"]["budget_met"] is False

    with pytest.raises(CheckFailed, match="missed the accuracy budget") as info:  # strict: exit 1, with the cells
        convert(outlier_model, example, export=ExportConfig(formats=("onnx",), precisions=("int8-static",), name="o"),
                out_dir=tmp_path / "b", **kwargs)
    assert info.value.exit_code == 1 and [r.name for r in info.value.results] == ["o-onnx-int8-static"]
