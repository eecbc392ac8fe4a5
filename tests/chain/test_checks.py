"""The checks a run ends with: typed verdicts computed from a report's numbers."""

from __future__ import annotations

import pytest

from edgestill.chain.checks import GateConfig, compare, run_checks
from edgestill.errors import ConfigError


def artifact(name: str, fmt: str, precision: str, *, p50: float | None = 0.3, passed: bool = True, **extra: object) -> dict:
    row = {"artifact": name, "format": fmt, "precision": precision, "passed": passed, "model_bytes": 1000,
           "parity": [{"name": "logits", "top1_agreement": 1.0}], "accuracy_drop_points": 0.5,
           "teacher_top1_agreement": 0.9, "error": None if passed else "onnx export failed: boom",
           "measurements": [{"threads": 1, "kind": "measured", "p50_ms": p50, "p90_ms": p50}] if p50 else []}
    row.update(extra)
    return row


def report(*arts: dict, kd_gain: float | None = 2.0) -> dict:
    student = {"test_accuracy": 0.6}
    if kd_gain is not None:
        student["kd_gain_points"] = kd_gain
    return {"student": student, "artifacts": list(arts)}


def verdicts(checks: list) -> dict[tuple[str, str], str]:
    return {(c.subject, c.name): c.verdict for c in checks}


def test_every_artifact_gets_a_validation_check_and_a_failed_one_says_why() -> None:
    checks = run_checks(report(artifact("a", "onnx", "fp32"), artifact("b", "tflite", "fp32", passed=False)), GateConfig())
    v = verdicts(checks)
    assert v == {("a", "exported and validated"): "pass", ("b", "exported and validated"): "fail"}
    failed = next(c for c in checks if c.subject == "b")
    assert failed.detail == "onnx export failed: boom"
    assert failed.describe() == "b: exported and validated (False == True; onnx export failed: boom)"


def test_int8_budget_is_checked_from_the_quantize_result() -> None:
    within = artifact("q", "onnx", "int8-static", quantization={"drop_points": 0.8, "budget": 1.0, "budget_met": True})
    over = artifact("r", "onnx", "int8-static", quantization={"drop_points": 1.6, "budget": 1.0, "budget_met": False})
    v = verdicts(run_checks(report(within, over), GateConfig()))
    assert v[("q", "int8 accuracy drop within the quantize budget")] == "pass"
    assert v[("r", "int8 accuracy drop within the quantize budget")] == "fail"


def test_int8_must_be_faster_than_fp32_of_its_own_format_at_the_same_threads() -> None:
    arts = [artifact("o32", "onnx", "fp32", p50=0.30), artifact("o8", "onnx", "int8-static", p50=0.20),
            artifact("t32", "tflite", "fp32", p50=0.20), artifact("t8", "tflite", "int8-static", p50=0.25)]
    checks = run_checks(report(*arts), GateConfig(int8_faster_than_fp32=True))
    speed = {c.subject: c for c in checks if c.name.startswith("int8/fp32")}
    assert speed["o8"].verdict == "pass" and speed["o8"].measured == pytest.approx(0.667, abs=1e-3)
    assert speed["t8"].verdict == "fail" and speed["t8"].measured == 1.25
    assert set(speed) == {"o8", "t8"}


def test_gate_budgets_compare_measured_with_threshold() -> None:
    gate = GateConfig(min_kd_gain_points=1.0, min_fp32_top1_agreement=1.0, max_accuracy_drop_points=0.4,
                      min_teacher_top1_agreement=0.95, max_p90_ms=0.25, max_model_bytes=999)
    v = verdicts(run_checks(report(artifact("a", "onnx", "fp32", p50=0.3)), gate))
    assert v[("student", "KD gain over the no-KD student")] == "pass"
    assert v[("a", "top-1 agreement with torch")] == "pass"
    assert v[("a", "test accuracy drop vs the torch student")] == "fail"  # 0.5 > 0.4
    assert v[("a", "top-1 agreement with the teacher")] == "fail"  # 0.9 < 0.95
    assert v[("a", "p90 latency at 1 thread(s)")] == "fail"
    assert v[("a", "model size")] == "fail"


def test_a_budget_on_something_not_measured_fails_and_says_so() -> None:
    (check,) = run_checks(report(kd_gain=None), GateConfig(min_kd_gain_points=0.0))
    assert check.verdict == "fail" and check.measured is None and "distill.baseline" in check.detail


def test_nan_never_passes() -> None:
    assert compare("x", "s", float("nan"), "<=", 1.0).verdict == "fail"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"min_test_accuracy": 70}, "gate.min_test_accuracy must be a number in [0, 1]"),
    ({"max_p90_ms": 0}, "gate.max_p90_ms must be a number > 0"),
    ({"max_model_bytes": 1.5}, "gate.max_model_bytes must be a whole number > 0"),
    ({"int8_faster_than_fp32": "yes"}, "gate.int8_faster_than_fp32 must be true or false"),
    ({"min_kd_gain_points": float("inf")}, "gate.min_kd_gain_points must be a number"),
])
def test_bad_gate_values_name_the_key(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        GateConfig(**kwargs)
