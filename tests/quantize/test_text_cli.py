"""``edgestill quantize`` on a Hugging Face folder: a named NPZ (one array per input) calibrates and measures the
budget; bad text data exits 2 with one paragraph and writes nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("transformers")

import edgestill.commands.quantize  # noqa: E402,F401  (registers the command on the app)
from edgestill.cli import app  # noqa: E402
from tests.quantize.text_models import SEQ, encoded, load, tiny_folder  # noqa: E402


def _quantize(*args: str):
    return CliRunner().invoke(app, ["quantize", *args], prog_name="edgestill")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("text-cli")
    folder = tiny_folder(root, "classify")
    arrays, labels = encoded(load(folder), 80, seed=1)
    return root, folder, arrays


def _npz(root, name, **arrays):
    path = root / f"{name}.npz"
    np.savez(path, **arrays)
    return path


def test_named_npz_calibrates_openvino_and_keeps_the_tokenizer(setup, tmp_path):
    """The default precision (int8) takes OpenVINO's transformer route, calibrated on the named arrays' share of --data."""
    root, folder, arrays = setup
    data = _npz(root, "texts", **arrays)
    out = tmp_path / "q"
    res = _quantize("--model", str(folder), "--seq-len", str(SEQ), "--data", str(data), "--format", "openvino",
                    "--no-bench", "--out", str(out))
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "quantize-report.json").read_text())
    assert doc["precisions"] == {"openvino": "int8-static"} and doc["data"]["inputs"] == sorted(arrays)
    man = json.loads((out / "bert-classify-openvino-int8-static.manifest.json").read_text())
    assert man["calibration"]["n"] == 40 and man["calibration"]["sample_ids"][0].startswith("data/")
    assert man["quantization"]["chosen"]["model_type"] == "transformer"
    assert (out / man["source"]["text"]["tokenizer"]).is_file()


def test_bad_text_data_exits_2_and_writes_nothing(setup, tmp_path):
    """Bad inputs tried: an NPZ missing attention_mask, input arrays with different N, token ids past the vocabulary,
    --repair on a model with several inputs. Each exits 2 with a message naming the problem; --out is never made."""
    root, folder, arrays = setup
    vocab = load(folder).input_shapes[0].high
    past = arrays["input_ids"].copy()
    past[3, 1] = vocab + 5
    cases = [
        (_npz(root, "no-mask", **{k: v for k, v in arrays.items() if k != "attention_mask"}), (), "attention_mask is missing"),
        (_npz(root, "ragged", **{**arrays, "token_type_ids": arrays["token_type_ids"][:50]}), (), "different numbers of samples"),
        (_npz(root, "past", **{**arrays, "input_ids": past}), (), "past the embedding table"),
        (_npz(root, "ok", **arrays), ("--repair",), "fine-tune single-input models"),
    ]
    for i, (data, extra, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        res = _quantize("--model", str(folder), "--seq-len", str(SEQ), "--data", str(data), "--format", "onnx",
                        "--no-bench", "--out", str(out), *extra)
        assert res.exit_code == 2, (message, res.output)
        assert message in " ".join(res.output.split()) and "Traceback" not in res.output
        assert not out.exists()
