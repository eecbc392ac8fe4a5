"""A tiny seeded ONNX classifier with a manifest, built with onnx.helper (no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

N_IN, N_CLASSES = 8, 6


def write_tiny_onnx(directory: Path, name: str = "tiny", batch: int | str = 1) -> Path:
    """logits = x[:, :6] (an identity MatMul + zero bias): the predicted class is argmax of the first 6 inputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgestill.artifact import Artifact, TensorSpec

    directory.mkdir(parents=True, exist_ok=True)
    w = np.zeros((N_IN, N_CLASSES), np.float32)
    w[:N_CLASSES, :N_CLASSES] = np.eye(N_CLASSES, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, N_IN])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, N_CLASSES])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.zeros(N_CLASSES, np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, directory / f"{name}.onnx")
    art = Artifact(
        name=name,
        format="onnx",
        precision="fp32",
        directory=directory,
        model_file=f"{name}.onnx",
        inputs=[TensorSpec(name="x", shape=(batch, N_IN), dtype="float32", logical_dtype="float32")],
        outputs=[TensorSpec(name="logits", shape=(batch, N_CLASSES), dtype="float32", logical_dtype="float32")],
        source={"model": "tiny-identity"},
    )
    art.hash_files()
    return art.write_manifest()


def labelled_data(n: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y and the per-sample top-1 correctness: the first 15 labels are the argmax, the last 5 the argmin."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, N_IN)).astype(np.float32)
    scores = x[:, :N_CLASSES]
    y = np.argmax(scores, axis=1)
    y[15:] = np.argmin(scores[15:], axis=1)
    return x, y.astype(np.int64), np.arange(n) < 15


@pytest.fixture
def tiny_manifest(tmp_path: Path) -> Path:
    return write_tiny_onnx(tmp_path / "art")


@pytest.fixture
def eval_npz(tmp_path: Path) -> Path:
    x, y, _ = labelled_data()
    p = tmp_path / "eval.npz"
    np.savez(p, x=x, y=y)
    return p
