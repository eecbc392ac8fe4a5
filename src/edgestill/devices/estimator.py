"""Latency estimates for a device that is not attached: a per-layer roofline fitted on published measurements.

Model. For each node of the fused graph (:mod:`edgestill.devices.costmodel`)::

    t_node = max(macs / (P · eff[class] · s), bytes / (B · bw_eff · s)) + per_node_ms
    t      = Σ t_node + overhead_ms

``P`` is the compute peak: on the CPU ``profile.peak_macs_per_s(precision, threads)`` times a parallel efficiency
``(1 + (threads - 1)·p) / threads``; on an accelerator its ``peak_gflops`` for the precision / 2 (MAC/s). ``B`` is the
profile's memory bandwidth. ``eff[class]`` is an efficiency per op class (conv, conv1x1, depthwise, matmul, attention;
the memory-bound classes, with no MACs, use ``bw_eff``), ``s`` a scale per runtime group (runtime family ×
accelerator; LiteRT/XNNPACK on the CPU is the reference, ``s = 1``), and int8 compute runs at ``eff · f_int8`` of the
int8 peak. Moving a graph exported in fp32 to int8 (fp16) divides its bytes by 4 (2).

Fit (``fit="published"``). The shared parameters (5 class efficiencies, ``bw_eff``, ``f_int8``, ``p``), one scale per
runtime group and one scale per CPU core type (the fastest cluster's core, e.g. Cortex-A76: the Pixel 4's big cores
and the Raspberry Pi 5's share it; an unseen core type gets 1) are fitted on ``published_latencies.csv`` by least
squares on log latency (scipy ``least_squares``), each regularised towards a prior, Gaussian in log space: class
efficiencies (conv 0.5, conv1x1 0.6, depthwise 0.15, matmul 0.5, attention 0.3) and ``bw_eff`` (0.5) σ = 1, runtime
scales σ = 1 around 1, core scales σ = 0.5 around 1, ``f_int8`` (0.5) σ = 0.7, ``p`` (0.8) σ = 1 in logit; data σ =
0.25 in log latency. ``per_node_ms`` and ``overhead_ms`` are fixed priors (CPU 0.005 / 0.05 ms; accelerators 0.03 /
0.5 ms): the rows cannot separate them from the efficiencies. How each published figure was taken is normalised
before the fit:

- threads: an empty cell is the runtime's default, taken as all big cores (clusters within 80% of the fastest
  clock); "big-cores" is the same; a number is that many threads, filled from the fastest cluster;
- pre/post-processing: the opencv-dnn rows whose note says they include it are dropped;
- runtimes: "tflite-cpu" (TFLite's default CPU path as published, mostly 2019-2020 kernels) is its own group, apart
  from "tflite-xnnpack", which is the reference group LiteRT on the CPU estimates with; ExecuTorch's XNNPACK delegate
  shares the reference group (same kernels);
- accelerators: GPU, NNAPI, NPU and TensorRT rows use the accelerator's own peak from the device profile (each runtime
  × accelerator has its own scale); a row whose profile gives no peak for that accelerator is dropped (the phones'
  GPU/NNAPI/NPU rows: their profiles publish no peak);
- precision: "float" (NPU) is fp16; "unknown" is dropped (mobilebert);
- graphs: the zoo models use their counted graph in ``zoo_costs.json``. yolo11n_640 has only totals in
  ``model_costs.csv``: its 7 rows are left out, because without per-layer activation bytes the roofline misses most of
  a 640×640 detector's memory traffic (fitted with them as one conv layer, leave-one-model-out fell to 41% within
  ±25%, median 36%, and every runtime scale absorbed the yolo error);
- a row whose device has no profile on the search path is dropped (reported in ``dropped``).

Consequence: onnxruntime and OpenVINO on the CPU have no usable published rows (their only rows are yolo11n's), so
their scale is the prior, that of LiteRT/XNNPACK; matmul and attention efficiencies stay at their priors (no
transformer in the table). Calibrating the device (``edgestill devices calibrate``) replaces all of that.

Error. :func:`cross_validate_published` refits leaving one model out at a time and predicts that model's rows (a
group or core type seen only with that model falls back to its prior). The 10th/90th percentiles of those log
residuals give every published-fit estimate its ``low_ms``/``high_ms`` band. With the built-in profiles when this was
written: 25 rows, 72% within ±25%, median absolute error 16% (the fit is recomputed, in under a second, on first use,
so the figures follow the profiles and data files; ``perf/estimator_accuracy.py`` prints the current ones).

Calibration (``fit="calibration"``). When the profile holds a calibration entry for (runtime, precision, threads),
its efficiencies, bandwidth efficiency, per-node and per-call terms replace the published fit (``s = 1``, no thread
factor: the entry was measured at that thread count), and the band comes from its own leave-one-shape-out error:
± 1.9 × its median absolute % error (about the 10th/90th percentile when errors are roughly normal in log). The
entry's efficiencies are per layer, from the slope of stacked microbenchmarks (:mod:`edgestill.devices.calibrate`);
its ``elementwise_bandwidth_efficiency`` (from a stack of residual Adds) prices the nodes without MACs (elementwise,
pool, other) in place of the DRAM copies' ``bandwidth_efficiency``, which still prices the compute layers' memory term.
An entry with an ``efficiency_curve`` (each compute class's per-shape efficiencies against the shape's arithmetic
intensity, MACs per byte as counted here) prices a conv, 1×1 conv, depthwise or matmul node at the efficiency
interpolated in log-log at the node's own MACs per byte, the nearest point's beyond the micros' range; attention and
a class without a curve keep the class's one (median) efficiency. Few-channel layers run far below wide ones on
wide-vector and tile units: on the development host OpenVINO int8 ran a 16-channel 1×1 conv at 56×56 at 148 GMAC/s,
a 128-channel one at 28×28 at 985 GMAC/s, and mobilenet_v2's 16- to 32-channel 1×1 convs at 100-200 GMAC/s by its own
per-layer counters, so the one median efficiency put OpenVINO int8 mobilenet_v2 35% under.

int8. A graph stored in fp32 (the ONNX export an OpenVINO or LiteRT int8 artifact is estimated from) moves a quarter
of its bytes in int8, every node. A graph already quantized (onnxruntime's QDQ export: a node is marked int8) is taken
as the runtime runs it: its fp32 nodes keep fp32 bytes, and the cost model counts the DequantizeLinear and
QuantizeLinear passes onnxruntime keeps around ops it has no int8 kernel for (LayerNormalization, Gelu,
HardSigmoid, ReduceMean; :mod:`edgestill.devices.costmodel`); those fp32 nodes without MACs are priced at the fp32
calibration's elementwise bandwidth (float kernels), the int8 ones at the int8 entry's (QLinearAdd and the like).
When the profile also holds the fp32 entry for the runtime and thread count, every fp32 node of a quantized graph is
priced at that entry (its efficiencies, fp32 peak, bandwidth efficiencies and per-node term), the int8 nodes at the
int8 entry, and the call overhead once (the int8 entry's).

Stems and builtin ops. A network's first conv on the image (``stem``: at most 4 input channels, kernel larger than
stride) runs far below the conv rate, most of all in int8 (on the development host LiteRT ran ResNet's int8 7×7 stem
barely faster than fp32, its 3×3 convs 6× faster): a calibration that timed the stem micros prices it at its own
efficiency; one made before them, and the published fit (whose rows cannot separate it), at the conv's. An int8 op a
runtime leaves outside its delegate (a ``.tflite`` file's ops XNNPACK does not take, marked ``builtin`` by
:func:`~edgestill.devices.tflite_cost.tflite_cost`: mobilenet_v3's int8 HARD_SWISH) costs its bytes at the entry's
``builtin_ns_per_byte`` (LiteRT's own kernel, timed by the unfused micro) instead of the roofline; a table-lookup
kernel (int8 GELU, LOGISTIC, TANH, ELU: ``costmodel.LUT_OPS``) at ``builtin_lut_ns_per_byte`` (the lut micro: on the
development host 0.10 ns/byte against HARD_SWISH's 1.56).

LiteRT artifacts are costed from the ``.tflite`` file itself (:mod:`edgestill.devices.tflite_cost`): the project's
LiteRT quantizer leaves LayerNorm, attention, Softmax, GELU pieces and mobilenet_v3's hard-sigmoid in fp32 between
DEQUANTIZE and QUANTIZE, which the fp32 ONNX graph does not show; the file's graph shows them, with those passes.
OpenVINO artifacts are still estimated from the fp32 ONNX export (OpenVINO fuses into bf16/int8 subgraphs of its own).

Measured on the development host (Xeon with AMX, 1 thread, ``perf/estimator_accuracy.py``; 10 zoo models × onnx,
openvino, tflite × fp32, int8 = 60 cells; every run in ``perf/results/estimator_accuracy_runs.jsonl``): with one-layer
micros 55% within ±25% (median |error| 21%); with the differential micros and the QDQ passes 60% (22%); with LiteRT
artifacts costed from the .tflite file 67% (21%); with the stem and unfused micros 83% (15%); with the intensity
curves, the lut micro and row-sized lookups 77% and 82% (16%, 11%) in two runs; with the softmax class 88% and 90%
(11%, 8%). What still misses is OpenVINO int8 (4-6 of 10 within): mobilenet_v3_small/large, vit_small and
text_transformer 33-50% low. Its own per-layer counters show small 1×1 convs (squeeze-excite blocks on 1×1 pixels:
2-9 µs each; 14×14 expansions at 100-200 GMAC/s) and its int8 transformer pieces running well below any micro's rate,
while a chain of tiny int8 convs put its fixed cost per conv at 1.3 µs; OpenVINO is still costed from the fp32 ONNX
graph, not from its compiled model.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from edgestill.devices.costmodel import COMPUTE_CLASSES, GraphCost, cost_summary
from edgestill.errors import ConfigError, InputError, UnknownNameError, did_you_mean
from edgestill.record import LatencyStats, Measurement

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
RUNTIMES: tuple[str, ...] = ("onnxruntime", "litert", "openvino")
BAND_QUANTILES = (10.0, 90.0)
MIN_BAND_LOG = 0.05  # a band never narrower than ±5%: the fit's own residuals say nothing finer
WITHIN_PERCENT = 25.0

# published runtime label -> (runtime family, accelerator)
PUBLISHED_RUNTIMES: dict[str, tuple[str, str]] = {
    "tflite-cpu": ("tflite-cpu", "cpu"), "tflite-xnnpack": ("litert", "cpu"), "executorch-xnnpack": ("litert", "cpu"),
    "tflite-gpu": ("litert", "gpu"), "tflite-nnapi": ("litert", "nnapi"), "tflite-npu": ("litert", "npu"),
    "onnxruntime": ("onnxruntime", "cpu"), "openvino": ("openvino", "cpu"), "ncnn": ("ncnn", "cpu"),
    "ncnn-cpu": ("ncnn", "cpu"), "tensorrt": ("tensorrt", "gpu"), "pytorch-cuda": ("pytorch", "gpu"),
    "opencv-cuda": ("opencv", "gpu"), "opencv-dnn": ("opencv", "cpu"),
}
_PRECISION_ALIASES = {"fp32": "fp32", "float32": "fp32", "fp16": "fp16", "float": "fp16", "int8": "int8"}
REFERENCE_GROUP = ("litert", "cpu")

_CLASS_PRIOR = {"conv": 0.5, "conv1x1": 0.6, "depthwise": 0.15, "matmul": 0.5, "attention": 0.3}
# the classes the published table fits; a class without an efficiency of its own (a calibration or fit made before it
# existed, or the published fit, whose rows cannot tell a stem from the other convs) takes its fallback's
_FIT_CLASSES: tuple[str, ...] = tuple(_CLASS_PRIOR)
_CLASS_FALLBACK = {"stem": "conv"}
_BW_PRIOR = 0.5
_INT8_PRIOR = 0.5
_PARALLEL_PRIOR = 0.8
_DATA_SIGMA = 0.25
_CORE_SIGMA = 0.5
_FIXED = {"cpu": {"per_node_ms": 0.005, "overhead_ms": 0.05}, "accelerator": {"per_node_ms": 0.03, "overhead_ms": 0.5}}
_BYTES_SCALE = {("fp32", "int8"): 0.25, ("fp32", "fp16"): 0.5, ("fp16", "int8"): 0.5}


@dataclass(frozen=True)
class _Layers:
    """A graph as arrays: op class per node, MACs, bytes moved, the dtype the graph stores them in, and whether the
    runtime runs the node outside its delegate (a summary row's optional fifth element)."""

    classes: tuple[str, ...]
    macs: np.ndarray
    bytes: np.ndarray
    dtypes: tuple[str, ...]
    builtin: tuple[bool, ...]
    lut: tuple[bool, ...] = ()  # a builtin node whose kernel is a table lookup (the summary row's fifth element "lut")

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any]) -> _Layers:
        rows = summary["layers"]
        return cls(tuple(r[0] for r in rows), np.array([float(r[1]) for r in rows]),
                   np.array([float(r[2]) for r in rows]), tuple(r[3] for r in rows),
                   tuple(bool(r[4]) if len(r) > 4 else False for r in rows),
                   tuple(len(r) > 4 and r[4] == "lut" for r in rows))

    def subset(self, keep: Sequence[bool]) -> _Layers:
        """The nodes where ``keep`` is true."""
        idx = [i for i, k in enumerate(keep) if k]
        lut = self.lut or (False,) * len(self.classes)
        return _Layers(tuple(self.classes[i] for i in idx), self.macs[idx], self.bytes[idx],
                       tuple(self.dtypes[i] for i in idx), tuple(self.builtin[i] for i in idx),
                       tuple(lut[i] for i in idx))


