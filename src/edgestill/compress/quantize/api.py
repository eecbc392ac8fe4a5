"""The verb ``quantize_export``: one int8 file for one format, through the quantizer QUANTIZERS names (base.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgestill.artifact import Artifact, Precision, TensorSpec
from edgestill.compress.quantize.base import QUANTIZERS, Quantizer, quant_precisions
from edgestill.compress.quantize.calibration import calibration_manifest
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
    calibration: Any = None,
    calibration_ids: Sequence[Any] | None = None,
    staging_dir: Path,
    name: str,
    options: QuantOptions | None = None,
    inputs: Sequence[TensorSpec] | None = None,
) -> Artifact:
    """Quantize ``model`` to int8 for ``format``; write it to ``staging_dir``.

    Args:
        model: the float torch model (left unchanged).
        example_inputs: a tensor or a tuple of batch-1 tensors, one per input (the shapes the file will take).
        format: onnx | tflite | openvino.
        precision: "int8-static" (int8 weights and activations, calibrated), "int8-dynamic" (int8 weights;
            activations quantized at run time, or kept float where the format has no dynamic kernels), or "int8":
            the format's default for this model (options.default_precision: int8-static for image models; for a
            text model, one with integer id inputs, options.TEXT_DEFAULTS, recorded in ``quantization["chosen"]``).
        calibration: N samples shaped like the example input without its batch axis (required for static): one
            array, or for a model with several inputs one array per input (model order) or a dict named like them.
        calibration_ids: one id per sample, recorded in the manifest (default 0..N-1).
        staging_dir: folder to write into (the caller validates and publishes).
        name: artifact name (file stem).
        options: calibration method, TFLite recipe, OpenVINO preset, layers kept in float, equalisation and bias
            correction; what is left None resolves to the format's measured default (QuantOptions.resolved).
            With calibration_method "auto", auto.py quantizes each candidate and keeps the best on held-out data.
        inputs: the model's input specs (TensorSpec: name, shape with a symbolic sequence, kind, high), which the
            int8 file keeps as the fp32 one does (names, symbolic dims, meanings); None: the writers' defaults.

    Returns:
        An unvalidated Artifact with precision ``precision`` ("mixed" when layers are kept in float),
        its quantization settings (``options``: the resolved ones that ran; ``equalize`` / ``bias_correction``:
        what the torch transforms did; ``auto``: every candidate's figures) and, for static int8, its
        calibration manifest.

    Raises:
        InputError: calibration missing (static), empty, the wrong shape, NaN/Inf, ids of the wrong length, an
            input missing, inputs with different N.
        ConfigError: an unknown precision, a recipe that does not match it, an unknown float layer, a calibration
            method the format has no calibrator for, torch equalisation or bias correction asked for a text model.
        UnknownNameError: no quantizer for ``format``.
        RuntimeFailure: the conversion library failed.
    """
    from edgestill.compress.quantize.layers import check_layer_names, quantizable_layers
    from edgestill.compress.quantize.options import AUTO_PRECISION, TEXT_DEFAULTS, default_precision
    from edgestill.compress.quantize.samples import check_model_data, input_names_of, is_integer_input, take

    args = as_tuple(example_inputs)
    text = is_integer_input(args)
    check_choice("precision", precision, (*quant_precisions(), AUTO_PRECISION))
    if precision == AUTO_PRECISION:
        precision = default_precision(format, text=text)
    spec = QUANTIZERS.get(format)
    precision = spec.check_precision(precision, "quantizer")
    requested = options or QuantOptions()
    options = requested.resolved(format, static=precision == Precision.INT8_STATIC, text=text)
    if format == "tflite":
        options.recipe_for(precision)
    quantizer = spec.load()
    calib, manifest = None, None
    if precision == Precision.INT8_STATIC:
        if calibration is None:
            raise InputError(
                "static int8 needs calibration data and none was given; pass calibration= (N samples shaped like "
                "the model input, a few hundred drawn from the training data) or use precision 'int8-dynamic'."
            )
        names = input_names_of(model, len(args), inputs)
        calib = check_model_data(calibration, [a.shape[1:] for a in args], what="calibration", names=names,
                                 dtypes=[a.detach().cpu().numpy().dtype for a in args],
                                 specs=inputs, why="quantization ranges would be meaningless")
        manifest = calibration_manifest(calib, calibration_ids)
    layers = quantizable_layers(model, args)
    if options.float_layers:
        check_layer_names(options.float_layers, layers)
        if precision != Precision.INT8_STATIC and not text:
            raise ConfigError("float_layers (a mixed artifact) applies to int8-static; dynamic int8 keeps activations float "
                              "already (a text model's dynamic int8 can keep Linear layers float).")
    staging_dir = Path(staging_dir)
    staging_dir.mkdir(parents=True, exist_ok=True)
    if options.calibration_method == "auto":
        from edgestill.compress.quantize.auto import auto_quantize

        art = auto_quantize(model, args, format=format, precision=precision, calibration=calib, staging_dir=staging_dir,
                            name=name, options=options, requested=requested, layers=layers, quantizer=quantizer,
                            run=run_quantizer, inputs=inputs)
        split = art.quantization["auto"]["split"]
        ids = manifest["sample_ids"]
        manifest = calibration_manifest(take(calib, split["fit_indices"]), [ids[i] for i in split["fit_indices"]])
        manifest["held_out_ids"] = [ids[i] for i in split["held_out_indices"]]
    else:
        art = run_quantizer(quantizer, model, args, format=format, precision=precision, calibration=calib,
                            staging_dir=staging_dir, name=name, options=options, layers=layers, inputs=inputs)
    if text and format in TEXT_DEFAULTS:
        chosen = TEXT_DEFAULTS[format]
        art.quantization["chosen"] = {
            "precision": precision, "text_default": chosen["precision"], "model_type": chosen["model_type"],
            "why": chosen["why"] if precision == chosen["precision"] else f"{precision} was asked (the text default is {chosen['precision']})",
        }
    if options.float_layers:
        art.precision = "mixed"
        art.quantization["float_layers"] = list(options.float_layers)
        art.quantization["base_precision"] = precision
    if manifest is not None:
        art.calibration = manifest
    return art


def run_quantizer(
    quantizer: Quantizer, model: torch.nn.Module, args: tuple, *, format: str, precision: str, calibration: Any,
    staging_dir: Path, name: str, options: QuantOptions, layers: Sequence[Any], inputs: Sequence[TensorSpec] | None = None,
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
    named = {"inputs": inputs} if inputs else {}  # quantizers registered before named inputs still work
    art = quantizer(source, args, precision=precision, calibration=calibration, staging_dir=staging_dir, name=name,
                    options=options, layers=layers, **named)
    art.quantization["options"] = options.to_dict()
    art.quantization["equalize"] = report.get("equalize", {"applied": False, "reason": "off"})
    if format != "openvino":
        art.quantization["bias_correction"] = report.get("bias_correction", {"applied": False, "reason": "off"})
    return art
