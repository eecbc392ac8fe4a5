"""fp16 per format, dynamic batch, and ONNX external data: real conversions of the tiny CNN."""

from __future__ import annotations

import numpy as np
import pytest

from edgestill.export import Artifact, ExportConfig, export
from edgestill.artifact import sha256_file


@pytest.fixture(scope="module")
def fp16_dynamic(tmp_path_factory, tiny_cnn, example_inputs, validation_x):
    out = tmp_path_factory.mktemp("fp16")
    config = ExportConfig(formats=("onnx", "tflite", "openvino"), precisions=("fp16",), name="t", dynamic_batch=True)
    return out, export(tiny_cnn, example_inputs, config, out, validation_inputs=validation_x)


@pytest.mark.slow
def test_fp16_passes_its_own_tolerances_in_every_format(fp16_dynamic) -> None:
    out, results = fp16_dynamic
    assert [(r.format, r.passed) for r in results] == [("onnx", True), ("tflite", True), ("openvino", True)]
    for r in results:
        art = Artifact.load(out / f"{r.name}.manifest.json")
        assert art.precision == "fp16" and art.quantization["weights"] == "float16"
        assert [s.dtype for s in art.inputs] == ["float32"] and [s.dtype for s in art.outputs] == ["float32"]
        assert art.validation["threshold"]["min_cosine"] == 0.999  # the fp16 threshold, not fp32's
        (p,) = r.report.outputs
        assert p.top1_agreement == 1.0 and p.cosine > 0.9999 and 0 < p.max_abs < 1e-2


@pytest.mark.slow
def test_fp16_files_hold_half_precision_weights(fp16_dynamic) -> None:
    import onnx
    import openvino as ov
    from ai_edge_litert.interpreter import Interpreter

    out, _ = fp16_dynamic
    inits = onnx.load(str(out / "t-onnx-fp16.onnx")).graph.initializer
    assert {i.data_type for i in inits if len(i.dims) == 4} == {onnx.TensorProto.FLOAT16}  # conv weights
    consts = [op for op in ov.Core().read_model(str(out / "t-openvino-fp16.xml")).get_ops() if op.get_type_name() == "Constant"]
    assert any(c.get_element_type() == ov.Type.f16 for c in consts)
    tensors = Interpreter(model_path=str(out / "t-tflite-fp16.tflite")).get_tensor_details()
    assert sum(t["dtype"] == np.float16 for t in tensors) >= 4  # 3 conv weights + the linear weight


@pytest.mark.slow
def test_dynamic_batch_where_the_format_allows(fp16_dynamic) -> None:
    from edgestill.runtimes import load

    out, results = fp16_dynamic
    by_format = {r.format: r for r in results}
    for fmt in ("onnx", "openvino"):
        art = by_format[fmt].artifact
        assert art.inputs[0].shape[0] == "batch" and art.source["dynamic_batch"] is True
        got = load(art).run({art.inputs[0].name: np.zeros((3, 3, 32, 32), np.float32)})
        assert got[art.outputs[0].name].shape == (3, 10)
    tfl = by_format["tflite"]
    assert tfl.artifact.inputs[0].shape == (1, 3, 32, 32) and "static batch" in tfl.notes[0]


@pytest.mark.slow
def test_onnx_above_the_size_threshold_uses_external_data(tmp_path, tiny_cnn, example_inputs, validation_x) -> None:
    import onnx

    from edgestill.export.onnx import export_onnx

    art = export_onnx(tiny_cnn, example_inputs, staging_dir=tmp_path, name="big", external_data_threshold_bytes=1024)
    assert sorted(art.files) == ["big.onnx", "big.onnx.data"] and art.source["external_data"] is True
    model = onnx.load(str(art.model_path), load_external_data=False)
    assert any(i.data_location == onnx.TensorProto.EXTERNAL for i in model.graph.initializer)
    assert all(sha256_file(tmp_path / f) == h for f, h in art.files.items())
    from edgestill.export import validate

    assert validate(art, tiny_cnn, validation_x[:8]).passed  # below the default threshold: one file (test_exporters)
