"""models/hf.export_with_optimum: optimum-onnx and optimum-intel export a tiny local folder offline; what their files
output compared with edgestill's wrapper; an unknown format, a hub id and a non-empty output folder → InputError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("optimum.exporters.onnx")
pytest.importorskip("optimum.intel")

from edgestill.data.text import encode_texts, generated_texts  # noqa: E402
from edgestill.errors import InputError  # noqa: E402
from edgestill.models.hf import export_with_optimum, load_hf_model, make_tiny_hf  # noqa: E402

SIZES = {"layers": 2, "hidden": 32, "heads": 2, "intermediate": 64, "max_position": 64}


def _run(files: list[Path], feed: dict[str, np.ndarray]) -> np.ndarray:
    model = next(p for p in files if p.suffix in (".onnx", ".xml"))
    if model.suffix == ".onnx":
        import onnxruntime as ort

        return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    import openvino as ov

    compiled = ov.Core().compile_model(str(model), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled(feed)[compiled.outputs[0]]


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_optimum_files_match_the_wrapper(tmp_path: Path, fmt: str) -> None:
    """A classifier's file gives the wrapper's logits; a feature extractor's gives the last hidden state, whose
    mask-weighted mean is the wrapper's embedding (optimum leaves the pooling outside the file). Both keep the
    Hugging Face input names with dynamic batch and sequence, and copy the tokenizer."""
    texts = generated_texts(6, seed=2).texts
    for task in ("classify", "embed"):
        folder = make_tiny_hf(tmp_path / f"m-{task}", family="bert", task=task, **SIZES)
        files = export_with_optimum(folder, fmt, tmp_path / f"{fmt}-{task}")
        names = {p.name for p in files}
        assert "tokenizer.json" in names and ("model.onnx" in names if fmt == "onnx" else "openvino_model.xml" in names)
        loaded = load_hf_model(folder, seq_len=16)
        input_names = [s.name for s in loaded.input_shapes]
        feed = encode_texts(folder / "tokenizer.json", texts, max_length=16, input_names=input_names)
        with torch.no_grad():
            want = loaded.model(*(torch.from_numpy(feed[n]) for n in input_names)).numpy()
        got = _run(files, feed)
        if task == "embed":
            assert got.shape == (6, 16, 32)  # last_hidden_state: per token
            mask = feed["attention_mask"][..., None]
            got = (got * mask).sum(1) / mask.sum(1)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # staging renamed into place


def test_optimum_refusals(tmp_path: Path) -> None:
    """tflite (optimum has no route), a hub id, a folder without weights, a non-empty output folder."""
    folder = make_tiny_hf(tmp_path / "m", family="distilbert", **SIZES)
    with pytest.raises(InputError, match="not 'tflite'"):
        export_with_optimum(folder, "tflite", tmp_path / "out")
    with pytest.raises(InputError, match="local Hugging Face folders only"):
        export_with_optimum("distilbert-base-uncased", "onnx", tmp_path / "out")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not an empty folder"):
        export_with_optimum(folder, "onnx", busy)
    assert (busy / "keep.txt").read_text() == "mine"
    (folder / "model.safetensors").unlink()
    with pytest.raises(InputError, match="has no weights"):
        export_with_optimum(folder, "openvino", tmp_path / "out")
