"""The I/O contract of a session (edgestill.runtimes.base): inputs are checked against the manifest's specs before a
runtime sees them. Shapes are accepted iff the rank matches and every fixed dim matches; a manifest is checked against
the model file's own shapes the same way; dtype conversion always gives the file's dtype, refuses integers that do
not fit, and quantizing then dequantizing loses at most half a step.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from edgestill.artifact import Artifact, TensorSpec
from edgestill.errors import InputError
from edgestill.runtimes.base import Session, check_file_shapes, from_file_dtype, to_file_dtype
from tests.property._settings import BOUNDED, MANY

INT_DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")
spec_dims = st.one_of(st.integers(0, 4), st.just(-1), st.sampled_from(["batch", "n"]))


class EchoSession(Session):
    """A session whose runtime is the identity: what ``prepare`` hands over is what the contract produced."""

    def __init__(self, inputs: list[TensorSpec]):
        art = Artifact(name="a", format="onnx", precision="fp32", directory=Path("."), model_file="m.onnx",
                       inputs=inputs, outputs=[])
        super().__init__(art, {})


def shape_matches(spec_shape: tuple, shape: tuple) -> bool:
    """The oracle: same rank; a dim that is a whole number >= 0 must be equal, a name or -1 takes any size."""
    return len(spec_shape) == len(shape) and all(isinstance(d, str) or d < 0 or d == a for d, a in zip(spec_shape, shape))


@MANY
@given(st.data())
def test_an_input_is_accepted_iff_its_shape_matches_the_spec(data: st.DataObject) -> None:
    spec_shape = tuple(data.draw(st.lists(spec_dims, max_size=4), label="spec"))
    if data.draw(st.booleans(), label="derived"):  # a matching shape, perhaps with one dim or the rank disturbed
        shape = [d if isinstance(d, int) and d >= 0 else data.draw(st.integers(0, 4)) for d in spec_shape]
        if shape and data.draw(st.booleans(), label="disturb"):
            i = data.draw(st.integers(0, len(shape) - 1))
            shape[i] = data.draw(st.integers(0, 5))
        if data.draw(st.booleans(), label="rank"):
            shape = shape + [1] if data.draw(st.booleans()) else shape[:-1]
    else:
        shape = data.draw(st.lists(st.integers(0, 4), max_size=4), label="shape")
    assume(shape)  # a rank-0 input: see test_a_scalar_input_keeps_rank_0 below
    session = EchoSession([TensorSpec(name="x", shape=spec_shape, dtype="float32")])
    arr = np.zeros(tuple(shape), dtype=np.float32)
    try:
        prepared = session.prepare({"x": arr})
    except InputError:
        assert not shape_matches(spec_shape, tuple(shape))
    else:
        assert shape_matches(spec_shape, tuple(shape))
        assert prepared["x"].shape == arr.shape and prepared["x"].dtype == np.float32


@MANY
@given(st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=3, unique=True),
       st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=3, unique=True))
def test_inputs_are_accepted_iff_their_names_are_exactly_the_models(expected: list[str], given_names: list[str]) -> None:
    session = EchoSession([TensorSpec(name=n, shape=(1,), dtype="float32") for n in expected])
    feeds = {n: np.zeros((1,), np.float32) for n in given_names}
    try:
        session.prepare(feeds)
    except InputError as exc:
        assert set(expected) != set(given_names)
        assert "the model takes" in str(exc)
    else:
        assert set(expected) == set(given_names)


@pytest.mark.parametrize("dtype", ["float32", "int64"])
def test_a_scalar_input_keeps_rank_0(dtype: str) -> None:
    session = EchoSession([TensorSpec(name="x", shape=(), dtype=dtype)])
    prepared = session.prepare({"x": np.array(3, dtype=dtype)})
    assert prepared["x"].shape == ()


file_dims = st.one_of(st.integers(-1, 5), st.none(), st.sampled_from(["batch", "?"]), st.booleans())


def file_shape_agrees(spec_shape: tuple, dims: list) -> bool:
    fixed = lambda d: type(d) is int and d > 0  # noqa: E731 - a dim both sides fix: a whole number > 0, not a bool
    return len(dims) == len(spec_shape) and all(m == f for m, f in zip(spec_shape, dims) if fixed(m) and fixed(f))


@MANY
@given(st.lists(st.lists(spec_dims, max_size=4), min_size=1, max_size=3), st.data())
def test_a_manifest_is_accepted_iff_it_agrees_with_the_files_own_shapes(shapes: list[list], data: st.DataObject) -> None:
    specs = [TensorSpec(name=f"in{i}", shape=tuple(s), dtype="float32") for i, s in enumerate(shapes)]
    art = Artifact(name="a", format="onnx", precision="fp32", directory=Path("."), model_file="m.onnx", inputs=specs)
    file_shapes: dict[str, Any] = {}
    for spec in specs:
        choice = data.draw(st.sampled_from(["same", "random", "absent"]), label=spec.name)
        if choice == "same":
            file_shapes[spec.name] = list(spec.shape)
        elif choice == "random":
            file_shapes[spec.name] = data.draw(st.lists(file_dims, max_size=4), label=f"{spec.name} dims")
    file_shapes["not-an-input"] = [7, 7]  # names the manifest does not declare are not compared
    agrees = all(file_shape_agrees(s.shape, file_shapes[s.name]) for s in specs if s.name in file_shapes)
    try:
        check_file_shapes(art, file_shapes)
    except InputError as exc:
        assert not agrees and "disagree" in str(exc)
    else:
        assert agrees


@MANY
@given(st.sampled_from(INT_DTYPES), st.sampled_from(INT_DTYPES), st.lists(st.integers(-(2**63), 2**64 - 1), max_size=6))
def test_integers_are_cast_to_the_files_dtype_iff_they_fit(source: str, target: str, values: list[int]) -> None:
    info = np.iinfo(source)
    values = [v for v in values if info.min <= v <= info.max]
    arr = np.array(values, dtype=source)
    spec = TensorSpec(name="ids", shape=(len(values),), dtype=target)
    fits = all(np.iinfo(target).min <= v <= np.iinfo(target).max for v in values)
    try:
        out = to_file_dtype(spec, arr)
    except InputError as exc:
        assert not fits and target in str(exc)
    else:
        assert fits and out.dtype == np.dtype(target) and [int(v) for v in out] == values


@BOUNDED
@given(st.floats(1e-4, 10.0), st.integers(-128, 127),
       st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=8))
def test_quantize_then_dequantize_loses_at_most_half_a_step_inside_the_range(scale: float, zero_point: int,
                                                                           values: list[float]) -> None:
    spec = TensorSpec(name="x", shape=(len(values),), dtype="int8", logical_dtype="float32", scale=scale,
                      zero_point=zero_point)
    low, high = (-128 - zero_point) * scale, (127 - zero_point) * scale
    x = np.clip(np.array(values, dtype=np.float32), low, high).astype(np.float32)
    q = to_file_dtype(spec, x)
    assert q.dtype == np.int8
    back = from_file_dtype(spec, q)
    assert back.dtype == np.float32
    step = np.float32(scale)
    assert np.all(np.abs(back.astype(np.float64) - x.astype(np.float64)) <= step / 2 * (1 + 1e-3) + 1e-6 * np.abs(x))


@BOUNDED
@given(st.sampled_from(INT_DTYPES), st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=4))
def test_float_data_for_an_integer_input_is_kept_exactly_or_refused(target: str, values: list[float]) -> None:
    spec = TensorSpec(name="ids", shape=(len(values),), dtype=target)
    arr = np.array(values, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            out = to_file_dtype(spec, arr)
        except InputError:
            return
    assert np.array_equal(out.astype(np.float64), arr), f"{arr} became {out}"


@BOUNDED
@given(st.sampled_from(["float16", "float32", "float64"]), st.sampled_from(["float32", "float16", "int64", "int32"]))
def test_the_result_always_has_the_files_dtype(source: str, target: str) -> None:
    arr = np.arange(6, dtype=source).reshape(2, 3)
    out = to_file_dtype(TensorSpec(name="x", shape=(2, 3), dtype=target), arr)
    assert out.dtype == np.dtype(target) and out.shape == arr.shape and out.flags.c_contiguous
    assume(target.startswith("float"))
    np.testing.assert_array_equal(out.astype(np.float64), arr.astype(np.float64))
