"""Cost model of a ``.tflite`` file from the ops the file itself runs (no torch, no ONNX).

Why: the int8 ``.tflite`` files edgestill writes keep fp32 sections between DEQUANTIZE and QUANTIZE ops (LayerNorm,
attention BATCH_MATMUL, Softmax and residual Adds in a ViT; mobilenet_v3's hard-sigmoid), which the fp32 ONNX graph of
the same checkpoint does not show. This module costs the file's own graph, per op, into the same
:class:`~edgestill.devices.costmodel.NodeCost` fields as :func:`edgestill.devices.costmodel.graph_cost`, so the
estimator prices a LiteRT artifact as LiteRT runs it.

Read with the LiteRT interpreter (``ai_edge_litert.interpreter.Interpreter``: ``_get_ops_details()`` gives each op's
name and tensor indices, ``get_tensor_details()`` shapes and dtypes); each op's fused activation comes from the
flatbuffer schema shipped with ``ai_edge_litert`` (``schema_py_generated``), when it is importable.

What is counted (the convention of :mod:`edgestill.devices.costmodel`):

- MACs: CONV_2D ``N·Hout·Wout·Cout · kh·kw·Cin`` (weight ``[Cout, kh, kw, Cin]``), DEPTHWISE_CONV_2D
  ``N·Hout·Wout·C · kh·kw``, TRANSPOSE_CONV ``input elements · Cout·kh·kw``, FULLY_CONNECTED ``output elements · K``
  (weight ``[N, K]``), BATCH_MATMUL ``output elements · K`` (K from the left operand, ``adj_x`` honoured). Everything
  else adds no MACs.
- Op class: CONV_2D is ``stem`` when :func:`~edgestill.devices.costmodel.is_stem` says so (the first layer on the
  image: at most 4 input channels, kernel larger than stride), else ``conv1x1`` for a 1×1 kernel, else ``conv``; DEPTHWISE_CONV_2D ``depthwise``; FULLY_CONNECTED
  and a BATCH_MATMUL with a constant operand ``matmul``; a BATCH_MATMUL of two activations ``attention`` (as the ONNX
  cost model calls the activation × activation products of attention); pointwise ops, normalisation pieces, softmax,
  QUANTIZE and DEQUANTIZE ``elementwise``; pooling and reductions ``pool``; layout and data movement ``other``.
- Bytes: constant tensors (no producer, not a graph input) are parameter bytes at their stored dtype (int8 weights one
  byte, int32 biases four); every other input and output is activation bytes at its dtype. Views (RESHAPE, SQUEEZE,
  EXPAND_DIMS) move nothing.
- dtype: ``int8`` when the op's first activation input is int8/uint8/int16, ``fp32`` when it is float32 (``fp16`` for
  float16). An fp32 op in an int8 file is therefore an fp32 node, priced by the estimator at the fp32 calibration.
- QUANTIZE/DEQUANTIZE of an activation are passes of their own, priced as the ONNX cost model prices the
  DequantizeLinear/QuantizeLinear onnxruntime keeps: a third of an int8 residual Add over the same elements (that
  kernel dequantizes two inputs and quantizes one: 3 bytes per element as the int8 calibration counts it), so one byte
  per element, dtype int8. A DEQUANTIZE of a constant (fp16 or int8 weights stored compressed) is folded at load time:
  no node, its input counted as the consumer's parameter bytes.
- builtin: an op LiteRT's default XNNPACK delegate does not take (found by allocating the file as the runner does:
  :func:`outside_xnnpack`) runs on LiteRT's builtin kernels and is marked ``builtin``.
- Fusion: TFLite already fuses what its kernels fuse (bias, ReLU/ReLU6 clamps into CONV_2D, DEPTHWISE_CONV_2D,
  FULLY_CONNECTED, ADD, ...); the op's ``fused_activation_function`` is recorded in ``fused`` and makes no pass of its
  own. Ops the file keeps separate (HARD_SWISH, LOGISTIC, GELU, ...) are separate nodes, as XNNPACK runs them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from edgestill.devices.costmodel import GraphCost, NodeCost, is_stem
from edgestill.errors import InputError

_CONV = {"CONV_2D"}
_DEPTHWISE = {"DEPTHWISE_CONV_2D"}
_MATMUL = {"FULLY_CONNECTED", "BATCH_MATMUL"}
_QDQ = {"QUANTIZE", "DEQUANTIZE"}
_POOL = {"AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D", "MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD",
         "REDUCE_ANY", "REDUCE_ALL", "ARG_MAX", "ARG_MIN"}
_ELEMENTWISE = {
    "ADD", "SUB", "MUL", "DIV", "RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "LEAKY_RELU", "PRELU", "HARD_SWISH",
    "LOGISTIC", "TANH", "GELU", "ELU", "EXP", "LOG", "SQRT", "RSQRT", "SQUARE", "SQUARED_DIFFERENCE", "POW", "ABS",
    "NEG", "MAXIMUM", "MINIMUM", "SOFTMAX", "LOG_SOFTMAX", "L2_NORMALIZATION", "LOCAL_RESPONSE_NORMALIZATION", "CAST",
    "FLOOR", "CEIL", "ROUND", "SIN", "COS", "SIGN", "SELECT", "SELECT_V2", "EQUAL", "NOT_EQUAL", "LESS", "GREATER",
    "LESS_EQUAL", "GREATER_EQUAL", "LOGICAL_AND", "LOGICAL_OR", "LOGICAL_NOT", "FLOOR_DIV", "FLOOR_MOD", "ADD_N",
}
_VIEW = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS"}
_DTYPE = {"float32": "fp32", "float16": "fp16", "int8": "int8", "uint8": "int8", "int16": "int8", "float64": "fp64",
          "int32": "int32", "int64": "int64", "bool": "bool"}
_ACTIVATIONS = {1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}


def _options(path: Path, n_ops: int) -> list[tuple[int | None, bool]]:
    """Per op of subgraph 0: (fused activation code or None, adj_x); empty when the schema is not importable."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except Exception:  # noqa: BLE001 - the schema is optional: without it, no fused names and adj_x = False
        return []
    try:
        model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
        ops = model.subgraphs[0].operators or []
    except Exception:  # noqa: BLE001 - an unexpected layout: the costs do not depend on it
        return []
    if len(ops) != n_ops:
        return []
    return [(getattr(op.builtinOptions, "fusedActivationFunction", None), bool(getattr(op.builtinOptions, "adjX", False)))
            for op in ops]


