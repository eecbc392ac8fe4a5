"""A metric across the stored runs, and the runs where it stepped up or down (change points, not run-to-run ratios).

``analyze`` (and ``change_points``) is a pure function of one series; ``history`` reads the results store, builds one
series per cell (model, format, precision, device, runtime, threads) and names the run (git ref, commit) where each
new level starts.

The rule, with the reasons (every threshold is a keyword of ``analyze``):

1. **Scale.** Values are compared as logs, so a step is a ratio: 0.40 → 0.46 ms counts as 4.0 → 4.6 ms does. A
   series with a value <= 0 (a KL of 0) is compared as it is.
2. **Noise.** ``sigma`` is the run-to-run noise read from the first differences (``noise_sigma``): a difference
   cancels the level, so a step or an outlier run moves only one or two of them and a drift moves them all alike.
3. **Candidates.** A Hampel filter (5-run window, 3·sigma) replaces isolated outlier runs by the local median; the
   optimal partition of the filtered series (squared error in units of sigma², a penalty of 2·ln(n) per change
   point, the SIC for a mean shift, every level at least ``min_size`` runs) proposes the change points. Unlike
   splitting one point at a time, it also finds a level that comes and goes (a regression fixed a few runs later).
4. **Validation** of each proposed point, between the two levels that meet there (the weakest failing point is
   dropped and its neighbours re-checked until every point passes):

   - *effect*: the medians of the two levels differ by at least ``min_effect`` (5%, the gate's minimum effect);
   - *significance* at ``alpha`` Bonferroni-corrected for every position a step could have been placed
     (n − 2·min_size + 1), which pays for having searched: a Mann–Whitney U test of the two levels' runs when they
     are long enough for it to reach that level, else the median difference in units of its noise,
     ``|Δ| / (sigma·sqrt(π/2·(1/n1 + 1/n2)))``, against the normal quantile;
   - *a level, not outliers*: a level shorter than 5 runs counts only when every one of its runs lies past the
     midpoint of the two levels, so one or two wild runs at the end do not make a new level;
   - *abrupt, not a drift*: the medians of the ``window`` runs either side of the point differ by ``min_effect`` in
     the same direction, and the two levels fit the runs between the neighbouring points better than a straight
     line does by more than the SIC penalty (``n·ln(RSS_line / RSS_step) > 2·ln(n)``). A drift is a line; it is
     reported by ``Analysis.drift`` (Theil–Sen slope within the levels, Mann–Kendall test), not as a step.

Measured on seeded synthetic series of 30 runs (200 seeds each, tests/benchmarks/test_history.py), Gaussian noise of
3% a run: a false step in 0/200 flat series (1/200 with Student-t noise); a 15% step found within a run in 197/200
in the middle and 184/200 in the last 3 runs; two steps both found in 190/200, a regression fixed 4 runs later
(up, then down) in 175/200; a run at twice the level a step in 0/200 in the middle and 1/200 as the last run; a 10%
drift over 30 runs a step in 9/200 (of 6-11%: at this noise a drift and a 5% step look alike; 1/200 with 2% noise,
0/200 with 1%). With 5% noise the same 15% step is found in 151/200 (middle) and 85/200 (last 3 runs): three runs
cannot show a step of three times the noise after a search over 25 positions. A new level held by fewer than
``min_size`` runs (a step in the last two runs) is not reported yet.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np

from edgestill.benchmarks.gate import device_of
from edgestill.errors import InputError, UnknownNameError, did_you_mean
from edgestill.record import device_label

if TYPE_CHECKING:
    from edgestill.benchmarks.store import ResultsStore

METRICS: dict[str, str] = {  # metric -> unit
    "p50_ms": "ms", "p90_ms": "ms", "p99_ms": "ms", "mean_ms": "ms", "cv_percent": "%", "accuracy": "",
    "teacher_top1_agreement": "", "teacher_kl": "nats", "model_bytes": "bytes", "peak_rss_mb": "MB", "init_ms": "ms",
}  # fmt: skip

ALPHA = 0.01  # the significance level of steps and drifts (the gate's)
_MAD_TO_SIGMA = 1.4826  # MAD of a normal sample × this = its standard deviation
_CLIP_SIGMAS = 3.0
_CLIPPED_VARIANCE = 0.9733  # the variance of a unit normal clipped to ±3
_HAMPEL_HALF_WIDTH = 2  # the filter's window: the run, 2 before and 2 after
_HAMPEL_SIGMAS = 3.0
_SHORT_LEVEL = 5  # a level shorter than this must have every run past the midpoint


@dataclass(frozen=True, kw_only=True)
class ChangePoint:
    """A step in a series: ``index`` is the first run of the new level."""

    index: int
    before: float  # median of the level before (the metric's unit)
    after: float  # median of the level from ``index`` on
    relative_change: float  # after / before − 1
    z: float  # the median difference in units of its noise
    p_value: float | None  # Mann–Whitney U (two-sided); None where the levels were too short for it
    n_before: int  # runs in the level before
    n_after: int

    @property
    def direction(self) -> str:
        return "up" if self.relative_change > 0 else "down"


@dataclass(frozen=True, kw_only=True)
class Drift:
    """A gradual change within the levels: the Theil–Sen slope over pairs of runs within one level (a step is not a
    slope), and the Mann–Kendall test of it summed over the levels."""

    relative_change: float  # over the whole series, first run to last
    per_run: float
    p_value: float  # two-sided


@dataclass(frozen=True, kw_only=True)
class Analysis:
    """What ``analyze`` found in one series."""

    change_points: list[ChangePoint]
    drift: Drift | None  # None for fewer than 4 runs
    noise: float  # run-to-run noise: relative (0.03 = 3%) on the log scale, else in the metric's unit
    log: bool  # whether the series was compared as logs (ratios)


def noise_sigma(x: Sequence[float] | np.ndarray) -> float:
    """The robust run-to-run noise of a series, from its first differences (0 for fewer than 3 values).

    The differences' MAD gives a first scale; the differences within 3 such scales of their median then give the
    estimate, as their root mean square (corrected for the clipping) over √2. The clip keeps the MAD's robustness (a
    step or an outlier run moves one or two differences past it) at nearly the efficiency of a standard deviation.
    On 30 runs of 3% noise (200 seeds) the MAD alone read 1.8-4.4% (5th-95th percentile), this 2.1-3.9%; the
    noise test and the outlier filter are scaled by it.
    """
    d = np.diff(np.asarray(x, dtype=np.float64))
    if d.size < 2:
        return 0.0
    centred = d - np.median(d)
    scale = _MAD_TO_SIGMA * float(np.median(np.abs(centred)))
    kept = centred[np.abs(centred) <= _CLIP_SIGMAS * scale]
    if scale == 0.0 or kept.size < 2:
        return scale / math.sqrt(2.0)
    return math.sqrt(float(kept @ kept) / (kept.size - 1) / _CLIPPED_VARIANCE) / math.sqrt(2.0)


def change_points(values: Sequence[float] | np.ndarray, **options: Any) -> list[ChangePoint]:
    """Where a series steps to a new level that persists: ``analyze(values, **options).change_points``."""
    return analyze(values, **options).change_points


def analyze(
    values: Sequence[float] | np.ndarray,
    *,
    min_effect: float = 0.05,
    min_size: int = 3,
    alpha: float = ALPHA,
    window: int = 3,
    log: bool = True,
) -> Analysis:
    """The steps, the drift and the noise of one series (the rule is in the module docstring).

    Args:
        values: one value per run, oldest first.
        min_effect: the smallest relative level change reported (0.05 = 5%).
        min_size: the fewest runs a level must hold: 3, so that one or two wild runs are never a level.
        alpha: the significance level, Bonferroni-corrected for the positions a step was searched at (0.01, the
            gate's level: a history that cries wolf is not read).
        window: runs either side of a point whose medians must show the step on their own (a step is abrupt).
        log: compare logs (ratios); ignored (compared as they are) when a value is <= 0.

    Returns:
        The change points in run order, the drift within the levels, and the noise.

    Raises:
        InputError: a value that is not finite, or a parameter out of range.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(v)):
        raise InputError(f"the series holds {int((~np.isfinite(v)).sum())} non-finite value(s); pass finite values only.")
    if not 0.0 < min_effect < 10.0 or min_size < 1 or window < 1 or not 0.0 < alpha < 1.0:
        raise InputError(f"analyze needs 0 < min_effect < 10 (got {min_effect}), min_size >= 1 ({min_size}), "
                         f"window >= 1 ({window}) and 0 < alpha < 1 ({alpha}).")  # fmt: skip
    n = v.size
    use_log = log and bool(np.all(v > 0))
    x = np.log(v) if use_log else v
    sigma = max(noise_sigma(x), 1e-9 * max(1.0, float(np.median(np.abs(x))) if n else 1.0))
    if n < 2 * min_size:
        return Analysis(change_points=[], drift=_drift(x, [], use_log), noise=sigma, log=use_log)
    y = _hampel(x, sigma)
    cps, _ = _optimal_partition(y, sigma, min_size, penalty=2.0 * math.log(n))
    rule = _Rule(x, y, sigma, min_effect, alpha / (n - 2 * min_size + 1), window, use_log)
    while True:
        bounds = [0, *cps, n]
        checked = [rule.check(bounds[i], bounds[i + 1], bounds[i + 2]) for i in range(len(cps))]
        failing = [i for i, (ok, _) in enumerate(checked) if not ok]
        if not failing:
            break
        del cps[min(failing, key=lambda i: abs(checked[i][1].z))]  # the weakest goes; its neighbours are re-checked
    return Analysis(change_points=[cp for _, cp in checked], drift=_drift(y, cps, use_log), noise=sigma, log=use_log)


