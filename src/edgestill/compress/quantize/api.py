"""The QUANTIZERS registry (keyed by format) and the verb ``quantize_export``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgestill.compress.quantize.calibration import calibration_manifest, check_calibration
from edgestill.errors import InputError
from edgestill.export.artifact import Artifact
from edgestill.registry import Registry

if TYPE_CHECKING:
    import torch

Quantizer = Callable[..., Artifact]
QUANTIZERS: Registry[Quantizer] = Registry("quantizer")


def get_quantizer(fmt: str) -> Quantizer:
    """Return the static-int8 quantizer registered for a format (imports the per-format modules)."""
    import edgestill.compress.quantize.onnx  # noqa: F401
    import edgestill.compress.quantize.openvino  # noqa: F401
    import edgestill.compress.quantize.tflite  # noqa: F401

    return QUANTIZERS.get(fmt)


def quantize_export(
    model: torch.nn.Module,
    example_inputs: Any,
    *,
    format: str,
    calibration: np.ndarray,
    calibration_ids: Sequence[Any] | None = None,
    staging_dir: Path,
    name: str,
) -> Artifact:
    """Quantize ``model`` to static int8 for ``format`` with calibration samples; write it to ``staging_dir``.

    Args:
        model: the float torch model (left unchanged).
        example_inputs: a tensor or tuple with one batch-1 tensor (the shape the file will take).
        format: onnx | tflite | openvino.
        calibration: N samples shaped like the example input without its batch axis.
        calibration_ids: one id per sample, recorded in the manifest (default 0..N-1).
        staging_dir: folder to write into (the caller validates and publishes).
        name: artifact name (file stem).

    Returns:
        An unvalidated Artifact with precision "int8-static" and its calibration manifest.

    Raises:
        InputError: calibration empty, the wrong shape, NaN/Inf, ids of the wrong length; a multi-input model.
        UnknownNameError: no quantizer for ``format``.
        RuntimeFailure: the conversion library failed.
    """
    from edgestill.export.exporters import as_tuple

    quantizer = get_quantizer(format)
    args = as_tuple(example_inputs)
    if len(args) != 1:
        raise InputError(
            f"static int8 calibration takes models with one input; this model takes {len(args)}. "
            "Quantize a single-input model or use a dynamic-range precision."
        )
    calib = check_calibration(calibration, args[0].shape[1:])
    manifest = calibration_manifest(calib, calibration_ids)
    staging_dir = Path(staging_dir)
    staging_dir.mkdir(parents=True, exist_ok=True)
    calib = calib.astype(args[0].detach().cpu().numpy().dtype, copy=False)
    art = quantizer(model, args, calibration=calib, staging_dir=staging_dir, name=name)
    art.calibration = manifest
    return art
