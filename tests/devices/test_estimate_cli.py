"""``edgestill estimate`` through the CLI: JSON with kind 'estimated', artifacts read through their ONNX graph, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

import edgestill.commands.estimate  # noqa: F401  (registers the command on the app)
from edgestill.artifact import Artifact
from edgestill.cli import app


def _invoke(*args: str):
    return CliRunner().invoke(app, ["estimate", *args], prog_name="edgestill")


def _tiny_onnx(path: Path) -> Path:
    w = numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])], initializer=[w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), str(path))
    return path


def _artifact(folder: Path, name: str, fmt: str, model_file: str, parent: str) -> Path:
    art = Artifact(name=name, format=fmt, precision="int8-static", directory=folder, model_file=model_file,
                   parent_sha256=parent)
    art.hash_files()
    return art.write_manifest()


def test_model_json_is_an_estimate_with_its_band():
    r = _invoke("--model", "mobilenet_v3_small", "--device", "raspberry-pi-5", "--runtime", "litert", "--threads", "2",
                "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["note"] == "estimated, not measured"
    (m,) = doc["measurements"]
    assert m["kind"] == "estimated" and m["n"] == 0 and m["p50_ms"] == m["settings"]["estimate_ms"]
    assert m["low_ms"] < m["settings"]["estimate_ms"] < m["high_ms"]
    assert m["provenance"]["estimator"]["fit"] == "published" and m["threads"] == 2


def test_table_says_estimated_not_measured(tmp_path: Path):
    onnx_path = _tiny_onnx(tmp_path / "bare.onnx")
    r = _invoke(str(onnx_path), "--device", "raspberry-pi-5", "--db", str(tmp_path / "r.db"))
    assert r.exit_code == 0, r.output
    assert "estimated, not measured" in r.stdout and "onnxruntime/cpu" in r.stdout
    from edgestill.benchmarks.store import ResultsStore

    with ResultsStore(tmp_path / "r.db") as store:  # stored, but only among the estimates
        assert store.measurements() == [] and [e["artifact"] for e in store.estimates()] == ["bare.onnx"]


def test_a_tflite_artifact_is_read_through_its_onnx_sibling(tmp_path: Path):
    parent = "ab" * 32
    _tiny_onnx(tmp_path / "m.onnx")
    (tmp_path / "m.tflite").write_bytes(b"TFL3 not parsed by the cost model")
    _artifact(tmp_path, "m-onnx-int8", "onnx", "m.onnx", parent)
    tflite = _artifact(tmp_path, "m-tflite-int8", "tflite", "m.tflite", parent)
    r = _invoke(str(tflite), "--device", "pixel-8", "--json")
    assert r.exit_code == 0, r.output
    (m,) = json.loads(r.stdout)["measurements"]
    assert m["runtime"] == "litert" and m["precision"] == "int8" and m["format"] == "tflite"
    assert m["provenance"]["estimator"]["graph"]["file"].endswith("m.onnx")
    assert m["provenance"]["estimator"]["graph"]["macs"] == 8 * 16 * 16 * 3 * 9


def test_bad_input_exits_2_with_a_clear_message(tmp_path: Path):
    cases = [
        (["--model", "mobilenet_v9", "--device", "raspberry-pi-5"], "Did you mean 'mobilenet_v2'"),
        (["--model", "mobilenet_v2", "--device", "raspbery-pi-5"], "Did you mean 'raspberry-pi-5'"),
        (["--model", "mobilenet_v2", "--device", "raspberry-pi-5", "--runtime", "tensorrt"], "does not list runtime"),
        (["--device", "raspberry-pi-5"], "either an ARTIFACT"),
    ]
    (tmp_path / "lonely.tflite").write_bytes(b"TFL3")
    (tmp_path / "m.tflite").write_bytes(b"TFL3")
    cases.append(([str(tmp_path / "lonely.tflite"), "--device", "pixel-8"], "reads ONNX"))
    cases.append(([str(_artifact(tmp_path, "m-tflite-int8", "tflite", "m.tflite", "cd" * 32)), "--device", "pixel-8"],
                  "reads ONNX"))
    for args, message in cases:
        r = _invoke(*args)
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output, (args, r.output)
        assert "Traceback" not in r.output