def _data_text(name: str) -> str:
    return resources.files("edgestill.devices").joinpath(name).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def zoo_costs() -> dict[str, dict[str, Any]]:
    """The stored cost summaries of the zoo models (``zoo_costs.json``, written by ``perf/zoo_costs.py``)."""
    return json.loads(_data_text("zoo_costs.json"))["models"]


def zoo_cost(name: str) -> dict[str, Any]:
    """The stored cost summary of one zoo model.

    Raises:
        UnknownNameError: ``name`` is not in ``zoo_costs.json`` (the message lists the models and the closest one).
    """
    costs = zoo_costs()
    if name not in costs:
        raise UnknownNameError("zoo model", name, costs)
    return costs[name]


def _totals_summary(row: Mapping[str, str]) -> dict[str, Any]:
    macs = round(float(row["macs_millions"]) * 1e6)
    param_bytes = round(float(row["params_millions"]) * 1e6 * 4)
    return {"total_macs": macs, "nodes": 1, "layers": [["conv", macs, param_bytes, "fp32"]], "basis": "totals"}


def _model_summaries() -> dict[str, dict[str, Any]]:
    """Zoo graphs first; models only in model_costs.csv as their totals."""
    out: dict[str, dict[str, Any]] = {k: {**v, "basis": "graph"} for k, v in zoo_costs().items()}
    for row in csv.DictReader(_data_text("model_costs.csv").splitlines()):
        out.setdefault(row["model"], _totals_summary(row))
    return out


