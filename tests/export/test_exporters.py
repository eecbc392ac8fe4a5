"""Every exporter passes the same contract (one subclass per format): files, specs from the file, provenance, fp32 parity."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgestill.export import EXPORTERS, Artifact, get_exporter, state_dict_sha256, validate
from edgestill.artifact import sha256_file


@pytest.mark.slow
class ExporterContract:
    fmt: str
    library: str  # the distribution whose version the manifest must carry

    @pytest.fixture(scope="class")
    def exported(self, tmp_path_factory, tiny_cnn, example_inputs, validation_x) -> tuple[Artifact, object]:
        art = get_exporter(self.fmt)(tiny_cnn, example_inputs, staging_dir=tmp_path_factory.mktemp(self.fmt), name=f"tiny-{self.fmt}")
        return art, validate(art, tiny_cnn, validation_x)

    def test_files_are_hashed_and_present(self, exported) -> None:
        art, _ = exported
        assert art.model_file in art.files
        for rel, digest in art.files.items():
            assert sha256_file(art.directory / rel) == digest
        assert not [p for p in art.directory.iterdir() if p.name not in art.files], "stray files left in staging"

    def test_io_specs_come_from_the_file(self, exported) -> None:
        art, _ = exported
        assert [s.shape for s in art.inputs] == [(1, 3, 32, 32)]
        assert [s.shape for s in art.outputs] == [(1, 10)]
        assert art.inputs[0].dtype == "float32" and art.inputs[0].logical_dtype == "float32"
        assert art.format == self.fmt and art.precision == "fp32"

    def test_provenance(self, exported, tiny_cnn) -> None:
        art, _ = exported
        assert art.parent_sha256 == state_dict_sha256(tiny_cnn)
        assert art.versions["torch"] and art.versions[self.library] != "not installed"

    def test_manifest_round_trips(self, exported) -> None:
        art, _ = exported
        loaded = Artifact.load(art.write_manifest())
        assert loaded.to_dict() == json.loads(json.dumps(art.to_dict()))

    def test_fp32_parity_passes(self, exported) -> None:
        _, report = exported
        assert report.passed, report.failures
        (out,) = report.outputs
        assert out.max_abs < 1e-4 and out.top1_agreement == 1.0 and out.cosine > 0.99999
        assert report.n_samples == 64


class TestOnnxExporter(ExporterContract):
    fmt, library = "onnx", "onnx"

    def test_single_self_contained_file_at_opset_20(self, exported) -> None:
        import onnx

        art, _ = exported
        assert list(art.files) == [art.model_file]
        assert {o.domain: o.version for o in onnx.load(str(art.model_path)).opset_import}[""] == 20


class TestTFLiteExporter(ExporterContract):
    fmt, library = "tflite", "litert-torch"


class TestOpenVINOExporter(ExporterContract):
    fmt, library = "openvino", "openvino"

    def test_weights_kept_in_fp32(self, exported) -> None:
        import openvino as ov

        art, _ = exported
        consts = [op for op in ov.Core().read_model(str(art.model_path)).get_ops() if op.get_type_name() == "Constant"]
        assert consts and all(c.get_element_type() != ov.Type.f16 for c in consts)


def test_every_registered_exporter_has_a_contract_test() -> None:
    get_exporter("onnx")  # registers all
    covered = {cls.fmt for cls in ExporterContract.__subclasses__()}
    missing = set(EXPORTERS.names()) - covered
    assert not missing, f"exporters without an ExporterContract subclass: {sorted(missing)}"


def test_parent_hash_changes_with_the_weights(tiny_cnn) -> None:
    import copy

    import torch

    other = copy.deepcopy(tiny_cnn)
    with torch.no_grad():
        other[-1].bias[0] += 1e-3
    assert state_dict_sha256(other) != state_dict_sha256(tiny_cnn)
    assert state_dict_sha256(copy.deepcopy(tiny_cnn)) == state_dict_sha256(tiny_cnn)


def test_unknown_format_names_the_valid_ones() -> None:
    from edgestill.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="Did you mean 'tflite'"):
        get_exporter("tflit")


def test_example_inputs_must_be_tensors(tmp_path, tiny_cnn) -> None:
    from edgestill.errors import InputError

    with pytest.raises(InputError, match="tuple of tensors"):
        get_exporter("onnx")(tiny_cnn, (np.zeros((1, 3, 32, 32), np.float32),), staging_dir=tmp_path, name="x")


@pytest.mark.slow
def test_openvino_conversion_sends_no_telemetry(tmp_path, monkeypatch, tiny_cnn, example_inputs) -> None:
    from openvino_telemetry.backend.backend_ga4 import GA4Backend

    sent = []

    def record(self, message) -> None:
        sent.append(message)

    monkeypatch.setattr(GA4Backend, "send", record)
    get_exporter("openvino")(tiny_cnn, example_inputs, staging_dir=tmp_path, name="t")
    assert sent == []
    assert GA4Backend.send is record  # restored after the conversion: other code in the process is untouched