def _interpreter(path: Path) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise InputError("cost model: reading a .tflite file needs the LiteRT runtime (pip install ai-edge-litert, "
                         "the [tflite] extra).") from None
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise InputError(f"cost model: {path} {what}. Pass a .tflite file.")
    try:
        return Interpreter(model_path=str(path))
    except Exception as exc:  # noqa: BLE001 - LiteRT raises ValueError/RuntimeError on a foreign file
        raise InputError(f"cost model: {path} is not a TFLite model ({type(exc).__name__}: {exc}).") from None


def tflite_cost(model: str | Path, *, batch: int = 1) -> GraphCost:
    """Per-op MACs, parameter and activation bytes, op class and dtype of a ``.tflite`` file's main subgraph.

    Args:
        model: a ``.tflite`` path (static shapes, as edgestill writes them).
        batch: MACs and activation bytes are multiplied by ``batch`` (the file's own shapes are costed as batch 1;
            parameters are not multiplied).

    Returns:
        A :class:`~edgestill.devices.costmodel.GraphCost`.

    Raises:
        InputError: not a file, not a TFLite model, LiteRT missing, or ``batch`` < 1.
    """
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise InputError(f"tflite_cost: batch must be a positive integer, got {batch!r}.")
    path = Path(model)
    interp = _interpreter(path)
    ops = interp._get_ops_details()  # noqa: SLF001 - the interpreter's only per-op listing
    tensors = {int(t["index"]): t for t in interp.get_tensor_details()}
    options = _options(path, len(ops))
    graph_inputs = {int(d["index"]) for d in interp.get_input_details()}
    produced = {int(o) for op in ops for o in op["outputs"] if int(o) >= 0}
    const = {i for i in tensors if i not in produced and i not in graph_inputs}

    def shape(i: int) -> tuple[int, ...]:
        return tuple(int(d) for d in tensors[i]["shape"])

    def elems(i: int) -> int:
        return math.prod(shape(i)) if i in tensors else 0

    def dtype_name(i: int) -> str:
        return getattr(tensors[i]["dtype"], "__name__", str(tensors[i]["dtype"]))

    def nbytes(i: int) -> int:
        return elems(i) * int(np.dtype(tensors[i]["dtype"]).itemsize)

    # a DEQUANTIZE of a constant is folded at load time: its output is a constant of the consumer
    const_alias: dict[int, int] = {}
    for op in ops:
        ins = [int(i) for i in op["inputs"] if int(i) >= 0]
        if op["op_name"] == "DEQUANTIZE" and ins and ins[0] in const:
            for o in op["outputs"]:
                const_alias[int(o)] = ins[0]

    found = _uncovered_ops(path)
    builtin = {int(op["index"]) for op in found[0]} if found is not None else set()
    nodes: list[NodeCost] = []
    seen: dict[int, int] = {}
    for k, op in enumerate(ops):
        name = str(op["op_name"])
        ins = [int(i) for i in op["inputs"] if int(i) >= 0 and int(i) in tensors]
        outs = [int(o) for o in op["outputs"] if int(o) >= 0 and int(o) in tensors]
        if name == "DEQUANTIZE" and ins and ins[0] in const:
            continue
        params = [const_alias.get(i, i) for i in ins if i in const or i in const_alias]
        acts = [i for i in ins if i not in const and i not in const_alias]
        fused_code, adj_x = options[k] if options else (None, False)
        fused = (_ACTIVATIONS[fused_code],) if fused_code in _ACTIVATIONS else ()
        macs = 0
        out = shape(outs[0]) if outs else ()
        if name in _CONV and len(ins) > 1:
            w = shape(ins[1])
            macs = math.prod(out) * math.prod(w[1:])
            x = shape(acts[0]) if acts else ()
            if len(w) == 4 and len(x) == 4 and len(out) == 4 and is_stem(w[3], 1, w[1:3], x[1:3], out[1:3]):
                op_class = "stem"
            else:
                op_class = "conv1x1" if len(w) == 4 and w[1] == 1 and w[2] == 1 else "conv"
        elif name in _DEPTHWISE and len(ins) > 1:
            w = shape(ins[1])
            macs = math.prod(out) * math.prod(w[1:-1])
            op_class = "depthwise"
        elif name == "TRANSPOSE_CONV" and len(ins) > 2:
            w, x = shape(ins[1]), shape(ins[2])
            macs = math.prod(x) * math.prod(w[:-1])
            op_class = "conv"
        elif name in _MATMUL and len(ins) > 1:
            a, b = shape(ins[0]), shape(ins[1])
            k_dim = (a[-2] if adj_x and len(a) > 1 else a[-1]) if name == "BATCH_MATMUL" else b[-1]
            macs = math.prod(out) * int(k_dim)
            both_act = ins[0] not in const and ins[1] not in const and ins[1] not in const_alias
            op_class = "attention" if name == "BATCH_MATMUL" and both_act else "matmul"
        elif name in _POOL:
            op_class = "pool"
        elif name in ("SOFTMAX", "LOG_SOFTMAX"):
            op_class = "softmax"
        elif name in _ELEMENTWISE or name in _QDQ:
            op_class = "elementwise"
        else:
            op_class = "other"
        main = acts[0] if acts else (ins[0] if ins else None)
        dtype = _DTYPE.get(dtype_name(main), "fp32") if main is not None else "fp32"
        param_bytes = sum(nbytes(p) for p in params)
        if name in ("EMBEDDING_LOOKUP", "GATHER") and outs and params:
            # a lookup (an embedding table) reads the rows it gathers, not the table
            param_bytes = min(param_bytes, nbytes(outs[0]))
        for p in params:
            seen.setdefault(p, nbytes(p))
        if name in _QDQ:
            # a pass of its own: one byte per element at the int8 elementwise rate (see the module docstring)
            act_bytes = sum(elems(i) for i in acts)
            dtype = "int8"
        elif name in _VIEW:
            act_bytes = 0
        else:
            act_bytes = sum(nbytes(i) for i in acts) + sum(nbytes(o) for o in outs)
        nodes.append(NodeCost(name=f"{name}_{k}", op_type=name, op_class=op_class, macs=macs * batch,
                              param_bytes=param_bytes, act_bytes=act_bytes * batch, fused=fused, dtype=dtype,
                              builtin=int(op["index"]) in builtin))
    inputs = {str(d["name"]): [batch, *[int(x) for x in d["shape"][1:]]] for d in interp.get_input_details()}
    total_params = sum(elems(p) for p in seen)
    return GraphCost(nodes=nodes, batch=batch, total_params=total_params, total_param_bytes=sum(seen.values()),
                     inputs=inputs)


