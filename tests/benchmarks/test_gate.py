"""The gate's decisions: statistics and minimum effect agree, no verdict on noise, budgets, cells, inputs, outputs."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest

from edgestill.benchmarks.gate import (
    GateBudgets,
    ab_result,
    decide_latency,
    decide_paired,
    gate,
    gate_stored,
    load_records,
    to_junit,
    to_markdown,
)
from edgestill.benchmarks.store import ResultsStore
from edgestill.errors import ConfigError, InputError
from edgestill.record import Accuracy, Measurement
from edgestill.stats import summarize


def _samples(median: float, n: int = 200, cv: float = 0.03, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(median * np.exp(rng.normal(0, cv, n)))


def _record(name: str = "student", median: float = 1.0, *, seed: int = 0, cv: float = 0.03, n: int = 200,
            accuracy: float | None = 0.80, size: int = 1000, kind: str = "measured", threads: int = 1,
            cpu: str = "Test CPU", stable: bool = True) -> Measurement:  # fmt: skip
    samples = _samples(median, n, cv, seed) if kind == "measured" else []
    return Measurement(
        artifact=name, format="onnx", precision="int8-static", runtime="onnxruntime", threads=threads, kind=kind,  # type: ignore[arg-type]
        latency=summarize(samples) if samples else (summarize([median]) if kind == "estimated" else None),
        low_ms=median * 0.8 if kind == "estimated" else None, high_ms=median * 1.25 if kind == "estimated" else None,
        samples_ms=samples, model_bytes=size, accuracy=Accuracy(metric="top1", value=accuracy, n=1000) if accuracy else None,
        provenance={"cpu_model": cpu, "device_id": "dev-" + cpu if kind != "estimated" else "raspberry-pi-5"},
        stability={"stable": stable, "reasons": [] if stable else ["drift 30% > 8%"]},
        error="boom" if kind == "failed" else None,
    )


def _d(m: Measurement) -> dict:
    return m.to_dict(with_samples=True)


# -- latency decisions ---------------------------------------------------------------------------------------------


def test_a_15_percent_slowdown_is_a_regression_and_a_speedup_an_improvement() -> None:
    d = decide_latency(_samples(1.0, seed=1), _samples(1.15, seed=2))
    assert d.verdict == "regression" and d.ratio == pytest.approx(1.15, rel=0.02) and d.ci_low > 1 and d.p_value < 1e-6
    d = decide_latency(_samples(1.15, seed=1), _samples(1.0, seed=2))
    assert d.verdict == "improvement" and d.ci_high < 1


def test_a_significant_change_smaller_than_the_minimum_effect_is_no_change() -> None:
    """Statistics alone would call a 2% shift (200 tight samples): the minimum effect keeps the gate quiet."""
    d = decide_latency(_samples(1.0, cv=0.01, seed=1), _samples(1.02, cv=0.01, seed=2))
    assert d.p_value < 0.01 and d.verdict == "no change"


def test_a_change_near_the_minimum_effect_with_noise_gets_no_verdict() -> None:
    d = decide_latency(_samples(1.0, n=40, cv=0.15, seed=1), _samples(1.05, n=40, cv=0.15, seed=2))
    assert d.verdict == "no verdict" and "does not resolve a 5% change" in d.reason


@pytest.mark.parametrize(
    ("base", "cand", "why"),
    [
        (_samples(1.0, n=5), _samples(1.3), "fewer than 10"),
        (_samples(1.0, cv=0.6), _samples(1.3, cv=0.6, seed=3), "CV is"),
    ],
)
def test_too_few_or_too_noisy_samples_get_no_verdict(base: list[float], cand: list[float], why: str) -> None:
    d = decide_latency(base, cand)
    assert d.verdict == "no verdict" and why in d.reason


def test_a_cell_the_harness_flagged_unstable_gets_no_verdict() -> None:
    d = decide_latency(_samples(1.0), _samples(2.0), cand_stability={"stable": False, "reasons": ["drift 40% > 8%"]})
    assert d.verdict == "no verdict" and "unstable" in d.reason and "drift 40%" in d.reason


def test_paired_blocks_cancel_drift_that_independent_samples_cannot() -> None:
    """The machine slows 30% over the run; the new model is 15% slower in every block pair."""
    drift = np.linspace(1.0, 1.3, 40)
    rng = np.random.default_rng(0)
    old = drift * np.exp(rng.normal(0, 0.02, 40))
    new = 1.15 * drift * np.exp(rng.normal(0, 0.02, 40))
    d = decide_paired(np.log(new / old))
    assert d.verdict == "regression" and d.ratio == pytest.approx(1.15, rel=0.02)
    same = decide_paired(np.log(drift * np.exp(rng.normal(0, 0.02, 40)) / old))
    assert same.verdict == "no change"


def test_aa_false_alarms_and_15_percent_detection_on_simulated_noise() -> None:
    """The decision rule itself, on 500 simulated A/A and 15% comparisons with 3% per-call noise."""
    false = sum(decide_latency(_samples(1.0, seed=s), _samples(1.0, seed=10_000 + s)).verdict == "regression" for s in range(300))
    found = sum(decide_latency(_samples(1.0, seed=s), _samples(1.15, seed=10_000 + s)).verdict == "regression" for s in range(200))
    assert false == 0 and found == 200


def test_budgets_are_validated() -> None:
    for bad in ({"min_effect_percent": 0}, {"alpha": 1.5}, {"min_samples": 1}, {"max_size_growth_percent": math.nan}):
        with pytest.raises(ConfigError, match="invalid gate budgets"):
            GateBudgets(**bad)


# -- cells and budgets ---------------------------------------------------------------------------------------------


def test_accuracy_and_size_budgets_regress_a_cell_whose_latency_held() -> None:
    result = gate([_d(_record(accuracy=0.80, size=1000))], [_d(_record(accuracy=0.785, size=1100, seed=9))])
    (cell,) = result.cells
    assert cell.verdict == "regression" and result.exit_code == 1
    assert "accuracy dropped 1.50 points" in cell.reason and "size grew 10.0%" in cell.reason
    assert cell.latency is not None and cell.latency.verdict == "no change"


def test_a_candidate_that_failed_where_the_baseline_ran_fails_the_gate() -> None:
    result = gate([_d(_record())], [_d(_record(kind="failed"))])
    assert result.cells[0].verdict == "failed" and result.exit_code == 1
    # a runner that crashed before it reported its machine: no device in the record, still the baseline's cell
    crashed = _d(_record(kind="failed"))
    crashed["provenance"] = {}
    result = gate([_d(_record()), _d(_record("other"))], [crashed, _d(_record("other", seed=3))])
    assert {c.cell["model"]: c.verdict for c in result.cells} == {"student": "failed", "other": "no change"}
    assert result.exit_code == 1


def test_no_verdict_passes_unless_asked_to_fail() -> None:
    base, cand = [_d(_record())], [_d(_record(median=1.4, stable=False))]
    assert gate(base, cand).exit_code == 0 and gate(base, cand).cells[0].verdict == "no verdict"
    assert gate(base, cand, GateBudgets(fail_on_no_verdict=True)).exit_code == 1


def test_estimates_are_gated_only_against_estimates() -> None:
    base = [_d(_record("m", median=2.0, kind="estimated")), _d(_record("m", median=1.0))]
    cand = [_d(_record("m", median=4.0, kind="estimated")), _d(_record("m", median=1.0, seed=5))]
    result = gate(base, cand)
    verdicts = {c.cell["kind"]: c.verdict for c in result.cells}
    assert verdicts == {"estimated": "regression", "measured": "no change"}
    # an estimate never meets a measurement: only estimates on one side → nothing in common
    with pytest.raises(InputError, match="no cell in common"):
        gate([_d(_record("m", kind="estimated"))], [_d(_record("m"))])


def test_cells_are_matched_on_every_key_and_unmatched_ones_are_listed() -> None:
    base = [_d(_record("a")), _d(_record("b")), _d(_record("a", threads=2))]
    cand = [_d(_record("a", seed=3)), _d(_record("c"))]
    result = gate(base, cand)
    assert [c.cell["model"] for c in result.cells] == ["a"]
    assert {c["model"] for c in result.only_in_baseline} == {"b", "a"} and result.only_in_candidate[0]["model"] == "c"
    with pytest.raises(InputError, match="no cell in common.*Test CPU"):
        gate([_d(_record("a"))], [_d(_record("b"))])
    with pytest.raises(InputError, match="no cell in common"):  # another kind of machine is another device
        gate([_d(_record("a"))], [_d(_record("a", cpu="Other CPU"))])


def test_ab_result_judges_the_paired_blocks() -> None:
    rng = np.random.default_rng(0)
    blocks = [{"order": "old,new", "old_ms": list(rng.normal(1.0, 0.02, 50)), "new_ms": list(rng.normal(1.2, 0.02, 50))}
              for _ in range(20)]  # fmt: skip
    side = {"format": "onnx", "precision": "fp32", "runtime": "onnxruntime", "threads": 1, "model_bytes": 100}
    doc = {"blocks": blocks, "old": {**side, "artifact": "m"}, "new": {**side, "artifact": "m"},
           "provenance": {"cpu_model": "X"}}  # fmt: skip
    result = ab_result(doc, old_name="old", new_name="new")
    assert result.mode == "ab" and result.cells[0].verdict == "regression" and result.exit_code == 1


# -- outputs -------------------------------------------------------------------------------------------------------


def test_junit_has_one_case_per_cell_with_failures_and_skips() -> None:
    base = [_d(_record("fast")), _d(_record("same")), _d(_record("noisy"))]
    cand = [_d(_record("fast", median=1.3, seed=2)), _d(_record("same", seed=2)), _d(_record("noisy", stable=False))]
    xml = ET.fromstring(to_junit(gate(base, cand)))
    assert xml.tag == "testsuite" and xml.get("tests") == "3" and xml.get("failures") == "1" and xml.get("skipped") == "1"
    cases = {c.get("classname").rsplit(".", 1)[-1]: c for c in xml.iter("testcase")}
    assert cases["fast"].find("failure") is not None and cases["noisy"].find("skipped") is not None
    assert cases["same"].find("failure") is None and cases["same"].find("skipped") is None


def test_markdown_escapes_user_strings() -> None:
    name = "<script>alert(1)</script>|x"
    md = to_markdown(gate([_d(_record(name))], [_d(_record(name, median=1.5, seed=2))]))
    assert "<script>" not in md and "&lt;script&gt;" in md and "\\|x" in md
    assert "## edgestill gate: FAILED" in md and "regression" in md


# -- the two sides: store refs and files ---------------------------------------------------------------------------


def test_baseline_by_git_ref_and_candidate_latest_from_the_store(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    with ResultsStore(db) as store:
        store.add_run("bench", git_commit="aa" * 20, git_ref="main", measurements=[_record("m"), _record("n")])
        store.add_run("bench", git_commit="bb" * 20, git_ref="pr-7", measurements=[_record("m", median=1.2, seed=4)])
    result = gate_stored("main", "latest", db=db)
    assert [c.cell["model"] for c in result.cells] == ["m"] and result.cells[0].verdict == "regression"
    assert result.only_in_baseline[0]["model"] == "n"


def test_bench_json_and_report_json_files_are_read(tmp_path: Path) -> None:
    doc = {"schema": "edgestill.results", "schema_version": 1, "measurements": [_d(_record("m"))]}
    (tmp_path / "base.json").write_text(json.dumps(doc))
    report = {"schema_version": 1, "kind": "run", "artifacts": [{"artifact": "m", "measurements": [_d(_record("m", seed=3))]}]}
    (tmp_path / "cand.json").write_text(json.dumps(report))
    result = gate_stored(str(tmp_path / "base.json"), str(tmp_path / "cand.json"), db=tmp_path / "none.db")
    assert result.cells[0].verdict == "no change"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (json.dumps({"schema": "edgestill.results", "schema_version": 99, "measurements": []}), "version 99"),
        (json.dumps({"schema": "something.else", "schema_version": 1, "measurements": []}), "something.else"),
        (json.dumps([1, 2]), "not an edgestill results document"),
        (json.dumps({"hello": 1}), "holds no measurements"),
        (json.dumps({"measurements": [{"x": 1}]}), "not a measurement record"),
        (b"\xff\xfe not utf8", "neither a SQLite results store nor readable JSON"),
        (b"SQLite format 3\x00" + b"\x00" * 200, "not an edgestill results store"),
    ],
)
def test_bad_files_are_input_errors(tmp_path: Path, content: str | bytes, match: str) -> None:
    p = tmp_path / "side.json"
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InputError, match=match):
        load_records(str(p), db=tmp_path / "r.db", role="baseline")


def test_a_foreign_sqlite_file_and_a_missing_store_are_input_errors(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(InputError, match="not an edgestill results store: it is a SQLite file with tables t"):
        load_records(str(foreign), db=tmp_path / "r.db", role="baseline")
    with pytest.raises(InputError, match="does not exist"):
        load_records("main", db=tmp_path / "missing.db", role="baseline")
    assert not (tmp_path / "missing.db").exists()  # reading never creates a store
    with pytest.raises(InputError, match="no such file"):
        load_records("nothere.json", db=tmp_path / "r.db", role="baseline")
