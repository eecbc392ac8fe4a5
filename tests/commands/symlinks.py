"""Planted symlinks for the file-safety tests of commands that write logs into --out."""

from __future__ import annotations

from pathlib import Path


def plant_log_symlinks(tmp_path: Path, log_name: str) -> tuple[Path, Path, list[Path]]:
    """Two output folders: in ``a``, ``logs/<log_name>`` is a symlink to a victim file; in ``b``, ``logs`` itself is a
    symlink to a folder outside. Returns (victim file, outside folder, [a, b])."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    outside = tmp_path / "outside"
    outside.mkdir()
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "logs").mkdir(parents=True)
    (a / "logs" / log_name).symlink_to(victim)
    b.mkdir()
    (b / "logs").symlink_to(outside, target_is_directory=True)
    return victim, outside, [a, b]
