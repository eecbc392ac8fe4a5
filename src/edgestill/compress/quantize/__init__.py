"""int8 quantization that keeps accuracy: per-format quantizers, calibration, sensitivity, float fallback, KD repair.

``quantize_export`` writes one int8 file for one format; ``quantize`` meets an accuracy budget on each format's
runtime. Importing this package stays light: torch and the format libraries load inside the functions.
"""

from edgestill.compress.quantize.api import get_quantizer, quantize_export
from edgestill.compress.quantize.base import QUANTIZERS, quant_precisions
from edgestill.compress.quantize.budget import (
    METRIC_ACCURACY,
    METRIC_AGREEMENT,
    FormatResult,
    QuantizeConfig,
    QuantizeResult,
    artifact_accuracy,
    check_inputs,
    quantize,
)
from edgestill.compress.quantize.calibration import (
    DEFAULT_CALIBRATION_SAMPLES,
    calibration_manifest,
    calibration_warnings,
    check_calibration,
    select_calibration,
)
from edgestill.compress.quantize.options import CALIBRATION_METHODS, TFLITE_RECIPES, QuantOptions

__all__ = [
    "CALIBRATION_METHODS", "DEFAULT_CALIBRATION_SAMPLES", "METRIC_ACCURACY", "METRIC_AGREEMENT", "QUANTIZERS", "TFLITE_RECIPES",
    "FormatResult", "QuantOptions", "QuantizeConfig", "QuantizeResult", "artifact_accuracy", "calibration_manifest",
    "calibration_warnings", "check_calibration", "check_inputs", "get_quantizer", "quant_precisions", "quantize",
    "quantize_export", "select_calibration",
]
