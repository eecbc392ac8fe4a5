"""Microbenchmark models for device self-calibration, built without torch (``onnx.helper``, opset 17).

Each micro model isolates one term of the estimator's roofline: 3×3, 1×1 and depthwise 3×3 convolutions and a fully
connected layer (MatMul + bias; compute per op class), two stems (a stride-2 3×3 and 7×7 conv on a 224×224 RGB image:
the first layer of a CNN, which runs far below the conv rate), for LiteRT int8 a 1×1 conv followed by a HardSwish
(``unfused``) or a GELU (``lut``: a table lookup per element in LiteRT's int8 kernel) that XNNPACK leaves to LiteRT's
builtin kernels, a stack of Softmax over attention-score-shaped tensors (``softmax``), a residual elementwise Add of two activations (the cost of a
network's standalone elementwise nodes), a large elementwise Add over 16-32 MB (DRAM bandwidth), one tiny Add (the
fixed per-call overhead) and a chain of tiny Adds (the per-node cost). Their MACs and bytes are analytic
(:func:`micro_models`) and written as edgestill artifacts (manifest + file), so the ordinary bench path (the runner,
locally or on a device) times them.

Differential micros. Every compute micro and the residual Add come twice: one layer, and the same layer stacked
``STACK`` times in sequence (4; 3 in quick mode; each layer with its own seeded weights; the matmul shapes have
K == N so the layers chain; the int8 stack is quantized as one graph, so quantize/dequantize sits only at its
boundary, as in a real network). A one-layer micro's time includes what a network pays once per call, not per layer:
quantizing the float input and dequantizing the output of an int8 graph, OpenVINO's reorders into and out of its
blocked layout, copying the micro's (large) input and output, the call itself. Fitted on one-layer micros, those
costs made int8 depthwise and elementwise look 30-100× slower than the network's layers ran (on a Xeon with AMX:
depthwise int8 efficiency 0.02-0.03, OpenVINO int8 mobilenet_v1 estimated 5.3 ms against 1.7 ms measured). The
calibration fits each layer from the slope ``(t_K - t_1) / (K - 1)``, in which they cancel
(:mod:`edgestill.devices.calibrate`).

Formats: ONNX fp32 and int8 (onnxruntime's ``quantize_static``, QDQ, per-channel, random calibration data), OpenVINO
fp32 (converted from the ONNX file, fp32 weights) and int8 (``nncf.quantize``), and LiteRT fp32 and int8: the same ops
as small torch modules through the project's tflite writer and quantizer (litert-torch, so torch is needed on the
machine that builds them; the device only runs the .tflite files).

The ONNX int8 micros keep float input and output: their timed call includes quantizing the input and dequantizing the
output, which an int8 layer inside a model does not pay, so low-MAC shapes (a 1×1 conv at 56×56) understate int8
efficiency. Giving the QDQ graph int8 I/O instead (the boundary QuantizeLinear/DequantizeLinear removed) stopped
onnxruntime 1.32 from fusing it into QLinearConv: the conv ran as DequantizeLinear + float Conv + QuantizeLinear, 3.6×
slower than the float-I/O graph on this machine. The boundary cost that float I/O adds cancels in the slope of the
stacked micros. The LiteRT int8 micros have int8 I/O (the project's quantizer makes them so) and XNNPACK runs them
as int8 ops. The residual Add is quantized in an int8 set (onnxruntime runs it as QLinearAdd). The DRAM copies and
the overhead micros (``copy``, ``call``, ``nodes``) are the fp32 files in an int8 set too: their cost does not depend
on the weights' precision, and a quantized copy would read float inputs anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgestill.artifact import Artifact, TensorSpec
from edgestill.errors import ConfigError, UnsupportedError

OPSET = 17
FP32_BYTES = 4
# The runtime each micro set is built for, and the artifact format it takes.
RUNTIME_FORMATS: dict[str, str] = {"onnxruntime": "onnx", "openvino": "openvino", "litert": "tflite"}
MICRO_PRECISIONS: tuple[str, ...] = ("fp32", "int8")
# Micro kinds whose latency fits an op class's compute efficiency; the others fit the fixed terms.
COMPUTE_CLASSES: tuple[str, ...] = ("conv", "conv1x1", "depthwise", "matmul")
NODES_CHAIN = 64  # tiny nodes in the per-node micro (16 in quick mode)
NODES_CHAIN_QUICK = 16
# Layers in the stacked (differential) variant of each compute and elementwise micro: the per-layer time is the slope
# (t_K - t_1) / (K - 1), in which the per-call and boundary costs (input/output quantize and dequantize, layout
# reorders) cancel.
STACK = 4
STACK_QUICK = 3
# Micro kinds that come as a single layer and a stack of K: the four compute classes and ``eltwise``.
STACKED_KINDS: tuple[str, ...] = (*COMPUTE_CLASSES, "eltwise")
# The stem (a dense conv on the 3-channel image, stride 2) is timed as one layer: it cannot stack (its output has more
# channels than its input), and a network pays the same boundary (the input's quantize and layout) around it.
# ``unfused`` (a 1×1 conv followed by HardSwish, stacked) is built for LiteRT int8 only: XNNPACK leaves the int8
# HARD_SWISH to LiteRT's builtin kernels, and its stack's slope less the same 1×1 conv's is that kernel's cost.
UNFUSED_SETS: tuple[tuple[str, str], ...] = (("litert", "int8"),)
# The activations a 1×1 conv is followed by in an unfused micro: ``unfused`` a HardSwish (LiteRT's int8 kernel does
# fixed-point arithmetic per element), ``lut`` a GELU (LiteRT's int8 GELU, like its int8 LOGISTIC, TANH and ELU, is
# a 256-entry table lookup per element: on this Xeon vit_small's 4 int8 GELUs priced at the HardSwish rate put its
# LiteRT int8 estimate 45% over the measurement, text_transformer's 2 put it 150% over).
UNFUSED_KINDS: tuple[str, ...] = ("unfused", "lut")
# Runtimes whose stem micro times the stem: OpenVINO's one-layer stem is dominated by its reorders into and out of
# its blocked layout (on this host its 3×3 int8 stem micro took 0.87 ms where the same conv inside mobilenet_v2 took
# 0.21 ms by OpenVINO's own per-layer counters, both on a loaded machine), so OpenVINO's stem keeps the conv's efficiency
STEM_RUNTIMES: tuple[str, ...] = ("onnxruntime", "litert")
# Micro kinds quantized in an int8 set (the copies and the overhead micros stay fp32 files)
# ``softmax``: a stack of Softmax over the last axis of an attention-score-shaped tensor (heads × tokens × tokens),
# timed in every set; optional in the fit (timings saved before it existed have none)
OPTIONAL_STACKED_KINDS: tuple[str, ...] = ("softmax",)
QUANTIZED_KINDS: tuple[str, ...] = (*STACKED_KINDS, "stem", "unfused", "lut", "softmax")

# Shapes (H, W, C for convolutions; M, K, N for the GEMM; elements for the copy). Chosen so each full-size micro
# takes about 0.2-5 ms on one Cortex-A76 core at a typical efficiency: ~29 M MACs per 3×3 conv, ~13 M per 1×1, the
# depthwise ones memory-bound (0.5-3.6 M MACs on 0.8-1.6 MB of activations), a GEMV that streams 4 MB of weights,
# two batched GEMMs, and copies of 16 and 32 MB (past every last-level cache of the profiled devices).
FULL_SHAPES: dict[str, tuple[tuple[int, ...], ...]] = {
    "conv": ((56, 56, 32), (28, 28, 64), (14, 14, 128), (7, 7, 256)),
    # the first two: few channels (a MobileNet's 16-32-channel layers: low arithmetic intensity, where AMX/VNNI tiles
    # run part-empty), the rest ~13 M MACs each
    "conv1x1": ((56, 56, 16), (28, 28, 32), (56, 56, 64), (28, 28, 128), (14, 14, 256), (7, 7, 512)),
    "depthwise": ((56, 56, 128), (28, 28, 256), (14, 14, 512), (7, 7, 1024)),
    "matmul": ((1, 1024, 1024), (64, 512, 512), (64, 768, 768)),
    "copy": ((4 << 20,), (8 << 20,)),
    # activation-sized tensors (H, W, C) for the elementwise stack: in-cache, as a network's residual Adds are
    "eltwise": ((56, 56, 32), (28, 28, 96)),
    # (H, input channels, output channels, kernel) at stride 2: MobileNet/EfficientNet's 3×3 and ResNet's 7×7 stems
    "stem": ((224, 3, 32, 3), (224, 3, 64, 7)),
    "unfused": ((56, 56, 64),),  # the shape of one conv1x1 micro: the activation's cost is the difference
    "lut": ((56, 56, 64),),
    "softmax": ((6, 197, 197),),  # vit_small's attention scores
}
# Quick mode (a smoke test of the whole path, or a first look): two small shapes per kind, about 2 M MACs each.
QUICK_SHAPES: dict[str, tuple[tuple[int, ...], ...]] = {
    "conv": ((14, 14, 32), (7, 7, 64)),
    "conv1x1": ((14, 14, 64), (7, 7, 128)),
    "depthwise": ((28, 28, 64), (14, 14, 128)),
    "matmul": ((1, 256, 256), (16, 256, 256)),
    "copy": ((256 << 10,), (512 << 10,)),
    "eltwise": ((14, 14, 32),),
    "stem": ((64, 3, 16, 3), (64, 3, 16, 7)),
    "unfused": ((14, 14, 64),),
    "lut": ((14, 14, 64),),
    "softmax": ((2, 32, 32),),
}


@dataclass(frozen=True, kw_only=True)
class MicroModel:
    """One microbenchmark: what it computes and its analytic cost.

    ``kind`` is an op class of the cost model (stem, conv, conv1x1, depthwise, matmul), ``unfused`` (a 1×1 conv and
    a HardSwish the runtime does not fuse into it), ``eltwise`` (residual Adds of two
    activations), ``copy`` (an elementwise Add over a large tensor: bandwidth), ``call`` (one tiny Add: the per-call
    overhead) or ``nodes`` (a chain of tiny Adds: the per-node cost). ``layers`` is 1, or K for the stacked variant
    of a compute or eltwise micro (:meth:`stacked`). ``macs`` counts multiply-accumulates (one per element for an
    Add); ``bytes`` is what the ops read and write in fp32 (inputs, weights and bias, outputs), summed over the
    layers; ``nodes`` is the number of graph nodes after the cost model's fusion.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    input_shape: tuple[int, ...]
    macs: int
    bytes: int
    nodes: int = 1
    layers: int = 1

    @property
    def op_class(self) -> str:
        """The cost model's op class this micro measures (``elementwise`` for eltwise, copy, call and nodes)."""
        if self.kind in UNFUSED_KINDS:
            return "conv1x1"
        if self.kind == "softmax":
            return "softmax"
        return self.kind if self.kind in (*COMPUTE_CLASSES, "stem") else "elementwise"

    @property
    def boundary_elements(self) -> int:
        """Elements of its input and output: what a call converts at its boundary (quantize, dequantize, layout)."""
        return int(np.prod(self.input_shape)) + int(np.prod(_output_shape(self)))

    @property
    def base(self) -> str:
        """The name of the single-layer micro this one stacks (its own name when ``layers == 1``)."""
        return self.name.rsplit("-x", 1)[0] if self.layers > 1 else self.name

    def stacked(self, layers: int) -> MicroModel:
        """The same layer repeated ``layers`` times in sequence (each its own weights): K× the MACs, bytes, nodes."""
        if self.kind not in (*STACKED_KINDS, *UNFUSED_KINDS, *OPTIONAL_STACKED_KINDS) or self.layers != 1:
            raise ConfigError(f"only single-layer {', '.join(STACKED_KINDS)} and unfused micros stack, not "
                              f"{self.name!r}.")
        return MicroModel(name=f"{self.name}-x{layers}", kind=self.kind, shape=self.shape, input_shape=self.input_shape,
                          macs=self.macs * layers, bytes=self.bytes * layers, nodes=self.nodes * layers, layers=layers)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"], d["input_shape"], d["op_class"] = list(self.shape), list(self.input_shape), self.op_class
        return d


