"""``edgestill bench`` and a ``*.rejected`` file: refused by default with why, measured and marked with
``--allow-rejected``, and never a passing cell for the gate."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest


def edgestill(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgestill", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def rejected(tmp_path_factory, tiny_cnn, example_inputs, validation_x) -> Path:
    """A real rejected fp32 ONNX file: exported, then failed against a tolerance no file can meet."""
    from edgestill.export import ExportConfig, export
    from edgestill.export.validate import Tolerances

    out = tmp_path_factory.mktemp("rejected")
    config = ExportConfig(formats=("onnx",), name="t", tolerances=Tolerances.parse(["fp32.min_sqnr_db=900"]),
                          strict=False, localize=False)
    (cell,) = export(tiny_cnn, example_inputs, config, out, validation_inputs=validation_x[:4])
    assert not cell.passed and cell.failure == "parity"
    return out / "t-onnx-fp32.manifest.json.rejected"


def test_bench_refuses_a_rejected_file_with_why_and_how_to_measure_it(tmp_path: Path, rejected: Path) -> None:
    """Bad inputs tried: the rejected manifest, the rejected model file, and the published name that does not exist.
    Each is exit 2 with one paragraph, no traceback, nothing measured or stored; the rejected ones say they failed
    validation, why (from the manifest), and that --allow-rejected measures them."""
    db = tmp_path / "r.db"
    for path in (rejected, rejected.with_name("t-onnx-fp32.onnx.rejected")):
        r = edgestill("bench", str(path), "--db", str(db))
        said = " ".join(r.stderr.split())
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert f"{path} is a rejected file" in said and "failed validation" in said
        assert "failed parity with torch (output 'linear' sqnr_db" in said and "vs bound 900" in said
        assert f"edgestill bench --allow-rejected {rejected}" in said and ".manifest.json.manifest.json" not in said
    r = edgestill("bench", str(rejected.with_name("t-onnx-fp32.manifest.json")), "--db", str(db))
    assert r.returncode == 2 and "does not exist" in r.stderr and ".manifest.json.manifest.json" not in r.stderr
    assert not db.exists()


def test_allow_rejected_measures_it_marked_and_the_gate_never_passes_it(tmp_path: Path, rejected: Path) -> None:
    """Also tried: --allow-rejected with --device (refused: it measures on this machine only)."""
    from edgestill.benchmarks.gate import gate

    db = tmp_path / "r.db"
    r = edgestill("bench", str(rejected), "--allow-rejected", "--min-runs", "5", "--min-seconds", "0", "--db", str(db),
                  "--json")
    assert r.returncode == 0, r.stderr
    (m,) = json.loads(r.stdout)["measurements"]
    assert m["kind"] == "measured" and m["p50_ms"] > 0 and m["artifact"] == "t-onnx-fp32"
    assert m["settings"]["rejected"] is True and m["settings"]["rejected_path"] == str(rejected)
    assert "sqnr_db" in m["settings"]["rejected_reason"] and any("rejected file" in w for w in m["warnings"])
    assert "rejected file, measured for diagnosis only" in r.stderr
    assert not list(rejected.parent.glob("t-onnx-fp32.onnx")) and not list(rejected.parent.glob("t-onnx-fp32.manifest.json"))

    published = copy.deepcopy(m)
    for key in ("rejected", "rejected_reason", "rejected_path"):
        published["settings"].pop(key)
    (cell,) = gate([published], [m]).cells  # the same samples: only the mark tells them apart
    assert cell.verdict == "failed" and "rejected file" in cell.reason
    (cell,) = gate([m], [published]).cells
    assert cell.verdict == "no verdict" and "baseline is a rejected file" in cell.reason

    r = edgestill("bench", str(rejected), "--allow-rejected", "--device", "pi5", "--db", str(tmp_path / "d.db"))
    assert r.returncode == 2 and "--allow-rejected measures on this machine only" in r.stderr
