"""``edgestill export`` for models with several named inputs and for Hugging Face folders: a text model exports through
the CLI with a named NPZ, and every bad input spec or text option exits 2 with one clear paragraph, writing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import edgestill.commands.export  # noqa: F401  (registers the command on the app)
from edgestill.cli import app

FACTORY = "tests.models.test_input_specs:token_net"  # forward(input_ids, attention_mask, token_type_ids=None)


def _export(*args: str):
    return CliRunner().invoke(app, ["export", *args], prog_name="edgestill")


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgestill.models.hf import make_tiny_hf

    return make_tiny_hf(tmp_path_factory.mktemp("hf") / "classifier", hidden=32, heads=2, intermediate=64, max_position=32)


def test_hf_folder_exports_with_named_npz_and_dynamic_length(tmp_path: Path, tiny_classifier: Path) -> None:
    """--model HF_DIR --seq-len --dynamic-length --data tokens.npz: a published ONNX file with the three token inputs,
    a symbolic sequence, the tokenizer beside it and the labels in its text facts."""
    n, length = 6, 12
    rng = np.random.default_rng(0)
    mask = np.ones((n, length), np.int64)
    mask[:, 8:] = 0
    data = tmp_path / "tokens.npz"
    np.savez(data, input_ids=rng.integers(0, 40, (n, length)), attention_mask=mask,
             token_type_ids=np.zeros((n, length), np.int64), y=np.arange(n) % 4)
    out = tmp_path / "out"
    r = _export("--model", str(tiny_classifier), "--format", "onnx", "--seq-len", str(length), "--dynamic-length",
                "--data", str(data), "--samples", "4", "--out", str(out), "--json")
    assert r.exit_code == 0, r.output
    manifest = json.loads((out / "classifier-onnx-fp32.manifest.json").read_text())
    assert [(i["name"], i["shape"]) for i in manifest["inputs"]] == [
        ("input_ids", [1, "seq"]), ("attention_mask", [1, "seq"]), ("token_type_ids", [1, "seq"])]
    text = manifest["source"]["text"]
    assert text["task"] == "classify" and text["dynamic_length"] is True and len(text["labels"]) == 4
    assert (out / text["tokenizer"]).is_file()
    assert manifest["validation"]["n_samples"] == 4 and manifest["validation"]["criterion"] == "top-1"


@pytest.mark.parametrize(("args", "message"), [
    (["--input-shape", "1x8:int64", "--input-shape", "1x8:int64"], "--input-shape is given 2 times"),
    (["--input-shape", "1x8,1x8"], "holds a comma"),
    (["--input-shape", "1x8:int64", "--input", "input_ids:1x8"], "both given"),
    (["--input", "input_ids:1x8", "--input", "input_ids:1x8"], "input_ids more than once"),
    (["--input", "input_ids:1x8", "--input", "mask:1x8"], "forward takes (input_ids, attention_mask, token_type_ids)"),
    (["--input-shape", "1x8:int64"], "missing attention_mask"),
    (["--input", "input_ids:1x8", "--input", "attention_mask:1x8", "--input", "token_type_ids:1x8", "--input", "x:1x8"],
     "does not take"),
    (["--input", "input_ids"], "not NAME:SHAPE"),
], ids=["repeated-input-shape", "comma", "both-options", "duplicate-name", "unknown-name", "too-few", "too-many",
        "no-shape"])
def test_bad_input_specs_exit_2_and_write_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    """Bad inputs: a repeated --input-shape, two shapes in one, --input with --input-shape, a duplicate name, a name
    the forward does not take (its parameters are listed), fewer or more inputs than the forward takes, no shape."""
    out = tmp_path / "out"
    r = _export("--model", FACTORY, *args, "--vocab-size", "30", "--format", "onnx", "--out", str(out))
    assert r.exit_code == 2, r.output
    assert message in " ".join(r.output.split()) and "Traceback" not in r.output
    assert not out.exists()


def test_bad_text_options_exit_2(tmp_path: Path, tiny_classifier: Path) -> None:
    """Bad inputs: a --seq-len longer than the model's maximum (32 positions), --input for a Hugging Face folder (its
    inputs come from its config), a named NPZ missing an input's array (the present arrays are named)."""
    out = tmp_path / "out"
    r = _export("--model", str(tiny_classifier), "--seq-len", "64", "--format", "onnx", "--out", str(out))
    assert r.exit_code == 2 and "at most 32" in " ".join(r.output.split()), r.output
    r = _export("--model", str(tiny_classifier), "--input", "input_ids:1x8", "--format", "onnx", "--out", str(out))
    assert r.exit_code == 2 and "does not apply to the Hugging Face folder" in " ".join(r.output.split()), r.output
    data = tmp_path / "partial.npz"
    np.savez(data, input_ids=np.zeros((4, 8), np.int64), x=np.zeros((4, 8), np.int64))
    r = _export("--model", FACTORY, "--input", "input_ids:1x8", "--input", "attention_mask:1x8", "--vocab-size", "30",
                "--data", str(data), "--format", "onnx", "--out", str(out))
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "no array named 'attention_mask'" in text and "['input_ids', 'x']" in text, r.output
    assert not out.exists()
