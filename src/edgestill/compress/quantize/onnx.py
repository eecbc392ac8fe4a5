"""ONNX int8 with onnxruntime's tools: fp32 export → quant_pre_process → quantize_static (QDQ) or quantize_dynamic.

Static: per-channel symmetric int8 weights, uint8 activations (onnxruntime's U8S8 kernels, the fast path on
x86; int8 activations measured slower here), MinMax / Entropy / Percentile calibration, and "mse": onnxruntime
has no MSE calibrator, so its histogram calibrator collects each activation's histogram (MSE_BINS bins) and
:func:`mse_range` picks the [low, high] that minimises the expected squared error of uint8 quantization
(rounding inside, clipping outside) over a grid of clipped ranges; the ranges go to quantize_static as a
calibration cache. Layers kept in float are excluded by node name (see layers.onnx_nodes_for).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgestill.compress.quantize.layers import Layer, onnx_nodes_for
from edgestill.compress.quantize.options import QuantOptions
from edgestill.compress.quantize.samples import Samples, feeds, is_integer_input, n_samples, take
from edgestill.errors import ConfigError, RuntimeFailure
from edgestill.artifact import Artifact, TensorSpec
from edgestill.export.base import dist_versions, logical_dtypes, new_artifact, with_input_facts, with_logical
from edgestill.export.onnx import onnx_specs, write_onnx

if TYPE_CHECKING:
    import torch

_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile", "mse": "MSE (histogram, edgestill)"}
MSE_BINS = 2048  # histogram bins per activation for "mse" (onnxruntime's percentile calibrator uses 2048 too)
_MSE_GRID = 48  # candidate clip points per side of the range
_CHUNK = 16  # calibration samples per histogram update (onnxruntime keeps every sample's activations until then)


def mse_range(hist: np.ndarray, edges: np.ndarray, lowest: float, highest: float, *, qmax: int = 255) -> tuple[float, float]:
    """The [low, high] (containing 0) that minimises the expected squared error of asymmetric ``qmax + 1``-level quantization.

    The error of each histogram bin is taken at its centre: rounding inside the range, clipping outside it.
    Candidates clip the observed [lowest, highest] at _MSE_GRID fractions on each side (the full range included).
    """
    centres = (edges[:-1] + edges[1:]) / 2
    keep = hist > 0
    centres, weights = centres[keep].astype(np.float64), hist[keep].astype(np.float64)
    if not len(centres):
        return float(min(lowest, 0.0)), float(max(highest, 0.0))
    fractions = np.linspace(1.0 / _MSE_GRID, 1.0, _MSE_GRID)
    lows = np.unique(min(lowest, 0.0) * fractions)
    highs = np.unique(max(highest, 0.0) * fractions)
    lo, hi = np.meshgrid(lows, highs, indexing="ij")
    lo, hi = lo.ravel(), hi.ravel()
    scale = np.maximum(hi - lo, 1e-12) / qmax
    zero = np.round(-lo / scale)
    q = np.clip(np.round(centres[None, :] / scale[:, None]) + zero[:, None], 0, qmax)
    err = (((q - zero[:, None]) * scale[:, None] - centres[None, :]) ** 2 * weights[None, :]).sum(axis=1)
    best = int(np.argmin(err))
    return float(lo[best]), float(hi[best])


def _mse_cache(pre: Path, calibration: Samples, input_names: Sequence[str], cache: Path) -> None:
    """Write an onnxruntime calibration cache holding the MSE-optimal range of every activation to calibrate."""
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
    from onnxruntime.quantization.calibrate import TensorsData, create_calibrator, save_tensors_data

    with tempfile.TemporaryDirectory(prefix="edgestill-mse-") as tmp:
        calibrator = create_calibrator(pre, None, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=CalibrationMethod.Entropy,
                                       extra_options={"num_bins": MSE_BINS, "symmetric": False})
        for start in range(0, n_samples(calibration), _CHUNK):
            chunk = iter(feeds(take(calibration, slice(start, start + _CHUNK)), input_names))

            class _Chunk(CalibrationDataReader):
                def get_next(self) -> dict[str, np.ndarray] | None:
                    return next(chunk, None)

            calibrator.collect_data(_Chunk())
        histograms = calibrator.collector.get_histogram_dict()
        del calibrator
    ranges = {}
    for tensor, (hist, edges, lowest, highest, _threshold) in histograms.items():
        lo, hi = mse_range(np.asarray(hist), np.asarray(edges), float(lowest), float(highest))
        ranges[tensor] = (np.float32(lo), np.float32(hi))
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, ranges), cache)


def quantize_onnx(
    model: torch.nn.Module, args: tuple, *, precision: str, calibration: Samples | None, staging_dir: Path, name: str,
    options: QuantOptions, layers: Sequence[Layer], inputs: Sequence[TensorSpec] | None = None,
) -> Artifact:
    """Write ``staging_dir/<name>.onnx`` quantized by onnxruntime (QDQ static, or dynamic).

    ``inputs`` (the model's input specs) keeps the input names, symbolic sequence and meanings of the fp32 file.
    Calibration feeds every input by its name in the file (samples.feeds). Layers kept in float (and, for a text
    model, embeddings: see layers.onnx_nodes_for) go to ``nodes_to_exclude`` in both modes.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32, pre, final, cache = (staging_dir / f"{name}.{s}" for s in ("fp32.tmp.onnx", "pre.tmp.onnx", "onnx", "ranges.tmp.json"))
    write_onnx(model, args, fp32, inputs=inputs)
    input_names = [spec.name for spec in onnx_specs(fp32)[0]]
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # onnxruntime's calibrators print progress; stdout carries --json
            # A float Linear beside int8 ones in a transformer: onnxruntime fuses the float MatMul + Add into a Gemm when
            # it loads the file and names the reshape it adds like the ones quant_pre_process's own fusion already
            # wrote ("gemm_input_reshape_arg"), which fails the load ("Attempt to replace the existing tensor"); so
            # such a file is pre-processed without the graph optimisation (shape inference only).
            skip = bool(options.float_layers) and is_integer_input(args)
            quant_pre_process(str(fp32), str(pre), skip_optimization=skip)
            excluded = (onnx_nodes_for(onnx.load(str(pre)).graph, layers, options.float_layers, model=model)
                        if options.float_layers else [])
            if precision == "int8-static":
                samples = iter(feeds(calibration, input_names) if calibration is not None else ())

                class _Reader(CalibrationDataReader):
                    def get_next(self) -> dict[str, np.ndarray] | None:
                        return next(samples, None)

                method = options.calibration_method
                if method == "mse":
                    _mse_cache(pre, calibration, input_names, cache)
                quantize_static(
                    str(pre), str(final), None if method == "mse" else _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=excluded or None,
                    calibrate_method=CalibrationMethod.MinMax if method == "mse" else getattr(CalibrationMethod, _METHODS[method]),
                    extra_options={"WeightSymmetric": True}, calibration_cache_path=str(cache) if method == "mse" else None,
                )
            else:
                # dynamic mode first rewrites each Gemm as "<name>_MatMul" + "<name>_Add", then matches the exclusions
                gemms = [f"{n}_MatMul" for n in excluded]
                quantize_dynamic(str(pre), str(final), per_channel=True, weight_type=QuantType.QInt8,
                                 nodes_to_exclude=[*excluded, *gemms] or None)
    except ConfigError:  # float layers that do not map onto this graph
        raise
    except Exception as exc:  # onnxruntime raises many types; all mean "quantization failed"
        raise RuntimeFailure(f"onnxruntime {precision} quantization failed: {exc}") from exc
    finally:
        for tmp in (fp32, pre, cache):
            tmp.unlink(missing_ok=True)
    ins, outs = onnx_specs(final)
    in_dt, out_dt = logical_dtypes(model, args)
    art = new_artifact(
        name=name, fmt="onnx", precision=precision, staging_dir=staging_dir, model_file=final.name,
        inputs=with_input_facts(with_logical(ins, in_dt), inputs), outputs=with_logical(outs, out_dt), model=model, args=args,
        versions=dist_versions("torch", "onnx", "onnxscript", "onnxruntime"),
    )
    static = precision == "int8-static"
    art.quantization = {
        "method": "onnxruntime.quantize_static" if static else "onnxruntime.quantize_dynamic",
        "format": "QDQ" if static else "QOperator (dynamic)", "pre_process": "quant_pre_process", "per_channel": True,
        "activations": "uint8" if static else "dynamic uint8", "weights": "int8",
        "calibrate_method": _METHODS[options.calibration_method] if static else None,
        "calibration_method": options.calibration_method if static else None,
        "excluded_nodes": excluded, "seconds": round(time.perf_counter() - t0, 3),
        **({"pre_process_optimization": False} if skip else {}),
    }
    return art
