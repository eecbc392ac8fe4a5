"""A strict multi-format, multi-precision export tries every cell and reports each; export takes quantize's int8 options
and budget, and a rejected int8 cell says what to try."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgestill.errors import CheckFailed, ParityError, RuntimeFailure, UnsupportedError
from edgestill.export.api import ExportResult, failed_cells_error

REPO = Path(__file__).resolve().parents[2]


def edgestill(*args: str) -> subprocess.CompletedProcess[str]:
    # from the repository root, so the test factory (tests.export.models:tiny_cnn) imports as a user's would
    return subprocess.run([sys.executable, "-m", "edgestill", *args], capture_output=True, text=True, timeout=300, cwd=REPO)


def test_a_failing_cell_does_not_stop_the_others_and_every_cell_is_reported(tmp_path: Path) -> None:
    """Bad input tried: a tolerance no fp16 file can meet (fp16.min_sqnr_db=900). The first failing cell (onnx fp16)
    comes before both OpenVINO cells: they are still made and published, the report and the console list all four,
    and the run exits 1 naming each failure."""
    out = tmp_path / "out"
    r = edgestill("export", "--model", "tests.export.models:tiny_cnn", "--input-shape", "1x3x32x32",
                  "--format", "onnx,openvino", "--precision", "fp32,fp16", "--samples", "4",
                  "--tolerance", "fp16.min_sqnr_db=900", "--out", str(out))
    assert r.returncode == 1, r.stderr
    doc = json.loads((out / "export-report.json").read_text())
    cells = {c["name"]: c for c in doc["results"]}
    assert list(cells) == ["tiny_cnn-onnx-fp32", "tiny_cnn-onnx-fp16", "tiny_cnn-openvino-fp32", "tiny_cnn-openvino-fp16"]
    assert doc["passed"] is False and doc["cells"] == {
        "expected": 4, "tried": 4, "passed": 2, "failed": ["tiny_cnn-onnx-fp16", "tiny_cnn-openvino-fp16"]}
    for name in ("tiny_cnn-onnx-fp32", "tiny_cnn-openvino-fp32"):
        assert cells[name]["passed"] and Path(cells[name]["manifest"]).is_file() and cells[name]["failure"] is None
    for name in ("tiny_cnn-onnx-fp16", "tiny_cnn-openvino-fp16"):
        assert cells[name]["failure"] == "parity" and cells[name]["rejected_files"]
        assert not (out / f"{name}.manifest.json").exists() and (out / f"{name}.manifest.json.rejected").is_file()
    said = " ".join(r.stderr.split())
    assert "2 of 4 cells failed (every cell was tried" in said and "Passed: tiny_cnn-onnx-fp32, tiny_cnn-openvino-fp32" in said
    assert "tiny_cnn-openvino-fp16 failed parity" in said and "Traceback" not in r.stderr
    assert "4 of 4 cells tried: 2 passed, 2 failed" in " ".join(r.stdout.split())


def _cell(name: str, failure: str | None) -> ExportResult:
    return ExportResult(name=name, format="onnx", precision="fp32", passed=failure is None, failure=failure,
                        error=None if failure is None else f"{name} failed ({failure})")


@pytest.mark.parametrize(("failures", "kind", "code"), [
    (("parity", "unsupported", "library"), ParityError, 1),
    (("budget", "library"), CheckFailed, 1),
    (("not made",), ParityError, 1),
    (("library", "unsupported"), RuntimeFailure, 3),
    (("unsupported", "unsupported"), UnsupportedError, 2),
])
def test_the_exit_code_of_a_strict_run_follows_the_worst_kind_of_failure(failures, kind, code) -> None:
    """Every failure kind mixed with the others: a failed check (parity, budget, an int8 cell whose fp32 baseline
    failed) is exit 1 whatever else failed; a library failure 3; ops a format cannot express alone are 2. The error
    carries every cell and names each failure."""
    results = [_cell("ok", None)] + [_cell(f"c{i}", f) for i, f in enumerate(failures)]
    err = failed_cells_error(results)
    assert type(err) is kind and err.exit_code == code and err.results == results
    assert f"{len(failures)} of {len(results)} cells failed" in str(err) and "Passed: ok." in str(err)
    assert all(f"[{f}] c{i} failed" in str(err) for i, f in enumerate(failures))
    assert failed_cells_error([_cell("ok", None)]) is None


def test_export_takes_the_quantize_options_and_a_rejected_int8_cell_says_what_to_try(tmp_path: Path) -> None:
    """Bad input tried: an int8 tolerance no file can meet (int8.min_sqnr_db=900) with the budget wide open, so the
    cell is rejected for parity. The shared int8 flags reach the QuantizeConfig and the manifest (percentile
    calibration on onnx, no equalisation, 0 float layers, 40 calibration samples); the report carries the budget's
    facts and the options that ran; the message names the kept files, how to bench them, and what to try."""
    rng = np.random.default_rng(0)
    data = tmp_path / "x.npz"
    np.savez(data, x=rng.standard_normal((64, 3, 32, 32)).astype(np.float32))  # 16 validate, 40 of the other 48 calibrate
    out = tmp_path / "out"
    r = edgestill("export", "--model", "tests.export.models:tiny_cnn", "--input-shape", "1x3x32x32", "--format", "onnx",
                  "--precision", "int8-static", "--data", str(data), "--samples", "16", "--calibration-samples", "40",
                  "--calibration-method", "percentile", "--no-equalize", "--max-float-layers", "0", "--time-budget", "5",
                  "--max-accuracy-drop", "100", "--tolerance", "int8.min_sqnr_db=900", "--out", str(out), "--json")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["quantize"]["options"]["calibration_method"] == "percentile" and doc["quantize"]["options"]["equalize"] is False
    assert doc["quantize"]["max_float_layers"] == 0 and doc["quantize"]["time_budget_s"] == 5.0
    (cell,) = doc["results"]
    q = cell["quantization"]
    assert cell["failure"] == "parity" and q["budget_met"] is True and q["metric"] == "top1_agreement_with_fp32"
    assert q["options"]["calibration_method"] == "percentile" and q["runtime"] == "onnxruntime"
    kept = json.loads((out / "tiny_cnn-onnx-int8-static.manifest.json.rejected").read_text())
    assert kept["quantization"]["options"]["calibration_method"] == "percentile" and kept["calibration"]["n"] == 40
    said = " ".join(r.stderr.split())
    assert "Kept as tiny_cnn-onnx-int8-static.onnx.rejected, tiny_cnn-onnx-int8-static.manifest.json.rejected" in said
    assert "edgestill bench --allow-rejected" in said and "another --calibration-method than percentile" in said
    assert "--equalize" in said and "--max-float-layers, now 0" in said and "--precision fp16 or fp32" in said


def test_a_bad_int8_option_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """Bad input tried: an unknown --calibration-method (exit 2 naming the choices, no --out folder made; a dynamic
    TFLite recipe for static int8 is refused the same way, see tests/quantize/test_convert.py)."""
    out = tmp_path / "out"
    r = edgestill("export", "--model", "tests.export.models:tiny_cnn", "--input-shape", "1x3x32x32",
                  "--precision", "int8-static", "--calibration-method", "bogus", "--out", str(out))
    said = " ".join(r.stderr.split())
    assert r.returncode == 2 and "Valid: minmax, entropy, percentile, mse, auto" in said and not out.exists(), r.stderr
