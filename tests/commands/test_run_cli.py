"""``edgestill run RECIPE.yaml``: the whole chain, resumable stage by stage, gate → exit 1, bad input → exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.commands.test_distill_cli import assert_bad_input, edgestill, shapes_recipe, write_recipe


def run_doc(tmp_path: Path, **changes: object) -> dict:
    doc = shapes_recipe(
        tmp_path,
        distill={"losses": [{"name": "kd"}], "epochs": 1, "batch_size": 64},
        quantize={"calibration_samples": 20},
        export={"formats": ["onnx"], "precisions": ["fp32", "int8-static"]},
        bench={"threads": [1], "min_runs": 5, "min_seconds": 0.05},
        gate={"max_accuracy_drop_points": 100.0, "max_p90_ms": 1000.0},
    )
    doc.update(changes)
    return doc


@pytest.mark.slow
def test_run_goes_through_every_stage_and_a_rerun_redoes_only_what_changed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    doc = run_doc(tmp_path)
    r = edgestill("run", str(write_recipe(tmp_path / "r.yaml", doc)), "--out", str(out), "--threads", "1",
                  "--db", str(tmp_path / "r.db"), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["kind"] == "run"
    assert {k: v["status"] for k, v in report["stages"].items()} == {"distill": "ran", "export": "ran", "bench": "ran"}
    arts = report["artifacts"]
    assert [a["artifact"] for a in arts] == ["student-onnx-fp32", "student-onnx-int8-static"]
    for a in arts:
        assert a["passed"] and (out / a["manifest"]).is_file() and 0.0 <= a["test_accuracy"] <= 1.0
        assert 0.0 <= a["teacher_top1_agreement"] <= 1.0 and a["teacher_kl"] >= 0.0
    assert arts[0]["accuracy_drop_points"] == 0.0  # fp32 onnx predicts what torch predicts
    cells = [m for a in arts for m in a["measurements"]]
    assert len(cells) == 2 and all(c["kind"] == "measured" and c["n"] >= 5 and c["p50_ms"] > 0 for c in cells)
    names = [(c["subject"], c["name"]) for c in report["checks"]]
    assert ("student-onnx-int8-static", "int8 accuracy drop within the quantize budget") in names
    assert all(c["verdict"] == "pass" for c in report["checks"]) and len(names) == 7, names
    assert report["store"] == {"path": str(tmp_path / "r.db"), "run_id": 1, "measurements": 2}
    md = (out / "report.md").read_text()
    assert "## Artifacts" in md and "## Checks" in md and "p50 ms" in md

    # only the bench section changed: distill and export are reused, bench runs again
    doc["bench"]["min_runs"] = 6
    r2 = edgestill("run", str(write_recipe(tmp_path / "r.yaml", doc)), "--out", str(out), "--threads", "1",
                   "--db", str(tmp_path / "r.db"), "--json")
    assert r2.returncode == 0, r2.stderr
    stages = {k: v["status"] for k, v in json.loads(r2.stdout)["stages"].items()}
    assert stages == {"distill": "skipped (unchanged)", "export": "skipped (unchanged)", "bench": "ran"}

    # a budget the artifacts cannot meet: the gate fails with exit 1, nothing is recomputed
    doc["gate"]["max_p90_ms"] = 1e-6
    r3 = edgestill("run", str(write_recipe(tmp_path / "r.yaml", doc)), "--out", str(out), "--threads", "1",
                   "--db", str(tmp_path / "r.db"))
    assert r3.returncode == 1, r3.stderr
    assert "check failed" in r3.stderr and "student-onnx-fp32: p90 latency at 1 thread(s)" in r3.stderr
    report3 = json.loads((out / "report.json").read_text())
    assert all(v["status"] == "skipped (unchanged)" for v in report3["stages"].values())
    # ... and the store is not given the same measurements twice: the rerun names the run it stored before
    assert report3["store"]["run_id"] == 2 and report3["store"]["reused"]
    import sqlite3

    with sqlite3.connect(tmp_path / "r.db") as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 2
        assert con.execute("SELECT count(*) FROM measurements").fetchone()[0] == 4
    html = (out / "report.html").read_text()
    assert "student-onnx-fp32" in html and "<svg" in html  # the HTML report of the run, beside report.md



def test_a_changed_stage_reruns_every_later_stage(tmp_path: Path) -> None:
    """Stage records: an unchanged key is skipped; once one stage reruns, every later one reruns too."""
    from edgestill.chain.run import STATE_FILE, _Silent, _Stages

    previous = {"distill": {"key": "d1", "result": {"x": 1}}, "export": {"key": "e1", "result": {"y": 2}}}
    same = _Stages(tmp_path, previous, _Silent())
    assert same.cached("distill", "d1") == {"x": 1} and same.cached("export", "e1") == {"y": 2}
    assert json.loads((tmp_path / STATE_FILE).read_text())["export"]["status"] == "skipped (unchanged)"
    changed = _Stages(tmp_path, previous, _Silent())
    assert changed.cached("distill", "d2") is None
    assert changed.cached("export", "e1") is None  # its own key is unchanged, but its input (the student) is new


def test_run_with_an_unknown_export_key_exits_2_before_writing_anything(tmp_path: Path) -> None:
    doc = run_doc(tmp_path, export={"formats": ["onnx"], "precisons": ["fp32"]})
    out = tmp_path / "out"
    r = edgestill("run", str(write_recipe(tmp_path / "r.yaml", doc)), "--out", str(out))
    assert_bad_input(r, out, "recipe key 'export.precisons' is not valid. Did you mean 'precisions'?")


def test_run_with_an_unknown_precision_exits_2_with_the_valid_ones(tmp_path: Path) -> None:
    doc = run_doc(tmp_path, export={"formats": ["onnx"], "precisions": ["int8-statik"]})
    out = tmp_path / "out"
    r = edgestill("run", str(write_recipe(tmp_path / "r.yaml", doc)), "--out", str(out))
    assert_bad_input(r, out, "unknown value 'int8-statik'. Did you mean 'int8-static'?")


def test_full_run_example_is_valid_and_help_lists_it() -> None:
    from edgestill.chain.recipe import load_recipe

    example = Path(__file__).resolve().parents[2] / "examples" / "run-full.yaml"
    recipe = load_recipe(example)
    assert recipe.export and recipe.bench and recipe.gate and recipe.distill.baseline
    assert yaml.safe_load(example.read_text())["name"] == recipe.name
    r = edgestill("run", "--help")
    assert r.returncode == 0 and "examples/run-full.yaml" in r.stdout and "resumable" not in r.stderr
