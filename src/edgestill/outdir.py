"""Output folders edgestill owns: a marker file says edgestill wrote it, so a rerun may replace it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from edgestill import __version__
from edgestill.errors import InputError

MARKER = ".edgestill-out"


def claim_output_dir(path: Path, *, kind: str) -> Path:
    """Make ``path`` ready for a fresh run of ``kind`` and return it.

    An empty or missing folder is created; a folder edgestill wrote before (it holds the marker) is
    emptied; anything else is refused untouched.

    Raises:
        InputError: ``path`` is a file, a non-empty folder edgestill did not write, or not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"--out {path} is a file, not a folder. Pass a new or empty folder.")
    if path.is_dir() and any(path.iterdir()):
        if not (path / MARKER).is_file():
            raise InputError(
                f"--out {path} is not empty and was not written by edgestill, so nothing was touched. "
                "Pass a new or empty folder, or one a previous edgestill run wrote (it holds a "
                f"{MARKER} file)."
            )
        if not os.access(path, os.W_OK):
            raise InputError(f"--out {path} is not writable. Pass a folder you can write to.")
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / MARKER).write_text(json.dumps({"tool": "edgestill", "version": __version__, "kind": kind}) + "\n")
    except OSError as exc:
        raise InputError(f"cannot write to --out {path}: {exc.strerror}. Pass a folder you can write to.") from None
    return path


def write_json_atomic(path: Path, obj: object) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (see :func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the whole new one, never a part.

    The temporary file is created exclusively under a fresh name in the same folder (``mkstemp``: never an existing
    file, never through a symlink planted there), flushed to disk, then renamed over ``path``; it is removed on
    failure. The result keeps ``path``'s earlier permissions, else 0644 (``mkstemp``'s 0600 would hide a report).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        mode = path.stat().st_mode & 0o777 if path.is_file() and not path.is_symlink() else 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
