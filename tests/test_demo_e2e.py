"""End to end: ``edgestill demo --quick`` runs the whole chain and writes a complete, honest report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

FORMATS = {"onnx", "tflite", "openvino"}
PRECISIONS = {"fp32", "int8-static"}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("demo") / "out"
    r = subprocess.run(
        [sys.executable, "-m", "edgestill", "demo", "--quick", "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    return r, out


def test_demo_quick_exits_ok_and_prints_the_report_as_json(demo_run) -> None:
    r, out = demo_run
    assert r.returncode == 0, r.stderr[-3000:]
    printed = json.loads(r.stdout)
    on_disk = json.loads((out / "report.json").read_text())
    assert printed["artifacts"] == on_disk["artifacts"]
    assert (out / "report.md").read_text().startswith("# edgestill demo report")


def test_report_holds_six_measured_artifacts_with_the_record_fields(demo_run) -> None:
    _, out = demo_run
    report = json.loads((out / "report.json").read_text())
    arts = report["artifacts"]
    assert {(a["format"], a["precision"]) for a in arts} == {(f, p) for f in FORMATS for p in PRECISIONS}
    for a in arts:
        assert a["kind"] == "measured", a.get("error")
        assert 0.0 <= a["test_accuracy"] <= 1.0
        assert a["accuracy"]["n"] == report["dataset"]["n_test"]
        assert a["p50_ms"] > 0 and a["p90_ms"] >= a["p50_ms"]
        assert a["model_bytes"] > 0
        assert a["parity"], "every artifact carries its parity numbers"
        assert a["threads"] == 1
        assert a["provenance"]["cpu_model"]
        manifest = json.loads((out / a["manifest"]).read_text())
        assert manifest["format"] == a["format"] and manifest["precision"] == a["precision"]
        if a["precision"] == "int8-static":
            assert manifest["calibration"]["n"] > 0 and manifest["calibration"]["sha256"]


def test_fp32_artifacts_agree_with_torch_on_every_test_sample(demo_run) -> None:
    _, out = demo_run
    report = json.loads((out / "report.json").read_text())
    for a in report["artifacts"]:
        if a["precision"] == "fp32":
            assert all(o["top1_agreement"] == 1.0 for o in a["parity"]), a["artifact"]


def test_report_states_teacher_kd_and_baseline_accuracy(demo_run) -> None:
    _, out = demo_run
    report = json.loads((out / "report.json").read_text())
    m = report["models"]
    for key in ("teacher", "student_kd", "student_baseline"):
        assert 0.0 < m[key]["test_accuracy"] <= 1.0
        assert m[key]["parameters"] > 0 and m[key]["macs"] > 0
    assert m["teacher"]["macs"] > m["student_kd"]["macs"] == m["student_baseline"]["macs"]  # the student computes less
    assert report["kd_gain_points"] == pytest.approx(
        100 * (m["student_kd"]["test_accuracy"] - m["student_baseline"]["test_accuracy"]), abs=0.01
    )
    for stage in ("data", "teacher", "distill", "baseline", "export", "bench", "total"):
        assert report["stage_seconds"][stage] >= 0


def test_rerun_into_its_own_folder_is_allowed_and_reuses_the_teacher(demo_run) -> None:
    r, out = demo_run
    assert r.returncode == 0
    r2 = subprocess.run(
        [sys.executable, "-m", "edgestill", "demo", "--quick", "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert json.loads(r2.stdout)["models"]["teacher"]["cache"] == "hit"