# ---------------------------------------------------------------------------------------------------------- profiles


def _big_cores(profile: Any) -> int:
    clusters = list(profile.clusters)
    if not clusters:
        return 1
    fastest = max(c.ghz for c in clusters)
    return sum(int(c.count) for c in clusters if c.ghz >= 0.8 * fastest)


def _total_cores(profile: Any) -> int:
    return sum(int(c.count) for c in profile.clusters) or 1


def _accelerator(profile: Any, name: str) -> Mapping[str, Any] | None:
    for acc in profile.accelerators or ():
        if acc.get("name") == name or acc.get("kind") == name:
            return acc
    return None


def _accelerator_peak_macs(profile: Any, name: str, precision: str) -> float | None:
    acc = _accelerator(profile, name)
    if acc is None:
        return None
    peaks = acc.get("peak_gflops") or {}
    for key in (precision, "fp16" if precision == "int8" else None, "fp32"):
        if key and peaks.get(key):
            return float(peaks[key]) * 1e9 / 2
    return None


# ------------------------------------------------------------------------------------------------------- the roofline


def _byte_scales(layers: _Layers, precision: str) -> np.ndarray:
    """How each node's bytes scale to ``precision``: a graph stored in fp32 moves 1/4 of them in int8; a graph that is
    already quantized (a node marked int8) keeps its fp32 nodes at fp32, as the runtime runs them."""
    if precision in ("int8",) and "int8" in layers.dtypes:
        return np.ones(len(layers.dtypes))
    return np.array([_BYTES_SCALE.get((d, precision), 1.0) for d in layers.dtypes])


def _roofline_ms(layers: _Layers, *, precision: str, peak_macs: float, bandwidth_bps: float, eff: Mapping[str, float],
                 bw_eff: float, per_node_ms: float, overhead_ms: float, elementwise_bw_eff: float | None = None,
                 fp32_elementwise_bw_eff: float | None = None, stem_curve: Sequence[Sequence[float]] | None = None,
                 efficiency_curve: Mapping[str, Sequence[Sequence[float]]] | None = None,
                 softmax_bw_eff: float | None = None, fp32_softmax_bw_eff: float | None = None) -> float:
    """The roofline sum. ``elementwise_bw_eff`` (a calibration's, from its stacked elementwise micro) is the bandwidth
    efficiency of the nodes without MACs (elementwise, pool, other); None: ``bw_eff`` for them too.
    ``fp32_elementwise_bw_eff`` (the fp32 calibration's) prices the MAC-less fp32 nodes of a quantized graph, which
    run fp32 kernels, not the int8 ones the int8 entry measured."""
    scale = _byte_scales(layers, precision)
    curves = efficiency_curve or {}
    intensity = layers.macs / np.maximum(layers.bytes * scale, 1.0)
    eff_arr = np.array([_curve_efficiency(stem_curve, m) if c == "stem" and stem_curve else
                        _curve_efficiency(curves[c], i) if c in curves else
                        _efficiency(eff, c) if c in COMPUTE_CLASSES else 1.0
                        for c, m, i in zip(layers.classes, layers.macs, intensity)])
    compute_s = layers.macs / (peak_macs * eff_arr)
    quantized = precision == "int8" and "int8" in layers.dtypes

    def node_bw(c: str, d: str) -> float:
        if c in COMPUTE_CLASSES or not elementwise_bw_eff:
            return bw_eff
        if c == "softmax":  # its own micro's rate where the calibration timed one, else the elementwise one's
            if quantized and d == "fp32":
                return fp32_softmax_bw_eff or fp32_elementwise_bw_eff or elementwise_bw_eff
            return softmax_bw_eff or elementwise_bw_eff
        if quantized and d == "fp32" and fp32_elementwise_bw_eff:
            return fp32_elementwise_bw_eff
        return elementwise_bw_eff

    bw = np.array([node_bw(c, d) for c, d in zip(layers.classes, layers.dtypes)])
    memory_s = layers.bytes * scale / (bandwidth_bps * bw)
    return float(np.sum(np.maximum(compute_s, memory_s)) * 1e3 + per_node_ms * len(layers.classes) + overhead_ms)


def _curve_efficiency(curve: Sequence[Sequence[float]], at: float) -> float:
    """An efficiency from a calibration's curve (``[[x, efficiency], ...]`` of its micros), interpolated in log-log
    between the micros, the nearest one's beyond them. ``stem_curve`` is over a stem's MACs (a stem with more work per
    output pixel keeps the vector units busier: the 7×7 ResNet stem ran about 3× the 3×3 one's rate);
    ``efficiency_curve`` over a layer's MACs per byte."""
    pts = sorted((float(m), float(e)) for m, e in curve if m > 0 and e > 0)
    if not pts:
        return 1.0
    x = math.log(max(float(at), 1e-9))
    xs, ys = [math.log(m) for m, _ in pts], [math.log(e) for _, e in pts]
    return float(math.exp(np.interp(x, xs, ys)))


