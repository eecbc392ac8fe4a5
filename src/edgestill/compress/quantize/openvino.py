"""OpenVINO static int8: ov.convert_model on the fp32 model, nncf.quantize over the calibration samples."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgestill.compress.quantize.api import QUANTIZERS
from edgestill.errors import RuntimeFailure
from edgestill.export.artifact import Artifact
from edgestill.export.openvino import convert_openvino, openvino_artifact, save_openvino
from edgestill.runtimes.openvino import no_telemetry

if TYPE_CHECKING:
    import torch


@QUANTIZERS.register("openvino")
def quantize_openvino(model: torch.nn.Module, args: tuple, *, calibration: np.ndarray, staging_dir: Path, name: str) -> Artifact:
    """Write ``staging_dir/<name>.xml`` + ``.bin`` quantized by NNCF with every calibration sample.

    Symmetric per-channel int8 weights, asymmetric int8 activations (MIXED preset) with plain min/max ranges:
    NNCF's default MEAN_MINMAX clips activation outliers, which on a MobileNetV2 student here gave 13 dB SQNR
    and 92.6% top-1 agreement against 30 dB and 96.6% with MINMAX (the scheme ORT's MinMax calibration uses).
    """
    with no_telemetry():
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    t0 = time.perf_counter()
    ov_model = convert_openvino(model, args)
    dataset = nncf.Dataset([np.ascontiguousarray(s[None]) for s in calibration])
    try:
        with no_telemetry():
            quantized = nncf.quantize(
                ov_model, dataset, subset_size=len(calibration), preset=nncf.QuantizationPreset.MIXED,
                advanced_parameters=AdvancedQuantizationParameters(activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX),
            )
    except Exception as exc:  # nncf raises many types; all mean "quantization failed"
        raise RuntimeFailure(f"nncf.quantize failed for {type(model).__name__}: {exc}") from exc
    save_openvino(quantized, staging_dir / f"{name}.xml")
    art = openvino_artifact(model, args, staging_dir, name, "int8-static")
    art.quantization = {
        "method": "nncf.quantize", "preset": "mixed", "activation_ranges": "minmax", "subset_size": len(calibration), "weights": "int8",
        "activations": "int8", "seconds": round(time.perf_counter() - t0, 3),
    }
    return art
