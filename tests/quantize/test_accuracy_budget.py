"""The accuracy budget on the artifact's own runtime: an outlier layer breaks naive int8, the accuracy-aware path
keeps it in float and restores the budget; KD repair fixes a model whose all-int8 PTQ misses the budget."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgestill.compress.quantize import QuantizeConfig, QuantOptions, artifact_accuracy, quantize, quantize_export
from edgestill.artifact import Artifact
from edgestill.export.validate import Tolerances
from tests.quantize.models import CONSUMER_LAYER, OUTLIER_LAYER, add_outliers, train_digits_cnn

pytestmark = pytest.mark.slow
BUDGET = 1.0


@pytest.fixture(scope="module")
def trained(digits):
    import torch

    torch.set_num_threads(1)
    return train_digits_cnn(digits)


@pytest.fixture(scope="module")
def outlier_model(trained):
    return add_outliers(trained, factor=400.0)


def _example(digits):
    import torch

    return (torch.from_numpy(digits.test.x[:1]),)


@pytest.fixture(scope="module")
def onnx_result(tmp_path_factory, digits, outlier_model):
    out = tmp_path_factory.mktemp("budget")
    result = quantize(
        outlier_model, _example(digits), QuantizeConfig(formats=("onnx",), name="outlier", bench_latency=False), out,
        calibration=digits.train.x[:300], calibration_ids=[f"train/{i}" for i in range(300)],
        eval_x=digits.test.x, eval_y=digits.test.y,
    )
    return out, result


def test_outlier_layer_really_breaks_naive_int8_on_the_runtime(onnx_result) -> None:
    _, result = onnx_result
    (f,) = result.formats
    assert f.fp32_accuracy > 0.9  # the float model is good...
    assert f.naive.drop_points > 10 * BUDGET  # ...and per-tensor int8 activations wreck it on onnxruntime


def test_accuracy_aware_path_names_the_layer_and_restores_the_budget(onnx_result) -> None:
    out, result = onnx_result
    (f,) = result.formats
    assert result.budget_met and f.budget_met
    assert OUTLIER_LAYER in f.final.float_layers and CONSUMER_LAYER in f.final.float_layers
    assert f.final.drop_points <= BUDGET
    ranked = [s.layer for s in f.sensitivity[:2]]
    assert set(ranked) == {OUTLIER_LAYER, CONSUMER_LAYER}  # the sensitivity ranking put them first
    assert len(f.final.float_layers) < len(f.sensitivity)  # not everything was left in float


def test_mixed_artifact_is_published_with_its_float_layers_and_accuracy(onnx_result, digits) -> None:
    out, result = onnx_result
    art = Artifact.load(out / "outlier-onnx-mixed.manifest.json")
    assert art.precision == "mixed"
    q = art.quantization
    assert set(q["float_layers"]) == set(result.formats[0].final.float_layers)
    assert q["budget_met"] is True and q["accuracy_drop_points"] <= BUDGET
    assert art.calibration["n"] == 300 and art.calibration["sample_ids"][0] == "train/0"
    acc, _ = artifact_accuracy(art, digits.test.x, digits.test.y)  # the published file, re-run
    assert acc == pytest.approx(q["accuracy"])
    assert not list(out.glob("*.rejected")) and not list(out.glob(".search-*"))
    doc = result.to_dict()
    json.dumps(doc)  # JSON-able
    assert doc["formats"][0]["sensitivity"][0]["layer"] in (OUTLIER_LAYER, CONSUMER_LAYER)
    md = result.markdown()
    assert f"`{OUTLIER_LAYER}`" in md and "| yes |" in md


@pytest.mark.parametrize("fmt", ["openvino", "tflite"])
def test_keeping_the_outlier_layers_float_restores_accuracy_in_every_format(tmp_path, digits, outlier_model, fmt) -> None:
    calib = digits.train.x[:200]
    accs = {}
    for float_layers in ((), (OUTLIER_LAYER, CONSUMER_LAYER)):
        art = quantize_export(outlier_model, _example(digits), format=fmt, calibration=calib, staging_dir=tmp_path / str(len(float_layers)),
                              name="o", options=QuantOptions(float_layers=float_layers, equalize=False))  # CLE would undo the outliers
        accs[float_layers] = artifact_accuracy(art, digits.test.x, digits.test.y)[0]
    fp32 = float((outlier_model(_example(digits)[0].new_tensor(digits.test.x)).argmax(1).numpy() == digits.test.y).mean())
    assert 100 * (fp32 - accs[()]) > 10 * BUDGET
    assert 100 * (fp32 - accs[(OUTLIER_LAYER, CONSUMER_LAYER)]) <= BUDGET
    assert art.precision == "mixed"


def test_kd_repair_meets_the_budget_where_all_int8_ptq_misses_it(tmp_path, digits, trained) -> None:
    from edgestill.compress.quantize.repair import RepairConfig

    student = add_outliers(trained, factor=100.0)  # milder: PTQ misses by a few points, QAT can learn around it
    config = QuantizeConfig(formats=("onnx",), name="s", max_float_layers=0, bench_latency=False)
    repair = RepairConfig(teacher=trained, train_x=digits.train.x, train_y=digits.train.y, epochs=4)
    # The crafted outlier channels cap the int8 file's SQNR vs torch near 14 dB (cosine 0.98) even where top-1 holds;
    # this test is about the budget, so the parity floors are set to what the crafted model can reach.
    loose = Tolerances.parse(["int8.min_sqnr_db=10,int8.min_cosine=0.97"])
    result = quantize(student, _example(digits), config, tmp_path / "out", calibration=digits.train.x[:300],
                      eval_x=digits.test.x, eval_y=digits.test.y, repair=repair, tolerances=loose)
    (f,) = result.formats
    assert f.naive.drop_points > BUDGET  # post-training int8 misses
    assert f.final.label == "kd-repair" and f.budget_met and f.final.drop_points <= BUDGET, f.error
    assert f.repair["epochs"] == 4 and f.repair["accuracy"] == f.final.accuracy
    assert f.passed, f.error
    art = Artifact.load(tmp_path / "out" / "s-onnx-int8-static.manifest.json")
    assert art.quantization["kd_repair"]["method"].startswith("PT2E QAT")
    assert art.validation["passed"] and art.validation["threshold"]["min_sqnr_db"] == 10.0
    assert not np.isnan(f.repair["final_loss"])


def test_a_file_within_budget_that_fails_parity_is_rejected_not_published(tmp_path, digits, trained) -> None:
    """Crafted case: the outlier model's all-int8 file keeps top-1 within a generous budget (30 points) but its SQNR
    vs torch is far below the default int8 floor (20 dB): parity decides, the file is kept as *.rejected."""
    student = add_outliers(trained, factor=100.0)
    config = QuantizeConfig(formats=("onnx",), name="p", max_float_layers=0, max_accuracy_drop=30.0, bench_latency=False)
    result = quantize(student, _example(digits), config, tmp_path / "out", calibration=digits.train.x[:300],
                      eval_x=digits.test.x, eval_y=digits.test.y)
    (f,) = result.formats
    assert f.budget_met and not f.report.passed and not f.passed and not result.passed
    assert f.artifact is None and "within the accuracy budget but failed parity with torch" in f.error and "sqnr_db" in f.error
    assert sorted(p.name for p in f.rejected_files) == ["p-onnx-int8-static.manifest.json.rejected", "p-onnx-int8-static.onnx.rejected"]
    assert not (tmp_path / "out" / "p-onnx-int8-static.onnx").exists()
