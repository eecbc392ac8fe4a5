"""ONNX static int8: fp32 export → quant_pre_process → quantize_static (QDQ, per-channel, int8 weights and activations)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgestill.compress.quantize.api import QUANTIZERS
from edgestill.errors import RuntimeFailure
from edgestill.export.artifact import Artifact
from edgestill.export.exporters import dist_versions, logical_dtypes, new_artifact, with_logical
from edgestill.export.onnx import onnx_specs, write_onnx

if TYPE_CHECKING:
    import torch


@QUANTIZERS.register("onnx")
def quantize_onnx(model: torch.nn.Module, args: tuple, *, calibration: np.ndarray, staging_dir: Path, name: str) -> Artifact:
    """Write ``staging_dir/<name>.onnx`` quantized with onnxruntime's QDQ static quantization."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32, pre, final = (staging_dir / f"{name}.{s}" for s in ("fp32.tmp.onnx", "pre.tmp.onnx", "onnx"))
    write_onnx(model, args, fp32)
    input_name = onnx_specs(fp32)[0][0].name

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            sample = next(self._it, None)
            return None if sample is None else {input_name: sample[None]}

    t0 = time.perf_counter()
    try:
        quant_pre_process(str(fp32), str(pre))
        quantize_static(
            str(pre), str(final), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
        )
    except Exception as exc:  # onnxruntime raises many types; all mean "quantization failed"
        raise RuntimeFailure(f"onnxruntime static quantization failed: {exc}") from exc
    finally:
        for tmp in (fp32, pre):
            tmp.unlink(missing_ok=True)
    ins, outs = onnx_specs(final)
    in_dt, out_dt = logical_dtypes(model, args)
    art = new_artifact(
        name=name, fmt="onnx", precision="int8-static", staging_dir=staging_dir, model_file=final.name,
        inputs=with_logical(ins, in_dt), outputs=with_logical(outs, out_dt), model=model, args=args,
        versions=dist_versions("torch", "onnx", "onnxscript", "onnxruntime"),
    )
    art.quantization = {
        "method": "onnxruntime.quantize_static", "format": "QDQ", "per_channel": True, "activations": "int8",
        "weights": "int8", "calibrate_method": "MinMax", "seconds": round(time.perf_counter() - t0, 3),
    }
    return art
