"""Sizes checked before they are allocated: a declared size that cannot fit the machine is bad input, not a crash.

Every value a user or a file declares (rows of an NPZ, an input shape, a sample count, a manifest's tensor shape) is
turned into bytes and compared with the memory this machine has *before* numpy or torch allocates it, so the
message names the value and the limit instead of a MemoryError (exit 3) or the kernel's OOM killer.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

from edgestill.errors import InputError

_FALLBACK_BYTES = 4 << 30  # when /proc/meminfo cannot be read: a conservative 4 GiB


def available_memory_bytes() -> int:
    """Memory a new allocation can use now: ``MemAvailable`` from /proc/meminfo, capped by ``RLIMIT_AS`` and a
    cgroup limit when those are lower; ``$EDGESTILL_MEMORY_LIMIT`` (bytes, or with a K/M/G suffix) overrides."""
    override = os.environ.get("EDGESTILL_MEMORY_LIMIT")
    if override:
        return parse_bytes(override, option="EDGESTILL_MEMORY_LIMIT")
    limits = [_meminfo_available()]
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            limits.append(int(soft))
    except (ImportError, OSError, ValueError):
        pass
    for cgroup_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(cgroup_file, encoding="ascii").read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < (1 << 60):
            limits.append(int(text))
    return min(x for x in limits if x is not None)


def _meminfo_available() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return _FALLBACK_BYTES


def parse_bytes(text: str, *, option: str) -> int:
    """``"512M"``, ``"2G"``, ``"1048576"`` → bytes."""
    t = str(text).strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(t[-1:], 1)
    number = t[:-1] if scale != 1 else t
    try:
        value = float(number)
    except ValueError:
        raise InputError(f"{option}={text!r} is not a size; use bytes or a number with K, M or G (e.g. 2G).") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{option}={text!r} must be a positive size (e.g. 2G).")
    return int(value * scale)


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # unreachable


def element_count(shape: Iterable[int]) -> int:
    """The number of elements of ``shape`` (Python ints: never overflows the way a numpy product does)."""
    n = 1
    for d in shape:
        n *= int(d)
    return n


def check_allocation(n_bytes: int, *, what: str, fix: str, fraction: float = 0.8) -> None:
    """Refuse (InputError, exit 2) an allocation of ``n_bytes`` larger than ``fraction`` of the available memory.

    Args:
        what: the value that asks for it, as the user wrote it, e.g. ``"--samples 10000000 at input 3x224x224"``.
        fix: what to do instead, e.g. ``"Pass a smaller --samples."``.
    """
    limit = int(available_memory_bytes() * fraction)
    if n_bytes > limit:
        raise InputError(f"{what} needs {format_bytes(n_bytes)} of memory, more than the {format_bytes(limit)} this "
                         f"machine can give it ({fraction:.0%} of the available memory). {fix}")


def read_small_text(path: str | os.PathLike[str], *, max_bytes: int, what: str, typical: str = "a few KB") -> str:
    """The UTF-8 text of a small input file (a recipe, a profile, an inventory), read whole; a file past
    ``max_bytes`` is refused after reading ``max_bytes + 1`` bytes of it, never loaded.

    Args:
        path: the file (the caller has checked it is a regular file).
        max_bytes: the largest size accepted.
        what: the file's role in messages (``recipe``, ``inventory``).
        typical: how large such a file usually is, for the message.

    Raises:
        InputError: unreadable, larger than ``max_bytes``, or not UTF-8 (the byte and line named).
    """
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"{what} {path} cannot be read: {exc.strerror or exc}.") from None
    if len(data) > max_bytes:
        limit = format_bytes(max_bytes).replace(".0 ", " ")
        a = "an" if what[:1].lower() in "aeiou" else "a"
        raise InputError(f"{what} {path} is larger than the {limit} limit for {a} {what} file ({max_bytes:,} bytes); "
                         f"{a} {what} is {typical}. Check that it is the right file.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{what} {path} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); save it as "
                         "UTF-8.") from None
