"""``edgestill export`` through the CLI: published files and report, parity failure → exit 1, every bad input → exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def edgestill(*args: str) -> subprocess.CompletedProcess[str]:
    # run from the repository root so the test factories (tests.export.models:...) import as a user's would
    return subprocess.run([sys.executable, "-m", "edgestill", *args], capture_output=True, text=True, timeout=300, cwd=REPO)


@pytest.mark.slow
def test_export_publishes_validated_files_and_a_report(tmp_path: Path) -> None:
    data = tmp_path / "val.npz"
    np.savez(data, x=np.random.default_rng(0).standard_normal((12, 3, 32, 32)).astype(np.float32), y=np.zeros(12, np.int64))
    out = tmp_path / "out"
    r = edgestill("export", "--model", "tests.export.models:tiny_cnn", "--input-shape", "Nx3x32x32", "--format", "onnx",
                  "--precision", "fp32,fp16", "--data", str(data), "--samples", "8", "--tolerance", "fp16.min_cosine=0.9995",
                  "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # stdout is only the JSON document: library output went to the log
    assert doc == json.loads((out / "export-report.json").read_text())
    assert doc["passed"] and [c["name"] for c in doc["results"]] == ["tiny_cnn-onnx-fp32", "tiny_cnn-onnx-fp16"]
    assert doc["tolerances"]["fp16"]["min_cosine"] == 0.9995 and doc["dynamic_batch"] is True
    for cell in doc["results"]:
        assert cell["n_samples"] == 8 and cell["top1_agreement"] == 1.0 and cell["model_bytes"] > 0
        assert cell["inputs"][0]["shape"] == ["batch", 3, 32, 32] and cell["inputs"][0]["dtype"] == "float32"
        assert Path(cell["manifest"]).is_file()
    assert (out / "logs" / "export.log").stat().st_size > 0


@pytest.mark.slow
def test_parity_failure_exits_1_names_the_layer_and_keeps_rejected_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ("export", "--model", "tests.export.models:broken_net", "--input-shape", "1x3x32x32", "--format", "onnx",
            "--samples", "8", "--out", str(out))
    r = edgestill(*args)
    assert r.returncode == 1, r.stderr
    assert "failed parity" in r.stderr and "module 'shift' (ExportOnlyOffset)" in r.stderr and "max_abs" in r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in out.glob("broken_net-*")) == ["broken_net-onnx-fp32.manifest.json.rejected", "broken_net-onnx-fp32.onnx.rejected"]
    doc = json.loads((out / "export-report.json").read_text())
    assert doc["passed"] is False and doc["results"][0]["divergence"]["module"] == "shift"

    r = edgestill(*args, "--no-strict", "--json")  # records the failure and goes on
    assert r.returncode == 0, r.stderr
    cell = json.loads(r.stdout)["results"][0]
    assert cell["passed"] is False and cell["failures"] and cell["rejected_files"]


def _checkpoint_case(tmp_path: Path, case: str) -> list[str]:
    """Arguments for one bad-checkpoint case; the files are made here."""
    import torch
    from safetensors.torch import save_file

    from edgestill.models import create_model

    if case == "truncated":
        path = tmp_path / "w.safetensors"
        save_file(create_model("mobilenetv2-student", num_classes=10, seed=0).state_dict(), str(path))
        path.write_bytes(path.read_bytes()[:5000])
        return ["--model", "mobilenetv2-student", "--checkpoint", str(path)]
    if case == "architecture":
        path = tmp_path / "teacher.safetensors"
        save_file(create_model("resnet-teacher", num_classes=10, seed=0).state_dict(), str(path))
        return ["--model", "mobilenetv2-student", "--checkpoint", str(path)]
    from tests.conftest import build_tiny_cnn

    path = tmp_path / "whole.pt"
    torch.save(build_tiny_cnn(), path)
    return ["--model", "tests.export.models:tiny_cnn", "--input-shape", "1x3x32x32", "--checkpoint", str(path)]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("truncated", "truncated or not a safetensors file"),
        ("architecture", "does not fit MobileNetV2: it was saved from another architecture"),
        ("pickled", "holds pickled Python objects"),
    ],
)
def test_bad_checkpoint_exits_2_and_writes_nothing(tmp_path: Path, case: str, message: str) -> None:
    out = tmp_path / "out"
    r = edgestill("export", *_checkpoint_case(tmp_path, case), "--format", "onnx", "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    if case == "architecture":
        assert "missing keys" in r.stderr and "unexpected keys" in r.stderr
    if case == "pickled":
        assert "--trust-checkpoint" in r.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "mobilenetv2-student", "--input-shape", "1x3xabcx32"], "--input-shape '1x3xabcx32': dim 'abc' is not a whole number"),
        (["--model", "mobilenetv2-studnet"], "Did you mean 'mobilenetv2-student'?"),
        (["--model", "mobilenetv2-student", "--format", "onnx,tflit"], "Did you mean 'tflite'?"),
        (["--model", "mobilenetv2-student", "--tolerance", "fp32.atoll=1"], "unknown key 'atoll'. Did you mean 'atol'?"),
    ],
    ids=["malformed-input-shape", "unknown-model-name", "unknown-format", "bad-tolerance"],
)
def test_bad_arguments_exit_2_and_write_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "out"
    r = edgestill("export", *args, "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


@pytest.mark.parametrize("where", ["inside-a-file", "is-a-file"])
def test_unwritable_out_exits_2(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    out = blocker / "out" if where == "inside-a-file" else blocker
    r = edgestill("export", "--model", "mobilenetv2-student", "--format", "onnx", "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert f"--out {out}" in r.stderr and "Traceback" not in r.stderr
    assert blocker.read_text() == "a file" and sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


@pytest.mark.slow
def test_unsupported_op_exits_2_naming_op_and_format(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = edgestill("export", "--model", "tests.export.models:eig_net", "--input-shape", "1x3x8x8", "--format", "onnx", "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert "ONNX (torch.onnx dynamo exporter) has no conversion for op aten.linalg_eig" in r.stderr and "Try instead" in r.stderr
    doc = json.loads((out / "export-report.json").read_text())
    assert doc["passed"] is False and not list(out.glob("eig_net-*"))


def _help_text(command: str) -> str:
    r = edgestill(command, "--help")
    assert r.returncode == 0, r.stderr
    return " ".join(r.stdout.split())  # rich wraps lines: compare with single spaces


def _listed(text: str, lead: str) -> list[str]:
    """The comma-separated names after ``lead`` in the help text, up to the first '.' or '('."""
    rest = text.split(lead, 1)[1]
    return [t.strip() for t in rest.split("(")[0].split(".")[0].split(",")]


def test_help_lists_exactly_the_registered_formats_and_precisions() -> None:
    """The choices come from the registries: every writer's and quantizer's declared precisions, nothing hand-written."""
    from edgestill.artifact import Precision
    from edgestill.commands.export import FORMAT_CHOICES, PRECISION_CHOICES
    from edgestill.compress.quantize.base import QUANTIZERS
    from edgestill.export.base import EXPORTERS

    made = {p for reg in (EXPORTERS, QUANTIZERS) for name in reg.names() for p in reg.get(name).precisions}
    from edgestill.compress.quantize.options import AUTO_PRECISION

    # and "int8": each format's own int8 precision for the model, resolved per format (never a precision of its own)
    assert list(PRECISION_CHOICES) == [*(p.value for p in Precision if p in made), AUTO_PRECISION]
    assert set(FORMAT_CHOICES) == set(EXPORTERS.names())
    text = _help_text("export")
    assert _listed(text, "Formats, comma-separated:") == list(FORMAT_CHOICES)
    assert _listed(text, "Precisions, comma-separated:") == list(PRECISION_CHOICES)
    assert "--max-accuracy-drop" in text and "mixed" not in _listed(text, "Precisions, comma-separated:")


@pytest.mark.slow
def test_int8_static_without_labels_goes_through_the_budget(tmp_path: Path) -> None:
    """Bad-ish input tried: --data holding x only (no y): the budget measures top-1 agreement with fp32 and says so."""
    data = tmp_path / "x_only.npz"
    np.savez(data, x=np.random.default_rng(0).standard_normal((96, 3, 32, 32)).astype(np.float32))
    out = tmp_path / "out"
    r = edgestill("export", "--model", "tests.export.models:tiny_cnn", "--input-shape", "1x3x32x32", "--format", "onnx",
                  "--precision", "int8-static", "--data", str(data), "--samples", "32", "--out", str(out), "--json")
    assert r.returncode in (0, 1), r.stderr
    doc = json.loads(r.stdout)
    (cell,) = doc["results"]
    q = cell["quantization"]
    assert q["metric"] == "top1_agreement_with_fp32" and q["fp32_accuracy"] == 1.0 and doc["max_accuracy_drop"] == 1.0
    assert cell["sqnr_db"] is not None and cell["top1_agreement"] is not None  # the parity block vs torch
    assert (out / "tiny_cnn-onnx-fp32.manifest.json").is_file()  # the budget's baseline, exported once, kept beside it
    if r.returncode == 0:
        assert cell["passed"] and q["budget_met"] and Path(cell["manifest"]).is_file()
    else:  # honest failure: over budget, kept as *.rejected, the message says by how much
        assert not q["budget_met"] and "missed the accuracy budget by" in r.stderr and cell["rejected_files"]


def test_export_refuses_a_non_empty_folder_it_did_not_write(tmp_path: Path) -> None:
    """Bad input: --out holds the user's own logs/export.log and export-report.json and no edgestill marker."""
    out = tmp_path / "mine"
    (out / "logs").mkdir(parents=True)
    (out / "logs" / "export.log").write_text("my log")
    (out / "export-report.json").write_text("my report")
    r = edgestill("export", "--model", "tests.export.models:tiny_cnn", "--input-shape", "1x3x32x32", "--format", "onnx",
                  "--out", str(out))
    assert r.returncode == 2 and "not written by edgestill" in r.stderr and "nothing was touched" in r.stderr, r.stderr
    assert (out / "logs" / "export.log").read_text() == "my log" and (out / "export-report.json").read_text() == "my report"
    assert sorted(p.name for p in out.iterdir()) == ["export-report.json", "logs"]


