"""Tiny Hugging Face text models and their data for the tests/quantize/test_text*.py files (not a test module)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SEQ = 16


def tiny_folder(root: Path, task: str) -> Path:
    """A 2-layer BERT folder (hidden 32) with random weights and a tokenizer trained on the generated texts."""
    from edgestill.models.hf import make_tiny_hf

    return make_tiny_hf(root / f"bert-{task}", task=task, layers=2, hidden=32, heads=2, intermediate=64, num_labels=4,
                        max_position=32, seed=0)


def load(folder: Path) -> Any:
    from edgestill.models.hf import load_hf_model

    return load_hf_model(folder, seq_len=SEQ)


def specs(loaded: Any) -> tuple:
    """The loaded model's inputs as the TensorSpecs files keep (name, shape, dtype, kind, vocabulary)."""
    from edgestill.artifact import TensorSpec

    return tuple(TensorSpec(name=s.name, shape=tuple(s.dims), dtype=s.dtype, kind=s.kind,
                            high=s.high if s.kind == "ids" else None) for s in loaded.input_shapes)


def encoded(loaded: Any, n: int, *, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``n`` generated sentences encoded for the model's inputs (by name), and their class labels."""
    from edgestill.data.text import encode_texts, generated_texts

    texts = generated_texts(n, seed=seed)
    arrays = encode_texts(loaded.source["text"]["tokenizer_path"], texts.texts, max_length=SEQ,
                          input_names=[s.name for s in loaded.input_shapes], truncate=True)
    return arrays, texts.labels


def in_order(loaded: Any, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    return tuple(arrays[s.name] for s in loaded.input_shapes)


FORMATS = ("onnx", "openvino", "tflite")


def quantize_text(loaded: Any, out: Path, *, task: str, formats: tuple[str, ...] = FORMATS, **config: Any) -> Any:
    """``quantize`` with precision "int8" (each format's text route) on 64 calibration and 48 eval sentences, by name."""
    from edgestill.compress.quantize import QuantizeConfig, quantize

    calib, _ = encoded(loaded, 64, seed=1)
    eval_x, _ = encoded(loaded, 48, seed=2)
    cfg = QuantizeConfig(formats=formats, precision="int8", bench_latency=False, name="m", **config)
    return quantize(loaded.model, loaded.example_inputs, cfg, out, calibration=calib, eval_x=eval_x,
                    input_specs=specs(loaded), task=task, source=loaded.source)
