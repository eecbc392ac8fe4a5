"""Provenance of the machine a measurement ran on: cheap, torch-free, standard library only."""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import os
import platform
import re
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


# --- secrets: nothing a measurement, a report or the store keeps may carry a credential ---------------------------------
REDACTED = "[redacted]"
GIT_REF_ENV = ("EDGESTILL_GIT_REF", "GITHUB_HEAD_REF", "GITHUB_REF_NAME")
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
# Known credential shapes: GitHub, GitLab, Slack, Hugging Face, OpenAI-style and AWS access keys, JWTs.
_KNOWN_TOKENS = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}"
    r"|hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_-]{20,}|(?:AKIA|ASIA)[A-Z0-9]{16}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
)
# Anything else that looks random: a run of 32+ base64 characters mixing upper case, lower case and digits (an API
# key). Hex (commit ids, sha256) has no upper case and is never matched; "/" ends a run, so paths are left alone.
_RANDOM_RUN = re.compile(r"[A-Za-z0-9+_]{32,}={0,2}")
# A whole value that is one random-looking word, "/" allowed (an AWS secret access key is 40 such characters): no ref
# name looks like this (they are words joined by "-", "_", "." or "/").
_RANDOM_VALUE = re.compile(r"[A-Za-z0-9+/=]{30,}")


def _looks_random(run: str) -> bool:
    return any(c.isupper() for c in run) and any(c.islower() for c in run) and any(c.isdigit() for c in run)


def redact(text: str) -> str:
    """``text`` without credentials: the user:password of every URL removed (``https://u:p@host/x`` becomes
    ``https://host/x``), and every token-looking word (known token formats, long random base64) replaced by
    ``[redacted]``. Paths, names, hex digests and ordinary words are unchanged."""
    text = _URL_USERINFO.sub(lambda m: m.group("scheme"), text)
    text = _KNOWN_TOKENS.sub(REDACTED, text)
    return _RANDOM_RUN.sub(lambda m: REDACTED if _looks_random(m.group(0)) else m.group(0), text)


def redact_all(obj: Any) -> Any:
    """:func:`redact` applied to every string in a JSON-like value (dict keys included); other values unchanged."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {redact(k) if isinstance(k, str) else k: redact_all(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact_all(v) for v in obj)
    return obj


def git_ref(cwd: str | os.PathLike[str] | None = None) -> str | None:
    """The branch or tag a run belongs to, safe to store: ``$EDGESTILL_GIT_REF``, CI's ``$GITHUB_HEAD_REF`` or
    ``$GITHUB_REF_NAME``, else the checkout's branch (None when detached or outside a repo).

    A variable whose value looks like a credential (a token pasted into the wrong variable) is not stored: the
    checkout's branch is used instead, or ``[redacted]`` when there is none. A URL's user:password is removed.
    """
    for var in GIT_REF_ENV:
        value = os.environ.get(var)
        if value:
            cleaned = redact(value)
            if REDACTED not in cleaned and not (_RANDOM_VALUE.fullmatch(value) and _looks_random(value)):
                return cleaned
            return _checkout_branch(cwd) or REDACTED
    return _checkout_branch(cwd)


def _checkout_branch(cwd: str | os.PathLike[str] | None) -> str | None:
    try:
        out = subprocess.run(["git", "symbolic-ref", "--short", "-q", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return redact(out.stdout.strip()) or None


# --- device state: what changes numbers on a device between runs (clock policy, heat, throttling) -----------------------
# Raspberry Pi firmware's get_throttled bits (raspberrypi.com/documentation "vcgencmd get_throttled"): the low bits are
# the state now, the same bits shifted by 16 say it has happened since boot.
_PI_THROTTLE_BITS = {0: "under_voltage", 1: "arm_freq_capped", 2: "throttled", 3: "soft_temp_limit"}
PI_THROTTLED_FILE = "/sys/devices/platform/soc/soc:firmware/get_throttled"
_MAX_THERMAL_ZONES = 64  # a board has a handful; never walk an unbounded folder on every record


def device_state(*, root: str | os.PathLike[str] = "/") -> dict[str, Any]:
    """What changes latency on this device right now; torch-free, standard library only, never raises.

    ``root`` is where ``/sys`` is looked for (a test points it at a folder laid out like one).

    Returns:
        ``governor``: cpu0's cpufreq scaling governor (``performance``, ``schedutil``...) or None where unreadable;
        ``temperature_c``: the highest reading over ``/sys/class/thermal/thermal_zone*/temp`` in °C, or None;
        ``throttled``: True/False from the Raspberry Pi firmware's ``get_throttled`` (frequency capped, throttled or at
        the soft temperature limit now), None where the machine has no such file; ``throttle_flags``: each of those
        flags now and since boot (``{"under_voltage": False, "under_voltage_since_boot": True, ...}``), or None;
        ``freq_mhz``: cpu0's current clock where readable, else None.
    """
    try:
        return _device_state(Path(root))
    except Exception:  # noqa: BLE001 - provenance must never fail a measurement
        return {"governor": None, "temperature_c": None, "throttled": None, "throttle_flags": None, "freq_mhz": None}


def _device_state(root: Path) -> dict[str, Any]:
    cpufreq = root / "sys/devices/system/cpu/cpu0/cpufreq"
    governor = _read(str(cpufreq / "scaling_governor")).strip() or None
    cur_khz = _read(str(cpufreq / "scaling_cur_freq")).strip()
    temps = []
    for zone in sorted((root / "sys/class/thermal").glob("thermal_zone*"))[:_MAX_THERMAL_ZONES]:
        raw = _read(str(zone / "temp")).strip()
        try:
            value = int(raw) / 1000.0  # millidegrees Celsius
        except ValueError:
            continue
        if -50.0 < value < 200.0:  # a disconnected sensor reads -274 °C or a huge number
            temps.append(value)
    flags = _pi_throttle_flags(_read(str(root / PI_THROTTLED_FILE.lstrip("/"))).strip())
    return {
        "governor": governor,
        "temperature_c": round(max(temps), 1) if temps else None,
        "throttled": None if flags is None else any(flags[k] for k in ("arm_freq_capped", "throttled", "soft_temp_limit")),
        "throttle_flags": flags,
        "freq_mhz": round(int(cur_khz) / 1000.0, 1) if cur_khz.isdigit() else None,
    }


def _pi_throttle_flags(raw: str) -> dict[str, bool] | None:
    """Decode ``get_throttled`` (``0x50005`` or ``50005``, hex) into named flags; None when empty or not a number."""
    try:
        value = int(raw, 16)
    except ValueError:
        return None
    flags = {}
    for bit, name in _PI_THROTTLE_BITS.items():
        flags[name] = bool(value >> bit & 1)
        flags[f"{name}_since_boot"] = bool(value >> (bit + 16) & 1)
    return flags
