"""Device self-calibration: time the microbenchmarks on a device, refit its roofline terms, store the refit.

One calibration entry per (runtime, precision, threads), fitted from the p50 latencies of the micro models
(:mod:`edgestill.devices.microbench`). Every compute micro (3×3, 1×1 and depthwise convs at four shapes, three
GEMMs) and the residual-Add micro is timed as one layer (``t_1``) and as a stack of K (``t_K``); a layer's time is
the slope ``(t_K - t_1) / (K - 1)`` (:func:`layer_slope`), free of what a call pays once (call overhead, the boundary
quantize/dequantize of an int8 graph, layout reorders, the micro's input and output copies), and ``t_1 - slope`` is
that once-per-call cost:

- ``per_node_ms`` from the chain of tiny Adds against the single tiny Add: ``(t_nodes - t_call) / (N - 1)``;
- ``overhead_ms``, the fixed cost of one call: the median intercept ``t_1 - slope`` of the compute micros (never
  below ``call_overhead_ms``, the single tiny Add less one node, which is also given);
- ``efficiency[class]`` for conv, conv1x1, depthwise and matmul: each layer's achieved MAC/s (its slope less its
  per-node cost) over ``profile.peak_macs_per_s(precision, threads)``, the median over its compute-bound shapes. A
  layer that took no longer than its bytes take at the copies' bandwidth (the GEMV, which streams its weights) is
  memory-bound: the estimator's roofline (``max(compute, memory)``) predicts it from bandwidth, so it does not set an
  efficiency. The efficiency is the share of peak over the whole op, cache stalls included;
- ``efficiency["stem"]`` (onnxruntime and LiteRT; OpenVINO's stem micro times its layout reorders more than the conv,
  so its stem keeps the conv's efficiency: ``microbench.STEM_RUNTIMES``) from the two stem micros (a stride-2 3×3 and
  7×7 conv on a 224×224 RGB image, one layer each: a stem cannot stack): MAC/s over peak of its p50 less ``overhead_ms`` and its per-node cost, the decomposition
  the estimator adds back once per network. A network's first conv runs far below the conv rate (each kernel tap
  reads 3 bytes): on the development host at 1 thread LiteRT int8 ran the ResNet 7×7 stem barely faster than fp32
  while its 3×3 convs ran 6× faster, so the zoo's int8 CNNs took twice their estimate while the stem was priced as a
  conv. Timings saved before stems existed give the stem the conv's efficiency (``derived``);
- ``builtin_ns_per_byte`` (LiteRT int8 only): the unfused micro (a 1×1 conv and a HardSwish, stacked) less the
  same-shape 1×1 conv's slope, per byte of the activation's int8 input and output. XNNPACK leaves an int8 HARD_SWISH to
  LiteRT's builtin kernels (mobilenet_v3: 19-20 of them, 4.7 ms measured against a 0.84 ms estimate when they were
  priced as XNNPACK elementwise passes); the estimator prices the int8 ops outside the delegate at this rate, but for
  the table-lookup ones;
- ``builtin_lut_ns_per_byte`` (LiteRT int8 only): the same from the ``lut`` micro (a 1×1 conv and a GELU): LiteRT's
  int8 GELU, LOGISTIC, TANH and ELU are a 256-entry table lookup per element, far cheaper than HARD_SWISH's
  fixed-point arithmetic (vit_small's 4 int8 GELUs priced at the HARD_SWISH rate put its estimate 45% high);
- ``efficiency_curve`` for conv, conv1x1, depthwise and matmul: each compute-bound shape's efficiency against its
  arithmetic intensity (MACs per byte, bytes as the estimator counts them), which the estimator interpolates at each
  node's own intensity (the 1×1 conv micros include two few-channel shapes, 16 and 32 channels, for this);
- ``softmax_bandwidth_efficiency`` from the softmax stack's slope (Softmax over 6×197×197 attention scores), its
  bytes per second over ``profile.bandwidth_gbs``: the memory term of the ``softmax`` class (an exp per element; on
  this host onnxruntime's int8 QLinearSoftmax took 0.55 ms per layer against 0.08 ms for its fp32 Softmax); a
  calibration without the micro prices Softmax as elementwise (``derived``);
- ``bandwidth_efficiency`` from the large elementwise Adds (16-32 MB, DRAM): bytes read and written per second over
  ``profile.bandwidth_gbs``: the memory term of the compute layers;
- ``elementwise_bandwidth_efficiency`` from the residual-Add stack's slope: its bytes, counted as the estimator
  counts them (a quarter of fp32 in int8), per second over ``profile.bandwidth_gbs``: the memory term of the nodes
  without MACs (elementwise, pool, other), whose activations are in cache in a network and which, in int8, pay the
  runtime's int8 elementwise kernels; ``efficiency["elementwise"]`` is the same micro's MAC rate. Classes without a
  micro of their own are derived and say so in ``derived``: attention from matmul, pool and other from elementwise.

``error`` is leave-one-shape-out, per layer: each compute layer's time (its slope) predicted as the estimator would
(per-node cost plus the larger of compute and memory time) from the fit of the other shapes of its class, each
residual-Add layer's from the other shape's bandwidth, and each copy's p50 from the other copy, compared with what
was measured (median absolute % error, share within ±25%, n). Slopes are differences of two timings, so this error is
noisier than a one-layer fit's was (this Xeon, full calibration at 1 thread: median 5-18% by runtime and precision,
OpenVINO int8 25%: its int8 depthwise layers run up to 3× apart across shapes).

What it fitted on the development host (Xeon with AMX, 1 thread, full calibration): depthwise int8 efficiency 0.04-0.10
per layer (0.02-0.04 from one-layer micros), fp32 0.26-0.40 (0.10-0.14); conv/matmul fp32 0.75-1.09 of the profile's
peak, int8 0.8-3.3 (VNNI/AMX beyond the profile's int8 peak). The zoo models measured against the estimates
(``perf/estimator_accuracy.py``, 10 models × onnx/openvino/tflite × fp32/int8 = 60 cells): 88% and 90% within ±25% in
two quiet runs (median |error| 11%, 8%; ``perf/results/estimator_accuracy_runs.jsonl`` has every run and what changed
between them). int8 had been under-estimated mostly where a network's cost is not in its stacked wide layers: the stem
(the int8 convs run 6× faster than fp32, the 3-channel stem barely faster), few-channel 1×1 convs, LiteRT's builtin
HARD_SWISH and onnxruntime's int8 Softmax. The leave-one-shape-out error of OpenVINO int8 is the widest (about 40%):
its few-channel 1×1 shapes run 3-7× below its wide ones, and the left-out prediction uses the class's median.

The file ``<out_folder>/<profile id>.calibration.yaml`` (schema ``edgestill-device-calibration`` v1) is written
atomically; entries for other (runtime, precision, threads) already there are kept. The raw micro measurements go
to the results store so the refit can be redone from them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgestill.devices.microbench import (
    COMPUTE_CLASSES,
    QUANTIZED_KINDS,
    RUNTIME_FORMATS,
    OPTIONAL_STACKED_KINDS,
    STACKED_KINDS,
    UNFUSED_KINDS,
    MicroModel,
    build_micro_set,
    micro_artifact_name,
    micro_models,
    micros_for,
)
from edgestill.errors import ConfigError, InputError, RuntimeFailure, UnsupportedError, did_you_mean
from edgestill.record import Measurement

CALIBRATION_SCHEMA = "edgestill-device-calibration"
CALIBRATION_SCHEMA_VERSION = 1
CALIBRATION_SUFFIX = ".calibration.yaml"
OP_CLASSES: tuple[str, ...] = ("stem", "conv", "conv1x1", "depthwise", "matmul", "elementwise", "softmax", "attention",
                                "pool", "other")
# classes without a micro of their own take another's efficiency (stem: only when no stem micro was timed)
DERIVED_CLASSES: dict[str, str] = {"attention": "matmul", "pool": "elementwise", "other": "elementwise",
                                   "stem": "conv", "softmax": "elementwise"}
CAL_PRECISIONS: tuple[str, ...] = ("fp32", "int8")
WITHIN_PERCENT = 25.0
# A micro whose p50 is mostly the fixed per-call terms says little about its op's speed: its work time is never taken
# below this share of its p50 (else the efficiency of a tiny op would divide by almost nothing).
MIN_WORK_SHARE = 0.05

Measure = Callable[[list[Path], list[int]], list[Measurement]]
Progress = Callable[[int, int, str], None]


@dataclass(kw_only=True)
class CalibrationResult:
    """What a calibration fitted and where it went.

    ``entries`` are the calibration entries written this time (one per runtime × precision × threads), ``path`` the
    calibration file, ``run_id`` the results-store run holding the raw micro measurements (None without a store),
    ``micro`` one row per timed micro (measured p50, leave-one-shape-out prediction and error where it has one).
    """

    profile_id: str
    path: Path
    entries: list[dict[str, Any]]
    measurements: list[Measurement] = field(default_factory=list)
    micro: list[dict[str, Any]] = field(default_factory=list)
    run_id: int | None = None
    db: Path | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": CALIBRATION_SCHEMA, "profile": self.profile_id, "path": str(self.path),
                "run_id": self.run_id, "db": None if self.db is None else str(self.db), "entries": self.entries,
                "micro": self.micro, "warnings": self.warnings}


# --- the fit (pure functions: micro models and their p50s in, one calibration entry out) ---

def _work_ms(latency_ms: float, fixed_ms: float) -> float:
    return max(latency_ms - fixed_ms, MIN_WORK_SHARE * latency_ms)


def layer_slope(single_ms: float, stacked_ms: float, layers: int) -> float:
    """The per-layer time of a stack of ``layers`` from its p50 and the single layer's: ``(t_K - t_1) / (K - 1)``.

    Never below 1/K of the stack's time spread evenly less the single layer's (noise can make t_K - t_1 tiny): at
    least ``MIN_WORK_SHARE`` of ``t_K / K``.
    """
    slope = (stacked_ms - single_ms) / max(layers - 1, 1)
    return max(slope, MIN_WORK_SHARE * stacked_ms / layers)


def _median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=float)))


def fit_entry(
    points: Sequence[tuple[MicroModel, float]],
    *,
    peak_macs_per_s: float,
    bandwidth_gbs: float | None,
    runtime: str,
    precision: str,
    threads: int,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fit one calibration entry from ``(micro, p50_ms)`` pairs of one runtime, precision and thread count.

    Args:
        points: every micro of :func:`micro_models` that was measured (``call`` and ``nodes`` are required, and at
            least one micro of each compute class and one copy).
        peak_macs_per_s: the profile's peak for this precision and thread count.
        bandwidth_gbs: the profile's memory bandwidth (None or 0: ``bandwidth_efficiency`` is None and only
            ``achieved_bandwidth_gbs`` is given).

    Returns:
        the entry (the calibration file's contract) and one row per micro with its p50, leave-one-shape-out
        prediction and % error (None for the micros that set the fixed terms).

    Raises:
        RuntimeFailure: a micro the fit needs is missing (its cell failed), or the peak is not positive.
    """
    if not peak_macs_per_s > 0:
        raise RuntimeFailure(f"the profile's peak for {precision} at {threads} thread(s) is {peak_macs_per_s!r} MAC/s; "
                             "calibration needs a positive peak (check the profile's cpu.clusters macs_per_cycle).")
    by_kind: dict[str, list[tuple[MicroModel, float]]] = {}
    for micro, ms in points:
        by_kind.setdefault(micro.kind, []).append((micro, float(ms)))
    missing = [k for k in ("call", "nodes", *STACKED_KINDS, "copy") if not by_kind.get(k)]
    if missing:
        raise RuntimeFailure(f"calibration of {runtime} {precision} ×{threads} has no measured micro for "
                             f"{', '.join(missing)}; every kind is needed for the fit. See the failed cells above.")
    (call, call_ms), (nodes, nodes_ms) = by_kind["call"][0], by_kind["nodes"][0]
    per_node_ms = max(0.0, (nodes_ms - call_ms) / max(nodes.nodes - call.nodes, 1))
    call_overhead_ms = max(0.0, call_ms - per_node_ms * call.nodes)

    def fixed(m: MicroModel) -> float:
        return call_overhead_ms + per_node_ms * m.nodes

    def gbs(m: MicroModel, ms: float) -> float:  # achieved GB/s
        return m.bytes / (_work_ms(ms, fixed(m)) / 1e3) / 1e9

    copies = by_kind["copy"]
    achieved_gbs = _median([gbs(m, ms) for m, ms in copies])
    bw_eff = achieved_gbs / bandwidth_gbs if bandwidth_gbs else None
    byte_scale = 0.25 if precision == "int8" else 1.0  # int8 weights and activations (the copies stay fp32)

    # The layers: each single-layer micro paired with its stack of K. The per-layer time is the slope
    # (t_K - t_1) / (K - 1), free of what a call pays once (call overhead, boundary quantize/dequantize, layout
    # reorders); the intercept t_1 - slope is that once-per-call cost.
    layers: dict[str, list[tuple[MicroModel, float, float]]] = {}  # kind -> [(single micro, per-layer ms, intercept)]
    for kind in (*STACKED_KINDS, *UNFUSED_KINDS, *OPTIONAL_STACKED_KINDS):
        group = by_kind.get(kind, [])
        singles = {m.name: (m, ms) for m, ms in group if m.layers == 1}
        for m, ms in group:
            if m.layers > 1 and m.base in singles:
                one, one_ms = singles[m.base]
                slope = layer_slope(one_ms, ms, m.layers)
                layers.setdefault(kind, []).append((one, slope, one_ms - slope))
        if not layers.get(kind) and kind not in (*UNFUSED_KINDS, *OPTIONAL_STACKED_KINDS):
            raise RuntimeFailure(f"calibration of {runtime} {precision} ×{threads} has no single-layer and stacked "
                                 f"pair for {kind}; both are needed for the per-layer fit.")
    intercepts = [b for kind in COMPUTE_CLASSES for _, _, b in layers[kind]]
    overhead_ms = max(call_overhead_ms, _median(intercepts))
    boundary = _boundary_fit([(m, b) for kind in COMPUTE_CLASSES for m, _, b in layers[kind]], overhead_ms)

    def layer_work(m: MicroModel, slope: float) -> float:  # a layer's time less its per-node cost
        return max(slope - per_node_ms * m.nodes, MIN_WORK_SHARE * slope)

    def eff(m: MicroModel, slope: float) -> float:  # achieved share of peak MAC/s of one layer
        return m.macs / (layer_work(m, slope) / 1e3) / peak_macs_per_s

    def memory_ms(m: MicroModel) -> float:  # the roofline's memory term at the copies' bandwidth
        return m.bytes * (byte_scale if m.kind in QUANTIZED_KINDS else 1.0) / (achieved_gbs * 1e9) * 1e3

    def compute_bound(group: Sequence[tuple[MicroModel, float, float]]) -> list[tuple[MicroModel, float, float]]:
        # a layer that took no longer than its bytes take at the copy bandwidth (a GEMV streaming its weights) is
        # memory-bound: the roofline predicts it from bandwidth whatever the efficiency, so it does not set one
        return [g for g in group if layer_work(g[0], g[1]) > memory_ms(g[0])] or list(group)

    def elt_gbs(m: MicroModel, slope: float) -> float:  # an elementwise layer's bytes (as the estimator counts them)/s
        return m.bytes * byte_scale / (layer_work(m, slope) / 1e3) / 1e9

    def stem_eff(m: MicroModel, ms: float) -> float:  # one layer, less its call's boundary and its per-node cost
        return m.macs / (_work_ms(ms, boundary(m) + per_node_ms * m.nodes) / 1e3) / peak_macs_per_s

    efficiency: dict[str, float] = {}
    for kind in COMPUTE_CLASSES:
        efficiency[kind] = _median([eff(m, sl) for m, sl, _ in compute_bound(layers[kind])])
    efficiency["elementwise"] = _median([eff(m, sl) for m, sl, _ in layers["eltwise"]])
    stems = by_kind.get("stem", [])
    derived = {cls: src for cls, src in DERIVED_CLASSES.items()
               if (cls != "stem" or not stems) and (cls != "softmax" or not layers.get("softmax"))}
    if stems:
        efficiency["stem"] = _median([stem_eff(m, ms) for m, ms in stems])
    for cls, src in derived.items():
        efficiency[cls] = efficiency[src]
    builtin = _builtin_ns_per_byte(layers.get("unfused", []), layers["conv1x1"], precision)
    builtin_lut = _builtin_ns_per_byte(layers.get("lut", []), layers["conv1x1"], precision)
    # each class's efficiency against its layers' arithmetic intensity (MACs per byte, as the estimator counts bytes)
    curves = {kind: sorted([round(m.macs / (m.bytes * (byte_scale if m.kind in QUANTIZED_KINDS else 1.0)), 4),
                            round(eff(m, sl), 5)] for m, sl, _ in compute_bound(layers[kind]))
              for kind in COMPUTE_CLASSES}
    elt_achieved = _median([elt_gbs(m, sl) for m, sl, _ in layers["eltwise"]])
    if layers.get("softmax"):
        efficiency["softmax"] = _median([eff(m, sl) for m, sl, _ in layers["softmax"]])

    rows: list[dict[str, Any]] = []
    errors: list[float] = []
    per_layer = {m.name: (sl, b) for kind in STACKED_KINDS for m, sl, b in layers[kind]}
    for kind, group in by_kind.items():
        for m, ms in group:
            rows.append({"name": m.name, "kind": m.kind, "op_class": m.op_class, "layers": m.layers, "macs": m.macs,
                         "bytes": m.bytes, "p50_ms": round(ms, 6), "layer_ms": None, "intercept_ms": None,
                         "memory_bound": None, "predicted_ms": None, "error_percent": None})
            if m.name in per_layer:
                rows[-1]["layer_ms"], rows[-1]["intercept_ms"] = (round(v, 6) for v in per_layer[m.name])
    by_row = {r["name"]: r for r in rows}

    def record(name: str, pred: float, measured: float, **extra: Any) -> None:
        err = (pred - measured) / measured * 100.0 if measured > 0 else float("inf")
        errors.append(err)
        by_row[name].update(predicted_ms=round(pred, 6), error_percent=round(err, 2), **extra)

    for m, ms in copies:  # bandwidth-bound: predicted from the other copies' achieved GB/s
        others = [(o, oms) for o, oms in copies if o is not m]
        if others:
            record(m.name, fixed(m) + m.bytes / (_median([gbs(o, oms) for o, oms in others]) * 1e9) * 1e3, ms)
    for kind in STACKED_KINDS:  # each layer's time from the fit of the other shapes of its class
        for i, (m, sl, _) in enumerate(layers[kind]):
            others = [g for j, g in enumerate(layers[kind]) if j != i]
            if not others:
                continue
            if kind == "eltwise":
                pred = per_node_ms * m.nodes + m.bytes * byte_scale / (
                    _median([elt_gbs(o, osl) for o, osl, _ in others]) * 1e9) * 1e3
                record(m.name, pred, sl)
            else:  # the estimator's roofline: the larger of compute at the others' efficiency and memory
                loo_eff = _median([eff(o, osl) for o, osl, _ in compute_bound(others)])
                pred = per_node_ms * m.nodes + max(m.macs / (loo_eff * peak_macs_per_s) * 1e3, memory_ms(m))
                record(m.name, pred, sl, memory_bound=layer_work(m, sl) <= memory_ms(m))
    for m, ms in stems:  # each stem from the other stems' efficiency, plus the boundary cost it was fitted less
        others = [stem_eff(o, oms) for o, oms in stems if o is not m]
        if others:
            pred = boundary(m) + per_node_ms * m.nodes + max(m.macs / (_median(others) * peak_macs_per_s) * 1e3,
                                                             memory_ms(m))
            record(m.name, pred, ms)
    abs_err = np.abs(np.asarray(errors, dtype=float))
    entry = {
        "runtime": runtime,
        "precision": precision,
        "threads": int(threads),
        "efficiency": {c: round(efficiency[c], 5) for c in OP_CLASSES},
        "bandwidth_efficiency": None if bw_eff is None else round(bw_eff, 5),
        "elementwise_bandwidth_efficiency": (round(elt_achieved / bandwidth_gbs, 5) if bandwidth_gbs else None),
        "overhead_ms": round(overhead_ms, 6),
        "call_overhead_ms": round(call_overhead_ms, 6),
        "per_node_ms": round(per_node_ms, 6),
        "error": {
            "median_abs_percent": round(float(np.median(abs_err)), 2) if errors else None,
            "within_25_percent": round(float(np.mean(abs_err <= WITHIN_PERCENT)), 4) if errors else None,
            "n": len(errors),
            "method": "leave-one-shape-out, per layer",
        },
        "fitted_on": "microbenchmarks",
        "derived": derived,
        "peak_macs_per_s": float(peak_macs_per_s),
        "bandwidth_gbs": bandwidth_gbs,
        "achieved_bandwidth_gbs": round(achieved_gbs, 4),
        "elementwise_achieved_gbs": round(elt_achieved, 4),
    }
    if builtin is not None:
        entry["builtin_ns_per_byte"] = round(builtin, 6)
    if layers.get("softmax"):  # Softmax's bytes per second over the bandwidth, as for the residual Adds
        entry["softmax_bandwidth_efficiency"] = round(
            _median([elt_gbs(m, sl) for m, sl, _ in layers["softmax"]]) / bandwidth_gbs, 5) if bandwidth_gbs else None
    if builtin_lut is not None:
        entry["builtin_lut_ns_per_byte"] = round(builtin_lut, 6)
    entry["efficiency_curve"] = {k: v for k, v in curves.items() if len(v) > 1}
    if stems:  # a stem's efficiency grows with its work (the 7×7 ResNet stem ran 3× the 3×3 one's rate)
        entry["stem_curve"] = sorted([int(m.macs), round(stem_eff(m, ms), 5)] for m, ms in stems)
    return entry, rows


