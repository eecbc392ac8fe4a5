"""OpenVINO int8 with NNCF: ``nncf.quantize`` (static, calibrated) or ``nncf.compress_weights`` (int8 weights only)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgestill.compress.quantize.layers import Layer, openvino_ops_for
from edgestill.compress.quantize.options import QuantOptions
from edgestill.compress.quantize.samples import Samples, arrays_of, is_integer_input, n_samples
from edgestill.errors import RuntimeFailure
from edgestill.artifact import Artifact, TensorSpec
from edgestill.export.openvino import convert_openvino, openvino_artifact, save_openvino
from edgestill.runtimes.openvino import no_telemetry

if TYPE_CHECKING:
    import torch

# NNCF's range estimators per calibration method: "percentile" is MEAN_QUANTILE, "mse" HISTOGRAM (the range that
# minimises the quantization error on an activation histogram). NNCF has no entropy (KL) calibrator, so
# QuantOptions.resolved refuses "entropy" for openvino. The manifest records the estimator that ran.
_ESTIMATORS = {"minmax": "MINMAX", "percentile": "MEAN_QUANTILE", "mse": "HISTOGRAM"}
# bias_correction=True runs NNCF's FastBiasCorrection (fast) or BiasCorrection (full); chosen by measurement.
BIAS_CORRECTION = "fast"


def attention_score_matmuls(ov_model: object) -> list[str]:
    """The attention-score MatMuls (Q @ K^T) of an OpenVINO model: two activation inputs, reaching a Softmax
    within a few ops (the scale, the mask's Add). NNCF's transformer type quantizes both their inputs; such a file
    reloaded from the IR (where the scale's Divide is no longer kept, ``nonconvertable_divide``) gives garbage on
    the CPU plugin at f32 inference precision (a trained 2-layer BERT, hidden 128: SQNR -0.2 dB, top-1 51%; the
    same model quantized and run in memory, or the file at the bf16 default hint: 56-60 dB). Keeping these MatMuls
    float fixes it (56 dB from the file at f32) and costs little: the Linear layers stay int8."""
    found = []
    for op in ov_model.get_ordered_ops():  # type: ignore[attr-defined]
        if op.get_type_name() != "MatMul":
            continue
        if any(i.get_source_output().get_node().get_type_name() in ("Constant", "Convert") for i in op.inputs()):
            continue
        frontier, hit = [op], False
        for _ in range(4):
            nxt = [t.get_node() for n in frontier for out in n.outputs() for t in out.get_target_inputs()]
            if any(n.get_type_name() == "Softmax" or n.get_type_name().startswith("SoftMax") for n in nxt):
                hit = True
                break
            frontier = nxt
        if hit:
            found.append(op.get_friendly_name())
    return found


def quantize_openvino(
    model: torch.nn.Module, args: tuple, *, precision: str, calibration: Samples | None, staging_dir: Path, name: str,
    options: QuantOptions, layers: Sequence[Layer], inputs: Sequence[TensorSpec] | None = None,
) -> Artifact:
    """Write ``staging_dir/<name>.xml`` + ``.bin`` quantized by NNCF.

    Static: symmetric per-channel int8 weights and int8 activations (PERFORMANCE preset, symmetric, by default;
    MIXED gives asymmetric activations) with the range estimator of ``options.calibration_method`` (min/max by
    default: NNCF's default MEAN_MINMAX clips activation outliers, which on a MobileNetV2 student here gave 13 dB
    SQNR and 92.6% top-1 agreement against 30 dB and 96.6% with MINMAX); NNCF's bias correction when
    ``options.bias_correction`` (BIAS_CORRECTION: fast or full), disabled otherwise.
    Dynamic: int8 weights (``compress_weights``, INT8_ASYM); activations stay float.
    A text model (integer id inputs) is quantized with ``model_type=nncf.ModelType.TRANSFORMER`` (NNCF's scheme for
    transformers: Linear inputs and weights int8, softmax, LayerNorm and the attention scores' second MatMul input
    kept float), calibrated on one item per sample holding every input in model order; its attention-score MatMuls
    (Q @ K^T, :func:`attention_score_matmuls`) are kept float too, recorded as ``float_attention_scores``. Layers
    kept in float go to ``ignored_scope`` in both modes.
    """
    with no_telemetry():
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    t0 = time.perf_counter()
    ov_model = convert_openvino(model, args, inputs=inputs)
    ignored_ops = openvino_ops_for(ov_model, layers, options.float_layers, model=model) if options.float_layers else []
    static = precision == "int8-static"
    text = is_integer_input(args)
    score_ops = [n for n in attention_score_matmuls(ov_model) if n not in ignored_ops] if text and static else []
    ignored = nncf.IgnoredScope(names=ignored_ops + score_ops) if ignored_ops or score_ops else None
    model_type = nncf.ModelType.TRANSFORMER if text else None
    estimator = _ESTIMATORS[options.calibration_method] if static else None
    bias_correction = (BIAS_CORRECTION if options.bias_correction else None) if static else None
    try:
        with no_telemetry():
            if precision == "int8-static":
                arrays = arrays_of(calibration)
                items = [tuple(np.ascontiguousarray(a[i : i + 1]) for a in arrays) for i in range(n_samples(calibration))]
                dataset = nncf.Dataset([it[0] for it in items] if len(arrays) == 1 else items)
                preset = nncf.QuantizationPreset.MIXED if options.openvino_preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE
                quantized = nncf.quantize(
                    ov_model, dataset, subset_size=n_samples(calibration), preset=preset, ignored_scope=ignored,
                    model_type=model_type,
                    fast_bias_correction=bias_correction != "full",
                    advanced_parameters=AdvancedQuantizationParameters(
                        activations_range_estimator_params=getattr(RangeEstimatorParametersSet, estimator),
                        disable_bias_correction=bias_correction is None,
                    ),
                )
            else:
                quantized = nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT8_ASYM, all_layers=None,
                                                  ignored_scope=ignored)
    except Exception as exc:  # nncf raises many types; all mean "quantization failed"
        raise RuntimeFailure(f"nncf {precision} quantization failed for {type(model).__name__}: {exc}") from exc
    save_openvino(quantized, staging_dir / f"{name}.xml")
    art = openvino_artifact(model, args, staging_dir, name, precision, inputs=inputs)
    art.quantization = {
        "method": "nncf.quantize" if static else "nncf.compress_weights (INT8_ASYM)",
        "preset": options.openvino_preset if static else None,
        "activation_ranges": estimator.lower() if static else None,
        "calibration_method": options.calibration_method if static else None,
        "bias_correction": {"applied": bias_correction is not None, "by": f"nncf ({bias_correction})"} if bias_correction
        else {"applied": False, "reason": "off" if static else "dynamic int8"},
        "model_type": "transformer" if text and static else None,
        "subset_size": n_samples(calibration) if static else 0, "weights": "int8",
        "activations": "int8" if static else "float", "ignored_ops": ignored_ops,
        "float_attention_scores": score_ops if text and static else None,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return art
