"""Manifest loading: a manifest is untrusted input. Whatever JSON (or bytes) it holds, Artifact.load gives an Artifact
whose files stay inside the manifest's folder, or an InputError (exit 2); never another exception, never a path out.
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from edgestill.artifact import (
    DTYPES,
    FORMATS,
    MAX_RANK,
    MAX_TENSOR_ELEMENTS,
    PRECISIONS,
    Artifact,
    TensorSpec,
    sha256_file,
)
from edgestill.errors import InputError
from tests.property._settings import BOUNDED, FEW, MANY
from tests.property.helpers import key_paths

MODEL_BYTES = b"not really onnx, but hashed like one"


@contextmanager
def artifact_folder() -> Iterator[Path]:
    """root/art holds the artifact; root/outside.txt is a file no manifest may reach; symlinks in and out, a loop."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "outside.txt").write_text("a file outside the artifact folder\n")
        art = root / "art"
        (art / "sub").mkdir(parents=True)
        (art / "adir").mkdir()
        (art / "model.onnx").write_bytes(MODEL_BYTES)
        (art / "sub" / "w.bin").write_bytes(b"weights")
        os.symlink(root / "outside.txt", art / "link-out")
        os.symlink("model.onnx", art / "link-in")
        os.symlink("loop", art / "loop")
        os.symlink(root, art / "up")
        yield art


def valid_manifest() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "name": "student-onnx-fp32",
        "format": "onnx",
        "precision": "fp32",
        "model_file": "model.onnx",
        "files": {"model.onnx": "0" * 64},
        "inputs": [{"name": "input", "shape": ["batch", 3, 32, 32], "dtype": "float32"}],
        "outputs": [{"name": "logits", "shape": ["batch", 10], "dtype": "int8", "logical_dtype": "float32",
                     "scale": 0.1, "zero_point": -3}],
        "parent_sha256": "ab" * 32,
        "source": {"model": "mobilenetv2-student"},
        "calibration": None,
        "versions": {"onnx": "1.0"},
        "created_at": "2026-12-02T00:00:00+00:00",
    }


FILE_NAMES = st.one_of(
    st.sampled_from(["model.onnx", "./model.onnx", "sub/w.bin", "sub/../model.onnx", "../art/model.onnx",
                     "../outside.txt", "sub/../../outside.txt", "/etc/passwd", "C:\\x.onnx", "C:x.onnx",
                     "\\\\server\\share\\m.onnx", "link-out", "link-in", "loop", "up/outside.txt", "up/art/model.onnx",
                     "adir", ".", "..", "", "missing.onnx", "a\x00b", "sub", "model.onnx/", "~/model.onnx"]),
    st.text(max_size=12),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True, allow_infinity=True),
              st.text(max_size=10), st.sampled_from(list(DTYPES) + list(FORMATS) + list(PRECISIONS) + ["batch", -1])),
    lambda c: st.one_of(st.lists(c, max_size=5), st.dictionaries(st.text(max_size=8), c, max_size=5)),
    max_leaves=20,
)


def load_or_refuse(manifest_path: Path) -> Artifact | None:
    """The contract under test: an Artifact, or an InputError; anything else fails the property."""
    try:
        art = Artifact.load(manifest_path)
    except InputError:
        return None
    check_confined_and_typed(art)
    try:
        art.verify_files()  # the runner's check before loading: passes or refuses, nothing else
    except InputError:
        pass
    return art


def check_confined_and_typed(art: Artifact) -> None:
    root = art.directory.resolve()
    for name in [art.model_file, *art.files]:
        target = (art.directory / name).resolve()
        assert target.is_relative_to(root) and target != root, f"{name!r} escapes to {target}"
    assert art.model_path.resolve().is_file()
    assert art.format in FORMATS and art.precision in PRECISIONS
    assert isinstance(art.name, str) and art.name and "/" not in art.name and "\\" not in art.name
    for spec in [*art.inputs, *art.outputs]:
        assert spec.dtype in DTYPES and (spec.logical_dtype is None or spec.logical_dtype in DTYPES)
        assert len(spec.shape) <= MAX_RANK
        assert math.prod(d for d in spec.shape if isinstance(d, int) and d > 0) <= MAX_TENSOR_ELEMENTS
        assert all(isinstance(d, str) or (type(d) is int and d >= -1) for d in spec.shape)
        if spec.scale is not None:
            assert math.isfinite(spec.scale) and spec.scale > 0
            assert np.dtype(spec.dtype).kind in "iu"


