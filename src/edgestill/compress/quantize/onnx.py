"""ONNX int8 with onnxruntime's tools: fp32 export → quant_pre_process → quantize_static (QDQ) or quantize_dynamic.

Static: per-channel symmetric int8 weights, uint8 activations (onnxruntime's U8S8 kernels, the fast path on
x86; int8 activations measured slower here), MinMax / Entropy / Percentile calibration. Layers kept in float
are excluded by node name (see layers.onnx_nodes_for).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgestill.compress.quantize.layers import Layer, onnx_nodes_for
from edgestill.compress.quantize.options import QuantOptions
from edgestill.errors import ConfigError, RuntimeFailure
from edgestill.artifact import Artifact
from edgestill.export.base import dist_versions, logical_dtypes, new_artifact, with_logical
from edgestill.export.onnx import onnx_specs, write_onnx

if TYPE_CHECKING:
    import torch

_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


def quantize_onnx(
    model: torch.nn.Module, args: tuple, *, precision: str, calibration: np.ndarray | None, staging_dir: Path, name: str,
    options: QuantOptions, layers: Sequence[Layer],
) -> Artifact:
    """Write ``staging_dir/<name>.onnx`` quantized by onnxruntime (QDQ static, or dynamic)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32, pre, final = (staging_dir / f"{name}.{s}" for s in ("fp32.tmp.onnx", "pre.tmp.onnx", "onnx"))
    write_onnx(model, args, fp32)
    input_name = onnx_specs(fp32)[0][0].name
    t0 = time.perf_counter()
    try:
        quant_pre_process(str(fp32), str(pre))
        excluded = onnx_nodes_for(onnx.load(str(pre)).graph, layers, options.float_layers) if options.float_layers else []
        if precision == "int8-static":
            samples = iter(calibration if calibration is not None else ())

            class _Reader(CalibrationDataReader):
                def get_next(self) -> dict[str, np.ndarray] | None:
                    sample = next(samples, None)
                    return None if sample is None else {input_name: sample[None]}

            quantize_static(
                str(pre), str(final), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=excluded or None,
                calibrate_method=getattr(CalibrationMethod, _METHODS[options.calibration_method]),
                extra_options={"WeightSymmetric": True},
            )
        else:
            quantize_dynamic(str(pre), str(final), per_channel=True, weight_type=QuantType.QInt8)
    except ConfigError:  # float layers that do not map onto this graph
        raise
    except Exception as exc:  # onnxruntime raises many types; all mean "quantization failed"
        raise RuntimeFailure(f"onnxruntime {precision} quantization failed: {exc}") from exc
    finally:
        for tmp in (fp32, pre):
            tmp.unlink(missing_ok=True)
    ins, outs = onnx_specs(final)
    in_dt, out_dt = logical_dtypes(model, args)
    art = new_artifact(
        name=name, fmt="onnx", precision=precision, staging_dir=staging_dir, model_file=final.name,
        inputs=with_logical(ins, in_dt), outputs=with_logical(outs, out_dt), model=model, args=args,
        versions=dist_versions("torch", "onnx", "onnxscript", "onnxruntime"),
    )
    static = precision == "int8-static"
    art.quantization = {
        "method": "onnxruntime.quantize_static" if static else "onnxruntime.quantize_dynamic",
        "format": "QDQ" if static else "QOperator (dynamic)", "pre_process": "quant_pre_process", "per_channel": True,
        "activations": "uint8" if static else "dynamic uint8", "weights": "int8",
        "calibrate_method": _METHODS[options.calibration_method] if static else None,
        "excluded_nodes": excluded, "seconds": round(time.perf_counter() - t0, 3),
    }
    return art
