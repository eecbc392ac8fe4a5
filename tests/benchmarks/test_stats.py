"""Latency statistics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgestill.stats import bootstrap_ratio_ci, summarize
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
