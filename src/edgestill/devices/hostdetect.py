"""The host's device profile, detected from the machine: CPU model, cores, ISA flags, caches, memory, clocks.

Standard library only (Linux's ``/proc`` and ``/sys``; elsewhere the fields fall back to what ``platform`` says).
MACs per cycle are derived from the ISA flags (x86) or the core type read from ``CPU part`` (Arm), each with a source
that says ``detected: ...``; what cannot be read without measuring (memory bandwidth) is a documented assumption
with source ``assumed``, which ``edgestill devices calibrate host`` refits.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any

# Bandwidth of a host nobody measured yet: one DDR4-3200 channel (x86) or a 32-bit LPDDR4-3200 bus (Arm boards).
# The calibration's bandwidth_efficiency refits it; the source says "assumed" so no report takes it for a measurement.
ASSUMED_BANDWIDTH_GBS = {"x86": 25.6, "arm": 12.8}
ASSUMED_GHZ = 2.0  # a clock nobody can read (no cpufreq, no "@ x GHz" in the model name)

# Arm "CPU part" (implementer 0x41) -> core name and fp32 MACs per cycle per core: 128-bit ASIMD pipes x 4 lanes.
# Two pipes (A75..A78, A7xx): 8; four (X1..X4, Neoverse V1/V2): 16; little cores (A55, A510, A520) and ARMv8.0
# A57/A72/A73: 4; A53's 64-bit datapath: 2. All derived from the cores' published pipe counts.
_ARM_PARTS: dict[int, tuple[str, float]] = {
    0xD03: ("Cortex-A53", 2), 0xD04: ("Cortex-A35", 2), 0xD05: ("Cortex-A55", 4), 0xD07: ("Cortex-A57", 4),
    0xD08: ("Cortex-A72", 4), 0xD09: ("Cortex-A73", 4), 0xD0A: ("Cortex-A75", 8), 0xD0B: ("Cortex-A76", 8),
    0xD0C: ("Neoverse-N1", 8), 0xD0D: ("Cortex-A77", 8), 0xD40: ("Neoverse-V1", 16), 0xD41: ("Cortex-A78", 8),
    0xD42: ("Cortex-A78AE", 8), 0xD44: ("Cortex-X1", 16), 0xD46: ("Cortex-A510", 4), 0xD47: ("Cortex-A710", 8),
    0xD48: ("Cortex-X2", 16), 0xD49: ("Neoverse-N2", 8), 0xD4B: ("Cortex-A78C", 8), 0xD4D: ("Cortex-A715", 8),
    0xD4E: ("Cortex-X3", 16), 0xD4F: ("Neoverse-V2", 16), 0xD80: ("Cortex-A520", 4), 0xD81: ("Cortex-A720", 8),
    0xD82: ("Cortex-X4", 16),
}  # fmt: skip


def detect_host(root: Path = Path("/")) -> dict[str, Any]:
    """This machine's profile fields (name, class, soc, cpu, memory, accelerators, runtimes, detected), read under
    ``root`` (``/``; a test points it at a folder laid out like one). Never a file: nothing here is stored."""
    from edgestill.host import INFERENCE_FLAGS, device_state

    arch = platform.machine().lower()
    is_x86 = arch in ("x86_64", "amd64", "i386", "i686", "x86")
    blocks = _cpuinfo_blocks(_text(root / "proc/cpuinfo"))
    model = next((b.get("model name") or b.get("hardware") or b.get("cpu model") for b in blocks
                  if b.get("model name") or b.get("hardware") or b.get("cpu model")), None)
    dt_model = (_text(root / "proc/device-tree/model") or _text(root / "sys/firmware/devicetree/base/model"))
    dt_model = dt_model.strip("\x00 \n")
    model = model or dt_model or platform.processor() or arch
    flag_words = set()
    for b in blocks:
        flag_words |= set((b.get("flags") or b.get("features") or "").split())
    flags = [f for f in INFERENCE_FLAGS if f in flag_words]
    logical = os.cpu_count() or max(1, len(blocks))
    cpus = _cpu_topology(root, logical)
    physical = len({(c["package"], c["core"]) for c in cpus}) if cpus and all(c["core"] is not None for c in cpus) \
        else logical
    clusters = _host_clusters(root, blocks, cpus, flags, model, is_x86)
    caches = _host_caches(root)
    mem_gb = _mem_gb(root)
    if "raspberry pi" in dt_model.lower():
        device_class = "raspberry-pi"
    elif "jetson" in dt_model.lower() or (root / "etc/nv_tegra_release").is_file():
        device_class = "jetson"
    elif (root / "system/build.prop").is_file() or "ANDROID_ROOT" in os.environ:
        device_class = "phone"
    else:
        device_class = "x86" if is_x86 else "other"
    bw = ASSUMED_BANDWIDTH_GBS["x86" if is_x86 else "arm"]
    bw_source = ("one DDR4-3200 channel, 25.6 GB/s" if is_x86 else "a 32-bit LPDDR4-3200 bus, 12.8 GB/s")
    runtimes = {rt: ["cpu"] for rt, modules in (("onnxruntime", ("onnxruntime",)),
                                                ("litert", ("ai_edge_litert", "tflite_runtime")),
                                                ("openvino", ("openvino",))) if any(_installed(m) for m in modules)}
    state = device_state(root=root)
    doc: dict[str, Any] = {
        "name": f"This machine ({model})", "class": device_class,
        "soc": dt_model or model,
        "cpu": {"clusters": clusters},
        "memory": {
            "size_gb": mem_gb if mem_gb else 1.0,
            "bandwidth_gbs": bw,
            "source": (f"size: {'detected: /proc/meminfo' if mem_gb else 'assumed (MemTotal unreadable)'}; bandwidth: "
                       f"assumed ({bw_source}) until `edgestill devices calibrate host` measures it"),
        },
        "accelerators": [],
        "runtimes": runtimes,
        "detected": {"cpu_model": model, "arch": arch, "logical_cores": logical, "physical_cores": physical,
                     "flags": flags, "governor": state.get("governor"), "device_model": dt_model or None},
    }
    if caches:
        doc["cpu"]["caches"] = caches
    return doc


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _cpuinfo_blocks(text: str) -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per processor block (keys lower-case); a trailing block of board-wide lines
    (Arm's ``Hardware``) becomes its own dict."""
    blocks, cur = [], {}
    for line in text.splitlines():
        if not line.strip():
            if cur:
                blocks.append(cur)
            cur = {}
            continue
        key, _, value = line.partition(":")
        cur.setdefault(key.strip().lower(), value.strip())
    if cur:
        blocks.append(cur)
    return blocks


