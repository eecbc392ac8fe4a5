"""The quantizable layers of a torch model (Conv/Linear modules, in execution order) and their names in each format."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgestill.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Layer:
    """One quantizable torch module: its dotted name, type and weight shape."""

    name: str
    kind: str
    weight_shape: tuple[int, ...]
    macs: int  # multiply-accumulates for one batch-1 call


EMBEDDING = "Embedding"  # Layer.kind of an nn.Embedding: a table lookup (weights only), matched in files by its shape


def quantizable_layers(model: torch.nn.Module, args: tuple) -> list[Layer]:
    """Conv1d/2d, Linear and Embedding modules in the order one forward pass calls them (hooks on a batch-1 call).

    Embeddings are int8 in a text model's dynamic files (onnxruntime quantizes the Gather's table, ai-edge-quantizer
    the EMBEDDING_LOOKUP's), so they are candidates for the float fallback like the Linear layers; they do no MACs.
    """
    import torch
    from torch import nn

    kinds = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.Embedding)
    names = {m: n for n, m in model.named_modules() if isinstance(m, kinds)}
    order: list[Layer] = []
    seen: set[str] = set()

    def hook(mod: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        name = names[mod]
        if name in seen:
            return
        seen.add(name)
        w = tuple(mod.weight.shape)
        if isinstance(mod, nn.Embedding):
            order.append(Layer(name=name, kind=EMBEDDING, weight_shape=w, macs=0))
            return
        per_out = int(torch.tensor(w[1:]).prod()) if len(w) > 1 else 1
        if isinstance(mod, nn.Linear):  # once per row of its input: (batch, features) or (batch, tokens, features)
            positions = int(out.numel() // max(1, out.shape[-1]))
        else:  # once per output position of a convolution
            positions = int(out[0, 0].numel()) if out.dim() > 2 else 1
        order.append(Layer(name=name, kind=type(mod).__name__, weight_shape=w, macs=int(w[0]) * per_out * positions))

    handles = [m.register_forward_hook(hook) for m in names]
    try:
        with torch.no_grad():
            model.eval()(*args)
    finally:
        for h in handles:
            h.remove()
    return order


def check_layer_names(requested: Sequence[str], layers: Sequence[Layer]) -> None:
    """Raise a ConfigError for a float-layer name that is not a quantizable layer of the model."""
    valid = [layer.name for layer in layers]
    for name in requested:
        if name not in valid:
            shown = ", ".join(valid[:12]) + (" ..." if len(valid) > 12 else "")
            raise ConfigError(
                f"float layer {name!r} is not a Conv/Linear layer (nor an Embedding) of this model.{did_you_mean(name, valid)} "
                f"Its quantizable layers are: {shown}. Use names from the sensitivity report."
            )


def by_weights(model: Any, layers: Sequence[Layer], wanted: Sequence[str], candidates: Sequence[tuple[Any, Any]]) -> dict[str, Any] | None:
    """Each wanted layer's op among ``candidates`` (op, its weight array), found by the weight values themselves (either
    orientation: ONNX MatMul and TFLite keep a Linear's weight transposed or not); None when a Conv/Linear layer has
    no single match (BatchNorm folded into a convolution changes its weights: the caller then aligns by order). An
    embedding with no match maps to None: its lookup was folded into a constant (positions), nothing to keep float.

    Values, unlike execution order, also hold when the graph drops a layer torch calls (a BERT's pooler in an
    embedder) or orders parallel layers (query, key, value) differently.
    """
    import numpy as np

    mods = dict(model.named_modules())
    kinds = {layer.name: layer.kind for layer in layers}
    arrays = [(op, np.asarray(a, dtype=np.float32)) for op, a in candidates]
    out: dict[str, Any] = {}
    for name in wanted:
        w = mods[name].weight.detach().cpu().numpy().astype(np.float32)
        hits = [op for op, a in arrays if _same_values(a, w)]
        if len(hits) > 1 or (not hits and kinds.get(name) != EMBEDDING):
            return None
        out[name] = hits[0] if hits else None
    return out


def _same_values(a: Any, w: Any) -> bool:
    import numpy as np

    if a.size != w.size:
        return False
    if a.shape == w.shape and np.allclose(a, w, rtol=1e-5, atol=1e-7):
        return True
    return a.ndim == 2 and a.T.shape == w.shape and bool(np.allclose(a.T, w, rtol=1e-5, atol=1e-7))


def onnx_nodes_for(graph: Any, layers: Sequence[Layer], wanted: Sequence[str], *, model: Any = None) -> list[str]:
    """Names of the ONNX Conv/Gemm/MatMul (and, for embeddings, Gather) nodes that implement the torch layers ``wanted``.

    With ``model``, matched by weight values first (:func:`by_weights`); otherwise, or when that does not resolve
    every layer, by execution order checked by weight shape: the dynamo exporter folds BatchNorm into the
    convolution and names the fused node after the BatchNorm, so names alone do not identify a layer.

    Embedding layers map to the Gather reading a table of their shape (see _tables); one folded away is left out.

    Raises:
        ConfigError: the graph's weighted nodes do not line up with the torch layers; an embedding's table shape is
            not unique.
    """
    from onnx import numpy_helper

    if model is not None:
        values = {i.name: i for i in graph.initializer}
        weighted = [(n.name, numpy_helper.to_array(values[n.input[1]])) for n in graph.node
                    if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1 and n.input[1] in values]
        weighted += [(n.name, numpy_helper.to_array(values[n.input[0]])) for n in graph.node
                     if n.op_type == "Gather" and n.input and n.input[0] in values]
        found = by_weights(model, layers, wanted, weighted)
        if found is not None:
            return [found[n] for n in wanted if found[n] is not None]
    layers, tables = _weighted(layers), [layer for layer in layers if layer.kind == EMBEDDING]
    inits = {i.name: tuple(numpy_helper.to_array(i).shape) for i in graph.initializer}
    nodes = [n for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1 and n.input[1] in inits]
    ok = len(nodes) == len(layers)
    for node, layer in zip(nodes, layers):
        shape = inits[node.input[1]]
        if node.op_type == "MatMul":
            shape = tuple(reversed(shape))
        if node.op_type == "Gemm" and shape != layer.weight_shape:
            shape = tuple(reversed(shape))
        ok = ok and shape == layer.weight_shape
    if not ok:
        raise ConfigError(
            f"cannot keep layers in float in this ONNX graph: its {len(nodes)} weighted nodes do not line up with the "
            f"model's {len(layers)} Conv/Linear layers. Use another format for a mixed artifact, or no float layers."
        )
    by_name: dict[str, str | None] = {layer.name: node.name for layer, node in zip(layers, nodes)}
    gathers = [(n.name, inits[n.input[0]]) for n in graph.node if n.op_type == "Gather" and n.input and n.input[0] in inits]
    by_name.update(table_ops(tables, gathers, "ONNX Gather"))
    return [by_name[n] for n in wanted if by_name[n] is not None]


def _weighted(layers: Sequence[Layer]) -> list[Layer]:
    return [layer for layer in layers if layer.kind != EMBEDDING]


def table_ops(tables: Sequence[Layer], lookups: Sequence[tuple[Any, tuple[int, ...]]], what: str) -> dict[str, Any]:
    """Each embedding layer's lookup op (matched by table shape), or None when the file has none for it (a lookup of
    constant positions folded into a constant: nothing left to keep float).

    Raises:
        ConfigError: two lookups with the layer's table shape (which one is it?).
    """
    out = {}
    for layer in tables:
        found = [op for op, shape in lookups if tuple(shape) == tuple(layer.weight_shape)]
        if len(found) > 1:
            raise ConfigError(f"cannot keep embedding {layer.name!r} in float: {len(found)} {what} ops use a table of its shape "
                              f"{list(layer.weight_shape)}. Keep its Linear layers float instead, or use another format.")
        out[layer.name] = found[0] if found else None
    return out


def openvino_ops_for(ov_model: Any, layers: Sequence[Layer], wanted: Sequence[str], *, model: Any = None) -> list[str]:
    """Friendly names of the OpenVINO Convolution/GroupConvolution/MatMul ops that implement the torch layers ``wanted``.

    ov.convert_model folds BatchNorm into the convolution and renames it (``Multiply_123``), so ops are matched
    to layers by execution order and checked by weight size.

    Embedding layers map to the Gather reading a table of their shape (see _tables).

    Raises:
        ConfigError: the model's weighted ops do not line up with the torch layers; an embedding's table shape is not
            unique.
    """
    import math

    if model is not None:  # by weight values first (see by_weights), then by order
        constants = []
        for op in ov_model.get_ordered_ops():
            port = 1 if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul") else 0 if op.get_type_name() == "Gather" else None
            node = op.input_value(port).get_node() if port is not None else None
            if node is not None and node.get_type_name() == "Constant":
                constants.append((op.get_friendly_name(), node.get_data()))
        found = by_weights(model, layers, wanted, constants)
        if found is not None:
            return [found[n] for n in wanted if found[n] is not None]
    layers, tables = _weighted(layers), [layer for layer in layers if layer.kind == EMBEDDING]
    kinds = ("Convolution", "GroupConvolution", "MatMul")
    ops = []
    lookups = []
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() in kinds:
            w = op.input_value(1).get_node()
            if w.get_type_name() == "Constant" or op.get_type_name() != "MatMul":
                ops.append((op, math.prod(op.input_value(1).get_partial_shape().to_shape())))
        elif op.get_type_name() == "Gather" and op.input_value(0).get_partial_shape().is_static:
            lookups.append((op.get_friendly_name(), tuple(op.input_value(0).get_partial_shape().to_shape())))
    ok = len(ops) == len(layers) and all(size == math.prod(layer.weight_shape) for (_, size), layer in zip(ops, layers))
    if not ok:
        raise ConfigError(
            f"cannot keep layers in float in this OpenVINO model: its {len(ops)} weighted ops do not line up with the "
            f"model's {len(layers)} Conv/Linear layers. Use another format for a mixed artifact, or no float layers."
        )
    by_name: dict[str, str | None] = {layer.name: op.get_friendly_name() for layer, (op, _) in zip(layers, ops)}
    by_name.update(table_ops(tables, lookups, "OpenVINO Gather"))
    return [by_name[n] for n in wanted if by_name[n] is not None]
