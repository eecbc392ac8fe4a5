"""Fixtures the generative-model export tests share (test_llm_onnx/openvino/tflite): one tiny seeded Llama folder
per test module (head size 16: onnxruntime's attention kernel needs a multiple of 16) and its torch model."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgestill.models.llm import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("llama") / "tiny", layers=2, hidden=64, heads=4, kv_heads=2,
                           intermediate=128, context_length=256, seed=0)


@pytest.fixture(scope="module")
def torch_model(hf_dir: Path):
    from edgestill.models.llm import load_causal_lm

    return load_causal_lm(hf_dir)[0]
