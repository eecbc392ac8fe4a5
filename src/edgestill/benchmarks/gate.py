"""The CI gate: is a candidate slower, less accurate or bigger than its baseline, beyond the noise?

Cells are matched on (model, format, precision, device, runtime, threads) and on kind: measurements are compared with
measurements and estimates with estimates, never one with the other. Per cell:

- **latency**: a statistical test on the raw samples AND a minimum effect must agree. For stored runs, a two-sided
  Mann–Whitney U test on the two sets of samples plus a percentile-bootstrap confidence interval of the median ratio;
  for an interleaved A/B run, a Wilcoxon signed-rank test on the per-block log ratios plus a bootstrap interval of
  their median (drift between blocks cancels in a pair). Verdicts: ``regression`` (significant, the interval above 1
  and the ratio at least 1 + min effect), ``improvement`` (the mirror), ``no change`` (the whole interval inside
  [1/(1+e), 1+e]: any change is smaller than the minimum effect) and ``no verdict`` (the cell's own noise cannot
  resolve the minimum effect: too few samples, a CV above the bound, a steady state the harness flagged unstable, or
  an interval that straddles the threshold).
- **accuracy** and **teacher agreement**: a drop budget in points; **size**: a growth budget in percent.

A cell regresses when any of its checks does; a candidate cell that failed to run where the baseline ran regresses.
Exit codes: 0 pass, 1 regression (or a no-verdict cell with ``fail_on_no_verdict``), 2 bad input.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgestill.benchmarks.report_render import md_text
from edgestill.errors import ConfigError, InputError
from edgestill.record import RESULTS_SCHEMA, RESULTS_SCHEMA_VERSION, device_label

Verdict = Literal["regression", "improvement", "no change", "no verdict", "failed"]
_SQLITE_MAGIC = b"SQLite format 3\x00"
CELL_FIELDS = ("model", "format", "precision", "device", "runtime", "threads", "kind")


_OPTIONS = {"min_effect_percent": "--min-effect", "max_cv_percent": "--max-cv",
            "max_accuracy_drop_points": "--max-accuracy-drop", "max_agreement_drop_points": "--max-agreement-drop",
            "max_size_growth_percent": "--max-size-growth"}  # the CLI option that sets each budget


@dataclass(frozen=True, kw_only=True)
class GateBudgets:
    """What counts as a regression, and when the noise is too large to say.

    ``min_effect_percent``: the smallest latency change the gate calls (5% by default; github-action-benchmark's 200%
    alert is blind to a 15% slowdown). ``alpha``: the significance level of the test. ``confidence``: the level of the
    ratio's interval. ``min_samples``: fewer raw samples (or A/B blocks) than this on either side is no verdict.
    ``max_cv_percent``: a side whose robust steady-state CV (1.4826·MAD / median) is above it is too noisy to call
    (no verdict).
    ``fail_on_no_verdict``: whether a no-verdict cell fails the job (exit 1).
    """

    min_effect_percent: float = 5.0
    alpha: float = 0.01
    confidence: float = 0.99
    min_samples: int = 10
    max_cv_percent: float = 25.0
    max_accuracy_drop_points: float = 1.0
    max_agreement_drop_points: float = 1.0
    max_size_growth_percent: float = 5.0
    fail_on_no_verdict: bool = False
    n_resamples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        for name in ("min_effect_percent", "max_cv_percent", "max_accuracy_drop_points", "max_agreement_drop_points",
                     "max_size_growth_percent"):  # fmt: skip
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                problems.append(f"{_OPTIONS[name]} must be a finite number >= 0 (got {v!r})")
        if isinstance(self.min_effect_percent, (int, float)) and not 0 < self.min_effect_percent < 100:
            problems.append(f"--min-effect must be in (0, 100) percent (got {self.min_effect_percent!r})")
        if isinstance(self.max_cv_percent, (int, float)) and not self.max_cv_percent > 0:
            problems.append(f"--max-cv must be above 0 percent: at {self.max_cv_percent!r} no cell could get a verdict")
        for name in ("alpha", "confidence"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 < v < 1):
                problems.append(f"{name} must be in (0, 1) (got {v!r})")
        if not (isinstance(self.min_samples, int) and self.min_samples >= 3):
            problems.append(f"min_samples must be a whole number >= 3 (got {self.min_samples!r})")
        if problems:
            raise ConfigError("invalid gate budgets: " + "; ".join(problems) + ".")

    @property
    def threshold(self) -> float:
        return 1.0 + self.min_effect_percent / 100.0


# -- latency decisions (pure) ----------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LatencyDecision:
    verdict: Verdict
    ratio: float | None = None  # candidate / baseline median: > 1 is slower
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    test: str | None = None
    reason: str = ""


def _classify(ratio: float, low: float, high: float, p: float, budgets: GateBudgets, test: str,
              advice: str = "take more samples, or compare A/B interleaved (--ab)") -> LatencyDecision:  # fmt: skip
    t = budgets.threshold
    common = {"ratio": ratio, "ci_low": low, "ci_high": high, "p_value": p, "test": test}
    ci = f"[{low:.3f}, {high:.3f}]"
    if p < budgets.alpha and low > 1.0 and ratio >= t:
        return LatencyDecision(verdict="regression", reason=f"{(ratio - 1) * 100:.1f}% slower ({ci}, p={p:.2g})", **common)
    if p < budgets.alpha and high < 1.0 and ratio <= 1.0 / t:
        return LatencyDecision(verdict="improvement", reason=f"{(1 - ratio) * 100:.1f}% faster ({ci}, p={p:.2g})", **common)
    if low >= 1.0 / t and high <= t:
        return LatencyDecision(verdict="no change",
                               reason=f"ratio {ratio:.3f} {ci}: any change is under {budgets.min_effect_percent:g}%", **common)
    return LatencyDecision(
        verdict="no verdict",
        reason=f"ratio {ratio:.3f} {ci} (p={p:.2g}) does not resolve a {budgets.min_effect_percent:g}% change: the noise "
        f"is too large for this effect; {advice}",
        **common,
    )


def _noise_problem(side: str, samples: Sequence[float], budgets: GateBudgets, stability: Mapping[str, Any] | None,
                   what: str = "samples") -> str | None:  # fmt: skip
    if len(samples) < budgets.min_samples:
        return f"the {side} has {len(samples)} {what}, fewer than {budgets.min_samples}"
    if stability and not stability.get("stable", True):
        reasons = "; ".join(stability.get("reasons") or []) or "flagged by the harness"
        return f"the {side}'s steady state was unstable ({reasons})"
    arr = np.asarray(samples, dtype=np.float64)
    med = float(np.median(arr))
    # robust (MAD-based) like the harness's: a few preempted calls among thousands must not hide a clear median
    cv = float(1.4826 * np.median(np.abs(arr - med)) / med * 100) if med > 0 else math.inf
    if cv > budgets.max_cv_percent:
        return f"the {side}'s robust CV is {cv:.1f}% (> {budgets.max_cv_percent:g}%)"
    return None


def decide_latency(base_ms: Sequence[float], cand_ms: Sequence[float], budgets: GateBudgets | None = None, *,
                   base_stability: Mapping[str, Any] | None = None,
                   cand_stability: Mapping[str, Any] | None = None) -> LatencyDecision:  # fmt: skip
    """Decide a latency cell from two independent runs' raw samples (ms).

    The test is a two-sided Mann–Whitney U on the samples; the interval is the percentile bootstrap of
    ``median(cand) / median(base)`` (:func:`edgestill.stats.bootstrap_ratio_ci`). See the module docstring for the
    verdicts. Samples taken minutes apart on a shared machine carry its drift: where the two runs were not taken on
    comparable, quiet hardware, use :func:`decide_paired` on an interleaved A/B run.
    """
    from scipy.stats import mannwhitneyu

    from edgestill.stats import bootstrap_ratio_ci

    budgets = budgets or GateBudgets()
    for side, samples, stab in (("baseline", base_ms, base_stability), ("candidate", cand_ms, cand_stability)):
        why = _noise_problem(side, samples, budgets, stab)
        if why:
            return LatencyDecision(verdict="no verdict", reason=why)
    ci = bootstrap_ratio_ci(cand_ms, base_ms, confidence=budgets.confidence, n_resamples=budgets.n_resamples, seed=budgets.seed)
    p = float(mannwhitneyu(cand_ms, base_ms, alternative="two-sided").pvalue)
    return _classify(ci.ratio, ci.low, ci.high, p, budgets, "mann-whitney-u")


def decide_paired(log_ratios: Sequence[float], budgets: GateBudgets | None = None) -> LatencyDecision:
    """Decide a latency cell from paired per-block log ratios ``log(median new / median old)`` of an A/B run.

    The test is a two-sided Wilcoxon signed-rank test on the log ratios; the interval is the percentile bootstrap of
    their median, exponentiated. Too few blocks, or blocks whose ratios scatter by more than ``max_cv_percent``, are
    no verdict.
    """
    from scipy.stats import wilcoxon

    budgets = budgets or GateBudgets()
    d = np.asarray(log_ratios, dtype=np.float64)
    if d.size < budgets.min_samples:
        return LatencyDecision(verdict="no verdict", reason=f"{d.size} A/B blocks, fewer than {budgets.min_samples}")
    if not np.all(np.isfinite(d)):
        raise InputError("A/B block ratios hold non-finite values; the samples must be positive latencies.")
    spread = float(1.4826 * np.median(np.abs(d - np.median(d))) * 100)  # robust: one disturbed block does not count
    if spread > budgets.max_cv_percent:
        return LatencyDecision(verdict="no verdict",
                               reason=f"the per-block ratios scatter by {spread:.1f}% (robust, > {budgets.max_cv_percent:g}%)")
    rng = np.random.default_rng(budgets.seed)
    meds = np.median(d[rng.integers(0, d.size, size=(budgets.n_resamples, d.size))], axis=1)
    alpha = (1 - budgets.confidence) / 2
    low, high = np.quantile(meds, [alpha, 1 - alpha])
    p = 1.0 if np.all(d == 0) else float(wilcoxon(d, alternative="two-sided").pvalue)
    return _classify(float(np.exp(np.median(d))), float(np.exp(low)), float(np.exp(high)), p, budgets, "wilcoxon-paired",
                     advice="run more blocks (--blocks) on a quieter machine, or pin the cores")


# -- cells ------------------------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class CellResult:
    cell: dict[str, Any]
    verdict: Verdict
    latency: LatencyDecision | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)  # accuracy, agreement, size: name, baseline, candidate, ok
    baseline: dict[str, Any] = field(default_factory=dict)  # p50_ms, accuracy, model_bytes ... of each side
    candidate: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    @property
    def name(self) -> str:
        c = self.cell
        return f"{c['model']} {c['format']}/{c['precision']} {c['runtime']} ×{c['threads']} on {c['device']}" + (
            " (estimated)" if c["kind"] == "estimated" else "")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["name"] = self.name
        return d


@dataclass(kw_only=True)
class GateResult:
    baseline: str
    candidate: str
    mode: Literal["stored", "ab"]
    budgets: GateBudgets
    cells: list[CellResult]
    only_in_baseline: list[dict[str, Any]] = field(default_factory=list)
    only_in_candidate: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {v: 0 for v in ("regression", "improvement", "no change", "no verdict", "failed")}
        for c in self.cells:
            out[c.verdict] += 1
        return out

    @property
    def exit_code(self) -> int:
        counts = self.counts()
        if counts["regression"] or counts["failed"]:
            return 1
        if self.budgets.fail_on_no_verdict and counts["no verdict"]:
            return 1
        return 0

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "edgestill.gate", "schema_version": 1, "baseline": self.baseline, "candidate": self.candidate,
                "mode": self.mode, "budgets": asdict(self.budgets), "counts": self.counts(), "exit_code": self.exit_code,
                "cells": [c.to_dict() for c in self.cells], "only_in_baseline": self.only_in_baseline,
                "only_in_candidate": self.only_in_candidate}  # fmt: skip


def device_of(m: Mapping[str, Any]) -> str:
    """The device a record was taken on, as cells are matched: a named device or profile id where there is one, else
    the CPU model (two CI runners of one type have different machine ids but the same CPU), else the machine id."""
    prov = m.get("provenance") or {}
    named = device_label(prov)
    if m.get("kind") == "estimated":
        return str(named or prov.get("device_id") or "?")
    if named and named != "host":
        return named
    return str(prov.get("cpu_model") or prov.get("device_id") or "?")


def cell_key(m: Mapping[str, Any]) -> tuple[Any, ...]:
    kind = "estimated" if m.get("kind") == "estimated" else "measured"
    return (m.get("artifact"), m.get("format"), m.get("precision"), device_of(m), m.get("runtime"), m.get("threads"), kind)


def _summary(m: Mapping[str, Any]) -> dict[str, Any]:
    acc = m.get("accuracy") or {}
    return {"kind": m.get("kind"), "p50_ms": m.get("p50_ms"), "p90_ms": m.get("p90_ms"), "cv_percent": m.get("cv_percent"),
            "n": m.get("n"), "low_ms": m.get("low_ms"), "high_ms": m.get("high_ms"), "accuracy": acc.get("value"),
            "teacher_top1_agreement": m.get("teacher_top1_agreement"), "model_bytes": m.get("model_bytes"),
            "run_id": m.get("run_id"), "stable": None if not m.get("stability") else bool(m["stability"].get("stable")),
            "error": m.get("error")}  # fmt: skip


def _budget_checks(base: Mapping[str, Any], cand: Mapping[str, Any], budgets: GateBudgets) -> list[dict[str, Any]]:
    checks = []
    ba, ca = (base.get("accuracy") or {}).get("value"), (cand.get("accuracy") or {}).get("value")
    if ba is not None and ca is not None:
        drop = (ba - ca) * 100
        checks.append({"name": "accuracy", "baseline": ba, "candidate": ca, "drop_points": round(drop, 3),
                       "budget_points": budgets.max_accuracy_drop_points, "ok": drop <= budgets.max_accuracy_drop_points})  # fmt: skip
    bt, ct = base.get("teacher_top1_agreement"), cand.get("teacher_top1_agreement")
    if bt is not None and ct is not None:
        drop = (bt - ct) * 100
        checks.append({"name": "teacher agreement", "baseline": bt, "candidate": ct, "drop_points": round(drop, 3),
                       "budget_points": budgets.max_agreement_drop_points, "ok": drop <= budgets.max_agreement_drop_points})  # fmt: skip
    bs, cs = base.get("model_bytes"), cand.get("model_bytes")
    if bs and cs:
        growth = (cs / bs - 1) * 100
        checks.append({"name": "size", "baseline": bs, "candidate": cs, "growth_percent": round(growth, 3),
                       "budget_percent": budgets.max_size_growth_percent, "ok": growth <= budgets.max_size_growth_percent})  # fmt: skip
    return checks


def _estimate_decision(base: Mapping[str, Any], cand: Mapping[str, Any], budgets: GateBudgets) -> LatencyDecision:
    """Estimates have no samples: their bands must not overlap and the ratio must pass the minimum effect."""
    b, c = base.get("p50_ms"), cand.get("p50_ms")
    if not b or not c:
        return LatencyDecision(verdict="no verdict", reason="an estimate without a latency")
    ratio, t = c / b, budgets.threshold
    bl, bh = base.get("low_ms") or b, base.get("high_ms") or b
    cl, ch = cand.get("low_ms") or c, cand.get("high_ms") or c
    if ratio >= t and cl > bh:
        return LatencyDecision(verdict="regression", ratio=ratio, test="estimate bands", reason=f"estimated {(ratio - 1) * 100:.1f}% slower")
    if ratio <= 1 / t and ch < bl:
        return LatencyDecision(verdict="improvement", ratio=ratio, test="estimate bands", reason=f"estimated {(1 - ratio) * 100:.1f}% faster")
    if 1 / t <= ratio <= t:
        return LatencyDecision(verdict="no change", ratio=ratio, test="estimate bands", reason=f"estimated ratio {ratio:.3f}")
    return LatencyDecision(verdict="no verdict", ratio=ratio, test="estimate bands",
                           reason=f"estimated ratio {ratio:.3f}, but the estimate bands overlap")


def compare_cell(base: Mapping[str, Any], cand: Mapping[str, Any], budgets: GateBudgets,
                 latency: LatencyDecision | None = None) -> CellResult:  # fmt: skip
    """Judge one cell: its latency (``latency`` when already decided, e.g. from an A/B run) and its budgets."""
    key = cell_key(cand)
    cell = dict(zip(CELL_FIELDS, key))
    out = CellResult(cell=cell, verdict="no verdict", baseline=_summary(base), candidate=_summary(cand))
    if cand.get("kind") == "failed":
        out.verdict, out.reason = "failed", f"the candidate failed to run: {str(cand.get('error') or '')[:300]}"
        return out
    if (cand.get("settings") or {}).get("rejected"):  # `bench --allow-rejected`: measured for diagnosis, never a pass
        why = (cand.get("settings") or {}).get("rejected_reason") or "it failed validation"
        out.verdict, out.reason = "failed", f"the candidate is a rejected file (measured with --allow-rejected): {why}"
        return out
    if (base.get("settings") or {}).get("rejected"):
        out.reason = "the baseline is a rejected file (measured with --allow-rejected): nothing to compare with"
        return out
    if base.get("kind") == "failed":
        out.reason = "the baseline failed to run in this cell: nothing to compare with"
        return out
    if latency is None:
        if key[-1] == "estimated":
            latency = _estimate_decision(base, cand, budgets)
        else:
            latency = decide_latency(base.get("samples_ms") or [], cand.get("samples_ms") or [], budgets,
                                     base_stability=base.get("stability"), cand_stability=cand.get("stability"))  # fmt: skip
    out.latency = latency
    out.checks = _budget_checks(base, cand, budgets)
    failed = [c for c in out.checks if not c["ok"]]
    if latency.verdict == "regression" or failed:
        out.verdict = "regression"
        out.reason = "; ".join(([f"latency {latency.reason}"] if latency.verdict == "regression" else []) +
                               [_check_text(c) for c in failed])  # fmt: skip
    else:
        out.verdict, out.reason = latency.verdict, f"latency {latency.reason}"
    return out


def _check_text(c: Mapping[str, Any]) -> str:
    if c["name"] == "size":
        return f"size grew {c['growth_percent']:.1f}% (budget {c['budget_percent']:g}%)"
    return f"{c['name']} dropped {c['drop_points']:.2f} points (budget {c['budget_points']:g})"


def gate(baseline: Sequence[Mapping[str, Any]], candidate: Sequence[Mapping[str, Any]], budgets: GateBudgets | None = None,
         *, baseline_name: str = "baseline", candidate_name: str = "candidate") -> GateResult:  # fmt: skip
    """Compare two sets of records cell by cell (the latest record of a cell on each side wins).

    Args:
        baseline, candidate: measurement records as flat dicts (``Measurement.to_dict(with_samples=True)`` or a store
            row with ``samples_ms``); estimates (``kind == "estimated"``) are matched only with estimates.

    Raises:
        InputError: the two sides have no cell in common (the message lists both sides' cells).
    """
    budgets = budgets or GateBudgets()
    base = {cell_key(m): m for m in baseline}
    cand = {_failed_on_baseline_device(m, base): m for m in candidate}
    common = [k for k in cand if k in base]
    if not common:
        raise InputError(
            f"{baseline_name} and {candidate_name} have no cell in common, so there is nothing to gate. A cell is "
            f"(model, format, precision, device, runtime, threads, measured|estimated). {baseline_name}: "
            f"{_list_cells(base)}; {candidate_name}: {_list_cells(cand)}. Benchmark the same artifacts with the same "
            "threads on the same kind of machine, or compare two artifacts directly with --ab."
        )
    cells = [compare_cell(base[k], cand[k], budgets) for k in common]
    return GateResult(
        baseline=baseline_name, candidate=candidate_name, mode="stored", budgets=budgets, cells=cells,
        only_in_baseline=[dict(zip(CELL_FIELDS, k)) for k in base if k not in cand],
        only_in_candidate=[dict(zip(CELL_FIELDS, k)) for k in cand if k not in base],
    )  # fmt: skip


def _failed_on_baseline_device(m: Mapping[str, Any], base: Mapping[tuple[Any, ...], Any]) -> tuple[Any, ...]:
    """A candidate cell that failed before its runner reported a machine has no device: it is the baseline's cell of
    the same (model, format, precision, runtime, threads) when there is exactly one, so a failure is judged, not
    dropped as a cell of an unknown device."""
    key = cell_key(m)
    if m.get("kind") != "failed" or key[3] != "?":
        return key
    same = [k for k in base if k[:3] == key[:3] and k[4:] == key[4:]]
    return same[0] if len(same) == 1 else key


def _list_cells(cells: Mapping[tuple[Any, ...], Any], limit: int = 6) -> str:
    names = [f"{k[0]} {k[1]}/{k[2]} {k[4]} ×{k[5]} on {k[3]} ({k[6]})" for k in cells]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "") if names else "none"


def ab_result(doc: Mapping[str, Any], budgets: GateBudgets | None = None, *, old_name: str, new_name: str) -> GateResult:
    """Judge the output of an interleaved A/B run (:mod:`edgestill.runtimes.ab`): the latency verdict from the paired
    blocks, the size budget from the two files, the two artifacts as one cell."""
    budgets = budgets or GateBudgets()
    blocks = doc["blocks"]
    log_ratios = [math.log(float(np.median(b["new_ms"])) / float(np.median(b["old_ms"]))) for b in blocks]
    decision = decide_paired(log_ratios, budgets)
    records = {}
    for side in ("old", "new"):
        info, samples = doc[side], [v for b in blocks for v in b[f"{side}_ms"]]
        records[side] = {**info, "artifact": info["artifact"], "kind": "measured", "samples_ms": samples,
                         "p50_ms": float(np.median(samples)), "n": len(samples), "provenance": doc.get("provenance", {})}  # fmt: skip
    # the two artifacts are one cell: the new one's identity, judged against the old one
    cell = compare_cell(records["old"], records["new"], budgets, latency=decision)
    cell.cell["model"] = records["new"]["artifact"] if records["new"]["artifact"] == records["old"]["artifact"] else (
        f"{records['old']['artifact']} → {records['new']['artifact']}")
    cell.baseline["blocks"] = cell.candidate["blocks"] = len(blocks)
    return GateResult(baseline=old_name, candidate=new_name, mode="ab", budgets=budgets, cells=[cell])


# -- loading the two sides ------------------------------------------------------------------------------------------


def load_records(spec: str, *, db: str | Path, role: str) -> tuple[list[dict[str, Any]], str]:
    """The records one side of a gate names, and a display name for it.

    ``spec`` is a file (a results JSON written by ``edgestill bench --json``, ``edgestill run``/``demo``'s report.json,
    or a SQLite results store: its latest run) or a reference into the store ``db`` (run id, ``latest``, label, git
    ref or commit: every run it matches, the latest record of each cell winning).

    Raises:
        InputError: a missing, corrupt or foreign file, a JSON document of another schema or version, an unknown ref.
    """
    p = Path(spec)
    if p.is_file():
        with open(p, "rb") as f:
            head = f.read(16)
        if head == _SQLITE_MAGIC:
            return _from_store(p, "latest", role), f"{p} (latest run)"
        return _from_json(p, role), str(p)
    if p.suffix in (".json", ".db", ".sqlite") or "/" in spec:
        raise InputError(f"{role} {spec}: no such file. Pass a results JSON (edgestill bench --json > FILE), a results "
                         "store, or a reference to runs in --db (a run id, 'latest', a label, a git ref or a commit).")
    return _from_store(Path(db), spec, role), f"{spec} in {db}"


def _from_store(path: Path, ref: str, role: str) -> list[dict[str, Any]]:
    from edgestill.benchmarks.store import ResultsStore

    if not path.exists():
        raise InputError(f"the results store {path} does not exist, so the {role} {ref!r} cannot be looked up there. "
                         "Pass --db with the store your benchmarks wrote, or a results JSON file.")
    with ResultsStore.open_existing(path) as store:
        records: list[dict[str, Any]] = []
        for run_id in store.resolve_runs(ref):
            for m in store.measurements(run_id):
                m["samples_ms"] = store.samples(m["id"])
                records.append(m)
            records.extend(store.estimates(run_id))
    return records


def _from_json(path: Path, role: str) -> list[dict[str, Any]]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{role} {path} is neither a SQLite results store nor readable JSON ({exc}).") from None
    if not isinstance(doc, dict):
        raise InputError(f"{role} {path} is JSON but not an edgestill results document (a JSON object).")
    version = doc.get("schema_version")
    if doc.get("schema") == RESULTS_SCHEMA or "schema_version" in doc:
        if doc.get("schema") not in (RESULTS_SCHEMA, None) or version != RESULTS_SCHEMA_VERSION:
            raise InputError(
                f"{role} {path} has schema {doc.get('schema')!r} version {version!r}; this edgestill reads "
                f"{RESULTS_SCHEMA!r} version {RESULTS_SCHEMA_VERSION}. Regenerate it with this version's `edgestill "
                "bench --json`, or gate with the edgestill that wrote it."
            )
    if isinstance(doc.get("measurements"), list):
        records = doc["measurements"]
    elif isinstance(doc.get("artifacts"), list):  # a demo/run report.json
        records = [m for a in doc["artifacts"] if isinstance(a, dict) for m in a.get("measurements") or []]
    else:
        raise InputError(f"{role} {path} holds no measurements (keys: {', '.join(sorted(doc)[:12])}); pass the JSON of "
                         "`edgestill bench --json`, a report.json of `edgestill run`/`demo`, or a results store.")
    bad = [i for i, m in enumerate(records) if not isinstance(m, dict) or not {"artifact", "format", "precision"} <= set(m)]
    if bad:
        raise InputError(f"{role} {path}: measurement {bad[0]} is not a measurement record (needs artifact, format, "
                         "precision, runtime, threads).")
    return records


# -- renderers ------------------------------------------------------------------------------------------------------

_MARK = {"regression": "❌ regression", "improvement": "✅ improvement", "no change": "✅ no change",
         "no verdict": "⚠️ no verdict", "failed": "❌ failed"}  # fmt: skip


def _ms(v: Any) -> str:
    return "–" if v is None else f"{v:.3f}"


def to_markdown(result: GateResult) -> str:
    """A CI job summary: the verdict counts, then one row per cell."""
    counts = result.counts()
    status = "FAILED" if result.exit_code else "passed"
    lines = [f"## edgestill gate: {status}", "",
             f"{md_text(result.candidate)} vs {md_text(result.baseline)} ({'interleaved A/B' if result.mode == 'ab' else 'stored runs'}); "
             f"minimum effect {result.budgets.min_effect_percent:g}%, α={result.budgets.alpha:g}.", "",
             " · ".join(f"{k}: {v}" for k, v in counts.items() if v), "",
             "| cell | baseline p50 ms | candidate p50 ms | ratio [CI] | accuracy | size | verdict |",
             "|---|---:|---:|---|---|---|---|"]  # fmt: skip
    for c in result.cells:
        lat = c.latency
        ratio = "–" if lat is None or lat.ratio is None else (
            f"{lat.ratio:.3f}" + (f" [{lat.ci_low:.3f}, {lat.ci_high:.3f}]" if lat.ci_low is not None else ""))
        acc = next((ch for ch in c.checks if ch["name"] == "accuracy"), None)
        size = next((ch for ch in c.checks if ch["name"] == "size"), None)
        acc_s = "–" if acc is None else f"{acc['baseline'] * 100:.2f} → {acc['candidate'] * 100:.2f}"
        size_s = "–" if size is None else f"{size['growth_percent']:+.1f}%"
        lines.append(f"| {md_text(c.name)} | {_ms(c.baseline.get('p50_ms'))} | {_ms(c.candidate.get('p50_ms'))} | {ratio} | "
                     f"{acc_s} | {size_s} | {_MARK[c.verdict]} |")
    notes = [c for c in result.cells if c.verdict in ("regression", "failed", "no verdict")]
    if notes:
        lines += ["", "**Why**", ""] + [f"- {md_text(c.name)}: {md_text(c.reason)}" for c in notes]
    for title, cells in (("only in the baseline", result.only_in_baseline), ("only in the candidate", result.only_in_candidate)):
        if cells:
            lines += ["", f"Cells {title} (not gated): " + ", ".join(md_text(f"{c['model']} {c['format']}/{c['precision']} "
                                                                            f"×{c['threads']}") for c in cells)]  # fmt: skip
    return "\n".join(lines) + "\n"


def to_junit(result: GateResult) -> str:
    """JUnit XML: one test case per cell; a regression or failure is a <failure>, no verdict a <skipped>."""
    from xml.etree import ElementTree as ET

    counts = result.counts()
    suite = ET.Element("testsuite", name="edgestill-gate", tests=str(len(result.cells)),
                       failures=str(counts["regression"] + counts["failed"]), skipped=str(counts["no verdict"]), errors="0")  # fmt: skip
    for c in result.cells:
        case = ET.SubElement(suite, "testcase", classname=f"edgestill.gate.{c.cell['model']}",
                             name=f"{c.cell['format']}/{c.cell['precision']} {c.cell['runtime']} x{c.cell['threads']} on "
                                  f"{c.cell['device']} ({c.cell['kind']})")  # fmt: skip
        if c.verdict in ("regression", "failed"):
            ET.SubElement(case, "failure", message=c.reason[:500], type=c.verdict).text = c.reason
        elif c.verdict == "no verdict":
            if result.budgets.fail_on_no_verdict:
                ET.SubElement(case, "failure", message=c.reason[:500], type="no verdict").text = c.reason
            else:
                ET.SubElement(case, "skipped", message=c.reason[:500])
        ET.SubElement(case, "system-out").text = json.dumps(c.to_dict(), default=str)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)


def cells_text(cells: Iterable[CellResult]) -> list[str]:
    """One console line per cell: verdict, name, reason."""
    return [f"{c.verdict:>11}  {c.name}: {c.reason}" for c in cells]


# -- the two entry points the CLI calls -------------------------------------------------------------------------------


def gate_stored(baseline: str, candidate: str, *, db: str | Path, budgets: GateBudgets | None = None) -> GateResult:
    """Gate ``candidate`` against ``baseline``, each a file or a reference into the store ``db`` (see
    :func:`load_records`)."""
    base, base_name = load_records(baseline, db=db, role="baseline")
    cand, cand_name = load_records(candidate, db=db, role="candidate")
    return gate(base, cand, budgets, baseline_name=base_name, candidate_name=cand_name)


def gate_ab(old: str | Path, new: str | Path, *, budgets: GateBudgets | None = None, threads: int = 1,
            runtime: str | None = None, blocks: int = 30, block_seconds: float = 0.05) -> GateResult:  # fmt: skip
    """Benchmark ``old`` and ``new`` interleaved on this machine and gate ``new`` against ``old`` on the paired blocks.

    Raises:
        InputError: a missing or bad artifact.
        RuntimeFailure: the runner failed.
    """
    from edgestill.artifact import Artifact
    from edgestill.benchmarks.bench import benchmark_ab
    from edgestill.runtimes.base import RuntimeOptions

    for p in (old, new):
        Artifact.load(p)  # a missing or foreign file fails here, before a process starts
    doc = benchmark_ab(old, new, runtime=runtime, options=RuntimeOptions(threads=threads), blocks=blocks,
                       block_seconds=block_seconds)  # fmt: skip
    return ab_result(doc, budgets, old_name=str(old), new_name=str(new))