def _boundary_fit(points: Sequence[tuple[MicroModel, float]], overhead_ms: float) -> Callable[[MicroModel], float]:
    """What one call of a micro pays once, as a function of the elements it converts at its boundary: a least-squares
    line through the compute micros' intercepts (``t_1 - slope``) against their input + output elements (the int8
    quantize/dequantize and layout passes grow with the tensors), never below zero nor with a negative slope (then
    the median intercept, ``overhead_ms``, for every micro). A stem's one-layer time less this is its layer's time:
    its output (112×112×64) is far larger than the stacked micros', so their median intercept would leave its
    dequantize and layout passes in the stem's work."""
    x = np.array([m.boundary_elements for m, _ in points], dtype=float)
    y = np.array([b for _, b in points], dtype=float)
    if len(points) < 2 or np.ptp(x) == 0:
        return lambda m: overhead_ms
    slope, intercept = np.polyfit(x, y, 1)
    if slope <= 0:
        return lambda m: overhead_ms
    return lambda m: max(float(intercept + slope * m.boundary_elements), 0.0)


def _builtin_ns_per_byte(unfused: Sequence[tuple[MicroModel, float, float]],
                        conv1x1: Sequence[tuple[MicroModel, float, float]], precision: str) -> float | None:
    """ns per byte of an activation the runtime leaves unfused after a conv (LiteRT's builtin int8 HARD_SWISH): the
    unfused stack's per-layer time less the same-shape 1×1 conv's, over the activation's bytes as the cost model
    counts them (its input and output at the precision's element size). None without an unfused micro and its conv."""
    per_layer = {m.shape: sl for m, sl, _ in conv1x1}
    times = []
    for m, sl, _ in unfused:
        if m.shape in per_layer:
            h, w, c = m.shape
            times.append(max(sl - per_layer[m.shape], 0.0) * 1e6 / (2 * h * w * c * (1 if precision == "int8" else 4)))
    return _median(times) if times else None


