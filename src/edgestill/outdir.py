"""Output folders edgestill owns: a marker file says edgestill wrote it, so a rerun may replace it."""

from __future__ import annotations

import json
import os
import shutil
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
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
