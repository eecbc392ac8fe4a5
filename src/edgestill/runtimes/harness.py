"""The timing protocol (DESIGN "Measurement method"): first call, warm-up, steady state, per-call ns clock.

Torch-free and runtime-free: it times any :class:`edgestill.runtimes.base.Session`. Init (load + compile)
is timed by the caller around ``load``; this module starts from a loaded session.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import numpy as np

from edgestill.record import LatencyStats
from edgestill.stats import (
    MAX_DRIFT_PERCENT,
    MAX_OUTLIER_PERCENT,
    MAX_ROBUST_CV_PERCENT,
    STABILITY_SEGMENTS,
    Stability,
    stability,
    summarize,
)
from edgestill.errors import ConfigError

StopReason = Literal["count_and_duration", "max_runs", "max_seconds"]
Extension = Literal["none", "recovered", "capped", "disabled"]
# While extending, a window is re-checked after each block of max(n / segments, MIN_BLOCK_RUNS) runs (a block's median
# is a level the window reached; fewer than 10 runs make too noisy a median) that also lasted CHECK_COST_RATIO times
# the previous check (so checking costs at most a tenth of the time, even for a model that runs in microseconds).
MIN_BLOCK_RUNS = 10
CHECK_COST_RATIO = 10
Clock = Literal["runtime", "wall"]
CLOCKS: tuple[str, ...] = ("runtime", "wall")


@dataclass(frozen=True, kw_only=True)
class BenchOptions:
    """When steady state stops: after BOTH ``min_runs`` calls and ``min_seconds``, or at either cap.

    ``paced_hz`` spaces calls at a fixed rate (a camera at 30 Hz) instead of back to back; the sleep is
    outside the timed region. ``cv_warn_percent``: a steady-state CV above it adds a warning.
    ``clock``: ``runtime`` (default) reports the runtime's own per-call duration where the runtime keeps one
    (OpenVINO's InferRequest.latency, what benchmark_app reports; it leaves out the Python binding's few
    microseconds) and the wall clock around the call elsewhere; ``wall`` always reports the wall clock.
    The wall-clock figures are recorded either way.

    Stability (see :func:`edgestill.stats.stability`): once the stop rule is met, the window is checked for drift
    between its parts, a wide robust spread and many outliers against the ``stability_max_*`` bounds. An unstable
    window is extended until a stable stretch is found or the steady state has lasted ``stability_max_seconds`` (5 s
    by default, benchmark_app's window; never past ``max_seconds``, and ``max_runs`` holds too), then flagged.
    ``stability_max_seconds=0`` turns the extension off (an unstable window is only flagged); a window that is
    already as long as the cap is not extended.
    """

    min_runs: int = 50
    min_seconds: float = 1.0
    max_runs: int = 10000
    max_seconds: float = 30.0
    warmup_runs: int = 10
    paced_hz: float | None = None
    cv_warn_percent: float = 10.0
    clock: Clock = "runtime"
    stability_max_seconds: float = 5.0
    stability_max_drift_percent: float = MAX_DRIFT_PERCENT
    stability_max_cv_percent: float = MAX_ROBUST_CV_PERCENT
    stability_max_outlier_percent: float = MAX_OUTLIER_PERCENT

    def __post_init__(self) -> None:
        problems = []
        if self.min_runs < 1:
            problems.append(f"min_runs must be >= 1 (got {self.min_runs})")
        if self.max_runs < self.min_runs:
            problems.append(f"max_runs ({self.max_runs}) must be >= min_runs ({self.min_runs})")
        if self.min_seconds < 0:
            problems.append(f"min_seconds must be >= 0 (got {self.min_seconds})")
        if self.max_seconds <= 0 or self.max_seconds < self.min_seconds:
            problems.append(f"max_seconds ({self.max_seconds}) must be > 0 and >= min_seconds ({self.min_seconds})")
        if self.warmup_runs < 0:
            problems.append(f"warmup_runs must be >= 0 (got {self.warmup_runs})")
        if self.paced_hz is not None and not self.paced_hz > 0:
            problems.append(f"paced_hz must be > 0 or unset (got {self.paced_hz})")
        if not self.cv_warn_percent > 0:
            problems.append(f"cv_warn_percent must be > 0 (got {self.cv_warn_percent})")
        if self.clock not in CLOCKS:
            problems.append(f"clock must be one of {', '.join(CLOCKS)} (got {self.clock!r})")
        if not self.stability_max_seconds >= 0:
            problems.append(
                f"stability_max_seconds must be >= 0 (got {self.stability_max_seconds}; 0 turns the extension off)"
            )
        for name in ("stability_max_drift_percent", "stability_max_cv_percent", "stability_max_outlier_percent"):
            value = getattr(self, name)
            if not value > 0:
                problems.append(f"{name} must be > 0 (got {value})")
        if problems:
            raise ConfigError(
                "invalid bench options: " + "; ".join(problems) + ". The defaults are min_runs=50, min_seconds=1.0, "
                "max_runs=10000, max_seconds=30, warmup_runs=10 (the LiteRT benchmark tool's >=50 runs and >=1 s), "
                f"stability_max_seconds=5 (benchmark_app's window), stability_max_drift_percent="
                f"{MAX_DRIFT_PERCENT:g}, stability_max_cv_percent={MAX_ROBUST_CV_PERCENT:g}, "
                f"stability_max_outlier_percent={MAX_OUTLIER_PERCENT:g}."
            )

    def check_stability(self, samples_ms: list[float] | np.ndarray) -> Stability:
        """:func:`edgestill.stats.stability` of ``samples_ms`` with these options' bounds."""
        return stability(
            samples_ms,
            segments=STABILITY_SEGMENTS,
            max_drift_percent=self.stability_max_drift_percent,
            max_cv_percent=self.stability_max_cv_percent,
            max_outlier_percent=self.stability_max_outlier_percent,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BenchOptions:
        """Build from a dict (a job file, a recipe); an unknown key is a ConfigError naming the valid ones."""
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ConfigError(f"unknown bench option(s) {unknown}; valid options: {', '.join(valid)}.")
        try:
            return cls(**d)
        except TypeError as exc:
            raise ConfigError(f"bad bench options {dict(d)}: {exc}. Valid options: {', '.join(valid)}.") from None


@dataclass(kw_only=True)
class TimingResult:
    """What :func:`time_session` measured; ``latency`` summarises ``samples_ms``.

    ``clock`` names what ``samples_ms`` were read from: ``wall`` or the runtime's clock (its session's
    ``clock_source``). ``wall_samples_ms``/``wall_latency`` are the wall-clock times of the same calls.
    ``stopped_by`` is why the stop rule ended the first window; ``stability`` says whether the reported samples are
    stable (:meth:`edgestill.stats.Stability.to_dict`) and how the window was extended to get there:
    ``extension`` (``none``: stable at once or too few samples to judge; ``recovered``: a stable stretch was found;
    ``capped``: extended to the cap; ``disabled``: unstable and not extended), ``extended_seconds``,
    ``cap_seconds``, ``runs_measured`` (all steady calls, ``samples_ms`` holds the reported ones), ``reported``
    (``all`` or ``last``) and ``first_check`` (the verdict on the first window). ``steady_seconds`` covers all of it.
    """

    first_ms: float
    warmup_ms: list[float]
    samples_ms: list[float]
    latency: LatencyStats
    clock: str
    wall_samples_ms: list[float]
    wall_latency: LatencyStats
    stopped_by: StopReason
    steady_seconds: float
    stability: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def warmup_ms_mean(self) -> float | None:
        return float(np.mean(self.warmup_ms)) if self.warmup_ms else None

    @property
    def stable(self) -> bool:
        """False when the reported samples were judged unstable."""
        return bool(self.stability.get("stable", True))


class _Sampler:
    """The steady-state calls of one session: each timed alone on the wall clock (and the runtime's, where used)."""

    def __init__(self, session: Any, feed: Any, own_clock: Any, period_ns: int):
        self.invoke, self.feed, self.own_clock, self.period_ns = session.invoke, feed, own_clock, period_ns
        self.wall_ns: list[int] = []
        self.runtime_ms: list[float] = []
        self.start = self.next_tick = time.perf_counter_ns()

    def __len__(self) -> int:
        return len(self.wall_ns)

    def call(self) -> int:
        """One timed call; returns the clock reading at its end."""
        if self.period_ns:
            self.next_tick += self.period_ns
        invoke, feed, clock = self.invoke, self.feed, time.perf_counter_ns  # no lookups inside the timed region
        t0 = clock()
        invoke(feed)
        t1 = clock()
        self.wall_ns.append(t1 - t0)
        if self.own_clock is not None:  # read after the timed region
            self.runtime_ms.append(self.own_clock())
        return t1

    def pace(self) -> None:
        """With ``paced_hz``, sleep until the next call is due (outside the timed region)."""
        if self.period_ns:
            wait_ns = self.next_tick - time.perf_counter_ns()
            if wait_ns > 0:
                time.sleep(wait_ns / 1e9)

    def reported(self, lo: int = 0) -> np.ndarray:
        """The reported clock's samples (ms) from run ``lo`` on."""
        if self.own_clock is not None:
            return np.asarray(self.runtime_ms[lo:], dtype=np.float64)
        return np.asarray(self.wall_ns[lo:], dtype=np.float64) / 1e6


def _within(samples_ms: np.ndarray, fastest_ms: float, drift_percent: float) -> bool:
    """True when the median of ``samples_ms`` is at most ``drift_percent`` above ``fastest_ms``."""
    return float(np.median(samples_ms)) <= (1.0 + drift_percent / 100.0) * fastest_ms


def _with_level(
    check: Stability, samples_ms: np.ndarray, fastest_ms: float, block_runs: int, drift_percent: float
) -> Stability:
    """``check`` made unstable, with a reason, when the window's median is more than ``drift_percent`` above its
    fastest block (a level shift that the window's segments, grown long, no longer show)."""
    if _within(samples_ms, fastest_ms, drift_percent):
        return check
    median_ms = float(np.median(samples_ms))
    reason = (
        f"the window's median ({median_ms:.4g} ms) is {100.0 * (median_ms / fastest_ms - 1.0):.1f}% above its fastest "
        f"stretch of {block_runs} runs ({fastest_ms:.4g} ms), more than the {drift_percent:g}% allowed: whatever "
        "slowed it had not ended at the cap"
    )
    return dataclasses.replace(check, stable=False, reasons=[*check.reasons, reason])


def _extend(sampler: _Sampler, opts: BenchOptions, cap_s: float) -> tuple[Stability, int, Extension]:
    """Keep sampling an unstable window until a stretch of it is stable or the cap is reached (see time_session).

    Returns:
        the verdict on the reported samples, the index of the first reported run, and how the extension ended.
    """
    n_base, cap_ns = len(sampler), int(cap_s * 1e9)
    drift = opts.stability_max_drift_percent
    block_runs = max(n_base // STABILITY_SEGMENTS, MIN_BLOCK_RUNS)
    first = sampler.reported()  # cut into blocks: the fastest block is the level a recovered stretch must be at
    block_medians = [float(np.median(b)) for b in np.array_split(first, max(1, first.size // block_runs))]
    check_ns, at_cap = 0, False
    while True:
        sampler.pace()
        lo, chunk_start = len(sampler), time.perf_counter_ns()
        while True:  # a block: block_runs calls, lasting long enough that the re-check below costs <= 1/10 of the time
            t1 = sampler.call()
            if t1 - sampler.start >= cap_ns or len(sampler) >= opts.max_runs:
                at_cap = True
                break
            if len(sampler) - lo >= block_runs and t1 - chunk_start >= CHECK_COST_RATIO * check_ns:
                break
            sampler.pace()
        t_check = time.perf_counter_ns()
        block_medians.append(float(np.median(sampler.reported(lo))))
        fastest_ms = min(block_medians)
        whole = opts.check_stability(sampler.reported())
        if whole.stable and _within(sampler.reported(), fastest_ms, drift):
            return whole, 0, "recovered"
        last_from = len(sampler) - n_base
        last = opts.check_stability(sampler.reported(last_from))
        if last.stable and _within(sampler.reported(last_from), fastest_ms, drift):
            return last, last_from, "recovered"
        if at_cap:
            return _with_level(whole, sampler.reported(), fastest_ms, block_runs, drift), 0, "capped"
        check_ns = time.perf_counter_ns() - t_check


def time_session(session: Any, inputs: Mapping[str, np.ndarray], options: BenchOptions | None = None) -> TimingResult:
    """Time ``session.invoke`` on fixed inputs: first call, warm-up, then steady state, extended while unstable.

    Inputs go through ``session.prepare`` once, before anything is timed. Each call is timed alone with
    ``time.perf_counter_ns()`` around ``session.invoke(feed)`` (the runtime's own call, what onnxruntime's and LiteRT's
    own tools time); nothing else is inside the timed region. Where the session keeps its own per-call clock
    (OpenVINO) and ``options.clock`` is ``runtime``, that reading is taken after each call and is the reported
    figure, as in OpenVINO's benchmark_app. The outputs are collected once at the end.
    The garbage collector is paused during the timed phases (as ``timeit`` does) so a collection of the
    harness's own objects does not land in a sample.

    Once the stop rule is met (``n`` runs), the window is checked with :meth:`BenchOptions.check_stability`. If it
    is unstable, sampling goes on in blocks of ``max(n / 4, 10)`` runs; after each block, the first of these that
    passes is reported:

    1. the whole window so far (a short burst, diluted: every quarter of the window within the drift bound);
    2. the last ``n`` runs (as many as the stop rule took), with the runs before them left out of ``samples_ms``.

    Either must also have its median within ``stability_max_drift_percent`` of the fastest block median seen in the
    whole window: background load only adds time, so a stretch that is steady but slower than an earlier part of the
    window is load that has not ended (or a device that slowed down), not a recovery. A quiet stretch shorter than a
    block is not seen. At the cap (``min(stability_max_seconds, max_seconds)`` of steady state, or ``max_runs``) the
    whole window is reported with its verdict. A window stopped by ``max_runs`` or ``max_seconds`` in the first place,
    or one already as long as the cap, is checked but not extended. An unstable result carries a warning.

    Args:
        session: a loaded session (``prepare``, ``invoke`` and ``collect``).
        inputs: one input array per model input, as the torch model took them.
        options: stop rule, pacing and stability bounds; defaults to :class:`BenchOptions`.

    Returns:
        first-call time, warm-up times, the reported steady-state samples and their summary, why the first window
        stopped, the stability verdict with how the window was extended, warnings.

    Raises:
        InputError: the inputs do not match the model (from ``session.prepare``).
    """
    opts = options or BenchOptions()
    feed = session.prepare(inputs)
    clock = time.perf_counter_ns
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        t0 = clock()
        session.invoke(feed)
        first_ms = (clock() - t0) / 1e6

        warmup_ms = []
        for _ in range(opts.warmup_runs):
            t0 = clock()
            session.invoke(feed)
            warmup_ms.append((clock() - t0) / 1e6)

        own_clock = getattr(session, "runtime_latency_ms", None)  # optional in the protocol: None or a method
        use_runtime_clock = opts.clock == "runtime" and own_clock is not None and own_clock() is not None
        period_ns = int(1e9 / opts.paced_hz) if opts.paced_hz else 0
        sampler = _Sampler(session, feed, own_clock if use_runtime_clock else None, period_ns)
        min_ns, max_ns = int(opts.min_seconds * 1e9), int(opts.max_seconds * 1e9)
        while True:
            elapsed = sampler.call() - sampler.start
            n = len(sampler)
            if n >= opts.min_runs and elapsed >= min_ns:
                stopped_by: StopReason = "count_and_duration"
                break
            if n >= opts.max_runs:
                stopped_by = "max_runs"
                break
            if elapsed >= max_ns:
                stopped_by = "max_seconds"
                break
            sampler.pace()
        base_seconds = (clock() - sampler.start) / 1e9
        n_base = len(sampler)

        check = first_check = opts.check_stability(sampler.reported())
        cap_s = min(opts.stability_max_seconds, opts.max_seconds)
        extension: Extension = "none"
        report_from = 0
        if not check.stable:
            if stopped_by == "count_and_duration" and base_seconds < cap_s:
                check, report_from, extension = _extend(sampler, opts, cap_s)
            else:
                extension = "disabled"
        steady_seconds = (clock() - sampler.start) / 1e9
        session.collect()  # the outputs of the last call, outside the timed region: a session that made none fails here
    finally:
        if gc_was_enabled:
            gc.enable()

    wall_ms = [v / 1e6 for v in sampler.wall_ns[report_from:]]
    samples_ms = sampler.runtime_ms[report_from:] if use_runtime_clock else wall_ms
    latency = summarize(samples_ms)
    first_keys = (
        "stable", "n", "drift_percent", "robust_cv_percent", "outlier_percent", "segment_medians_ms", "reasons"
    )  # fmt: skip
    stability_info = {
        **check.to_dict(),
        "extension": extension,
        "extended_seconds": round(steady_seconds - base_seconds, 4) if extension in ("recovered", "capped") else 0.0,
        "cap_seconds": cap_s,
        "runs_measured": len(sampler),
        "reported": "last" if report_from else "all",
        "first_check": {k: v for k, v in first_check.to_dict().items() if k in first_keys},
    }
    warnings = []
    if latency.cv_percent > opts.cv_warn_percent:
        warnings.append(
            f"steady-state CV is {latency.cv_percent:.1f}% (> {opts.cv_warn_percent:g}%): the machine was noisy or "
            "the model's time varies; compare A/B interleaved in one run, with more runs, on pinned cores."
        )
    if stopped_by == "max_seconds" and n_base < opts.min_runs:
        warnings.append(
            f"stopped at max_seconds={opts.max_seconds:g} after {n_base} runs, fewer than min_runs="
            f"{opts.min_runs}: percentiles rest on few samples; raise max_seconds for a slow model."
        )
    if not check.stable:
        if extension == "capped":
            how = (
                f"after extending the window to {len(sampler)} runs in {steady_seconds:.2f} s (the extension stops at "
                f"{cap_s:g} s or max_runs={opts.max_runs})"
            )
        elif opts.stability_max_seconds == 0:
            how = "and the window was not extended (stability_max_seconds=0)"
        elif stopped_by != "count_and_duration":
            how = f"and the window was not extended (it stopped by {stopped_by})"
        else:
            how = f"and the window was not extended (it already lasted {base_seconds:.2f} s, the cap is {cap_s:g} s)"
        warnings.append(
            f"unstable steady state {how}: {'; '.join(check.reasons)}. The p50 may be off by more than "
            f"{opts.stability_max_drift_percent:g}%; rerun on a quiet machine or pinned cores (a gate gives this cell "
            "no verdict)."
        )
    return TimingResult(
        first_ms=first_ms,
        warmup_ms=warmup_ms,
        samples_ms=samples_ms,
        latency=latency,
        clock=(getattr(session, "clock_source", None) or "runtime") if use_runtime_clock else "wall",
        wall_samples_ms=wall_ms,
        wall_latency=latency if not use_runtime_clock else summarize(wall_ms),
        stopped_by=stopped_by,
        steady_seconds=steady_seconds,
        stability=stability_info,
        warnings=warnings,
    )
