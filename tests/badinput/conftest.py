"""The bad-input suite: every case runs the real CLI in a subprocess, the way a user or a CI job would.

A bad input must give exit 2, one paragraph on stderr that says what was wrong (no Python traceback), and leave no
half-written artifact. Each test file names, in its cases, the bad inputs it tries.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def edgestill(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None,
              ) -> subprocess.CompletedProcess[str]:
    """Run ``python -m edgestill ARGS`` (from the repository root unless ``cwd``, so ``tests.*`` factories import)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "edgestill", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or REPO, env=full_env)


def assert_bad_input(r: subprocess.CompletedProcess[str], *phrases: str) -> str:
    """Exit 2, one clear paragraph on stderr naming each of ``phrases`` (case-insensitive), no traceback."""
    err = r.stderr.strip()
    assert r.returncode == 2, f"exit {r.returncode}, expected 2\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    assert err.startswith("error:") or "error:" in err, err
    error_part = err[err.index("error:"):]
    assert "\n\n" not in error_part, f"more than one paragraph:\n{error_part}"
    for phrase in phrases:
        assert phrase.lower() in error_part.lower(), f"{phrase!r} not in:\n{error_part}"
    return error_part


def tree(folder: Path) -> dict[str, bytes]:
    """Every regular file under ``folder`` with its bytes: compare before and after to prove nothing changed."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def no_artifacts(folder: Path, patterns: Iterable[str] = ("*.onnx", "*.tflite", "*.xml", "*.bin", "*.manifest.json")) -> bool:
    """True when ``folder`` holds no published model file or manifest (a rejected or failed run leaves none)."""
    folder = Path(folder)
    return not any(p for pat in patterns for p in folder.rglob(pat)) if folder.exists() else True
