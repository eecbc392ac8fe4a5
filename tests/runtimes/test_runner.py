"""The runner process: one JSON document on stdout, never torch, exit 2 for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgestill.artifact import Artifact, TensorSpec

QUICK = {"min_runs": 15, "min_seconds": 0.0, "warmup_runs": 2}


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    """A seeded one-layer ONNX model (x[1, 4] @ w[4, 3]) with its manifest, built without torch."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(w, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "m.onnx")
    art = Artifact(
        name="m", format="onnx", precision="fp32", directory=tmp_path, model_file="m.onnx",
        inputs=[TensorSpec(name="x", shape=(1, 4), dtype="float32")],
        outputs=[TensorSpec(name="y", shape=(1, 3), dtype="float32")],
    )  # fmt: skip
    art.hash_files()
    return art.write_manifest()


def run_runner(tmp_path: Path, job: dict, *extra: str) -> tuple[int, dict, str]:
    job_path = tmp_path / "job.json"
    job_path.write_text(json.dumps(job))
    proc = subprocess.run(
        [sys.executable, *extra, "-m", "edgestill.runtimes.runner", str(job_path)], capture_output=True, text=True, timeout=120
    )
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"stdout must be one JSON line, got: {proc.stdout!r}"
    return proc.returncode, json.loads(lines[0]), proc.stderr


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_runner_prints_one_measurement_and_never_imports_torch(tmp_path: Path, manifest: Path, runtime: str) -> None:
    job = {"artifact": str(manifest), "runtime": runtime, "options": {"threads": 1}, "bench": QUICK, "affinity": [0]}
    rc, doc, stderr = run_runner(tmp_path, job, "-X", "importtime")
    assert rc == 0, doc
    assert doc["kind"] == "measured" and doc["torch_imported"] is False
    imported = {line.split("|")[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}
    assert runtime in imported and "torch" not in imported
    assert doc["n"] == len(doc["samples_ms"]) >= 15 and doc["p50_ms"] <= doc["p90_ms"] <= doc["p99_ms"]
    assert doc["provenance"]["affinity"] == [0] and doc["provenance"]["runtime"] == runtime
    assert doc["provenance"]["runtime_version"] and doc["init_ms"] > 0
    assert doc["settings"]["thread_env"]["OMP_NUM_THREADS"] == "1"
    assert doc["settings"]["stopped_by"] == "count_and_duration"


def test_runner_reads_timing_inputs_from_npz(tmp_path: Path, manifest: Path) -> None:
    np.savez(tmp_path / "in.npz", x=np.ones((5, 4), np.float32))  # more samples than the fixed batch of 1
    rc, doc, _ = run_runner(tmp_path, {"artifact": str(manifest), "bench": QUICK, "inputs": str(tmp_path / "in.npz")})
    assert rc == 0 and doc["settings"]["inputs"].endswith("in.npz")


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ({"artifact": "missing.manifest.json"}, "does not exist"),
        ({"artifact": "{m}", "bench": {"min_runs": 0}}, "min_runs"),
        ({"artifact": "{m}", "options": {"thread": 2}}, "unknown runtime option"),
        ({"artifact": "{m}", "runtme": "onnxruntime"}, "unknown key"),
        ({"artifact": "{m}", "runtime": "onnxrt"}, "Did you mean 'onnxruntime'"),
        ({"artifact": "{m}", "inputs": "nope.npy"}, "'random' or an existing"),
        ({"artifact": "{m}", "eval_data": "{x_only}"}, "needs 'x' (inputs) and 'y' (labels) and/or 'teacher_logits'"),
        ({"artifact": "{m}", "eval_data": "{x_only}", "metric": "top3"}, "unknown metric 'top3'"),
    ],
)
def test_bad_jobs_exit_2_with_a_failed_json(tmp_path: Path, manifest: Path, job: dict, message: str) -> None:
    x_only = tmp_path / "x_only.npz"
    np.savez(x_only, x=np.zeros((2, 4), np.float32))
    job = {k: (v.format(m=manifest, x_only=x_only) if isinstance(v, str) else v) for k, v in job.items()}
    rc, doc, stderr = run_runner(tmp_path, job)
    assert rc == 2
    assert doc["kind"] == "failed" and message in doc["error"]
    assert "Traceback" not in stderr  # bad input is a message, not a stack trace


def test_peak_rss_is_the_runners_own_not_its_parents(tmp_path) -> None:
    """A runner started by a large parent must not inherit the parent's memory high-water mark."""
    import subprocess
    import sys

    from tests.benchmarks.conftest import write_tiny_onnx

    manifest = write_tiny_onnx(tmp_path)
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"artifact": str(manifest), "bench": {"min_runs": 5, "min_seconds": 0.0, "warmup_runs": 1}}))
    # The parent grows to ~600 MB, then starts the runner (fork + exec) and reports what the runner measured.
    parent = (
        "import subprocess, sys, json; ballast = bytearray(600 * 2**20); ballast[::4096] = b'x' * len(ballast[::4096]); "
        f"r = subprocess.run([sys.executable, '-m', 'edgestill.runtimes.runner', {str(job)!r}], capture_output=True, text=True); "
        "print(json.loads(r.stdout)['peak_rss_mb'])"
    )
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 10 < float(out.stdout) < 400


