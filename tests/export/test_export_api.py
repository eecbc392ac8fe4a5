"""export(): staging → validate → publish or reject; never a half-written or failing artifact under its final name."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgestill.errors import ConfigError, InputError, ParityError
from edgestill.export import Artifact, ExportConfig, export
from edgestill.artifact import sha256_file
from edgestill.runtimes.openvino import OpenVINO


def _break_openvino(monkeypatch: pytest.MonkeyPatch, precisions: tuple[str, ...] = ("fp32", "fp16")) -> None:
    """Make OpenVINO sessions of the given precisions return wrong numbers (a runtime/export bug stand-in)."""
    real_load = OpenVINO.load

    def load(self, artifact, options):
        session = real_load(self, artifact, options)
        if artifact.precision in precisions:
            real_finish = session.finish
            session.finish = lambda raw: {k: v + 0.5 * np.sign(v) for k, v in real_finish(raw).items()}
        return session

    monkeypatch.setattr(OpenVINO, "load", load)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'openvino'"):
        ExportConfig(formats=("openvin",))
    with pytest.raises(ConfigError, match="empty"):
        ExportConfig(formats=())
    with pytest.raises(ConfigError, match="twice"):
        ExportConfig(formats=("onnx", "onnx"))
    with pytest.raises(ConfigError, match="int8-static"):
        ExportConfig(precisions=("int4",))
    assert ExportConfig(precisions=("fp32", "int8")).int8_precisions == ("int8",)  # each format's own int8
    with pytest.raises(ConfigError, match="file name stem"):
        ExportConfig(name="../student")
    assert ExportConfig(formats=["onnx"], precisions="fp32").formats == ("onnx",)
    assert ExportConfig(tolerances={"int8": {"min_sqnr_db": 30.0}}).tolerances.int8.min_sqnr_db == 30.0


@pytest.mark.parametrize("precisions", [("int8-static",), ("fp32", "int8-dynamic")], ids=["int8-static-alone", "fp32-plus-int8-dynamic"])
def test_export_refuses_int8_and_names_the_fix_before_writing(tmp_path, tiny_cnn, example_inputs, validation_x, precisions) -> None:
    """export() makes float files only: an int8 precision is a ConfigError naming convert(), and nothing is written."""
    with pytest.raises(ConfigError, match=r"float files only \(fp32, fp16\).*edgestill\.chain\.convert\.convert") as info:
        export(tiny_cnn, example_inputs, ExportConfig(formats=("onnx",), precisions=precisions), tmp_path / "out",
               validation_inputs=validation_x)
    assert precisions[-1] in str(info.value)
    assert not (tmp_path / "out").exists()


def test_mixed_is_an_outcome_not_a_request() -> None:
    with pytest.raises(ConfigError, match="unknown value 'mixed'"):
        ExportConfig(precisions=("mixed",))


def test_bad_validation_inputs_fail_before_writing(tmp_path, tiny_cnn, example_inputs) -> None:
    with pytest.raises(InputError, match="validation data"):
        export(tiny_cnn, example_inputs, ExportConfig(), tmp_path / "out", validation_inputs=np.zeros((4, 3, 8, 8), np.float32))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_passing_cells_are_published_with_their_parity(tmp_path, tiny_cnn, example_inputs, validation_x) -> None:
    seen = []
    results = export(
        tiny_cnn, example_inputs, ExportConfig(formats=("openvino",), precisions=("fp32", "fp16"), name="student"),
        tmp_path, validation_inputs=validation_x, progress=lambda i, n, label="": seen.append((i, n, label)),
    )
    assert [r.name for r in results] == ["student-openvino-fp32", "student-openvino-fp16"]
    assert all(r.passed and r.artifact is not None for r in results)
    assert seen == [(0, 2, "student-openvino-fp32"), (1, 2, "student-openvino-fp16"), (2, 2, "done")]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(f"student-openvino-{p}{s}" for p in ("fp32", "fp16") for s in (".xml", ".bin", ".manifest.json"))
    for r in results:
        loaded = Artifact.load(tmp_path / f"{r.name}.manifest.json")
        assert all(sha256_file(tmp_path / f) == h for f, h in loaded.files.items())
        assert loaded.validation["passed"] and loaded.validation["outputs"][0]["top1_agreement"] >= 0.95


@pytest.mark.slow
def test_a_failing_cell_is_rejected_and_never_published(tmp_path, monkeypatch, tiny_cnn, example_inputs, validation_x) -> None:
    _break_openvino(monkeypatch)
    config = ExportConfig(formats=("openvino",), name="student")
    with pytest.raises(ParityError, match="student-openvino-fp32 failed parity") as info:
        export(tiny_cnn, example_inputs, config, tmp_path, validation_inputs=validation_x)
    assert info.value.exit_code == 1
    assert {f["metric"] for f in info.value.failures} >= {"max_abs"} and info.value.failures[0]["output"] == "output_0"
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["student-openvino-fp32.bin.rejected", "student-openvino-fp32.manifest.json.rejected", "student-openvino-fp32.xml.rejected"]
    kept = json.loads((tmp_path / "student-openvino-fp32.manifest.json.rejected").read_text())
    assert kept["validation"]["passed"] is False and kept["validation"]["failures"]

    monkeypatch.undo()  # the fix: the same export now passes and replaces the rejected files
    (result,) = export(tiny_cnn, example_inputs, config, tmp_path, validation_inputs=validation_x)
    assert result.passed
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"student-openvino-fp32{s}" for s in (".bin", ".manifest.json", ".xml")]


@pytest.mark.slow
def test_non_strict_records_the_failure_and_goes_on(tmp_path, monkeypatch, tiny_cnn, example_inputs, validation_x) -> None:
    _break_openvino(monkeypatch, precisions=("fp32",))
    results = export(
        tiny_cnn, example_inputs, ExportConfig(formats=("openvino",), precisions=("fp32", "fp16"), name="m", strict=False),
        tmp_path, validation_inputs=validation_x,
    )
    assert [r.passed for r in results] == [False, True]
    assert results[0].artifact is None and results[0].rejected_files and "max_abs" in results[0].error
    assert (tmp_path / "m-openvino-fp16.manifest.json").exists()
    assert not (tmp_path / "m-openvino-fp32.manifest.json").exists() and not (tmp_path / "m-openvino-fp32.xml").exists()
