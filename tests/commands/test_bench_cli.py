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
    an unknown runtime name, a malformed --threads, a missing --data file, an unknown --clock."""
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
        ((str(manifest), "--clock", "cpu"), "--clock 'cpu' is not a clock; use one of runtime, wall"),
    ]
    for args, message in cases:
        r = edgestill("bench", *args, "--db", str(tmp_path / "r.db"))
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr


def test_bench_repeat_reports_p50_cv_across_interleaved_repetitions(tmp_path: Path) -> None:
    a, b = write_tiny_onnx(tmp_path / "a", name="a"), write_tiny_onnx(tmp_path / "b", name="b")
    db = tmp_path / "results.db"
    r = edgestill("bench", str(a), str(b), "--repeat", "2", "--min-runs", "10", "--min-seconds", "0.05",
                  "--db", str(db), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    # interleaved: a b a b, each repetition its own stored measurement
    assert [m["artifact"] for m in out["measurements"]] == ["a", "b", "a", "b"]
    by_name = {c["artifact"]: c for c in out["repeats"]}
    for name in ("a", "b"):
        cell = by_name[name]
        each = [m["p50_ms"] for m in out["measurements"] if m["artifact"] == name]
        assert cell["repeat"] == 2 and cell["threads"] == 1
        assert cell["p50_ms_each"] == [round(p, 4) for p in each]
        import numpy as np

        expected_cv = float(np.std(each, ddof=1) / np.mean(each) * 100)
        assert abs(cell["p50_cv_percent"] - expected_cv) < 0.01
    with sqlite3.connect(db) as con:
        n_samples = con.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    assert n_samples == sum(m["n"] for m in out["measurements"])

    table = edgestill("bench", str(a), "--repeat", "2", "--min-runs", "10", "--min-seconds", "0.05", "--db", str(db))
    assert table.returncode == 0, table.stderr
    assert "p50 across interleaved repetitions" in table.stdout and "p50 CV %" in table.stdout


def _junk_artifact(tmp_path: Path, fmt: str, ext: str) -> Path:
    """A valid manifest whose model file holds junk bytes (hashes match: the file is what the manifest says)."""
    from edgestill.artifact import sha256_file

    manifest = write_tiny_onnx(tmp_path / fmt, name="junk")
    d = json.loads(manifest.read_text())
    model = manifest.parent / f"junk.{ext}"
    model.write_bytes(b"these bytes are not a model at all" * 4)
    names = [model.name]
    if fmt == "openvino":
        (manifest.parent / "junk.bin").write_bytes(b"\0" * 64)
        names.append("junk.bin")
    d.update(format=fmt, model_file=model.name, files={n: sha256_file(manifest.parent / n) for n in names})
    manifest.write_text(json.dumps(d))
    return manifest


def test_bench_model_file_its_runtime_cannot_parse_is_bad_input(tmp_path: Path) -> None:
    for fmt, ext, runtime in (("onnx", "onnx", "onnxruntime"), ("tflite", "tflite", "litert"), ("openvino", "xml", "openvino")):
        manifest = _junk_artifact(tmp_path, fmt, ext)
        r = edgestill("bench", str(manifest), "--min-runs", "5", "--min-seconds", "0", "--db", str(tmp_path / "r.db"))
        assert r.returncode == 2, (fmt, r.stdout, r.stderr)
        assert f"junk.{ext} cannot be parsed as a {fmt} model by {runtime}" in r.stderr, (fmt, r.stderr)


def test_bench_data_of_the_wrong_shape_names_both_shapes(tmp_path: Path) -> None:
    import numpy as np

    manifest = write_tiny_onnx(tmp_path)  # takes x [1, 8]
    data = tmp_path / "wrong.npz"
    np.savez(data, x=np.zeros((4, 5), np.float32), y=np.zeros(4, np.int64))
    r = edgestill("bench", str(manifest), "--data", str(data), "--min-runs", "5", "--min-seconds", "0",
                  "--db", str(tmp_path / "r.db"))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "x has shape [4, 5], samples of shape [5]" in r.stderr and "takes [1, 8]" in r.stderr, r.stderr


def test_bench_bad_input_next_to_a_crash_exits_3(tmp_path: Path) -> None:
    """Exit 2 only when every failed cell was bad input; one crash among them makes the run exit 3."""
    import os

    from edgestill.runtimes.base import PLUGINS_ENV

    junk = _junk_artifact(tmp_path, "onnx", "onnx")
    crash = write_tiny_onnx(tmp_path / "crash", name="crash")
    # a test-only runtime (tests/runtimes/crashing_runtime.py) that aborts on loading an artifact named "crash*"
    env = {**os.environ, PLUGINS_ENV: "tests.runtimes.crashing_runtime",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    r = subprocess.run([sys.executable, "-m", "edgestill", "bench", str(junk), str(crash), "--min-runs", "5",
                        "--min-seconds", "0", "--runtime", "crash-test", "--db", str(tmp_path / "r.db")],
                       capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "SIGABRT" in r.stdout


FAULTY_RUNTIME = '''"""A test-only runtime: onnxruntime, except that loading an artifact named hang* sleeps, crash* aborts (SIGABRT,
no JSON), killed* is sent SIGKILL and hog* allocates and touches 1.5 GiB in 64 MiB steps (which a memory limit must stop)."""
import os
import time

import numpy as np

from edgestill.runtimes.base import RUNTIMES
from edgestill.runtimes.onnxruntime import OnnxRuntime


@RUNTIMES.register("fault-test")
class FaultyRuntime(OnnxRuntime):
    name = "fault-test"

    def load(self, artifact, options):
        session = super().load(artifact, options)
        if artifact.name.startswith("hang"):
            time.sleep(3600)
        if artifact.name.startswith("crash"):
            os.abort()
        if artifact.name.startswith("killed"):
            os.kill(os.getpid(), 9)  # as the kernel's OOM killer would
        if artifact.name.startswith("hog"):
            held = [np.ones(64 << 20, np.uint8) for _ in range(24)]
            del held
        return session
'''


def faulty_runtime_env(tmp_path: Path) -> dict[str, str]:
    """The environment that makes the runner import the fault-injecting runtime above (as ``--runtime fault-test``)."""
    import os

    from edgestill.runtimes.base import PLUGINS_ENV

    plugin_dir = tmp_path / "plugin"
    plugin_dir.mkdir(exist_ok=True)
    (plugin_dir / "faulty_runtime_plugin.py").write_text(FAULTY_RUNTIME)
    repo = Path(__file__).resolve().parents[2]
    return {**os.environ, PLUGINS_ENV: "faulty_runtime_plugin", "PYTHONPATH": f"{plugin_dir}{os.pathsep}{repo}"}


def test_a_hang_a_crash_and_a_memory_hog_are_stopped_and_the_matrix_completes(tmp_path: Path) -> None:
    """Isolation: each bad cell is stopped (timeout, SIGABRT, SIGKILL, memory limit) and recorded with its reason; the
    good cell is measured and stored; the run exits 3 (a runtime failure, not bad input)."""
    names = ("hang", "crash", "killed", "hog", "fine")
    manifests = [write_tiny_onnx(tmp_path / n, name=n) for n in names]
    db = tmp_path / "r.db"
    r = subprocess.run([sys.executable, "-m", "edgestill", "bench", *map(str, manifests), "--runtime", "fault-test",
                        "--timeout", "15", "--memory-limit", "400M", "--min-runs", "5", "--min-seconds", "0",
                        "--db", str(db), "--json"],
                       capture_output=True, text=True, timeout=300, env=faulty_runtime_env(tmp_path))  # fmt: skip
    assert r.returncode == 3, (r.stdout, r.stderr)
    cells = {c["artifact"]: c for c in json.loads(r.stdout)["measurements"]}
    assert list(cells) == list(names)
    assert cells["fine"]["kind"] == "measured" and cells["fine"]["n"] >= 5
    hang, crash, hog = cells["hang"], cells["crash"], cells["hog"]
    assert [c["kind"] for c in (hang, crash, hog)] == ["failed"] * 3
    assert hang["error"].startswith("runner timed out after 15 s and was killed"), hang["error"]
    assert hang["settings"]["failure"] == "timeout"
    assert "SIGABRT" in crash["error"] and crash["settings"]["failure"] == "crash"
    assert cells["killed"]["error"].startswith("runner was killed (SIGKILL)"), cells["killed"]["error"]
    assert "out of memory" in cells["killed"]["error"] and "--memory-limit" in cells["killed"]["error"]
    assert hog["error"].startswith("ran out of memory (limit 400.0 MiB)"), hog["error"]
    assert "MemoryError" in hog["error"] and "Traceback" not in hog["error"]  # the reason, not a crash dump
    assert hog["settings"]["failure"] == "out_of_memory" and hog["settings"]["memory_limit_bytes"] == 400 << 20
    assert cells["fine"]["settings"]["memory_limit_bytes"] == 400 << 20
    with sqlite3.connect(db) as con:
        kinds = dict(con.execute("SELECT artifact, kind FROM measurements").fetchall())
        n_samples = con.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        hog_error = con.execute("SELECT error FROM measurements WHERE artifact = 'hog'").fetchone()[0]
    assert hog_error.startswith("ran out of memory (limit 400.0 MiB)")
    assert kinds == {"hang": "failed", "crash": "failed", "killed": "failed", "hog": "failed", "fine": "measured"}
    assert n_samples == cells["fine"]["n"]
