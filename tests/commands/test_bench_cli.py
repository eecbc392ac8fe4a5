"""``edgestill bench`` through the CLI: a real measurement stored in SQLite, and bad input → exit 2."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.benchmarks.conftest import labelled_data, write_tiny_onnx


def edgestill(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgestill", *args], capture_output=True, text=True, timeout=300)


def test_bench_measures_each_thread_count_and_stores_raw_samples(tmp_path: Path) -> None:
    manifest = write_tiny_onnx(tmp_path)
    x, y, _ = labelled_data()
    np_path = tmp_path / "eval.npz"
    import numpy as np

    np.savez(np_path, x=x, y=y)
    db = tmp_path / "results.db"
    r = edgestill("bench", str(manifest), "--threads", "1,2", "--min-runs", "20", "--min-seconds", "0.1",
                  "--data", str(np_path), "--db", str(db), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    cells = out["measurements"]
    assert [c["threads"] for c in cells] == [1, 2]
    for c in cells:
        assert c["kind"] == "measured" and c["n"] >= 20 and c["p50_ms"] > 0
        assert c["accuracy"]["metric"] == "top1"
    with sqlite3.connect(db) as con:
        n_samples = con.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    assert n_samples == sum(c["n"] for c in cells)


def test_bench_bad_inputs_exit_2_with_a_message(tmp_path: Path) -> None:
    """Bad inputs tried: a file that is not a model of its extension (no manifest), a corrupt manifest,
    an unknown runtime name, a malformed --threads, a missing --data file."""
    manifest = write_tiny_onnx(tmp_path)
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"not a model")
    bad_manifest = tmp_path / "bad.manifest.json"
    bad_manifest.write_text("{not json")
    cases = [
        ((str(junk),), "no manifest found"),
        ((str(bad_manifest),), "not a valid edgestill manifest"),
        ((str(manifest), "--runtime", "onnxrutime"), "Did you mean 'onnxruntime'?"),
        ((str(manifest), "--threads", "1,x"), "--threads takes whole numbers"),
        ((str(manifest), "--data", str(tmp_path / "missing.npz")), "does not exist"),
    ]
    for args, message in cases:
        r = edgestill("bench", *args, "--db", str(tmp_path / "r.db"))
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