def _efficiency(eff: Mapping[str, float], op_class: str) -> float:
    """The efficiency of ``op_class`` in ``eff``, its fallback's where it has none (see ``_CLASS_FALLBACK``)."""
    value = eff.get(op_class) or eff.get(_CLASS_FALLBACK.get(op_class, op_class))
    return float(value) if value else 1.0


def core_type(profile: Any) -> str | None:
    """The fastest cluster's core type (``Cortex-A76`` out of ``Kryo 485 Gold (Cortex-A76)``): the key of a core scale."""
    clusters = list(profile.clusters or ())
    if not clusters:
        return None
    core = str(max(clusters, key=lambda c: c.ghz).core)
    found = re.search(r"(Cortex-[A-Z]\d+)", core)
    return found.group(1) if found else core


@dataclass(frozen=True)
class _Row:
    model: str
    device: str
    runtime: str
    precision: str
    threads: int | None  # None on an accelerator
    latency_ms: float
    group: tuple[str, str]
    core: str | None  # the CPU's core type (CPU rows only)
    layers: _Layers
    peak_macs: float  # before the parallel factor
    bandwidth_bps: float
    basis: str
    source: str


def _scale_of(values: Mapping[str, Any], group: tuple[str, str], core: str | None) -> float:
    scale = values["scale"].get(f"{group[0]}/{group[1]}", 1.0)
    if group[1] == "cpu" and core is not None:
        scale *= values["core_scale"].get(core, 1.0)
    return scale


def _predict(values: Mapping[str, Any], layers: _Layers, *, group: tuple[str, str], core: str | None, precision: str,
             threads: int | None, peak_macs: float, bandwidth_bps: float) -> float:
    """One prediction with fitted ``values`` (what the vectorised fit computes, row by row)."""
    scale = _scale_of(values, group, core)
    on_cpu = group[1] == "cpu"
    peak = peak_macs * scale
    if on_cpu and threads:
        peak *= (1 + (threads - 1) * values["parallel"]) / threads
    eff = dict(values["efficiency"])
    if precision == "int8":
        eff = {c: e * values["int8_factor"] for c, e in eff.items()}
    fixed = _FIXED["cpu" if on_cpu else "accelerator"]
    return _roofline_ms(layers, precision=precision, peak_macs=peak, bandwidth_bps=bandwidth_bps * scale, eff=eff,
                        bw_eff=values["bandwidth_efficiency"], **fixed)


def _fit(rows: Sequence[_Row]) -> dict[str, Any]:
    """Least squares on log latency with Gaussian priors; returns the fitted values (see the module docstring)."""
    from scipy.optimize import least_squares

    groups = sorted({r.group for r in rows if r.group != REFERENCE_GROUP})
    cores = sorted({r.core for r in rows if r.core is not None and r.group[1] == "cpu"})
    k = len(_FIT_CLASSES)
    n_shared = k + 3
    # priors (log space): class efficiencies, bw_eff, f_int8, logit p, runtime-group scales, core scales
    mean = np.array([math.log(_CLASS_PRIOR[c]) for c in _FIT_CLASSES]
                    + [math.log(_BW_PRIOR), math.log(_INT8_PRIOR), math.log(_PARALLEL_PRIOR / (1 - _PARALLEL_PRIOR))]
                    + [0.0] * (len(groups) + len(cores)))
    sigma = np.array([1.0] * k + [1.0, 0.7, 1.0] + [1.0] * len(groups) + [_CORE_SIGMA] * len(cores))
    # the rows as flat arrays: one entry per layer, indexed by row
    class_index = {c: i for i, c in enumerate(_FIT_CLASSES)}
    class_index.update({c: class_index[f] for c, f in _CLASS_FALLBACK.items()})
    rid, cls, macs, nbytes = [], [], [], []
    for i, r in enumerate(rows):
        rid.extend([i] * len(r.layers.classes))
        cls.extend(class_index.get(c, k) for c in r.layers.classes)
        macs.extend(r.layers.macs)
        nbytes.extend(b * _BYTES_SCALE.get((d, r.precision), 1.0) for b, d in zip(r.layers.bytes, r.layers.dtypes))
    rid_a, cls_a, macs_a, bytes_a = np.array(rid), np.array(cls), np.array(macs), np.array(nbytes)
    on_cpu = np.array([r.group[1] == "cpu" for r in rows])
    threads = np.array([float(r.threads or 1) for r in rows])
    int8 = np.array([r.precision == "int8" for r in rows])
    peak = np.array([r.peak_macs for r in rows])
    bw = np.array([r.bandwidth_bps for r in rows])
    g_idx = np.array([groups.index(r.group) if r.group in groups else len(groups) for r in rows])
    c_idx = np.array([cores.index(r.core) if (r.core in cores and r.group[1] == "cpu") else len(cores) for r in rows])
    fixed_ms = np.array([(_FIXED["cpu"] if r.group[1] == "cpu" else _FIXED["accelerator"])["per_node_ms"]
                         * len(r.layers.classes) + (_FIXED["cpu"] if r.group[1] == "cpu" else _FIXED["accelerator"])
                         ["overhead_ms"] for r in rows])
    observed = np.log([r.latency_ms for r in rows])

    def residuals(theta: np.ndarray) -> np.ndarray:
        eff = np.append(np.exp(theta[:k]), 1.0)
        bw_eff, f8 = math.exp(theta[k]), math.exp(theta[k + 1])
        par = 1 / (1 + math.exp(-theta[k + 2]))
        g_scale = np.append(np.exp(theta[n_shared:n_shared + len(groups)]), 1.0)
        c_scale = np.append(np.exp(theta[n_shared + len(groups):]), 1.0)
        scale = g_scale[g_idx] * c_scale[c_idx]
        row_peak = peak * scale * np.where(on_cpu, (1 + (threads - 1) * par) / threads, 1.0)
        layer_eff = eff[cls_a] * np.where(int8, f8, 1.0)[rid_a]
        compute = macs_a / (row_peak[rid_a] * layer_eff)
        memory = bytes_a / ((bw * scale)[rid_a] * bw_eff)
        t_ms = np.bincount(rid_a, weights=np.maximum(compute, memory), minlength=len(rows)) * 1e3 + fixed_ms
        return np.concatenate([(np.log(t_ms) - observed) / _DATA_SIGMA, (theta - mean) / sigma])

    lower = np.full(len(mean), -8.0)
    upper = np.full(len(mean), 8.0)
    lower[: k + 1] = math.log(1e-3)
    upper[: k + 1] = 0.0  # an efficiency is a share of peak: at most 1
    upper[k + 1] = math.log(2.0)
    start = np.clip(mean, lower + 1e-6, upper - 1e-6)
    x = least_squares(residuals, start, bounds=(lower, upper), method="trf").x
    return {
        "efficiency": {c: float(math.exp(x[i])) for i, c in enumerate(_FIT_CLASSES)},
        "bandwidth_efficiency": float(math.exp(x[k])), "int8_factor": float(math.exp(x[k + 1])),
        "parallel": float(1 / (1 + math.exp(-x[k + 2]))),
        "scale": {f"{g[0]}/{g[1]}": float(math.exp(x[n_shared + i])) for i, g in enumerate(groups)},
        "core_scale": {c: float(math.exp(x[n_shared + len(groups) + i])) for i, c in enumerate(cores)},
    }


