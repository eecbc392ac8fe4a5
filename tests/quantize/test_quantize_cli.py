"""``edgestill quantize`` through the CLI: bad input exits 2 with a message and writes nothing; a real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


REPO = Path(__file__).resolve().parents[2]


def edgestill(*args: str) -> subprocess.CompletedProcess[str]:
    # run from the repository root so the factory tests.quantize.models:digits_cnn is importable
    return subprocess.run([sys.executable, "-m", "edgestill", *args], capture_output=True, text=True, timeout=600, cwd=REPO)


def _base(out: Path) -> list[str]:
    return ["quantize", "--model", "tests.quantize.models:digits_cnn", "--input-shape", "1x1x8x8", "--data", "digits",
            "--format", "onnx", "--no-bench", "--out", str(out)]


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Weights of a digits_cnn trained for a few epochs: an untrained one is at chance level, where the accuracy
    budget means nothing and quantize refuses (exit 2)."""
    import torch
    from safetensors.torch import save_file

    from edgestill.data import load_dataset
    from tests.quantize.models import train_digits_cnn

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("trained") / "digits_cnn.safetensors"
    save_file(train_digits_cnn(load_dataset("digits"), epochs=3).state_dict(), str(path))
    return path


def _calibration(tmp_path: Path, x: np.ndarray) -> Path:
    path = tmp_path / "calib.npz"
    np.savez(path, x=x)
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    ("calibration", "message"),
    [
        (np.where(np.arange(20)[:, None, None, None] == 3, np.nan, np.zeros((20, 1, 8, 8), np.float32)), "NaN or Inf in 1 of 20"),
        (np.zeros((0, 1, 8, 8), np.float32), "calibration data is empty"),
        (np.zeros((20, 3, 8, 8), np.float32), r"calibration data has shape \[20, 3, 8, 8\] but the model's input is \(N, 1, 8, 8\)"),
    ],
    ids=["nan", "empty", "wrong-shape"],
)
def test_bad_calibration_exits_2_and_writes_nothing(tmp_path: Path, calibration: np.ndarray, message: str) -> None:
    out = tmp_path / "out"
    r = edgestill(*_base(out), "--calibration", str(_calibration(tmp_path, calibration)))
    assert r.returncode == 2, r.stderr
    assert __import__("re").search(message, r.stderr), r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_negative_budget_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = edgestill(*_base(out), "--max-accuracy-drop", "-0.5")
    assert r.returncode == 2
    assert "--max-accuracy-drop must be a number of accuracy points >= 0" in r.stderr and "-0.5" in r.stderr
    assert not out.exists()


@pytest.mark.slow
def test_quantize_writes_artifacts_and_a_report(tmp_path: Path, trained_checkpoint: Path) -> None:
    out = tmp_path / "out"
    r = edgestill(*_base(out), "--checkpoint", str(trained_checkpoint), "--calibration-samples", "64", "--max-accuracy-drop", "100", "--report", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    (f,) = doc["formats"]
    assert doc["budget_met"] and f["budget_met"] and f["format"] == "onnx"
    assert doc["calibration"]["n"] == 64 and len(f["sensitivity"]) == 4  # --report ranks every layer
    manifest = json.loads((out / "digits_cnn-onnx-int8-static.manifest.json").read_text())
    assert manifest["precision"] == "int8-static" and manifest["calibration"]["sample_ids"][0].startswith("digits/train/")
    assert (out / "quantize-report.md").read_text().startswith("# edgestill quantize report")
    assert json.loads((out / "quantize-report.json").read_text())["formats"][0]["naive"]["accuracy"] == f["naive"]["accuracy"]


def test_help_lists_exactly_the_registered_formats_and_precisions() -> None:
    from edgestill.compress.quantize.base import QUANTIZERS, quant_precisions

    r = edgestill("quantize", "--help")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    formats = text.split("Formats, comma-separated:", 1)[1].split(".")[0]
    assert sorted(t.strip() for t in formats.split(",")) == QUANTIZERS.names()
    precisions = text.split("--precision <str> One of", 1)[1].split(".")[0]
    assert [t.strip() for t in precisions.split(",")] == [p.value for p in quant_precisions()]
    # the int8 flags export shares, the label-free budget and the oracle repair
    for flag in ("--calibration-method", "--tflite-recipe", "--equalize", "--no-equalize", "--bias-correction",
                 "--integer-io", "--float-io", "--max-kl", "--eval-fraction", "--repair ", "--repair-with-teacher"):
        assert flag in text, flag


def test_quantize_with_bench_stores_its_latency_rounds_with_raw_samples(tmp_path: Path, trained_checkpoint: Path) -> None:
    from edgestill.benchmarks.store import ResultsStore

    out, db = tmp_path / "out", tmp_path / "r.db"
    args = [a for a in _base(out) if a != "--no-bench"]
    r = edgestill(*args, "--checkpoint", str(trained_checkpoint), "--calibration-samples", "64", "--max-accuracy-drop", "100", "--db", str(db), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["store"]["path"] == str(db) and doc["store"]["measurements"] >= 2
    with ResultsStore(db) as store:
        (run,) = store.runs()
        assert run["command"].startswith("quantize ") and run["machine"]
        rows = store.measurements(run["id"])
        assert len(rows) == doc["store"]["measurements"]
        assert {row["precision"] for row in rows} >= {"fp32", "int8-static"}
        assert all(len(store.samples(row["id"])) >= 50 for row in rows if row["kind"] == "measured")


def _distill_folder(out: Path) -> Path:
    """A folder 'edgestill distill' wrote, holding the student checkpoint; returns the checkpoint."""
    (out / "checkpoints").mkdir(parents=True)
    (out / ".edgestill-out").write_text(json.dumps({"tool": "edgestill", "kind": "distill"}))
    (out / "stages.json").write_text("{}")
    ckpt = out / "checkpoints" / "student.safetensors"
    ckpt.write_bytes(b"the student being quantized")
    return ckpt


def test_quantize_into_the_distill_folder_it_reads_exits_2_and_keeps_the_checkpoint(tmp_path: Path) -> None:
    """Bad input: --out is the folder 'edgestill distill' wrote, which holds the --checkpoint being quantized."""
    out = tmp_path / "run"
    ckpt = _distill_folder(out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    r = edgestill(*_base(out), "--checkpoint", str(ckpt))
    assert r.returncode == 2 and "holds the output of 'edgestill distill'" in r.stderr and "--overwrite" in r.stderr
    assert "Traceback" not in r.stderr
    r = edgestill(*_base(out), "--checkpoint", str(ckpt), "--overwrite")  # an input is never deleted, even then
    assert r.returncode == 2 and f"--checkpoint {ckpt} lies inside --out" in r.stderr, r.stderr
    assert ckpt.read_bytes() == b"the student being quantized"
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
