"""Output folders and atomic writes: edgestill writes only inside its folder, under names it created itself."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from edgestill.errors import InputError
from edgestill.outdir import (
    MARKER,
    claim_output_dir,
    marker_kind,
    write_json_atomic,
    write_text_atomic,
)


@pytest.mark.parametrize("write", [write_text_atomic, write_json_atomic])
def test_a_symlink_at_the_old_fixed_tmp_name_is_not_followed(tmp_path: Path, write) -> None:  # type: ignore[no-untyped-def]
    """Bad input: a symlink planted at ``report.json.tmp`` (the old fixed temporary name) pointing at a victim file."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json.tmp").symlink_to(victim)
    write(out / "report.json", {"a": 1} if write is write_json_atomic else "new\n")
    assert victim.read_text() == "precious"
    assert (out / "report.json.tmp").is_symlink()  # left as it was, not written through nor removed
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.json.tmp"]


def test_atomic_write_replaces_a_symlink_at_the_target_instead_of_writing_through_it(tmp_path: Path) -> None:
    """Bad input: the report's own name is a symlink to a victim file; the link is replaced, the victim kept."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "report.md").symlink_to(victim)
    write_text_atomic(tmp_path / "report.md", "new\n")
    assert victim.read_text() == "precious"
    assert not (tmp_path / "report.md").is_symlink() and (tmp_path / "report.md").read_text() == "new\n"


def test_atomic_write_is_readable_by_others_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "r.json", {"x": [1, 2]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"x": [1, 2]}
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_a_failed_rename_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad input: the disk fills at the rename; the earlier report stays whole (reports use the same writer)."""
    target = tmp_path / "r.html"
    target.write_text("old report")

    def boom(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("edgestill.outdir.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(target, "new report")
    assert target.read_text() == "old report" and [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    """Bad input: an object JSON cannot encode fails half-way; the earlier file stays whole."""
    (tmp_path / "r.json").write_text("old\n")

    class Boom:
        def __str__(self) -> str:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_json_atomic(tmp_path / "r.json", {"x": Boom()})
    assert (tmp_path / "r.json").read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_the_crash_log_does_not_write_through_a_planted_symlink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad input: a symlink planted at the crash log's name (``.edgestill/logs/last-error.log``) to a victim file."""
    from edgestill import cli

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    logs = tmp_path / ".edgestill" / "logs"
    logs.mkdir(parents=True)
    (logs / "last-error.log").symlink_to(victim)
    monkeypatch.chdir(tmp_path)
    try:
        raise ValueError("internal")
    except ValueError:
        path = cli._write_crash_log()
    assert victim.read_text() == "precious"
    assert "ValueError: internal" in (tmp_path / path).read_text() and not (tmp_path / path).is_symlink()


def test_the_fallback_crash_log_gets_a_fresh_name_in_the_temp_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad input: the log folder cannot be created (a file stands at ``.edgestill``) and a symlink is planted at the
    old fixed temp name ``edgestill-last-error.log``; the victim it points at is unchanged."""
    from edgestill import cli

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    (tmpdir / "edgestill-last-error.log").symlink_to(victim)
    work = tmp_path / "work"
    work.mkdir()
    (work / ".edgestill").write_text("a file, not a folder")
    monkeypatch.chdir(work)
    monkeypatch.setattr("tempfile.tempdir", str(tmpdir))
    try:
        raise ValueError("internal")
    except ValueError:
        path = cli._write_crash_log()
    assert victim.read_text() == "precious"
    assert path.parent == tmpdir and path.name != "edgestill-last-error.log"
    assert "ValueError: internal" in path.read_text() and not path.is_symlink()
    assert os.stat(path).st_mode & 0o077 == 0  # private: a traceback may name local paths


# --- claiming a folder: only an earlier run of the same command is emptied, never an input ---------------------------


def _earlier(out: Path, kind: str | None, files: list[str] | None = ["checkpoints"]) -> Path:  # noqa: B006
    """A folder an earlier edgestill ``kind`` run wrote (``kind`` None: a marker without a kind) and recorded as
    holding ``files`` (None: a run stopped before it recorded anything)."""
    out.mkdir(parents=True)
    doc = {"tool": "edgestill", **({} if kind is None else {"kind": kind}), **({} if files is None else {"files": files})}
    (out / MARKER).write_text(json.dumps(doc))
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "student.safetensors").write_bytes(b"weights")
    return out


def test_a_folder_of_the_same_command_is_emptied_and_marked(tmp_path: Path) -> None:
    out = _earlier(tmp_path / "out", "quantize")
    claim_output_dir(out, kind="quantize")
    assert [p.name for p in out.iterdir()] == [MARKER] and marker_kind(out) == "quantize"


@pytest.mark.parametrize("writer", ["distill", None])
def test_a_folder_another_command_wrote_is_refused_untouched(tmp_path: Path, writer: str | None) -> None:
    """Bad input: --out is a folder 'edgestill distill' wrote (or whose marker names no command), claimed by quantize."""
    out = _earlier(tmp_path / "out", writer)
    with pytest.raises(InputError) as err:
        claim_output_dir(out, kind="quantize")
    msg = str(err.value)
    assert f"holds the output of 'edgestill {writer or 'unknown'}'" in msg and "--overwrite" in msg and "\n" not in msg
    assert (out / "checkpoints" / "student.safetensors").read_bytes() == b"weights"


def test_overwrite_replaces_another_commands_folder(tmp_path: Path) -> None:
    out = _earlier(tmp_path / "out", "distill")
    claim_output_dir(out, kind="quantize", overwrite=True)
    assert [p.name for p in out.iterdir()] == [MARKER] and marker_kind(out) == "quantize"


@pytest.mark.parametrize("how", ["inside", "via-symlink", "dotdot", "the-folder"])
def test_a_folder_holding_an_input_is_never_emptied(tmp_path: Path, how: str) -> None:
    """Bad input: the command's own --checkpoint lies inside --out (directly, through a symlink, through '..', or is
    --out itself); refused even with --overwrite and even by the same command."""
    out = _earlier(tmp_path / "out", "quantize")
    ckpt = out / "checkpoints" / "student.safetensors"
    given = {"inside": ckpt, "dotdot": out / "checkpoints" / ".." / "checkpoints" / "student.safetensors",
             "the-folder": out, "via-symlink": tmp_path / "link.safetensors"}[how]
    if how == "via-symlink":
        given.symlink_to(ckpt)
    with pytest.raises(InputError, match=r"--checkpoint .* lies inside --out .*move the input"):
        claim_output_dir(out, kind="quantize", overwrite=True, inputs=[("--checkpoint", given), ("--data", None)])
    assert ckpt.read_bytes() == b"weights"


def test_an_input_beside_the_folder_does_not_stop_a_claim(tmp_path: Path) -> None:
    out = _earlier(tmp_path / "out", "quantize")
    (tmp_path / "out-2.npz").write_bytes(b"x")  # a sibling whose name starts like the folder's
    claim_output_dir(out, kind="quantize", inputs=[("--data", tmp_path / "out-2.npz")])
    assert marker_kind(out) == "quantize"


def test_checkpoint_writers_do_not_follow_symlinks_at_their_old_temporary_names(tmp_path: Path) -> None:
    """Bad input: symlinks planted at the old fixed temporary names of the student checkpoint
    (``student.safetensors.tmp``) and of the trainer's epoch checkpoint (``.last.pt.<pid>.tmp``), each pointing at a
    victim file; both victims are unchanged and the checkpoints are written."""
    import torch

    from edgestill.chain.stages import _save_student
    from edgestill.compress.distill.trainer import _atomic_save

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    (ckpts / "student.safetensors.tmp").symlink_to(victim)
    (ckpts / f".last.pt.{os.getpid()}.tmp").symlink_to(victim)
    _save_student(torch.nn.Linear(2, 2), ckpts / "student.safetensors")
    _atomic_save({"epoch": 1}, ckpts / "last.pt")
    assert victim.read_text() == "precious"
    assert torch.load(ckpts / "last.pt", weights_only=True) == {"epoch": 1}
    assert (ckpts / "student.safetensors").stat().st_size > 0
    assert sorted(p.name for p in ckpts.iterdir() if not p.is_symlink()) == ["last.pt", "student.safetensors"]


def test_replacing_removes_its_temporary_file_when_the_writer_fails(tmp_path: Path) -> None:
    """Bad input: the writer raises half-way; the earlier file stays and no temporary file is left."""
    from edgestill.outdir import replacing

    (tmp_path / "w.pt").write_bytes(b"old")
    with pytest.raises(RuntimeError), replacing(tmp_path / "w.pt") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert (tmp_path / "w.pt").read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["w.pt"]


def test_working_folders_are_fresh_and_never_a_planted_symlink(tmp_path: Path) -> None:
    """Bad input: a symlink planted at the old fixed staging name ``.staging-m-onnx-fp32`` (and one at a
    mkdtemp-like name) pointing at a folder outside --out; the new working folder is a fresh real folder inside
    --out and nothing is written outside."""
    from edgestill.outdir import fresh_work_dir

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".staging-m-onnx-fp32").symlink_to(outside, target_is_directory=True)
    (out / ".staging-m-onnx-fp32-abcdefgh").symlink_to(outside, target_is_directory=True)
    (out / ".staging-m-onnx-fp32-12345678").mkdir()  # left by an interrupted run: removed
    (out / ".staging-m-onnx-fp16-12345678").mkdir()  # another cell's: kept
    work = fresh_work_dir(out, ".staging-m-onnx-fp32")
    (work / "m.onnx").write_bytes(b"x")
    assert work.parent == out and not work.is_symlink() and work.name.startswith(".staging-m-onnx-fp32-")
    assert sorted(p.name for p in out.iterdir()) == sorted([".staging-m-onnx-fp16-12345678", work.name])
    assert [p.name for p in outside.iterdir()] == ["keep.txt"] and (outside / "keep.txt").read_text() == "precious"


def test_write_manifest_never_writes_through_a_symlink_at_the_old_fixed_temp_name(tmp_path: Path) -> None:
    """Bad input tried: a symlink planted at `<name>.manifest.tmp` (the fixed name writes once went through),
    pointing at a file outside the folder."""
    from tests.benchmarks.conftest import write_tiny_onnx

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    art_dir = tmp_path / "art"
    art_dir.mkdir()
    (art_dir / "tiny.manifest.tmp").symlink_to(victim)
    manifest = write_tiny_onnx(art_dir)
    assert victim.read_text() == "keep me" and manifest.is_file() and not manifest.is_symlink()


@pytest.mark.parametrize("case", ["a file the user added", "a run stopped before it recorded its files"])
def test_a_same_command_folder_with_unrecorded_entries_is_refused_untouched(tmp_path: Path, case: str) -> None:
    """Bad input: the folder of an earlier quantize holds an entry its marker does not list (the user's notes.txt), or
    a marker that lists nothing (a SIGKILLed run); quantize must not delete what it cannot prove it wrote."""
    out = _earlier(tmp_path / "out", "quantize", files=None if "stopped" in case else ["checkpoints"])
    (out / "notes.txt").write_text("mine")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(InputError) as err:
        claim_output_dir(out, kind="quantize")
    msg = str(err.value)
    assert "notes.txt" in msg and "did not record writing" in msg and "--overwrite" in msg and "\n" not in msg
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    claim_output_dir(out, kind="quantize", overwrite=True)  # explicit: the whole folder goes
    assert [p.name for p in out.iterdir()] == [MARKER]


def test_release_records_what_the_command_left_so_its_rerun_may_replace_exactly_that(tmp_path: Path) -> None:
    from edgestill.outdir import recorded_entries, release_output_dir

    out = claim_output_dir(tmp_path / "out", kind="quantize")
    (out / "logs").mkdir()
    (out / "model.onnx").write_bytes(b"onnx")
    release_output_dir(out)
    assert recorded_entries(out) == ["logs", "model.onnx"] and marker_kind(out) == "quantize"
    (out / "later.txt").write_text("added after the run")
    with pytest.raises(InputError, match="later.txt"):
        claim_output_dir(out, kind="quantize")
    (out / "later.txt").unlink()
    claim_output_dir(out, kind="quantize")
    assert [p.name for p in out.iterdir()] == [MARKER]
    release_output_dir(out)


_HOLDER = """
import sys, time
from pathlib import Path
from edgestill.outdir import claim_output_dir
claim_output_dir(Path(sys.argv[1]), kind="quantize")
print("claimed", flush=True)
time.sleep(60)
"""


def test_a_folder_another_process_is_writing_is_refused(tmp_path: Path) -> None:
    """Fault: two processes claim one output folder at once; the second gets a clear error and changes nothing."""
    import subprocess
    import sys

    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "claimed"
        (out / "result.txt").write_text("the holder's work")
        with pytest.raises(InputError) as err:
            claim_output_dir(out, kind="quantize")
        assert "in use" in str(err.value) and "another edgestill command" in str(err.value)
        assert (out / "result.txt").read_text() == "the holder's work"
    finally:
        holder.kill()
        holder.wait()
    claim_output_dir(out, kind="quantize", overwrite=True)  # the lock died with its process


def test_one_process_may_claim_its_own_folder_again(tmp_path: Path) -> None:
    """A library caller (a test, a notebook) running two commands into one folder is not locked out by itself."""
    out = claim_output_dir(tmp_path / "out", kind="run")
    (out / "stages.json").write_text("{}")
    claim_output_dir(out, kind="run")
    assert [p.name for p in out.iterdir()] == [MARKER]



def test_names_a_command_owns_are_its_own_even_when_a_kill_kept_it_from_recording_them(tmp_path: Path) -> None:
    """Fault: a recipe run SIGKILLed mid-way never records its files; its rerun with --force (the demo always starts
    over) may still replace what it writes (stages.json, artifacts/, a torn temporary), but not a user's file."""
    import subprocess
    import sys

    out = tmp_path / "out"
    script = ("import os, sys; from pathlib import Path; from edgestill.outdir import claim_output_dir; "
              "p = claim_output_dir(Path(sys.argv[1]), kind='run', owns=('artifacts', 'stages.json', '.stages.json.*.tmp')); "
              "(p / 'artifacts').mkdir(); (p / 'stages.json').write_text('{}'); (p / '.stages.json.ab12.tmp').write_text('x'); "
              "os.kill(os.getpid(), 9)")
    subprocess.run([sys.executable, "-c", script, str(out)])
    assert marker_kind(out) == "run" and "files" not in json.loads((out / MARKER).read_text())  # never sealed
    claim_output_dir(out, kind="run")  # all of it was its own
    assert [p.name for p in out.iterdir()] == [MARKER]
    from edgestill.outdir import release_output_dir

    release_output_dir(out)  # this process lets go, as a command does when it ends
    subprocess.run([sys.executable, "-c", script, str(out)])
    (out / "mine.txt").write_text("a user's file")
    with pytest.raises(InputError, match="mine.txt") as err:
        claim_output_dir(out, kind="run")
    assert "stages.json" not in str(err.value) and "artifacts" not in str(err.value)
    assert (out / "mine.txt").read_text() == "a user's file" and (out / "stages.json").exists()
