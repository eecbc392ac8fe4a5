"""Provenance of the machine a measurement ran on: cheap, torch-free, standard library only."""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

# ISA flags that change inference speed (x86 /proc/cpuinfo "flags", Arm "Features").
INFERENCE_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",
    "neon", "asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2", "sme",
)  # fmt: skip


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _cpuinfo() -> tuple[str, list[str]]:
    """CPU model name and the inference-relevant ISA flags, from /proc/cpuinfo (Linux, Android)."""
    model, flags = "", set()
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if not model and key in ("model name", "hardware", "cpu model", "processor") and not value.strip().isdigit():
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model or platform.processor() or platform.machine(), [f for f in INFERENCE_FLAGS if f in flags]


def _mem_total_mb() -> float | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def git_state(cwd: str | os.PathLike[str] | None = None) -> tuple[str | None, bool | None]:
    """The commit and dirty flag (tracked files changed) of the git repo around ``cwd``; (None, None) outside one."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit.strip(), None if status is None else bool(status.strip())


@functools.lru_cache(maxsize=1)
def _static() -> dict[str, Any]:
    from edgestill import __version__

    cpu_model, flags = _cpuinfo()
    cores = os.cpu_count() or 1
    machine_id = _read("/etc/machine-id").strip() or _read("/var/lib/dbus/machine-id").strip()
    # No hostname: the id identifies a machine across runs without naming it.
    ident = "|".join([machine_id, cpu_model, str(cores), platform.machine(), platform.system()])
    return {
        "device_id": hashlib.sha256(ident.encode()).hexdigest()[:16],
        "cpu_model": cpu_model,
        "cpu_flags": flags,
        "cpu_count": cores,
        "arch": platform.machine(),
        "os": platform.system(),
        "kernel": platform.release(),
        "mem_total_mb": _mem_total_mb(),
        "python": platform.python_version(),
        "package_version": __version__,
    }


def host_provenance(cwd: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Describe this machine and code state for a measurement record.

    Args:
        cwd: where to look for a git repo (default: the current directory).

    Returns:
        device_id (hash of machine-id and CPU; no hostname), cpu_model, cpu_flags (inference ISA flags
        present), cpu_count, usable_cores (this process's affinity), arch, os, kernel, mem_total_mb,
        python, package_version, git_commit, git_dirty, time_utc.
    """
    info = dict(_static())
    try:
        info["usable_cores"] = sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity API
        info["usable_cores"] = list(range(info["cpu_count"]))
    info["git_commit"], info["git_dirty"] = git_state(cwd)
    info["time_utc"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return info
