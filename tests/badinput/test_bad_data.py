"""Bad data and bad result stores through the real CLI: ``bench --data``, ``run``/``distill`` with a recipe's data
section, ``export``/``quantize --data``, and ``--db``.

Each case is a file a user could hand over: an empty (0-byte) .npz, one that is not a zip, a zip without ``x``, ``x``
with 0 rows, an .npy header declaring a huge shape (a tiny file saying (10**9, 3, 224, 224)), a header declaring more
data than the file holds, a corrupt member (CRC), a pickled (object) array, ``x`` with NaN or Inf, labels that are not
whole numbers, negative, outside the model's classes or skipping classes, ``y`` of another length, ``x`` of the wrong
rank or sample shape, teacher logits with NaN, a folder given as the file, an empty image folder, an unreadable image,
an image folder larger than memory, a CSV with a text feature; and a ``--db`` whose parent (or grandparent) is a file,
that is a folder, a dangling link, in a folder no one can write, not SQLite, or another program's SQLite file. Every
one must exit 2 with one paragraph naming the file and the problem, and store no number: no measured row and no
accuracy in the store, no model file in --out, the input left as it was.
"""

from __future__ import annotations

import io
import sqlite3
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from numpy.lib import format as npy

from tests.badinput.conftest import assert_bad_input, edgestill, no_artifacts, tree
from tests.benchmarks.conftest import N_CLASSES, N_IN, labelled_data, write_tiny_onnx

HUGE_SHAPE = (10**9, 3, 224, 224)


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=arr.dtype.hasobject)
    return buf.getvalue()


def _header_only(shape: tuple[int, ...], dtype: str = "<f4", data: bytes = b"\0" * 16) -> bytes:
    """A .npy member whose header declares ``shape`` but which holds only ``data``: crafted by hand."""
    buf = io.BytesIO()
    npy.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue() + data


def _zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _savez(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _corrupt(path: Path) -> Path:
    """A valid .npz with one byte of x's data flipped: its CRC no longer matches."""
    x, y, _ = labelled_data()
    _zip(path, {"x.npy": _npy_bytes(x), "y.npy": _npy_bytes(y)})
    raw = bytearray(path.read_bytes())
    at = raw.index(b"x.npy") + 5 + 200  # inside x's data, past its local header and .npy header
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))
    return path


def _with(**change: np.ndarray) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        x, y, _ = labelled_data()
        arrays = {"x": x, "y": y, **change}
        return _savez(path, **{k: v for k, v in arrays.items() if v is not None})

    return make


_X, _Y, _ = labelled_data()
_X_NAN = _X.copy()
_X_NAN[3, 1] = np.nan
_X_INF = _X.copy()
_X_INF[[0, 5], 2] = np.inf
_Y_HIGH = _Y.copy()
_Y_HIGH[4] = N_CLASSES + 11
_Y_NEG = _Y.copy()
_Y_NEG[7] = -1

