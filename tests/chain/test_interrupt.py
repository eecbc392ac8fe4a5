"""``edgestill run`` stopped part-way (Ctrl-C, SIGKILL) and rerun: it continues from the last finished stage, redoes
nothing finished, and the results store gets each run's rows exactly once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.commands.test_run_cli import run_doc
from tests.commands.test_distill_cli import edgestill, write_recipe


def _start(recipe: Path, out: Path, db: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "edgestill", "run", str(recipe), "--out", str(out), "--db", str(db),
                             "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_stage(out: Path, stage: str, proc: subprocess.Popen[str], timeout: float = 300) -> None:
    """Poll ``OUT/stages.json`` until ``stage`` is recorded as finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before {stage} finished: {proc.communicate()}"
        try:
            if stage in json.loads((out / "stages.json").read_text()):
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{stage} did not finish within {timeout} s")


def _rows(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as con:
        return (con.execute("SELECT count(*) FROM runs").fetchone()[0],
                con.execute("SELECT count(*) FROM measurements").fetchone()[0])


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_a_run_stopped_after_distill_resumes_there_and_stores_its_rows_once(tmp_path: Path, how: str) -> None:
    """Fault: Ctrl-C (SIGINT: exit 130, 'interrupted', no traceback), SIGTERM (a cancelled CI job: exit 143) or
    SIGKILL once the distill stage is recorded.
    The rerun skips distill, does the rest, and the store holds one run with one row per latency cell."""
    recipe = write_recipe(tmp_path / "r.yaml", run_doc(tmp_path))
    out, db = tmp_path / "out", tmp_path / "r.db"
    proc = _start(recipe, out, db)
    _wait_for_stage(out, "distill", proc)
    proc.send_signal(getattr(signal, how))
    _, err = proc.communicate(timeout=120)
    if how != "SIGKILL":
        assert proc.returncode == {"SIGINT": 130, "SIGTERM": 143}[how], err
        assert ("interrupted" if how == "SIGINT" else "terminated") in err and "Traceback" not in err, err
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not (out / "report.json").exists()

    r = edgestill("run", str(recipe), "--out", str(out), "--db", str(db), "--threads", "1", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["stages"]["distill"]["status"] == "skipped (unchanged)"
    assert report["stages"]["export"]["status"] == "ran" and report["stages"]["bench"]["status"] == "ran"
    assert _rows(db) == (1, 2)
    for a in report["artifacts"]:
        from edgestill.artifact import Artifact

        Artifact.load(out / a["manifest"]).verify_files()
    # a third run changes nothing: every stage is skipped and the store is not given the rows again
    r = edgestill("run", str(recipe), "--out", str(out), "--db", str(db), "--threads", "1", "--json")
    assert r.returncode == 0, r.stderr
    assert all(s["status"] == "skipped (unchanged)" for s in json.loads(r.stdout)["stages"].values())
    assert _rows(db) == (1, 2)


@pytest.mark.slow
def test_two_runs_into_one_folder_at_once_one_waits_out_with_a_clear_error(tmp_path: Path) -> None:
    """Fault: a second 'edgestill run' into the folder a first one is still writing: exit 2 naming the lock, and the
    first run completes untouched."""
    recipe = write_recipe(tmp_path / "r.yaml", run_doc(tmp_path))
    out, db = tmp_path / "out", tmp_path / "r.db"
    first = _start(recipe, out, db)
    try:
        _wait_for_stage(out, "distill", first)
        r = edgestill("run", str(recipe), "--out", str(out), "--db", str(db), "--threads", "1")
        assert r.returncode == 2 and "is in use" in r.stderr and "Traceback" not in r.stderr, r.stderr
        _, err = first.communicate(timeout=600)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
    assert _rows(db) == (1, 2)
    assert os.path.isfile(out / "report.json")


def test_a_run_killed_between_storing_and_recording_that_it_stored_does_not_store_twice(tmp_path: Path) -> None:
    """Fault: the process dies after the store committed the run but before ``stages.json`` recorded it (the one
    window a stage record cannot cover). The rerun finds the run by the bench stage's run key: no second run."""
    from types import SimpleNamespace

    from edgestill.chain.run import RunOptions, _Silent, _Stages, _store
    from tests.benchmarks.test_store import _measurement

    db, out = tmp_path / "r.db", tmp_path / "out"
    out.mkdir()
    records = {"distill": {"key": "d"}, "export": {"key": "e"}, "bench": {"key": "b", "run_key": "run:1234"}}
    options = RunOptions(out_dir=out, db=db)
    recipe, report = SimpleNamespace(name="demo"), {"recipe_sha256": "ab" * 32}
    cells = [_measurement("a"), _measurement("b")]

    class Dies(_Stages):
        def record(self, name: str, *args: object, **kwargs: object) -> None:
            if name == "store":
                raise KeyboardInterrupt  # killed right after the commit
            super().record(name, *args, **kwargs)

    dying = Dies(out, {}, _Silent())
    dying.records.update(records)
    with pytest.raises(KeyboardInterrupt):
        _store(options, recipe, report, cells, dying)
    rerun = _Stages(out, {}, _Silent())  # nothing recorded about the store
    rerun.records.update(records)
    result = _store(options, recipe, report, cells, rerun)
    assert result["reused"] and result["run_id"] == 1
    assert _rows(db) == (1, 2)
    assert json.loads((out / "stages.json").read_text())["store"]["result"]["run_id"] == 1
