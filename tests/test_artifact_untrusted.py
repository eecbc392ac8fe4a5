"""Manifests and model files as untrusted input: every malformed, escaping or altered artifact is exit 2 with a message.

Three levels: ``Artifact.load`` (the manifest itself), the runner (files checked against their sha256 before a
runtime reads them, bad data), and ``edgestill bench`` in a subprocess (exit 2, one paragraph, no traceback).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgestill.artifact import (
    MAX_MANIFEST_BYTES,
    MAX_TENSOR_ELEMENTS,
    Artifact,
    sha256_file,
)
from edgestill.benchmarks.bench import benchmark, failure_reason
from edgestill.errors import InputError
from edgestill.runtimes.harness import BenchOptions
from tests.benchmarks.conftest import write_tiny_onnx

QUICK = BenchOptions(min_runs=5, min_seconds=0.0, warmup_runs=1)


def edited(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A tiny ONNX artifact whose manifest dict was changed by ``edit``."""
    manifest = write_tiny_onnx(tmp_path / "art")
    d = json.loads(manifest.read_text())
    edit(d)
    manifest.write_text(json.dumps(d))
    return manifest


def load_error(manifest: Path) -> str:
    with pytest.raises(InputError) as info:
        Artifact.load(manifest)
    return str(info.value)


def test_exported_manifest_loads_and_verifies(tmp_path: Path) -> None:
    """The control: an untouched artifact passes every check below."""
    art = Artifact.load(write_tiny_onnx(tmp_path / "art"))
    art.verify_files()
    assert art.required_files() == ["tiny.onnx"]


def test_manifest_that_is_not_a_small_utf8_json_object_file(tmp_path: Path) -> None:
    """Bad inputs tried: a directory named like a manifest; non-UTF-8 bytes; a JSON list; JSON nested past the
    parser's recursion limit; a file over the size bound; a schema_version from a newer edgestill."""
    folder = tmp_path / "dir.manifest.json"
    folder.mkdir()
    assert "is not a regular file" in load_error(folder)

    latin = tmp_path / "latin.manifest.json"
    latin.write_bytes(b'{"name": "caf\xe9"}')
    assert "not UTF-8" in load_error(latin)

    listed = tmp_path / "list.manifest.json"
    listed.write_text("[1, 2, 3]")
    assert "holds a JSON list, not an object" in load_error(listed)

    deep = tmp_path / "deep.manifest.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert "not a valid edgestill manifest" in load_error(deep)

    big = tmp_path / "big.manifest.json"
    big.write_text(json.dumps({"pad": "x" * MAX_MANIFEST_BYTES}))
    message = load_error(big)
    assert f"at most {MAX_MANIFEST_BYTES} bytes" in message and str(big.stat().st_size) in message

    newer = edited(tmp_path, lambda d: d.update(schema_version=99))
    assert "schema_version 99" in load_error(newer)


