"""Latency statistics against values computed by hand; the stability verdict on series built to show each check."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgestill.stats import MAX_DRIFT_PERCENT, bootstrap_ratio_ci, robust_cv_percent, stability, summarize
from edgestill.errors import InputError


def test_summarize_matches_hand_computed_values() -> None:
    s = summarize([5.0, 1.0, 4.0, 2.0, 3.0])  # order must not matter
    # linear (type 7) percentiles at rank q/100 * (n - 1) of [1, 2, 3, 4, 5]
    assert s.p50_ms == 3.0
    assert s.p90_ms == pytest.approx(4.6)  # rank 3.6 -> 4 + 0.6 * (5 - 4)
    assert s.p99_ms == pytest.approx(4.96)  # rank 3.96
    assert s.mean_ms == 3.0
    assert s.std_ms == pytest.approx(math.sqrt(2.5))  # sum of squares 10 / (n - 1)
    assert s.cv_percent == pytest.approx(100 * math.sqrt(2.5) / 3)
    assert (s.min_ms, s.max_ms, s.n) == (1.0, 5.0, 5)


def test_summarize_single_sample_has_zero_spread() -> None:
    s = summarize([2.5])
    assert (s.p50_ms, s.p99_ms, s.std_ms, s.cv_percent, s.n) == (2.5, 2.5, 0.0, 0.0, 1)


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [1.0, float("inf")]])
def test_summarize_rejects_empty_or_non_finite(bad: list[float]) -> None:
    with pytest.raises(InputError):
        summarize(bad)


def test_bootstrap_ci_of_constant_samples_is_the_exact_ratio() -> None:
    ci = bootstrap_ratio_ci([2.0] * 30, [1.0] * 40)
    assert (ci.ratio, ci.low, ci.high) == (2.0, 2.0, 2.0)
    assert ci.excludes(1.0)


def test_bootstrap_ci_is_seeded_and_brackets_the_ratio() -> None:
    rng = np.random.default_rng(1)
    a = 1.2 * (1.0 + 0.05 * rng.standard_normal(200))  # 20 % slower than b
    b = 1.0 * (1.0 + 0.05 * rng.standard_normal(200))
    ci = bootstrap_ratio_ci(a, b, seed=7)
    assert ci == bootstrap_ratio_ci(a, b, seed=7)
    assert ci != bootstrap_ratio_ci(a, b, seed=8)
    assert ci.low <= ci.ratio <= ci.high
    assert 1.1 < ci.low and ci.high < 1.3
    assert ci.excludes(1.0)


def test_bootstrap_ci_of_same_distribution_contains_one() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.lognormal(0, 0.2, 300), rng.lognormal(0, 0.2, 300)
    ci = bootstrap_ratio_ci(a, b)
    assert not ci.excludes(1.0)
    wider = bootstrap_ratio_ci(a, b, confidence=0.99)
    assert wider.low <= ci.low and wider.high >= ci.high


def test_bootstrap_rejects_bad_level() -> None:
    with pytest.raises(InputError, match="confidence"):
        bootstrap_ratio_ci([1.0], [1.0], confidence=1.5)


def _steady(n: int, level_ms: float = 1.0, cv: float = 0.02, seed: int = 0) -> np.ndarray:
    """n latencies around ``level_ms`` with a relative normal spread ``cv`` (quiet-machine-like)."""
    return level_ms * (1.0 + cv * np.random.default_rng(seed).standard_normal(n))


def test_constant_series_is_stable_with_zero_figures() -> None:
    s = stability([2.0] * 400)
    assert s.stable and s.judged and s.reasons == [] and s.note is None
    assert (s.drift_percent, s.robust_cv_percent, s.outlier_percent) == (0.0, 0.0, 0.0)
    assert s.segment_medians_ms == [2.0] * 4 and s.n == 400
    d = s.to_dict()
    assert d["stable"] is True and d["reasons"] == [] and d["max_drift_percent"] == MAX_DRIFT_PERCENT


def test_quiet_noise_is_stable() -> None:
    s = stability(_steady(1500, cv=0.04))  # a robust CV of 4 %: the worst quiet window measured on this machine
    assert s.stable, s.reasons
    assert 3.0 < (s.robust_cv_percent or 0) < 5.0 and (s.drift_percent or 0) < 2.0


def test_step_in_the_second_half_is_flagged_as_drift_with_the_value_and_bound() -> None:
    x = _steady(400)
    x[200:] *= 1.3  # a burst of load from the middle of the window on
    s = stability(x)
    assert not s.stable
    assert s.drift_percent == pytest.approx(30.0, abs=3.0)
    drift = [r for r in s.reasons if "drifted" in r]
    assert len(drift) == 1 and f"{s.drift_percent:.1f}%" in drift[0] and "5% allowed" in drift[0]
    assert s.segment_medians_ms[2] > 1.25 * s.segment_medians_ms[1]  # the parts show where it moved


def test_step_below_the_bound_is_stable() -> None:
    x = _steady(400, cv=0.005)
    x[200:] *= 1.03
    s = stability(x)
    assert s.stable and 2.0 < (s.drift_percent or 0) < 4.0


def test_isolated_outliers_do_not_flag_drift_or_spread() -> None:
    x = _steady(400)
    x[[10, 120, 230, 390]] = 50.0  # four calls hit by something 50x slower
    s = stability(x)
    assert s.stable, s.reasons
    assert (s.drift_percent or 0) < 2.0 and (s.robust_cv_percent or 0) < 3.0
    assert s.outlier_percent == pytest.approx(1.0)
    assert summarize(x).cv_percent > 100  # the plain CV, by contrast, is dominated by them


def test_many_outliers_and_a_wide_spread_are_flagged() -> None:
    x = _steady(400)
    x[::4] *= 3.0  # every fourth call preempted: 25 % outliers, spread evenly (no drift)
    s = stability(x)
    assert not s.stable and (s.drift_percent or 0) < 5.0
    assert any("25.0% of the calls are outliers" in r and "10% allowed" in r for r in s.reasons)
    wide = stability(_steady(400, cv=0.3))
    assert not wide.stable and any("robust (MAD-based) CV" in r for r in wide.reasons)


def test_too_few_samples_are_not_judged_and_count_as_stable() -> None:
    s = stability([1.0, 5.0, 1.0, 9.0, 1.0, 1.0, 30.0])  # 7 < 2 * 4 segments
    assert s.stable and not s.judged and s.reasons == []
    assert s.drift_percent is None and s.segment_medians_ms == []
    assert s.note is not None and "7 sample(s) are too few" in s.note and "at least 8" in s.note
    eight = stability([1.0, 1.0, 1.0, 1.0, 9.0, 9.0, 9.0, 9.0])  # two per segment: judged
    assert eight.judged and not eight.stable and (eight.drift_percent or 0) == pytest.approx(800.0)
    assert not stability([1.0] * 5 + [9.0] * 5, segments=2).stable


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"segments": 1}, "segments must be >= 2"), ({"max_drift_percent": 0}, "max_drift_percent=0"),
     ({"max_outlier_percent": -1.0}, "max_outlier_percent=-1.0")],
)  # fmt: skip
def test_stability_rejects_bad_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        stability([1.0] * 20, **kwargs)
    with pytest.raises(InputError):
        stability([])


def test_robust_cv_matches_the_cv_of_a_normal_sample() -> None:
    x = _steady(20000, level_ms=10.0, cv=0.05, seed=3)
    assert robust_cv_percent(x) == pytest.approx(5.0, rel=0.05)
