"""Change points in a metric's history: the detector on seeded synthetic series, and ``history`` on a filled store.

The synthetic series are 30 runs at 0.4 ms with Gaussian noise of 3% a run (log scale) unless a test says otherwise;
each rate is counted over 200 seeds. The bounds hold the rates measured when the rule was chosen, with a little room
for numeric differences between platforms (the series are seeded, so a run here gives the same count every time).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from edgestill.benchmarks.history import METRICS, analyze, change_points, history, noise_sigma
from edgestill.benchmarks.store import ResultsStore
from edgestill.errors import InputError, UnknownNameError
from edgestill.record import Accuracy, Measurement
from edgestill.stats import summarize

SEEDS = range(200)
N = 30


def series(seed: int, *, n: int = N, noise: float = 0.03, steps: tuple[tuple[int, float], ...] = (),
           outliers: tuple[tuple[int, float], ...] = (), drift: float = 0.0, student_t: bool = False) -> np.ndarray:  # fmt: skip
    """0.4 ms × noise; each step (run, relative change) holds from that run on; an outlier changes one run; a drift
    is a relative change spread linearly over the series."""
    rng = np.random.default_rng(seed)
    e = (rng.standard_t(3, n) if student_t else rng.standard_normal(n)) * noise
    x = np.log(0.4) + e + np.linspace(0.0, math.log1p(drift), n)
    for run, rel in steps:
        x[run:] += math.log1p(rel)
    for run, rel in outliers:
        x[run] += math.log1p(rel)
    return np.exp(x)


def found(values: np.ndarray, **options: float) -> list[int]:
    return [cp.index for cp in change_points(values, **options)]


def count(predicate) -> int:
    return sum(bool(predicate(seed)) for seed in SEEDS)


def near(got: list[int], expected: list[int]) -> bool:
    return len(got) == len(expected) and all(abs(g - e) <= 1 for g, e in zip(got, expected))


# -- the detector --------------------------------------------------------------------------------------------------


def test_flat_noisy_series_almost_never_show_a_step() -> None:
    assert count(lambda s: found(series(s))) <= 2  # measured 0/200
    assert count(lambda s: found(series(s, noise=0.05))) <= 2  # 0/200
    assert count(lambda s: found(series(s, student_t=True))) <= 4  # heavy tails: 1/200
    assert count(lambda s: found(series(s, n=60))) <= 2  # 0/200


def test_a_15_percent_step_in_the_middle_is_found_at_its_run() -> None:
    cps = change_points(series(0, steps=((15, 0.15),)))
    assert [cp.index for cp in cps] == [15]
    (cp,) = cps
    assert cp.direction == "up" and cp.n_before == 15 and cp.n_after == 15
    assert cp.before == pytest.approx(0.4, rel=0.03) and cp.after == pytest.approx(0.46, rel=0.03)
    assert cp.relative_change == pytest.approx(cp.after / cp.before - 1) and cp.p_value is not None and cp.p_value < 1e-4
    assert count(lambda s: found(series(s, steps=((15, 0.15),))) == [15]) >= 186  # measured 194/200 at the very run
    assert count(lambda s: near(found(series(s, steps=((15, 0.15),))), [15])) >= 192  # 197/200 within a run
    assert count(lambda s: near(found(series(s, steps=((15, -0.15),))), [15])) >= 192  # a speed-up: 199/200


def test_a_step_in_the_last_3_runs_is_found() -> None:
    assert count(lambda s: found(series(s, steps=((27, 0.15),), noise=0.02)) == [27]) >= 196  # measured 200/200
    assert count(lambda s: near(found(series(s, steps=((27, 0.15),))), [27])) >= 176  # 184/200 with 3% noise


def test_one_outlier_run_is_not_a_step() -> None:
    # a run at twice the level: in the middle, as the last run, and two of them as the last two runs
    assert count(lambda s: found(series(s, outliers=((15, 1.0),)))) == 0
    assert count(lambda s: found(series(s, outliers=((29, 1.0),)))) <= 2  # measured 1/200
    assert count(lambda s: found(series(s, outliers=((28, 1.0), (29, 0.8))))) <= 2  # 0/200: two runs are not a level


def test_two_steps_are_both_found() -> None:
    both = count(lambda s: near(found(series(s, steps=((10, 0.15), (20, 0.15)))), [10, 20]))
    assert both >= 180  # measured 190/200
    # a regression fixed four runs later: a level that comes and goes
    fixed = count(lambda s: near(found(series(s, steps=((14, 0.15), (18, -0.15 / 1.15)))), [14, 18]))
    assert fixed >= 165  # 175/200
    cps = change_points(series(1, steps=((14, 0.15), (18, -0.15 / 1.15))))
    assert [cp.direction for cp in cps] == ["up", "down"]


def test_a_slow_drift_is_reported_as_a_drift_not_a_step() -> None:
    """10% over 30 runs: with 1% noise never a step, and the drift is measured; with 3% noise a drift of 10% and a
    step of about 5% look alike, and 9 of 200 series are called a step (of 6-11%)."""
    quiet = [analyze(series(s, drift=0.10, noise=0.01)) for s in SEEDS]
    assert sum(bool(a.change_points) for a in quiet) == 0
    assert all(a.drift is not None and a.drift.p_value < 0.01 for a in quiet)
    assert np.median([a.drift.relative_change for a in quiet]) == pytest.approx(0.10, abs=0.01)
    assert count(lambda s: found(series(s, drift=0.10, noise=0.02))) <= 3  # measured 1/200
    assert count(lambda s: found(series(s, drift=0.10))) <= 14  # 9/200
    assert count(lambda s: found(series(s, drift=0.20))) <= 8  # 4/200: faster, yet a line


def test_a_step_under_min_effect_is_not_reported_and_min_effect_sets_it() -> None:
    values = series(3, steps=((15, 0.03),), noise=0.002)
    assert found(values) == []
    assert found(values, min_effect=0.02) == [15]


def test_values_at_or_below_zero_are_compared_as_they_are() -> None:
    values = np.r_[np.zeros(10), np.full(10, 0.2)] + np.random.default_rng(0).normal(0, 0.002, 20)
    a = analyze(values)
    assert not a.log and [cp.index for cp in a.change_points] == [10]


def test_constant_series_and_short_ones_have_no_step_and_exact_levels_do() -> None:
    assert found(np.full(30, 12345.0)) == []
    assert found([0.4, 0.5, 0.4, 0.5, 0.4]) == []  # fewer than 2 × min_size runs
    (cp,) = change_points(np.r_[np.full(10, 12345.0), np.full(5, 15000.0)])  # model_bytes: no noise at all
    assert (cp.index, cp.before, cp.after) == (10, pytest.approx(12345.0), pytest.approx(15000.0))


def test_bad_values_and_parameters_are_input_errors() -> None:
    with pytest.raises(InputError, match="non-finite"):
        change_points([0.4, float("nan"), 0.4, 0.4, 0.4, 0.4])
    with pytest.raises(InputError, match="min_effect"):
        change_points(series(0), min_effect=0.0)


def test_noise_sigma_reads_the_noise_not_the_steps_or_outliers() -> None:
    estimates = [noise_sigma(np.log(series(s))) for s in SEEDS]
    assert np.mean(estimates) == pytest.approx(0.03, rel=0.05)
    low, high = np.percentile(estimates, [5, 95])
    assert high - low < 0.021  # measured 0.021-0.039; the differences' MAD alone spread over 0.018-0.044
    stepped = [noise_sigma(np.log(series(s, steps=((10, 0.5), (20, -0.3)), outliers=((5, 1.0),)))) for s in SEEDS]
    assert np.mean(stepped) == pytest.approx(0.03, rel=0.1)


# -- history() on a store ------------------------------------------------------------------------------------------


def record(p50_ms: float, *, artifact: str = "student-onnx-int8", device_id: str = "abc123", cpu: str = "Xeon E5",
           threads: int = 1, kind: str = "measured", accuracy: float | None = None, stable: bool = True) -> Measurement:  # fmt: skip
    samples = [p50_ms * f for f in (0.98, 0.99, 1.0, 1.01, 1.02)]
    return Measurement(artifact=artifact, format="onnx", precision="int8-static", runtime="onnxruntime", threads=threads,
                       kind=kind, latency=summarize(samples), samples_ms=samples if kind == "measured" else [],
                       model_bytes=12345, accuracy=None if accuracy is None else Accuracy(metric="top1", value=accuracy, n=100),
                       provenance={"device_id": device_id, "cpu_model": cpu},
                       stability={"stable": stable} if kind == "measured" else None)  # fmt: skip


def add_runs(store: ResultsStore, values: np.ndarray, **options) -> list[int]:
    """One run per value, each with its own commit and the ref main; returns the run ids."""
    ids = []
    for i, v in enumerate(values):
        ids.append(store.add_run("bench", git_commit=f"{i:02d}c0ffee{i:02d}aabbccdd", git_ref="main", git_dirty=False,
                                 package_version="0.1.0", machine="host-1", measurements=[record(float(v), **options)]))  # fmt: skip
    return ids


@pytest.fixture
def stepped(tmp_path: Path) -> ResultsStore:
    """20 runs of one cell with a 15% step at the 15th run (index 14)."""
    store = ResultsStore(tmp_path / "results.db")
    add_runs(store, series(0, n=20, noise=0.02, steps=((14, 0.15),)))
    yield store
    store.close()


def test_history_names_the_run_ref_and_commit_where_the_step_starts(stepped: ResultsStore) -> None:
    doc = history(stepped, metric="p50_ms", model="student-onnx-int8")
    assert doc["metric"] == "p50_ms" and doc["unit"] == "ms"
    (cell,) = doc["cells"]
    assert (cell["model"], cell["format"], cell["precision"], cell["device"], cell["runtime"], cell["threads"], cell["kind"]) == (
        "student-onnx-int8", "onnx", "int8-static", "Xeon E5", "onnxruntime", 1, "measured")  # fmt: skip
    assert [s["run_id"] for s in cell["series"]] == list(range(1, 21))
    assert cell["series"][0]["git_commit"].startswith("00c0ffee") and cell["series"][0]["stable"] is True
    (cp,) = cell["change_points"]
    assert (cp["run_id"], cp["git_ref"], cp["git_commit"][:10], cp["direction"]) == (15, "main", "14c0ffee14", "up")
    assert cp["relative_change"] == pytest.approx(0.15, abs=0.04)
    assert cp["summary"].startswith(f"p50_ms stepped up {100 * cp['relative_change']:.1f}% at run 15 (main, 14c0ffee): ")
    assert cp["summary"].endswith(" ms") and "→" in cp["summary"]
    assert 1.0 < cell["noise_percent"] < 4.0 and cell["drift"] is None


def test_history_of_accuracy_and_of_a_metric_no_record_carries(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "r.db") as store:
        add_runs(store, np.full(8, 0.4), accuracy=0.9)
        doc = history(store, metric="accuracy", model="student-onnx-int8")
        assert [s["value"] for s in doc["cells"][0]["series"]] == [0.9] * 8 and doc["cells"][0]["change_points"] == []
        assert history(store, metric="model_bytes", model="student-onnx-int8")["cells"][0]["series"][0]["value"] == 12345
        with pytest.raises(InputError, match="carries teacher_kl"):
            history(store, metric="teacher_kl", model="student-onnx-int8")


def test_an_unknown_metric_names_the_valid_ones_and_the_closest(stepped: ResultsStore) -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'p50_ms'") as err:
        history(stepped, metric="p50", model="student-onnx-int8")
    assert all(m in str(err.value) for m in METRICS)


def test_an_unknown_model_lists_the_stored_ones(stepped: ResultsStore) -> None:
    with pytest.raises(InputError, match=r"Did you mean 'student-onnx-int8'.*Its models: student-onnx-int8"):
        history(stepped, metric="p50_ms", model="student-onnx")


def test_devices_are_cells_and_device_matches_id_prefix_machine_or_cpu(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "r.db") as store:
        add_runs(store, np.full(8, 0.4), device_id="abc123", cpu="Xeon E5")
        add_runs(store, np.full(8, 0.9), device_id="abd999", cpu="Cortex-A76")
        assert [c["device"] for c in history(store, metric="p50_ms", model="student-onnx-int8")["cells"]] == [
            "Cortex-A76", "Xeon E5"]  # fmt: skip
        for name in ("abc123", "abc", "Xeon E5"):
            (cell,) = history(store, metric="p50_ms", model="student-onnx-int8", device=name)["cells"]
            assert cell["device"] == "Xeon E5" and len(cell["series"]) == 8, name
        assert len(history(store, metric="p50_ms", model="student-onnx-int8", device="host-1")["cells"]) == 2
        with pytest.raises(InputError, match="prefix of 2 device ids: abc123, abd999"):
            history(store, metric="p50_ms", model="student-onnx-int8", device="ab")
        with pytest.raises(InputError, match=r"device 'pixel'.*Its devices .*: Cortex-A76, Xeon E5, abc123, abd999, host-1"):
            history(store, metric="p50_ms", model="student-onnx-int8", device="pixel")
        with pytest.raises(InputError, match="--threads 4.*have 1"):
            history(store, metric="p50_ms", model="student-onnx-int8", threads=4)


def test_rounds_of_one_run_are_one_point_and_unstable_runs_are_marked(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "r.db") as store:
        store.add_run("bench", git_commit="aa", git_ref="main", machine="m",
                      measurements=[record(0.4), record(0.5, stable=False), record(0.45)])  # fmt: skip
        (point,) = history(store, metric="p50_ms", model="student-onnx-int8")["cells"][0]["series"]
        assert point["value"] == pytest.approx(0.45) and point["records"] == 3 and point["stable"] is False


def test_estimates_are_kept_apart_and_shown_only_when_asked(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "r.db") as store:
        measured = series(0, n=12, noise=0.01)
        for i, v in enumerate(measured):
            store.add_run("bench", git_commit=f"{i:02d}ff", git_ref="main", machine="m",
                          measurements=[record(float(v)), record(3.0 if i < 6 else 6.0, kind="estimated")])  # fmt: skip
        (cell,) = history(store, metric="p50_ms", model="student-onnx-int8")["cells"]
        assert cell["kind"] == "measured" and [s["value"] for s in cell["series"]] == pytest.approx(list(measured))
        assert cell["change_points"] == []
        both = history(store, metric="p50_ms", model="student-onnx-int8", include_estimates=True)["cells"]
        (est,) = [c for c in both if c["kind"] == "estimated"]
        assert [s["value"] for s in est["series"]] == [3.0] * 6 + [6.0] * 6 and est["device"] == "abc123"
        assert [p["run_id"] for p in est["change_points"]] == [7]
        assert [c["series"] for c in both if c["kind"] == "measured"] == [cell["series"]]


def test_an_empty_store_is_an_input_error(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "r.db") as store, pytest.raises(InputError, match="holds no runs"):
        history(store, metric="p50_ms", model="m")