def _cpu_topology(root: Path, logical: int) -> list[dict[str, Any]]:
    """Per logical CPU: id, package, core id, max clock (GHz or None), hybrid type (Intel P/E) where sysfs has them."""
    base = root / "sys/devices/system/cpu"
    p_cores = _cpu_list(_text(root / "sys/devices/cpu_core/cpus"))
    e_cores = _cpu_list(_text(root / "sys/devices/cpu_atom/cpus"))
    cpus = []
    for d in sorted(base.glob("cpu[0-9]*"), key=lambda p: int(p.name[3:]))[:4096]:
        n = int(d.name[3:])
        core = _text(d / "topology/core_id").strip()
        pkg = _text(d / "topology/physical_package_id").strip()
        khz = _text(d / "cpufreq/cpuinfo_max_freq").strip()
        cpus.append({"cpu": n, "core": int(core) if core.lstrip("-").isdigit() else None,
                     "package": int(pkg) if pkg.lstrip("-").isdigit() else 0,
                     "max_ghz": round(int(khz) / 1e6, 3) if khz.isdigit() and int(khz) > 0 else None,
                     "hybrid": "P-core" if n in p_cores else "E-core" if n in e_cores else None})
    return cpus


def _cpu_list(text: str) -> set[int]:
    """``0-3,8`` -> {0, 1, 2, 3, 8}."""
    out: set[int] = set()
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        if lo.strip().isdigit():
            out.update(range(int(lo), int(hi if hi.strip().isdigit() else lo) + 1))
    return out


def _host_clusters(root: Path, blocks: list[dict[str, str]], cpus: list[dict[str, Any]], flags: list[str],
                   model: str, is_x86: bool) -> list[dict[str, Any]]:
    """Group the logical CPUs into clusters of one core type and clock; count physical cores; derive MACs/cycle."""
    part_of: dict[int, int] = {}
    for b in blocks:
        if b.get("processor", "").isdigit() and b.get("cpu part", "").startswith("0x"):
            part_of[int(b["processor"])] = int(b["cpu part"], 16)
    if not cpus:
        cpus = [{"cpu": i, "core": None, "package": 0, "max_ghz": None, "hybrid": None}
                for i in range(os.cpu_count() or 1)]
    groups: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for c in cpus:
        kind = c["hybrid"] if is_x86 else part_of.get(c["cpu"])
        groups.setdefault((kind, c["max_ghz"]), []).append(c)
    clusters = []
    fallback_ghz, ghz_how = _fallback_ghz(blocks, model)
    for (kind, max_ghz), members in groups.items():
        cores = len({(m["package"], m["core"]) for m in members}) if all(m["core"] is not None for m in members) \
            else len(members)
        ghz, how = (max_ghz, "cpufreq cpuinfo_max_freq") if max_ghz else (fallback_ghz, ghz_how)
        if is_x86:
            name = f"{model} {kind}" if kind else model
            macs, why = _x86_macs(flags, e_core=kind == "E-core")
        else:
            part = _ARM_PARTS.get(kind) if isinstance(kind, int) else None
            name = part[0] if part else (f"Arm core part 0x{kind:x}" if isinstance(kind, int) else model)
            macs, why = _arm_macs(flags, part[1] if part else None, name)
        clusters.append({
            "core": name, "count": cores, "ghz": round(ghz, 3), "isa": list(flags), "macs_per_cycle": macs,
            "source": f"detected: {cores} {'physical ' if cores != len(members) else ''}cores ({len(members)} logical), "
                      f"clock from {how}; macs_per_cycle (d) {why}",
        })
    return sorted(clusters, key=lambda c: c["ghz"] * c["macs_per_cycle"]["fp32"], reverse=True)