@pytest.mark.parametrize("key", ["name", "format", "precision", "model_file"])
def test_missing_required_key_is_named(tmp_path: Path, key: str) -> None:
    """Bad inputs tried: a manifest without name, format, precision or model_file (one each)."""
    message = load_error(edited(tmp_path, lambda d: d.pop(key)))
    assert f"manifest: {key} missing; a manifest has the keys name, format, precision, model_file" in message


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d.update(format="caffe"), "format 'caffe' is unknown; valid formats: onnx, tflite, openvino"),
        (lambda d: d.update(precision="int3"), "precision 'int3' is unknown; valid precisions: fp32"),
        (lambda d: d["inputs"][0].update(dtype="float128"),
         "inputs[0].dtype 'float128' is unknown; valid dtypes: float16, float32"),
        (lambda d: d["outputs"][0].update(dtype=["float32"]), "outputs[0].dtype ['float32'] is unknown"),
        (lambda d: d["inputs"][0].update(shape=[1, 2.5]), "inputs[0].shape is [1, 2.5]; a shape is a list"),
        (lambda d: d["inputs"][0].update(shape=[1] * 9), "inputs[0].shape has rank 9; the largest rank is 8"),
        (lambda d: d["inputs"][0].update(scale=float("nan")), "inputs[0].scale is nan; a scale is a finite number"),
        (lambda d: d["inputs"][0].update(scale=0.1), "inputs[0].scale is set for a float32 tensor; only an integer"),
        (lambda d: d["inputs"][0].update(dtype="int8", scale=0.1, zero_point=300),
         "inputs[0].zero_point 300 does not fit int8; it must be in [-128, 127]"),
        (lambda d: d["outputs"].append(d["outputs"][0]), "outputs name ['logits'] more than once"),
        (lambda d: d.update(inputs={"x": [1, 8]}), "inputs is a dict; it must be a list of tensor specs"),
        (lambda d: d.update(name="../../evil"), "name is '../../evil'; it must be a non-empty string without path"),
        (lambda d: d.update(files=["tiny.onnx"]), "files is a list; it must map each file name to its sha256"),
        (lambda d: d.update(files={"tiny.onnx": "abc"}), "files['tiny.onnx'] is 'abc'; a sha256 is 64 lowercase hex"),
        (lambda d: d.update(source="tiny"), "source is a str; it must be a dict or null"),
    ],
)
def test_wrong_type_or_unknown_value_names_the_key_and_what_is_valid(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], expected: str
) -> None:
    """Bad inputs tried: unknown format, precision and dtype; a dtype that is a list; a fractional dim; rank 9; a NaN
    scale; a scale on a float tensor; an int8 zero point of 300; an output named twice; inputs as an object; a name with '..' and '/'; files as a list, a short sha256; source as a string."""
    assert expected in load_error(edited(tmp_path, edit))


def test_huge_declared_shape_names_the_value_and_the_limit(tmp_path: Path) -> None:
    """Bad input tried: an input shape of 10^12 elements ([1000000, 1000000]) that the runner would allocate."""
    message = load_error(edited(tmp_path, lambda d: d["inputs"][0].update(shape=[10**6, 10**6])))
    assert "inputs[0].shape [1000000, 1000000] declares 1000000000000 elements" in message
    assert f"at most {MAX_TENSOR_ELEMENTS} elements" in message


def test_model_file_and_files_must_stay_inside_the_manifest_folder(tmp_path: Path) -> None:
    """Bad inputs tried: model_file '../x.onnx' (the file exists outside); model_file as an absolute path (it
    exists); a files entry '../../etc/passwd'; a model file that is a symlink to a file outside the folder; a model
    file that is a symlink loop."""
    outside = tmp_path / "x.onnx"
    outside.write_bytes(b"outside")
    escape = edited(tmp_path / "a", lambda d: d.update(model_file="../../x.onnx", files={"../../x.onnx": "0" * 64}))
    message = load_error(escape)
    assert "model_file '../../x.onnx' resolves to" in message and "outside the artifact folder" in message

    absolute = edited(tmp_path / "b", lambda d: d.update(model_file=str(outside), files={str(outside): "0" * 64}))
    assert f"model_file {str(outside)!r} is an absolute path" in load_error(absolute)

    listed = edited(tmp_path / "c", lambda d: d["files"].update({"../../etc/passwd": "0" * 64}))
    assert "files entry '../../etc/passwd' resolves to" in load_error(listed)

    linked = write_tiny_onnx(tmp_path / "d" / "art")
    model = linked.parent / "tiny.onnx"
    outside.write_bytes(model.read_bytes())
    model.unlink()
    os.symlink(outside, model)
    message = load_error(linked)
    assert "model_file 'tiny.onnx' resolves to" in message and str(outside) in message

    looped = edited(tmp_path / "e", lambda d: d.update(model_file="loop1"))
    os.symlink("loop2", looped.parent / "loop1")
    os.symlink("loop1", looped.parent / "loop2")
    assert "model_file 'loop1' cannot be resolved" in load_error(looped)


