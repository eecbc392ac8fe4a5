"""Output folders and atomic writes: edgestill writes only inside its folder, under names it created itself."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from edgestill.outdir import write_json_atomic, write_text_atomic


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
