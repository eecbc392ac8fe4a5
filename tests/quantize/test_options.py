"""Quantization settings, calibration selection and checks, the budget config: fast, torch-free unit tests."""

from __future__ import annotations

import numpy as np
import pytest

from edgestill.compress.quantize import QuantizeConfig, QuantOptions, calibration_warnings, select_calibration
from edgestill.compress.quantize.budget import _fallback_sizes
from edgestill.errors import ConfigError


def test_quant_options_reject_unknown_choices_with_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="'entropyy'.*Did you mean 'entropy'.*minmax, entropy, percentile"):
        QuantOptions(calibration_method="entropyy")
    with pytest.raises(ConfigError, match="tflite_recipe"):
        QuantOptions(tflite_recipe="int4")
    with pytest.raises(ConfigError, match="module names"):
        QuantOptions(float_layers=("conv", 3))


def test_tflite_recipe_must_match_the_precision() -> None:
    assert QuantOptions().recipe_for("int8-static") == "pt2e"
    assert QuantOptions().recipe_for("int8-dynamic") == "aeq-dynamic"
    with pytest.raises(ConfigError, match="does not make int8-static"):
        QuantOptions(tflite_recipe="aeq-dynamic").recipe_for("int8-static")
    with pytest.raises(ConfigError, match="does not make int8-dynamic"):
        QuantOptions(tflite_recipe="pt2e").recipe_for("int8-dynamic")


@pytest.mark.parametrize("drop", [-0.5, float("nan"), float("inf"), "1", True])
def test_budget_must_be_a_finite_non_negative_number(drop) -> None:
    with pytest.raises(ConfigError, match="max-accuracy-drop"):
        QuantizeConfig(max_accuracy_drop=drop)


def test_quantize_config_checks_formats_and_precision() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'tflite'"):
        QuantizeConfig(formats=("tflit",))
    with pytest.raises(ConfigError, match="'int4'.*Valid: int8-dynamic, int8-static"):
        QuantizeConfig(precision="int4")
    with pytest.raises(ConfigError, match="twice"):
        QuantizeConfig(formats=("onnx", "onnx"))
    assert QuantizeConfig(formats="onnx").formats == ("onnx",)


def test_calibration_is_stratified_by_class_and_deterministic() -> None:
    labels = np.repeat(np.arange(10), [500, 50, 50, 50, 50, 50, 50, 50, 50, 100])
    idx = select_calibration(len(labels), labels=labels, n=100, seed=3)
    assert len(idx) == 100 and len(set(idx.tolist())) == 100
    counts = np.bincount(labels[idx], minlength=10)
    assert (counts >= 1).all()  # every class present
    assert 45 <= counts[0] <= 55 and 9 <= counts[9] <= 11  # in proportion to the class shares (50%, 10%)
    assert np.array_equal(idx, select_calibration(len(labels), labels=labels, n=100, seed=3))
    assert len(select_calibration(20, n=300)) == 20  # fewer available than asked: all of them


def test_calibration_warnings_flag_few_samples_and_a_shifted_distribution() -> None:
    rng = np.random.default_rng(0)
    eval_x = rng.standard_normal((200, 3, 4, 4)).astype(np.float32)
    same = rng.standard_normal((100, 3, 4, 4)).astype(np.float32)
    assert calibration_warnings(same, eval_x) == []
    few = calibration_warnings(same[:8], eval_x)
    assert len(few) == 1 and "only 8 calibration samples" in few[0]
    shifted = same.copy()
    shifted[:, 1] = shifted[:, 1] * 5 + 3  # channel 1 unlike the eval data (e.g. un-normalised inputs)
    (msg,) = calibration_warnings(shifted, eval_x)
    assert "unlike the eval data in 1 of 3 channels (channel 1" in msg


def test_fallback_grows_one_layer_at_a_time_then_by_half() -> None:
    assert _fallback_sizes(3) == [1, 2, 3]
    assert _fallback_sizes(12) == [1, 2, 3, 4, 6, 9, 12]
    assert _fallback_sizes(0) == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("calibration_samples", 0, "calibration_samples must be a whole number >= 1"),
        ("calibration_samples", 2.5, "calibration_samples must be a whole number >= 1"),
        ("calibration_samples", True, "calibration_samples must be a whole number >= 1"),
        ("max_float_layers", -1, "max_float_layers must be an integer >= 0"),
        ("time_budget_s", -1, "--time-budget must be seconds >= 0"),
        ("name", "../student", "not a usable file name stem"),
        ("bench_latency", "yes", "bench_latency must be true or false"),
        ("options", {"calibration_method": "minmax"}, "must be a QuantOptions"),
    ],
    ids=["zero-calibration", "fractional-calibration", "bool-calibration", "negative-float-layers", "negative-time",
         "path-as-name", "string-bool", "dict-options"],
)
def test_quantize_config_refuses_bad_values_with_a_config_error(field, value, message) -> None:
    """The one quantize config (API, CLI, recipe) validates every field on construction; bad inputs named in the ids."""
    with pytest.raises(ConfigError, match=message):
        QuantizeConfig(**{field: value})


def test_quantize_config_carries_what_a_recipe_needs() -> None:
    config = QuantizeConfig()
    assert config.calibration_samples == 300 and config.max_accuracy_drop == 1.0 and config.bench_latency is True
    assert isinstance(config.options, QuantOptions) and config.formats == ("onnx",) and config.precision == "int8-static"


def test_quantize_config_checks_the_precision_against_each_formats_quantizer(monkeypatch) -> None:
    """A format whose quantizer does not declare a precision refuses it (the registry, not a hand-written list, decides)."""
    import dataclasses

    from edgestill.compress.quantize.base import QUANTIZERS

    spec = QUANTIZERS.get("tflite")
    monkeypatch.setitem(QUANTIZERS._items, "tflite", dataclasses.replace(spec, precisions=("int8-static",)))
    with pytest.raises(ConfigError, match="makes int8-static, not 'int8-dynamic'"):
        QuantizeConfig(formats=("onnx", "tflite"), precision="int8-dynamic")
    assert QuantizeConfig(formats=("onnx",), precision="int8-dynamic").precision == "int8-dynamic"


def test_integer_io_refused_where_no_format_makes_it():
    """Bad inputs tried: --integer-io with int8-dynamic, and with onnx/openvino (float I/O only there)."""
    with pytest.raises(ConfigError, match="int8-static"):
        QuantizeConfig(formats=("tflite",), precision="int8-dynamic", options=QuantOptions(integer_io=True))
    with pytest.raises(ConfigError, match="TFLite files only"):
        QuantizeConfig(formats=("onnx", "tflite"), options=QuantOptions(integer_io=True))
    assert QuantizeConfig(formats=("tflite",), options=QuantOptions(integer_io=True)).options.integer_io
