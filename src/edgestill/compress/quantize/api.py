"""The verb ``quantize_export``: one int8 file for one format, through the quantizer QUANTIZERS names (base.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgestill.artifact import Artifact, Precision
from edgestill.compress.quantize.base import QUANTIZERS, Quantizer, quant_precisions
from edgestill.compress.quantize.calibration import calibration_manifest, check_calibration
from edgestill.compress.quantize.options import QuantOptions, check_choice
from edgestill.errors import ConfigError, InputError
from edgestill.export.base import as_tuple

if TYPE_CHECKING:
    import torch

def get_quantizer(fmt: str) -> Quantizer:
    """Return the int8 quantizer registered for a format (imports its module).

    Raises:
        UnknownNameError: no quantizer for ``fmt`` (the message lists the registered formats).
    """
    return QUANTIZERS.get(fmt).load()


def quantize_export(
    model: torch.nn.Module,
    example_inputs: Any,
    *,
    format: str,
    precision: str = "int8-static",
    calibration: np.ndarray | None = None,
    calibration_ids: Sequence[Any] | None = None,
    staging_dir: Path,
    name: str,
    options: QuantOptions | None = None,
) -> Artifact:
    """Quantize ``model`` to int8 for ``format``; write it to ``staging_dir``.

    Args:
        model: the float torch model (left unchanged).
        example_inputs: a tensor or tuple with one batch-1 tensor (the shape the file will take).
        format: onnx | tflite | openvino.
        precision: "int8-static" (int8 weights and activations, calibrated) or "int8-dynamic" (int8 weights;
            activations quantized at run time, or kept float where the format has no dynamic kernels).
        calibration: N samples shaped like the example input without its batch axis (required for static).
        calibration_ids: one id per sample, recorded in the manifest (default 0..N-1).
        staging_dir: folder to write into (the caller validates and publishes).
        name: artifact name (file stem).
        options: calibration method, TFLite recipe, OpenVINO preset, layers kept in float, equalisation and bias
            correction; what is left None resolves to the format's measured default (QuantOptions.resolved).
            With calibration_method "auto", auto.py quantizes each candidate and keeps the best on held-out data.

    Returns:
        An unvalidated Artifact with precision ``precision`` ("mixed" when layers are kept in float),
        its quantization settings (``options``: the resolved ones that ran; ``equalize`` / ``bias_correction``:
        what the torch transforms did; ``auto``: every candidate's figures) and, for static int8, its
        calibration manifest.

    Raises:
        InputError: calibration missing (static), empty, the wrong shape, NaN/Inf, ids of the wrong length;
            a multi-input model.
        ConfigError: an unknown precision, a recipe that does not match it, an unknown float layer, a calibration
            method the format has no calibrator for.
        UnknownNameError: no quantizer for ``format``.
        RuntimeFailure: the conversion library failed.
    """
    from edgestill.compress.quantize.layers import check_layer_names, quantizable_layers

    check_choice("precision", precision, quant_precisions())
    spec = QUANTIZERS.get(format)
    precision = spec.check_precision(precision, "quantizer")
    requested = options or QuantOptions()
    options = requested.resolved(format, static=precision == Precision.INT8_STATIC)
    if format == "tflite":
        options.recipe_for(precision)
    quantizer = spec.load()
    args = as_tuple(example_inputs)
    if len(args) != 1:
        raise InputError(
            f"int8 quantization here takes models with one input; this model takes {len(args)}. "
            "Quantize a single-input model, or export it in fp32."
        )
    calib, manifest = None, None
    if precision == Precision.INT8_STATIC:
        if calibration is None:
            raise InputError(
                "static int8 needs calibration data and none was given; pass calibration= (N samples shaped like "
                "the model input, a few hundred drawn from the training data) or use precision 'int8-dynamic'."
            )
        calib = check_calibration(calibration, args[0].shape[1:])
        manifest = calibration_manifest(calib, calibration_ids)
        calib = calib.astype(args[0].detach().cpu().numpy().dtype, copy=False)
    layers = quantizable_layers(model, args)
    if options.float_layers:
        check_layer_names(options.float_layers, layers)
        if precision != Precision.INT8_STATIC:
            raise ConfigError("float_layers (a mixed artifact) applies to int8-static; dynamic int8 keeps activations float already.")
    staging_dir = Path(staging_dir)
    staging_dir.mkdir(parents=True, exist_ok=True)
    if options.calibration_method == "auto":
        from edgestill.compress.quantize.auto import auto_quantize

        art = auto_quantize(model, args, format=format, precision=precision, calibration=calib, staging_dir=staging_dir,
                            name=name, options=options, requested=requested, layers=layers, quantizer=quantizer,
                            run=run_quantizer)
        split = art.quantization["auto"]["split"]
        ids = manifest["sample_ids"]
        manifest = calibration_manifest(calib[split["fit_indices"]], [ids[i] for i in split["fit_indices"]])
        manifest["held_out_ids"] = [ids[i] for i in split["held_out_indices"]]
    else:
        art = run_quantizer(quantizer, model, args, format=format, precision=precision, calibration=calib,
                            staging_dir=staging_dir, name=name, options=options, layers=layers)
    if options.float_layers:
        art.precision = "mixed"
        art.quantization["float_layers"] = list(options.float_layers)
        art.quantization["base_precision"] = precision
    if manifest is not None:
        art.calibration = manifest
    return art


def run_quantizer(
    quantizer: Quantizer, model: torch.nn.Module, args: tuple, *, format: str, precision: str, calibration: np.ndarray | None,
    staging_dir: Path, name: str, options: QuantOptions, layers: Sequence[Any],
) -> Artifact:
    """Apply the torch transforms ``options`` resolve to (equalisation; bias correction outside OpenVINO), then quantize.

    ``options`` must be resolved (QuantOptions.resolved) with a concrete calibration method. OpenVINO corrects
    biases with NNCF's own algorithm on its graph, so torch bias correction runs for the other formats only.
    The manifest's ``options`` are the resolved ones; ``equalize`` / ``bias_correction`` say what ran.
    """
    from edgestill.compress.quantize.equalize import prepare_for_int8

    Path(staging_dir).mkdir(parents=True, exist_ok=True)
    torch_bc = bool(options.bias_correction) and format != "openvino"
    source, report = prepare_for_int8(model, args, equalize=bool(options.equalize), bias_correction=torch_bc,
                                      calibration=calibration, skip=options.float_layers)
    art = quantizer(source, args, precision=precision, calibration=calibration, staging_dir=staging_dir, name=name,
                    options=options, layers=layers)
    art.quantization["options"] = options.to_dict()
    art.quantization["equalize"] = report.get("equalize", {"applied": False, "reason": "off"})
    if format != "openvino":
        art.quantization["bias_correction"] = report.get("bias_correction", {"applied": False, "reason": "off"})
    return art
