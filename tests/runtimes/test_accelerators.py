"""Accelerators as a named choice: every runtime runs and records ``cpu``; one the build or machine lacks is refused
with what it has; a silent fall back to the CPU is recorded, not hidden. Tiny models built without torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgestill.artifact import Artifact, TensorSpec
from edgestill.errors import InputError
from edgestill.runtimes import RuntimeOptions, load
from edgestill.runtimes.base import ACCELERATORS, RUNTIME_ACCELERATORS, get_runtime


def _onnx_artifact(directory: Path) -> Artifact:
    """y = x + 1 on [1, 4] as an ONNX artifact with its manifest."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.ones((1, 4), np.float32), "one")],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), directory / "add.onnx")
    return _artifact(directory, "add", "onnx", "add.onnx", ["x"])


def tiny_tflite_bytes() -> bytes:
    """y = a + b on [1, 4] float32 as a .tflite flatbuffer, written with LiteRT's own schema (no converter, no torch)."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools.flatbuffer_utils import convert_object_to_bytearray

    def tensor(name: str) -> object:
        t = fb.TensorT()
        t.name, t.shape, t.type, t.buffer = name, [1, 4], fb.TensorType.FLOAT32, 0
        return t

    code = fb.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = fb.BuiltinOperator.ADD
    code.version = 1
    op = fb.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1], [2]
    op.builtinOptionsType, op.builtinOptions = fb.BuiltinOptions.AddOptions, fb.AddOptionsT()
    graph = fb.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = [tensor("a"), tensor("b"), tensor("y")], [0, 1], [2], [op]
    model = fb.ModelT()
    model.version, model.buffers, model.operatorCodes, model.subgraphs = 3, [fb.BufferT()], [code], [graph]
    return bytes(convert_object_to_bytearray(model))


def _tflite_artifact(directory: Path) -> Artifact:
    (directory / "add.tflite").write_bytes(tiny_tflite_bytes())
    return _artifact(directory, "add-tfl", "tflite", "add.tflite", ["a", "b"])


def _artifact(directory: Path, name: str, fmt: str, model_file: str, inputs: list[str]) -> Artifact:
    art = Artifact(name=name, format=fmt, precision="fp32", directory=directory, model_file=model_file,
                   inputs=[TensorSpec(name=n, shape=(1, 4), dtype="float32") for n in inputs],
                   outputs=[TensorSpec(name="y", shape=(1, 4), dtype="float32")])  # fmt: skip
    art.hash_files()
    art.write_manifest()
    return art


@pytest.fixture(scope="module")
def arts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Artifact]:
    d = tmp_path_factory.mktemp("acc")
    return {"onnx": _onnx_artifact(d), "tflite": _tflite_artifact(d)}


@pytest.mark.parametrize(("runtime", "fmt"), [("onnxruntime", "onnx"), ("openvino", "onnx"), ("litert", "tflite")])
def test_cpu_runs_and_is_recorded_on_every_runtime(arts: dict[str, Artifact], runtime: str, fmt: str) -> None:
    art = arts[fmt]
    session = load(art, RuntimeOptions(accelerator="cpu"), runtime=runtime)
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    out = session.run({s.name: x for s in art.inputs})["y"]
    np.testing.assert_allclose(out, x + 1 if fmt == "onnx" else 2 * x)
    rec = session.settings["accelerator"]
    assert (rec["requested"], rec["ran"], rec["fell_back"]) == ("cpu", "cpu", False)


def test_openvino_records_the_device_that_executed() -> None:
    from edgestill.runtimes.openvino import ov_device

    assert ov_device("gpu", ["CPU", "GPU.0", "GPU.1"]) == "GPU"  # numbered devices count as the kind


def test_options_validate_the_name_and_old_jobs_without_it_still_load() -> None:
    with pytest.raises(InputError, match=r"'tpu' is not one edgestill knows.*cpu, gpu, npu, cuda, tensorrt, nnapi, openvino-ep, qnn"):
        RuntimeOptions(accelerator="tpu")
    old_job_options = {"threads": 2, "graph_optimization": "all"}  # written before accelerators existed
    assert RuntimeOptions(**old_job_options).accelerator == "cpu"
    opts = RuntimeOptions(threads=2, accelerator="gpu")
    assert RuntimeOptions(**opts.to_dict()) == opts
    assert set().union(*RUNTIME_ACCELERATORS.values()) == set(ACCELERATORS)
    for name, offered in RUNTIME_ACCELERATORS.items():  # the table the messages quote is what each class accepts
        assert get_runtime(name).accelerators == offered, name


def test_a_runtime_refuses_an_accelerator_it_does_not_offer() -> None:
    with pytest.raises(InputError, match=r"'openvino' cannot use accelerator 'cuda'; it offers cpu, gpu, npu\. 'cuda' is offered by onnxruntime"):
        get_runtime("openvino").check_accelerator("cuda")


def test_onnxruntime_cuda_on_a_cpu_only_build_is_refused_naming_the_providers(arts: dict[str, Artifact]) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(InputError, match=r"CUDAExecutionProvider.*it has .*CPUExecutionProvider.*onnxruntime-gpu"):
        load(arts["onnx"], RuntimeOptions(accelerator="cuda"), runtime="onnxruntime")


def test_onnxruntime_dropping_the_asked_provider_is_recorded_as_a_fall_back() -> None:
    from edgestill.runtimes.onnxruntime import PROVIDERS, provider_record

    # onnxruntime drops a provider it cannot initialise (no CUDA library at run time) and only logs it
    rec = provider_record("cuda", PROVIDERS["cuda"], ["CPUExecutionProvider"])
    assert (rec["requested"], rec["ran"], rec["fell_back"]) == ("cuda", "cpu", True)
    rec = provider_record("tensorrt", PROVIDERS["tensorrt"], ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert (rec["ran"], rec["fell_back"]) == ("cuda", True)
    rec = provider_record("cuda", PROVIDERS["cuda"], ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert (rec["ran"], rec["fell_back"]) == ("cuda", False)


def test_openvino_npu_missing_is_refused_naming_the_available_devices(arts: dict[str, Artifact]) -> None:
    import openvino

    available = openvino.Core().available_devices
    if any(d.startswith("NPU") for d in available):
        pytest.skip("this machine has an NPU")
    with pytest.raises(InputError, match=r"NPU device, which this machine does not have \(OpenVINO sees: .*CPU"):
        load(arts["onnx"], RuntimeOptions(accelerator="npu"), runtime="openvino")


def test_litert_nnapi_is_refused_off_android(arts: dict[str, Artifact]) -> None:
    with pytest.raises(InputError, match=r"'nnapi' is Android's NNAPI delegate and this is not Android.*adb"):
        load(arts["tflite"], RuntimeOptions(accelerator="nnapi"), runtime="litert")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # LiteRT's Delegate.__del__ after a failed load
def test_litert_gpu_without_its_delegate_library_is_refused(arts: dict[str, Artifact], monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    monkeypatch.setenv("EDGESTILL_LITERT_GPU_DELEGATE", str(tmp_path / "no-such-gpu-delegate.so"))
    with pytest.raises(InputError, match=r"GPU delegate library.*no-such-gpu-delegate\.so.*EDGESTILL_LITERT_GPU_DELEGATE"):
        load(arts["tflite"], RuntimeOptions(accelerator="gpu"), runtime="litert")


QUICK = {"min_runs": 5, "min_seconds": 0.0, "warmup_runs": 1}


def test_bench_records_the_accelerator_and_a_missing_one_is_bad_input(arts: dict[str, Artifact]) -> None:
    """Through the runner process: what ran is in the record's settings; a missing device fails its cell as bad
    input (bench exits 2) with the runtime's message."""
    from edgestill.benchmarks.bench import benchmark_matrix, failure_exit_code, failure_reason
    from edgestill.runtimes.harness import BenchOptions

    path = arts["onnx"].manifest_path
    ok = benchmark_matrix([path], [1], runtime="onnxruntime", accelerator="cpu", bench=BenchOptions(**QUICK))
    assert ok[0].kind == "measured", ok[0].error
    assert ok[0].settings["accelerator"]["ran"] == "cpu" and ok[0].settings["runtime_options"]["accelerator"] == "cpu"
    bad = benchmark_matrix([path], [1], runtime="openvino", accelerator="npu", bench=BenchOptions(**QUICK))
    assert bad[0].kind == "failed" and failure_exit_code(bad) == 2
    assert "OpenVINO sees:" in failure_reason(bad[0])


def test_bench_command_refuses_an_accelerator_before_measuring(arts: dict[str, Artifact], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    import edgestill.commands.bench  # noqa: F401  (registers the command)
    from edgestill.cli import app

    db = tmp_path / "r.db"
    for args, needle in ((["--accelerator", "tpux"], "is not one edgestill knows"),
                         (["--accelerator", "cuda", "--runtime", "openvino"], "'openvino' cannot use accelerator 'cuda'"),
                         (["--accelerator", "npu"], "'onnxruntime' cannot use accelerator 'npu'")):
        result = CliRunner().invoke(app, ["bench", str(arts["onnx"].manifest_path), "--db", str(db), *args])
        assert result.exit_code == 2, result.output
        assert needle in " ".join(result.output.split()), result.output
    assert not db.exists()  # refused before the store was opened
