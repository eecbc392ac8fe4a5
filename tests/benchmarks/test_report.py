"""Reports: every cell shown, the Pareto front and int8 numbers right, estimates apart, user strings escaped, the
HTML self-contained, files written atomically, bad input → exit 2."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from edgestill.benchmarks.report import build_report, render_html, render_markdown, write_report
from edgestill.benchmarks.store import ResultsStore
from edgestill.errors import InputError
from edgestill.record import Accuracy, LatencyStats, Measurement, OutputParity

HOSTILE = "<script>alert(1)</script>"
HOST = "host-a"
PI = "raspberry-pi-5"


def _latency(p50_ms: float) -> LatencyStats:
    return LatencyStats(p50_ms=p50_ms, p90_ms=p50_ms * 1.2, p99_ms=p50_ms * 1.5, mean_ms=p50_ms * 1.05,
                        std_ms=p50_ms * 0.05, cv_percent=5.0, min_ms=p50_ms * 0.9, max_ms=p50_ms * 2, n=100)  # fmt: skip


def _cell(name: str, fmt: str, precision: str, p50_ms: float, acc: float, model_bytes: int, *, parent: str | None = None,
          stability: dict | None = None) -> Measurement:  # fmt: skip
    runtime = {"onnx": "onnxruntime", "tflite": "litert", "openvino": "openvino"}[fmt]
    settings = {"manifest": {"name": name, "format": fmt, "precision": precision, "parent_sha256": parent,
                             "versions": {"edgestill": "0.1.0", "onnx": "1.23.2"}}} if parent else {}  # fmt: skip
    return Measurement(
        artifact=name, format=fmt, precision=precision, runtime=runtime, threads=1, latency=_latency(p50_ms),
        model_bytes=model_bytes, accuracy=Accuracy(metric="top1", value=acc, n=500), teacher_top1_agreement=acc + 0.05,
        teacher_kl=0.01, stability=stability, settings=settings, warnings=["noisy machine"] if fmt == "tflite" else [],
        provenance={"device_id": HOST, "cpu_model": "Test CPU 9000", "cpu_count": 4, "os": "Linux", "arch": "x86_64",
                    "runtime_version": f"{runtime}-1.0"},
    )  # fmt: skip


def _estimate(name: str, precision: str, p50_ms: float, low_ms: float, high_ms: float, device: str = PI) -> Measurement:
    return Measurement(artifact=name, format="onnx", precision=precision, runtime="onnxruntime", threads=4,
                       kind="estimated", latency=_latency(p50_ms), low_ms=low_ms, high_ms=high_ms, model_bytes=4_000_000,
                       provenance={"device_id": device})  # fmt: skip


# The hand-checkable set on host-a (p50 ms, top-1): the front is m-onnx-int8 (4, .88), m-tflite-fp32 (8, .91) and
# m-openvino-fp32 (12, .92). m-onnx-fp32 (10, .90) loses to m-tflite-fp32; m-tflite-int8 (5, .85) to m-onnx-int8;
# the hostile int8 OpenVINO file (6, .80) to m-onnx-int8. An estimate of 3 ms on host-a would beat them all if it
# were counted as a measurement.
FRONT = {"m-onnx-int8-static", "m-tflite-fp32", "m-openvino-fp32"}


def make_report_store(path: Path) -> tuple[int, int]:
    """A store with one run of every kind of row a report shows, and an older second run; returns (run, older run)."""
    cells = [
        _cell("m-onnx-fp32", "onnx", "fp32", 10.0, 0.90, 4_000_000, parent="p-onnx"),
        _cell("m-onnx-int8-static", "onnx", "int8-static", 4.0, 0.88, 1_000_000, parent="p-onnx"),
        _cell("m-tflite-fp32", "tflite", "fp32", 8.0, 0.91, 4_000_000),
        _cell("m-tflite-int8-static", "tflite", "int8-static", 5.0, 0.85, 1_200_000),
        _cell("m-openvino-fp32", "openvino", "fp32", 12.0, 0.92, 4_100_000, parent="p-ov"),
        _cell(HOSTILE, "openvino", "int8-static", 6.0, 0.80, 1_100_000, parent="p-ov",
              stability={"stable": False, "reasons": ["drift 18% between the window's halves"]}),
        Measurement(artifact="m-broken", format="tflite", precision="fp32", runtime="litert", threads=1, kind="failed",
                    error="runner crashed: <img src=x onerror=alert(2)>", provenance={"device_id": HOST}),
        _estimate("m-onnx-fp32", "fp32", 40.0, 30.0, 55.0),
        _estimate("m-onnx-int8-static", "int8-static", 16.0, 12.0, 26.0),
        _estimate("m-tflite-int8-static", "int8-static", 3.0, 2.0, 4.0, device=HOST),
    ]
    cells[0].parity = [OutputParity(name="logits", max_abs=1e-6, max_rel=2e-6, cosine=1.0, sqnr_db=120.0, top1_agreement=1.0)]
    with ResultsStore(path) as store:
        older = store.add_run("bench old", git_commit="0" * 40, git_dirty=False, label="old", git_ref="main",
                              machine=HOST, measurements=[_cell("m-onnx-fp32", "onnx", "fp32", 11.0, 0.90, 4_000_000)])
        run = store.add_run("run recipe.yaml", git_commit="abcdef1234" * 4, git_dirty=True, label=f"nightly {HOSTILE}",
                            git_ref="feature/a|b`c`", machine=HOST, measurements=cells)  # fmt: skip
    return run, older


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    make_report_store(tmp_path / "results.db")
    return tmp_path / "results.db"


@pytest.fixture
def report(store_path: Path) -> dict:
    with ResultsStore(store_path) as store:
        return build_report(store, store.resolve_runs("latest"))


def _device(report: dict, device_id: str) -> dict:
    (d,) = [d for d in report["devices"] if d["device_id"] == device_id]
    return d


def test_every_measured_cell_failed_cell_and_estimate_is_in_the_report(report: dict) -> None:
    host = _device(report, HOST)
    names = {"m-onnx-fp32", "m-onnx-int8-static", "m-tflite-fp32", "m-tflite-int8-static", "m-openvino-fp32", HOSTILE}
    assert {c["artifact"] for c in host["cells"]} == names
    assert [c["p50_ms"] for c in host["cells"]] == [4.0, 5.0, 6.0, 8.0, 10.0, 12.0]  # fastest first
    assert [f["artifact"] for f in host["failed"]] == ["m-broken"] and "runner crashed" in host["failed"][0]["reason"]
    md, page = render_markdown(report), render_html(report)
    for name in names - {HOSTILE}:
        assert name in md and name in page
    for p50 in ("4.00", "5.00", "6.00", "8.00", "10.0", "12.0", "40.0", "16.0", "3.00"):
        assert f"| {p50} |" in md, p50
    assert "m-broken" in md and "runner crashed" in md and "m-broken" in page
    assert "Test CPU 9000" in md and "onnxruntime onnxruntime-1.0" in md  # provenance: CPU, runtime versions
    assert "abcdef1234 (uncommitted changes)" in md and "edgestill version" in md


def test_the_pareto_front_is_the_cells_nothing_beats_on_both_axes(report: dict) -> None:
    host = _device(report, HOST)
    assert {c["artifact"] for c in host["cells"] if c["pareto"]} == FRONT
    assert host["quality"] == "accuracy"
    summary = render_markdown(report).split("## Summary")[1].split("## Device")[0]
    assert all(name in summary for name in FRONT) and "m-onnx-fp32" not in summary


def test_int8_vs_fp32_speedup_and_accuracy_drop(report: dict) -> None:
    pairs = {p["int8"]: p for p in _device(report, HOST)["int8_vs_fp32"]}
    assert set(pairs) == {"m-onnx-int8-static", "m-tflite-int8-static", HOSTILE}  # the hostile one pairs by parent
    onnx = pairs["m-onnx-int8-static"]
    assert (onnx["fp32"], onnx["speedup"], onnx["size_ratio"]) == ("m-onnx-fp32", pytest.approx(2.5), pytest.approx(0.25))
    assert onnx["accuracy_drop_points"] == pytest.approx(2.0)
    assert pairs["m-tflite-int8-static"]["speedup"] == pytest.approx(1.6)
    assert pairs["m-tflite-int8-static"]["accuracy_drop_points"] == pytest.approx(6.0)
    assert pairs[HOSTILE]["fp32"] == "m-openvino-fp32" and pairs[HOSTILE]["unstable"]
    md = render_markdown(report)
    assert "| m-onnx-int8-static | m-onnx-fp32 | onnxruntime | 1 | 10.0 | 4.00 | 2.50× | 90.00% → 88.00% | +2.00 |" in md
    (est,) = _device(report, PI)["estimated_int8_vs_fp32"]
    assert est["kind"] == "estimated" and est["speedup"] == pytest.approx(2.5)
    assert f"### on {PI}, estimated (not measured)" in md


def test_estimates_are_never_among_measurements_and_always_labelled(report: dict) -> None:
    host, pi = _device(report, HOST), _device(report, PI)
    assert all(c["kind"] == "measured" for d in report["devices"] for c in d["cells"])
    assert pi["cells"] == [] and [e["p50_ms"] for e in pi["estimates"]] == [16.0, 40.0]
    assert [e["artifact"] for e in host["estimates"]] == ["m-tflite-int8-static"]  # 3 ms: not on the front
    assert all(e["kind"] == "estimated" for d in report["devices"] for e in d["estimates"])
    md = render_markdown(report)
    host_md = md.split(f"## Device {HOST}")[1].split("## Device")[0]
    measured_table = host_md.split("### Measured cells")[1].split("###")[0]
    assert "| 3.00 |" not in measured_table and "estimated" not in measured_table
    estimates_table = host_md.split("### Estimates (cost model, not measured)")[1]
    assert "| estimated | 3.00 | 2.00–4.00 |" in estimates_table
    pi_md = md.split(f"## Device {PI}")[1].split("## int8 vs fp32")[0]
    assert "Measured cells" not in pi_md and "| estimated | 40.0 | 30.0–55.0 |" in pi_md
    assert "88.00% (measured on host-a)" in pi_md  # an estimate's accuracy says where it was measured
    page = render_html(report)
    assert page.count('<tr class="estimated">') == 4  # three estimates and one estimated int8 pair
    assert "estimated, low–high (not measured)" in page  # the chart's legend


def test_a_hostile_model_name_is_text_in_html_and_markdown(report: dict) -> None:
    page, md = render_html(report), render_markdown(report)
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert "<script" not in page.lower() and "<img" not in page.lower()
    table_hits = page.count(f"<td>{escaped}</td>")
    assert table_hits >= 3  # measured cells, int8 pairs, teacher agreement
    assert re.search(r"<text[^>]*>" + re.escape(escaped) + r"( \(unstable\))?</text>", page)  # in the chart, as text
    assert "<script" not in md.lower() and "<img" not in md.lower()
    assert f"| {escaped} |" in md and "nightly " + escaped in md
    for line in md.splitlines():  # a pipe or backtick in a git ref never breaks a table row
        if line.startswith("|") and "feature" in line:
            pytest.fail(f"git ref leaked into a table: {line}")
    assert "feature/a\\|b\\`c\\`" in md


def test_markdown_table_rows_keep_their_column_count(report: dict) -> None:
    md = render_markdown(report)
    for block in md.split("\n\n"):
        rows = [ln for ln in block.splitlines() if ln.startswith("|")]
        if rows:
            widths = {len(re.findall(r"(?<!\\)\|", ln)) for ln in rows}
            assert len(widths) == 1, block


def test_the_html_is_self_contained_and_reproducible(report: dict) -> None:
    page = render_html(report)
    low = page.lower()
    for banned in ("<script", "<link", "@import", "http://", "https://", "<iframe", "<img", "<object", "<embed"):
        assert banned not in low, banned
    assert re.findall(r"url\((?!#)", page) == [] and re.findall(r'href="(?!#)', page) == []  # only in-page references
    assert len(re.findall(r"<svg\b", page)) == 2  # one chart per device with a latency and an accuracy to place
    assert 'id="chart-1"' in page and 'id="chart-2"' in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert render_html(report) == page


def test_the_report_json_round_trips(report: dict) -> None:
    assert json.loads(json.dumps(report)) == report
    assert report["schema"] == "edgestill.report/1"
    (run,) = report["runs"]
    assert run["git_dirty"] is True and run["hosts"][0]["cpu_model"] == "Test CPU 9000"
    assert run["runtimes"] == {"litert": "litert-1.0", "onnxruntime": "onnxruntime-1.0", "openvino": "openvino-1.0"}
    assert [r["source"] for r in report["parity"]] == ["bench"]


def test_write_report_resolves_refs_and_writes_both_files(store_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    data = write_report(store_path, ["old", "latest", "latest"], html=out / "r.html", md=out / "r.md")
    assert [r["label"] for r in data["runs"]] == ["old", f"nightly {HOSTILE}"]
    assert sorted(p.name for p in out.iterdir()) == ["r.html", "r.md"]  # no temporary file left behind
    assert (out / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert "| run |" in (out / "r.md").read_text()  # two runs: a run column


def test_reading_never_creates_a_store(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no results store"):
        write_report(tmp_path / "none.db", "latest")
    assert not (tmp_path / "none.db").exists()
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(InputError, match="empty SQLite file"):
        write_report(tmp_path / "empty.db", "latest")
    assert (tmp_path / "empty.db").read_bytes() == b""


# -- the command ---------------------------------------------------------------------------------------------------


def _invoke(*args: str):
    from typer.testing import CliRunner

    import edgestill.commands.report  # noqa: F401  (registers the command)
    from edgestill.cli import app

    return CliRunner().invoke(app, ["report", *args], prog_name="edgestill")


def test_cli_prints_markdown_json_or_writes_files(store_path: Path, tmp_path: Path) -> None:
    r = _invoke("--db", str(store_path))
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("# edgestill report: run 2") and "## int8 vs fp32" in r.stdout
    r = _invoke("1", "--db", str(store_path), "--json")
    assert r.exit_code == 0 and [run["id"] for run in json.loads(r.stdout)["runs"]] == [1]
    r = _invoke("latest", "--db", str(store_path), "--html", str(tmp_path / "r.html"), "--md", str(tmp_path / "r.md"))
    assert r.exit_code == 0 and (tmp_path / "r.html").is_file() and (tmp_path / "r.md").is_file()


def _foreign(path: Path) -> Path:
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE notes (x)")
    return path


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing db", "no results store at"),
        ("corrupt db", "not an edgestill results store"),
        ("foreign db", "a SQLite file with tables notes"),
        ("unknown run", "no run in"),
        ("html folder missing", "does not exist"),
        ("md is a folder", "is a folder"),
    ],
)
def test_cli_bad_input_exits_2_with_one_paragraph(case: str, expected: str, store_path: Path, tmp_path: Path) -> None:
    db, extra = store_path, []
    if case == "missing db":
        db = tmp_path / "nope" / "results.db"
    elif case == "corrupt db":
        db = tmp_path / "junk.db"
        db.write_bytes(b"not sqlite at all " * 200)
    elif case == "foreign db":
        db = _foreign(tmp_path / "other.db")
    elif case == "unknown run":
        extra = ["99"]
    elif case == "html folder missing":
        extra = ["--html", str(tmp_path / "no" / "such" / "r.html")]
    else:
        extra = ["--md", str(tmp_path)]
    before = db.read_bytes() if db.exists() else None
    r = _invoke(*extra, "--db", str(db))
    assert r.exit_code == 2, (case, r.output)
    assert r.stderr.startswith("error: ") and expected in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.output and r.stdout == ""
    assert (db.read_bytes() if db.exists() else None) == before  # nothing created or changed


def test_without_labels_the_chart_axis_is_teacher_agreement(tmp_path: Path) -> None:
    """A run without eval labels still gets a front and a chart: on top-1 agreement with the teacher."""
    cells = [_cell("a-onnx-fp32", "onnx", "fp32", 2.0, 0.90, 1000),  # teacher agreement is accuracy + 5 points
             _cell("a-onnx-int8-static", "onnx", "int8-static", 1.0, 0.80, 500),
             _cell("b-onnx-fp32", "onnx", "fp32", 3.0, 0.85, 1000)]
    for c in cells:
        c.accuracy = None
    with ResultsStore(tmp_path / "r.db") as store:
        report = build_report(store, [store.add_run("bench", git_commit="f" * 40, machine=HOST, measurements=cells)])
    (host,) = report["devices"]
    assert (host["quality"], host["quality_label"]) == ("teacher_top1_agreement", "top-1 agreement with the teacher")
    assert {c["artifact"] for c in host["cells"] if c["pareto"]} == {"a-onnx-fp32", "a-onnx-int8-static"}
    page = render_html(report)
    assert page.count("<svg") == 1 and "top-1 agreement with the teacher (%)" in page
    (pair,) = host["int8_vs_fp32"]
    assert pair["accuracy_drop_points"] is None and pair["agreement_drop_points"] == pytest.approx(10.0)