def _drift(x: np.ndarray, cps: Sequence[int], log: bool) -> Drift | None:
    if x.size < 4:
        return None
    slope, p_value = _within_level_slope(x, cps)
    n = x.size
    if log:
        return Drift(relative_change=math.expm1(slope * (n - 1)), per_run=math.expm1(slope), p_value=p_value)
    base = abs(float(np.median(x))) or 1.0
    return Drift(relative_change=slope * (n - 1) / base, per_run=slope / base, p_value=p_value)


def _within_level_slope(y: np.ndarray, cps: Sequence[int]) -> tuple[float, float]:
    """Theil–Sen slope over the pairs of runs within the same level, and the two-sided p-value of the Mann–Kendall
    statistic summed over the levels (normal approximation with continuity correction; ties not corrected for)."""
    from scipy.stats import norm

    slopes, s_stat, var = [], 0.0, 0.0
    bounds = [0, *cps, y.size]
    for a, b in pairwise(bounds):
        m = b - a
        if m < 2:
            continue
        i, j = np.triu_indices(m, k=1)
        diff = y[a + j] - y[a + i]
        slopes.append(diff / (j - i))
        s_stat += float(np.sign(diff).sum())
        var += m * (m - 1) * (2 * m + 5) / 18.0
    if not slopes:
        return 0.0, 1.0
    z = max(abs(s_stat) - 1.0, 0.0) / math.sqrt(var)
    return float(np.median(np.concatenate(slopes))), float(min(1.0, 2.0 * norm.sf(z)))


