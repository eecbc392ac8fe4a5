"""The timing protocol (DESIGN "Measurement method"): first call, warm-up, steady state, per-call ns clock.

Torch-free and runtime-free: it times any :class:`edgestill.runtimes.base.Session`. Init (load + compile)
is timed by the caller around ``load``; this module starts from a loaded session.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import numpy as np

from edgestill.record import LatencyStats
from edgestill.stats import summarize
from edgestill.errors import ConfigError

StopReason = Literal["count_and_duration", "max_runs", "max_seconds"]
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
    """

    min_runs: int = 50
    min_seconds: float = 1.0
    max_runs: int = 10000
    max_seconds: float = 30.0
    warmup_runs: int = 10
    paced_hz: float | None = None
    cv_warn_percent: float = 10.0
    clock: Clock = "runtime"

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
        if problems:
            raise ConfigError(
                "invalid bench options: " + "; ".join(problems) + ". The defaults are min_runs=50, min_seconds=1.0, "
                "max_runs=10000, max_seconds=30, warmup_runs=10 (the LiteRT benchmark tool's >=50 runs and >=1 s)."
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
    warnings: list[str] = field(default_factory=list)

    @property
    def warmup_ms_mean(self) -> float | None:
        return float(np.mean(self.warmup_ms)) if self.warmup_ms else None


def time_session(session: Any, inputs: Mapping[str, np.ndarray], options: BenchOptions | None = None) -> TimingResult:
    """Time ``session.invoke`` on fixed inputs: first call, warm-up, then steady state.

    Inputs go through ``session.prepare`` once, before anything is timed. Each call is timed alone with
    ``time.perf_counter_ns()`` around ``session.invoke(feed)`` (the runtime's own call, what onnxruntime's and LiteRT's
    own tools time); nothing else is inside the timed region. Where the session keeps its own per-call clock
    (OpenVINO) and ``options.clock`` is ``runtime``, that reading is taken after each call and is the reported
    figure, as in OpenVINO's benchmark_app. The outputs are collected once at the end.
    The garbage collector is paused during the timed phases (as ``timeit`` does) so a collection of the
    harness's own objects does not land in a sample.

    Args:
        session: a loaded session (``prepare``, ``invoke`` and ``collect``).
        inputs: one input array per model input, as the torch model took them.
        options: stop rule and pacing; defaults to :class:`BenchOptions`.

    Returns:
        first-call time, warm-up times, steady-state samples and their summary, why it stopped, warnings.

    Raises:
        InputError: the inputs do not match the model (from ``session.prepare``).
    """
    opts = options or BenchOptions()
    feed = session.prepare(inputs)
    clock = time.perf_counter_ns
    period_ns = int(1e9 / opts.paced_hz) if opts.paced_hz else 0
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
        runtime_ms: list[float] = []
        samples_ns: list[int] = []
        min_ns, max_ns = int(opts.min_seconds * 1e9), int(opts.max_seconds * 1e9)
        start = next_tick = clock()
        while True:
            if period_ns:
                next_tick += period_ns
            t0 = clock()
            session.invoke(feed)
            t1 = clock()
            samples_ns.append(t1 - t0)
            if use_runtime_clock:  # read after the timed region
                runtime_ms.append(own_clock())  # type: ignore[misc]
            n, elapsed = len(samples_ns), t1 - start
            if n >= opts.min_runs and elapsed >= min_ns:
                stopped_by: StopReason = "count_and_duration"
                break
            if n >= opts.max_runs:
                stopped_by = "max_runs"
                break
            if elapsed >= max_ns:
                stopped_by = "max_seconds"
                break
            if period_ns:
                wait_ns = next_tick - clock()
                if wait_ns > 0:
                    time.sleep(wait_ns / 1e9)
        steady_seconds = (clock() - start) / 1e9
        session.collect()  # the outputs of the last call, outside the timed region: a session that made none fails here
    finally:
        if gc_was_enabled:
            gc.enable()

    wall_ms = [s / 1e6 for s in samples_ns]
    samples_ms = runtime_ms if use_runtime_clock else wall_ms
    latency = summarize(samples_ms)
    warnings = []
    if latency.cv_percent > opts.cv_warn_percent:
        warnings.append(
            f"steady-state CV is {latency.cv_percent:.1f}% (> {opts.cv_warn_percent:g}%): the machine was noisy or "
            "the model's time varies; compare A/B interleaved in one run, with more runs, on pinned cores."
        )
    if stopped_by == "max_seconds" and len(samples_ms) < opts.min_runs:
        warnings.append(
            f"stopped at max_seconds={opts.max_seconds:g} after {len(samples_ms)} runs, fewer than min_runs="
            f"{opts.min_runs}: percentiles rest on few samples; raise max_seconds for a slow model."
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
        warnings=warnings,
    )
