"""Bad options, untrusted artifacts and faults through the real CLI: ``edgestill bench`` and ``edgestill distill``.

Bad inputs tried (each: exit 2, one paragraph on stderr, no traceback, nothing stored as measured):
bench options: ``--threads`` 0, empty, negative, a fraction; ``--memory-limit`` garbage, 0, negative, NaN, below what a
runner needs; ``--timeout`` 0, negative, infinite, NaN, text. Artifacts: a path that does not exist; a plain folder; a
manifest whose ``model_file`` is an absolute path outside its folder, or a symlink out of it; a manifest whose recorded
sha256 was edited; an OpenVINO ``.xml`` passed directly whose ``.bin`` is missing, or whose ``.bin`` was swapped; an
empty ``.onnx`` and a text file with the ``.onnx`` extension, each vouched for by its manifest; a manifest whose
``format`` is not the file's (an ONNX file declared as TFLite); a JSON list instead of a manifest; non-UTF-8 bytes.
distill (a recipe with ``teacher: {artifact: ...}``): a teacher artifact that does not exist, one that is a folder,
one changed since export (sha256), one whose ``model_file`` escapes its folder, a text file with the ``.onnx``
extension and no manifest.
Faults (exit 3, one line, no traceback): the crash handler when the disk is full (ENOSPC), the file system is
read-only, or neither the log folder nor the temp folder exists.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.badinput.conftest import REPO, assert_bad_input, edgestill, no_artifacts, tree
from tests.benchmarks.conftest import write_tiny_onnx

QUICK = ("--min-runs", "5", "--min-seconds", "0")


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_onnx(tmp_path_factory.mktemp("good"))


def _measured_rows(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        return con.execute("SELECT COUNT(*) FROM measurements WHERE kind = 'measured'").fetchone()[0]


# --- options: (id, extra argv, phrases) -----------------------------------------------------------------------------
OPTION_CASES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("threads-zero", ("--threads", "0"), ("--threads", "whole numbers >= 1", "'0'")),
    ("threads-empty", ("--threads", ""), ("--threads",)),
    ("threads-negative", ("--threads=-2",), ("--threads", "'-2'")),
    ("threads-fraction", ("--threads", "1.5"), ("--threads", "'1.5'")),
    ("memory-limit-garbage", ("--memory-limit", "lots"), ("--memory-limit", "'lots'", "not a size", "2G")),
    ("memory-limit-zero", ("--memory-limit", "0"), ("--memory-limit", "positive size")),
    ("memory-limit-negative", ("--memory-limit=-2G",), ("--memory-limit", "positive size")),
    ("memory-limit-nan", ("--memory-limit", "nanG"), ("--memory-limit", "positive size")),
    ("memory-limit-too-small", ("--memory-limit", "1K"), ("--memory-limit", "1.0 KiB", "64.0 MiB", "at least")),
    ("timeout-zero", ("--timeout", "0"), ("--timeout", "> 0", "'0'")),
    ("timeout-negative", ("--timeout=-5",), ("--timeout", "> 0", "'-5'")),
    ("timeout-inf", ("--timeout", "inf"), ("--timeout", "> 0")),
    ("timeout-nan", ("--timeout", "nan"), ("--timeout", "> 0")),
    ("timeout-text", ("--timeout", "soon"), ("--timeout", "number of seconds", "'soon'")),
]


@pytest.mark.parametrize(("argv", "phrases"), [c[1:] for c in OPTION_CASES], ids=[c[0] for c in OPTION_CASES])
def test_bench_refuses_a_bad_option_before_any_runner_starts(tmp_path: Path, good: Path, argv: tuple[str, ...],
                                                             phrases: tuple[str, ...]) -> None:
    db = tmp_path / "r.db"
    r = edgestill("bench", str(good), *argv, *QUICK, "--db", str(db))
    assert_bad_input(r, *phrases)
    assert not db.exists()  # refused before the store was opened


# --- artifacts: (id, make(tmp) -> the path given to bench, phrases) ---------------------------------------------------
def _edit_manifest(manifest: Path, edit: Callable[[dict], None]) -> Path:
    d = json.loads(manifest.read_text())
    edit(d)
    manifest.write_text(json.dumps(d))
    return manifest


def _missing(tmp: Path) -> Path:
    return tmp / "nowhere" / "student.manifest.json"


def _plain_folder(tmp: Path) -> Path:
    (tmp / "a-folder").mkdir()
    return tmp / "a-folder"


def _absolute_model_file(tmp: Path) -> Path:
    (tmp / "elsewhere.onnx").write_bytes(b"outside")
    return _edit_manifest(write_tiny_onnx(tmp / "art"), lambda d: d.update(model_file=str(tmp / "elsewhere.onnx")))


def _symlink_out(tmp: Path) -> Path:
    manifest = write_tiny_onnx(tmp / "art")
    outside = tmp / "outside.onnx"
    (manifest.parent / "tiny.onnx").rename(outside)
    (manifest.parent / "tiny.onnx").symlink_to(outside)  # the same bytes, but outside the artifact folder
    return manifest


def _sha_edited(tmp: Path) -> Path:
    return _edit_manifest(write_tiny_onnx(tmp / "art"), lambda d: d["files"].update({"tiny.onnx": "0" * 64}))


def _openvino(tmp: Path) -> Path:
    from tests.test_artifact_untrusted import _openvino_artifact

    return _openvino_artifact(tmp / "ov")


def _xml_without_bin(tmp: Path) -> Path:
    manifest = _openvino(tmp)
    (manifest.parent / "tiny.bin").unlink()
    return manifest.parent / "tiny.xml"  # the model file given, its manifest beside it


def _bin_swapped(tmp: Path) -> Path:
    manifest = _openvino(tmp)
    data = (manifest.parent / "tiny.bin").read_bytes()
    (manifest.parent / "tiny.bin").write_bytes(data[::-1])  # same size, other weights
    return manifest


def _vouched(tmp: Path, content: bytes) -> Path:
    """A manifest whose recorded sha256 is the (non-model) file's own: the runtime, not the hash, must refuse it."""
    from edgestill.artifact import Artifact

    manifest = write_tiny_onnx(tmp / "art")
    (manifest.parent / "tiny.onnx").write_bytes(content)
    art = Artifact.load(manifest)
    art.hash_files()
    art.write_manifest()
    return manifest


