"""A model built to break parity in one layer is rejected, and the report names that layer; unsupported ops are named."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgestill.errors import ParityError, RuntimeFailure, UnsupportedError
from edgestill.export import ExportConfig, Tolerances, export
from edgestill.export.base import conversion_error
from tests.export.models import BrokenNet, EigNet


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_a_layer_that_changes_under_export_is_rejected_and_named(tmp_path, fmt, validation_x) -> None:
    import torch

    model = BrokenNet().eval()
    with pytest.raises(ParityError) as info:
        export(model, (torch.from_numpy(validation_x[:1]),), ExportConfig(formats=(fmt,), name="b"), tmp_path,
               validation_inputs=validation_x[:16])
    message = str(info.value)
    assert "module 'shift' (ExportOnlyOffset)" in message and "max_abs" in message and "cosine" in message
    assert info.value.exit_code == 1 and info.value.failures[0]["metric"] == "max_abs"
    (result,) = info.value.results
    assert result.divergence["found"] and result.divergence["module"] == "shift"
    assert result.divergence["max_abs"] == pytest.approx(0.5, abs=1e-5)  # the offset itself, found at its own node
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names and all(n.endswith(".rejected") for n in names), names
    kept = json.loads((tmp_path / f"b-{fmt}-fp32.manifest.json.rejected").read_text())
    assert kept["validation"]["divergence"]["module"] == "shift"


@pytest.mark.slow
def test_localisation_finds_nothing_in_a_faithful_export(tmp_path, tiny_cnn, example_inputs, validation_x) -> None:
    from edgestill.export.divergence import localize_divergence

    d = localize_divergence(tiny_cnn, example_inputs, validation_x, threshold=Tolerances().fp32, work_dir=tmp_path)
    assert not d.found and d.compared >= 5 and "no module diverges" in d.note


@pytest.mark.slow
def test_unsupported_op_names_op_format_and_what_to_try(tmp_path) -> None:
    import torch

    with pytest.raises(UnsupportedError, match=r"ONNX .*no conversion for op aten\.linalg_eig.*Try instead") as info:
        export(EigNet(), (torch.randn(1, 3, 8, 8),), ExportConfig(formats=("onnx",)), tmp_path / "o",
               validation_inputs=np.zeros((1, 3, 8, 8), np.float32))
    assert info.value.exit_code == 2
    assert not [p for p in (tmp_path / "o").iterdir() if not p.name.startswith(".")]


def test_conversion_errors_per_format() -> None:
    cases = [
        ("tflite", RuntimeError("Lowering not found: aten.linalg_eig.default"), "TFLite (litert-torch) has no conversion for op aten.linalg_eig.default"),
        ("openvino", RuntimeError("Summary:\n-- No conversion rule found for operations: aten::linalg_eigvals\n"), "OpenVINO (ov.convert_model) has no conversion for op aten::linalg_eigvals"),
        ("onnx", RuntimeError("Could not guard on data-dependent expression Eq(u0, 1)"), "data-dependent control flow"),
    ]
    for fmt, exc, message in cases:
        err = conversion_error(exc, fmt, EigNet())
        assert isinstance(err, UnsupportedError) and message in str(err), str(err)
        assert "EigNet" in str(err)
    other = conversion_error(ValueError("disk full"), "onnx", EigNet())
    assert isinstance(other, RuntimeFailure) and not isinstance(other, UnsupportedError) and "disk full" in str(other)
