"""The device lab with several real sshd "devices" on loopback, one of them going down mid-run: the others complete and
are stored, the down one is reported with its reason, and the command's exit code says a device failed."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edgestill.devices.inventory import load_inventory
from edgestill.devices.lab import run_lab
from edgestill.runtimes.harness import BenchOptions
from tests.benchmarks.conftest import write_tiny_onnx
from tests.devices.conftest import write_inventory

pytestmark = pytest.mark.ssh
QUICK = BenchOptions(min_runs=20, min_seconds=0.2, stability_max_seconds=0)


def test_the_lab_completes_with_one_device_stopped_mid_run(sshd_factory, tmp_path: Path) -> None:
    servers = {name: sshd_factory(name) for name in ("a", "b", "c")}
    inv = load_inventory(write_inventory(tmp_path / "devices.yaml", [s.entry(n) for n, s in servers.items()]))
    art = write_tiny_onnx(tmp_path / "art")
    db = tmp_path / "results.db"
    stopped: list[str] = []

    def progress(device: str, done: int, total: int, label: str) -> None:
        # device c goes down once it is connected and its job uploaded, as its first cell starts
        if device == "c" and "×" in label and not stopped:
            servers["c"].stop()
            stopped.append(label)

    result = run_lab(inv, [art], [1, 2], db=db, bench=QUICK, progress=progress)
    assert stopped, "device c never started a cell"
    by = {d.device: d for d in result.devices}
    assert [d.device for d in result.devices] == ["a", "b", "c"]
    assert by["a"].ok and by["b"].ok and not by["c"].ok
    assert [m.kind for m in by["a"].measurements] == ["measured", "measured"]
    assert by["c"].failure == "unreachable" and "'c'" in by["c"].error and "lost" in by["c"].error
    assert all(m.kind == "failed" and m.latency is None for m in by["c"].measurements)  # no partial rows
    assert result.exit_code == 3
    with sqlite3.connect(db) as con:
        runs = dict(con.execute("SELECT label, id FROM runs").fetchall())
        kinds = con.execute("SELECT r.label, m.kind, count(*) FROM measurements m JOIN runs r ON r.id = m.run_id "
                            "GROUP BY r.label, m.kind ORDER BY r.label").fetchall()
    con.close()
    assert set(runs) == {"lab:a", "lab:b", "lab:c"}
    assert kinds == [("lab:a", "measured", 2), ("lab:b", "measured", 2), ("lab:c", "failed", 2)]


def edgestill(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgestill", *args], capture_output=True, text=True, timeout=300)


def test_lab_run_cli_reports_the_down_device_and_exits_3(sshd_factory, tmp_path: Path) -> None:
    down = sshd_factory("down")
    down.stop()  # a device that is off
    inv = write_inventory(tmp_path / "devices.yaml", [down.entry("pi-off"),
                                                       {"name": "here", "profile": "host", "transport": "local"}])
    art = write_tiny_onnx(tmp_path / "art")
    db = tmp_path / "results.db"
    r = edgestill("lab", "run", "--inventory", str(inv), str(art), "--min-runs", "20", "--min-seconds", "0.1",
                  "--db", str(db), "--json")
    assert r.returncode == 3, r.stderr
    doc = json.loads(r.stdout)
    summary = {d["device"]: d for d in doc["devices"]}
    assert summary["here"]["ok"] and summary["here"]["measured"] == 1
    assert summary["pi-off"]["failure"] == "unreachable" and summary["pi-off"]["measured"] == 0
    assert "error: device pi-off (unreachable)" in r.stderr and "Traceback" not in r.stderr
    kinds = {(m["provenance"]["device"]["id"], m["kind"]) for m in doc["measurements"]}
    assert kinds == {("here", "measured"), ("pi-off", "failed")}
    # bad input: an unknown device name, the closest suggested, exit 2, nothing run
    r = edgestill("lab", "run", "-i", str(inv), str(art), "--devices", "pi-of", "--db", str(tmp_path / "x.db"))
    assert r.returncode == 2 and "Did you mean 'pi-off'" in r.stderr and not (tmp_path / "x.db").exists()