def _declared_tflite(tmp: Path) -> Path:
    manifest = write_tiny_onnx(tmp / "art")
    return _edit_manifest(manifest, lambda d: d.update(format="tflite"))


def _json_list(tmp: Path) -> Path:
    p = tmp / "list.manifest.json"
    p.write_text("[1, 2, 3]")
    return p


def _not_utf8(tmp: Path) -> Path:
    p = tmp / "latin.manifest.json"
    p.write_bytes(b'{"name": "caf\xe9"}')
    return p


ARTIFACT_CASES: list[tuple[str, Callable[[Path], Path], tuple[str, ...]]] = [
    ("missing", _missing, ("does not exist",)),
    ("plain-folder", _plain_folder, ("a-folder",)),
    ("model-file-absolute", _absolute_model_file, ("model_file", "is an absolute path")),
    ("model-file-symlink-out", _symlink_out, ("tiny.onnx", "outside the artifact folder")),
    ("sha256-edited", _sha_edited, ("tiny.onnx changed since it was exported",)),
    ("xml-given-bin-missing", _xml_without_bin, ("tiny.bin is missing",)),
    ("bin-swapped", _bin_swapped, ("tiny.bin changed since it was exported",)),
    ("empty-onnx-vouched", lambda t: _vouched(t, b""), ("tiny.onnx",)),
    ("text-as-onnx-vouched", lambda t: _vouched(t, b"just some text, not a model\n"),
     ("tiny.onnx cannot be parsed as a onnx model",)),
    ("onnx-declared-tflite", _declared_tflite, ("tiny.onnx",)),
    ("manifest-json-list", _json_list, ("list.manifest.json",)),
    ("manifest-not-utf8", _not_utf8, ("latin.manifest.json",)),
]


@pytest.mark.parametrize(("make", "phrases"), [c[1:] for c in ARTIFACT_CASES], ids=[c[0] for c in ARTIFACT_CASES])
def test_bench_refuses_an_untrusted_or_broken_artifact(tmp_path: Path, make: Callable[[Path], Path],
                                                       phrases: tuple[str, ...]) -> None:
    path = make(tmp_path)
    db = tmp_path / "r.db"
    r = edgestill("bench", str(path), *QUICK, "--db", str(db))
    message = assert_bad_input(r, *phrases)
    assert "runner stderr" not in message and "InputError" not in message
    assert _measured_rows(db) == 0


# --- distill with a black-box teacher artifact: (id, make(tmp) -> teacher path, phrases) ------------------------------
def _tampered_teacher(tmp: Path) -> Path:
    manifest = write_tiny_onnx(tmp / "teacher", name="teacher")
    with open(manifest.with_name("teacher.onnx"), "ab") as f:
        f.write(b"\0")
    return manifest