# --- the calibration file ---

def calibration_path(out_folder: Path, profile_id: str) -> Path:
    """``<out_folder>/<profile id>.calibration.yaml``."""
    return Path(out_folder) / f"{profile_id}{CALIBRATION_SUFFIX}"


def read_calibration(path: Path) -> dict[str, Any] | None:
    """The calibration document at ``path`` (None when there is none).

    Raises:
        InputError: the file is not a calibration file of this schema (it is never overwritten then).
    """
    import yaml

    path = Path(path)
    if not path.exists():
        return None
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path} cannot be read as YAML ({exc}); move it away or delete it, then calibrate again.") from None
    if not isinstance(doc, dict) or doc.get("schema") != CALIBRATION_SCHEMA or not isinstance(doc.get("entries"), list):
        raise InputError(f"{path} is not an {CALIBRATION_SCHEMA} file (it needs schema: {CALIBRATION_SCHEMA} and a list "
                         "of entries); it is left as it is. Move it away or pass another --out-folder.")
    if doc.get("schema_version") != CALIBRATION_SCHEMA_VERSION:
        raise InputError(f"{path} has schema_version {doc.get('schema_version')!r}; this edgestill writes "
                         f"{CALIBRATION_SCHEMA_VERSION}. Move it away or pass another --out-folder.")
    return doc