def test_teacher_outputs_without_labels_give_agreement_and_kl_on_the_runtime(tmp_path: Path, manifest: Path) -> None:
    """Unlabelled eval data (x + the teacher's logits, no y) still scores the artifact: against its teacher."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((12, 4)).astype(np.float32)
    w = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)  # the fixture model's weights
    teacher = x @ w
    teacher[:3] = -teacher[:3]  # the "teacher" disagrees on 3 of 12 samples (the argmax of -z differs from z's)
    np.savez(tmp_path / "eval.npz", x=x, teacher_logits=teacher)
    code, doc, err = run_runner(tmp_path, {"artifact": str(manifest), "bench": QUICK, "eval_data": str(tmp_path / "eval.npz")})
    assert code == 0, err
    assert doc["accuracy"] is None
    assert doc["teacher_top1_agreement"] == pytest.approx(9 / 12)
    assert doc["teacher_kl"] > 0


def test_eval_data_without_labels_or_teacher_outputs_is_bad_input(tmp_path: Path, manifest: Path) -> None:
    np.savez(tmp_path / "eval.npz", x=np.zeros((4, 4), np.float32))
    code, doc, _ = run_runner(tmp_path, {"artifact": str(manifest), "bench": QUICK, "eval_data": str(tmp_path / "eval.npz")})
    assert code == 2 and "teacher_logits" in doc["error"]


def _huge_npy() -> bytes:
    """A few dozen bytes whose .npy header declares (10**9, 3, 224, 224) float32: 548 TiB if numpy allocated it."""
    import io

    from numpy.lib import format as npy

    buf = io.BytesIO()
    npy.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 3, 224, 224)})
    return buf.getvalue() + b"\0" * 16


def _eval_file(tmp_path: Path, case: str) -> Path:
    import zipfile

    p = tmp_path / "eval.npz"
    x = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    y = np.arange(10) % 3
    if case == "huge-x":
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("x.npy", _huge_npy())
            z.writestr("y.npy", b"")
    elif case == "x-nan":
        x[2, 1] = np.nan
        np.savez(p, x=x, y=y)
    elif case == "y-beyond-classes":
        np.savez(p, x=x, y=np.where(np.arange(10) == 6, 3, y))  # the model has 3 outputs: label 3 cannot be predicted
    elif case == "x-wrong-shape":
        np.savez(p, x=x[:, :3], y=y)
    elif case == "empty":
        p.write_bytes(b"")
    return p


@pytest.mark.parametrize(("case", "message"), [
    ("empty", "is empty (0 bytes)"),
    ("huge-x", "[1000000000, 3, 224, 224]"),
    ("x-wrong-shape", "takes [1, 4]"),
    ("x-nan", "x holds 1 NaN or infinite value(s) in 1 of its 10 samples"),
    ("y-beyond-classes", "outside the model's class range [0, 3)"),
])
def test_bad_eval_data_is_bad_input_and_gives_no_accuracy(tmp_path: Path, manifest: Path, case: str, message: str) -> None:
    """Exit 2 with the reason in the failed document, no accuracy, no traceback."""
    job = {"artifact": str(manifest), "bench": QUICK, "eval_data": str(_eval_file(tmp_path, case))}
    rc, doc, stderr = run_runner(tmp_path, job)
    assert rc == 2 and doc["kind"] == "failed" and message in doc["error"], doc
    assert "accuracy" not in doc and "Traceback" not in stderr


@pytest.mark.parametrize(("suffix", "content", "message"), [
    (".npy", "huge", "[1000000000, 3, 224, 224]"),
    (".npz", "empty", "is empty (0 bytes)"),
    (".npz", "object", "Python objects"),
])
def test_bad_timing_inputs_are_bad_input(tmp_path: Path, manifest: Path, suffix: str, content: str, message: str) -> None:
    p = tmp_path / f"in{suffix}"
    if content == "huge":
        p.write_bytes(_huge_npy())
    elif content == "empty":
        p.write_bytes(b"")
    else:
        np.savez(p, x=np.array([None, 1], dtype=object), allow_pickle=True)
    rc, doc, stderr = run_runner(tmp_path, {"artifact": str(manifest), "bench": QUICK, "inputs": str(p)})
    assert rc == 2 and message in doc["error"], doc
    assert "Traceback" not in stderr


def test_eval_values_beyond_the_models_float32_input_are_bad_input(tmp_path: Path, manifest: Path) -> None:
    x = np.ones((4, 4), np.float64)
    x[1, 2] = 1e39  # finite in float64, infinite once cast to the model's float32
    np.savez(tmp_path / "eval.npz", x=x, y=np.zeros(4, np.int64))
    rc, doc, _ = run_runner(tmp_path, {"artifact": str(manifest), "bench": QUICK, "eval_data": str(tmp_path / "eval.npz")})
    assert rc == 2 and "1 value(s) beyond ±3.4e+38" in doc["error"] and "accuracy" not in doc


def test_an_artifact_giving_nan_outputs_records_no_accuracy(tmp_path: Path) -> None:
    """x · w with an Inf weight: finite inputs give NaN/Inf logits; the cell fails (exit 3) instead of scoring argmax(NaN)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((4, 3), np.float32)
    w[0, 0] = np.inf
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "m.onnx")
    art = Artifact(name="m", format="onnx", precision="fp32", directory=tmp_path, model_file="m.onnx",
                   inputs=[TensorSpec(name="x", shape=(1, 4), dtype="float32")],
                   outputs=[TensorSpec(name="y", shape=(1, 3), dtype="float32")])
    art.hash_files()
    np.savez(tmp_path / "eval.npz", x=np.ones((5, 4), np.float32), y=np.zeros(5, np.int64))
    rc, doc, _ = run_runner(tmp_path, {"artifact": str(art.write_manifest()), "bench": QUICK,
                                       "eval_data": str(tmp_path / "eval.npz")})
    assert rc == 3 and "NaN or infinite outputs on 5 of 5 eval samples" in doc["error"] and "accuracy" not in doc
