"""export_model(): sources other than a torch module in memory (.pt2 program, ONNX file), data and sample handling."""

from __future__ import annotations

import numpy as np
import pytest

from edgestill.errors import ConfigError, InputError
from edgestill.chain.convert import export_model
from edgestill.export import Artifact, ExportConfig


@pytest.mark.slow
def test_pt2_program_exports_and_validates(tmp_path, tiny_cnn, example_inputs) -> None:
    import torch

    from edgestill.artifact import sha256_file

    torch.export.save(torch.export.export(tiny_cnn, example_inputs), tmp_path / "tiny.pt2")
    (result,) = export_model(str(tmp_path / "tiny.pt2"), export=ExportConfig(formats=("onnx",), name="p"), out_dir=tmp_path / "out", samples=8)
    assert result.passed and result.report.n_samples == 8
    art = Artifact.load(tmp_path / "out" / "p-onnx-fp32.manifest.json")
    assert art.inputs[0].shape == (1, 3, 32, 32)
    assert art.source["kind"] == "exported-program" and art.source["spec"] == str(tmp_path / "tiny.pt2")
    assert art.source["sha256"] == sha256_file(tmp_path / "tiny.pt2")
    assert "random inputs" in result.notes[0]


@pytest.mark.slow
def test_onnx_file_becomes_an_openvino_ir_checked_against_the_onnx_file(tmp_path, tiny_cnn, example_inputs) -> None:
    from edgestill.artifact import sha256_file
    from edgestill.export.onnx import write_onnx

    src = tmp_path / "src.onnx"
    write_onnx(tiny_cnn, example_inputs, src)
    out = tmp_path / "out"
    results = export_model(str(src), export=ExportConfig(formats=("openvino",), precisions=("fp32", "fp16"), name="ir"),
                           out_dir=out, samples=8)
    assert [(r.precision, r.passed) for r in results] == [("fp32", True), ("fp16", True)]
    art = Artifact.load(out / "ir-openvino-fp32.manifest.json")
    assert art.parent_sha256 == sha256_file(src) and art.source["kind"] == "onnx"
    assert results[0].report.outputs[0].max_abs < 1e-4 and results[0].report.runtime == "openvino"
    with pytest.raises(ConfigError, match="converts to OpenVINO fp32/fp16 only; tflite"):
        export_model(str(src), export=ExportConfig(formats=("tflite",)), out_dir=tmp_path / "o2")
    with pytest.raises(ConfigError, match="converts to OpenVINO fp32/fp16 only; int8-static.*and for int8"):
        export_model(str(src), export=ExportConfig(formats=("openvino",), precisions=("int8-static",)), out_dir=tmp_path / "o2")
    assert not (tmp_path / "o2").exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: np.savez(p, y=np.zeros(3)), "no array 'x'"),
        (lambda p: np.savez(p, x=np.zeros((4, 3, 16, 16), np.float32)), r"x has shape \[4, 3, 16, 16\]"),
        (lambda p: np.savez(p, x=np.full((4, 3, 32, 32), np.nan, np.float32)), "NaN or Inf"),
        (lambda p: p.write_bytes(b"junk"), r"not (a readable \.npz|an \.npz)"),
    ],
    ids=["no-x", "wrong-shape", "nan", "not-npz"],
)
def test_bad_data_is_refused_before_anything_is_written(tmp_path, make, message) -> None:
    path = tmp_path / "d.npz"
    make(path)
    with pytest.raises(InputError, match=message):
        export_model("tests.export.models:tiny_cnn", input_shape="1x3x32x32", export=ExportConfig(formats=("onnx",)),
                     out_dir=tmp_path / "out", data=path)
    assert not (tmp_path / "out").exists()


def test_int8_static_without_data_calibrates_on_random_inputs_only_when_asked(tmp_path) -> None:
    from edgestill.chain.convert import _samples
    from edgestill.models.loading import InputShape

    shape = InputShape(dims=(1, 3, 8, 8))
    val, calib, ids, labels = _samples(None, [shape], 5, 300, 0, labels=True)
    assert val.shape == (5, 3, 8, 8) and calib.shape == (100, 3, 8, 8) and ids[0] == "random-0" and labels is None
    x = np.arange(20 * 3 * 8 * 8, dtype=np.float32).reshape(20, 3, 8, 8)
    val, calib, ids, labels = _samples(x, [shape], 5, 10, 0)
    assert np.array_equal(val, x[:5]) and np.array_equal(calib, x[5:15]) and ids[:2] == ["x[5]", "x[6]"]  # no overlap


def test_labels_in_data_are_the_validation_rows_labels_and_must_be_integers(tmp_path) -> None:
    """Bad inputs tried: float labels, labels of another length (only refused when int8 cells need them)."""
    from edgestill.chain.convert import _samples
    from edgestill.models.loading import InputShape

    shape = InputShape(dims=(1, 3, 8, 8))
    x = np.zeros((12, 3, 8, 8), np.float32)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=np.arange(12))
    _, _, _, labels = _samples(path, [shape], 5, 10, 0, labels=True)
    assert labels.tolist() == [0, 1, 2, 3, 4]
    for bad in (np.linspace(0, 1, 12), np.arange(11)):
        np.savez(path, x=x, y=bad)
        with pytest.raises(InputError, match="one integer class id per sample"):
            _samples(path, [shape], 5, 10, 0, labels=True)
        assert _samples(path, [shape], 5, 10, 0)[3] is None  # float exports ignore y