# (id, how to make the eval file, phrases the one-paragraph message must contain): `bench ART --data FILE`
EVAL_CASES: list[tuple[str, Callable[[Path], Path], tuple[str, ...]]] = [
    ("empty-file-0-bytes", lambda p: (p.write_bytes(b""), p)[1], ("empty", "0 bytes")),
    ("not-a-zip", lambda p: (p.write_text("x,y\n1,2\n" * 20), p)[1], ("not an .npz (zip) archive",)),
    ("zip-without-x", lambda p: _savez(p, y=_Y), ("no array 'x'",)),
    ("no-labels-nor-teacher-logits", lambda p: _savez(p, x=_X), ("neither 'y'", "teacher_logits")),
    ("x-with-0-rows", lambda p: _savez(p, x=_X[:0], y=_Y[:0]), ("shape [0, 8]", "n > 0")),
    ("huge-declared-shape", lambda p: _zip(p, {"x.npy": _header_only(HUGE_SHAPE), "y.npy": _npy_bytes(_Y)}),
     ("'x'", "[1000000000, 3, 224, 224]", "TiB of memory", "this machine can give")),
    ("header-larger-than-data", lambda p: _zip(p, {"x.npy": _header_only((20, N_IN)), "y.npy": _npy_bytes(_Y)}),
     ("declares shape [20, 8]", "truncated")),
    ("corrupt-member-crc", _corrupt, ("corrupt",)),
    ("pickled-object-array", lambda p: _zip(p, {"x.npy": _npy_bytes(np.array([1, None, "a"], dtype=object)),
                                                "y.npy": _npy_bytes(_Y[:3])}), ("Python objects", "refused")),
    ("x-nan", _with(x=_X_NAN), ("x holds 1 NaN or infinite value", "1 of its 20 samples")),
    ("x-inf", _with(x=_X_INF), ("x holds 2 NaN or infinite value", "2 of its 20 samples")),
    ("y-float-labels", _with(y=_Y.astype(np.float32) + 0.5), ("dtype float32", "whole-number class indices")),
    ("y-out-of-range", _with(y=_Y_HIGH), ("outside the model's class range [0, 6)", "17")),
    ("y-negative", _with(y=_Y_NEG), ("negative", "-1")),
    ("y-length-differs", _with(y=_Y[:5]), ("shape [5] for 20 samples",)),
    ("x-wrong-sample-shape", _with(x=_X[:, :5]), ("samples of shape [5]", "takes [1, 8]")),
    ("x-wrong-rank", _with(x=_X.reshape(20, 2, 4)), ("shape [20, 2, 4]", "takes [1, 8]")),
    ("teacher-logits-nan", lambda p: _savez(p, x=_X, teacher_logits=np.full((20, N_CLASSES), np.nan, np.float32)),
     ("teacher_logits holds 120 NaN",)),
]
EVAL_CASES = [(name, make, ("eval data", *phrases)) for name, make, phrases in EVAL_CASES]
# commands/bench.py checks --data before the runner does (its message says "does not exist" for a folder)
EVAL_CASES.append(("a-folder", lambda p: (p.mkdir(), p)[1], ("--data",)))


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ONNX classifier (8 inputs, 6 classes) with its manifest, built once with onnx.helper."""
    return write_tiny_onnx(tmp_path_factory.mktemp("art"))


def _stored_numbers(db: Path) -> int:
    """Measured rows or stored accuracies in the store (a failed cell may be recorded, but never with a number)."""
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        return con.execute("SELECT count(*) FROM measurements WHERE kind != 'failed' OR accuracy_value IS NOT NULL "
                           "OR teacher_top1_agreement IS NOT NULL").fetchone()[0]


@pytest.mark.parametrize("make, phrases", [c[1:] for c in EVAL_CASES], ids=[c[0] for c in EVAL_CASES])
def test_bench_refuses_bad_eval_data(tmp_path: Path, artifact: Path, make: Callable[[Path], Path],
                                     phrases: tuple[str, ...]) -> None:
    data = make(tmp_path / "eval.npz")
    db = tmp_path / "results.db"
    r = edgestill("bench", str(artifact), "--data", str(data), "--db", str(db), "--min-runs", "5", "--min-seconds", "0")
    assert_bad_input(r, str(data), *phrases)
    assert _stored_numbers(db) == 0


def test_bench_with_good_eval_data_stores_its_accuracy(tmp_path: Path, artifact: Path) -> None:
    """The control: the same command on clean data exits 0 and stores the accuracy (15 of 20 labels are the argmax)."""
    data = _with()(tmp_path / "eval.npz")
    db = tmp_path / "results.db"
    r = edgestill("bench", str(artifact), "--data", str(data), "--db", str(db), "--min-runs", "5", "--min-seconds", "0")
    assert r.returncode == 0, r.stderr
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT accuracy_value FROM measurements").fetchall() == [(0.75,)]


# --- a recipe's data section: `edgestill run RECIPE --out D` and `edgestill distill RECIPE --out D` ----------------


def _recipe(tmp_path: Path, data: dict) -> Path:
    doc = {
        "name": "bad-data",
        "data": data,
        "teacher": {"model": "resnet-teacher", "kwargs": {"width": 8}, "train": {"epochs": 1}},
        "student": {"model": "mobilenetv2-student", "kwargs": {"width_mult": 0.25}},
        "distill": {"losses": [{"name": "kd"}], "epochs": 1},
        "export": {"formats": ["onnx"]},
        "bench": {"threads": [1]},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


_IMG_X = np.random.default_rng(0).standard_normal((30, 3, 8, 8)).astype(np.float32)
_IMG_Y = np.arange(30) % 3
_IMG_X_NAN = _IMG_X.copy()
_IMG_X_NAN[[1, 2], 0, 0, :3] = np.nan


def _img(**change: np.ndarray | None) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        arrays = {"x": _IMG_X, "y": _IMG_Y, **change}
        return _savez(path, **{k: v for k, v in arrays.items() if v is not None})

    return make


def _image_folder(path: Path, *, bad: bool) -> Path:
    from PIL import Image

    for c in ("cat", "dog"):
        (path / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * i, 80, 120)).save(path / c / f"{i}.png")
    if bad:
        (path / "dog" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    return path


# (id, how to make the data, the recipe's data section given its path, phrases)
RECIPE_CASES: list[tuple[str, Callable[[Path], Path], Callable[[Path], dict], tuple[str, ...]]] = [
    ("npz-empty-file", lambda p: (p.write_bytes(b""), p)[1], lambda p: {"npz": str(p)}, ("empty", "0 bytes")),
    ("npz-not-a-zip", lambda p: (p.write_bytes(b"\x00\x01 not a zip " * 10), p)[1], lambda p: {"npz": str(p)},
     ("not an .npz (zip) archive",)),
    ("npz-huge-declared-shape", lambda p: _zip(p, {"x.npy": _header_only(HUGE_SHAPE), "y.npy": _npy_bytes(_IMG_Y)}),
     lambda p: {"npz": str(p)}, ("[1000000000, 3, 224, 224]", "of memory")),
    ("npz-pickled-object-array", lambda p: _zip(p, {"x.npy": _npy_bytes(np.array([None] * 30, dtype=object)),
                                                    "y.npy": _npy_bytes(_IMG_Y)}),
     lambda p: {"npz": str(p)}, ("Python objects",)),
    ("npz-without-x", _img(x=None), lambda p: {"npz": str(p)}, ("expected x and y",)),
    ("npz-x-0-rows", _img(x=_IMG_X[:0], y=_IMG_Y[:0]), lambda p: {"npz": str(p)}, ("is empty",)),
    ("npz-x-nan", _img(x=_IMG_X_NAN), lambda p: {"npz": str(p)}, ("6 NaN or infinite", "2 of its 30 samples")),
    ("npz-y-not-integer", _img(y=_IMG_Y + 0.25), lambda p: {"npz": str(p)}, ("labels must be integers",)),
    ("npz-y-out-of-range", _img(y=np.where(np.arange(30) == 4, 7, _IMG_Y)), lambda p: {"npz": str(p), "num_classes": 3},
     ("outside the class range [0, 3)", "4→7")),
    ("npz-y-sparse-labels", _img(y=np.where(np.arange(30) == 9, 57, _IMG_Y)), lambda p: {"npz": str(p)},
     ("up to 57", "54 of them have no sample", "data.num_classes")),
    ("npz-y-length-differs", _img(y=_IMG_Y[:10]), lambda p: {"npz": str(p)}, ("x has 30 rows", "y 10")),
    ("folder-empty", lambda p: (p.mkdir(), p)[1], lambda p: {"folder": str(p)}, ("no class sub-folders",)),
    ("folder-unreadable-image", lambda p: _image_folder(p, bad=True), lambda p: {"folder": str(p)},
     ("dog/3.png", "not a readable image")),
    ("csv-nan-and-inf-cells", lambda p: (p.write_text("a,b,label\n1,nan,0\n3,4,1\n5,inf,0\n7,8,1\n"), p)[1],
     lambda p: {"csv": str(p)}, ("2 NaN or infinite value", "2 of its 4 samples")),
    ("csv-header-only", lambda p: (p.write_text("a,b,label\n"), p)[1], lambda p: {"csv": str(p)}, ("no data rows",)),
    ("csv-not-utf8", lambda p: (p.write_bytes("a,b,label\n1,2,caf\xe9\n".encode("latin-1")), p)[1],
     lambda p: {"csv": str(p)}, ("not a readable UTF-8 CSV",)),
    ("csv-text-feature", lambda p: (p.write_text("a,b,label\n1,2,0\n3,oops,1\n5,6,0\n"), p)[1],
     lambda p: {"csv": str(p)}, ("line 3", "'oops' is not a number")),
]


@pytest.mark.parametrize("make, section, phrases", [c[1:] for c in RECIPE_CASES], ids=[c[0] for c in RECIPE_CASES])
def test_run_refuses_bad_recipe_data(tmp_path: Path, make: Callable[[Path], Path], section: Callable[[Path], dict],
                                     phrases: tuple[str, ...]) -> None:
    kind = next(k for k in ("npz", "csv", "folder") if k in section(Path("probe")))
    data = make(tmp_path / {"npz": "data.npz", "csv": "data.csv", "folder": "images"}[kind])
    recipe = _recipe(tmp_path, section(data))
    out, db = tmp_path / "out", tmp_path / "results.db"
    before = tree(data) if data.is_dir() else {"data": data.read_bytes()}
    r = edgestill("run", str(recipe), "--out", str(out), "--db", str(db))
    assert_bad_input(r, str(data), *phrases)
    assert no_artifacts(out) and not list(out.rglob("*.pt")) and not list(out.rglob("*.safetensors"))
    assert _stored_numbers(db) == 0 and (not db.exists() or _runs(db) == 0)
    assert (tree(data) if data.is_dir() else {"data": data.read_bytes()}) == before  # the input is untouched


def _runs(db: Path) -> int:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT count(*) FROM runs").fetchone()[0]


def test_run_refuses_an_image_folder_larger_than_memory(tmp_path: Path) -> None:
    """40 images of 64×64 as float32 need 3.8 MiB; with the memory limit at 1 MiB that is refused before decoding."""
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / "images" / c).mkdir(parents=True)
        for i in range(20):
            Image.new("RGB", (64, 64), (i, 2, 3)).save(tmp_path / "images" / c / f"{i}.png")
    out = tmp_path / "out"
    r = edgestill("run", str(_recipe(tmp_path, {"folder": str(tmp_path / "images")})), "--out", str(out),
                  "--db", str(tmp_path / "results.db"), env={"EDGESTILL_MEMORY_LIMIT": "1M"})
    assert_bad_input(r, "40 images of 64×64 pixels", str(tmp_path / "images"), "3.8 MiB", "data.image_size")
    assert no_artifacts(out) and not (tmp_path / "results.db").exists()


def test_run_refuses_a_csv_larger_than_memory_before_reading_it(tmp_path: Path) -> None:
    """A 0.3 MiB CSV is about 3 MiB as rows of Python strings; with the memory limit at 1 MiB it is refused unread."""
    rows = "".join(f"{i % 7}.25,{i % 5}.5,{i % 2}\n" for i in range(30_000))
    (tmp_path / "data.csv").write_text("a,b,label\n" + rows)
    out = tmp_path / "out"
    r = edgestill("run", str(_recipe(tmp_path, {"csv": str(tmp_path / "data.csv")})), "--out", str(out),
                  "--db", str(tmp_path / "results.db"), env={"EDGESTILL_MEMORY_LIMIT": "1M"})
    assert_bad_input(r, str(tmp_path / "data.csv"), "read as text rows", "of memory", ".npz")
    assert no_artifacts(out) and not (tmp_path / "results.db").exists()


@pytest.mark.parametrize("case", ["npz-empty-file", "npz-huge-declared-shape", "npz-x-nan"])
def test_distill_refuses_bad_recipe_data(tmp_path: Path, case: str) -> None:
    _, make, section, phrases = next(c for c in RECIPE_CASES if c[0] == case)
    data = make(tmp_path / "data.npz")
    out = tmp_path / "out"
    r = edgestill("distill", str(_recipe(tmp_path, section(data))), "--out", str(out))
    assert_bad_input(r, str(data), *phrases)
    assert no_artifacts(out) and not list(out.rglob("*.pt")) and not list(out.rglob("*.safetensors"))


# --- export / quantize --data: chain/convert.py and compress/quantize/data.py read it with the checked reader --------

_CNN_Y = np.arange(8) % 10
STAGE_CASES = [
    pytest.param("export", "empty-file-0-bytes", lambda p: (p.write_bytes(b""), p)[1], ("empty", "0 bytes"),
                 id="export-empty-file-0-bytes"),
    pytest.param("export", "huge-declared-shape", lambda p: _zip(p, {"x.npy": _header_only(HUGE_SHAPE)}),
                 ("[1000000000, 3, 224, 224]", "of memory"), id="export-huge-declared-shape"),
    pytest.param("export", "pickled-object-array", lambda p: _zip(p, {"x.npy": _npy_bytes(np.array([None], dtype=object))}),
                 ("object",), id="export-pickled-object-array"),
    pytest.param("export", "x-nan", lambda p: _savez(p, x=np.full((8, 3, 32, 32), np.nan, np.float32), y=_CNN_Y),
                 ("NaN",), id="export-x-nan"),
    pytest.param("export", "y-out-of-range", lambda p: _savez(p, x=np.zeros((8, 3, 32, 32), np.float32),
                                                            y=np.where(np.arange(8) == 3, 99, _CNN_Y)),
                 ("99", "outside the model's 10 classes"), id="export-y-out-of-range"),
    pytest.param("quantize", "y-out-of-range", lambda p: _savez(p, x=np.zeros((8, 3, 32, 32), np.float32),
                                                              y=np.where(np.arange(8) == 3, 99, _CNN_Y)),
                 ("99", "outside the model's 10 classes"), id="quantize-y-out-of-range"),
    pytest.param("quantize", "empty-file-0-bytes", lambda p: (p.write_bytes(b""), p)[1], ("empty", "0 bytes"),
                 id="quantize-empty-file-0-bytes"),
    pytest.param("quantize", "huge-declared-shape", lambda p: _zip(p, {"x.npy": _header_only(HUGE_SHAPE),
                                                                       "y.npy": _npy_bytes(_CNN_Y)}),
                 ("[1000000000, 3, 224, 224]", "of memory"), id="quantize-huge-declared-shape"),
]


@pytest.mark.parametrize("command, case, make, phrases", STAGE_CASES)
def test_export_and_quantize_refuse_bad_data(tmp_path: Path, command: str, case: str, make: Callable[[Path], Path],
                                             phrases: tuple[str, ...]) -> None:
    data = make(tmp_path / "data.npz")
    out = tmp_path / "out"
    extra = ["--time-budget", "5"] if command == "quantize" else []
    if command == "export" and case == "y-out-of-range":
        extra = ["--precision", "int8-static"]  # labels score the int8 accuracy budget (fp32 export does not use them)
    r = edgestill(command, "--model", "tests.export.models:tiny_cnn", "--input-shape", "1x3x32x32", "--format", "onnx",
                  "--data", str(data), "--out", str(out), *extra)
    # a label out of range is named by its value (the int8 budget sees the eval split, not the file)
    assert_bad_input(r, *((str(data),) if case != "y-out-of-range" else ()), *phrases)
    assert no_artifacts(out)


# --- --db: the results store ----------------------------------------------------------------------------------------


def _db_parent_is_file(tmp: Path) -> Path:
    (tmp / "afile").write_text("a user's file\n")
    return tmp / "afile" / "results.db"


def _db_grandparent_is_file(tmp: Path) -> Path:
    (tmp / "afile").write_text("a user's file\n")
    return tmp / "afile" / "sub" / "results.db"


def _db_folder(tmp: Path) -> Path:
    (tmp / "store").mkdir()
    (tmp / "store" / "keep.txt").write_text("mine\n")
    return tmp / "store"


def _db_not_sqlite(tmp: Path) -> Path:
    p = tmp / "results.db"
    p.write_text("these are my notes, not a database; " * 8)
    return p


def _db_other_sqlite(tmp: Path) -> Path:
    p = tmp / "other.db"
    with sqlite3.connect(p) as con:
        con.execute("CREATE TABLE contacts (name TEXT)")
        con.execute("INSERT INTO contacts VALUES ('ada')")
    return p


def _db_dangling_link(tmp: Path) -> Path:
    link = tmp / "results.db"
    link.symlink_to(tmp / "no-such-folder" / "results.db")
    return link


def _db_unwritable_place(tmp: Path) -> Path:
    if not Path("/proc/self").is_dir():
        pytest.skip("needs /proc (a folder no one can create files in, root included)")
    return Path("/proc/edgestill-bad-input-test.db")


DB_CASES = [
    ("db-dangling-link", _db_dangling_link, ("cannot open or write", "a link to", "no-such-folder")),
    ("db-in-an-unwritable-folder", _db_unwritable_place, ("cannot open or write", "writable folder")),
    ("db-parent-is-a-file", _db_parent_is_file, ("a part of its folder path is a file",)),
    ("db-grandparent-is-a-file", _db_grandparent_is_file, ("a part of its folder path is a file",)),
    ("db-is-a-folder", _db_folder, ("is a folder",)),
    ("db-not-sqlite", _db_not_sqlite, ("not an edgestill results store", "not a database")),
    ("db-another-programs-sqlite", _db_other_sqlite, ("other tables",)),
]


@pytest.mark.parametrize("make, phrases", [c[1:] for c in DB_CASES], ids=[c[0] for c in DB_CASES])
def test_bench_refuses_a_bad_db(tmp_path: Path, artifact: Path, make: Callable[[Path], Path], phrases: tuple[str, ...]) -> None:
    (tmp_path / "files").mkdir()
    db = make(tmp_path / "files")
    before, names = tree(tmp_path / "files"), sorted(p.name for p in (tmp_path / "files").rglob("*"))
    r = edgestill("bench", str(artifact), "--db", str(db), "--min-runs", "5", "--min-seconds", "0")
    assert_bad_input(r, str(db), *phrases)
    assert tree(tmp_path / "files") == before  # nothing overwritten
    assert sorted(p.name for p in (tmp_path / "files").rglob("*")) == names  # nothing created