def _fallback_ghz(blocks: list[dict[str, str]], model: str) -> tuple[float, str]:
    m = re.search(r"@\s*([0-9.]+)\s*GHz", model)
    if m:
        return float(m.group(1)), "the model name (nominal clock)"
    for b in blocks:
        mhz = b.get("cpu mhz", "")
        try:
            value = float(mhz)
        except ValueError:
            continue
        if value > 0:
            return value / 1000.0, "/proc/cpuinfo cpu MHz (the clock when read)"
    return ASSUMED_GHZ, f"nowhere readable: {ASSUMED_GHZ} GHz assumed"


def _x86_macs(flags: list[str], *, e_core: bool) -> tuple[dict[str, float], str]:
    f = set(flags)
    if "avx512f" in f and not e_core:
        fp32, why = 32.0, "AVX-512 with two FMA units assumed (some parts have one): 32 fp32 MACs"
    elif "avx2" in f and "fma" in f:
        fp32, why = (8.0, "AVX2 on two 128-bit FMA pipes (E-core): 8 fp32 MACs") if e_core else \
            (16.0, "AVX2 with two 256-bit FMA units: 16 fp32 MACs")
    elif "avx" in f:
        fp32, why = 8.0, "AVX without FMA: 8 fp32 MACs (mul + add)"
    else:
        fp32, why = 4.0, "SSE only: 4 fp32 MACs (conservative)"
    macs = {"fp32": fp32}
    if "avx512_vnni" in f or "avx_vnni" in f:
        macs["int8"] = 4 * fp32
        why += f"; int8 4x fp32 via {'AVX-512 VNNI' if 'avx512_vnni' in f else 'AVX-VNNI'} vpdpbusd"
    else:
        why += "; int8 not given (falls back to 2x fp32)"
    if "avx512_fp16" in f:
        macs["fp16"] = 2 * fp32
        why += "; fp16 2x fp32 (AVX512-FP16)"
    return macs, f"from flags {' '.join(flags) or '(none)'}: {why}"


def _arm_macs(flags: list[str], part_fp32: float | None, core: str) -> tuple[dict[str, float], str]:
    f = set(flags)
    if part_fp32 is not None:
        fp32, why = part_fp32, f"{core}: {int(part_fp32)} fp32 MACs from its ASIMD pipe count"
    elif "asimd" in f or "neon" in f:
        fp32, why = 4.0, "unknown Arm core with ASIMD: 4 fp32 MACs (conservative, one 128-bit FMA pipe)"
    else:
        fp32, why = 1.0, "no SIMD flags: 1 fp32 MAC (conservative)"
    macs = {"fp32": fp32}
    if "asimddp" in f:
        macs["int8"] = 4 * fp32
        why += "; int8 4x fp32 via SDOT (asimddp)"
    else:
        why += "; int8 not given (no SDOT; falls back to 2x fp32)"
    if "asimdhp" in f:
        macs["fp16"] = 2 * fp32
        why += "; fp16 2x fp32 (asimdhp)"
    return macs, f"from flags {' '.join(flags) or '(none)'}: {why}"


def _host_caches(root: Path) -> dict[str, Any] | None:
    """cpu0's L1 data, L2 and L3 sizes in KB from sysfs (the size as one core sees it)."""
    base = root / "sys/devices/system/cpu/cpu0/cache"
    found: dict[str, Any] = {}
    for idx in sorted(base.glob("index*")):
        level = _text(idx / "level").strip()
        kind = _text(idx / "type").strip()
        size = _size_kb(_text(idx / "size").strip())
        if size is None:
            continue
        if level == "1" and kind == "Data":
            found["l1d_kb"] = size
        elif level in ("2", "3") and kind == "Unified":
            found[f"l{level}_kb"] = size
    if not found:
        return None
    found["source"] = "detected: /sys/devices/system/cpu/cpu0/cache"
    return found


def _size_kb(text: str) -> float | None:
    m = re.fullmatch(r"([0-9]+)\s*([KMG]?)B?", text, re.IGNORECASE)
    if not m:
        return None
    return float(int(m.group(1)) * {"": 1 / 1024, "K": 1, "M": 1024, "G": 1024 * 1024}[m.group(2).upper()])


def _mem_gb(root: Path) -> float | None:
    for line in _text(root / "proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            try:
                return round(int(line.split()[1]) / (1024 * 1024), 1)
            except (IndexError, ValueError):
                return None
    return None
