"""What to quantize and how: precisions, calibration methods and per-format recipes (a frozen config). Torch-free."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from edgestill.errors import ConfigError, did_you_mean

CALIBRATION_METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile", "mse", "auto")
TFLITE_RECIPES: tuple[str, ...] = ("pt2e", "aeq-static", "aeq-dynamic", "aeq-weight-only")
OPENVINO_PRESETS: tuple[str, ...] = ("performance", "mixed")
_STATIC_RECIPES = ("pt2e", "aeq-static")


def check_choice(key: str, value: Any, valid: tuple[str, ...]) -> str:
    """Return ``value`` when it is one of ``valid``; otherwise raise a ConfigError naming the choices."""
    if value not in valid:
        raise ConfigError(f"{key}: unknown value {value!r}.{did_you_mean(str(value), valid)} Valid: {', '.join(valid)}.")
    return value


@dataclass(frozen=True, kw_only=True)
class QuantOptions:
    """How one format is quantized.

    calibration_method: how activation ranges are set from the calibration data (static int8 only):
        onnx: onnxruntime's MinMax / Entropy / Percentile calibrators; openvino: NNCF's MINMAX, or its
        MEAN_PERCENTILE estimator for "percentile" and "entropy" (NNCF has no entropy calibrator; recorded);
        tflite pt2e: a histogram observer whatever the choice (recorded).
    tflite_recipe: "pt2e" (litert-torch PT2E static per-channel), ai-edge-quantizer "aeq-static",
        "aeq-dynamic" (dynamic-range int8) or "aeq-weight-only"; None picks pt2e for static, aeq-dynamic for dynamic.
    openvino_preset: NNCF preset, "performance" (symmetric activations, NNCF's default for CNNs) or "mixed"
        (asymmetric). On the demo student "performance" measured int8/fp32 p50 1.16 vs 1.31 for "mixed" (5
        interleaved rounds, shared machine) at the same accuracy.
    float_layers: torch module names (Conv/Linear layers) kept in float: the artifact's precision is "mixed".
    equalize: cross-layer equalisation of consecutive convolutions in torch before quantizing (data-free
        quantization); None: the format's measured default.
    bias_correction: correct the bias shift int8 weights cause (NNCF fast/full bias correction, or in torch from
        the calibration data); None: the format's measured default.
    integer_io: int8 input/output tensors instead of float ones (static int8 only; for devices that need a fully
        integer file). The default keeps float I/O: the file quantizes inside and dequantizes its outputs.
    """

    calibration_method: Literal["minmax", "entropy", "percentile", "mse", "auto"] = "minmax"
    tflite_recipe: Literal["pt2e", "aeq-static", "aeq-dynamic", "aeq-weight-only"] | None = None
    openvino_preset: Literal["mixed", "performance"] = "performance"
    float_layers: tuple[str, ...] = ()
    equalize: bool | None = None
    bias_correction: bool | None = None
    integer_io: bool = False

    def __post_init__(self) -> None:
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
        """The TFLite recipe used for ``precision``.

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

    def with_float_layers(self, layers: tuple[str, ...]) -> QuantOptions:
        from dataclasses import replace

        return replace(self, float_layers=tuple(layers))

    def to_dict(self) -> dict[str, Any]:
        return {"calibration_method": self.calibration_method, "tflite_recipe": self.tflite_recipe,
                "openvino_preset": self.openvino_preset, "float_layers": list(self.float_layers),
                "equalize": self.equalize, "bias_correction": self.bias_correction, "integer_io": self.integer_io}