def _load_profiles(devices: Sequence[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The profiles of the published table's devices, and for each one that failed to load, why."""
    from edgestill.devices.profiles import load_profile

    found, failed = {}, {}
    for d in devices:
        try:
            found[d] = load_profile(d)
        except InputError as exc:  # unknown id, or a profile file that does not pass its schema
            failed[d] = str(exc).split(". ")[0]
    return found, failed


def _published_rows() -> tuple[list[_Row], list[dict[str, Any]]]:
    """The usable rows of published_latencies.csv, normalised, and the dropped ones with their reason."""
    table = list(csv.DictReader(_data_text("published_latencies.csv").splitlines()))
    models = _model_summaries()
    profiles, failed = _load_profiles(sorted({r["device"] for r in table}))
    rows: list[_Row] = []
    dropped: list[dict[str, Any]] = []
    for r in table:
        why = None
        group = PUBLISHED_RUNTIMES.get(r["runtime"])
        precision = _PRECISION_ALIASES.get(r["precision"])
        profile = profiles.get(r["device"])
        if group is None:
            why = f"runtime {r['runtime']!r} is not mapped to a runtime family"
        elif "pre/post-processing" in (r.get("note") or ""):
            why = "includes pre/post-processing (note column)"
        elif precision is None:
            why = f"precision {r['precision']!r} is not stated"
        elif r["model"] not in models:
            why = "no cost figures for this model (neither the zoo nor model_costs.csv)"
        elif models[r["model"]]["basis"] == "totals":
            why = ("only totals in model_costs.csv (no exported graph): the roofline needs per-layer MACs and "
                   "activation bytes")
        elif profile is None:
            why = f"no usable device profile for {r['device']!r} ({failed.get(r['device'], 'not found')})"
        if why is None:
            threads: int | None = None
            if group[1] == "cpu":
                threads = int(r["threads"]) if r["threads"].strip().isdigit() else _big_cores(profile)
                peak = float(profile.peak_macs_per_s(precision, threads))
            else:
                peak = _accelerator_peak_macs(profile, group[1], precision) or 0.0
                if not peak:
                    why = f"profile {profile.id!r} gives no peak for accelerator {group[1]!r}"
            bw = float(profile.bandwidth_gbs or 0) * 1e9
            if why is None and not bw:
                why = f"profile {profile.id!r} gives no memory bandwidth"
        if why is not None:
            dropped.append({**{k: r[k] for k in ("model", "device", "runtime", "precision", "threads", "latency_ms")},
                            "reason": why})
            continue
        summary = models[r["model"]]
        rows.append(_Row(model=r["model"], device=r["device"], runtime=r["runtime"], precision=precision,
                         threads=threads, latency_ms=float(r["latency_ms"]), group=group, core=core_type(profile),
                         layers=_Layers.from_summary(summary), peak_macs=peak, bandwidth_bps=bw,
                         basis=summary["basis"], source=r["source"]))
    return rows, dropped


def _row_prediction(values: Mapping[str, Any], r: _Row) -> float:
    return _predict(values, r.layers, group=r.group, core=r.core, precision=r.precision, threads=r.threads,
                    peak_macs=r.peak_macs, bandwidth_bps=r.bandwidth_bps)


def _profile_key() -> tuple[str, ...]:
    from edgestill.devices.profiles import profile_search_path

    return tuple(str(p) for p in profile_search_path())


@functools.lru_cache(maxsize=4)
def _published(key: tuple[str, ...]) -> dict[str, Any]:
    rows, dropped = _published_rows()
    if len(rows) < 3:
        raise ConfigError(f"the published fit has {len(rows)} usable rows of published_latencies.csv (needs 3): the "
                          "device profiles for its devices are missing from the search path. Dropped rows: "
                          + "; ".join(f"{d['model']} on {d['device']}: {d['reason']}" for d in dropped[:5]))
    values = _fit(rows)
    cv_rows = []
    for model in sorted({r.model for r in rows}):
        held = [r for r in rows if r.model == model]
        rest = [r for r in rows if r.model != model]
        fold = _fit(rest)
        for r in held:
            pred = _row_prediction(fold, r)
            cv_rows.append({
                "model": r.model, "device": r.device, "runtime": r.runtime, "precision": r.precision,
                "threads": r.threads, "group": f"{r.group[0]}/{r.group[1]}", "basis": r.basis,
                "published_ms": r.latency_ms, "predicted_ms": round(pred, 4),
                "error_percent": round(100 * (pred / r.latency_ms - 1), 2),
                "log_residual": math.log(r.latency_ms / pred),
            })
    logs = np.array([c["log_residual"] for c in cv_rows])
    abs_pct = np.array([abs(c["error_percent"]) for c in cv_rows])
    lo, hi = np.percentile(logs, BAND_QUANTILES)
    error = {
        "n": len(cv_rows), "within_25_percent": round(float(np.mean(abs_pct <= WITHIN_PERCENT)), 4),
        "median_abs_percent": round(float(np.median(abs_pct)), 2), "method": "leave-one-model-out",
        "log_residual_p10": round(float(lo), 4), "log_residual_p90": round(float(hi), 4),
    }
    return {"values": values, "rows": cv_rows, "dropped": dropped, "error": error,
            "fit_rows": [{"model": r.model, "device": r.device, "runtime": r.runtime,
                          "predicted_ms": round(_row_prediction(values, r), 4), "published_ms": r.latency_ms}
                         for r in rows]}


def published_fit() -> dict[str, Any]:
    """The fit on the published table: fitted ``values``, its cross-validated ``error``, the CV ``rows``, ``dropped``.

    Raises:
        ConfigError: fewer than 3 rows are usable (the device profiles are missing).
    """
    return _published(_profile_key())


def cross_validate_published() -> dict[str, Any]:
    """Leave-one-model-out on the published table.

    Returns:
        ``{"n", "within_25_percent", "median_abs_percent", "rows", "dropped", "parameters"}``: each row gives the
        model, device, runtime, precision, threads, published and predicted ms and the % error of the prediction made
        without that model; ``dropped`` lists the unusable rows with their reason; ``parameters`` the fit on all rows.
    """
    fit = published_fit()
    err = fit["error"]
    return {"n": err["n"], "within_25_percent": err["within_25_percent"],
            "median_abs_percent": err["median_abs_percent"], "method": err["method"],
            "rows": [{k: v for k, v in r.items() if k != "log_residual"} for r in fit["rows"]],
            "dropped": fit["dropped"], "parameters": fit["values"]}


# ---------------------------------------------------------------------------------------------------------- estimate


def _check_choice(profile: Any, runtime: str, precision: str, threads: int, accelerator: str) -> None:
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r} is not one the estimator knows.{did_you_mean(precision, PRECISIONS)} "
                         f"Use one of {', '.join(PRECISIONS)}.")
    runtimes = dict(profile.runtimes or {})
    if runtime not in runtimes:
        raise InputError(f"device {profile.id!r} does not list runtime {runtime!r}.{did_you_mean(runtime, runtimes)} "
                         f"Its runtimes: {', '.join(sorted(runtimes)) or 'none'} (the profile's 'runtimes' block).")
    if accelerator not in runtimes[runtime]:
        raise InputError(f"runtime {runtime!r} on device {profile.id!r} cannot use accelerator {accelerator!r}. "
                         f"It can use: {', '.join(runtimes[runtime])} (the profile's 'runtimes' block).")
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise InputError(f"threads must be a positive integer, got {threads!r}.")
    cores = _total_cores(profile)
    if accelerator == "cpu" and threads > cores:
        raise InputError(f"device {profile.id!r} has {cores} CPU cores; --threads {threads} is more. "
                         f"Use 1 to {cores}.")