def test_export_refuses_another_commands_folder_without_overwrite(tmp_path: Path) -> None:
    """Bad input: --out is a folder 'edgestill quantize' wrote."""
    out = tmp_path / "q"
    out.mkdir()
    (out / ".edgestill-out").write_text(json.dumps({"tool": "edgestill", "kind": "quantize"}))
    (out / "quantize-report.json").write_text("{}")
    r = edgestill("export", "--model", "tests.export.models:tiny_cnn", "--input-shape", "1x3x32x32", "--format", "onnx",
                  "--out", str(out))
    assert r.returncode == 2 and "holds the output of 'edgestill quantize'" in r.stderr, r.stderr
    assert (out / "quantize-report.json").read_text() == "{}"


@pytest.mark.slow
def test_reexport_over_a_crafted_manifest_deletes_nothing_outside_the_folder(tmp_path: Path) -> None:
    """Bad input: an earlier export's folder whose manifest was edited to list ``../victim.txt`` and an absolute path
    (with their real sha256); the re-export replaces the artifact and both victims survive."""
    from edgestill.artifact import sha256_file

    out = tmp_path / "out"
    out.mkdir()
    (out / ".edgestill-out").write_text(json.dumps({"tool": "edgestill", "kind": "export"}))
    victim, far = tmp_path / "victim.txt", tmp_path / "far" / "victim2.txt"
    victim.write_text("precious")
    far.parent.mkdir()
    far.write_text("precious too")
    (out / "tiny_cnn-onnx-fp32.manifest.json").write_text(json.dumps({
        "name": "tiny_cnn-onnx-fp32", "format": "onnx", "precision": "fp32", "model_file": "tiny_cnn-onnx-fp32.onnx",
        "files": {"../victim.txt": sha256_file(victim), str(far): sha256_file(far)}}))
    r = edgestill("export", "--model", "tests.export.models:tiny_cnn", "--input-shape", "1x3x32x32", "--format", "onnx",
                  "--samples", "4", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert victim.read_text() == "precious" and far.read_text() == "precious too"
    assert (out / "tiny_cnn-onnx-fp32.onnx").is_file() and (out / "export-report.json").is_file()


def test_the_export_log_is_not_written_through_planted_symlinks(tmp_path: Path) -> None:
    """Bad input: in an earlier export's folder, ``logs/export.log`` is a symlink to a victim file, and in another
    ``logs`` itself is a symlink to a folder outside --out; neither victim is written."""
    from edgestill.commands.export import _keep_log

    from tests.commands.symlinks import plant_log_symlinks

    victim, outside, folders = plant_log_symlinks(tmp_path, "export.log")
    for out in folders:
        log = tmp_path / "lib.log"
        log.write_text("library output")
        final = _keep_log(log, out)
        assert final == out / "logs" / "export.log" and final.read_text() == "library output" and not final.is_symlink()
        assert not log.exists() and oct(final.stat().st_mode & 0o777) == "0o644"
    assert victim.read_text() == "precious" and list(outside.iterdir()) == []