def _conv(kind: str, h: int, w: int, c: int) -> MicroModel:
    k = 1 if kind == "conv1x1" else 3
    groups = c if kind == "depthwise" else 1
    cin_per_group = c // groups
    weights = c * cin_per_group * k * k + c  # + bias
    macs = h * w * c * cin_per_group * k * k
    return MicroModel(name=f"{kind}-{h}x{w}x{c}", kind=kind, shape=(h, w, c), input_shape=(1, c, h, w), macs=macs,
                      bytes=FP32_BYTES * (2 * h * w * c + weights))


def _gemm(m: int, k: int, n: int) -> MicroModel:
    return MicroModel(name=f"matmul-{m}x{k}x{n}", kind="matmul", shape=(m, k, n), input_shape=(1, m, k), macs=m * k * n,
                      bytes=FP32_BYTES * (m * k + k * n + n + m * n))


def _copy(elements: int) -> MicroModel:
    return MicroModel(name=f"copy-{elements * FP32_BYTES >> 20}mb" if elements * FP32_BYTES >= 1 << 20
                      else f"copy-{elements * FP32_BYTES >> 10}kb", kind="copy", shape=(elements,),
                      input_shape=(1, elements), macs=elements, bytes=FP32_BYTES * 2 * elements)


def _stem(h: int, cin: int, cout: int, k: int) -> MicroModel:
    out = h // 2  # stride 2, padding k // 2
    return MicroModel(name=f"stem-{h}x{h}x{cin}-{cout}k{k}", kind="stem", shape=(h, cin, cout, k),
                      input_shape=(1, cin, h, h), macs=out * out * cout * cin * k * k,
                      bytes=FP32_BYTES * (cin * h * h + cout * out * out + cout * cin * k * k + cout))


