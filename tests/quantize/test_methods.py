"""Dynamic int8 per format, ai-edge-quantizer recipes and ONNX calibration methods: parity floors vs torch (SQNR)."""

from __future__ import annotations

import pytest

from edgestill.compress.quantize import QuantOptions, quantize_export
from edgestill.errors import ConfigError
from edgestill.export import validate

pytestmark = pytest.mark.slow
SQNR_FLOOR_DB = 25.0


def _check(art, model, x) -> float:
    report = validate(art, model, x)
    (out,) = report.outputs
    assert out.sqnr_db >= SQNR_FLOOR_DB and out.top1_agreement >= 0.95, out
    assert out.max_abs > 1e-6, "identical to float: nothing was quantized"
    return out.sqnr_db


@pytest.mark.parametrize(("fmt", "method"), [("onnx", "onnxruntime.quantize_dynamic"), ("openvino", "nncf.compress_weights"),
                                             ("tflite", "ai_edge_quantizer recipe dynamic_wi8_afp32")])
def test_dynamic_int8_needs_no_calibration_and_keeps_parity(tmp_path, tiny_cnn, example_inputs, validation_x, fmt, method) -> None:
    art = quantize_export(tiny_cnn, example_inputs, format=fmt, precision="int8-dynamic", staging_dir=tmp_path, name="d")
    assert art.precision == "int8-dynamic" and art.calibration is None
    assert art.quantization["method"].startswith(method) and art.quantization["weights"] == "int8"
    _check(art, tiny_cnn, validation_x)


def test_tflite_ai_edge_quantizer_static_recipe_has_integer_io(tmp_path, tiny_cnn, example_inputs, calibration_x, validation_x) -> None:
    art = quantize_export(tiny_cnn, example_inputs, format="tflite", calibration=calibration_x, staging_dir=tmp_path, name="s",
                          options=QuantOptions(tflite_recipe="aeq-static", integer_io=True))
    assert art.quantization["recipe"] == "aeq-static"
    assert all(s.dtype == "int8" and s.scale > 0 for s in (*art.inputs, *art.outputs))  # recorded; the session hides it
    _check(art, tiny_cnn, validation_x)


def test_onnx_calibration_methods_set_different_ranges(tmp_path, tiny_cnn, example_inputs, calibration_x, validation_x) -> None:
    import onnx
    from onnx import numpy_helper

    scales = {}
    for method in ("minmax", "percentile"):
        art = quantize_export(tiny_cnn, example_inputs, format="onnx", calibration=calibration_x, staging_dir=tmp_path / method,
                              name="m", options=QuantOptions(calibration_method=method))
        assert art.quantization["calibrate_method"] == {"minmax": "MinMax", "percentile": "Percentile"}[method]
        _check(art, tiny_cnn, validation_x)
        g = onnx.load(str(art.model_path)).graph
        inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        q_in = next(n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] == g.input[0].name)
        scales[method] = float(inits[q_in.input[1]])
    assert scales["percentile"] < scales["minmax"]  # the percentile calibrator clips the input's extreme values


def test_mixed_needs_static_and_known_layer_names(tmp_path, tiny_cnn, example_inputs, calibration_x) -> None:
    with pytest.raises(ConfigError, match="'0.O' is not a Conv/Linear layer.*Did you mean '0.0'"):
        quantize_export(tiny_cnn, example_inputs, format="onnx", calibration=calibration_x, staging_dir=tmp_path, name="x",
                        options=QuantOptions(float_layers=("0.O",)))
    with pytest.raises(ConfigError, match="applies to int8-static"):
        quantize_export(tiny_cnn, example_inputs, format="onnx", precision="int8-dynamic", staging_dir=tmp_path, name="x",
                        options=QuantOptions(float_layers=("0.0",)))
    with pytest.raises(ConfigError, match="does not make int8-static"):
        quantize_export(tiny_cnn, example_inputs, format="tflite", calibration=calibration_x, staging_dir=tmp_path, name="x",
                        options=QuantOptions(tflite_recipe="aeq-dynamic"))
