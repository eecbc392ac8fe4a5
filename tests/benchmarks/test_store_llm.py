"""A generative model's record in the store: its timing fields round-trip, and a schema 6 store gains them in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edgestill.benchmarks.store import SCHEMA_VERSION, ResultsStore
from edgestill.record import Accuracy, Measurement, measurement_from_dict
from edgestill.stats import summarize

STEPS_MS = [2.0, 2.5, 2.25, 2.0, 3.0]  # per-token decode latencies


def llm_measurement() -> Measurement:
    return Measurement(
        artifact="student-llm-onnx-int4-weight", format="onnx", precision="int4-weight", runtime="onnxruntime-genai",
        threads=2, init_ms=80.0, first_ms=9.0, warmup_ms_mean=30.0, latency=summarize(STEPS_MS), samples_ms=STEPS_MS,
        ttft_ms=6.4, prefill_tokens_per_s=20000.0, decode_tokens_per_s=430.5, prompt_tokens=128, generated_tokens=128,
        accuracy=Accuracy(metric="exact_match", value=0.62, n=50), teacher_top1_agreement=0.8, peak_rss_mb=120.0,
        model_bytes=4_000_000, provenance={"device_id": "abc"},
    )  # fmt: skip


def test_llm_fields_round_trip_through_dict_and_store(tmp_path: Path) -> None:
    m = llm_measurement()
    assert measurement_from_dict(m.to_dict(with_samples=True)) == m
    with ResultsStore(tmp_path / "r.db") as store:
        run = store.add_run("bench llm", measurements=[m])
        (row,) = store.measurements(run)
        assert (row["ttft_ms"], row["prefill_tokens_per_s"], row["decode_tokens_per_s"]) == (6.4, 20000.0, 430.5)
        assert (row["prompt_tokens"], row["generated_tokens"]) == (128, 128)
        assert row["accuracy"] == {"metric": "exact_match", "value": 0.62, "n": 50}
        assert row["p50_ms"] == pytest.approx(2.25)  # ms per decoded token
        assert store.measurement(row["id"]) == m


def test_a_schema_6_store_is_migrated_in_place_keeping_its_rows(tmp_path: Path) -> None:
    from edgestill.benchmarks import store as store_mod

    cols = ",\n    ttft_ms REAL,\n    prefill_tokens_per_s REAL,\n    decode_tokens_per_s REAL,\n    prompt_tokens INTEGER,\n    generated_tokens INTEGER"
    assert cols in store_mod._SCHEMA
    path = tmp_path / "v6.db"
    db = sqlite3.connect(path)
    db.executescript(store_mod._SCHEMA.replace(cols, "") + "\nPRAGMA user_version = 6;")
    db.execute("INSERT INTO runs (created_at, command) VALUES ('2026-11-01T00:00:00+00:00', 'bench old')")
    db.execute("INSERT INTO measurements (run_id, artifact, format, precision, runtime, threads, kind, p50_ms, "
               "parity_json, provenance_json, settings_json, warnings_json) "
               "VALUES (1, 'old', 'onnx', 'fp32', 'onnxruntime', 1, 'measured', 0.5, '[]', '{}', '{}', '[]')")
    db.commit()
    db.close()
    with ResultsStore(path) as store:
        old, = store.measurements(1)
        assert old["p50_ms"] == 0.5 and old["ttft_ms"] is None and old["decode_tokens_per_s"] is None
        run = store.add_run("bench llm", measurements=[llm_measurement()])
        assert store.measurements(run)[0]["decode_tokens_per_s"] == 430.5
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7


def test_the_report_shows_a_generative_table_only_where_such_a_record_is(tmp_path: Path) -> None:
    from dataclasses import replace

    from edgestill.benchmarks.report import build_report, render_html, render_markdown

    plain = replace(llm_measurement(), artifact="cnn-onnx-fp32", precision="fp32", ttft_ms=None,
                    prefill_tokens_per_s=None, decode_tokens_per_s=None, prompt_tokens=None, generated_tokens=None)
    with ResultsStore(tmp_path / "r.db") as store:
        plain_run = store.add_run("bench plain", measurements=[plain])
        run = store.add_run("bench llm", measurements=[replace(llm_measurement(), artifact="<b>llm</b>")])
        assert "Generative models" not in render_markdown(build_report(store, [plain_run]))
        report = build_report(store, [run])
    (cell,) = report["devices"][0]["cells"]
    assert (cell["ttft_ms"], cell["decode_tokens_per_s"], cell["prompt_tokens"]) == (6.4, 430.5, 128)
    md, page = render_markdown(report), render_html(report)
    row = next(line for line in md.splitlines() if "128 + 128" in line)
    assert row.endswith("| 128 + 128 | 6.40 | 20000 | 430.5 | 62.00% | 80.00% |")
    assert "&lt;b&gt;llm&lt;/b&gt;" in page and "<b>llm</b>" not in page and "| &lt;b&gt;llm" in row