def _unfused(h: int, w: int, c: int, kind: str = "unfused") -> MicroModel:
    conv = _conv("conv1x1", h, w, c)
    return MicroModel(name=f"{kind}-{h}x{w}x{c}", kind=kind, shape=(h, w, c), input_shape=conv.input_shape,
                      macs=conv.macs, bytes=conv.bytes + FP32_BYTES * 2 * h * w * c)


def micros_for(micros: Sequence[MicroModel], runtime: str, precision: str) -> list[MicroModel]:
    """The micros a (runtime, precision) set times: all but the unfused ones outside ``UNFUSED_SETS`` and the stems
    outside ``STEM_RUNTIMES``."""
    return [m for m in micros if (m.kind not in UNFUSED_KINDS or (runtime, precision) in UNFUSED_SETS)
            and (m.kind != "stem" or runtime in STEM_RUNTIMES)]


def _softmax(heads: int, rows: int, cols: int) -> MicroModel:
    # one Softmax over the last axis: reads and writes the tensor (an exp and a division per element)
    n = heads * rows * cols
    return MicroModel(name=f"softmax-{heads}x{rows}x{cols}", kind="softmax", shape=(heads, rows, cols),
                      input_shape=(1, heads, rows, cols), macs=n, bytes=FP32_BYTES * 2 * n)


