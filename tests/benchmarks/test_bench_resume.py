"""A keyed bench matrix killed part-way and rerun measures only the cells it had not finished, and is stored once."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edgestill.benchmarks import bench as bench_mod
from edgestill.errors import InputError
from edgestill.runtimes.harness import BenchOptions
from tests.benchmarks.conftest import write_tiny_onnx

FAST = BenchOptions(min_runs=5, min_seconds=0.01, stability_max_seconds=0.0)


def _arts(tmp_path: Path) -> list[str]:
    return [str(write_tiny_onnx(tmp_path / n, name=n)) for n in ("a", "b")]


def test_a_rerun_takes_the_finished_cells_from_the_journal_and_measures_the_rest(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault: the matrix was killed after its first cell (the journal holds that cell and a torn half line)."""
    arts, journal = _arts(tmp_path), tmp_path / "j.jsonl"
    first = bench_mod.benchmark_matrix(arts, [1], bench=FAST, journal=journal)
    lines = journal.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["job"]["artifacts"] == [str(Path(a).resolve()) for a in arts]
    journal.write_text("\n".join(lines[:2]) + "\n" + lines[2][:40])  # cell 2 torn by the kill

    measured: list[str] = []
    real = bench_mod.benchmark

    def counting(path, **kwargs):  # type: ignore[no-untyped-def]
        measured.append(Path(path).name)
        return real(path, **kwargs)

    monkeypatch.setattr(bench_mod, "benchmark", counting)
    again = bench_mod.benchmark_matrix(arts, [1], bench=FAST, journal=journal)
    assert measured == ["b.manifest.json"]  # only the cell the kill interrupted
    assert again[0].to_dict(with_samples=True) == first[0].to_dict(with_samples=True)  # the journal's record, samples and all
    assert [m.artifact for m in again] == ["a", "b"] and all(m.kind == "measured" for m in again)
    assert all(json.loads(line) for line in journal.read_text().splitlines())  # the torn line was cut, not glued


def test_a_journal_of_another_matrix_is_refused(tmp_path: Path) -> None:
    """Bad input: the same run key reused for a different matrix (other thread counts)."""
    arts, journal = _arts(tmp_path), tmp_path / "j.jsonl"
    bench_mod.benchmark_matrix(arts[:1], [1], bench=FAST, journal=journal)
    with pytest.raises(InputError, match="belongs to a different bench"):
        bench_mod.benchmark_matrix(arts[:1], [2], bench=FAST, journal=journal)


def test_the_cli_stores_a_keyed_run_once(tmp_path: Path) -> None:
    """Fault: a CI job retried after its bench had stored (or a command killed right after the commit)."""
    arts, db = _arts(tmp_path), tmp_path / "r.db"
    cmd = [sys.executable, "-m", "edgestill", "bench", *arts, "--min-runs", "5", "--min-seconds", "0.01",
           "--extend-unstable", "0", "--db", str(db), "--run-key", "ci-42", "--json"]
    r1 = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r1.returncode == 0, r1.stderr
    r2 = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0, r2.stderr
    assert "already stored as run 1" in r2.stderr
    d1, d2 = json.loads(r1.stdout), json.loads(r2.stdout)
    assert d1["run_id"] == d2["run_id"] == 1
    assert [m["p50_ms"] for m in d1["measurements"]] == [m["p50_ms"] for m in d2["measurements"]]
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
        assert con.execute("SELECT count(*) FROM measurements").fetchone()[0] == 2
    assert not any((tmp_path / ".r.db.journal").iterdir())  # the journal is gone once the run is stored
    bad = subprocess.run([*cmd[:-3], "--run-key", " ", "--json"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--run-key must be" in bad.stderr and "Traceback" not in bad.stderr