def _split_builtin(layers: _Layers, calibration: Mapping[str, Any], precision: str) -> tuple[_Layers, float]:
    """The elementwise nodes a runtime runs outside its delegate at ``precision`` (LiteRT's builtin int8 HARD_SWISH,
    GELU), priced per byte plus its per-node cost, and the other nodes. The rate is the calibration's
    ``builtin_ns_per_byte`` (its unfused micro: HARD_SWISH), or for a table-lookup kernel (``lut``: GELU, LOGISTIC,
    TANH, ELU) its ``builtin_lut_ns_per_byte`` (the lut micro; a calibration without it: the HARD_SWISH rate). Data
    movement outside the delegate (resnet's int8 PADV2: a copy, 1.6 MB) stays in the roofline: the rate of an
    arithmetic kernel put resnet18's estimate 2.5 ms too high. A node without a rate stays in the roofline."""
    rate = calibration.get("builtin_ns_per_byte")
    lut_rate = calibration.get("builtin_lut_ns_per_byte", rate)
    lut = layers.lut or (False,) * len(layers.classes)
    rates = [(lut_rate if t else rate) if b and d == precision and c == "elementwise" else None
             for b, d, c, t in zip(layers.builtin, layers.dtypes, layers.classes, lut)]
    outside = [r is not None for r in rates]
    if not any(outside):
        return layers, 0.0
    ms = sum(float(n) * float(r) * 1e-6 for n, r in zip(layers.bytes, rates) if r is not None)
    return layers.subset([not o for o in outside]), ms + float(calibration.get("per_node_ms") or 0.0) * sum(outside)


def _summary_of(cost: GraphCost | Mapping[str, Any]) -> Mapping[str, Any]:
    return cost_summary(cost) if isinstance(cost, GraphCost) else cost


def _band(point: float, lo_log: float, hi_log: float) -> tuple[float, float]:
    lo_log = min(lo_log, -MIN_BAND_LOG)
    hi_log = max(hi_log, MIN_BAND_LOG)
    return point * math.exp(lo_log), point * math.exp(hi_log)