def _eltwise(h: int, w: int, c: int) -> MicroModel:
    # one residual Add of two activations: reads two tensors and writes one
    return MicroModel(name=f"eltwise-{h}x{w}x{c}", kind="eltwise", shape=(h, w, c), input_shape=(1, c, h, w),
                      macs=h * w * c, bytes=FP32_BYTES * 3 * h * w * c)


def micro_models(*, quick: bool = False) -> list[MicroModel]:
    """The microbenchmarks of one calibration: every compute kind at its shapes, the elementwise stack and the unfused
    activation, each as one layer and as a stack of ``STACK`` (``STACK_QUICK``) layers; the stems as one layer; two
    copies, ``call`` and ``nodes``. :func:`micros_for` picks a runtime and precision's set."""
    shapes = QUICK_SHAPES if quick else FULL_SHAPES
    k = STACK_QUICK if quick else STACK
    single = [_conv(kind, *s) for kind in ("conv", "conv1x1", "depthwise") for s in shapes[kind]]
    single += [_gemm(*s) for s in shapes["matmul"]]
    single += [_eltwise(*s) for s in shapes["eltwise"]]
    single += [_unfused(*s, kind=kind) for kind in UNFUSED_KINDS for s in shapes[kind]]
    single += [_softmax(*s) for s in shapes["softmax"]]
    out = [m for s in single for m in (s, s.stacked(k))]
    out += [_stem(*s) for s in shapes["stem"]]
    out += [_copy(*s) for s in shapes["copy"]]
    width = 8
    out.append(MicroModel(name="call", kind="call", shape=(width,), input_shape=(1, width), macs=width,
                          bytes=FP32_BYTES * 2 * width))
    chain = NODES_CHAIN_QUICK if quick else NODES_CHAIN
    out.append(MicroModel(name=f"nodes-{chain}", kind="nodes", shape=(width,), input_shape=(1, width),
                          macs=width * chain, bytes=FP32_BYTES * 2 * width * chain, nodes=chain))
    return out


