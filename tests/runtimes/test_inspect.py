"""Model files edgestill did not write: the I/O contract and precision read from the file (runtimes.inspect), the
runner and ``edgestill bench`` measuring them with ``manifest_present: false``, and bad files refused as bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgestill.artifact import Artifact, sha256_file
from edgestill.errors import InputError
from edgestill.runtimes.inspect import _onnx_with_onnx, _onnx_with_onnxruntime, artifact_for


def _onnx_model(path: Path, *, quantized: bool = False, weights: str = "float32") -> Path:
    """A two-node ONNX graph written with onnx.helper (not by edgestill): input 'pixels' [N, 8], output 'scores' [N, 4];
    ``quantized`` puts a QuantizeLinear/DequantizeLinear pair on the activations; ``weights`` float16 casts them."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((8, 4)).astype(weights)
    nodes, inits = [], [numpy_helper.from_array(w, "W")]
    src = "pixels"
    if quantized:
        inits += [numpy_helper.from_array(np.array(0.05, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z")]
        nodes += [helper.make_node("QuantizeLinear", ["pixels", "s", "z"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"])]
        src = "dq"
    if weights == "float16":
        nodes.append(helper.make_node("Cast", ["W"], ["W32"], to=TensorProto.FLOAT))
    nodes += [helper.make_node("MatMul", [src, "W32" if weights == "float16" else "W"], ["mm"]),
              helper.make_node("Relu", ["mm"], ["scores"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _onnx_model(tmp_path_factory.mktemp("onnx") / "model.onnx")


def test_onnx_contract_with_symbolic_batch(onnx_file: Path) -> None:
    art = artifact_for(onnx_file)
    assert (art.format, art.precision, art.name) == ("onnx", "fp32", "model")
    assert [(s.name, s.shape, s.dtype) for s in art.inputs] == [("pixels", ("N", 8), "float32")]
    assert [(s.name, s.shape, s.dtype) for s in art.outputs] == [("scores", ("N", 4), "float32")]
    assert art.source["manifest"] is False
    assert art.files == {"model.onnx": sha256_file(onnx_file)}
    assert art.inputs[0].concrete_shape(1) == (1, 8)  # a dynamic batch gets batch 1
    art.verify_files()
    # the marker survives the round trip through to_dict (what the record keeps)
    assert art.to_dict()["source"]["manifest"] is False


def test_onnxruntime_alone_reads_the_same_contract(onnx_file: Path) -> None:
    """A device with onnxruntime but not the onnx package reads the same I/O (precision from the I/O dtypes only)."""
    a, b = _onnx_with_onnx(onnx_file), _onnx_with_onnxruntime(onnx_file)
    assert [s.to_dict() for s in a.inputs] == [s.to_dict() for s in b.inputs]
    assert [s.to_dict() for s in a.outputs] == [s.to_dict() for s in b.outputs]
    assert b.precision == "fp32" and "I/O" in b.precision_from


def test_onnx_precision_from_the_graph(tmp_path: Path) -> None:
    assert artifact_for(_onnx_model(tmp_path / "q.onnx", quantized=True)).precision == "int8-static"
    assert artifact_for(_onnx_model(tmp_path / "h.onnx", weights="float16")).precision == "fp16"


def test_a_manifest_beside_the_file_wins(onnx_file: Path, tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(onnx_file.read_bytes())
    art = artifact_for(model)
    art.precision, art.source = "int8-static", {"model": "from-export"}
    art.write_manifest()
    loaded = artifact_for(model)
    assert loaded.precision == "int8-static" and loaded.source == {"model": "from-export"}


def test_openvino_ir_from_the_onnx(onnx_file: Path, tmp_path: Path) -> None:
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_file)), str(tmp_path / "net.xml"), compress_to_fp16=False)
    art = artifact_for(tmp_path / "net.xml")
    assert (art.format, art.precision, art.model_file) == ("openvino", "fp32", "net.xml")
    assert [(s.name, s.shape[1:], s.dtype) for s in art.inputs] == [("pixels", (8,), "float32")]
    assert isinstance(art.inputs[0].shape[0], str)  # the dynamic batch stays symbolic
    assert [s.name for s in art.outputs] == ["scores"]
    assert set(art.files) == {"net.xml", "net.bin"}
    ov.save_model(ov.convert_model(str(onnx_file)), str(tmp_path / "half.xml"), compress_to_fp16=True)
    assert artifact_for(tmp_path / "half.xml").precision == "fp16"
    (tmp_path / "net.bin").unlink()
    with pytest.raises(InputError, match=r"net\.bin.*missing"):
        artifact_for(tmp_path / "net.xml")


@pytest.fixture(scope="module")
def tflite_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An fp32 .tflite converted from a tiny torch module with litert-torch, and its static int8 (int8 I/O) version
    from ai-edge-quantizer: files edgestill's exporter did not write."""
    import litert_torch
    import torch
    from ai_edge_quantizer import quantizer, recipe

    folder = tmp_path_factory.mktemp("tflite")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU()).eval()
    fp32 = folder / "tiny.tflite"
    litert_torch.convert(model, (torch.randn(1, 8),)).export(str(fp32))
    q = quantizer.Quantizer(str(fp32))
    q.load_quantization_recipe(recipe.static_wi8_ai8())
    rng = np.random.default_rng(0)
    calib = q.calibrate({"serving_default": [{"args_0": rng.standard_normal((1, 8)).astype(np.float32)}
                                             for _ in range(8)]})
    int8 = folder / "tiny_int8.tflite"
    q.quantize(calib).export_model(str(int8), overwrite=True)
    return fp32, int8


def test_tflite_contract_and_quantized_io(tflite_files: tuple[Path, Path]) -> None:
    fp32, int8 = (artifact_for(p) for p in tflite_files)
    assert (fp32.format, fp32.precision) == ("tflite", "fp32")
    assert [(s.shape, s.dtype, s.scale) for s in fp32.inputs] == [((1, 8), "float32", None)]
    assert int8.precision == "int8-static"
    spec = int8.inputs[0]
    assert spec.dtype == "int8" and spec.logical_dtype == "float32"
    assert spec.scale is not None and spec.scale > 0 and -128 <= spec.zero_point <= 127
    assert int8.outputs[0].quantized


def test_runner_measures_a_bare_tflite_with_quantized_io(tflite_files: tuple[Path, Path]) -> None:
    from edgestill.runtimes.runner import read_job, run_job

    path = tflite_files[1]
    job = Path(path.parent / "job.json")
    job.write_text(json.dumps({"artifact": str(path), "bench": {"min_runs": 3, "min_seconds": 0}}))
    doc = run_job(read_job(job))
    assert doc["kind"] == "measured" and doc["precision"] == "int8-static" and doc["n"] >= 3
    assert doc["settings"]["manifest_present"] is False
    assert doc["settings"]["manifest"]["inputs"][0]["scale"] == pytest.approx(artifact_for(path).inputs[0].scale)


def test_bench_cli_on_a_bare_onnx_and_on_garbage(onnx_file: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    r = subprocess.run([sys.executable, "-m", "edgestill", "bench", str(onnx_file), "--json", "--min-runs", "3",
                        "--min-seconds", "0", "--db", str(db)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)["measurements"][0]
    assert m["kind"] == "measured" and m["artifact"] == "model" and m["settings"]["manifest_present"] is False
    assert [s["name"] for s in m["settings"]["manifest"]["inputs"]] == ["pixels"]
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(onnx_file.read_bytes()[: onnx_file.stat().st_size // 2])
    r = subprocess.run([sys.executable, "-m", "edgestill", "bench", str(bad), "--db", str(db)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "bad.onnx" in r.stderr and "Traceback" not in r.stderr + r.stdout


@pytest.mark.parametrize("name, content, match", [
    ("empty.onnx", b"", "empty"),
    ("garbage.onnx", b"\x00\xff not a protobuf \x13\x37" * 8, "ONNX"),
    ("garbage.tflite", b"12345678 not a flatbuffer", "TFL3"),
    ("garbage.xml", b"\x89PNG not xml", "OpenVINO IR"),
    ("model.pt", b"torch pickles are not read", "suffix"),
])
def test_unreadable_files_are_bad_input(tmp_path: Path, name: str, content: bytes, match: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    if name.endswith(".xml"):
        (tmp_path / "garbage.bin").write_bytes(b"\0" * 16)
    with pytest.raises(InputError, match=match):
        artifact_for(path)


def test_truncated_files_are_bad_input(onnx_file: Path, tflite_files: tuple[Path, Path], tmp_path: Path) -> None:
    for src in (onnx_file, tflite_files[0]):
        cut = tmp_path / f"cut{src.suffix}"
        cut.write_bytes(src.read_bytes()[: max(16, src.stat().st_size // 3)])
        with pytest.raises(InputError, match="cut"):
            artifact_for(cut)


def test_paths_that_are_not_model_files(tmp_path: Path, onnx_file: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        artifact_for(tmp_path / "missing.onnx")
    (tmp_path / "folder.onnx").mkdir()
    with pytest.raises(InputError, match="not a regular file"):
        artifact_for(tmp_path / "folder.onnx")
    loop = tmp_path / "loop.onnx"
    os.symlink(loop, loop)
    with pytest.raises(InputError, match="loop.onnx"):
        artifact_for(loop)


def test_external_data_must_stay_in_the_model_folder(tmp_path: Path) -> None:
    """An .onnx naming weights outside its folder (``../``) is refused before any runtime opens them."""
    import onnx

    model = onnx.load(str(_onnx_model(tmp_path / "m.onnx")))
    inside = tmp_path / "inside"
    inside.mkdir()
    onnx.save(model, str(inside / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.data", size_threshold=0)
    art = artifact_for(inside / "m.onnx")
    assert set(art.files) == {"m.onnx", "m.data"}
    escaped = onnx.load(str(inside / "m.onnx"), load_external_data=False)
    for t in escaped.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../m.data"
    (tmp_path / "m.data").write_bytes((inside / "m.data").read_bytes())
    onnx.save(escaped, str(inside / "escaped.onnx"))
    with pytest.raises(InputError, match="outside its folder"):
        artifact_for(inside / "escaped.onnx")


def test_benchmark_keeps_the_name_a_bare_file_was_given(onnx_file: Path, tmp_path: Path) -> None:
    """A symlink to a bare model is measured under the symlink's name, in a measured and in a failed cell alike."""
    from edgestill.benchmarks.bench import benchmark
    from edgestill.runtimes.harness import BenchOptions

    alias = tmp_path / "alias.onnx"
    alias.symlink_to(onnx_file)
    m = benchmark(alias, bench=BenchOptions(min_runs=3, min_seconds=0))
    assert (m.kind, m.artifact, m.precision, m.settings["manifest_present"]) == ("measured", "alias", "fp32", False)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"junk")
    failed = benchmark(junk, bench=BenchOptions(min_runs=3, min_seconds=0))
    assert (failed.kind, failed.artifact, failed.format, failed.settings["failure"]) == ("failed", "junk", "onnx", "bad_input")