def estimate(cost: GraphCost | Mapping[str, Any], profile: Any, *, runtime: str, precision: str, threads: int,
             accelerator: str = "cpu", artifact: str = "", format: str = "onnx") -> Measurement:
    """Estimate one call's latency of a graph on a device profile: a record with ``kind == "estimated"``.

    The point estimate is in ``settings["estimate_ms"]`` and in ``latency.p50_ms`` (where the results store, ``gate``
    and the report read an estimate; ``latency.n == 0``: no sample), and ``kind == "estimated"`` keeps the record
    apart from measurements everywhere; ``low_ms``/``high_ms`` are the band of the estimator's own cross-validated
    error;
    ``provenance["estimator"]`` says which fit was used (``"calibration"`` when the profile holds an entry for
    this runtime, precision and thread count, else ``"published"``), its error and its basis.

    Args:
        cost: a :class:`GraphCost` or a stored summary (``zoo_costs.json`` entry / :func:`cost_summary`).
        profile: a device profile (:mod:`edgestill.devices.profiles`).
        runtime: onnxruntime, litert or openvino (must be in the profile's ``runtimes``).
        precision: fp32, fp16 or int8 (an artifact's int8-static, int8-dynamic or mixed counts as int8).
        threads: CPU threads (ignored by accelerators' compute).
        accelerator: "cpu" or an accelerator the profile lists for the runtime.
        artifact, format: what the record names.

    Raises:
        InputError: a runtime, accelerator, precision or thread count the profile does not support, or no peak for
            the accelerator.
        ConfigError: no calibration and no usable published fit.
    """
    precision = _ARTIFACT_PRECISION.get(precision, precision)  # an artifact's int8-static/int8-dynamic is int8
    _check_choice(profile, runtime, precision, threads, accelerator)
    summary = _summary_of(cost)
    layers = _Layers.from_summary(summary)
    bandwidth_bps = float(profile.bandwidth_gbs or 0) * 1e9
    if not bandwidth_bps:
        raise InputError(f"device profile {profile.id!r} gives no memory bandwidth (memory.bandwidth_gbs); the "
                         "estimator needs it. Add it to the profile with its source.")
    calibration = profile.calibration_for(runtime, precision, threads) if accelerator == "cpu" else None
    if calibration:
        eff = {c: float(v) for c, v in (calibration.get("efficiency") or {}).items() if v}
        published = None
        bw_eff = calibration.get("bandwidth_efficiency")
        if not bw_eff:
            published = published_fit()
            bw_eff = published["values"]["bandwidth_efficiency"]
        layers, builtin_ms = _split_builtin(layers, calibration, precision)
        fp32_entry = profile.calibration_for(runtime, "fp32", threads) if precision == "int8" else None
        fp32_nodes = [d == "fp32" for d in layers.dtypes]
        if fp32_entry and "int8" in layers.dtypes and any(fp32_nodes) and fp32_entry.get("bandwidth_efficiency"):
            # a quantized graph that keeps fp32 nodes (a LiteRT int8 file's fp32 islands, onnxruntime's fp32 ops
            # between QDQ pairs): each node at its own dtype's calibration, the call overhead once (the int8 entry's)
            int8_part = _roofline_ms(layers.subset([not f for f in fp32_nodes]), precision=precision,
                                     peak_macs=float(profile.peak_macs_per_s(precision, threads)),
                                     bandwidth_bps=bandwidth_bps, eff=eff, bw_eff=float(bw_eff),
                                     per_node_ms=float(calibration.get("per_node_ms") or 0.0),
                                     overhead_ms=float(calibration.get("overhead_ms") or 0.0),
                                     elementwise_bw_eff=calibration.get("elementwise_bandwidth_efficiency"),
                                     stem_curve=calibration.get("stem_curve"),
                                     efficiency_curve=calibration.get("efficiency_curve"),
                                     softmax_bw_eff=calibration.get("softmax_bandwidth_efficiency"))
            fp32_part = _roofline_ms(layers.subset(fp32_nodes), precision="fp32",
                                     peak_macs=float(profile.peak_macs_per_s("fp32", threads)),
                                     bandwidth_bps=bandwidth_bps,
                                     eff={c: float(v) for c, v in (fp32_entry.get("efficiency") or {}).items() if v},
                                     bw_eff=float(fp32_entry["bandwidth_efficiency"]),
                                     per_node_ms=float(fp32_entry.get("per_node_ms") or 0.0), overhead_ms=0.0,
                                     elementwise_bw_eff=fp32_entry.get("elementwise_bandwidth_efficiency"),
                                     stem_curve=fp32_entry.get("stem_curve"),
                                     efficiency_curve=fp32_entry.get("efficiency_curve"),
                                     softmax_bw_eff=fp32_entry.get("softmax_bandwidth_efficiency"))
            point = int8_part + fp32_part
        else:
            point = _roofline_ms(layers, precision=precision,
                                 peak_macs=float(profile.peak_macs_per_s(precision, threads)),
                                 bandwidth_bps=bandwidth_bps, eff=eff, bw_eff=float(bw_eff),
                                 per_node_ms=float(calibration.get("per_node_ms") or 0.0),
                                 overhead_ms=float(calibration.get("overhead_ms") or 0.0),
                                 elementwise_bw_eff=calibration.get("elementwise_bandwidth_efficiency"),
                                 fp32_elementwise_bw_eff=(fp32_entry or {}).get("elementwise_bandwidth_efficiency"),
                                 stem_curve=calibration.get("stem_curve"),
                                 efficiency_curve=calibration.get("efficiency_curve"),
                                 softmax_bw_eff=calibration.get("softmax_bandwidth_efficiency"),
                                 fp32_softmax_bw_eff=(fp32_entry or {}).get("softmax_bandwidth_efficiency"))
        point += builtin_ms
        error = dict(calibration.get("error") or {})
        median_abs = float(error.get("median_abs_percent") or 25.0)
        half = math.log1p(1.9 * median_abs / 100)
        low, high = _band(point, -half, half)
        est = {"fit": "calibration", "error": error,
               "basis": f"calibration entry {runtime}/{precision}/{threads} threads of profile {profile.id!r}"
                        f" ({calibration.get('fitted_on', 'microbenchmarks')})"}
    else:
        fit = published_fit()
        group = (runtime, accelerator)
        if accelerator == "cpu":
            peak = float(profile.peak_macs_per_s(precision, threads))
        else:
            peak = _accelerator_peak_macs(profile, accelerator, precision) or 0.0
            if not peak:
                raise InputError(f"device profile {profile.id!r} gives no peak_gflops for accelerator {accelerator!r}; "
                                 "the estimator needs it. Add it to the profile, or estimate on the cpu.")
        values = fit["values"]
        point = _predict(values, layers, group=group, core=core_type(profile), precision=precision,
                         threads=threads if accelerator == "cpu" else None, peak_macs=peak, bandwidth_bps=bandwidth_bps)
        low, high = _band(point, fit["error"]["log_residual_p10"], fit["error"]["log_residual_p90"])
        key = f"{group[0]}/{group[1]}"
        seen = key in values["scale"] or group == REFERENCE_GROUP
        basis = (f"roofline fitted on {len(fit['fit_rows'])} rows of published_latencies.csv; runtime group {key} "
                 + ("fitted on its own rows" if seen else "has no published rows: its scale is the prior (that of "
                                                         "LiteRT/XNNPACK on the CPU)"))
        if accelerator == "cpu":
            core = core_type(profile)
            basis += (f"; core type {core} fitted on its own rows" if core in values["core_scale"] else
                      f"; core type {core} has no published rows: core scale 1")
        est = {"fit": "published", "error": fit["error"], "basis": basis,
               "parameters": {"efficiency": values["efficiency"], "bandwidth_efficiency": values["bandwidth_efficiency"],
                              "scale": _scale_of(values, group, core_type(profile) if accelerator == "cpu" else None)}}
    whole = _Layers.from_summary(summary)
    est["graph"] = {"macs": int(whole.macs.sum()), "nodes": len(whole.classes), "basis": summary.get("basis", "graph")}
    point, low, high = round(point, 4), round(low, 4), round(high, 4)
    # The point sits where the store, gate and report read an estimate's figure (p50_ms); n = 0 says no sample was
    # taken, and kind = "estimated" keeps it out of every table of measurements and from being matched with one.
    latency = LatencyStats(p50_ms=point, p90_ms=point, p99_ms=point, mean_ms=point, std_ms=0.0, cv_percent=0.0,
                           min_ms=low, max_ms=high, n=0)
    return Measurement(
        artifact=artifact, format=format, precision=precision, runtime=runtime, threads=threads, kind="estimated",
        latency=latency, low_ms=low, high_ms=high, settings={"estimate_ms": point, "accelerator": accelerator},
        provenance={"device": {"id": profile.id, "profile": profile.id, "transport": None}, "device_id": profile.id,
                    "estimator": est},
        warnings=["estimated, not measured"],
    )


# ------------------------------------------------------------------------------------------- artifacts and zoo models

_FORMAT_RUNTIME = {"onnx": "onnxruntime", "tflite": "litert", "openvino": "openvino"}
_ARTIFACT_PRECISION = {"fp32": "fp32", "fp16": "fp16", "int8-dynamic": "int8", "int8-static": "int8", "mixed": "int8"}


def _default_runtime(profile: Any) -> str:
    runtimes = list(dict(profile.runtimes or {}))
    if not runtimes:
        raise InputError(f"device profile {profile.id!r} lists no runtimes; add a 'runtimes' block to it.")
    return runtimes[0]


