"""``edgestill history`` through the CLI: the table names the run of a step, --json parses, bad input exits 2."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from edgestill.benchmarks.store import ResultsStore
from tests.benchmarks.test_history import add_runs, series


def invoke(*args: str):
    from typer.testing import CliRunner

    import edgestill.commands.history  # noqa: F401  (registers the command)
    from edgestill.cli import app

    return CliRunner().invoke(app, ["history", *args], prog_name="edgestill")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """20 runs with a 15% step at run 15 (commit 14c0ffee...)."""
    path = tmp_path / "results.db"
    with ResultsStore(path) as store:
        add_runs(store, series(0, n=20, noise=0.02, steps=((14, 0.15),)))
    return path


def test_the_table_marks_the_step_and_a_line_names_its_run(db: Path) -> None:
    r = invoke("--model", "student-onnx-int8", "--db", str(db))
    assert r.exit_code == 0, r.output
    assert "student-onnx-int8 · onnx int8-static · Xeon E5 · onnxruntime 1 thr" in r.stdout
    assert "14c0ffee" in r.stdout and "▲ +" in r.stdout
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("p50_ms stepped up"))
    assert " at run 15 (main, 14c0ffee): " in line and line.endswith(" ms") and "→" in line


def test_json_parses_and_holds_the_series_and_the_step(db: Path) -> None:
    r = invoke("--model", "student-onnx-int8", "--device", "abc", "--metric", "p50_ms", "--min-effect", "10",
               "--db", str(db), "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    (cell,) = doc["cells"]
    assert doc["min_effect"] == 0.1 and len(cell["series"]) == 20
    assert [(p["run_id"], p["git_ref"]) for p in cell["change_points"]] == [(15, "main")]


def test_a_flat_history_says_there_is_no_step(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "r.db") as store:
        add_runs(store, np.full(6, 0.4))
    r = invoke("--model", "student-onnx-int8", "--db", str(tmp_path / "r.db"))
    assert r.exit_code == 0 and "no step of 5% or more in 6 runs" in r.stdout


def test_bad_input_exits_2_with_one_paragraph(db: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"SQLite format 3\x00" + b"\x07" * 4000)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as con:
        con.execute("CREATE TABLE notes (x)")
    missing = tmp_path / "missing.db"
    cases = [
        (("--metric", "p50", "--db", str(db)), "unknown metric 'p50'. Did you mean 'p50_ms'?"),
        (("--model", "teacher", "--db", str(db)), "no stored measurement of model 'teacher'"),
        (("--device", "pixel-8", "--db", str(db)), "was taken on device 'pixel-8'"),
        (("--db", str(missing)), f"no results store at {missing}"),
        (("--db", str(corrupt)), "is not an edgestill results store"),
        (("--db", str(foreign)), "is not an edgestill results store"),
    ]
    for args, message in cases:
        args = ("--model", "student-onnx-int8", *args) if "--model" not in args else args
        r = invoke(*args)
        assert r.exit_code == 2, (args, r.output)
        assert message in r.stderr and "Traceback" not in r.output, (args, r.stderr)
    assert not missing.exists()  # reading never creates a store
    assert foreign.read_bytes() and corrupt.read_bytes().startswith(b"SQLite format 3")


def test_a_missing_model_option_is_a_usage_error(db: Path) -> None:
    r = invoke("--db", str(db))
    assert r.exit_code == 2 and "--model" in r.output
