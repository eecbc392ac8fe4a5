"""The checks a run ends with: typed objects (name, threshold, measured value, verdict) computed from the report.

Every recipe gets the structural checks (each artifact exported, validated against torch and, for int8, within its
accuracy budget); the ``gate`` section adds budgets. ``edgestill run`` and ``edgestill demo`` exit 1 when a check
fails.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from edgestill.errors import ConfigError
from edgestill.record import device_label

Verdict = Literal["pass", "fail"]


@dataclass(frozen=True, kw_only=True)
class Check:
    """One verdict: ``measured`` compared with ``threshold`` by ``op`` (``>=``, ``<=``, ``<``, ``==``).

    ``subject`` is what was checked (an artifact name, "student"); ``detail`` says why when there is no number
    (an artifact that failed to export).
    """

    name: str
    subject: str
    op: str
    threshold: float | bool | None
    measured: float | bool | None
    verdict: Verdict
    unit: str = ""
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """``subject: name (measured op threshold)``, with the detail of a failure that has one."""
        return describe_check(self.to_dict())


def describe_check(check: dict[str, Any]) -> str:
    """One line for a check (as :meth:`Check.to_dict` gives it): ``a: p90 latency (0.41 ms <= 1.0 ms)``."""
    m, unit = check["measured"], check["unit"]
    shown = "not measured" if m is None else (
        f"{m:.4g}{unit} {check['op']} {check['threshold']}{unit}" if isinstance(m, float) and not isinstance(m, bool)
        else f"{m}{unit} {check['op']} {check['threshold']}{unit}")
    why = f"; {check['detail']}" if check["detail"] and check["verdict"] != "pass" else ""
    return f"{check['subject']}: {check['name']} ({shown}{why})"


_OPS = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b, "==": lambda a, b: a == b}


def compare(name: str, subject: str, measured: float | bool | None, op: str, threshold: float | bool | None, *,
            unit: str = "", detail: str = "") -> Check:
    """A check of ``measured op threshold``; nothing measured (None, NaN) fails, and ``detail`` says why."""
    ok = (measured is not None and not (isinstance(measured, float) and math.isnan(measured))
          and threshold is not None and _OPS[op](measured, threshold))
    return Check(name=name, subject=subject, op=op, threshold=threshold, measured=measured,
                 verdict="pass" if ok else "fail", unit=unit, detail=detail if measured is None else "")


def _number(key: str, value: Any, valid: str, ok: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value) or not ok(value)):
        raise ConfigError(f"gate.{key} must be {valid}, got {value!r}.")


@dataclass(frozen=True, kw_only=True)
class GateConfig:
    """Budgets checked at the end of a run; every one is optional (a miss exits 1).

    min_test_accuracy: the torch student's test accuracy, 0..1.
    min_kd_gain_points: KD student minus the no-KD baseline, accuracy points (needs ``distill.baseline: true``).
    max_accuracy_drop_points: each artifact's test accuracy on its runtime vs the torch student, points.
    min_fp32_top1_agreement: each fp32 artifact's top-1 agreement with torch on the validation samples, 0..1.
    min_teacher_top1_agreement: each artifact's top-1 agreement with the teacher on the test split, 0..1.
    min_teacher_cosine: an embedder's: each artifact's mean cosine similarity to the teacher's embeddings, -1..1.
    min_teacher_retrieval_agreement: an embedder's: each artifact's top-k retrieval agreement with the teacher, 0..1.
    int8_faster_than_fp32: each int8 artifact's p50 below the fp32 artifact's of its format, same thread count.
    max_p90_ms: each benchmarked cell's p90 latency.
    max_model_bytes: each artifact's file size.
    """

    min_test_accuracy: float | None = None
    min_kd_gain_points: float | None = None
    max_accuracy_drop_points: float | None = None
    min_fp32_top1_agreement: float | None = None
    min_teacher_top1_agreement: float | None = None
    min_teacher_cosine: float | None = None
    min_teacher_retrieval_agreement: float | None = None
    int8_faster_than_fp32: bool = False
    max_p90_ms: float | None = None
    max_model_bytes: int | None = None

    def __post_init__(self) -> None:
        _number("min_teacher_cosine", self.min_teacher_cosine, "a number in [-1, 1]", lambda v: -1 <= v <= 1)
        for key in ("min_test_accuracy", "min_fp32_top1_agreement", "min_teacher_top1_agreement",
                    "min_teacher_retrieval_agreement"):
            _number(key, getattr(self, key), "a number in [0, 1]", lambda v: 0 <= v <= 1)
        _number("min_kd_gain_points", self.min_kd_gain_points, "a number of points", lambda v: True)
        _number("max_accuracy_drop_points", self.max_accuracy_drop_points, "a number >= 0", lambda v: v >= 0)
        _number("max_p90_ms", self.max_p90_ms, "a number > 0", lambda v: v > 0)
        _number("max_model_bytes", self.max_model_bytes, "a whole number > 0", lambda v: isinstance(v, int) and v > 0)
        if not isinstance(self.int8_faster_than_fp32, bool):
            raise ConfigError(f"gate.int8_faster_than_fp32 must be true or false, got {self.int8_faster_than_fp32!r}.")

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def run_checks(report: dict[str, Any], gate: GateConfig) -> list[Check]:
    """Every check of a chain report: the structural ones, then the gate's budgets that apply."""
    checks: list[Check] = []
    student = report.get("student") or {}
    if gate.min_test_accuracy is not None and "test_accuracy" in student:
        checks.append(compare("student test accuracy", "student", student["test_accuracy"], ">=", gate.min_test_accuracy))
    if gate.min_kd_gain_points is not None:
        checks.append(compare("KD gain over the no-KD student", "student", student.get("kd_gain_points"), ">=",
                              gate.min_kd_gain_points, unit=" pts",
                              detail="no baseline trained: set distill.baseline: true"))
    artifacts = report.get("artifacts") or []
    for row in artifacts:
        checks.extend(_artifact_checks(row, gate))
    if gate.int8_faster_than_fp32:
        checks.extend(_speed_checks(artifacts))
    return checks