def _hampel(x: np.ndarray, sigma: float) -> np.ndarray:
    """x with each value more than 3·sigma from the median of its 5-run window replaced by that median."""
    y = x.copy()
    for i in range(x.size):
        med = float(np.median(x[max(0, i - _HAMPEL_HALF_WIDTH) : i + _HAMPEL_HALF_WIDTH + 1]))
        if abs(x[i] - med) > _HAMPEL_SIGMAS * sigma:
            y[i] = med
    return y


def _optimal_partition(y: np.ndarray, sigma: float, min_size: int, penalty: float) -> tuple[list[int], float]:
    """The segmentation minimising Σ squared deviations from each segment's mean / sigma² + penalty per change
    point, every segment at least ``min_size`` long (dynamic programming over the last segment's start, O(n²)), and
    its cost."""
    n = y.size
    s1 = np.concatenate([[0.0], np.cumsum(y)])
    s2 = np.concatenate([[0.0], np.cumsum(y * y)])
    best = np.full(n + 1, np.inf)
    best[0] = -penalty
    prev = np.zeros(n + 1, dtype=np.int64)
    for t in range(min_size, n + 1):
        starts = np.arange(0, t - min_size + 1)
        starts = starts[(starts == 0) | (starts >= min_size)]
        cost = (s2[t] - s2[starts]) - (s1[t] - s1[starts]) ** 2 / (t - starts)
        total = best[starts] + cost / sigma**2 + penalty
        j = int(np.argmin(total))
        best[t], prev[t] = total[j], starts[j]
    cps, t = [], n
    while t > 0:
        t = int(prev[t])
        if t > 0:
            cps.append(t)
    return sorted(cps), float(best[n])


