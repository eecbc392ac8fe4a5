"""The untrusted-array reader (runtimes.base.read_npz / npz_headers / read_npy): sizes are checked from the headers
before numpy allocates anything, pickles are refused, and a damaged file is an InputError, never another exception."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.lib import format as npy

from edgestill.errors import InputError
from edgestill.runtimes.base import npz_headers, read_npy, read_npz
from tests.property._settings import BOUNDED

X = np.arange(24, dtype=np.float32).reshape(6, 4)
Y = np.array([0, 1, 2, 0, 1, 2], dtype=np.int64)


def _valid_npz(compressed: bool) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, x=X, y=Y)
    return buf.getvalue()


def _header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    buf = io.BytesIO()
    npy.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def test_a_valid_npz_reads_back_exactly_and_only_the_keys_asked_for(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    p.write_bytes(_valid_npz(compressed=True))
    arrays = read_npz(p, what="--data d.npz", keys=("x", "teacher_logits"))
    assert list(arrays) == ["x"] and np.array_equal(arrays["x"], X)
    assert npz_headers(p, what="d") == {"x": ((6, 4), np.dtype("<f4")), "y": ((6,), np.dtype("<i8"))}


def test_a_declared_size_over_the_memory_limit_is_refused_before_it_is_allocated(tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESTILL_MEMORY_LIMIT", "1M")
    p = tmp_path / "d.npz"
    np.savez(p, x=np.zeros((512, 1024), np.float32))  # 2 MiB, real data: only the limit refuses it
    with pytest.raises(InputError, match=r"array 'x' \(declared shape \[512, 1024\], float32\) needs 2.0 MiB.*819.2 KiB"):
        read_npz(p, what="--data d.npz")


def test_arrays_that_fit_alone_but_not_together_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESTILL_MEMORY_LIMIT", "1M")
    p = tmp_path / "d.npz"
    np.savez(p, x=np.zeros(150_000, np.float32), y=np.zeros(150_000, np.float32))  # 586 KiB each, 1.1 MiB together
    with pytest.raises(InputError, match="arrays x, y together"):
        read_npz(p, what="--data d.npz")


def test_a_tiny_npy_declaring_a_huge_shape_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "x.npy"
    p.write_bytes(_header((10**9, 3, 224, 224)) + b"\0" * 8)
    with pytest.raises(InputError, match=r"\[1000000000, 3, 224, 224\].*TiB of memory"):
        read_npy(p, what="inputs x.npy")


def test_a_header_declaring_more_than_the_file_holds_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "x.npy"
    p.write_bytes(_header((100, 4)) + b"\0" * 16)
    with pytest.raises(InputError, match="declares shape \\[100, 4\\] of float32 .* but its data is only 16 B"):
        read_npy(p, what="inputs x.npy")


def test_negative_dimensions_are_refused_even_when_their_product_is_positive(tmp_path: Path) -> None:
    p = tmp_path / "x.npy"
    p.write_bytes(_header((-(10**6), -(10**6))) + b"\0" * 16)
    with pytest.raises(InputError, match="negative dimension"):
        read_npy(p, what="inputs x.npy")


@pytest.mark.parametrize("descr", ["|O", [("a", "<i4"), ("b", "|O")]], ids=["object", "struct-with-object-field"])
def test_pickled_arrays_are_refused_from_the_header(tmp_path: Path, descr) -> None:
    p = tmp_path / "d.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("x.npy", _header((3,), descr=descr) + b"\x80\x04 not read")
    with pytest.raises(InputError, match="Python objects.*refused"):
        read_npz(p, what="--data d.npz")


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty \\(0 bytes\\)"),
    (b"PK\x03\x04 truncated zip", "not an .npz \\(zip\\) archive"),
    (b"\x93NUMPY", "not an .npz \\(zip\\) archive"),
], ids=["empty", "truncated-zip-magic", "npy-not-npz"])
def test_files_that_are_not_npz_archives(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "d.npz"
    p.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_npz(p, what="--data d.npz")


def test_a_member_that_is_not_an_npy_array(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("x.npy", b"just text, no numpy magic")
    with pytest.raises(InputError, match="array 'x' is not a readable .npy array"):
        read_npz(p, what="--data d.npz")


@BOUNDED
@given(compressed=st.booleans(), data=st.data())
def test_any_truncation_or_flipped_byte_is_an_input_error_or_the_exact_arrays(tmp_path_factory, compressed, data) -> None:
    """Damage a valid .npz anywhere (cut it short, or flip one byte): the reader returns the original arrays (the
    damage hit a part numpy does not use) or raises InputError, never MemoryError, EOFError, BadZipFile or the like."""
    raw = bytearray(_valid_npz(compressed))
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="length")]
    else:
        at = data.draw(st.integers(0, len(raw) - 1), label="offset")
        raw[at] ^= data.draw(st.integers(1, 255), label="xor")
    p = tmp_path_factory.mktemp("npz") / "d.npz"
    p.write_bytes(bytes(raw))
    try:
        arrays = read_npz(p, what="--data d.npz")
    except InputError:
        return
    for key, original in (("x", X), ("y", Y)):
        if key in arrays:
            assert arrays[key].shape == original.shape and arrays[key].dtype == original.dtype
