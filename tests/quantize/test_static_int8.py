"""Static int8 quantizers: one contract for every format (SQNR and top-1 floors vs torch), calibration checks."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from edgestill.compress.quantize import QUANTIZERS, get_quantizer, quantize_export
from edgestill.errors import InputError
from edgestill.export import state_dict_sha256, validate

SQNR_FLOOR_DB = 25.0  # measured 40-50 dB on this model; broken scales give < 10 dB
TOP1_FLOOR = 0.95


@pytest.mark.slow
class QuantizerContract:
    fmt: str

    @pytest.fixture(scope="class")
    def quantized(self, tmp_path_factory, tiny_cnn, example_inputs, calibration_x, validation_x):
        before = state_dict_sha256(tiny_cnn)
        ids = [f"train/{i}" for i in range(len(calibration_x))]
        art = quantize_export(
            tiny_cnn, example_inputs, format=self.fmt, calibration=calibration_x, calibration_ids=ids,
            staging_dir=tmp_path_factory.mktemp(f"q-{self.fmt}"), name=f"tiny-{self.fmt}-int8",
        )
        return {"art": art, "report": validate(art, tiny_cnn, validation_x), "before": before, "ids": ids}

    def test_precision_and_quantization_recorded(self, quantized) -> None:
        art = quantized["art"]
        assert art.precision == "int8-static" and art.format == self.fmt
        assert art.quantization and art.quantization["weights"] == "int8" and art.quantization["activations"] in ("int8", "uint8")

    def test_calibration_manifest_identifies_the_samples(self, quantized, calibration_x) -> None:
        cal = quantized["art"].calibration
        assert cal["n"] == 32 and cal["sample_ids"] == quantized["ids"]
        assert cal["sha256"] == hashlib.sha256(b"".join(s.tobytes() for s in calibration_x)).hexdigest()

    def test_parity_with_torch_above_floors(self, quantized) -> None:
        report = quantized["report"]
        (out,) = report.outputs
        assert out.sqnr_db >= SQNR_FLOOR_DB, out
        assert out.top1_agreement >= TOP1_FLOOR, out
        assert report.passed, report.failures

    def test_quantization_is_not_a_no_op(self, quantized) -> None:
        (out,) = quantized["report"].outputs
        assert out.max_abs > 1e-5, "int8 output identical to fp32: nothing was quantized"

    def test_torch_model_left_unchanged(self, quantized, tiny_cnn) -> None:
        assert state_dict_sha256(tiny_cnn) == quantized["before"]


class TestOnnxStatic(QuantizerContract):
    fmt = "onnx"

    def test_graph_has_qdq_nodes(self, quantized) -> None:
        import onnx

        ops = {n.op_type for n in onnx.load(str(quantized["art"].model_path)).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops


class TestTFLiteStatic(QuantizerContract):
    fmt = "tflite"

    def test_file_io_is_float_by_default(self, quantized) -> None:
        art = quantized["art"]  # int8 I/O on request: tests/quantize/test_tflite_int8.py
        for spec in (*art.inputs, *art.outputs):
            assert spec.dtype == "float32" and spec.scale is None and spec.zero_point is None
        assert art.quantization["io"] == "float"


class TestOpenVINOStatic(QuantizerContract):
    fmt = "openvino"

    def test_graph_has_fake_quantize(self, quantized) -> None:
        import openvino as ov

        ops = {op.get_type_name() for op in ov.Core().read_model(str(quantized["art"].model_path)).get_ops()}
        assert "FakeQuantize" in ops


def test_every_registered_quantizer_has_a_contract_test() -> None:
    get_quantizer("onnx")  # registers all
    covered = {cls.fmt for cls in QuantizerContract.__subclasses__()}
    missing = set(QUANTIZERS.names()) - covered
    assert not missing, f"quantizers without a QuantizerContract subclass: {sorted(missing)}"


@pytest.mark.parametrize(
    ("calibration", "message"),
    [
        (np.zeros((0, 3, 32, 32), np.float32), "empty"),
        (np.zeros((4, 3, 16, 16), np.float32), r"shape \[4, 3, 16, 16\]"),
        (np.zeros((3, 32, 32), np.float32), "shape"),
        (np.full((4, 3, 32, 32), np.nan, np.float32), "NaN or Inf in 4 of 4"),
        (np.where(np.arange(4)[:, None, None, None] == 2, np.inf, np.zeros((4, 3, 32, 32), np.float32)), "NaN or Inf in 1 of 4"),
        (np.array([["a"]]), "numeric"),
    ],
    ids=["empty", "wrong-shape", "no-sample-axis", "nan", "inf", "strings"],
)
@pytest.mark.parametrize("fmt", ["onnx", "tflite", "openvino"])
def test_bad_calibration_is_an_input_error_before_any_conversion(tmp_path, tiny_cnn, example_inputs, fmt, calibration, message) -> None:
    with pytest.raises(InputError, match=message):
        quantize_export(tiny_cnn, example_inputs, format=fmt, calibration=calibration, staging_dir=tmp_path / "s", name="x")
    assert not (tmp_path / "s").exists()


def test_calibration_ids_must_match_the_samples(tmp_path, tiny_cnn, example_inputs, calibration_x) -> None:
    with pytest.raises(InputError, match="3 ids for 32"):
        quantize_export(
            tiny_cnn, example_inputs, format="onnx", calibration=calibration_x, calibration_ids=["a", "b", "c"],
            staging_dir=tmp_path, name="x",
        )
