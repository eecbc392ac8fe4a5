"""perf/bench_fidelity.py end to end on a tiny ONNX model and its OpenVINO IR: one JSON line with the ratios."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.conftest import write_tiny_onnx

SCRIPT = Path(__file__).resolve().parents[2] / "perf" / "bench_fidelity.py"


def _tiny_ir(directory: Path) -> None:
    """The tiny ONNX model converted to an OpenVINO IR with an artifact manifest of its own."""
    from edgestill.artifact import Artifact
    from edgestill.runtimes.openvino import no_telemetry

    with no_telemetry():
        import openvino as ov

        ov.save_model(ov.convert_model(str(directory / "tiny.onnx")), str(directory / "tiny-ov.xml"), compress_to_fp16=False)
    art = Artifact.load(directory / "tiny.manifest.json")
    d = json.loads((directory / "tiny.manifest.json").read_text())
    d.update(name="tiny-ov", format="openvino", model_file="tiny-ov.xml", files={})
    (directory / "tiny-ov.manifest.json").write_text(json.dumps(d))
    ir = Artifact.load(directory / "tiny-ov.manifest.json")
    ir.files = {}
    ir.hash_files()
    ir.write_manifest()
    assert art.format == "onnx"


@pytest.mark.slow
def test_bench_fidelity_prints_one_json_line_with_a_ratio_per_artifact(tmp_path: Path) -> None:
    write_tiny_onnx(tmp_path)
    _tiny_ir(tmp_path)
    r = subprocess.run([sys.executable, str(SCRIPT), "--artifacts", str(tmp_path), "--pairs", "1", "--seconds", "0.5"],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert set(doc) == {"threads", "cpu", "pairs", "seconds", "artifacts", "all_within_5_percent"}
    assert set(doc["artifacts"]) == {"tiny", "tiny-ov"}
    assert doc["artifacts"]["tiny"]["reference"] == "bare_loop"
    assert doc["artifacts"]["tiny-ov"]["reference"] == "benchmark_app"
    for cell in doc["artifacts"].values():
        assert len(cell["edgestill_p50_ms"]) == len(cell["reference_median_ms"]) == len(cell["ratios"]) == 1
        assert cell["edgestill_p50_ms"][0] > 0 and cell["reference_median_ms"][0] > 0
        assert cell["ratio_median"] == pytest.approx(cell["edgestill_p50_ms"][0] / cell["reference_median_ms"][0], rel=1e-3)
    assert doc["artifacts"]["tiny-ov"]["edgestill_clock"] == "openvino InferRequest.latency"  # benchmark_app's clock
    assert doc["artifacts"]["tiny"]["edgestill_clock"] == "wall"
    ov = doc["artifacts"]["tiny-ov"]
    assert ov["edgestill_wall_p50_ms"][0] > ov["edgestill_p50_ms"][0]


def test_bench_fidelity_control_times_the_reference_against_itself(tmp_path: Path) -> None:
    write_tiny_onnx(tmp_path)
    r = subprocess.run([sys.executable, str(SCRIPT), "--artifacts", str(tmp_path), "--pairs", "2", "--seconds", "0.3",
                        "--control", "--cpu", "0"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    cell = json.loads(r.stdout)["artifacts"]["tiny"]
    assert len(cell["control_ratios"]) == 2 and all(c > 0 for c in cell["control_ratios"])
    assert cell["control_ratio_median"] == pytest.approx(sorted(cell["control_ratios"])[0] / 2 + sorted(cell["control_ratios"])[1] / 2, rel=1e-3)
