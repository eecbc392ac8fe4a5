"""End to end: ``edgestill demo --quick`` and ``edgestill run`` of the same recipe as YAML are one chain.

Both run in a fresh working folder as a user would (the results store defaults to ``.edgestill/results.db`` there).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

FORMATS = {"onnx", "tflite", "openvino"}
PRECISIONS = {"fp32", "int8-static"}


def edgestill(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgestill", *args], capture_output=True, text=True, timeout=900,
                          cwd=cwd)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``demo --quick --json``, then ``recipes show demo-quick`` saved as YAML and ``run`` of that file."""
    work = tmp_path_factory.mktemp("work")
    demo = edgestill(work, "demo", "--quick", "--out", "demo-out", "--json")
    shown = edgestill(work, "recipes", "show", "demo-quick")
    (work / "quick.yaml").write_text(shown.stdout)
    run = edgestill(work, "run", "quick.yaml", "--out", "run-out", "--json")
    return {"work": work, "demo": demo, "shown": shown, "run": run}


def _demo_report(runs: dict[str, Any]) -> dict[str, Any]:
    r = runs["demo"]
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def _run_report(runs: dict[str, Any]) -> dict[str, Any]:
    r = runs["run"]
    assert runs["shown"].returncode == 0, runs["shown"].stderr
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def _schema(obj: Any, path: str = "") -> set[str]:
    """Every key path in a JSON document (list items merged): the report's shape, without its values."""
    if isinstance(obj, dict):
        return {p for k, v in obj.items() for p in {f"{path}.{k}"} | _schema(v, f"{path}.{k}")}
    if isinstance(obj, list):
        return {p for item in obj for p in _schema(item, f"{path}[]")}
    return set()


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    """What a seed fixes: accuracies, agreements, parity and sizes (not timings, paths or provenance)."""
    return {
        "teacher": report["teacher"]["test_accuracy"],
        "student": report["student"]["test_accuracy"],
        "baseline": report["student"]["baseline_test_accuracy"],
        "artifacts": {a["artifact"]: (a["precision"], a["passed"], a["test_accuracy"], a["teacher_top1_agreement"],
                                      a["teacher_kl"], [o["top1_agreement"] for o in a["parity"]])
                      for a in report["artifacts"]},
        "checks": [(c["subject"], c["name"], c["verdict"]) for c in report["checks"] if "latency" not in c["name"]],
    }


def test_demo_prints_the_report_it_writes(runs: dict[str, Any]) -> None:
    report = _demo_report(runs)
    out = runs["work"] / "demo-out"
    assert json.loads((out / "report.json").read_text()) == report
    assert report["recipe"] == "demo-quick" and report["kind"] == "run"
    md = (out / "report.md").read_text()
    assert md.startswith("# edgestill run: demo-quick") and "teacher agree" in md


def test_run_of_the_shown_recipe_gives_the_demo_report_schema_and_figures(runs: dict[str, Any]) -> None:
    demo, run = _demo_report(runs), _run_report(runs)
    assert _schema(run) == _schema(demo)
    assert _figures(run) == _figures(demo)
    assert run["recipe_sha256"] == demo["recipe_sha256"]  # the YAML shown is the recipe the demo ran


def test_every_artifact_is_validated_scored_against_labels_and_teacher_and_timed(runs: dict[str, Any]) -> None:
    report = _demo_report(runs)
    out = runs["work"] / "demo-out"
    arts = report["artifacts"]
    assert {(a["format"], a["precision"]) for a in arts} == {(f, p) for f in FORMATS for p in PRECISIONS}
    for a in arts:
        assert a["passed"], a.get("error")
        assert 0.0 <= a["test_accuracy"] <= 1.0 and a["n_test"] == report["data"]["n_test"]
        assert 0.0 <= a["teacher_top1_agreement"] <= 1.0 and a["teacher_kl"] >= 0.0
        assert a["parity"] and a["model_bytes"] > 0
        (m,) = a["measurements"]  # one thread count in the quick recipe
        assert m["kind"] == "measured" and m["threads"] == 1 and 0 < m["p50_ms"] <= m["p90_ms"]
        assert m["teacher_top1_agreement"] == a["teacher_top1_agreement"]
        manifest = json.loads((out / a["manifest"]).read_text())
        assert manifest["format"] == a["format"] and manifest["precision"] == a["precision"]
        if a["precision"] == "int8-static":
            assert manifest["calibration"]["n"] > 0 and manifest["calibration"]["sha256"]
            assert a["quantization"]["budget_met"] is True
        else:
            assert all(o["top1_agreement"] == 1.0 for o in a["parity"]), a["artifact"]
    teacher, student = report["teacher"], report["student"]
    assert teacher["macs"] > student["macs"] > 0
    assert student["kd_gain_points"] == pytest.approx(
        100 * (student["test_accuracy"] - student["baseline_test_accuracy"]), abs=0.01)
    assert all(c["verdict"] == "pass" for c in report["checks"]), report["checks"]


def test_both_runs_land_in_the_results_store_with_raw_samples(runs: dict[str, Any]) -> None:
    demo, run = _demo_report(runs), _run_report(runs)
    db = runs["work"] / ".edgestill" / "results.db"
    con = sqlite3.connect(db)
    stored = con.execute("SELECT id, command, recipe_sha256, machine, git_commit FROM runs ORDER BY id").fetchall()
    assert [r[0] for r in stored] == [demo["store"]["run_id"], run["store"]["run_id"]]
    assert stored[0][1] == "demo demo-quick" and stored[1][1] == "run demo-quick"
    assert stored[0][2] == stored[1][2] == demo["recipe_sha256"] and stored[0][3]
    for run_id in (r[0] for r in stored):
        rows = con.execute("SELECT id, artifact, teacher_top1_agreement, accuracy_value FROM measurements "
                           "WHERE run_id = ?", (run_id,)).fetchall()
        assert sorted(r[1] for r in rows) == sorted(a["artifact"] for a in demo["artifacts"])
        for mid, _, agreement, accuracy in rows:
            assert agreement is not None and accuracy is not None
            n = con.execute("SELECT count(*) FROM samples WHERE measurement_id = ?", (mid,)).fetchone()[0]
            assert n >= 20  # the quick recipe's min_runs: every steady-state sample is kept


def test_demo_reruns_into_its_own_folder_from_the_cache(runs: dict[str, Any]) -> None:
    first = _demo_report(runs)
    again = edgestill(runs["work"], "demo", "--quick", "--out", "demo-out", "--json", "--db", "other.db")
    assert again.returncode == 0, again.stderr[-3000:]
    report = json.loads(again.stdout)
    assert report["teacher"]["cache"] == "hit" and report["student"]["baseline_cache"] == "hit"
    assert report["student"]["baseline_test_accuracy"] == first["student"]["baseline_test_accuracy"]
    assert report["store"]["path"] == "other.db" and (runs["work"] / "other.db").is_file()
