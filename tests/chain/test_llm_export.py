"""export_llm end to end on a tiny Llama (ONNX through onnxruntime-genai's builder): the fp32 file passes strict
validation and is published, a weight-only file that misses its budget is kept only as rejected, a precision the
format cannot make is reported while the rest go on; ``edgestill export`` refuses bad causal-LM input with exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import edgestill.commands.export  # noqa: F401  (registers the command on the app)
from edgestill.artifact import Artifact
from edgestill.chain.llm_export import export_llm, is_causal_lm_folder, seeded_prompts
from edgestill.cli import app
from edgestill.errors import CheckFailed, InputError
from edgestill.export.llm_validate import LLMBudgets

pytest.importorskip("onnxruntime_genai")


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgestill.models.llm import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("llm") / "tiny", layers=1, hidden=64, heads=4, kv_heads=2,
                           intermediate=64, context_length=64)  # head size 16: onnxruntime's GQA kernel needs a multiple of 16


def test_onnx_fp32_published_failing_int4_rejected_fp16_reported(tiny_llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    budgets = LLMBudgets(max_mean_kl=1e-12)  # no int4 file is that close to fp32: this cell must be rejected
    seen: list[str] = []
    result = export_llm(tiny_llama, out, formats=["onnx"], precisions=["int4-weight", "fp16", "fp32"], name="tiny",
                        n_prompts=3, steps=6, budgets=budgets, progress=lambda i, n, label: seen.append(label))
    cells = {c.precision: c for c in result.cells}
    assert list(cells) == ["fp32", "int4-weight", "fp16"]  # fp32 first: the weight-only file's reference
    assert seen[0] == "onnx fp32" and seen[-1] == "done"

    fp32 = cells["fp32"]
    assert fp32.passed and fp32.route == "onnxruntime-genai builder" and fp32.model_bytes > 0
    art = Artifact.load(out / "tiny-onnx-fp32.manifest.json")
    art.verify_files()
    assert art.validation["passed"] and art.validation["tokens_identical"] and art.validation["reference"] == "torch"
    assert art.validation["prompts"] == 3 and art.validation["steps"] == 6
    assert art.validation["max_abs"] < 1e-3

    int4 = cells["int4-weight"]
    assert int4.status == "failed" and any("mean KL" in r for r in int4.reasons)
    assert int4.validation["reference"] == "fp32 file tiny-onnx-fp32"
    assert not (out / "tiny-onnx-int4-weight").exists()
    assert not (out / "tiny-onnx-int4-weight.manifest.json").exists()
    assert (out / "tiny-onnx-int4-weight.rejected").is_dir()
    kept = json.loads((out / "tiny-onnx-int4-weight.manifest.json.rejected").read_text())
    assert kept["validation"]["passed"] is False and kept["precision"] == "int4-weight"

    fp16 = cells["fp16"]
    assert fp16.status == "unsupported" and "fp16" in fp16.reasons[0]
    assert not list(out.glob("tiny-onnx-fp16*"))
    assert not list(out.glob(".llm-export-*"))  # staging folders are removed
    assert isinstance(result.failure(), CheckFailed)
    assert json.loads((out / ".edgestill-out").read_text())["kind"] == "export"

    # bad input: a file someone put inside the artifact's folder; the rerun must not delete it with the folder
    (out / "tiny-onnx-fp32" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="notes.txt"):
        export_llm(tiny_llama, out, formats=["onnx"], precisions=["fp32"], name="tiny", n_prompts=3, steps=6)
    assert (out / "tiny-onnx-fp32" / "notes.txt").read_text() == "mine"
    assert not list(out.glob(".llm-export-*"))
    Artifact.load(out / "tiny-onnx-fp32.manifest.json").verify_files()  # the earlier file is intact


def test_the_inputs_are_checked_before_anything_is_written(tiny_llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(InputError, match="exceeds the model's context"):
        export_llm(tiny_llama, out, formats=["onnx"], precisions=["fp32"], prompts=[[5] * 60], steps=8)
    with pytest.raises(InputError, match="outside the vocabulary"):
        export_llm(tiny_llama, out, formats=["onnx"], precisions=["fp32"], prompts=[[10**6]], steps=2)
    with pytest.raises(InputError, match="not made for a causal LM"):
        export_llm(tiny_llama, out, formats=["onnx"], precisions=["int8-static"])
    with pytest.raises(InputError, match="unknown format"):
        export_llm(tiny_llama, out, formats=["coreml"], precisions=["fp32"])
    assert not out.exists()


def test_seeded_prompts_are_deterministic_and_avoid_special_tokens() -> None:
    a = seeded_prompts(40, [0, 1, 2], n=5)
    assert a == seeded_prompts(40, [0, 1, 2], n=5) and len(a) == 5
    assert all(3 <= t < 40 for p in a for t in p) and all(4 <= len(p) <= 24 for p in a)


def _invoke(*args: str):
    return CliRunner().invoke(app, ["export", *args], prog_name="edgestill")


def test_cli_refuses_bad_causal_lm_input_with_exit_2(tiny_llama: Path, tmp_path: Path) -> None:
    no_tokenizer = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_llama, no_tokenizer)
    (no_tokenizer / "tokenizer.json").unlink()
    encoder = tmp_path / "encoder"
    encoder.mkdir()
    (encoder / "config.json").write_text(json.dumps({"architectures": ["BertForSequenceClassification"],
                                                     "model_type": "bert"}))
    out = tmp_path / "out"
    cases = {
        "hub id": (["--model", "meta-llama/Llama-3.2-1B", "--precision", "int4-weight"], "local"),
        "no tokenizer": (["--model", str(no_tokenizer), "--format", "onnx"], "tokenizer.json"),
        "not a causal LM": (["--model", str(encoder), "--precision", "int4-weight"], "causal"),
        "precision": (["--model", str(tiny_llama), "--precision", "int8-static"], "not made for a causal LM"),
        "built-in model": (["--model", "mobilenetv2-student", "--precision", "int4-weight"], "weight-only precision"),
        "option": (["--model", str(tiny_llama), "--checkpoint", str(tiny_llama / "model.safetensors")],
                   "do not apply to a causal LM"),
    }
    for what, (args, needle) in cases.items():
        r = _invoke(*args, "--out", str(out))
        assert r.exit_code == 2, (what, r.output)
        assert needle in r.output, (what, r.output)
        assert "Traceback" not in r.output
        assert not out.exists(), what
    assert is_causal_lm_folder(tiny_llama) and not is_causal_lm_folder(encoder)


def test_cli_exports_reports_and_exits_2_when_only_unsupported_cells_miss(tiny_llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    r = _invoke("--model", str(tiny_llama), "--formats", "onnx", "--precisions", "fp32,fp16", "--samples", "2",
                "--steps", "4", "--out", str(out), "--json")
    assert r.exit_code == 2, r.output  # the only miss: ONNX cannot make fp16 (UnsupportedError)
    report = json.loads((out / "export-report.json").read_text())
    assert report["task"] == "generate" and report["prompts"] == 2 and report["steps"] == 4
    status = {c["precision"]: c["status"] for c in report["cells"]}
    assert status == {"fp32": "passed", "fp16": "unsupported"}
    assert Artifact.load(out / "tiny-onnx-fp32.manifest.json").validation["tokens_identical"]
    assert (out / "logs" / "export.log").is_file()
