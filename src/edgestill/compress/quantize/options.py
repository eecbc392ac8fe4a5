"""What to quantize and how: precisions, calibration methods and per-format recipes (a frozen config). Torch-free."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from edgestill.errors import ConfigError, did_you_mean

CALIBRATION_METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile", "mse", "auto")
TFLITE_RECIPES: tuple[str, ...] = ("pt2e", "aeq-static", "aeq-dynamic", "aeq-weight-only")
OPENVINO_PRESETS: tuple[str, ...] = ("performance", "mixed")
_STATIC_RECIPES = ("pt2e", "aeq-static")

# The calibration methods each format has a calibrator for ("auto" tries these).
FORMAT_METHODS: dict[str, tuple[str, ...]] = {
    "onnx": ("minmax", "entropy", "percentile", "mse"),
    "openvino": ("minmax", "percentile", "mse"),
    "tflite": ("minmax", "entropy", "percentile", "mse"),
}

# What None resolves to per format (QuantOptions.resolved), chosen by measurement: perf/quant_methods.py (raw
# lines in perf/results/quant_methods.jsonl), 300 stratified calibration images, 597 test images, each file on its
# own runtime at 1 thread, on mobilenet_v3_small / efficientnet_lite0 / mobilenet_v2 trained on digits at 3x32x32
# (fp32 88.1% / 87.6% / 90.3%). Mean logits SQNR vs fp32 and mean top-1 agreement over the three:
#   onnx      minmax 22.1 dB 97.2% | entropy = minmax | percentile 21.7 dB 97.7% | mse 22.4 dB 97.9% (best on all
#             three) | minmax+equalize 21.4 dB 97.0% | minmax+bias correction 22.1 dB 97.9% | mse+bias correction
#             22.5 dB 98.0% (min 97.2% vs 97.5% without): mse, no equalisation, no torch bias correction.
#   openvino  minmax without bias correction 20.2 dB 96.7% | NNCF fast bias correction 20.2 dB 97.0% | full bias
#             correction: no better on two models (22.3 vs 22.1 dB, 97.7 vs 96.7%; 16.4 vs 16.0 dB) at 1.5-2x the
#             time | +equalize 19.9 dB 96.4% | mse (HISTOGRAM) 20.4 dB 96.2% | percentile (MEAN_QUANTILE) 1.1-2.6 dB,
#             15-61%: minmax with NNCF's fast bias correction (its own default), no equalisation.
#   tflite    (PT2E, litert-torch) minmax 20.2 dB 97.3% (min 96.0%) | mse 20.2 dB 96.9% | +bias correction 20.3 dB
#             97.0% | +equalize 21.9 dB 97.3% (+2.5 dB on the two ReLU6 networks, -0.3 dB on mobilenet_v3_small)
#             | +equalize+bias correction 21.8 dB 97.9% (min 97.3%): minmax with equalisation and bias correction.
# Equalisation replaces each ReLU6 between equalised convs by a per-channel clamp (a MINIMUM/Min op the int8
# graph keeps); its latency cost was not measured here (the machine was shared); see perf/quant_real.py.
FORMAT_DEFAULTS: dict[str, dict[str, Any]] = {
    "onnx": {"calibration_method": "mse", "equalize": False, "bias_correction": False},
    "openvino": {"calibration_method": "minmax", "equalize": False, "bias_correction": True},
    "tflite": {"calibration_method": "minmax", "equalize": True, "bias_correction": True},
}


# ``precision="int8"``: each format's own int8 default for the model. Image models: int8-static everywhere (the
# measured defaults above). Text models (integer id inputs): the per-format transformer routes below, each recorded
# in the artifact's ``quantization["chosen"]`` with its reason; --precision int8-static / int8-dynamic overrides.
AUTO_PRECISION = "int8"
TEXT_DEFAULTS: dict[str, dict[str, str]] = {
    "onnx": {
        "precision": "int8-dynamic", "method": "onnxruntime.quantize_dynamic", "model_type": "transformer",
        "why": "MatMul/Gemm weights int8 per channel, activations quantized per call from their own range, so no "
               "calibration set has to cover every sentence length and padding; onnxruntime's integer MatMul kernels are "
               "its transformer path (static QDQ still works: --precision int8-static)",
    },
    "openvino": {
        "precision": "int8-static", "method": "nncf.quantize", "model_type": "transformer",
        "why": "NNCF's transformer model type quantizes the Linear layers' inputs and weights and keeps softmax, "
               "LayerNorm and the attention score path in float; the CPU plugin runs int8 MatMuls only for a calibrated "
               "(static) graph, and weight compression alone (int8-dynamic here) keeps float MatMuls",
    },
    "tflite": {
        "precision": "int8-dynamic", "method": "ai-edge-quantizer dynamic_wi8_afp32", "model_type": "transformer",
        "why": "ai-edge-quantizer's dynamic-range recipe: int8 weights (FULLY_CONNECTED, EMBEDDING_LOOKUP), activations "
               "quantized per op at run time; litert-torch's PT2E dynamic-range flow failed on EMBEDDING_LOOKUP here",
    },
}


def default_precision(fmt: str, *, text: bool) -> str:
    """The int8 precision ``precision="int8"`` means for ``fmt``: TEXT_DEFAULTS for a text model, else int8-static."""
    if text and fmt in TEXT_DEFAULTS:
        return TEXT_DEFAULTS[fmt]["precision"]
    return "int8-static"


def check_choice(key: str, value: Any, valid: tuple[str, ...]) -> str:
    """Return ``value`` when it is one of ``valid``; otherwise raise a ConfigError naming the choices."""
    if value not in valid:
        raise ConfigError(f"{key}: unknown value {value!r}.{did_you_mean(str(value), valid)} Valid: {', '.join(valid)}.")
    return value


@dataclass(frozen=True, kw_only=True)
class QuantOptions:
    """How one format is quantized.

    calibration_method: how activation ranges are set from the calibration data (static int8 only); None: the
        format's measured default (FORMAT_DEFAULTS). onnx: onnxruntime's MinMax / Entropy / Percentile calibrators,
        and "mse" (per-tensor ranges that minimise the expected squared int8 error over onnxruntime's activation
        histograms; see onnx.py); openvino: NNCF's MINMAX, MEAN_QUANTILE ("percentile") and HISTOGRAM ("mse":
        ranges that minimise the quantization error on a histogram); NNCF has no entropy calibrator, so "entropy"
        is refused for openvino; tflite: see tflite.py. "auto" quantizes with each method (and equalisation /
        bias-correction setting) that applies to the format on part of the calibration data, scores each file on
        its runtime against the float model on the held-out rest, and keeps the best (auto.py).
    tflite_recipe: "pt2e" (litert-torch PT2E static per-channel), ai-edge-quantizer "aeq-static",
        "aeq-dynamic" (dynamic-range int8) or "aeq-weight-only"; None picks pt2e for static, aeq-dynamic for dynamic.
    openvino_preset: NNCF preset, "performance" (symmetric activations, NNCF's default for CNNs) or "mixed"
        (asymmetric). On the demo student "performance" measured int8/fp32 p50 1.16 vs 1.31 for "mixed" (5
        interleaved rounds, shared machine) at the same accuracy.
    float_layers: torch module names (Conv/Linear layers) kept in float: the artifact's precision is "mixed".
    equalize: fold BatchNorm and equalise the weight ranges of consecutive convolutions in torch before
        quantizing (cross-layer equalisation, equalize.py); None: the format's measured default.
    bias_correction: correct the output shift int8 weights cause: in torch from the calibration data
        (equalize.py) for onnx and tflite, NNCF's own bias correction for openvino; None: the format's measured
        default.
    integer_io: int8 input/output tensors instead of float ones (static int8 only; for devices that need a fully
        integer file). The default keeps float I/O: the file quantizes inside and dequantizes its outputs.
    """

    calibration_method: Literal["minmax", "entropy", "percentile", "mse", "auto"] | None = None
    tflite_recipe: Literal["pt2e", "aeq-static", "aeq-dynamic", "aeq-weight-only"] | None = None
    openvino_preset: Literal["mixed", "performance"] = "performance"
    float_layers: tuple[str, ...] = ()
    equalize: bool | None = None
    bias_correction: bool | None = None
    integer_io: bool = False

    def __post_init__(self) -> None:
        if self.calibration_method is not None:
            check_choice("quantize.calibration_method", self.calibration_method, CALIBRATION_METHODS)
        if self.tflite_recipe is not None:
            check_choice("quantize.tflite_recipe", self.tflite_recipe, TFLITE_RECIPES)
        check_choice("quantize.openvino_preset", self.openvino_preset, OPENVINO_PRESETS)
        layers = (self.float_layers,) if isinstance(self.float_layers, str) else tuple(self.float_layers)
        if not all(isinstance(n, str) and n for n in layers):
            raise ConfigError(f"quantize.float_layers must be torch module names (strings), got {list(layers)!r}.")
        object.__setattr__(self, "float_layers", layers)
        for key in ("equalize", "bias_correction"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, bool):
                raise ConfigError(f"quantize.{key} must be true, false or null (the format's default), got {value!r}.")
        if not isinstance(self.integer_io, bool):
            raise ConfigError(f"quantize.integer_io must be true or false, got {self.integer_io!r}.")

    def recipe_for(self, precision: str) -> str:
        """The TFLite recipe used for ``precision``; None: pt2e for static (chosen by measurement, figures in tflite.py).

        Raises:
            ConfigError: a static recipe asked for a dynamic precision, or the reverse.
        """
        if self.tflite_recipe is None:
            return "pt2e" if precision == "int8-static" else "aeq-dynamic"
        static = self.tflite_recipe in _STATIC_RECIPES
        if static != (precision == "int8-static"):
            raise ConfigError(
                f"quantize.tflite_recipe {self.tflite_recipe!r} does not make {precision} files; static recipes are "
                f"{', '.join(_STATIC_RECIPES)}, dynamic ones aeq-dynamic and aeq-weight-only. Pick one that matches --precision."
            )
        return self.tflite_recipe

    def resolved(self, fmt: str, *, static: bool = True, text: bool = False) -> QuantOptions:
        """These options with every "the format's default" (None) replaced by ``fmt``'s entry in FORMAT_DEFAULTS.

        "auto" stays "auto" (auto.py chooses); a format with no entry keeps minmax, no equalisation, no correction.
        Not ``static`` (dynamic int8: nothing is calibrated, and the defaults were measured on static files):
        calibration_method None, bias_correction False, equalisation only when asked for. ``text`` (a model with
        integer id inputs): no torch equalisation or bias correction (they transform convolution pairs); OpenVINO
        keeps NNCF's own bias correction.

        Raises:
            ConfigError: a calibration method the format has no calibrator for (the message lists the ones it has);
                equalisation or torch bias correction asked for a text model.
        """
        from dataclasses import replace

        defaults = FORMAT_DEFAULTS.get(fmt, {"calibration_method": "minmax", "equalize": False, "bias_correction": False})
        if text:
            torch_bc = self.bias_correction and fmt != "openvino"
            if self.equalize or torch_bc:
                asked = "--equalize" if self.equalize else "--bias-correction"
                raise ConfigError(
                    f"{asked} transforms convolution layers in torch before quantizing; this is a text model (integer id "
                    f"inputs), which it does not apply to. Leave {asked} out (OpenVINO's --bias-correction is NNCF's own "
                    "and does apply)."
                )
            defaults = {**defaults, "equalize": False, "bias_correction": defaults["bias_correction"] and fmt == "openvino"}
            if defaults["calibration_method"] == "mse" and fmt == "onnx":
                # onnxruntime's histogram collector raised "Too many bins for data range" on a BERT's near-constant
                # tensors (the extended attention mask) here, so static QDQ of a text model calibrates with min/max
                defaults["calibration_method"] = "minmax"
        method = self.calibration_method or defaults["calibration_method"]
        if not static:
            return replace(self, calibration_method=None, bias_correction=False, equalize=bool(self.equalize))
        valid = FORMAT_METHODS.get(fmt, CALIBRATION_METHODS)
        if method != "auto" and method not in valid:
            raise ConfigError(
                f"quantize.calibration_method {method!r} has no calibrator for {fmt}; {fmt} has {', '.join(valid)} "
                f"(and 'auto', which tries them). Pick one of those, or leave the option unset for {fmt}'s measured default."
            )
        return replace(
            self, calibration_method=method,
            equalize=defaults["equalize"] if self.equalize is None else self.equalize,
            bias_correction=defaults["bias_correction"] if self.bias_correction is None else self.bias_correction,
        )

    def with_float_layers(self, layers: tuple[str, ...]) -> QuantOptions:
        from dataclasses import replace

        return replace(self, float_layers=tuple(layers))

    def to_dict(self) -> dict[str, Any]:
        return {"calibration_method": self.calibration_method, "tflite_recipe": self.tflite_recipe,
                "openvino_preset": self.openvino_preset, "float_layers": list(self.float_layers),
                "equalize": self.equalize, "bias_correction": self.bias_correction, "integer_io": self.integer_io}
