"""Every runtime backend passes the same contract (one subclass per backend), on tiny seeded CNN artifacts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgestill.errors import InputError, UnknownNameError
from edgestill.artifact import Artifact
from edgestill.runtimes import BACKEND_MODULES, RUNTIMES, RuntimeOptions, get_runtime, load, runtime_names
from tests.conftest import build_tiny_cnn


@pytest.mark.slow
class RuntimeContract:
    """The behaviour every backend owes its callers. Subclasses set ``runtime`` and ``fmt``."""

    runtime: str
    fmt: str

    @pytest.fixture(scope="class")
    def built(self, tmp_path_factory: pytest.TempPathFactory) -> dict:
        import torch

        from edgestill.compress.quantize import quantize_export
        from edgestill.export.api import get_exporter

        model = build_tiny_cnn()
        example = (torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)),)
        rng = np.random.default_rng(0)
        calib = rng.standard_normal((32, 3, 32, 32)).astype(np.float32)
        x = rng.standard_normal((8, 3, 32, 32)).astype(np.float32)
        staging = tmp_path_factory.mktemp(f"rt-{self.fmt}")
        fp32 = get_exporter(self.fmt)(model, example, staging_dir=staging, name="tiny-fp32")
        from edgestill.compress.quantize.options import QuantOptions

        # integer I/O where the format has it (TFLite), so the contract covers a session hiding quantized I/O
        options = QuantOptions(integer_io=self.fmt == "tflite")
        int8 = quantize_export(model, example, format=self.fmt, calibration=calib, staging_dir=staging, name="tiny-int8",
                               options=options)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        return {"fp32": fp32, "int8": int8, "x": x, "ref": ref}

    def _session(self, art: Artifact, threads: int = 1):
        return load(art, RuntimeOptions(threads=threads), runtime=self.runtime)

    def test_run_returns_float32_dict_named_like_the_manifest_outputs(self, built: dict) -> None:
        art = built["fp32"]
        out = self._session(art).run({art.inputs[0].name: built["x"][:1]})
        assert isinstance(out, dict)
        assert list(out) == [s.name for s in art.outputs]
        assert all(v.dtype == np.float32 for v in out.values())
        assert out[art.outputs[0].name].shape == (1, 10)

    def test_fp32_outputs_match_torch(self, built: dict) -> None:
        art = built["fp32"]
        session = self._session(art)
        got = np.concatenate([session.run({art.inputs[0].name: s[None]})[art.outputs[0].name] for s in built["x"]])
        np.testing.assert_allclose(got, built["ref"], atol=1e-4, rtol=1e-4)

    def test_timed_path_gives_the_same_numbers_as_run(self, built: dict) -> None:
        art = built["int8"]
        session = self._session(art)
        inputs = {art.inputs[0].name: built["x"][:1]}
        feed = session.prepare(inputs)
        np.testing.assert_array_equal(session.finish(session.run_raw(feed))[art.outputs[0].name], session.run(inputs)[art.outputs[0].name])

    def test_interleaved_prepared_feeds_each_give_their_own_outputs(self, built: dict) -> None:
        # run_raw binds a feed once and reuses the binding while the same feed comes back (the benchmark loop);
        # alternating two prepared feeds must still give each one its own outputs.
        art = built["fp32"]
        session = self._session(art)
        name, out = art.inputs[0].name, art.outputs[0].name
        feeds = [session.prepare({name: built["x"][i : i + 1]}) for i in range(2)]
        got = [session.finish(session.run_raw(feeds[i % 2]))[out][0] for i in range(4)]
        np.testing.assert_allclose(np.stack(got), built["ref"][[0, 1, 0, 1]], atol=1e-4, rtol=1e-4)

    def test_wrong_input_shape_is_an_input_error(self, built: dict) -> None:
        art = built["fp32"]
        with pytest.raises(InputError, match="shape"):
            self._session(art).run({art.inputs[0].name: np.zeros((1, 3, 16, 16), np.float32)})

    def test_wrong_input_name_is_an_input_error(self, built: dict) -> None:
        art = built["fp32"]
        with pytest.raises(InputError, match="missing"):
            self._session(art).run({"not_an_input": built["x"][:1]})

    def test_manifest_naming_a_tensor_the_file_lacks_is_an_input_error(self, built: dict) -> None:
        import dataclasses

        art = dataclasses.replace(built["fp32"], outputs=[dataclasses.replace(built["fp32"].outputs[0], name="not_in_file")])
        with pytest.raises(InputError, match="not_in_file"):
            self._session(art)

    def test_threads_and_version_recorded(self, built: dict) -> None:
        session = self._session(built["fp32"], threads=2)
        assert session.settings["threads"] == 2
        assert session.settings["runtime"] == self.runtime
        assert session.settings["runtime_version"]

    def test_quantized_io_is_hidden(self, built: dict) -> None:
        art = built["int8"]
        session = self._session(art)
        x = built["x"]
        got = np.concatenate([session.run({art.inputs[0].name: s[None]})[art.outputs[0].name] for s in x])
        assert got.dtype == np.float32
        ref = built["ref"]
        sqnr_db = 10 * np.log10((ref**2).sum() / ((got - ref) ** 2).sum())
        assert sqnr_db > 25.0
        spec = art.outputs[0]
        raw = session.run_raw(session.prepare({art.inputs[0].name: x[:1]}))
        if spec.quantized:  # the file gives int8: run() returned it dequantized with the manifest's scale/zero-point
            assert raw[0].dtype == np.int8
            np.testing.assert_allclose(got[:1], (raw[0].astype(np.float32) - spec.zero_point) * spec.scale, rtol=1e-6)


class TestOnnxRuntime(RuntimeContract):
    runtime, fmt = "onnxruntime", "onnx"


class TestLiteRT(RuntimeContract):
    runtime, fmt = "litert", "tflite"

    def test_int8_file_io_is_int8_with_scale(self, built: dict) -> None:
        spec_in, spec_out = built["int8"].inputs[0], built["int8"].outputs[0]
        assert (spec_in.dtype, spec_out.dtype) == ("int8", "int8")
        assert spec_in.scale > 0 and spec_out.scale > 0 and spec_in.logical_dtype == "float32"

    def test_xnnpack_off_is_recorded_and_gives_the_same_numbers(self, built: dict) -> None:
        art = built["fp32"]
        off = load(art, RuntimeOptions(threads=1, xnnpack=False), runtime="litert")
        assert off.settings["xnnpack"] is False
        inputs = {art.inputs[0].name: built["x"][:1]}
        np.testing.assert_allclose(off.run(inputs)[art.outputs[0].name], self._session(art).run(inputs)[art.outputs[0].name], atol=1e-5)


class TestOpenVINO(RuntimeContract):
    runtime, fmt = "openvino", "openvino"

    def test_precision_hint_is_explicit(self, built: dict) -> None:
        assert self._session(built["fp32"]).settings["inference_precision"] == "f32"


def test_every_registered_runtime_has_a_contract_test() -> None:
    covered = {cls.runtime for cls in RuntimeContract.__subclasses__()}
    missing = set(runtime_names()) - covered
    assert not missing, f"runtimes without a RuntimeContract subclass: {sorted(missing)}"


def test_each_backend_module_registers_the_runtime_it_is_listed_under() -> None:
    for name in BACKEND_MODULES:
        runtime = get_runtime(name)
        assert name in RUNTIMES and runtime.name == name and type(runtime) is RUNTIMES.get(name)
    assert set(RUNTIMES.names()) >= set(BACKEND_MODULES)


def test_an_unknown_runtime_names_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown runtime 'onnxruntim'.*onnxruntime.*Valid runtimes: litert, "
                                               r"onnxruntime, openvino"):
        get_runtime("onnxruntim")


def test_get_runtime_imports_only_the_backend_it_is_asked_for() -> None:
    code = (
        "import sys\nimport edgestill.runtimes as rt\n"
        "backends = set(rt.BACKEND_MODULES.values())\n"
        "assert not backends & set(sys.modules), sorted(backends & set(sys.modules))\n"
        "assert rt.get_runtime('onnxruntime').name == 'onnxruntime'\n"
        "assert backends & set(sys.modules) == {'edgestill.runtimes.onnxruntime'}, sorted(backends & set(sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_loading_and_running_a_backend_never_imports_torch(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from edgestill.artifact import TensorSpec

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), tmp_path / "relu.onnx")
    art = Artifact(
        name="relu", format="onnx", precision="fp32", directory=tmp_path, model_file="relu.onnx",
        inputs=[TensorSpec(name="x", shape=(1, 4), dtype="float32")], outputs=[TensorSpec(name="y", shape=(1, 4), dtype="float32")],
    )
    art.hash_files()
    art.write_manifest()
    code = (
        "import sys, numpy as np\nfrom edgestill.runtimes import load\n"
        f"out = load({str(art.manifest_path)!r}).run({{'x': np.array([[-1, 2, -3, 4]], np.float32)}})\n"
        "assert out['y'].tolist() == [[0, 2, 0, 4]], out\nassert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
