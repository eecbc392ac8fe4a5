"""Latency statistics as pure functions of raw samples (numpy only; the runner imports this on devices).

Percentiles use numpy's default ``"linear"`` method (Hyndman & Fan type 7, the same as R's default and
Excel's PERCENTILE.INC): the q-th percentile of n sorted samples is interpolated at rank ``q/100 * (n-1)``.
The standard deviation is the sample one (``ddof=1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgestill.record import LatencyStats
from edgestill.errors import InputError

PERCENTILE_METHOD = "linear"


def _as_samples(samples_ms: Sequence[float] | np.ndarray, what: str = "samples_ms") -> np.ndarray:
    arr = np.asarray(samples_ms, dtype=np.float64).ravel()
    if arr.size == 0:
        raise InputError(f"{what} is empty: at least one latency sample is needed to summarise a run.")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{what} holds {int((~np.isfinite(arr)).sum())} non-finite value(s); latency samples must be finite.")
    return arr


def summarize(samples_ms: Sequence[float] | np.ndarray) -> LatencyStats:
    """Summarise steady-state latency samples (milliseconds).

    Args:
        samples_ms: raw per-call latencies in milliseconds, in the order they were taken.

    Returns:
        p50/p90/p99 (numpy ``linear`` percentiles), mean, sample std (ddof=1; 0 for one sample),
        ``cv_percent`` = 100·std/mean, min, max and n.

    Raises:
        InputError: no samples, or a sample that is NaN or infinite.
    """
    arr = _as_samples(samples_ms)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99], method=PERCENTILE_METHOD)
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return LatencyStats(
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        mean_ms=mean,
        std_ms=std,
        cv_percent=100.0 * std / mean if mean > 0 else 0.0,
        min_ms=float(arr.min()),
        max_ms=float(arr.max()),
        n=int(arr.size),
    )


@dataclass(frozen=True, kw_only=True)
class RatioCI:
    """A median ratio ``median(a) / median(b)`` with its percentile-bootstrap confidence interval."""

    ratio: float
    low: float
    high: float
    confidence: float
    n_resamples: int
    seed: int

    def excludes(self, value: float = 1.0) -> bool:
        """True when ``value`` lies outside the interval (e.g. 1.0: the two medians differ)."""
        return value < self.low or value > self.high


def bootstrap_ratio_ci(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    chunk: int = 256,
) -> RatioCI:
    """Percentile-bootstrap CI of ``median(a) / median(b)``; a ratio > 1 means ``a`` is slower.

    ``a`` and ``b`` are resampled independently (they are separate runs); the interval is the
    ``(1-confidence)/2`` and ``(1+confidence)/2`` quantiles of the resampled ratios. Seeded: the same
    inputs and seed give the same interval.

    Args:
        a: samples of the candidate (e.g. latencies in ms).
        b: samples of the reference.
        confidence: two-sided level in (0, 1).
        n_resamples: bootstrap resamples (>= 100).
        seed: seed of numpy's default generator.
        chunk: resamples computed per vectorised step (bounds memory for 10k-sample runs).

    Raises:
        InputError: empty or non-finite samples, a non-positive median of ``b``, or a bad level/count.
    """
    xa, xb = _as_samples(a, "a"), _as_samples(b, "b")
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must be in (0, 1), got {confidence}; 0.95 is the usual choice.")
    if n_resamples < 100:
        raise InputError(f"n_resamples must be >= 100 for a usable interval, got {n_resamples}.")
    med_b = float(np.median(xb))
    if med_b <= 0:
        raise InputError(f"the median of b is {med_b}; a ratio needs positive samples (latencies in ms).")
    rng = np.random.default_rng(seed)
    ratios = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, chunk):
        k = min(chunk, n_resamples - start)
        ma = np.median(xa[rng.integers(0, xa.size, size=(k, xa.size))], axis=1)
        mb = np.median(xb[rng.integers(0, xb.size, size=(k, xb.size))], axis=1)
        ratios[start : start + k] = ma / mb
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(ratios, [alpha, 1.0 - alpha], method=PERCENTILE_METHOD)
    return RatioCI(
        ratio=float(np.median(xa)) / med_b,
        low=float(low),
        high=float(high),
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
    )