def _uncovered_ops(path: Path) -> tuple[list[dict[str, Any]], dict[int, Any]] | None:
    """The ops of the file's main subgraph that LiteRT's default XNNPACK delegate leaves to its builtin kernels, and
    the tensors; None when no delegate was applied.

    The interpreter is built and allocated at 1 thread as the runner builds it; each DELEGATE node's partition is
    walked back from its outputs to its inputs, and the ops no partition covers are the ones left (an op keeps its
    index in the file).

    Raises:
        InputError: see :func:`tflite_cost`; LiteRT cannot prepare the file.
    """
    interp = _interpreter(path)
    try:
        interp.allocate_tensors()
    except Exception as exc:  # noqa: BLE001 - LiteRT raises RuntimeError on an op it cannot prepare
        raise InputError(f"cost model: LiteRT could not prepare {path} ({type(exc).__name__}: {exc}).") from None
    ops = interp._get_ops_details()  # noqa: SLF001
    tensors = {int(t["index"]): t for t in interp.get_tensor_details()}
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    if not delegates:
        return None
    original = {int(op["index"]): op for op in ops if op["op_name"] != "DELEGATE"}
    producer = {int(t): k for k, op in original.items() for t in op["outputs"] if int(t) >= 0}
    covered: set[int] = set()
    for d in delegates:
        stop = {int(t) for t in d["inputs"]}
        stack = [int(t) for t in d["outputs"]]
        while stack:
            t = stack.pop()
            if t in stop or t not in producer or producer[t] in covered:
                continue
            covered.add(producer[t])
            stack.extend(int(x) for x in original[producer[t]]["inputs"] if int(x) >= 0)
    return [op for k, op in original.items() if k not in covered], tensors


def outside_xnnpack(model: str | Path) -> dict[str, int] | None:
    """The ops of a ``.tflite`` file that LiteRT's default XNNPACK delegate leaves to its builtin kernels, counted by
    ``"OP dtype"`` (e.g. ``{"HARD_SWISH int8": 19}`` for mobilenet_v3_small int8); None when no delegate was applied.

    :func:`tflite_cost` marks those nodes ``builtin``; the estimator prices the int8 ones at the calibration's
    builtin rate (its unfused micro) where the entry has one, else at XNNPACK's rates (the record then warns that the
    estimate is likely low).

    Raises:
        InputError: see :func:`tflite_cost`.
    """
    found = _uncovered_ops(Path(model))
    if found is None:
        return None
    left: dict[str, int] = {}
    for op in found[0]:
        key = f"{op['op_name']} {_op_dtype(op, found[1])}"
        left[key] = left.get(key, 0) + 1
    return left


def _op_dtype(op: dict[str, Any], tensors: dict[int, Any]) -> str:
    ins = [int(i) for i in op["inputs"] if int(i) >= 0 and int(i) in tensors]
    return _DTYPE.get(getattr(tensors[ins[0]]["dtype"], "__name__", ""), "?") if ins else "?"
