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


def test_registries_declare_precisions_readable_without_importing_torch() -> None:
    """The tables (formats × precisions) are data: reading them imports no torch and no format library."""
    import subprocess
    import sys

    code = (
        "import sys, json\n"
        "from edgestill.export.base import EXPORTERS\n"
        "from edgestill.compress.quantize.base import QUANTIZERS\n"
        "table = {k: {n: list(r.get(n).precisions) for n in r.names()} for k, r in (('export', EXPORTERS), ('quantize', QUANTIZERS))}\n"
        "heavy = sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'openvino', 'litert_torch', 'nncf') if m in sys.modules)\n"
        "print(json.dumps({'table': table, 'heavy': heavy}))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["heavy"] == []
    assert doc["table"]["export"] == {f: ["fp32", "fp16"] for f in ("onnx", "openvino", "tflite")}
    assert doc["table"]["quantize"] == {f: ["int8-static", "int8-dynamic"] for f in ("onnx", "openvino", "tflite")}


def test_every_spec_loads_the_writer_it_names() -> None:
    for name in EXPORTERS.names():
        spec = EXPORTERS.get(name)
        assert spec.format == name and callable(spec.load()) and get_exporter(name) is spec.load()


@pytest.mark.parametrize("precision", ["int8-static", "mixed", "fp8"], ids=["int8", "mixed", "unknown"])
def test_a_writer_refuses_a_precision_it_does_not_declare(tmp_path, tiny_cnn, example_inputs, precision) -> None:
    """Bad inputs tried: an int8 precision, the 'mixed' outcome, a made-up name; nothing is written."""
    from edgestill.errors import ConfigError

    with pytest.raises(ConfigError, match=r"makes fp32, fp16, not"):
        get_exporter("onnx")(tiny_cnn, example_inputs, staging_dir=tmp_path / "s", name="x", precision=precision)
    assert not (tmp_path / "s").exists()


def test_a_converter_wall_of_text_becomes_one_line_with_its_cause() -> None:
    """torch.onnx wraps torch.export's error in pages of advice; the RuntimeFailure keeps its first line and the cause."""
    from edgestill.errors import RuntimeFailure
    from edgestill.export.base import conversion_error

    wall = ("Failed to export the model with torch.export. This is step 1/3 of exporting the model to ONNX. Next steps:\n"
            "- Modify the model code for `torch.export.export` to succeed.\n- Debug `torch.export.export` and submit a PR.\n\n"
            "## Exception summary\n\n<class 'RuntimeError'>: Given groups=1, weight of size [8, 3, 3, 3], expected input"
            "[1, 1, 32, 32] to have 3 channels, but got 1 channels instead\n\n(Refer to the full stack trace above.)")
    err = conversion_error(RuntimeError(wall), "onnx", object())
    assert isinstance(err, RuntimeFailure) and "\n" not in str(err)
    assert "Failed to export the model with torch.export" in str(err)
    assert "Cause: RuntimeError: Given groups=1" in str(err) and "Next steps" not in str(err)