def write_manifest(art: Path, doc: Any) -> Path:
    path = art / "m.manifest.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


@MANY
@given(st.data())
def test_a_mutated_manifest_loads_confined_or_is_refused(data: st.DataObject) -> None:
    doc = valid_manifest()
    for _ in range(data.draw(st.integers(1, 3), label="changes")):
        paths = key_paths(doc)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths), label="path")
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        action = data.draw(st.sampled_from(["value", "file name", "delete"]), label="action")
        if action == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(FILE_NAMES if action == "file name" else json_values, label="new")
    with artifact_folder() as art:
        load_or_refuse(write_manifest(art, doc))


@MANY
@given(FILE_NAMES, st.lists(FILE_NAMES, max_size=3))
def test_file_names_never_escape_the_artifact_folder(model_file: str, others: list[str]) -> None:
    doc = valid_manifest()
    doc["model_file"] = model_file
    doc["files"] = {name: "0" * 64 for name in [model_file, *others] if isinstance(name, str)}
    with artifact_folder() as art:
        loaded = load_or_refuse(write_manifest(art, doc))
        try:
            resolved = (art / model_file).resolve()
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL: nothing a manifest may name
            resolved = None
        escapes = resolved is None or not resolved.is_relative_to(art.resolve()) or resolved == art.resolve()
        if escapes:
            assert loaded is None, f"{model_file!r} resolves outside and was accepted"


@FEW
@given(json_values)
def test_any_json_document_is_an_artifact_or_refused(doc: Any) -> None:
    with artifact_folder() as art:
        load_or_refuse(write_manifest(art, doc))


@FEW
@given(st.binary(max_size=300))
def test_any_bytes_are_refused_or_load(content: bytes) -> None:
    with artifact_folder() as art:
        path = art / "m.manifest.json"
        path.write_bytes(content)
        load_or_refuse(path)


dims = st.one_of(st.integers(0, 64), st.just(-1), st.sampled_from(["batch", "seq", "n"]))
specs = st.builds(
    lambda name, shape, dtype: TensorSpec(name=name, shape=tuple(shape), dtype=dtype),
    st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), st.lists(dims, max_size=MAX_RANK), st.sampled_from(DTYPES),
)
quantized = st.builds(
    lambda name, shape, dtype, scale, zp: TensorSpec(name=name, shape=tuple(shape), dtype=dtype, logical_dtype="float32",
                                                     scale=scale, zero_point=zp),
    st.from_regex(r"q[a-z0-9_]{0,8}", fullmatch=True), st.lists(dims, max_size=4), st.just("int8"),
    st.floats(1e-6, 1e3), st.integers(-128, 127),
)


@BOUNDED
@given(st.lists(st.one_of(specs, quantized), max_size=4, unique_by=lambda s: s.name),
       st.lists(specs, max_size=3, unique_by=lambda s: s.name), st.sampled_from(FORMATS), st.sampled_from(PRECISIONS))
def test_a_written_manifest_loads_back_equal_and_its_hashes_check(inputs: list[TensorSpec], outputs: list[TensorSpec],
                                                                  fmt: str, precision: str) -> None:
    assume(all(math.prod(d for d in s.shape if isinstance(d, int) and d > 0) <= MAX_TENSOR_ELEMENTS
               for s in inputs + outputs))  # larger ones are refused by design (tested elsewhere)
    with artifact_folder() as art:
        model_file = "model.onnx" if fmt != "openvino" else "model.xml"
        (art / model_file).write_bytes(MODEL_BYTES)
        if fmt == "openvino":
            (art / "model.bin").write_bytes(b"ir weights")
        a = Artifact(name="a", format=fmt, precision=precision, directory=art, model_file=model_file,
                     inputs=inputs, outputs=outputs)
        a.hash_files()
        b = Artifact.load(a.write_manifest())
        assert b.to_dict() == a.to_dict()
        b.verify_files()
        (art / model_file).write_bytes(MODEL_BYTES + b"!")  # one byte changed after export
        with pytest.raises(InputError, match="changed since it was exported"):
            b.verify_files()