@dataclass(frozen=True)
class _Rule:
    """The validation of one proposed change point k between the levels x[a:k] and x[k:b]."""

    x: np.ndarray  # the series (logs where compared as logs)
    y: np.ndarray  # the same with isolated outlier runs replaced (Hampel filter)
    sigma: float
    min_effect: float
    level: float  # alpha, Bonferroni-corrected
    window: int
    log: bool

    def _relative(self, before: float, after: float) -> float:
        if self.log:
            return math.expm1(after - before)
        return (after - before) / abs(before) if before else math.copysign(math.inf, after - before)

    def check(self, a: int, k: int, b: int) -> tuple[bool, ChangePoint]:
        from scipy.stats import mannwhitneyu, norm

        left, right = self.x[a:k], self.x[k:b]
        lo, hi = float(np.median(left)), float(np.median(right))
        delta, relative = hi - lo, self._relative(lo, hi)
        z = delta / (self.sigma * math.sqrt(math.pi / 2 * (1 / left.size + 1 / right.size)))
        p_value = None
        # the smallest p-value a rank test of these sizes can give is 2 / C(n1 + n2, n1)
        if math.log(2.0) - _log_comb(b - a, k - a) <= math.log(self.level):
            p_value = float(mannwhitneyu(left, right, alternative="two-sided").pvalue)
            significant = p_value <= self.level
        else:
            significant = abs(z) >= float(norm.isf(self.level / 2))
        short, side = (left, -1.0) if left.size < right.size else (right, 1.0)
        if short.size < _SHORT_LEVEL:
            significant = significant and bool(np.all(side * np.sign(delta) * (short - (lo + hi) / 2) > 0))
        local_lo = float(np.median(self.x[max(a, k - self.window) : k]))
        local_hi = float(np.median(self.x[k : min(b, k + self.window)]))
        abrupt = (np.sign(local_hi - local_lo) == np.sign(delta) and abs(self._relative(local_lo, local_hi)) >= self.min_effect
                  and self._step_beats_line(a, k, b))  # fmt: skip
        ok = abs(relative) >= self.min_effect and significant and bool(abrupt)
        before, after = (math.exp(lo), math.exp(hi)) if self.log else (lo, hi)
        return ok, ChangePoint(index=k, before=before, after=after, relative_change=relative, z=z, p_value=p_value,
                               n_before=left.size, n_after=right.size)  # fmt: skip

    def _step_beats_line(self, a: int, k: int, b: int) -> bool:
        """Two levels fit y[a:b] better than a straight line by more than the SIC penalty: the Gaussian likelihood
        ratio with the variance unknown, n·ln(RSS_line / RSS_step) > 2·ln(n). A drift is a line."""
        y = self.y[a:b]
        t = np.arange(y.size, dtype=np.float64)
        slope, intercept = np.polyfit(t, y, 1)
        rss_line = float(np.sum((y - (slope * t + intercept)) ** 2))
        rss_step = float(np.sum((y[: k - a] - y[: k - a].mean()) ** 2) + np.sum((y[k - a :] - y[k - a :].mean()) ** 2))
        floor = y.size * (1e-12 * max(1.0, float(np.abs(y).max()))) ** 2  # two exact levels: no division by zero
        return y.size * math.log((rss_line + floor) / (rss_step + floor)) > 2.0 * math.log(y.size)


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def history(
    store: ResultsStore,
    *,
    metric: str,
    model: str,
    device: str | None = None,
    format: str | None = None,
    precision: str | None = None,
    runtime: str | None = None,
    threads: int | None = None,
    include_estimates: bool = False,
    min_effect: float = 0.05,
) -> dict[str, Any]:
    """One metric of one model across the stored runs, per cell, with the runs where it stepped up or down.

    A cell is (model, format, precision, device, runtime, threads) as the gate matches them (the device is a named
    device or the CPU model, so CI runners of one type share a cell). A run that measured a cell more than once
    (interleaved rounds) contributes the median of its values. Estimates form their own series (``kind:
    estimated``), only with ``include_estimates``; measured and estimated values never share a series.

    Args:
        store: an open results store.
        metric: one of ``METRICS`` (``accuracy`` is the accuracy's value).
        model: the artifact name, exactly.
        device: a device id (or a unique prefix of one), a machine, or a cell's device name.
        format, precision, runtime, threads: keep only cells with these values.
        include_estimates: add the estimated series.
        min_effect: the smallest relative step reported (0.05 = 5%).

    Returns:
        ``{"metric", "unit", "model", "device", "filters", "min_effect", "cells": [...]}``; each cell holds its keys,
        ``kind``, ``series`` (``run_id``, ``created_at``, ``git_ref``, ``git_commit``, ``label``, ``value``,
        ``stable``, ``records``), ``noise_percent`` (log scale) or ``noise`` (the metric's unit), ``change_points``
        (the run where the new level starts, its git ref and commit, before and after level, relative change,
        ``summary`` as one line of text) and ``drift`` (when significant and at least ``min_effect`` over the
        series, else None).

    Raises:
        InputError: an unknown metric (the valid ones and the closest are named), a store without runs, or no record
            that matches (the models, devices or values the store holds are listed).
    """
    if metric not in METRICS:
        raise UnknownNameError("metric", metric, METRICS)
    runs = {r["id"]: r for r in store.runs()}
    if not runs:
        raise InputError(f"the results store {store.path} holds no runs. Run `edgestill bench` or `edgestill run` "
                         "with --db pointing at it first.")  # fmt: skip
    rows = [m for m in store.measurements(artifact=model) if m["kind"] == "measured"]
    if include_estimates:
        rows += [{**e, "kind": "estimated"} for e in store.estimates() if e["artifact"] == model]
    if not rows:
        models = sorted({m["artifact"] for m in [*store.measurements(), *store.estimates()] if m["kind"] != "failed"})
        raise InputError(f"no stored measurement of model {model!r} in {store.path}.{did_you_mean(model, models)} "
                         f"Its models: {_listing(models)}. --model takes the artifact name as `edgestill bench` "
                         "stored it.")  # fmt: skip
    if device is not None:
        rows = _on_device(rows, device, runs, model)
    for option, key, wanted in (("--format", "format", format), ("--precision", "precision", precision),
                                ("--runtime", "runtime", runtime), ("--threads", "threads", threads)):  # fmt: skip
        if wanted is None:
            continue
        kept = [m for m in rows if m[key] == wanted]
        if not kept:
            have = sorted({str(m[key]) for m in rows})
            raise InputError(f"no stored record of {model!r} has {option} {wanted!r}; those that match so far have "
                             f"{_listing(have)}.")  # fmt: skip
        rows = kept
    valued = [(m, _value(m, metric)) for m in rows]
    valued = [(m, v) for m, v in valued if v is not None]
    if not valued:
        raise InputError(f"none of the {len(rows)} stored record(s) of {model!r} that match carries {metric}"
                         + (" (accuracy is measured when bench or run is given labelled data)" if metric == "accuracy" else "")
                         + ". Pick another --metric.")  # fmt: skip
    cells: dict[tuple[Any, ...], dict[int, list[tuple[dict[str, Any], float]]]] = defaultdict(lambda: defaultdict(list))
    for m, v in valued:
        key = (m["artifact"], m["format"], m["precision"], device_of(m), m["runtime"], m["threads"], m["kind"])
        cells[key][m["run_id"]].append((m, v))
    out = [_cell(key, by_run, runs, metric, min_effect) for key, by_run in sorted(cells.items(), key=lambda c: str(c[0]))]
    filters = {"format": format, "precision": precision, "runtime": runtime, "threads": threads,
               "include_estimates": include_estimates}  # fmt: skip
    return {"metric": metric, "unit": METRICS[metric], "model": model, "device": device, "filters": filters,
            "min_effect": min_effect, "cells": out}  # fmt: skip