def _escaping_teacher(tmp: Path) -> Path:
    (tmp / "x.onnx").write_bytes(b"outside")
    return _edit_manifest(write_tiny_onnx(tmp / "teacher", name="teacher"), lambda d: d.update(model_file="../x.onnx"))


def _text_teacher(tmp: Path) -> Path:
    (tmp / "teacher.onnx").write_text("not a model")
    return tmp / "teacher.onnx"


def _folder_teacher(tmp: Path) -> Path:
    (tmp / "teacher-folder").mkdir()
    return tmp / "teacher-folder"


DISTILL_CASES: list[tuple[str, Callable[[Path], Path], tuple[str, ...]]] = [
    ("teacher-missing", lambda t: t / "no-such-teacher.manifest.json", ("no-such-teacher",)),
    ("teacher-folder", _folder_teacher, ("teacher-folder",)),
    ("teacher-tampered", _tampered_teacher, ("teacher.onnx changed since it was exported",)),
    ("teacher-escapes-folder", _escaping_teacher, ("outside the artifact folder",)),
    ("teacher-text-as-onnx", _text_teacher, ("teacher.onnx",)),
]


@pytest.mark.parametrize(("make", "phrases"), [c[1:] for c in DISTILL_CASES], ids=[c[0] for c in DISTILL_CASES])
def test_distill_refuses_a_bad_teacher_artifact(tmp_path: Path, make: Callable[[Path], Path],
                                                phrases: tuple[str, ...]) -> None:
    teacher = make(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "bad-teacher",
        "data": {"builtin": "synthetic-shapes", "size": "quick"},
        "teacher": {"artifact": str(teacher)},
        "student": {"model": "mobilenetv2-student", "kwargs": {"width_mult": 0.25}},
        "distill": {"losses": [{"name": "kd"}], "epochs": 1},
    }, sort_keys=False))
    out = tmp_path / "out"
    before = tree(tmp_path / "teacher")
    r = edgestill("distill", str(recipe), "--out", str(out), cwd=tmp_path)
    assert_bad_input(r, *phrases)
    assert no_artifacts(out) and not list(out.rglob("*.safetensors"))
    assert tree(tmp_path / "teacher") == before  # the teacher's files are inputs: never changed


# --- faults in the crash handler: exit 3 and one line, whatever the disk does --------------------------------------
_CRASH_SCRIPT = """
import errno, os, runpy, sys, tempfile
import edgestill.benchmarks.bench as bench

def boom(*args, **kwargs):
    raise RuntimeError("simulated internal failure")

bench.benchmark_matrix = boom  # the bench command imports it when it runs: an internal error, exit 3
fault = os.environ["CRASH_FAULT"]
fake = os.path.join(os.environ["FAKE_DIR"], "never-created.tmp")  # what the handler may unlink: a name that is no file

def disk_full(*args, **kwargs):  # every new file in every folder: writes fail with ENOSPC, as on a full disk
    return os.open("/dev/full", os.O_WRONLY), fake

def read_only(*args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), kwargs.get("dir") or tempfile.gettempdir())

if fault == "enospc":
    tempfile.mkstemp = disk_full
elif fault == "erofs":
    tempfile.mkstemp = read_only
else:  # no log folder (a file stands at .edgestill) and a temp folder that does not exist
    tempfile.tempdir = os.path.join(os.environ["FAKE_DIR"], "no-such-tmp")
sys.argv = ["edgestill", *sys.argv[1:]]
runpy.run_module("edgestill", run_name="__main__")
"""


@pytest.mark.parametrize(("fault", "reason"), [("enospc", "No space left on device"),
                                               ("erofs", "Read-only file system"),
                                               ("no-folders", "No such file or directory")])
def test_the_crash_handler_never_raises_when_the_traceback_cannot_be_written(tmp_path: Path, good: Path, fault: str,
                                                                             reason: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    if fault == "no-folders":
        (work / ".edgestill").write_text("a file where the log folder would be")
    env = {"PYTHONPATH": str(REPO), "CRASH_FAULT": fault, "FAKE_DIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", _CRASH_SCRIPT, "bench", str(good), "--db", str(tmp_path / "r.db")],
                       capture_output=True, text=True, timeout=120, cwd=work,
                       env={**__import__("os").environ, **env})  # fmt: skip
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("internal error: RuntimeError: simulated internal failure."), lines[0]
    assert "(the traceback could not be written:" in lines[0] and reason in lines[0], lines[0]
    assert not (tmp_path / "never-created.tmp").exists()
