"""Models whose cost is set by construction, for calibrating and testing the gate: a chain of ``layers`` identical
dense layers (MatMul + Relu, ``width``×``width``, batch ``batch``). Adding layers adds work in proportion: 23 layers
instead of 20 cost about 15% more, 21 about 5% (the calibration measures the real ratio rather than trusting this).

Built with onnx.helper (no torch) and written as edgestill artifacts (model file + manifest), so ``edgestill bench``
and ``edgestill gate --ab`` take them as they are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_dense_chain(directory: Path, name: str, layers: int, *, width: int = 256, batch: int = 8, seed: int = 0) -> Path:
    """Write ``name.onnx`` and its manifest into ``directory``; return the manifest path.

    Every layer has its own seeded weights (scaled so activations stay finite), so no runtime can fold two layers
    into one and the added work is real.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgestill.artifact import Artifact, TensorSpec

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for i in range(layers):
        w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"]))
        out = "y" if i == layers - 1 else f"a{i}"
        nodes.append(helper.make_node("Relu", [f"h{i}"], [out]))
        prev = out
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, width])], inits)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, directory / f"{name}.onnx")
    art = Artifact(
        name=name,
        format="onnx",
        precision="fp32",
        directory=directory,
        model_file=f"{name}.onnx",
        inputs=[TensorSpec(name="x", shape=(batch, width), dtype="float32", logical_dtype="float32")],
        outputs=[TensorSpec(name="y", shape=(batch, width), dtype="float32", logical_dtype="float32")],
        source={"model": f"dense-chain-{layers}x{width}"},
    )
    art.hash_files()
    return art.write_manifest()