def test_sha256_mismatch_and_missing_companion_files(tmp_path: Path) -> None:
    """Bad inputs tried: a model file changed after export (one byte appended); a manifest recording no sha256 for
    its model file; an ONNX external-data file the manifest lists but that is missing; a listed file replaced by a
    directory."""
    changed = write_tiny_onnx(tmp_path / "a")
    with open(changed.parent / "tiny.onnx", "ab") as f:
        f.write(b"\0")
    changed_since = r"tiny.onnx changed since it was exported \(sha256 [0-9a-f]{64}, .* re-export"
    with pytest.raises(InputError, match=changed_since):
        Artifact.load(changed).verify_files()

    unrecorded = edited(tmp_path / "c", lambda d: d.update(files={}))
    with pytest.raises(InputError, match=r"records no sha256 for tiny.onnx in 'files'"):
        Artifact.load(unrecorded).verify_files()

    data = write_tiny_onnx(tmp_path / "b")
    (data.parent / "tiny.onnx.data").write_bytes(b"\0" * 16)
    art = Artifact.load(data)
    art.files = {}
    art.hash_files()
    art.files["tiny.onnx.data"] = art.files["tiny.onnx"]  # recorded by the exporter beside the model
    art.write_manifest()
    (data.parent / "tiny.onnx.data").unlink()
    with pytest.raises(InputError, match=r"tiny.onnx.data is missing in .* Copy the whole artifact folder"):
        Artifact.load(data).verify_files()

    (data.parent / "tiny.onnx.data").mkdir()
    with pytest.raises(InputError, match=r"tiny.onnx.data is not a regular file"):
        Artifact.load(data).verify_files()


def _openvino_artifact(directory: Path) -> Path:
    """A real OpenVINO IR (.xml + .bin) of the tiny ONNX model, with a manifest recording both files' sha256."""
    ov = pytest.importorskip("openvino")
    onnx_manifest = write_tiny_onnx(directory, name="src")
    ov.save_model(ov.convert_model(str(directory / "src.onnx")), str(directory / "tiny.xml"))
    d = json.loads(onnx_manifest.read_text())
    names = ("tiny.xml", "tiny.bin")
    files = {n: sha256_file(directory / n) for n in names}
    d.update(name="tiny", format="openvino", model_file="tiny.xml", files=files)
    manifest = directory / "tiny.manifest.json"
    manifest.write_text(json.dumps(d))
    return manifest


def test_runner_refuses_altered_or_incomplete_files_as_bad_input(tmp_path: Path) -> None:
    """Bad inputs tried, each through a runner process: a model file modified after export (sha256 mismatch); an
    OpenVINO .xml whose .bin was deleted; the control (an untouched OpenVINO IR) measures."""
    changed = write_tiny_onnx(tmp_path / "onnx")
    with open(changed.parent / "tiny.onnx", "ab") as f:
        f.write(b"\0")
    m = benchmark(changed, bench=QUICK)
    assert m.kind == "failed" and m.settings["runner_exit_code"] == 2
    assert "tiny.onnx changed since it was exported" in failure_reason(m) and "re-export it" in failure_reason(m)
    assert "runner stderr" not in (m.error or "")  # bad input: the reason alone; the log stays in the record

    ir = _openvino_artifact(tmp_path / "ov")
    ok = benchmark(ir, bench=QUICK)
    assert ok.kind == "measured", ok.error
    (ir.parent / "tiny.bin").unlink()
    m = benchmark(ir, bench=QUICK)
    assert m.kind == "failed" and m.settings["runner_exit_code"] == 2
    assert "tiny.bin is missing" in failure_reason(m) and "the openvino model tiny.xml needs it" in failure_reason(m)


def test_onnx_external_data_the_manifest_does_not_list_is_bad_input(tmp_path: Path) -> None:
    """Bad input tried, through a runner process: an ONNX file whose weights live in external data that is missing,
    with a manifest that records only the .onnx (so the sha256 check passes and onnxruntime finds the gap)."""
    import onnx

    manifest = write_tiny_onnx(tmp_path / "art")
    model_path = manifest.parent / "tiny.onnx"
    model = onnx.load(str(model_path))
    onnx.save(model, str(model_path), save_as_external_data=True, location="tiny.onnx.data", size_threshold=0)
    (manifest.parent / "tiny.onnx.data").unlink()
    art = Artifact.load(manifest)
    art.hash_files()
    art.write_manifest()
    m = benchmark(manifest, bench=QUICK)
    assert m.kind == "failed" and m.settings["runner_exit_code"] == 2, m.error
    assert "tiny.onnx.data" in failure_reason(m) and "External data path does not exist" in failure_reason(m)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_manifest_shape_that_disagrees_with_the_file_is_bad_input(tmp_path: Path, runtime: str) -> None:
    """Bad input tried, through a runner process on each runtime that loads ONNX: a manifest declaring input x as
    [1, 4] (sha256 recorded, so only the shape lies) for a file that takes [1, 8]; before the check the runtime
    raised on the first call and the runner exited 3."""
    if runtime == "openvino":
        pytest.importorskip("openvino")
    manifest = edited(tmp_path, lambda d: d["inputs"][0].update(shape=[1, 4]))
    m = benchmark(manifest, runtime=runtime, bench=QUICK)
    assert m.kind == "failed" and m.settings["runner_exit_code"] == 2, m.error
    assert "takes input 'x' of shape [1, 8] but its manifest tiny.manifest.json declares [1, 4]" in failure_reason(m)