def _artifact_checks(row: dict[str, Any], gate: GateConfig) -> Iterable[Check]:
    name = row["artifact"]
    if not row.get("passed"):
        yield Check(name="exported and validated", subject=name, op="==", threshold=True, measured=False,
                    verdict="fail", detail=row.get("error") or "export failed")
        return
    yield compare("exported and validated", name, True, "==", True)
    q = row.get("quantization") or {}
    from edgestill.compress.quantize.budget import METRIC_COSINE

    if q and q.get("metric") == METRIC_COSINE:  # an embedder's budget: a minimum cosine to the fp32 file
        yield compare("int8 mean cosine to the fp32 file within the quantize budget", name, q.get("accuracy"), ">=",
                      q.get("budget"))
    elif q:
        yield compare("int8 accuracy drop within the quantize budget", name, q.get("drop_points"), "<=", q.get("budget"),
                      unit=" pts")
    if gate.min_fp32_top1_agreement is not None and row["precision"] == "fp32":
        agree = min((o.get("top1_agreement") for o in row.get("parity", []) if o.get("top1_agreement") is not None),
                    default=None)
        yield compare("top-1 agreement with torch", name, agree, ">=", gate.min_fp32_top1_agreement)
    if gate.max_accuracy_drop_points is not None:
        yield compare("test accuracy drop vs the torch student", name, row.get("accuracy_drop_points"), "<=",
                      gate.max_accuracy_drop_points, unit=" pts", detail="no labelled test data")
    if gate.min_teacher_top1_agreement is not None:
        yield compare("top-1 agreement with the teacher", name, row.get("teacher_top1_agreement"), ">=",
                      gate.min_teacher_top1_agreement, detail="no teacher outputs")
    if gate.min_teacher_cosine is not None:
        yield compare("mean cosine to the teacher's embeddings", name, row.get("teacher_cosine"), ">=",
                      gate.min_teacher_cosine, detail="no teacher embeddings (not an embedder)")
    if gate.min_teacher_retrieval_agreement is not None:
        yield compare(f"top-{row.get('retrieval_k') or 'k'} retrieval agreement with the teacher", name,
                      row.get("teacher_retrieval_agreement"), ">=", gate.min_teacher_retrieval_agreement,
                      detail="no teacher embeddings (not an embedder)")
    if gate.max_model_bytes is not None:
        yield compare("model size", name, row.get("model_bytes"), "<=", gate.max_model_bytes, unit=" B")
    if gate.max_p90_ms is not None:
        for m in _measured(row):
            yield compare(f"p90 latency at {m['threads']} thread(s){_on(m)}", name, m.get("p90_ms"), "<=",
                          gate.max_p90_ms, unit=" ms", detail=m.get("error") or "")


def _measured(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The row's measured (or failed) cells: an estimate is never held to a latency budget."""
    return [m for m in row.get("measurements", []) if m.get("kind") != "estimated"]


def _on(m: dict[str, Any]) -> str:
    """`` on DEVICE`` for a cell measured on an inventory device; nothing for the host."""
    device = device_label(m.get("provenance"))
    return "" if device in (None, "host") else f" on {device}"


def _speed_checks(artifacts: list[dict[str, Any]]) -> Iterable[Check]:
    """int8 p50 < fp32 p50 for each format and thread count where both were measured."""

    def p50s(row: dict[str, Any]) -> dict[tuple[int, str], float | None]:
        return {(m["threads"], _on(m)): m.get("p50_ms") for m in _measured(row)}

    fp32 = {r["format"]: p50s(r) for r in artifacts if r["precision"] == "fp32" and r.get("passed")}
    for row in artifacts:
        if row["precision"] in ("fp32", "fp16") or not row.get("passed") or row["format"] not in fp32:
            continue
        for (threads, on), p50 in p50s(row).items():
            base = fp32[row["format"]].get((threads, on))
            ratio = None if p50 is None or not base else round(p50 / base, 3)
            yield compare(f"int8/fp32 p50 ratio at {threads} thread(s){on}", row["artifact"], ratio, "<", 1.0,
                          detail="not measured")
