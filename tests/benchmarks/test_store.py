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


def test_failed_records_store_without_latency(tmp_path: Path) -> None:
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
    current = store_mod._SCHEMA
    old_schema = (current[: current.index("CREATE TABLE artifacts")] + current[current.index("CREATE TABLE samples"):])
    old_schema = (old_schema.replace(",\n    ttft_ms REAL,\n    prefill_tokens_per_s REAL,\n    decode_tokens_per_s REAL,\n"
                                     "    prompt_tokens INTEGER,\n    generated_tokens INTEGER", "")
                  .replace(",\n    teacher_cosine REAL,\n    teacher_retrieval_agreement REAL,\n    retrieval_k INTEGER", "")
                  .replace(",\n    clock TEXT,\n    wall_latency_json TEXT", "")
                  .replace(",\n    teacher_top1_agreement REAL,\n    teacher_kl REAL,\n    stability_json TEXT", "")
                  .replace(",\n    recipe_sha256 TEXT,\n    machine TEXT,\n    git_ref TEXT,\n    run_key TEXT", "")
                  .replace("CREATE UNIQUE INDEX runs_key ON runs(run_key);", ""))
    assert "ttft_ms" not in old_schema and "stability_json" not in old_schema and "teacher_cosine" not in old_schema and "git_ref" not in old_schema and "recipe_sha256" not in old_schema
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
        assert store.measurements(run_id)[0]["teacher_cosine"] is None  # schema 6's column, empty for a classifier
        assert store.add_run("bench keyed", run_key="k1") == store.add_run("bench keyed again", run_key="k1")
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7


def test_a_run_key_stores_a_run_once_however_often_the_command_is_rerun(tmp_path: Path) -> None:
    """Fault: a command killed after its run was committed (before it could record that) is rerun with the same key;
    the store returns the run it holds and adds no rows."""
    with ResultsStore(tmp_path / "r.db") as store:
        first = store.add_run("run demo", run_key="chain:abc", measurements=[_measurement("a"), _measurement("b")])
        again = store.add_run("run demo", run_key="chain:abc", measurements=[_measurement("a"), _measurement("b")])
        other = store.add_run("run demo", run_key="chain:def", measurements=[_measurement("a")])
        plain = [store.add_run("bench"), store.add_run("bench")]  # no key: every call is a new run
        assert again == first == store.run_by_key("chain:abc") and other != first and plain[0] != plain[1]
        assert store.run_by_key("nope") is None
        assert len(store.measurements(first)) == 2 and len(store.runs()) == 4


def test_estimates_are_kept_apart_from_measurements(tmp_path: Path) -> None:
    est = Measurement(artifact="m", format="onnx", precision="fp32", runtime="onnxruntime", threads=1, kind="estimated",
                      latency=summarize([2.0]), low_ms=1.5, high_ms=2.6, provenance={"device_id": "raspberry-pi-5"})
    with ResultsStore(tmp_path / "r.db") as store:
        run_id = store.add_run("estimate", measurements=[est, _measurement("m")])
        assert [d["kind"] for d in store.measurements(run_id)] == ["measured"]  # no read of measurements returns one
        (back,) = store.estimates(run_id)
        assert (back["kind"], back["low_ms"], back["high_ms"], back["p50_ms"]) == ("estimated", 1.5, 2.6, 2.0)


def test_a_manifest_in_settings_is_stored_once_per_artifact_and_run(tmp_path: Path) -> None:
    a, b = _measurement("m"), _measurement("m")
    a.settings["manifest"] = b.settings["manifest"] = {"name": "m", "format": "onnx", "files": {"m.onnx": "ab" * 32}}
    with ResultsStore(tmp_path / "r.db") as store:
        run_id = store.add_run("bench", measurements=[a, b])
        assert store.artifacts(run_id) == {"m": a.settings["manifest"]}
        assert all("manifest" not in d["settings"] for d in store.measurements(run_id))


def test_stability_verdict_round_trips(tmp_path: Path) -> None:
    m = _measurement()
    m.stability = {"stable": False, "reasons": ["drift 12% > 8%"]}
    with ResultsStore(tmp_path / "r.db") as store:
        run_id = store.add_run("bench", measurements=[m])
        (row,) = store.measurements(run_id)
        assert row["stability"] == m.stability and store.measurement(row["id"]).unstable


def test_runs_resolve_by_id_label_git_ref_and_commit(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "r.db") as store:
        r1 = store.add_run("a", git_commit="0123abcd" * 5, git_ref="main", label="baseline")
        r2 = store.add_run("b", git_commit="fedc9876" * 5, git_ref="feature/x")
        r3 = store.add_run("c", git_commit="0123abcd" * 5, git_ref="main")
        assert store.resolve_runs("latest") == [r3]
        assert store.resolve_runs(str(r2)) == [r2] and store.resolve_runs(f"#{r1}") == [r1]
        assert store.resolve_runs("baseline") == [r1]
        assert store.resolve_runs("main") == [r1, r3]
        assert store.resolve_runs("fedc98") == [r2]
        with pytest.raises(InputError, match="no run .* matches 'nope'.*main"):
            store.resolve_runs("nope")
        with pytest.raises(InputError, match="no run"):
            store.resolve_runs("#99")


def test_git_ref_defaults_to_the_ci_branch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESTILL_GIT_REF", "release-1.2")
    with ResultsStore(tmp_path / "r.db") as store:
        store.add_run("bench")
        assert store.runs()[0]["git_ref"] == "release-1.2"


def test_store_is_in_wal_mode_and_a_db_under_a_file_is_bad_input(tmp_path: Path) -> None:
    ResultsStore(tmp_path / "r.db").close()
    assert sqlite3.connect(tmp_path / "r.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match="part of its folder path is a file"):
        ResultsStore(tmp_path / "afile" / "r.db")
    with pytest.raises(InputError, match="is a folder"):
        ResultsStore(tmp_path)


def _write_runs(path: str, worker: int, count: int) -> None:
    with ResultsStore(path) as store:
        for i in range(count):
            store.add_run(f"w{worker}-{i}", git_commit="x", package_version="0", machine="m",
                          measurements=[_measurement(f"w{worker}-{i}")])


def test_many_processes_writing_one_new_store_lose_no_row(tmp_path: Path) -> None:
    """Several processes create the same new store at once and each writes runs: every run and sample lands."""
    import multiprocessing as mp

    path = str(tmp_path / "shared.db")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_write_runs, args=(path, w, 10)) for w in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with ResultsStore(path) as store:
        assert sorted(r["command"] for r in store.runs()) == sorted(f"w{w}-{i}" for w in range(6) for i in range(10))
        assert len(store.measurements()) == 60
        assert store._db.execute("SELECT count(*) FROM samples").fetchone()[0] == 60 * 4