def test_benchmark_api_records_a_malformed_manifest_as_bad_input(tmp_path: Path) -> None:
    """Bad inputs tried through ``benchmark()`` (no CLI check before the runner): a directory as the manifest; a
    non-UTF-8 manifest; a manifest of 2 MiB; a manifest whose name is a number. Each is a failed cell named after
    the file, with the runner's exit 2 and its reason."""
    folder = tmp_path / "dir.manifest.json"
    folder.mkdir()
    latin = tmp_path / "latin.manifest.json"
    latin.write_bytes(b'{"name": "caf\xe9"}')
    big = tmp_path / "big.manifest.json"
    big.write_text(json.dumps({"pad": "x" * (2 << 20)}))
    numbered = edited(tmp_path, lambda d: d.update(name=5))
    cases = [(folder, "dir", "is not a regular file"), (latin, "latin", "not UTF-8"),
             (big, "big", "a manifest is at most"), (numbered, "tiny", "name is 5")]
    for manifest, name, expected in cases:
        m = benchmark(manifest, bench=QUICK)
        assert (m.kind, m.artifact, m.settings["runner_exit_code"]) == ("failed", name, 2), (manifest, m.error)
        assert expected in failure_reason(m), (manifest, failure_reason(m))


def test_ab_runner_refuses_altered_or_unparseable_files_as_bad_input(tmp_path: Path) -> None:
    """Bad inputs tried through the A/B runner (``gate --ab``): a new side whose model file changed after export; a new
    side whose file is junk with a matching sha256 (before, the A/B runner exited 3 on it)."""
    from edgestill.benchmarks.bench import benchmark_ab

    old = write_tiny_onnx(tmp_path / "old")
    changed = write_tiny_onnx(tmp_path / "changed")
    with open(changed.parent / "tiny.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(InputError, match="tiny.onnx changed since it was exported"):
        benchmark_ab(old, changed, blocks=2)

    junk = write_tiny_onnx(tmp_path / "junk")
    (junk.parent / "tiny.onnx").write_bytes(b"not an onnx file")
    art = Artifact.load(junk)
    art.hash_files()
    art.write_manifest()
    with pytest.raises(InputError, match="cannot be parsed as a onnx model by onnxruntime"):
        benchmark_ab(old, junk, blocks=2)


def test_runner_refuses_bad_data_as_bad_input(tmp_path: Path) -> None:
    """Bad inputs tried, each through a runner process: eval x of strings; eval y of floats; eval y shorter than x;
    an empty eval .npz file; timing inputs (.npy) of strings."""
    manifest = write_tiny_onnx(tmp_path / "art")
    x = np.zeros((4, 8), np.float32)
    cases = {
        "strings.npz": ({"x": np.array([["a"] * 8] * 4), "y": np.zeros(4, np.int64)}, "x has dtype <U1"),
        "float_y.npz": ({"x": x, "y": np.zeros(4, np.float32)}, "y has dtype float32"),
        "short_y.npz": ({"x": x, "y": np.zeros(3, np.int64)}, "y has dtype int64 and shape [3] for 4 samples"),
    }
    for name, (arrays, expected) in cases.items():
        np.savez(tmp_path / name, **arrays)
        m = benchmark(manifest, bench=QUICK, eval_data=tmp_path / name)
        assert m.kind == "failed" and m.settings["runner_exit_code"] == 2, (name, m.error)
        assert expected in failure_reason(m), (name, failure_reason(m))
    (tmp_path / "empty.npz").write_bytes(b"")
    m = benchmark(manifest, bench=QUICK, eval_data=tmp_path / "empty.npz")
    assert m.settings["runner_exit_code"] == 2 and "cannot read eval data" in failure_reason(m), m.error
    np.save(tmp_path / "strings.npy", np.array([["a"] * 8]))
    m = benchmark(manifest, bench=QUICK, inputs=tmp_path / "strings.npy")
    assert m.settings["runner_exit_code"] == 2 and "non-numeric dtype" in failure_reason(m), m.error


def edgestill(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "edgestill", *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)


def test_bench_cli_untrusted_artifacts_exit_2_with_one_paragraph(tmp_path: Path) -> None:
    """Bad inputs tried through ``edgestill bench``: a directory as the manifest; a shape of 10^12 elements;
    model_file '../x.onnx'; a model file changed after export (found by the runner); an OpenVINO .xml without its
    .bin (found by the runner). Each: exit 2, one paragraph on stderr, no Traceback anywhere on the console."""
    folder = tmp_path / "dir.manifest.json"
    folder.mkdir()
    (tmp_path / "x.onnx").write_bytes(b"outside")
    changed = write_tiny_onnx(tmp_path / "changed")
    with open(changed.parent / "tiny.onnx", "ab") as f:
        f.write(b"\0")
    ir = _openvino_artifact(tmp_path / "ov")
    (ir.parent / "tiny.bin").unlink()
    cases = [
        (folder, "is not a regular file"),
        (edited(tmp_path / "huge", lambda d: d["inputs"][0].update(shape=[10**6, 10**6])), "declares 1000000000000"),
        (edited(tmp_path / "escape", lambda d: d.update(model_file="../../x.onnx")), "outside the artifact folder"),
        (changed, "changed since it was exported"),
        (ir, "tiny.bin is missing"),
    ]
    for manifest, expected in cases:
        r = edgestill("bench", str(manifest), "--min-runs", "5", "--min-seconds", "0", "--db", str(tmp_path / "r.db"))
        assert r.returncode == 2, (manifest, r.stdout, r.stderr)
        assert expected in r.stderr, (manifest, r.stderr)
        assert "Traceback" not in r.stderr + r.stdout, (manifest, r.stdout, r.stderr)
        assert "runner stderr" not in r.stdout, r.stdout  # a bad-input cell shows its reason, not the runner's log
        assert "InputError" not in r.stderr, r.stderr  # a message for the user, not a class name
        paragraph = [line for line in r.stderr.strip().splitlines() if line.strip()]
        assert len(paragraph) == 1 and paragraph[0].startswith("error"), (manifest, r.stderr)


def test_random_manifest_mutations_raise_only_input_error(tmp_path: Path) -> None:
    """Bad inputs tried: 400 seeded mutations of a valid manifest, each replacing or deleting one value anywhere in
    it (keys of specs included) by None, a bool, a huge or negative int, NaN, a string with '..' or a NUL, a list or an
    object. Loading either succeeds or raises InputError; no other exception escapes (a hypothesis-style property
    test without the dependency)."""
    import random

    manifest = write_tiny_onnx(tmp_path / "art")
    valid = json.loads(manifest.read_text())
    junk: list[Any] = [None, True, 0, -1, 10**30, float("nan"), 2.5, "", "../../x", "a\0b", "float128", [], [1, "x"],
                       {}, {"name": 1}, [[[]]]]

    def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
        out = [prefix]
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for k, v in items:
            out += paths(v, (*prefix, k))
        return out

    rng = random.Random(0)
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(400):
        d = json.loads(json.dumps(valid))
        where = rng.choice(paths(d)[1:])
        parent = d
        for k in where[:-1]:
            parent = parent[k]
        if isinstance(parent, dict) and rng.random() < 0.2:
            del parent[where[-1]]
        else:
            parent[where[-1]] = rng.choice(junk)
        manifest.write_text(json.dumps(d))
        try:
            Artifact.load(manifest)
            outcomes["loaded"] += 1
        except InputError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 200 and outcomes["loaded"] > 0, outcomes
