"""The statistics behind every reported latency and every gate verdict (edgestill.stats, benchmarks.gate).

Order (min <= p50 <= p90 <= p99 <= max), scale: multiplying every sample by a power of two (exact in floating point)
scales the location figures by it and leaves CVs, stability and verdicts unchanged; the bootstrap interval holds its
point estimate and is reproducible from its seed; the Mann-Whitney test is symmetric and a verdict is never a
regression both ways; a constant window is stable; non-finite samples are refused.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from edgestill.benchmarks.gate import GateBudgets, decide_latency
from edgestill.errors import InputError
from edgestill.stats import bootstrap_ratio_ci, robust_cv_percent, stability, summarize
from tests.property._settings import BOUNDED, FEW, MANY

latency = st.floats(0.01, 1000.0, allow_nan=False, allow_infinity=False)
samples = st.lists(latency, min_size=1, max_size=60)
powers_of_two = st.sampled_from([0.25, 0.5, 2.0, 4.0, 1024.0])
FAST = GateBudgets(n_resamples=200)


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


@MANY
@given(samples)
def test_summary_figures_are_ordered_and_match_numpy(xs: list[float]) -> None:
    s = summarize(xs)
    eps = 1e-9 * max(xs)
    assert s.min_ms - eps <= s.p50_ms <= s.p90_ms + eps and s.p90_ms <= s.p99_ms + eps and s.p99_ms <= s.max_ms + eps
    assert s.min_ms - eps <= s.mean_ms <= s.max_ms + eps
    assert s.n == len(xs) and s.std_ms >= 0 and s.cv_percent >= 0
    assert close(s.p50_ms, float(np.median(xs)))
    assert s.min_ms == min(xs) and s.max_ms == max(xs)


@MANY
@given(samples, powers_of_two)
def test_scaling_the_samples_scales_the_figures_and_keeps_the_cvs(xs: list[float], c: float) -> None:
    a, b = summarize(xs), summarize([c * x for x in xs])
    for name in ("p50_ms", "p90_ms", "p99_ms", "min_ms", "max_ms"):
        assert getattr(b, name) == c * getattr(a, name)  # a power of two: exact
    assert close(b.mean_ms, c * a.mean_ms) and close(b.std_ms, c * a.std_ms)
    assert math.isclose(b.cv_percent, a.cv_percent, rel_tol=1e-9, abs_tol=1e-9)
    assert robust_cv_percent([c * x for x in xs]) == robust_cv_percent(xs)


@MANY
@given(samples, st.floats(-1e6, 1e6))
def test_the_order_of_the_samples_does_not_change_the_summary(xs: list[float], seed: float) -> None:
    shuffled = list(np.random.default_rng(abs(int(seed))).permutation(xs))
    a, b = summarize(xs), summarize(shuffled)
    for name in ("p50_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "n"):
        assert getattr(a, name) == getattr(b, name)
    assert robust_cv_percent(xs) == robust_cv_percent(shuffled)


@MANY
@given(latency, st.integers(1, 200))
def test_a_constant_window_has_no_spread_and_is_stable(value: float, n: int) -> None:
    xs = [value] * n
    s = summarize(xs)
    assert s.p50_ms == s.p99_ms == s.min_ms == s.max_ms == value
    assert s.std_ms <= 1e-12 * value and s.cv_percent <= 1e-9  # the mean's rounding only
    assert robust_cv_percent(xs) == 0
    st_ = stability(xs)
    assert st_.stable and st_.outlier_percent == 0 and st_.robust_cv_percent == 0
    assert st_.judged == (n >= 8) and (st_.drift_percent == 0 if st_.judged else st_.drift_percent is None)


@MANY
@given(st.lists(latency, min_size=8, max_size=80), powers_of_two)
def test_stability_does_not_depend_on_the_unit(xs: list[float], c: float) -> None:
    a, b = stability(xs), stability([c * x for x in xs])
    assert (a.stable, a.judged, a.outlier_percent) == (b.stable, b.judged, b.outlier_percent)
    assert math.isclose(a.drift_percent, b.drift_percent, rel_tol=1e-9, abs_tol=1e-9)
    assert len(a.reasons) == len(b.reasons)


@MANY
@given(st.lists(latency, max_size=10), st.sampled_from([math.nan, math.inf, -math.inf]), st.integers(0, 10))
def test_non_finite_or_missing_samples_are_refused(xs: list[float], bad: float, at: int) -> None:
    xs = xs[:at] + [bad] + xs[at:]
    for fn in (summarize, robust_cv_percent, stability):
        with pytest.raises(InputError, match="non-finite"):
            fn(xs)
    with pytest.raises(InputError, match="empty"):
        summarize([])


@BOUNDED
@given(samples, samples, st.integers(0, 2**32 - 1))
def test_the_bootstrap_interval_holds_its_point_estimate_and_is_reproducible(a: list[float], b: list[float],
                                                                            seed: int) -> None:
    ci = bootstrap_ratio_ci(a, b, n_resamples=200, seed=seed)
    assert ci.ratio == float(np.median(a)) / float(np.median(b))
    slack = 1e-12 * ci.ratio
    assert ci.low - slack <= ci.ratio <= ci.high + slack
    lo_bound = min(a) / max(b)
    hi_bound = max(a) / min(b)
    assert lo_bound * (1 - 1e-12) <= ci.low and ci.high <= hi_bound * (1 + 1e-12)
    again = bootstrap_ratio_ci(a, b, n_resamples=200, seed=seed)
    assert (again.low, again.high) == (ci.low, ci.high)


@BOUNDED
@given(samples, samples, powers_of_two)
def test_the_bootstrap_ratio_is_unit_free_and_inverts_when_swapped(a: list[float], b: list[float], c: float) -> None:
    ci = bootstrap_ratio_ci(a, b, n_resamples=200, seed=1)
    scaled = bootstrap_ratio_ci([c * x for x in a], [c * x for x in b], n_resamples=200, seed=1)
    assert (scaled.ratio, scaled.low, scaled.high) == (ci.ratio, ci.low, ci.high)
    swapped = bootstrap_ratio_ci(b, a, n_resamples=200, seed=1)
    assert math.isclose(swapped.ratio * ci.ratio, 1.0, rel_tol=1e-12)


@MANY
@given(st.lists(latency, min_size=2, max_size=40), st.lists(latency, min_size=2, max_size=40))
def test_mann_whitney_is_symmetric(a: list[float], b: list[float]) -> None:
    p_ab = mannwhitneyu(a, b, alternative="two-sided").pvalue
    p_ba = mannwhitneyu(b, a, alternative="two-sided").pvalue
    assert math.isclose(p_ab, p_ba, rel_tol=1e-9, abs_tol=1e-12) and 0 <= p_ab <= 1


runs = st.lists(st.floats(1.0, 100.0), min_size=10, max_size=40)


@FEW
@given(runs, runs)
def test_a_verdict_is_never_a_regression_both_ways(base: list[float], cand: list[float]) -> None:
    forward, backward = decide_latency(base, cand, FAST), decide_latency(cand, base, FAST)
    assert not (forward.verdict == backward.verdict == "regression")
    assert not (forward.verdict == backward.verdict == "improvement")
    if forward.verdict == "regression":
        assert backward.verdict != "no change"


@FEW
@given(runs, runs, powers_of_two)
def test_a_verdict_does_not_depend_on_the_unit(base: list[float], cand: list[float], c: float) -> None:
    a = decide_latency(base, cand, FAST)
    b = decide_latency([c * x for x in base], [c * x for x in cand], FAST)
    assert a.verdict == b.verdict and a.ratio == b.ratio


@FEW
@given(runs)
def test_identical_runs_are_never_a_change(xs: list[float]) -> None:
    assert decide_latency(xs, list(xs), FAST).verdict in ("no change", "no verdict")


@FEW
@given(st.floats(5.0, 50.0), st.integers(30, 60))
def test_a_clear_doubling_on_quiet_runs_is_a_regression(median: float, n: int) -> None:
    rng = np.random.default_rng(n)
    base = list(median * (1 + 0.01 * rng.standard_normal(n)))
    cand = list(2 * median * (1 + 0.01 * rng.standard_normal(n)))
    assume(min(base) > 0)
    assert decide_latency(base, cand, FAST).verdict == "regression"
    assert decide_latency(cand, base, FAST).verdict == "improvement"
