"""Keep the terminal for edgestill: conversion libraries print to stdout/stderr (some from C++), which would
garble progress bars and break ``--json``. While a command runs, file descriptors 1 and 2 go to a log file;
the command writes its own output to duplicates of the real terminal streams."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO


@contextmanager
def library_output_to(log_path: Path) -> Iterator[tuple[TextIO, TextIO]]:
    """Send everything written to fds 1 and 2 into ``log_path``; yield (stdout, stderr) of the real terminal."""
    log = os.fdopen(_open_log(log_path), "ab", buffering=0)  # closed in finally
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    term_out = os.fdopen(os.dup(1), "w", buffering=1)
    term_err = os.fdopen(os.dup(2), "w", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    try:
        yield term_out, term_err
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        term_out.flush()
        term_err.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for fd in (saved_out, saved_err):
            os.close(fd)
        term_out.close()
        term_err.close()
        log.close()


def _open_log(path: Path) -> int:
    """Open ``path`` for appending without following a symlink; return the descriptor.

    A symlink at the log's name or at its folder is removed (the link only, never what it points at) and a fresh
    file made, so library output never lands outside the command's folder; ``O_NOFOLLOW`` closes the race.
    """
    if path.parent.is_symlink():
        path.parent.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
