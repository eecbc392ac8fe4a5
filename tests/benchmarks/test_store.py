"""The SQLite results store: round trip, atomic runs, schema version."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edgestill.record import Accuracy, Measurement, OutputParity
from edgestill.stats import summarize
from edgestill.benchmarks.store import SCHEMA_VERSION, ResultsStore
from edgestill.errors import InputError


def _measurement(name: str = "student-onnx-int8", samples: tuple[float, ...] = (0.31, 0.29, 0.35, 0.30)) -> Measurement:
    return Measurement(
        artifact=name,
        format="onnx",
        precision="int8-static",
        runtime="onnxruntime",
        threads=2,
        init_ms=12.5,
        first_ms=1.25,
        warmup_ms_mean=0.4,
        latency=summarize(samples),
        peak_rss_mb=88.0,
        model_bytes=12345,
        teacher_top1_agreement=0.97,
        teacher_kl=0.05,
        accuracy=Accuracy(metric="top1", value=0.91, n=200),
        parity=[OutputParity(name="logits", max_abs=0.01, max_rel=0.02, cosine=0.999, sqnr_db=31.0, top1_agreement=0.99)],
        provenance={"device_id": "abc123", "cpu_model": "x", "git_dirty": False},
        settings={"runtime_options": {"threads": 2}},
        samples_ms=list(samples),
        warnings=["noisy"],
    )


def test_round_trip_keeps_every_field_and_the_raw_samples(tmp_path: Path) -> None:
    m = _measurement()
    with ResultsStore(tmp_path / "r.db") as store:
        run_id = store.add_run("edgestill bench x --threads 2", git_commit="deadbeef", git_dirty=True, package_version="0.1.0")
        mid = store.add_measurement(run_id, m)
    with ResultsStore(tmp_path / "r.db") as store:  # reopened: it was committed
        (row,) = store.measurements(run_id=run_id)
        assert row["id"] == mid and row["run_id"] == run_id
        expected = m.to_dict()
        for key, value in expected.items():
            assert row[key] == value, key
        assert store.samples(mid) == list(m.samples_ms)
        back = store.measurement(mid)
        assert back.to_dict(with_samples=True) == m.to_dict(with_samples=True)
        (run,) = store.runs()
        assert (run["git_commit"], run["git_dirty"], run["command"]) == ("deadbeef", True, "edgestill bench x --threads 2")


def test_filters_by_artifact_and_run(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "r.db") as store:
        r1 = store.add_run("a", measurements=[_measurement("m1"), _measurement("m2")])
        r2 = store.add_run("b", measurements=[_measurement("m1")])
        assert [d["artifact"] for d in store.measurements(run_id=r1)] == ["m1", "m2"]
        assert [d["run_id"] for d in store.measurements(artifact="m1")] == [r1, r2]
        assert len(store.measurements()) == 3


def test_failed_and_estimated_records_store_without_latency(tmp_path: Path) -> None:
    failed = Measurement(artifact="x", format="tflite", precision="fp32", runtime="litert", threads=1, kind="failed", error="boom")
    with ResultsStore(tmp_path / "r.db") as store:
        run_id = store.add_run("c", measurements=[failed])
        (row,) = store.measurements(run_id)
        assert row["kind"] == "failed" and row["error"] == "boom" and row["p50_ms"] is None and row["accuracy"] is None


def test_a_crash_while_writing_a_run_leaves_nothing(tmp_path: Path) -> None:
    bad = _measurement("bad")
    bad.provenance["not_json"] = object()  # json.dumps fails half-way through the run
    with ResultsStore(tmp_path / "r.db") as store:
        with pytest.raises(TypeError):
            store.add_run("d", measurements=[_measurement("ok"), bad])
        assert store.runs() == [] and store.measurements() == []
        assert store._db.execute("SELECT count(*) FROM samples").fetchone()[0] == 0


def test_schema_is_versioned_and_newer_stores_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    ResultsStore(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(InputError, match="newer"):
        ResultsStore(path)


def test_unknown_run_and_foreign_file_are_input_errors(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "r.db") as store:
        with pytest.raises(InputError, match="no run 99"):
            store.add_measurement(99, _measurement())
    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(InputError, match="other tables"):
        ResultsStore(other)
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(InputError, match="not an edgestill results store"):
        ResultsStore(tmp_path / "junk.db")


def test_a_schema_1_store_is_migrated_in_place_and_its_rows_read_as_wall_clock(tmp_path: Path) -> None:
    from edgestill.benchmarks import store as store_mod

    path = tmp_path / "old.db"
    old_schema = (store_mod._SCHEMA.replace(",\n    clock TEXT,\n    wall_latency_json TEXT", "")
                  .replace(",\n    teacher_top1_agreement REAL,\n    teacher_kl REAL", "")
                  .replace(",\n    recipe_sha256 TEXT,\n    machine TEXT", ""))
    assert old_schema.count("\n") == store_mod._SCHEMA.count("\n") - 6
    db = sqlite3.connect(path)
    db.executescript(old_schema + "\nPRAGMA user_version = 1;")
    db.execute("INSERT INTO runs (created_at, command) VALUES ('2026-11-01T00:00:00+00:00', 'bench old')")
    db.execute("INSERT INTO measurements (run_id, artifact, format, precision, runtime, threads, kind, p50_ms, "
               "parity_json, provenance_json, settings_json, warnings_json) "
               "VALUES (1, 'old', 'onnx', 'fp32', 'onnxruntime', 1, 'measured', 0.5, '[]', '{}', '{}', '[]')")
    db.commit()
    db.close()
    with ResultsStore(path) as store:
        (row,) = store.measurements()
        assert (row["artifact"], row["p50_ms"], row["clock"], row["wall_latency"]) == ("old", 0.5, "wall", None)
        run_id = store.add_run("bench new", recipe_sha256="ab" * 32, measurements=[_measurement()])  # new columns
        assert store.runs()[-1]["recipe_sha256"] == "ab" * 32 and store.runs()[-1]["machine"]
        assert store.measurements(run_id)[0]["teacher_top1_agreement"] == 0.97
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