def _value(m: dict[str, Any], metric: str) -> float | None:
    if metric == "accuracy":
        acc = m.get("accuracy")
        return None if not acc or acc.get("value") is None else float(acc["value"])
    v = m.get(metric)
    return None if v is None else float(v)


def _on_device(rows: list[dict[str, Any]], device: str, runs: dict[int, dict[str, Any]], model: str) -> list[dict[str, Any]]:
    """The rows taken on ``device``: a device id, machine or cell device equal to it, else a unique device-id prefix."""

    def names(m: dict[str, Any]) -> set[str]:
        prov = m.get("provenance") or {}
        found = {device_of(m), prov.get("device_id"), device_label(prov), runs.get(m["run_id"], {}).get("machine")}
        return {str(n) for n in found if n}

    exact = [m for m in rows if device in names(m)]
    if exact:
        return exact
    ids = sorted({str(m["provenance"]["device_id"]) for m in rows if (m.get("provenance") or {}).get("device_id")})
    prefixed = [i for i in ids if i.startswith(device)]
    if len(prefixed) == 1:
        return [m for m in rows if (m.get("provenance") or {}).get("device_id") == prefixed[0]]
    if len(prefixed) > 1:
        raise InputError(f"--device {device!r} is the prefix of {len(prefixed)} device ids: {_listing(prefixed)}. "
                         "Give more of the id.")  # fmt: skip
    held = sorted(set().union(*(names(m) for m in rows)))
    raise InputError(f"no stored record of {model!r} was taken on device {device!r}.{did_you_mean(device, held)} "
                     f"Its devices (ids, machines, CPU models): {_listing(held)}.")  # fmt: skip


