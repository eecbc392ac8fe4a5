"""The timing protocol: prepare before timing, phases, and the stop rule (count AND duration, with caps)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from edgestill.runtimes.harness import BenchOptions, time_session
from edgestill.errors import ConfigError


class SleepSession:
    """A session whose invoke sleeps ``delay_s``; records the order of calls."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.calls: list[str] = []

    def prepare(self, inputs: dict[str, np.ndarray]) -> Any:
        self.calls.append("prepare")
        return {"x": inputs["x"].astype(np.float32)}

    def invoke(self, feed: Any) -> None:
        self.calls.append("invoke")
        if self.delay_s:
            time.sleep(self.delay_s)
        self._last = [feed["x"]]

    def collect(self) -> list[np.ndarray]:
        self.calls.append("collect")
        return self._last


X = {"x": np.zeros((1, 4))}


def test_prepare_once_before_any_timed_call_and_phases_counted() -> None:
    s = SleepSession()
    r = time_session(s, X, BenchOptions(min_runs=7, min_seconds=0.0, warmup_runs=3))
    assert s.calls[0] == "prepare" and s.calls.count("prepare") == 1
    assert s.calls.count("invoke") == 1 + 3 + 7  # first + warm-up + steady
    assert s.calls[-1] == "collect" and s.calls.count("collect") == 1  # outputs copied once, after timing
    assert len(r.warmup_ms) == 3 and r.warmup_ms_mean is not None
    assert r.latency.n == len(r.samples_ms) == 7
    assert r.stopped_by == "count_and_duration"


def test_stops_by_duration_when_count_is_reached_first() -> None:
    s = SleepSession(delay_s=0.002)
    r = time_session(s, X, BenchOptions(min_runs=2, min_seconds=0.15, warmup_runs=0))
    assert r.stopped_by == "count_and_duration"
    assert r.latency.n > 2  # kept going until 0.15 s had passed
    assert r.steady_seconds >= 0.15
    assert sum(r.samples_ms) >= 0.9 * 150
    assert r.latency.p50_ms >= 2.0  # each sample holds the 2 ms sleep


def test_stops_at_max_runs_before_min_seconds() -> None:
    r = time_session(SleepSession(), X, BenchOptions(min_runs=5, max_runs=40, min_seconds=10.0, max_seconds=20.0, warmup_runs=0))
    assert (r.stopped_by, r.latency.n) == ("max_runs", 40)


def test_stops_at_max_seconds_and_warns_when_below_min_runs() -> None:
    s = SleepSession(delay_s=0.01)
    r = time_session(s, X, BenchOptions(min_runs=1000, min_seconds=0.0, max_seconds=0.1, warmup_runs=0))
    assert r.stopped_by == "max_seconds"
    assert 3 <= r.latency.n < 1000
    assert any("max_seconds" in w for w in r.warnings)


def test_paced_runs_are_spaced_but_samples_exclude_the_wait() -> None:
    r = time_session(SleepSession(), X, BenchOptions(min_runs=6, min_seconds=0.0, warmup_runs=0, paced_hz=50))
    assert r.steady_seconds >= 5 / 50 * 0.9  # five gaps of 20 ms
    assert max(r.samples_ms) < 10.0  # the sleeps between calls are not in the samples


def test_noisy_samples_add_a_cv_warning() -> None:
    class Alternating(SleepSession):
        def invoke(self, feed: Any) -> None:
            self.delay_s = 0.004 if self.delay_s < 0.002 else 0.0005
            super().invoke(feed)

    r = time_session(Alternating(), X, BenchOptions(min_runs=10, min_seconds=0.0, warmup_runs=0, cv_warn_percent=10))
    assert r.latency.cv_percent > 10
    assert any("CV" in w for w in r.warnings)


@pytest.mark.parametrize(
    "kwargs",
    [{"min_runs": 0}, {"min_runs": 100, "max_runs": 10}, {"min_seconds": 5, "max_seconds": 1}, {"paced_hz": 0}, {"warmup_runs": -1}],
)
def test_bad_options_raise_config_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="invalid bench options"):
        BenchOptions(**kwargs)


def test_from_dict_names_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="min_run.*valid options"):
        BenchOptions.from_dict({"min_run": 5})
    assert BenchOptions.from_dict({"min_runs": 5}).min_runs == 5


class ClockedSession(SleepSession):
    """A session that keeps its own per-call clock, as OpenVINO's InferRequest.latency does: 1 ms less than the wall."""

    clock_source = "test clock"

    def invoke(self, feed: Any) -> None:
        super().invoke(feed)
        self._own_ms = self.delay_s * 1e3 - 1.0

    def runtime_latency_ms(self) -> float | None:
        return getattr(self, "_own_ms", 0.0)


def test_runtime_clock_is_reported_where_the_session_keeps_one_and_wall_is_kept() -> None:
    r = time_session(ClockedSession(delay_s=0.003), X, BenchOptions(min_runs=10, min_seconds=0.0, warmup_runs=1))
    assert r.clock == "test clock"
    assert r.samples_ms == [pytest.approx(2.0)] * 10  # the session's own readings, one per steady call
    assert len(r.wall_samples_ms) == 10 and min(r.wall_samples_ms) >= 3.0  # the wall clock held the whole sleep
    assert r.wall_latency.p50_ms >= r.latency.p50_ms + 0.9


def test_wall_clock_on_request_and_for_sessions_without_a_clock() -> None:
    forced = time_session(ClockedSession(delay_s=0.002), X, BenchOptions(min_runs=5, min_seconds=0.0, clock="wall"))
    assert forced.clock == "wall" and forced.samples_ms == forced.wall_samples_ms and min(forced.samples_ms) >= 2.0
    plain = SleepSession(delay_s=0.001)
    plain.runtime_latency_ms = lambda: None  # type: ignore[attr-defined]
    r = time_session(plain, X, BenchOptions(min_runs=5, min_seconds=0.0))
    assert r.clock == "wall" and r.latency == r.wall_latency


def test_unknown_clock_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="clock must be one of runtime, wall"):
        BenchOptions(clock="cpu")  # type: ignore[arg-type]