def write_calibration(path: Path, profile_id: str, entries: Sequence[dict[str, Any]],
                      device: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge ``entries`` into the calibration file at ``path`` (same runtime, precision and threads replaced, the
    others kept) and write it atomically; return the document written.

    Raises:
        InputError: an existing file at ``path`` is not a calibration file, or is of another profile.
    """
    import yaml

    from edgestill.outdir import write_text_atomic

    old = read_calibration(path)
    if old is not None and old.get("profile") != profile_id:
        raise InputError(f"{path} holds the calibration of profile {old.get('profile')!r}, not {profile_id!r}; "
                         "move it away or pass another --out-folder.")
    key = lambda e: (e.get("runtime"), e.get("precision"), e.get("threads"))  # noqa: E731
    new_keys = {key(e) for e in entries}
    kept = [e for e in (old or {}).get("entries", []) if isinstance(e, dict) and key(e) not in new_keys]
    doc: dict[str, Any] = {
        "schema": CALIBRATION_SCHEMA,
        "schema_version": CALIBRATION_SCHEMA_VERSION,
        "profile": profile_id,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "entries": sorted([*kept, *entries], key=lambda e: (str(e.get("runtime")), str(e.get("precision")),
                                                            int(e.get("threads") or 0))),
    }
    if device:
        doc["device"] = device
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=120))
    return doc


# --- measuring ---

def bench_options(quick: bool = False) -> Any:
    """The stop rule for micro cells: short (each micro is one op), never extended for stability."""
    from edgestill.runtimes.harness import BenchOptions

    if quick:
        return BenchOptions(min_runs=10, min_seconds=0.05, warmup_runs=3, max_seconds=2.0, stability_max_seconds=0)
    return BenchOptions(min_runs=30, min_seconds=0.3, warmup_runs=5, max_seconds=5.0, stability_max_seconds=0)


def local_measure(*, quick: bool = False, progress: Progress | None = None) -> Measure:
    """A ``measure`` function that times micro artifacts on this machine (:func:`benchmark_matrix`)."""
    from edgestill.benchmarks.bench import benchmark_matrix

    def measure(paths: list[Path], threads: list[int]) -> list[Measurement]:
        return benchmark_matrix([str(p) for p in paths], threads, bench=bench_options(quick), progress=progress)

    return measure


def device_measure(entry: Any, *, quick: bool = False, progress: Progress | None = None) -> Measure:
    """A ``measure`` function that times micro artifacts on an inventory device through its transport (local, ssh).

    Raises:
        UnsupportedError: an ADB device (it runs LiteRT's benchmark_model on .tflite files; the micro models are ONNX
            and OpenVINO files).
    """
    from edgestill.devices.transport import TRANSPORTS

    if entry.transport == "adb":
        raise UnsupportedError(f"device {entry.name!r} is reached over adb, which runs LiteRT's benchmark_model on "
                               ".tflite files; calibration times ONNX and OpenVINO micro models. Calibrate a device "
                               "reached over ssh (or local) instead.")
    transport = TRANSPORTS.get(entry.transport)

    def measure(paths: list[Path], threads: list[int]) -> list[Measurement]:
        return transport(entry, [str(p) for p in paths], threads, bench=bench_options(quick), progress=progress)

    return measure


@contextlib.contextmanager
def _quiet_builders() -> Iterator[None]:
    """Keep the quantizers' chatter (onnxruntime's root-logger warnings, nncf's progress bars) off stdout."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        root.setLevel(level)


def _is_input_failure(m: Measurement) -> bool:
    """A failed cell the user fixes in their own files (a refused key or host key, input the runner refused)."""
    return m.settings.get("failure") in ("auth", "host_key", "bad_input") or m.settings.get("runner_exit_code") == 2


def _check_choices(option: str, values: Sequence[Any], valid: Sequence[Any]) -> list[Any]:
    values = list(values)
    if not values:
        raise ConfigError(f"{option} is empty; choose one or more of {', '.join(map(str, valid))}.")
    for v in values:
        if v not in valid:
            raise ConfigError(f"{option}: {v!r} cannot be calibrated.{did_you_mean(str(v), [str(x) for x in valid])} "
                              f"Valid: {', '.join(map(str, valid))}.")
    return list(dict.fromkeys(values))


def _load_profile(profile_id: str) -> Any:
    try:
        from edgestill.devices import profiles

        profiles.host_profile, profiles.load_profile  # noqa: B018 - both are needed below
    except (ImportError, AttributeError) as exc:
        raise RuntimeFailure(f"the device profiles module (edgestill.devices.profiles) is not usable ({exc}); "
                             "calibration needs a profile's peak MAC/s and memory bandwidth.") from None
    return profiles.host_profile() if profile_id == "host" else profiles.load_profile(profile_id)


def calibrate_device(
    profile_id: str,
    *,
    runtimes: Sequence[str] = ("onnxruntime",),
    precisions: Sequence[str] = ("fp32",),
    threads: Sequence[int] = (1,),
    measure: Measure | None = None,
    out_folder: Path = Path(".edgestill/profiles"),
    quick: bool = False,
    db: Path | None = None,
    profile: Any = None,
    device: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> CalibrationResult:
    """Time the micro models on a device, fit one entry per runtime × precision × threads, write the calibration file.

    Args:
        profile_id: the device profile to calibrate ("host" for this machine).
        runtimes: onnxruntime, openvino and/or litert (the LiteRT set is built with torch on this machine).
        precisions: fp32 and/or int8.
        threads: thread counts.
        measure: ``measure(manifest_paths, threads) -> [Measurement]`` that times artifacts on the device; default
            this machine (:func:`local_measure`). A remote transport passes its own.
        out_folder: where ``<profile id>.calibration.yaml`` is written; the micro artifacts are built in a temporary
            folder beside it and removed afterwards.
        quick: small shapes and a short stop rule (a smoke test, or a first look).
        db: the results store for the raw micro measurements (None: not stored).
        profile: the Profile to fit against (default: ``profile_id`` loaded from the search path, or detected for
            host).
        device: how the device was reached, recorded in the file (e.g. ``{"name": ..., "transport": "ssh"}``).
        progress: ``progress(done, total, label)`` over all cells.

    Raises:
        ConfigError: an unknown runtime, precision or a thread count below 1.
        InputError: an existing file in the way (see :func:`write_calibration`); an unknown profile; every failed
            cell failed for input reasons (a refused key or host key, input the runner refused).
        RuntimeFailure: a micro cell failed on the device otherwise (crash, timeout, runtime missing). Nothing is
            written or stored when any cell failed.
    """
    runtimes = _check_choices("--runtime", runtimes, tuple(RUNTIME_FORMATS))
    precisions = _check_choices("--precision", precisions, CAL_PRECISIONS)
    threads = [int(t) for t in threads]
    if not threads or any(t < 1 for t in threads):
        raise ConfigError(f"--threads must be whole numbers >= 1, got {threads}.")
    threads = list(dict.fromkeys(threads))
    prof = profile if profile is not None else _load_profile(profile_id)
    out_folder = Path(out_folder)
    path = calibration_path(out_folder, profile_id)
    read_calibration(path)  # a file in the way is refused before any work
    micros = micro_models(quick=quick)
    sets = [(r, p) for r in runtimes for p in precisions]
    total = sum(len(micros_for(micros, r, p)) for r, p in sets) * len(threads)
    offset = 0

    def set_progress(done: int, _n: int, label: str) -> None:
        if progress:
            progress(min(offset + done, total), total, label)

    local_device = None  # the record's device when this machine measures (a transport records its own)
    if measure is None:
        measure = local_measure(quick=quick, progress=set_progress)
        device = device or {"name": "host", "transport": "local"}
        local_device = {"id": str(device.get("name", "host")), "profile": profile_id, "transport": "local"}
    out_folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_folder.parent, prefix=".edgestill-calibrate-"))
    measurements: list[Measurement] = []
    fits: list[tuple[str, str, int, list[tuple[MicroModel, float]]]] = []
    failures: list[str] = []
    input_failures = 0
    try:
        for runtime, precision in sets:
            if progress:
                progress(offset, total, f"building {runtime} {precision} micro models")
            set_micros = micros_for(micros, runtime, precision)
            with _quiet_builders():
                paths = build_micro_set(set_micros, runtime, precision, tmp / f"{runtime}-{precision}")
            results = measure([paths[m.name] for m in set_micros], threads)
            by_name = {micro_artifact_name(m, runtime, precision): m for m in set_micros}
            for t in threads:
                points = []
                for r in results:
                    micro = by_name.get(r.artifact)
                    if micro is None or r.threads != t:
                        continue
                    r.settings["microbench"] = {**micro.to_dict(), "calibration_precision": precision}
                    if local_device is not None:
                        r.provenance.setdefault("device", dict(local_device))
                    if r.kind == "measured" and r.latency is not None:
                        points.append((micro, r.latency.p50_ms))
                    else:
                        failures.append(f"{r.artifact} ×{t}: {r.error or 'no latency'}")
                        input_failures += _is_input_failure(r)
                fits.append((runtime, precision, t, points))
            measurements.extend(results)
            offset += len(set_micros) * len(threads)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        shown = "\n".join(f"  - {f.splitlines()[0][:300]}" for f in failures[:10])
        error = InputError if input_failures == len(failures) else RuntimeFailure
        raise error(f"{len(failures)} micro benchmark cell(s) failed on {profile_id}, so nothing was fitted or "
                    f"written:\n{shown}")
    entries, rows, warnings = [], [], []
    for runtime, precision, t, points in fits:
        entry, micro_rows = fit_entry(points, peak_macs_per_s=prof.peak_macs_per_s(precision, t),
                                      bandwidth_gbs=getattr(prof, "bandwidth_gbs", None), runtime=runtime,
                                      precision=precision, threads=t)
        entry["quick"] = bool(quick)
        entry["created"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        entries.append(entry)
        rows += [{"runtime": runtime, "precision": precision, "threads": t, **row} for row in micro_rows]
        high = sorted(c for c, v in entry["efficiency"].items() if v > 1.0 and c not in DERIVED_CLASSES)
        if high:
            warnings.append(f"{runtime} {precision} ×{t}: {', '.join(high)} ran faster than the profile's peak "
                            f"({entry['peak_macs_per_s'] / 1e9:.1f} GMAC/s): the profile's macs_per_cycle or GHz is "
                            "too low for this device.")
    run_id = None
    if db is not None:
        from edgestill.benchmarks.store import ResultsStore

        store = ResultsStore(Path(db))
        with store:
            run_id = store.add_run(f"devices calibrate {profile_id} --runtime {','.join(runtimes)} --precision "
                                   f"{','.join(precisions)} --threads {','.join(map(str, threads))}"
                                   + (" --quick" if quick else ""), label="calibration",
                                   machine=None if local_device is not None or device is None
                                   else str(device.get("name") or profile_id),
                                   measurements=measurements)
        for e in entries:
            e["results_run_id"] = run_id
    write_calibration(path, profile_id, entries, device=device)
    return CalibrationResult(profile_id=profile_id, path=path, entries=entries, measurements=measurements, micro=rows,
                             run_id=run_id, db=None if db is None else Path(db), warnings=warnings)
