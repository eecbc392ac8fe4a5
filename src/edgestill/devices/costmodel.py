"""Cost model of an ONNX graph: per-node MACs, parameter and activation bytes, op class, and runtime-style fusion.

Reads the graph with the ``onnx`` package only (no torch, no onnxruntime), after ``onnx.shape_inference``.

What is counted (the convention of :mod:`edgestill.models.costs`, so the zoo's documented MACs agree within 2%):

- MACs of convolutions (``Cout·Hout·Wout·(Cin/group)·kh·kw`` per sample; a depthwise k×k conv costs ``C·k²·Hout·Wout``),
  Gemm/MatMul (``M·N·K`` times the broadcast batch dimensions) and the two matrix products of attention. Biases,
  normalisation, activations, pooling, residual adds and softmax add no MACs (they are memory passes).
- Parameter bytes: the initializers (and ``Constant`` outputs) a node consumes, at their stored dtype's size, so int8
  QDQ weights count one byte per element.
- Activation bytes: every input and output of a node that is not a parameter, at its element size (one byte for a
  tensor that travels quantized between QuantizeLinear/DequantizeLinear pairs).

Op classes: ``stem`` (a dense conv with overlapping windows, kernel > stride, that reads at most
``STEM_MAX_CHANNELS`` input channels: a network's first layer on the image; each kernel tap reads a few bytes, too
short for the vector and int8 dot-product units, so runtimes run it many times below a conv's rate, in int8 barely
faster than in fp32; a ViT's patch embedding, kernel == stride, stays ``conv``), ``conv`` (dense, kernel > 1),
``conv1x1``, ``depthwise`` (group == input channels), ``matmul`` (Gemm,
MatMul with a weight, FC), ``attention`` (activation × activation MatMuls beside a Softmax, or a fused Attention op),
``elementwise`` (pointwise ops, normalisation, softmax), ``pool`` (pooling and reductions), ``other`` (layout and
data movement: reshape, transpose, gather, concat, ...).

Fusion: an elementwise op (Relu, Clip, HardSwish, HardSigmoid, Sigmoid, Gelu, Tanh, a Sigmoid·Mul pair (SiLU), an
Add/Mul/Sub/Div with a constant operand such as a bias, BatchNormalization) that directly follows a conv or matmul
whose output it is the only consumer of is fused into that producer, as onnxruntime, XNNPACK and OpenVINO fuse them:
its tensors make no separate memory pass and it adds no per-node overhead. Chains fuse too (Conv → BN → Relu).

QDQ: QuantizeLinear/DequantizeLinear are folded away; a node that reads a dequantized tensor is marked int8.
QLinearConv, ConvInteger, QLinearMatMul and MatMulInteger are int8 convs and matmuls. Except where the op has no int8
kernel in onnxruntime (``_QDQ_INT8_KERNEL_OPS`` lists those it has: convs, matmuls, Add, Mul, Softmax, Concat,
pools, data movement): such a node (LayerNormalization, Gelu, HardSigmoid, ReduceMean, ...) stays fp32 at fp32 bytes,
and the DequantizeLinear before it and QuantizeLinear after it are elementwise nodes of their own, as onnxruntime's
optimized graph keeps them (vit_small int8: 32 DequantizeLinear and 14 QuantizeLinear left; mobilenet_v3_small: 39
each).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgestill.errors import InputError

if TYPE_CHECKING:
    import onnx

OP_CLASSES: tuple[str, ...] = ("stem", "conv", "conv1x1", "depthwise", "matmul", "attention", "elementwise",
                                "softmax", "pool", "other")
# ``softmax`` (Softmax, LogSoftmax) is a memory-bound class of its own: an exp per element over three passes, and
# onnxruntime's int8 QLinearSoftmax took 7x its fp32 Softmax on the development host (text_transformer: 0.31 ms of
# 0.9, priced as one int8 elementwise pass)
_SOFTMAX_OPS = {"Softmax", "LogSoftmax"}
COMPUTE_CLASSES: tuple[str, ...] = ("stem", "conv", "conv1x1", "depthwise", "matmul", "attention")
# a dense conv reading this many input channels or fewer (RGB, RGBA, grey) is a ``stem``
STEM_MAX_CHANNELS = 4

# (index of the data input, index of the weight input) of each conv- and matmul-like op
_CONV_OPS = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3)}
_MATMUL_OPS = {"MatMul": (0, 1), "Gemm": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3),
               "FusedMatMul": (0, 1)}
_INT8_OPS = {"ConvInteger", "QLinearConv", "MatMulInteger", "QLinearMatMul"}
_ATTENTION_OPS = {"Attention", "MultiHeadAttention", "GroupQueryAttention"}
_QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}
_POOL_OPS = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool", "ReduceMean",
             "ReduceMax", "ReduceMin", "ReduceSum", "ReduceL2", "ReduceProd", "ReduceLogSumExp"}
_ELEMENTWISE_OPS = {
    "Relu", "LeakyRelu", "PRelu", "Clip", "HardSwish", "HardSigmoid", "Sigmoid", "Tanh", "Gelu", "Elu", "Selu",
    "Softplus", "Mish", "Erf", "Exp", "Log", "Sqrt", "Reciprocal", "Neg", "Abs", "Pow", "Add", "Sub", "Mul", "Div",
    "Max", "Min", "Where", "Equal", "Less", "Greater", "Not", "And", "Or", "Cast", "BatchNormalization",
    "LayerNormalization", "InstanceNormalization", "GroupNormalization", "Softmax", "LogSoftmax",
    "SimplifiedLayerNormalization", "SkipLayerNormalization", "BiasGelu", "FastGelu",
}
# ops that can fuse into a preceding conv/matmul on their own (one non-constant input)
_FUSABLE_UNARY = {"Relu", "LeakyRelu", "Clip", "HardSwish", "HardSigmoid", "Sigmoid", "Tanh", "Gelu", "Elu",
                  "BatchNormalization", "FastGelu", "BiasGelu"}
_FUSABLE_WITH_CONSTANT = {"Add", "Sub", "Mul", "Div"}
# ops onnxruntime runs on int8 tensors in a QDQ graph (its QDQ fusions into QLinear*/QGemm kernels, the ops it drops
# the QDQ pair around, and the ones with native int8 kernels); any other op that reads a dequantized tensor runs in
# fp32 between a real DequantizeLinear and QuantizeLinear (seen in its optimized graph of the zoo's int8 exports)
_QDQ_INT8_KERNEL_OPS = {
    "Conv", "MatMul", "Gemm", "Add", "Mul", "Softmax", "Concat", "Sigmoid", "LeakyRelu", "AveragePool",
    "GlobalAveragePool", "MaxPool", "Relu", "Clip", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten",
    "Gather", "GatherElements", "Slice", "Split", "Expand", "Resize", "Pad", "Where", "ArgMax", "Identity",
    "DepthToSpace", "SpaceToDepth", *_INT8_OPS,
}
# ops that move no data (a view of their input): no memory pass
_VIEW_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Shape", "Constant", "Size",
             "ConstantOfShape"}

_ELEM_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2, 17: 1, 18: 1,
               19: 1, 20: 1, 21: 1, 22: 1}  # onnx.TensorProto element type -> bytes (int4 rounded up to one byte)
_DTYPE_NAMES = {1: "fp32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "fp16", 11: "fp64",
                16: "bf16"}


# LiteRT's int8 kernels for these ops are a 256-entry table lookup per element (``builtin`` nodes of these types are
# priced at a calibration's ``builtin_lut_ns_per_byte``, timed by the GELU micro, not at the HARD_SWISH rate).
LUT_OPS = frozenset({"GELU", "LOGISTIC", "TANH", "ELU"})


@dataclass(frozen=True, kw_only=True)
class NodeCost:
    """The cost of one node after fusion (``fused`` names the elementwise ops folded into it; ``builtin``: the runtime
    runs it on its reference kernels, outside its accelerated delegate, e.g. an int8 HARD_SWISH XNNPACK leaves to
    LiteRT)."""

    name: str
    op_type: str
    op_class: str
    macs: int
    param_bytes: int
    act_bytes: int
    fused: tuple[str, ...] = ()
    dtype: str = "fp32"
    builtin: bool = False


@dataclass(kw_only=True)
class GraphCost:
    """Per-node costs of one graph at a given batch size."""

    nodes: list[NodeCost] = field(default_factory=list)
    batch: int = 1
    total_params: int = 0  # elements of the unique initializers the graph's nodes consume
    total_param_bytes: int = 0  # bytes of those initializers, each counted once
    inputs: dict[str, list[int]] = field(default_factory=dict)

    @property
    def total_macs(self) -> int:
        return sum(n.macs for n in self.nodes)

    @property
    def total_act_bytes(self) -> int:
        return sum(n.act_bytes for n in self.nodes)

    def by_class(self) -> dict[str, dict[str, int]]:
        """``{op_class: {"nodes", "macs", "param_bytes", "act_bytes", "fused"}}`` for every class in OP_CLASSES."""
        out = {c: {"nodes": 0, "macs": 0, "param_bytes": 0, "act_bytes": 0, "fused": 0} for c in OP_CLASSES}
        for n in self.nodes:
            row = out[n.op_class]
            row["nodes"] += 1
            row["macs"] += n.macs
            row["param_bytes"] += n.param_bytes
            row["act_bytes"] += n.act_bytes
            row["fused"] += len(n.fused)
        return out

    def to_dict(self, *, with_nodes: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "batch": self.batch, "inputs": self.inputs, "total_macs": self.total_macs, "total_params": self.total_params,
            "total_param_bytes": self.total_param_bytes, "total_act_bytes": self.total_act_bytes,
            "by_class": self.by_class(),
        }
        if with_nodes:
            d["nodes"] = [{**asdict(n), "fused": list(n.fused)} for n in self.nodes]
        return d


def is_stem(in_channels: int, group: int, kernel: Sequence[int], in_spatial: Sequence[int],
            out_spatial: Sequence[int]) -> bool:
    """Whether a conv is a ``stem``: dense, at most ``STEM_MAX_CHANNELS`` input channels, and a kernel larger than its
    stride (read from the spatial shapes: input size // output size) in some dimension."""
    if group != 1 or in_channels > STEM_MAX_CHANNELS or not kernel:
        return False
    strides = [max(int(i) // max(int(o), 1), 1) for i, o in zip(in_spatial, out_spatial)] or [1] * len(kernel)
    return any(int(k) > s for k, s in zip(kernel, strides))


def _load(model: Any) -> onnx.ModelProto:
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise InputError(f"cost model: {path} {what}. Pass an .onnx file (the cost model reads ONNX graphs).")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf raises DecodeError and others on a foreign file
        raise InputError(f"cost model: {path} is not an ONNX model ({type(exc).__name__}: {exc}). "
                         "Pass an .onnx file; for .tflite or OpenVINO artifacts use the ONNX export of the same model.") from None


def _fix_batch(model: onnx.ModelProto) -> tuple[onnx.ModelProto, set[str]]:
    """A shape-inferred copy whose symbolic leading input dims are 1; returns it and the inputs that had one."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name for i in m.graph.initializer}
    symbolic: set[str] = set()
    for inp in m.graph.input:
        if inp.name in inits or not inp.type.HasField("tensor_type"):
            continue
        for i, d in enumerate(inp.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                continue
            if i != 0:
                raise InputError(
                    f"cost model: input {inp.name!r} has a symbolic dimension {i} ({d.dim_param or '?'}) besides the "
                    "batch; the cost model needs static shapes. Export with a static input shape (edgestill export "
                    "does by default) and try again.")
            d.Clear()
            d.dim_value = 1
            symbolic.add(inp.name)
    try:
        return onnx.shape_inference.infer_shapes(m, data_prop=True), symbolic
    except Exception as exc:  # onnx raises InferenceError and others on an inconsistent graph
        raise InputError(f"cost model: shape inference failed on the graph ({type(exc).__name__}: {exc}). "
                         "Check the model with onnx.checker, or re-export it.") from None


def _shapes(model: onnx.ModelProto) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    shapes: dict[str, tuple[int, ...]] = {}
    types: dict[str, int] = {}
    g = model.graph
    for vi in (*g.input, *g.value_info, *g.output):
        t = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            continue
        types[vi.name] = t.elem_type
        if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
            shapes[vi.name] = tuple(int(d.dim_value) for d in t.shape.dim)
    for init in g.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)
        types[init.name] = init.data_type
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.t is not None:
                    shapes[node.output[0]] = tuple(int(d) for d in a.t.dims)
                    types[node.output[0]] = a.t.data_type
    return shapes, types


def _attr(node: Any, name: str, default: Any) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def graph_cost(model: str | Path | onnx.ModelProto, *, batch: int = 1) -> GraphCost:
    """Per-node MACs, parameter and activation bytes and op class of an ONNX graph, after fusion and QDQ folding.

    Args:
        model: an ``.onnx`` path or a loaded ``onnx.ModelProto`` (static shapes, or a symbolic leading batch dim).
        batch: a symbolic leading input dim is costed at 1 and a static graph at its own shapes; MACs and activation
            bytes are then multiplied by ``batch`` (parameters are not).

    Returns:
        A :class:`GraphCost`.

    Raises:
        InputError: not an ONNX file, ``batch`` < 1, or a symbolic non-batch input dimension.
    """
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise InputError(f"graph_cost: batch must be a positive integer, got {batch!r}.")
    inferred, symbolic = _fix_batch(_load(model))
    scale = batch
    shapes, types = _shapes(inferred)
    g = inferred.graph
    params = {i.name for i in g.initializer} | {n.output[0] for n in g.node if n.op_type == "Constant"}

    def elems(name: str) -> int:
        s = shapes.get(name)
        return math.prod(s) if s is not None else 0

    # QDQ folding: a dequantized tensor is an alias of what was quantized; its element size is the quantized one's
    alias: dict[str, str] = {}
    quant_size: dict[str, int] = {}
    quantized_inputs: set[str] = set()  # tensors that reach a consumer through a DequantizeLinear
    dq_params: dict[str, list[str]] = {}  # dequantized name -> scale/zero-point initializers it needs
    for node in g.node:
        if node.op_type in _QDQ_OPS and node.input and node.output:
            alias[node.output[0]] = node.input[0]
            side = [t for t in node.input[1:] if t in params]
            dq_params[node.output[0]] = side + dq_params.get(node.input[0], [])
            if node.op_type == "QuantizeLinear":
                out_type = types.get(node.output[0]) or (types.get(node.input[2]) if len(node.input) > 2 else 2)
                quant_size[node.output[0]] = _ELEM_BYTES.get(out_type, 1)
            else:
                quantized_inputs.add(node.output[0])
                quant_size[node.output[0]] = _ELEM_BYTES.get(types.get(node.input[0], 3), 1)

    def root(name: str) -> str:
        seen = set()
        while name in alias and name not in seen:
            seen.add(name)
            name = alias[name]
        return name

    def size_of(name: str) -> int:
        """Bytes of a tensor as the folded graph moves it."""
        n = name
        while n in alias:  # the narrowest type along a Q/DQ chain is what travels
            if n in quant_size:
                return elems(root(name)) * quant_size[n]
            n = alias[n]
        return elems(name) * _ELEM_BYTES.get(types.get(name, 1), 4)

    compute_nodes = [n for n in g.node if n.op_type not in _QDQ_OPS and n.op_type != "Constant"]
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in compute_nodes:
        for t in node.input:
            if t:
                consumers[root(t)].append(node)
    graph_outputs = {o.name for o in g.output}

    readers_of: dict[str, list[Any]] = defaultdict(list)
    for node in g.node:
        for t in node.input:
            if t:
                readers_of[t].append(node)

    def out_size(name: str) -> int:
        """Bytes of a node's output: one byte per element when every consumer quantizes it."""
        readers = readers_of.get(name, [])
        if readers and all(n.op_type == "QuantizeLinear" for n in readers):
            return elems(name) * quant_size.get(readers[0].output[0], 1)
        return elems(name) * _ELEM_BYTES.get(types.get(name, 1), 4)

    def is_param(name: str) -> bool:
        return root(name) in params

    def softmax_near(node: Any, forward: bool) -> bool:
        """Whether a Softmax is within three single-path hops after (forward) or before this node."""
        frontier = [node]
        for _ in range(3):
            nxt = []
            for n in frontier:
                if forward:
                    for out in n.output:
                        nxt.extend(consumers.get(out, []))
                else:
                    for t in n.input:
                        p = producer.get(root(t)) if t else None
                        if p is not None:
                            nxt.append(p)
            if any(n.op_type == "Softmax" for n in nxt):
                return True
            frontier = [n for n in nxt if n.op_type in _ELEMENTWISE_OPS or n.op_type in _VIEW_OPS
                        or n.op_type in {"Transpose", "Gather"}]
        return False

    producer = {out: n for n in compute_nodes for out in n.output}

    def classify(node: Any) -> tuple[str, int]:
        op = node.op_type
        if op in _CONV_OPS:
            xi, wi = _CONV_OPS[op]
            w = shapes.get(root(node.input[wi]))
            out = shapes.get(node.output[0])
            x = shapes.get(root(node.input[xi]))
            if w is None or out is None:
                return "conv", 0
            group = int(_attr(node, "group", 1))
            kernel = math.prod(w[2:])
            macs = math.prod(out) * math.prod(w[1:])  # N·Cout·spatial_out · (Cin/group)·k...
            cin = x[1] if x and len(x) > 1 else w[1] * group
            if group > 1 and group == cin and w[1] == 1:
                return "depthwise", macs
            if is_stem(cin, group, w[2:], x[2:] if x else (), out[2:]):
                return "stem", macs
            return ("conv1x1" if kernel == 1 else "conv"), macs
        if op in _MATMUL_OPS:
            ai, bi = _MATMUL_OPS[op]
            a = shapes.get(root(node.input[ai]))
            b = shapes.get(root(node.input[bi]))
            out = shapes.get(node.output[0])
            if a is None or b is None or out is None:
                return "matmul", 0
            if op == "Gemm":
                k = a[0] if _attr(node, "transA", 0) else a[-1]
            else:
                k = a[-1]
            macs = math.prod(out) * k
            activation_pair = not is_param(node.input[ai]) and not is_param(node.input[bi])
            if activation_pair and (softmax_near(node, forward=True) or softmax_near(node, forward=False)):
                return "attention", macs
            return "matmul", macs
        if op in _ATTENTION_OPS:
            q = shapes.get(root(node.input[0]))
            out = shapes.get(node.output[0])
            if q is None or out is None or len(q) != 3:
                return "attention", 0
            bsz, seq, width = q
            hidden = out[-1]
            macs = 2 * bsz * seq * seq * hidden
            if op == "Attention" and len(node.input) > 1 and is_param(node.input[1]):
                macs += bsz * seq * width * elems(root(node.input[1])) // max(width, 1)
            return "attention", macs
        if op in _POOL_OPS:
            return "pool", 0
        if op in _SOFTMAX_OPS:
            return "softmax", 0
        if op in _ELEMENTWISE_OPS:
            return "elementwise", 0
        return "other", 0

    # fusion: walk each conv/matmul's single-consumer chain of fusable elementwise ops
    fused_into: dict[str, str] = {}  # fused node name -> producer name
    chains: dict[str, list[Any]] = {}
    names = {id(n): (n.name or f"{n.op_type}_{i}") for i, n in enumerate(compute_nodes)}

    def fusable(nxt: Any, tensor: str) -> bool:
        if nxt.op_type in _FUSABLE_UNARY:
            return all(not t or t == tensor or is_param(t) for t in nxt.input)
        if nxt.op_type in _FUSABLE_WITH_CONSTANT:
            others = [t for t in nxt.input if t and t != tensor]
            return len(others) == 1 and is_param(others[0])
        return False

    for node in compute_nodes:
        op_class, _ = classify(node) if node.op_type in _CONV_OPS or node.op_type in _MATMUL_OPS else ("", 0)
        if op_class not in COMPUTE_CLASSES:
            continue
        chain: list[Any] = []
        tensor = node.output[0]
        while tensor not in graph_outputs:
            readers = consumers.get(tensor, [])
            if len(readers) == 1 and fusable(readers[0], tensor):
                chain.append(readers[0])
                tensor = readers[0].output[0]
                continue
            # SiLU: y -> Sigmoid(y) and Mul(y, sigmoid(y)), nothing else reads y
            if len(readers) == 2:
                sig = next((r for r in readers if r.op_type == "Sigmoid"), None)
                mul = next((r for r in readers if r.op_type == "Mul"), None)
                if sig is not None and mul is not None and set(mul.input) == {tensor, sig.output[0]} \
                        and len(consumers.get(sig.output[0], [])) == 1:
                    chain.extend([sig, mul])
                    tensor = mul.output[0]
                    continue
            break
        if chain:
            chains[names[id(node)]] = chain
            for c in chain:
                fused_into[names[id(c)]] = names[id(node)]

    nodes: list[NodeCost] = []
    seen_params: dict[str, int] = {}
    for node in compute_nodes:
        name = names[id(node)]
        if name in fused_into:
            continue
        op_class, macs = classify(node)
        members = [node, *chains.get(name, [])]
        internal = {out for m in members[:-1] for out in m.output}
        param_bytes = 0
        act_bytes = 0
        int8 = node.op_type in _INT8_OPS
        for m in members:
            for t in m.input:
                if not t or t in internal:
                    continue
                if is_param(t):
                    r = root(t)
                    b = elems(r) * _ELEM_BYTES.get(types.get(r, 1), 4)
                    for s in dq_params.get(t, []):
                        b += elems(s) * _ELEM_BYTES.get(types.get(s, 1), 4)
                    if m.op_type == "Gather" and t == m.input[0]:
                        # a lookup (an embedding table) reads the rows it gathers, not the table
                        b = min(b, size_of(m.output[0]))
                    param_bytes += b
                    seen_params.setdefault(r, elems(r) * _ELEM_BYTES.get(types.get(r, 1), 4))
                    for s in dq_params.get(t, []):
                        seen_params.setdefault(s, elems(s) * _ELEM_BYTES.get(types.get(s, 1), 4))
                elif node.op_type not in _VIEW_OPS:
                    act_bytes += size_of(t)
                if t in quantized_inputs and m is node:
                    int8 = True
        if node.op_type not in _VIEW_OPS:
            act_bytes += sum(out_size(o) for o in members[-1].output if o)
        main = root(node.input[0]) if node.input else ""
        dtype = "int8" if int8 else _DTYPE_NAMES.get(types.get(main, 1), "fp32")
        if int8 and op_class not in COMPUTE_CLASSES and node.op_type not in _QDQ_INT8_KERNEL_OPS \
                and node.op_type not in _VIEW_OPS:
            # no int8 kernel (LayerNormalization, Gelu, HardSigmoid, ReduceMean, ...): onnxruntime keeps the QDQ pair
            # around it and runs it in fp32. The DequantizeLinear of each quantized input and the QuantizeLinear of
            # each quantized output are passes of their own. Each is priced as a third of an int8 residual Add over
            # the same elements (which dequantizes two inputs and quantizes one output: 3 bytes per element as the
            # int8 calibration counts it), so 1 byte per element, int8, at the int8 elementwise rate.
            dtype = "fp32"
            act_bytes = 0
            for t in node.input:
                if t and not is_param(t):
                    act_bytes += elems(root(t)) * 4
                    if t in quantized_inputs:
                        nodes.append(NodeCost(name=f"{name}/dequantize:{t}", op_type="DequantizeLinear",
                                              op_class="elementwise", macs=0, param_bytes=0,
                                              act_bytes=round(elems(root(t)) * scale), dtype="int8"))
            for o in members[-1].output:
                if not o:
                    continue
                act_bytes += elems(o) * 4
                readers = readers_of.get(o, [])
                if readers and all(r.op_type == "QuantizeLinear" for r in readers):
                    nodes.append(NodeCost(name=f"{name}/quantize:{o}", op_type="QuantizeLinear", op_class="elementwise",
                                          macs=0, param_bytes=0, act_bytes=round(elems(o) * scale), dtype="int8"))
        nodes.append(NodeCost(
            name=name, op_type=node.op_type, op_class=op_class, macs=round(macs * scale), param_bytes=param_bytes,
            act_bytes=round(act_bytes * scale), fused=tuple(m.op_type for m in members[1:]), dtype=dtype,
        ))
    inputs = {i.name: [batch if i.name in symbolic else d for d in shapes.get(i.name, ())[:1]]
              + list(shapes.get(i.name, ())[1:]) for i in g.input if i.name not in params}
    total_params = sum(elems(p) for p in seen_params)
    return GraphCost(nodes=nodes, batch=batch, total_params=total_params,
                     total_param_bytes=sum(seen_params.values()), inputs=inputs)


def cost_summary(cost: GraphCost) -> dict[str, Any]:
    """What the estimator needs of a graph: totals, node count, per-class MACs/bytes/nodes and per-node compact costs.

    This is the form stored per zoo model in ``zoo_costs.json`` (see ``perf/zoo_costs.py``).
    """
    return {
        "inputs": cost.inputs, "total_macs": cost.total_macs, "total_params": cost.total_params,
        "total_param_bytes": cost.total_param_bytes, "total_act_bytes": cost.total_act_bytes,
        "nodes": len(cost.nodes), "by_class": {k: v for k, v in cost.by_class().items() if v["nodes"]},
        # per node after fusion: [op class, MACs, bytes moved (parameters + activations), dtype] and, for a node
        # outside the runtime's delegate, a fifth element: "lut" for a table-lookup kernel (LUT_OPS), else true
        "layers": [[n.op_class, n.macs, n.param_bytes + n.act_bytes, n.dtype,
                    *(["lut" if n.op_type in LUT_OPS else True] if n.builtin else [])]
                   for n in cost.nodes],
    }