def onnx_graph_for(path: str | Path) -> tuple[Path, Any]:
    """The ONNX file whose graph describes ``path`` (a manifest, a model file with one, or a bare .onnx).

    A .tflite or OpenVINO artifact is read through the ONNX export of the same model (same parent checkpoint) in the
    same folder, the same precision preferred.

    Returns:
        ``(onnx_path, artifact_or_None)``.

    Raises:
        InputError: no such file, a bare non-ONNX model file, or a non-ONNX artifact without an ONNX sibling.
    """
    from edgestill.artifact import MANIFEST_SUFFIX, Artifact

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p} does not exist. Pass an edgestill manifest (.manifest.json) or an .onnx file.")
    if p.suffix == ".onnx" and not p.with_name(p.stem + MANIFEST_SUFFIX).exists():
        return p, None
    if not p.name.endswith(MANIFEST_SUFFIX) and p.suffix in (".tflite", ".xml", ".bin") and not any(
            c.exists() for c in (p.with_name(p.stem + MANIFEST_SUFFIX), p.with_name(p.name + MANIFEST_SUFFIX))):
        raise InputError(f"{p} is a {p.suffix} file without an edgestill manifest; the cost model reads ONNX graphs. "
                         "Pass the .onnx export of the same model (edgestill export --formats onnx).")
    art = Artifact.load(p)
    if art.format == "onnx":
        return art.model_path, art
    siblings = []
    for m in sorted(art.directory.glob("*" + MANIFEST_SUFFIX)):
        try:
            other = Artifact.load(m)
        except InputError:
            continue
        if other.format == "onnx" and art.parent_sha256 and other.parent_sha256 == art.parent_sha256:
            siblings.append(other)
    if not siblings:
        raise InputError(f"{p} is a {art.format} artifact and the cost model reads ONNX graphs; no ONNX export of the "
                         f"same model (same parent_sha256) is in {art.directory}. Export it with --formats onnx "
                         "beside it, or pass an .onnx file.")
    siblings.sort(key=lambda s: (s.precision != art.precision, s.precision != "fp32", s.name))
    return siblings[0].model_path, art


def _tflite_file(path: Path) -> tuple[Path, Any] | None:
    """``(model file, artifact or None)`` when ``path`` is a .tflite file or a LiteRT artifact's manifest."""
    from edgestill.artifact import MANIFEST_SUFFIX, Artifact

    if not path.exists():
        return None
    manifests = [path] if path.name.endswith(MANIFEST_SUFFIX) else [
        c for c in (path.with_name(path.stem + MANIFEST_SUFFIX), path.with_name(path.name + MANIFEST_SUFFIX))
        if c.exists()]
    if manifests:
        try:
            art = Artifact.load(manifests[0])
        except InputError:
            return None
        return (art.model_path, art) if art.format == "tflite" else None
    return (path, None) if path.suffix == ".tflite" else None


def estimate_artifact(path: str | Path, profile: Any, *, runtime: str | None = None, precision: str | None = None,
                      threads: int = 1, accelerator: str = "cpu") -> Measurement:
    """:func:`estimate` for an artifact manifest, a bare .onnx or a bare .tflite.

    A LiteRT artifact (or a bare .tflite) is costed from the file's own graph (:func:`edgestill.devices.tflite_cost.
    tflite_cost`: its int8 ops, its fp32 islands between DEQUANTIZE and QUANTIZE, and those passes), each node at its
    own dtype's calibration. Where the file cannot be read that way (LiteRT not installed here, an unreadable file)
    the ONNX export of the same model beside it is used, as for OpenVINO artifacts, and the record's
    ``provenance.estimator.graph.basis`` says which graph was costed.

    ``runtime`` defaults to the artifact format's own (onnxruntime for a bare .onnx, litert for a bare .tflite),
    ``precision`` to the artifact's (int8 for int8-static/int8-dynamic/mixed; fp32 for a bare .onnx; a bare .tflite is
    int8 when its compute ops read int8 tensors).

    Raises:
        InputError: see :func:`onnx_graph_for` and :func:`estimate`.
    """
    from edgestill.devices.costmodel import graph_cost

    p = Path(path)
    tfl = _tflite_file(p)
    tfl_error = ""
    if tfl is not None:
        from edgestill.devices.tflite_cost import tflite_cost

        model_file, art = tfl
        try:
            cost = tflite_cost(model_file)
        except InputError as exc:
            tfl_error = str(exc)
        else:
            if art is not None:
                file_precision = _ARTIFACT_PRECISION.get(art.precision, "fp32")
            else:
                file_precision = "int8" if any(n.dtype == "int8" and n.macs for n in cost.nodes) else "fp32"
            record = estimate(cost, profile, runtime=runtime or "litert", precision=precision or file_precision,
                              threads=threads, accelerator=accelerator,
                              artifact=art.name if art is not None else p.name, format="tflite")
            record.provenance["estimator"]["graph"].update(file=str(model_file), basis="tflite file")
            if accelerator == "cpu":
                from edgestill.devices.tflite_cost import outside_xnnpack

                try:
                    left = outside_xnnpack(model_file)
                except InputError:
                    left = None
                if left:
                    record.provenance["estimator"]["graph"]["outside_xnnpack"] = left
                    entry = profile.calibration_for(record.runtime, record.precision, threads) or {}
                    priced = entry.get("builtin_ns_per_byte") is not None
                    unpriced = {k: v for k, v in left.items() if not (priced and k.endswith(f" {record.precision}"))}
                    if unpriced:
                        record.warnings.append(
                            f"{sum(unpriced.values())} op(s) run outside XNNPACK on LiteRT's builtin kernels "
                            f"({', '.join(f'{k} x{v}' for k, v in sorted(unpriced.items()))}) and no calibration "
                            "micro times them at this precision: they are priced at XNNPACK rates and the estimate "
                            "is likely low")
            return record
    try:
        graph, art = onnx_graph_for(path)
    except InputError as exc:
        if tfl_error:
            raise InputError(f"{exc} (The .tflite file itself could not be costed: {tfl_error})") from None
        raise
    fmt = art.format if art is not None else "onnx"
    runtime = runtime or _FORMAT_RUNTIME[fmt]
    precision = precision or (_ARTIFACT_PRECISION.get(art.precision, "fp32") if art is not None else "fp32")
    record = estimate(graph_cost(graph), profile, runtime=runtime, precision=precision, threads=threads,
                      accelerator=accelerator, artifact=art.name if art is not None else Path(path).name, format=fmt)
    record.provenance["estimator"]["graph"]["file"] = str(graph)
    if tfl_error:
        record.provenance["estimator"]["graph"]["basis"] = (
            f"onnx export of the same model (the .tflite file could not be costed: {tfl_error[:200]})")
    return record


def estimate_zoo_model(name: str, profile: Any, *, runtime: str | None = None, precision: str = "fp32",
                       threads: int = 1, accelerator: str = "cpu") -> Measurement:
    """:func:`estimate` for a zoo model from its stored graph costs (``zoo_costs.json``; no torch needed).

    Raises:
        UnknownNameError: not a zoo model (closest name suggested); InputError: see :func:`estimate`.
    """
    summary = zoo_cost(name)
    return estimate({**summary, "basis": "graph"}, profile, runtime=runtime or _default_runtime(profile),
                    precision=precision, threads=threads, accelerator=accelerator, artifact=name, format="onnx")
