"""Library output goes to the command's own log file inside --out, never through a symlink planted there."""

from __future__ import annotations

import os
from pathlib import Path

from edgestill.commands.streams import library_output_to
from tests.commands.symlinks import plant_log_symlinks


def test_library_output_is_not_written_through_planted_symlinks(tmp_path: Path) -> None:
    """Bad input: in one run folder ``logs/run.log`` is a symlink to a victim file; in another ``logs`` is a symlink
    to a folder outside --out. Neither victim is written; each log holds the library output."""
    victim, outside, folders = plant_log_symlinks(tmp_path, "run.log")
    for out in folders:
        log = out / "logs" / "run.log"
        with library_output_to(log):
            os.write(1, b"from a library\n")
        assert log.read_text() == "from a library\n" and not log.is_symlink() and not log.parent.is_symlink()
    assert victim.read_text() == "precious" and list(outside.iterdir()) == []


def test_an_existing_log_is_appended_to(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "run.log"
    with library_output_to(log):
        os.write(2, b"first\n")
    with library_output_to(log):
        os.write(1, b"second\n")
    assert log.read_text() == "first\nsecond\n"
