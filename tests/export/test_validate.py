"""Parity metrics, thresholds and validate() on a hand-built ONNX file (no conversion: fast)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgestill.errors import ConfigError, InputError
from edgestill.export import Artifact, TensorSpec, Threshold, Tolerances, validate
from edgestill.export.validate import check_parity, compare_output


def _relu_artifact(directory: Path, precision: str = "fp32") -> Artifact:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), directory / "relu.onnx")
    art = Artifact(
        name="relu", format="onnx", precision=precision, directory=directory, model_file="relu.onnx",
        inputs=[TensorSpec(name="x", shape=(1, 6), dtype="float32")], outputs=[TensorSpec(name="y", shape=(1, 6), dtype="float32")],
    )
    art.hash_files()
    return art


def test_identical_outputs() -> None:
    ref = np.random.default_rng(0).standard_normal((20, 10))
    p = compare_output("y", ref.copy(), ref)
    assert (p.max_abs, p.max_rel, p.top1_agreement) == (0.0, 0.0, 1.0)
    assert p.cosine == pytest.approx(1.0) and p.sqnr_db == 300.0


def test_sqnr_of_known_noise() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((200, 10))
    noise = rng.standard_normal((200, 10))
    noise *= np.sqrt((ref**2).sum() / (noise**2).sum() / 100.0)  # noise energy = 1% of the signal: 20 dB
    p = compare_output("y", ref + noise, ref)
    assert p.sqnr_db == pytest.approx(20.0, abs=1e-6)
    assert p.max_abs == pytest.approx(np.abs(noise).max())
    assert p.max_rel == pytest.approx(np.abs(noise).max() / np.abs(ref).max())


def test_top1_agreement_counts_flips_but_forgives_ties() -> None:
    ref = np.array([[0.0, 1.0, 0.9995], [0.0, 1.0, 0.5], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    got = np.array([[0.0, 0.9990, 1.0], [0.0, 0.5, 1.0], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    assert compare_output("y", got, ref).top1_agreement == 0.5  # rows 0 and 1 flipped
    tied = compare_output("y", got, ref, tie_atol=1e-3)
    assert tied.top1_agreement == 0.5  # the reported figure stays strict
    assert tied.top1_agreement_with_ties == 0.75  # row 0 was a tie: forgiven for the verdict only


def test_top1_only_for_class_scores() -> None:
    assert compare_output("y", np.ones((4, 3, 2)), np.ones((4, 3, 2))).top1_agreement is None


def test_check_parity_lists_every_missed_criterion() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 1.0]])
    p = compare_output("logits", np.array([[0.0, 1.0], [1.0, 0.0]]), ref)
    fails = check_parity(p, 1.0, Threshold(atol=1e-3, min_cosine=0.99, min_sqnr_db=20.0, min_top1_agreement=0.95))
    assert {f["metric"] for f in fails} == {"max_abs", "cosine", "sqnr_db", "top1_agreement"}
    assert all(f["output"] == "logits" and "value" in f and "bound" in f for f in fails)


def test_tolerances_per_precision_and_checks() -> None:
    t = Tolerances()
    assert t.for_precision("fp32").min_top1_agreement == 1.0
    assert t.for_precision("int8-static") is t.int8 and t.for_precision("int8-dynamic") is t.int8
    assert Tolerances(int8={"min_sqnr_db": 30.0}).int8.min_sqnr_db == 30.0
    with pytest.raises(ConfigError, match="unknown key"):
        Tolerances(int8={"min_snr": 30.0})
    with pytest.raises(ConfigError, match="min_top1_agreement"):
        Threshold(min_top1_agreement=95)
    with pytest.raises(ConfigError, match="atol"):
        Threshold(atol=-1.0)


def test_validate_passes_for_the_right_model(tmp_path) -> None:
    import torch

    x = np.random.default_rng(0).standard_normal((16, 6)).astype(np.float32)
    report = validate(_relu_artifact(tmp_path), torch.nn.ReLU(), x)
    assert report.passed and report.n_samples == 16 and report.runtime == "onnxruntime"
    d = report.to_dict()
    json.dumps(d, allow_nan=False)  # the manifest must stay strict JSON
    assert d["passed"] and d["outputs"][0]["name"] == "y" and d["settings"]["threads"] == 1


def test_validate_reports_every_failing_output_for_the_wrong_model(tmp_path) -> None:
    import torch

    x = np.random.default_rng(0).standard_normal((16, 6)).astype(np.float32)
    report = validate(_relu_artifact(tmp_path), torch.nn.Identity(), x)
    assert not report.passed
    assert [f["metric"] for f in report.failures][:1] == ["max_abs"] and all(f["output"] == "y" for f in report.failures)
    assert report.failures[0]["value"] == pytest.approx(np.abs(np.minimum(x, 0)).max())
    assert "y: max_abs" in report.summary()


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (np.zeros((0, 6), np.float32), "empty"),
        (np.zeros((4, 5), np.float32), r"shape \[4, 5\]"),
        ([np.zeros((4, 6), np.float32)] * 2, "got 2 array"),
    ],
    ids=["empty", "wrong-shape", "wrong-count"],
)
def test_validate_rejects_bad_inputs(tmp_path, inputs, message) -> None:
    import torch

    with pytest.raises(InputError, match=message):
        validate(_relu_artifact(tmp_path), torch.nn.ReLU(), inputs)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_tolerances_are_refused(value) -> None:
    """NaN compares false with every number, so fp32.atol=nan rejected every correct file; Inf passes every one."""
    with pytest.raises(ConfigError, match=rf"fp32.atol={value}.*not a finite number"):
        Tolerances.parse([f"fp32.atol={value}"])
    with pytest.raises(ConfigError, match="finite"):
        Threshold(min_sqnr_db=float(value))
    assert Tolerances.parse(["fp32.atol=none"]).fp32.atol is None  # switching a criterion off stays possible
