"""TFLite static int8: torchao PT2E with litert-torch's symmetric per-channel quantizer, then litert_torch.convert.

The file takes and gives int8 tensors; their scale/zero-point go in the TensorSpecs so sessions hide them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgestill.compress.quantize.api import QUANTIZERS
from edgestill.errors import RuntimeFailure
from edgestill.export.artifact import Artifact
from edgestill.export.tflite import tflite_artifact, write_tflite

if TYPE_CHECKING:
    import torch


@QUANTIZERS.register("tflite")
def quantize_tflite(model: torch.nn.Module, args: tuple, *, calibration: np.ndarray, staging_dir: Path, name: str) -> Artifact:
    """Write ``staging_dir/<name>.tflite`` with int8 weights (per-channel) and int8 activations and I/O."""
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    t0 = time.perf_counter()
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    try:
        graph = torch.export.export(model.eval(), args).module()
        prepared = prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for sample in calibration:
                prepared(torch.from_numpy(np.ascontiguousarray(sample[None])))
        converted = convert_pt2e(prepared, fold_quantize=False)
    except Exception as exc:  # torch.export / PT2E raise many types; all mean "this model did not quantize"
        raise RuntimeFailure(f"PT2E static quantization failed for {type(model).__name__}: {exc}") from exc
    write_tflite(converted, args, staging_dir / f"{name}.tflite", quant_config=QuantConfig(pt2e_quantizer=quantizer))
    art = tflite_artifact(model, args, staging_dir, name, "int8-static")
    art.quantization = {
        "method": "torchao.pt2e + litert_torch.PT2EQuantizer", "symmetric": True, "per_channel": True,
        "activations": "int8", "weights": "int8", "activation_observer": "HistogramObserver",
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return art