def build_onnx_graph(micro: MicroModel, *, seed: int = 0) -> Any:
    """The micro model as an ``onnx.ModelProto`` (opset 17, one input ``x``, one output ``y``, seeded weights)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits: list[Any] = []
    nodes: list[Any] = []

    def weight(name: str, shape: tuple[int, ...], scale: float) -> str:
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    layers = micro.layers
    # a stack's layers are named with a suffix (w, w_1, ...; the single layer keeps the plain names)
    sfx = lambda i: "" if i == 0 else f"_{i}"  # noqa: E731
    tensor = lambda i: "y" if i == layers - 1 else f"h{i}"  # noqa: E731 - layer i's output
    if micro.kind in ("conv", "conv1x1", "depthwise"):
        h, w, c = micro.shape
        k = 1 if micro.kind == "conv1x1" else 3
        group = c if micro.kind == "depthwise" else 1
        fan_in = (c // group) * k * k
        prev = "x"
        for i in range(layers):
            wname = weight(f"w{sfx(i)}", (c, c // group, k, k), 1.0 / np.sqrt(fan_in))
            bname = weight(f"b{sfx(i)}", (c,), 0.1)
            pad = k // 2
            nodes.append(helper.make_node("Conv", [prev, wname, bname], [tensor(i)], kernel_shape=[k, k],
                                          pads=[pad] * 4, strides=[1, 1], group=group))
            prev = tensor(i)
        out_shape = [1, c, h, w]
    elif micro.kind == "stem":
        h, cin, cout, k = micro.shape
        wname, bname = weight("w", (cout, cin, k, k), 1.0 / np.sqrt(cin * k * k)), weight("b", (cout,), 0.1)
        nodes.append(helper.make_node("Conv", ["x", wname, bname], ["y"], kernel_shape=[k, k], pads=[k // 2] * 4,
                                      strides=[2, 2]))
        out_shape = list(_output_shape(micro))
    elif micro.kind == "softmax":  # Softmax over the last axis, ``layers`` times
        prev = "x"
        for i in range(layers):
            nodes.append(helper.make_node("Softmax", [prev], [tensor(i)], axis=-1))
            prev = tensor(i)
        out_shape = list(micro.input_shape)
    elif micro.kind in UNFUSED_KINDS:  # layers of a 1×1 conv and a HardSwish (unfused) or a GELU (lut)
        h, w, c = micro.shape
        prev = "x"
        for i in range(layers):
            wname = weight(f"w{sfx(i)}", (c, c, 1, 1), 1.0 / np.sqrt(c))
            bname = weight(f"b{sfx(i)}", (c,), 0.1)
            nodes.append(helper.make_node("Conv", [prev, wname, bname], [f"c{i}"], kernel_shape=[1, 1]))
            # opset 17 has no Gelu: onnxruntime's contrib op (the lut micro is timed on LiteRT only; this form is
            # its reference and its cost)
            act = (helper.make_node("HardSwish", [f"c{i}"], [tensor(i)]) if micro.kind == "unfused" else
                   helper.make_node("Gelu", [f"c{i}"], [tensor(i)], domain="com.microsoft"))
            nodes.append(act)
            prev = tensor(i)
        out_shape = [1, c, h, w]
    elif micro.kind == "matmul":  # MatMul + bias Add on (1, M, K): M rows of one sample, as in a transformer
        m, k, n = micro.shape
        if layers > 1 and k != n:
            raise ConfigError(f"a stacked matmul micro needs K == N so its layers chain, got {micro.shape}.")
        prev = "x"
        for i in range(layers):
            wname = weight(f"w{sfx(i)}", (k, n), 1.0 / np.sqrt(k))
            bname = weight(f"b{sfx(i)}", (n,), 0.1)
            nodes.append(helper.make_node("MatMul", [prev, wname], [f"xw{sfx(i)}"]))
            nodes.append(helper.make_node("Add", [f"xw{sfx(i)}", bname], [tensor(i)]))
            prev = tensor(i)
        out_shape = [1, m, n]
    elif micro.kind == "eltwise":  # residual Adds of two activations, h_i = h_(i-1) + x: no constant to fold
        h, w, c = micro.shape
        prev = "x"
        for i in range(layers):
            nodes.append(helper.make_node("Add", [prev, "x"], [tensor(i)]))
            prev = tensor(i)
        out_shape = [1, c, h, w]
    elif micro.kind in ("copy", "call"):
        cname = weight("c", (1,), 1.0)
        nodes.append(helper.make_node("Add", ["x", cname], ["y"]))
        out_shape = list(micro.input_shape)
    elif micro.kind == "nodes":
        prev = "x"
        for i in range(micro.nodes):
            out = "y" if i == micro.nodes - 1 else f"t{i}"
            # distinct constants, so no optimizer folds the chain into one node
            nodes.append(helper.make_node("Add", [prev, weight(f"c{i}", (micro.shape[0],), 1.0)], [out]))
            prev = out
        out_shape = list(micro.input_shape)
    else:
        raise ConfigError(f"unknown micro kind {micro.kind!r}; valid: "
                          f"{', '.join((*STACKED_KINDS, 'stem', *UNFUSED_KINDS, 'softmax', 'copy', 'call', 'nodes'))}.")
    # ONNX shape inference does not know the contrib Gelu: the lut micro's tensors are declared (all one shape)
    shaped = sorted({t for n in nodes for t in n.output} - {"y"}) if micro.kind == "lut" else []
    graph = helper.make_graph(nodes, micro.name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(micro.input_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], initializer=inits,
                              value_info=[helper.make_tensor_value_info(t, TensorProto.FLOAT, out_shape) for t in shaped])
    opsets = [helper.make_opsetid("", OPSET), *([helper.make_opsetid("com.microsoft", 1)] if micro.kind == "lut" else [])]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="edgestill-microbench")
    model.ir_version = 8  # readable by every onnxruntime and OpenVINO release that supports opset 17
    onnx.checker.check_model(model)
    return model


class _RandomReader:
    """onnxruntime's CalibrationDataReader over seeded random inputs of one shape."""

    def __init__(self, shape: tuple[int, ...], n: int, seed: int):
        rng = np.random.default_rng(seed)
        self._items = iter([{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(n)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def _versions(*dists: str) -> dict[str, str]:
    from edgestill.export.base import dist_versions

    return dist_versions(*dists)


def _artifact(micro: MicroModel, folder: Path, name: str, fmt: str, precision: str, model_file: str,
              files: Sequence[str], versions: dict[str, str], quantization: dict[str, Any] | None) -> Path:
    out_shape = _output_shape(micro)
    art = Artifact(
        name=name, format=fmt, precision=precision, directory=folder, model_file=model_file,
        files={f: "" for f in files},
        inputs=[TensorSpec(name="x", shape=micro.input_shape, dtype="float32")],
        outputs=[TensorSpec(name="y", shape=out_shape, dtype="float32")],
        source={"model": f"microbench:{micro.name}", "kind": "microbench", "micro": micro.to_dict()},
        versions=versions, quantization=quantization,
    )
    art.hash_files()
    return art.write_manifest()


def _output_shape(micro: MicroModel) -> tuple[int, ...]:
    if micro.kind == "matmul":
        return (1, micro.shape[0], micro.shape[2])
    if micro.kind == "stem":
        h, _, cout, _ = micro.shape
        return (1, cout, h // 2, h // 2)
    return micro.input_shape


def _quantizes(micro: MicroModel) -> bool:
    return micro.kind in QUANTIZED_KINDS


def build_onnx(micro: MicroModel, folder: Path, precision: str = "fp32", *, seed: int = 0) -> Path:
    """Write the micro model as an ONNX artifact in ``folder``; return its manifest path.

    ``int8``: onnxruntime's ``quantize_static`` (QDQ, per-channel symmetric int8 weights, int8 activations) on 8
    seeded random inputs; the copy, call and nodes micros stay fp32 (see the module's docstring).

    Raises:
        ConfigError: a precision other than fp32 or int8.
    """
    import onnx

    _check_precision(precision)
    folder.mkdir(parents=True, exist_ok=True)
    quantized = precision == "int8" and _quantizes(micro)
    name = micro_artifact_name(micro, "onnxruntime", precision)
    fp32_path = folder / f"{name}.fp32.onnx" if quantized else folder / f"{name}.onnx"
    onnx.save(build_onnx_graph(micro, seed=seed), str(fp32_path))
    quantization = None
    if quantized:
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

        path = folder / f"{name}.onnx"
        quantize_static(str(fp32_path), str(path), _RandomReader(micro.input_shape, 8, seed + 1),
                        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8)
        fp32_path.unlink()
        quantization = {"method": "static", "tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
                        "per_channel": True, "calibration": "8 seeded standard-normal inputs"}
    return _artifact(micro, folder, name, "onnx", "int8-static" if quantized else "fp32", f"{name}.onnx",
                     [f"{name}.onnx"], _versions("onnx", "onnxruntime"), quantization)


def build_openvino(micro: MicroModel, folder: Path, precision: str = "fp32", *, seed: int = 0) -> Path:
    """Write the micro model as an OpenVINO IR artifact in ``folder`` (fp32 weights); return its manifest path.

    ``int8``: ``nncf.quantize`` on the converted model with 8 seeded random inputs (copy, call and nodes stay fp32).

    Raises:
        ConfigError: a precision other than fp32 or int8.
    """
    import onnx

    from edgestill.export.openvino import convert_openvino, save_openvino
    from edgestill.runtimes.openvino import no_telemetry

    _check_precision(precision)
    folder.mkdir(parents=True, exist_ok=True)
    quantized = precision == "int8" and _quantizes(micro)
    name = micro_artifact_name(micro, "openvino", precision)
    onnx_path = folder / f"{name}.src.onnx"
    onnx.save(build_onnx_graph(micro, seed=seed), str(onnx_path))
    om = convert_openvino(onnx_path, (np.zeros(micro.input_shape, np.float32),))
    quantization = None
    if quantized:
        with no_telemetry():
            import nncf

            rng = np.random.default_rng(seed + 1)
            items = [rng.standard_normal(micro.input_shape).astype(np.float32) for _ in range(8)]
            om = nncf.quantize(om, nncf.Dataset(items), subset_size=len(items))
        quantization = {"method": "static", "tool": "nncf.quantize", "calibration": "8 seeded standard-normal inputs"}
    save_openvino(om, folder / f"{name}.xml", compress_to_fp16=False)
    onnx_path.unlink()
    return _artifact(micro, folder, name, "openvino", "int8-static" if quantized else "fp32", f"{name}.xml",
                     [f"{name}.xml", f"{name}.bin"], _versions("onnx", "openvino", "nncf"), quantization)


def _torch_module(micro: MicroModel, seed: int) -> Any:
    """The micro model as a small torch module (the LiteRT set goes through litert-torch, which converts torch)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class Chain(nn.Module):  # x + c (copy, call) or x + c0 + c1 + ... (nodes): distinct constants, nothing folds
        def __init__(self, count: int, width: int):
            super().__init__()
            self.consts = nn.ParameterList([nn.Parameter(torch.randn(width), requires_grad=False) for _ in range(count)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for c in self.consts:
                x = x + c
            return x

    class EltStack(nn.Module):  # residual Adds of two activations: h = x; h = h + x, ``count`` times
        def __init__(self, count: int):
            super().__init__()
            self.count = count

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = x
            for _ in range(self.count):
                h = h + x
            return h

    def stack(make: Any) -> Any:
        return (make() if micro.layers == 1 else nn.Sequential(*[make() for _ in range(micro.layers)])).eval()

    if micro.kind in ("conv", "conv1x1", "depthwise"):
        c = micro.shape[2]
        k = 1 if micro.kind == "conv1x1" else 3
        return stack(lambda: nn.Conv2d(c, c, k, padding=k // 2, groups=c if micro.kind == "depthwise" else 1,
                                       bias=True))
    if micro.kind == "stem":
        h, cin, cout, k = micro.shape
        return nn.Conv2d(cin, cout, k, stride=2, padding=k // 2, bias=True).eval()
    if micro.kind == "softmax":
        class SoftmaxStack(nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                for _ in range(micro.layers):
                    x = torch.softmax(x, dim=-1)
                return x

        return SoftmaxStack().eval()
    if micro.kind in UNFUSED_KINDS:
        c = micro.shape[2]
        act = nn.Hardswish if micro.kind == "unfused" else nn.GELU
        return stack(lambda: nn.Sequential(nn.Conv2d(c, c, 1, bias=True), act()))
    if micro.kind == "matmul":
        return stack(lambda: nn.Linear(micro.shape[1], micro.shape[2], bias=True))
    if micro.kind == "eltwise":
        return EltStack(micro.layers).eval()
    if micro.kind in ("copy", "call"):
        return Chain(1, 1).eval()
    return Chain(micro.nodes, micro.shape[0]).eval()


def build_litert(micro: MicroModel, folder: Path, precision: str = "fp32", *, seed: int = 0) -> Path:
    """Write the micro model as a LiteRT (.tflite) artifact in ``folder`` with the project's writers; return its
    manifest path. Needs torch and litert-torch on the machine that builds it (never on the device).

    ``int8``: static int8 through :func:`edgestill.compress.quantize.api.quantize_export` (8 seeded random inputs,
    no equalisation or bias correction: they change the random weights, not the graph);
    copy, call and nodes stay fp32.

    Raises:
        ConfigError: a precision other than fp32 or int8.
    """
    import torch

    _check_precision(precision)
    folder.mkdir(parents=True, exist_ok=True)
    quantized = precision == "int8" and _quantizes(micro)
    name = micro_artifact_name(micro, "litert", precision)
    module = _torch_module(micro, seed)
    example = (torch.from_numpy(np.random.default_rng(seed).standard_normal(micro.input_shape).astype(np.float32)),)
    if quantized:
        from edgestill.compress.quantize.api import quantize_export
        from edgestill.compress.quantize.options import QuantOptions

        calib = np.random.default_rng(seed + 1).standard_normal((8, *micro.input_shape[1:])).astype(np.float32)
        # random weights: equalisation and bias correction would change values, not the graph the runtime times
        art = quantize_export(module, example, format="tflite", precision="int8-static", calibration=calib,
                              staging_dir=folder, name=name,
                              options=QuantOptions(equalize=False, bias_correction=False))
    else:
        from edgestill.export.api import get_exporter

        art = get_exporter("tflite")(module, example, staging_dir=folder, name=name, precision="fp32")
    art.source = {"model": f"microbench:{micro.name}", "kind": "microbench", "micro": micro.to_dict()}
    art.hash_files()
    return art.write_manifest()


def _check_precision(precision: str) -> None:
    if precision not in MICRO_PRECISIONS:
        raise ConfigError(f"micro models are built in {', '.join(MICRO_PRECISIONS)}, not {precision!r}.")


def micro_artifact_name(micro: MicroModel, runtime: str, precision: str) -> str:
    """The artifact name of one micro model for one runtime and precision (unique within a calibration)."""
    return f"micro-{runtime}-{precision}-{micro.name}"


def build_micro_set(micros: Sequence[MicroModel], runtime: str, precision: str, folder: Path, *,
                    seed: int = 0) -> dict[str, Path]:
    """Build every micro model for one runtime and precision in ``folder``; return {micro name: manifest path}.

    Raises:
        UnsupportedError: a runtime without a micro builder (valid: onnxruntime, openvino).
        ConfigError: a precision other than fp32 or int8.
    """
    builders = {"onnxruntime": build_onnx, "openvino": build_openvino, "litert": build_litert}
    if runtime not in builders:
        raise UnsupportedError(f"calibration builds micro models for {', '.join(builders)}, not {runtime!r}; "
                               "pass --runtime with those.")
    _check_precision(precision)
    out = {}
    for micro in micros:
        out[micro.name] = builders[runtime](micro, folder, precision, seed=seed)
    return out