def _cell(key: tuple[Any, ...], by_run: dict[int, list[tuple[dict[str, Any], float]]], runs: dict[int, dict[str, Any]],
          metric: str, min_effect: float) -> dict[str, Any]:  # fmt: skip
    model, fmt, precision, device, runtime, threads, kind = key
    series = []
    for run_id in sorted(by_run):
        entries, run = by_run[run_id], runs.get(run_id, {})
        flags = [(m.get("stability") or {}).get("stable") for m, _ in entries]
        stable = None if any(f is None for f in flags) else all(flags)
        series.append({"run_id": run_id, "created_at": run.get("created_at"), "git_ref": run.get("git_ref"),
                       "git_commit": run.get("git_commit"), "label": run.get("label"),
                       "value": float(np.median([v for _, v in entries])), "stable": stable, "records": len(entries)})  # fmt: skip
    found = analyze([s["value"] for s in series], min_effect=min_effect)
    unit = METRICS[metric]
    points = []
    for cp in found.change_points:
        at = series[cp.index]
        point = {"run_id": at["run_id"], "git_ref": at["git_ref"], "git_commit": at["git_commit"], "label": at["label"],
                 "created_at": at["created_at"], "direction": cp.direction, **asdict(cp)}  # fmt: skip
        point["summary"] = describe(metric, unit, point)
        points.append(point)
    drift = None
    if found.drift and found.drift.p_value <= ALPHA and abs(found.drift.relative_change) >= min_effect:
        drift = asdict(found.drift)
    cell = {"model": model, "format": fmt, "precision": precision, "device": device, "runtime": runtime,
            "threads": threads, "kind": kind, "series": series, "change_points": points, "drift": drift}  # fmt: skip
    if found.log:
        cell["noise_percent"] = 100.0 * found.noise
    else:
        cell["noise"] = found.noise
    return cell


def describe(metric: str, unit: str, point: dict[str, Any]) -> str:
    """One line for a change point: ``p50_ms stepped up 15.2% at run 14 (main, 1a2b3c4d): 0.402 → 0.463 ms``."""
    where = ", ".join(str(w) for w in (point.get("git_ref"), (point.get("git_commit") or "")[:8] or None) if w)
    rel = point["relative_change"]
    size = f"{abs(rel) * 100:.1f}%" if math.isfinite(rel) else "from 0"
    return (f"{metric} stepped {point['direction']} {size} at run {point['run_id']}" + (f" ({where})" if where else "")
            + f": {_number(point['before'])} → {_number(point['after'])}" + (f" {unit}" if unit else ""))


def _number(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def _listing(names: Sequence[str], limit: int = 12) -> str:
    if not names:
        return "none"
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
