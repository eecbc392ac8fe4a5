"""The zoo × {onnx, tflite, openvino} × fp32 matrix: each cell exports at the model's standard input, passes
validation against torch and is published with its manifest.

The whole matrix takes tens of minutes on a 2-core machine (perf/zoo_matrix.py prints per-cell seconds), so
only the cheap cells (the text transformer in all three formats, SqueezeNet 1.1 in OpenVINO) run by
default; the others carry ``@pytest.mark.zoo``, which pyproject's addopts deselect (``-m "not zoo"``):
run them with ``make test-zoo`` (``pytest -m zoo tests/export/test_zoo_matrix.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

from edgestill.export import Artifact, ExportConfig, export
from edgestill.artifact import sha256_file
from edgestill.models import ZOO, create_model, default_num_classes, example_input, sample_inputs, standard_input

FORMATS = ("onnx", "tflite", "openvino")
EXTENSIONS = {"onnx": ".onnx", "tflite": ".tflite", "openvino": ".xml"}
CHEAP = {("text_transformer", "onnx"), ("text_transformer", "tflite"), ("text_transformer", "openvino"),
         ("squeezenet1_1", "openvino")}
N_VALIDATION = 6


def _cells():
    for name in ZOO:
        for fmt in FORMATS:
            marks = [pytest.mark.slow] + ([] if (name, fmt) in CHEAP else [pytest.mark.zoo])
            yield pytest.param(name, fmt, marks=marks, id=f"{name}-{fmt}")


@pytest.fixture(scope="module")
def zoo_model():
    """Build each zoo model once per module (the BN statistics pass at 224×224 takes seconds)."""
    import torch

    torch.set_num_threads(1)
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = create_model(name, num_classes=default_num_classes(name), seed=0).eval()
        return cache[name]

    return get


@pytest.mark.parametrize("name,fmt", _cells())
def test_zoo_cell_exports_and_passes_validation(name, fmt, tmp_path, zoo_model):
    spec = standard_input(name)
    validation = sample_inputs(name, N_VALIDATION, seed=1)
    (result,) = export(zoo_model(name), (example_input(name),), ExportConfig(formats=(fmt,), name=name), tmp_path,
                       validation_inputs=validation)
    print(f"{name} {fmt}: export {result.export_seconds:.1f} s, validate {result.validate_seconds:.1f} s")

    assert result.passed and result.artifact is not None, result.error
    (parity,) = result.report.outputs
    assert parity.top1_agreement == 1.0 and parity.cosine > 0.99999
    assert result.report.n_samples == N_VALIDATION
    artifact = Artifact.load(tmp_path / f"{name}-{fmt}-fp32.manifest.json")
    assert (artifact.format, artifact.precision) == (fmt, "fp32")
    assert artifact.model_file.endswith(EXTENSIONS[fmt])
    assert all(sha256_file(tmp_path / f) == h for f, h in artifact.files.items())
    assert artifact.validation["passed"] and artifact.validation["n_samples"] == N_VALIDATION
    (inp,) = artifact.inputs
    assert [int(d) for d in inp.shape] == list(spec.shape)
    assert (inp.logical_dtype or inp.dtype) == spec.dtype
    (out,) = artifact.outputs
    assert int(out.shape[-1]) == default_num_classes(name)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".staging") or p.name.endswith(".rejected")]
    assert not leftovers


def test_every_zoo_model_has_a_default_cell_or_a_zoo_cell():
    cells = {(p.values[0], p.values[1]) for p in _cells()}
    assert cells == {(m, f) for m in ZOO for f in FORMATS}
    assert {f for _, f in CHEAP} == set(FORMATS)  # at least one cheap cell per format runs by default
    assert np.issubdtype(sample_inputs("text_transformer", 2).dtype, np.integer)
