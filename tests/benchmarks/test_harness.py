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

    opts = BenchOptions(min_runs=10, min_seconds=0.0, warmup_runs=0, cv_warn_percent=10, stability_max_seconds=0)
    r = time_session(Alternating(), X, opts)
    assert r.latency.cv_percent > 10
    assert any("steady-state CV" in w for w in r.warnings)
    assert not r.stable and r.stability["extension"] == "disabled" and r.latency.n == 10  # flagged, not extended
    assert any("the window was not extended (stability_max_seconds=0)" in w for w in r.warnings)


@pytest.mark.parametrize(
    "kwargs",
    [{"min_runs": 0}, {"min_runs": 100, "max_runs": 10}, {"min_seconds": 5, "max_seconds": 1}, {"paced_hz": 0}, {"warmup_runs": -1}],
)
def test_bad_options_raise_config_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="invalid bench options"):
        BenchOptions(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"stability_max_seconds": -1.0}, r"stability_max_seconds must be >= 0 \(got -1.0; 0 turns the extension off"),
     ({"stability_max_drift_percent": 0.0}, r"stability_max_drift_percent must be > 0 \(got 0.0\)"),
     ({"stability_max_cv_percent": -5}, r"stability_max_cv_percent must be > 0 \(got -5\)"),
     ({"stability_max_outlier_percent": float("nan")}, r"stability_max_outlier_percent must be > 0 \(got nan\)")],
)  # fmt: skip
def test_bad_stability_options_name_the_value_and_the_default(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        BenchOptions(**kwargs)
    assert "stability_max_seconds=5" in str(info.value)  # the message gives the defaults


def test_stability_options_round_trip_through_a_dict() -> None:
    opts = BenchOptions(stability_max_seconds=0.0, stability_max_drift_percent=8.0)
    assert BenchOptions.from_dict(opts.to_dict()) == opts
    assert BenchOptions.from_dict({"min_runs": 5}).stability_max_seconds == 5.0  # old job files keep working


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


class ScriptedSession(SleepSession):
    """Reports scripted per-call latencies on its own clock (as OpenVINO's does): ``level(i)`` ms for steady call i.

    Calls before the steady state (first + warm-up) are not counted. ``sleep_s`` makes each call take real time, for
    the tests of the wall-clock cap.
    """

    clock_source = "script"

    def __init__(self, level: Any, sleep_s: float = 0.0, warmup_runs: int = 0):
        super().__init__(delay_s=sleep_s)
        self.level, self.i = level, -2 - warmup_runs  # the first steady call is i == 0

    def invoke(self, feed: Any) -> None:
        super().invoke(feed)
        self.i += 1

    def runtime_latency_ms(self) -> float:
        i = max(self.i, 0)
        return float(self.level(i)) * (1.0 + 0.01 * ((i * 7919) % 11 - 5) / 5)  # +-1 % deterministic jitter


SLOW_CALL_S = 0.0005  # calls long enough that a re-check costs far less than a block of 50 of them


def burst(start: int, end: int, factor: float = 1.5) -> Any:
    return lambda i: factor if start <= i < end else 1.0


def test_stable_window_is_reported_as_is() -> None:
    r = time_session(ScriptedSession(lambda i: 1.0), X, BenchOptions(min_runs=200, min_seconds=0.0, warmup_runs=0))
    st = r.stability
    assert r.stable and st["extension"] == "none" and st["extended_seconds"] == 0.0
    assert st["reported"] == "all" and st["runs_measured"] == r.latency.n == 200
    assert st["first_check"]["stable"] and st["drift_percent"] < 3 and r.warnings == []


def test_burst_mid_window_extends_and_reports_the_stretch_after_it() -> None:
    # calls 100-299 run 1.5x slower: the stop rule's 200 calls end in the middle of the burst
    s = ScriptedSession(burst(100, 300), sleep_s=SLOW_CALL_S)
    r = time_session(s, X, BenchOptions(min_runs=200, min_seconds=0.0, warmup_runs=0))
    st = r.stability
    assert st["first_check"]["stable"] is False and any("drifted" in w for w in st["first_check"]["reasons"])
    assert r.stable and st["extension"] == "recovered" and st["reported"] == "last"
    assert st["runs_measured"] == 500 and r.latency.n == 200  # re-checked every 50 runs: 200 after the burst ended
    assert r.latency.p50_ms == pytest.approx(1.0, rel=0.02) and max(r.samples_ms) < 1.1  # no burst call reported
    assert len(r.wall_samples_ms) == 200 and r.steady_seconds > 0 and st["extended_seconds"] > 0
    assert r.warnings == []


def test_short_burst_is_diluted_into_the_whole_window() -> None:
    # 30 slow calls (15 % of a 200-call window): one part's median moves; 100 calls later no part's does
    s = ScriptedSession(burst(150, 180, factor=3.0), sleep_s=SLOW_CALL_S)
    r = time_session(s, X, BenchOptions(min_runs=200, min_seconds=0.0, warmup_runs=0))
    st = r.stability
    assert st["first_check"]["stable"] is False and any("outliers" in w for w in st["first_check"]["reasons"])
    assert r.stable and st["extension"] == "recovered" and st["reported"] == "all"
    assert r.latency.n == st["runs_measured"] == 300  # 30 of 300 calls: 10 % outliers, within the bound
    assert r.latency.p50_ms == pytest.approx(1.0, rel=0.02)


def test_load_that_does_not_end_is_flagged_at_the_cap() -> None:
    # from call 100 on, 1.5x slower for good: the last 200 calls are steady but slower than the window began
    opts = BenchOptions(min_runs=200, min_seconds=0.0, max_runs=1000, warmup_runs=0)
    r = time_session(ScriptedSession(lambda i: 1.5 if i >= 100 else 1.0), X, opts)
    st = r.stability
    assert not r.stable and st["extension"] == "capped"
    assert st["runs_measured"] == r.latency.n == 1000  # max_runs caps the extension too; all of it is reported
    assert st["segment_medians_ms"][0] > 1.4  # the quiet start is now too short a part of the window to show ...
    assert any("49.8% above its fastest stretch of 50 runs" in reason for reason in st["reasons"])  # ... but counts
    assert any(w.startswith("unstable steady state after extending the window to 1000 runs") for w in r.warnings)


def test_extension_stops_at_stability_max_seconds() -> None:
    opts = BenchOptions(min_runs=20, min_seconds=0.05, warmup_runs=0, stability_max_seconds=0.3)
    t0 = time.perf_counter()
    r = time_session(ScriptedSession(lambda i: 1.5 if i >= 10 else 1.0, sleep_s=0.002), X, opts)
    assert not r.stable and r.stability["extension"] == "capped" and r.stability["cap_seconds"] == 0.3
    assert 0.3 <= r.steady_seconds < 0.3 + 0.15  # at most one call and one check past the cap
    assert time.perf_counter() - t0 < 1.0


def test_extension_is_capped_by_max_seconds_too() -> None:
    opts = BenchOptions(min_runs=20, min_seconds=0.05, max_seconds=0.2, warmup_runs=0, stability_max_seconds=5.0)
    r = time_session(ScriptedSession(lambda i: 1.5 if i >= 10 else 1.0, sleep_s=0.002), X, opts)
    assert r.stability["cap_seconds"] == 0.2 and r.stability["extension"] == "capped"
    assert r.steady_seconds < 0.2 + 0.15


def test_no_extension_when_disabled_or_when_the_window_is_already_at_the_cap() -> None:
    def step(i: int) -> float:
        return 1.5 if i >= 10 else 1.0

    no_extension = BenchOptions(min_runs=40, min_seconds=0.0, warmup_runs=0, stability_max_seconds=0)
    off = time_session(ScriptedSession(step), X, no_extension)
    assert not off.stable and off.stability["extension"] == "disabled" and off.latency.n == 40
    long = BenchOptions(min_runs=20, min_seconds=0.1, warmup_runs=0, stability_max_seconds=0.1)
    at_cap = time_session(ScriptedSession(step, sleep_s=0.002), X, long)
    assert at_cap.stability["extension"] == "disabled" and at_cap.stability["runs_measured"] == at_cap.latency.n
    assert any("already lasted" in w for w in at_cap.warnings)
    runs_cap = BenchOptions(min_runs=40, max_runs=40, min_seconds=1.0, warmup_runs=0)
    by_runs = time_session(ScriptedSession(step), X, runs_cap)
    assert by_runs.stopped_by == "max_runs" and by_runs.stability["extension"] == "disabled"
    assert any("it stopped by max_runs" in w for w in by_runs.warnings)


def test_too_few_runs_to_judge_are_not_extended() -> None:
    opts = BenchOptions(min_runs=6, min_seconds=0.0, warmup_runs=0)
    r = time_session(ScriptedSession(lambda i: 9.0 if i >= 3 else 1.0), X, opts)
    assert r.stable and r.stability["judged"] is False and r.stability["extension"] == "none" and r.latency.n == 6


def test_rechecks_cost_little_for_a_model_that_runs_in_microseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    checks = []
    real = BenchOptions.check_stability
    monkeypatch.setattr(BenchOptions, "check_stability", lambda self, x: checks.append(len(x)) or real(self, x))
    opts = BenchOptions(min_runs=40, min_seconds=0.0, warmup_runs=0, max_runs=20000)
    r = time_session(ScriptedSession(lambda i: 1.5 if i >= 20 else 1.0), X, opts)  # never recovers: runs to max_runs
    assert not r.stable and r.stability["runs_measured"] == 20000
    # a re-check after every block of 10 calls would be 2,000 checks; blocks last 10x a check, so far fewer are made
    assert len(checks) < 200
