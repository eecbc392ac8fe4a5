"""Android phones over ADB: push a .tflite, run LiteRT's own ``benchmark_model`` on the phone, parse its report.

The phone needs only the ``benchmark_model`` binary (its path is the inventory's ``benchmark_model``); no Python.
One call of :func:`bench_on_adb_device` runs, for each artifact::

    adb devices                                    # the serial must be listed as "device"
    adb -s SERIAL push LOCAL WORKDIR/NAME.tflite   # the sync protocol: no shell sees the paths
    adb -s SERIAL shell '[taskset MASK] BENCHMARK_MODEL --graph=... --num_threads=N ... DELEGATE FLAGS'   # per thread count
    adb -s SERIAL shell 'cat .../scaling_governor ...'   # the phone's state after the run: governor, heat, throttling
    adb -s SERIAL shell 'rm -f WORKDIR/NAME.tflite'

``adb shell`` joins its arguments into one string that the phone's shell parses, so every word of the remote command
comes from a fixed template and is quoted with :func:`shlex.quote`; a file name with spaces, ``;`` or ``$()`` stays
one argument.

The report is benchmark_model's log (``tensorflow/lite/tools/benchmark/benchmark_model.cc``,
``benchmark_tflite_model.cc``): init, first inference, warm-up mean, the steady state's
``count= first= curr= min= max= avg= std=`` (plus ``p5= median= p95=`` in newer builds), the memory footprint, and
which delegate took how many nodes. The tool prints no p90/p99 and no raw samples: the record fills p50 from its
median (else its mean), p90 from its p95 (else its max) and p99 from its max, upper bounds said so in
``settings["latency_source"]`` and a warning. A delegate that the tool reports as not executing the graph (or that no
line shows as applied) is recorded as a fall back to the CPU in ``settings["accelerator"]``.

This path has been tested against the tool's documented output and a recording stand-in for ``adb``, not on a phone.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgestill.errors import InputError
from edgestill.record import LatencyStats, Measurement

if TYPE_CHECKING:
    from edgestill.devices.inventory import DeviceEntry
    from edgestill.runtimes.harness import BenchOptions

DEFAULT_WORKDIR = "/data/local/tmp/edgestill"
ACCELERATOR_FLAGS: dict[str, tuple[str, ...]] = {
    "cpu": ("--use_xnnpack=true",),
    "gpu": ("--use_gpu=true",),
    "nnapi": ("--use_nnapi=true",),
}
"""benchmark_model's delegate flags per accelerator (``cpu`` is XNNPACK, as in the Python interpreter)."""
_DELEGATES = {"cpu": ("XNNPACK", "TfLiteXNNPackDelegate"), "gpu": ("GPU", "TfLiteGpuDelegate"),
              "nnapi": ("NNAPI", "TfLiteNnapiDelegate")}  # fmt: skip
"""accelerator -> (the delegate provider's name in "Explicitly applied X delegate", the delegate kernel's name)."""
TAIL_CHARS = 2000
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_TIMINGS = re.compile(rf"Inference timings in us: Init: ({_NUMBER}), First inference: ({_NUMBER}), "
                      rf"Warmup \(avg\): ({_NUMBER}|nan|-?inf), Inference \(avg\): ({_NUMBER})")  # fmt: skip
_STATS = re.compile(r"\bcount=(\d+)\b(.*)")
_FIELD = re.compile(rf"\b(first|curr|min|max|avg|std|p5|median|p95)=({_NUMBER})")
_REPLACING = re.compile(r"Replacing (\d+)(?: out of (\d+))? node\(s\) with delegate \((\w+)\) node, yielding (\d+) partitions")
_MEMORY_DELTA = re.compile(rf"Memory footprint delta from the start of the tool \(MB\): init=({_NUMBER}) overall=({_NUMBER})")
_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUMBER})")
_MODEL_SIZE = re.compile(rf"The input model file size \(MB\): ({_NUMBER})")
_NNAPI_DEVICES = re.compile(r"NNAPI accelerators available: \[([^\]]*)\]")
_MASK = re.compile(r"[0-9a-fA-F]{1,64}")
STATE_COMMAND = ("cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null; echo @@; "
                 "cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq 2>/dev/null; echo @@; "
                 "cat /sys/class/thermal/thermal_zone*/temp 2>/dev/null; echo @@; "
                 "dumpsys thermalservice 2>/dev/null | grep -m 1 'Thermal Status'")
"""Read after each run (fixed, no user input): cpu0's governor and clock, the thermal zones, and Android's thermal
status (0 none, 1 light throttling, ... 6 shutdown; readable without root through dumpsys)."""


@dataclass(frozen=True, kw_only=True)
class BenchmarkModelReport:
    """What one benchmark_model run printed, in ms and MB (the tool prints µs)."""

    init_ms: float
    first_ms: float
    warmup_ms_mean: float | None
    count: int
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    median_ms: float | None = None  # newer builds only
    p95_ms: float | None = None  # newer builds only
    peak_memory_mb: float | None = None  # --report_peak_memory_footprint=true
    memory_delta_mb: dict[str, float] | None = None  # {"init": .., "overall": ..}
    model_size_mb: float | None = None
    replaced: tuple[tuple[str, int, int | None, int], ...] = ()  # (delegate kernel, nodes taken, of nodes, partitions)
    applied: dict[str, str] | None = None  # provider name ("GPU") -> "complete" | "partial" | "none"
    nnapi_devices: tuple[str, ...] | None = None


def _ms(us: float | str) -> float:
    """Microseconds (as the tool prints them) in ms, without binary-fraction noise (412.384 us -> 0.412384)."""
    return round(float(us) / 1000, 9)


def parse_benchmark_model(text: str) -> BenchmarkModelReport:
    """Parse benchmark_model's log (stdout and stderr together) into a report.

    Raises:
        ValueError: the timings line or the steady state's ``count=`` line is missing (the run failed or the output
            is not benchmark_model's); the message says which.
    """
    lines = text.replace("\r", "").splitlines()
    timings_at = next((i for i, ln in enumerate(lines) if _TIMINGS.search(ln)), None)
    if timings_at is None:
        raise ValueError("no 'Inference timings in us: Init: ..., First inference: ..., Warmup (avg): ..., "
                         "Inference (avg): ...' line")
    init_us, first_us, warmup_us, avg_us = _TIMINGS.search(lines[timings_at]).groups()  # type: ignore[union-attr]
    stats = [m for ln in lines[:timings_at] if (m := _STATS.search(ln)) and "Timings (microseconds)" not in ln]
    if not stats:
        raise ValueError("no steady-state 'count=... min=... max=... avg=... std=...' line before the timings")
    steady = stats[-1]  # warm-up first, then the regular runs
    count = int(steady.group(1))
    fields = {k: float(v) for k, v in _FIELD.findall(steady.group(2))}
    if "avg" not in fields:  # "count=N curr=X(all same)" or a single run: every run took curr
        if "curr" not in fields or count < 1:
            raise ValueError(f"the steady-state line {steady.group(0)!r} has no runs")
        fields.update(min=fields["curr"], max=fields["curr"], avg=fields["curr"], std=0.0)
    applied: dict[str, str] = {}
    for ln in lines:
        if m := re.search(r"Explicitly applied (\w+) delegate, and the model graph will be (completely|partially)", ln):
            applied[m.group(1)] = "complete" if m.group(2) == "completely" else "partial"
        elif m := re.search(r"Though (\w+) delegate is explicitly applied, the model graph will not be executed", ln):
            applied[m.group(1)] = "none"
    replaced = tuple((m.group(3), int(m.group(1)), int(m.group(2)) if m.group(2) else None, int(m.group(4)))
                     for ln in lines if (m := _REPLACING.search(ln)))
    text_all = "\n".join(lines)
    delta = _MEMORY_DELTA.search(text_all)
    peak = _PEAK.search(text_all)
    size = _MODEL_SIZE.search(text_all)
    nnapi = _NNAPI_DEVICES.search(text_all)
    return BenchmarkModelReport(
        init_ms=_ms(init_us),
        first_ms=_ms(first_us),
        warmup_ms_mean=_ms(warmup_us) if re.fullmatch(_NUMBER, warmup_us) else None,
        count=count,
        mean_ms=_ms(fields["avg"]),
        std_ms=_ms(fields.get("std", 0.0)),
        min_ms=_ms(fields["min"]),
        max_ms=_ms(fields["max"]),
        median_ms=_ms(fields["median"]) if "median" in fields else None,
        p95_ms=_ms(fields["p95"]) if "p95" in fields else None,
        peak_memory_mb=float(peak.group(1)) if peak else None,
        memory_delta_mb={"init": float(delta.group(1)), "overall": float(delta.group(2))} if delta else None,
        model_size_mb=float(size.group(1)) if size else None,
        replaced=replaced,
        applied=applied or None,
        nnapi_devices=tuple(d.strip() for d in nnapi.group(1).split(",") if d.strip()) if nnapi else None,
    )


def accelerator_outcome(report: BenchmarkModelReport, requested: str) -> dict[str, Any]:
    """``settings["accelerator"]`` of a run: what was asked, what ran, whether it fell back, the nodes it took.

    A gpu/nnapi delegate ran when the tool says it was applied (completely or partially); it fell back to the CPU
    when the tool says the graph will not be executed by it, when no line shows it applied, or (NNAPI) when its only
    device is ``nnapi-reference``, NNAPI's own CPU implementation.
    """
    provider, kernel = _DELEGATES[requested]
    taken = next(((n, of) for name, n, of, _ in report.replaced if name.startswith(kernel)), None)
    delegated = None if taken is None else f"{taken[0]}/{taken[1]}" if taken[1] is not None else str(taken[0])
    state = (report.applied or {}).get(provider)
    out: dict[str, Any] = {"requested": requested, "delegated_nodes": delegated}
    if requested == "cpu":
        return {**out, "ran": "cpu", "fell_back": False}
    reason = None
    if state == "none":
        reason = f"benchmark_model: the {provider} delegate was applied but the graph will not be executed by it"
    elif state is None and taken is None:
        reason = f"benchmark_model printed no line showing the {provider} delegate applied"
    elif requested == "nnapi" and report.nnapi_devices is not None and set(report.nnapi_devices) <= {"nnapi-reference"}:
        reason = "NNAPI's only device is nnapi-reference, its CPU implementation"
    if reason:
        return {**out, "ran": "cpu", "fell_back": True, "reason": reason}
    return {**out, "ran": requested, "fell_back": False, "partial": state == "partial" or (
        taken is not None and taken[1] is not None and taken[0] < taken[1])}


def report_measurement(report: BenchmarkModelReport, *, ident: dict[str, str], threads: int, accelerator: str,
                       device: dict[str, Any], provenance: dict[str, Any] | None = None,
                       settings: dict[str, Any] | None = None, model_bytes: int | None = None) -> Measurement:
    """The measurement record of one parsed run (``kind="measured"``); see the module docstring for p50/p90/p99."""
    p50, p50_from = (report.median_ms, "median") if report.median_ms is not None else (report.mean_ms, "mean (no median printed)")
    p90, p90_from = (report.p95_ms, "p95 (upper bound)") if report.p95_ms is not None else (report.max_ms, "max (upper bound)")
    latency = LatencyStats(
        p50_ms=p50, p90_ms=max(p90, p50), p99_ms=report.max_ms, mean_ms=report.mean_ms, std_ms=report.std_ms,
        cv_percent=100.0 * report.std_ms / report.mean_ms if report.mean_ms > 0 else 0.0,
        min_ms=report.min_ms, max_ms=report.max_ms, n=report.count,
    )  # fmt: skip
    outcome = accelerator_outcome(report, accelerator)
    warnings = [f"benchmark_model prints no p90/p99: p50 is its {p50_from.split(' ')[0]}, p90 its {p90_from.split(' ')[0]} "
                "and p99 its max (upper bounds); no raw samples, so the gate cannot test this record."]
    if outcome["fell_back"]:
        warnings.append(f"accelerator {accelerator!r} fell back to the CPU: {outcome['reason']}.")
    return Measurement(
        **ident,
        runtime="litert",
        threads=threads,
        kind="measured",
        init_ms=report.init_ms,
        first_ms=report.first_ms,
        warmup_ms_mean=report.warmup_ms_mean,
        latency=latency,
        peak_rss_mb=report.peak_memory_mb,
        model_bytes=model_bytes,
        provenance={"device": dict(device), **(provenance or {})},
        settings={
            **(settings or {}),
            "accelerator": outcome,
            "latency_source": {"tool": "benchmark_model", "p50_ms": p50_from, "p90_ms": p90_from,
                               "p99_ms": "max (upper bound)", "samples": "not reported"},
            "memory_delta_mb": report.memory_delta_mb,
            "model_size_mb": report.model_size_mb,
        },
        warnings=warnings,
    )


def benchmark_model_command(binary: str, graph: str, threads: int, *, accelerator: str = "cpu",
                            cpu_affinity: str | None = None, min_runs: int = 50, min_seconds: float = 1.0,
                            max_seconds: float = 150.0, warmup_runs: int = 10) -> str:
    """The remote shell command of one run: a fixed template, every word quoted (``adb shell`` joins into a string)."""
    words = ["taskset", cpu_affinity] if cpu_affinity else []
    words += [binary, f"--graph={graph}", f"--num_threads={int(threads)}", f"--num_runs={int(min_runs)}",
              f"--min_secs={float(min_seconds):g}", f"--max_secs={float(max_seconds):g}", f"--warmup_runs={int(warmup_runs)}",
              "--enable_op_profiling=false", "--report_peak_memory_footprint=true", *ACCELERATOR_FLAGS[accelerator]]  # fmt: skip
    return " ".join(shlex.quote(w) for w in words)


def adb_devices(adb: str, *, timeout_s: float = 30.0) -> dict[str, str]:
    """``adb devices`` as serial -> state (``device``, ``unauthorized``, ``offline`` ...).

    Raises:
        subprocess.SubprocessError, OSError: adb could not run or timed out.
    """
    out = subprocess.run([adb, "devices"], capture_output=True, text=True, timeout=timeout_s, check=False)
    states = {}
    for line in out.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[0].strip() and not line.startswith(("*", "List of devices")):
            states[parts[0].strip()] = parts[1].strip()
    return states


def parse_phone_state(text: str) -> dict[str, Any]:
    """:data:`STATE_COMMAND`'s output as the record's ``device_state`` (the keys of :func:`edgestill.host.device_state`
    plus ``thermal_status``); whatever was unreadable is None."""
    parts = (text.replace("\r", "").split("@@") + ["", "", "", ""])[:4]
    governor = parts[0].strip().splitlines()[0].strip() if parts[0].strip() else None
    khz = parts[1].strip()
    temps = []
    for raw in parts[2].split():
        try:
            value = int(raw) / 1000.0 if abs(int(raw)) >= 1000 else float(int(raw))  # most zones: millidegrees
        except ValueError:
            continue
        if -50.0 < value < 200.0:  # a disconnected sensor reads -274 °C or a huge number
            temps.append(value)
    status = re.search(r"Thermal Status:\s*(\d+)", parts[3])
    return {
        "governor": governor,
        "temperature_c": round(max(temps), 1) if temps else None,
        "throttled": None if status is None else int(status.group(1)) >= 1,
        "thermal_status": None if status is None else int(status.group(1)),
        "freq_mhz": round(int(khz) / 1000.0, 1) if khz.isdigit() else None,
    }


def _field(entry: Any, name: str, default: Any = None) -> Any:
    value = entry.get(name, default) if isinstance(entry, dict) else getattr(entry, name, default)
    return default if value is None else value


def _model_file(path: Path) -> tuple[Path, dict[str, str]]:
    """The .tflite to push and the record's identity; a manifest's files are checked against their sha256 first.

    Raises:
        InputError: not a .tflite (benchmark_model runs only LiteRT models), a generative one, missing, or failing its
            manifest's check.
    """
    from edgestill.artifact import MANIFEST_SUFFIX, Artifact
    from edgestill.runtimes.generate import llm_info

    if path.name.endswith(MANIFEST_SUFFIX):
        art = Artifact.load(path)
        if art.format != "tflite":
            raise InputError(f"{path} is a {art.format} artifact; an Android device over ADB runs LiteRT's "
                             "benchmark_model, which takes only .tflite models. Pass a tflite artifact, or measure "
                             f"the {art.format} one on an ssh or local device.")
        if llm_info(art) is not None:
            raise InputError(f"{path} is a generative model (source.llm in its manifest); an Android device over ADB "
                             "runs LiteRT's benchmark_model, which times one call of a signature on random inputs and "
                             "cannot prefill a prompt, carry the KV cache and decode token by token, so it gives no "
                             "TTFT or tokens/s. Measure it on an ssh or local device (`edgestill bench --device NAME "
                             "--prompt-tokens N --gen-tokens M`), or estimate it for the phone's profile "
                             "(`edgestill estimate`).")
        art.verify_files()
        return art.model_path, {"artifact": art.name, "format": "tflite", "precision": art.precision}
    if path.suffix != ".tflite":
        raise InputError(f"{path} is not a .tflite model; an Android device over ADB runs LiteRT's benchmark_model, "
                         "which takes only .tflite files (or their .manifest.json). Export a tflite artifact, or "
                         "measure this file on an ssh or local device.")
    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a regular file; pass the .tflite to push to the phone.")
    with path.open("rb") as f:
        if f.read(8)[4:8] != b"TFL3":
            raise InputError(f"{path} is not a TFLite flatbuffer (no 'TFL3' identifier at byte 4); pass a .tflite "
                             "written by a LiteRT converter.")
    beside = [path.with_name(path.stem + MANIFEST_SUFFIX), path.with_name(path.name + MANIFEST_SUFFIX)]
    if any(p.is_file() for p in beside):
        return _model_file(next(p for p in beside if p.is_file()))
    return path, {"artifact": path.stem, "format": "tflite", "precision": "?"}


def _tail(text: str) -> str:
    return text if len(text) <= TAIL_CHARS else "..." + text[-TAIL_CHARS:]


def _failed(ident: dict[str, str], threads: int, failure: str, error: str, device: dict[str, Any],
            settings: dict[str, Any]) -> Measurement:
    """A cell the phone could not measure: no numbers; ``settings["failure"]`` is the transport's failure class."""
    return Measurement(**ident, runtime="litert", threads=threads, kind="failed", error=error,
                       provenance={"device": dict(device)}, settings={**settings, "failure": failure})


def bench_on_adb_device(
    entry: DeviceEntry | dict[str, Any],
    artifacts: Sequence[str | Path],
    thread_counts: Sequence[int],
    *,
    accelerator: str | None = "cpu",
    cpu_affinity: str | None = None,
    min_runs: int = 50,
    min_seconds: float = 1.0,
    max_seconds: float = 150.0,
    warmup_runs: int = 10,
    bench: BenchOptions | None = None,
    runtime: str | None = None,
    eval_data: str | Path | None = None,
    timeout_s: float = 300.0,
    adb: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[Measurement]:
    """Measure .tflite artifacts on an Android phone with LiteRT's benchmark_model, one run per artifact × threads.

    Args:
        entry: the inventory entry (``name``, ``profile``, ``serial``, ``benchmark_model``, ``workdir``,
            ``cooldown_s``, ``adb``); a dict with those keys works too.
        artifacts: .tflite files or their manifests (a manifest's files are sha256-checked before the push).
        thread_counts: ``--num_threads`` values.
        accelerator: cpu (XNNPACK), gpu (``--use_gpu``) or nnapi (``--use_nnapi``); None means cpu.
        cpu_affinity: a hex CPU mask for ``taskset`` (e.g. ``f0``: the big cores of many phones), or None.
        min_runs, min_seconds, max_seconds, warmup_runs: the tool's ``--num_runs --min_secs --max_secs
            --warmup_runs``; ``bench`` (a BenchOptions), when given, supplies them instead.
        runtime: must be None or ``litert`` (benchmark_model is LiteRT's tool).
        eval_data: must be None: benchmark_model feeds random inputs and scores nothing.
        timeout_s: limit of each adb call; past it the cell fails as ``timeout``.
        adb: the adb client (default: the entry's ``adb``, else ``adb`` on PATH).
        progress: called as ``progress(done, total, label)`` before each cell and once at the end.

    Returns:
        one Measurement per artifact × thread count (``kind="measured"``, or ``kind="failed"`` with the reason,
        the tail of the tool's output and ``settings["failure"]``: unreachable, auth, missing_runtime, timeout,
        crash or error). Never raises for a phone that fails.

    Raises:
        InputError: bad input, before anything runs: not a .tflite, an unknown accelerator, a mask that is not hex,
            a runtime other than litert, eval data, no ``serial`` or ``benchmark_model`` in the entry, adb not found.
    """
    accelerator = accelerator or "cpu"
    name, profile = str(_field(entry, "name", "?")), _field(entry, "profile")
    serial, binary = _field(entry, "serial"), _field(entry, "benchmark_model")
    workdir = str(_field(entry, "workdir", "") or DEFAULT_WORKDIR)
    if accelerator not in ACCELERATOR_FLAGS:
        raise InputError(f"device {name!r} (adb) cannot use accelerator {accelerator!r}: benchmark_model runs "
                         f"{', '.join(ACCELERATOR_FLAGS)} (XNNPACK, the GPU delegate, NNAPI).")
    if runtime not in (None, "litert"):
        raise InputError(f"device {name!r} (adb) runs LiteRT's benchmark_model; runtime {runtime!r} is not on it. "
                         "Drop --runtime, or pass litert.")
    if eval_data is not None:
        raise InputError(f"device {name!r} (adb): benchmark_model feeds random inputs and scores no accuracy; drop "
                         "the eval data for this device (measure accuracy on an ssh or local device).")
    if not thread_counts or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 1 for t in thread_counts):
        raise InputError(f"thread counts must be whole numbers >= 1 (e.g. [1, 4]), got {list(thread_counts)!r}.")
    if cpu_affinity is not None and not _MASK.fullmatch(cpu_affinity):
        raise InputError(f"cpu_affinity {cpu_affinity!r} is not a hex CPU mask for taskset (e.g. f0 for CPUs 4-7).")
    if not serial or not binary:
        raise InputError(f"device {name!r} (adb) needs 'serial' (from `adb devices`) and 'benchmark_model' (the "
                         "binary's path on the phone) in the inventory.")
    if not posixpath.isabs(workdir) or not posixpath.isabs(str(binary)):
        raise InputError(f"device {name!r} (adb): workdir {workdir!r} and benchmark_model {binary!r} must be absolute "
                         "paths on the phone (e.g. /data/local/tmp/edgestill).")
    if bench is not None:
        min_runs, min_seconds, max_seconds, warmup_runs = bench.min_runs, bench.min_seconds, bench.max_seconds, bench.warmup_runs
    models = [_model_file(Path(a)) for a in artifacts]  # every input checked before the phone is touched
    adb_path = shutil.which(adb or _field(entry, "adb", "adb"))
    if adb_path is None:
        raise InputError(f"device {name!r} (adb): the adb client {adb or _field(entry, 'adb', 'adb')!r} is not on "
                         "PATH. Install Android's platform-tools, or set the entry's 'adb' to its path.")
    device = {"id": name, "profile": profile, "transport": "adb"}
    timing = {"num_runs": min_runs, "min_secs": min_seconds, "max_secs": max_seconds, "warmup_runs": warmup_runs}
    base_settings = {"tool": "benchmark_model", "bench": timing, "timeout_s": timeout_s}
    total = len(models) * len(thread_counts)

    def cells_failed(ident: dict[str, str], failure: str, why: str) -> list[Measurement]:
        return [_failed(ident, t, failure, why, device, base_settings) for t in thread_counts]

    try:
        states = adb_devices(adb_path, timeout_s=timeout_s)
    except (OSError, subprocess.SubprocessError) as exc:
        return [m for _, ident in models for m in cells_failed(ident, "unreachable", f"`adb devices` failed: {exc}")]
    state = states.get(serial)
    if state != "device":
        listed = ", ".join(f"{s} ({st})" for s, st in states.items()) or "none"
        why = (f"phone {serial!r} (device {name!r}) is not listed by `adb devices` (listed: {listed}). Connect it with "
               "USB debugging on, or `adb connect HOST:PORT` for wireless debugging.") if state is None else (
               f"phone {serial!r} (device {name!r}) is {state!r} in `adb devices`: "
               + ("accept the USB debugging prompt on the phone." if state == "unauthorized"
                  else "reconnect it (unplug and plug, or `adb reconnect`)."))  # fmt: skip
        failure = "auth" if state == "unauthorized" else "unreachable"
        return [m for _, ident in models for m in cells_failed(ident, failure, why)]

    def adb_run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([adb_path, "-s", serial, *args], capture_output=True, text=True, timeout=timeout_s,
                              check=False)  # fmt: skip

    out: list[Measurement] = []
    done = 0
    for local, ident in models:
        remote = posixpath.join(workdir, local.name)
        try:
            pushed = adb_run("push", str(local.resolve()), remote)
        except subprocess.TimeoutExpired:
            out += cells_failed(ident, "timeout", f"adb push of {local} to {serial}:{remote} ran past {timeout_s:g} s.")
            done += len(thread_counts)
            continue
        if pushed.returncode != 0:
            out += cells_failed(ident, "error", f"adb push of {local} to {serial}:{remote} failed (exit "
                                f"{pushed.returncode}): {_tail((pushed.stderr or pushed.stdout).strip())}")
            done += len(thread_counts)
            continue
        try:
            for threads in thread_counts:
                if progress:
                    progress(done, total, f"{name}: {ident['artifact']} ×{threads}")
                if done and _field(entry, "cooldown_s", 0):
                    time.sleep(float(_field(entry, "cooldown_s", 0)))
                done += 1
                command = benchmark_model_command(str(binary), remote, threads, accelerator=accelerator,
                                                  cpu_affinity=cpu_affinity, min_runs=min_runs, min_seconds=min_seconds,
                                                  max_seconds=max_seconds, warmup_runs=warmup_runs)  # fmt: skip
                out.append(_run_cell(adb_run, command, ident=ident, threads=threads, accelerator=accelerator,
                                     device=device, base_settings=base_settings, serial=serial, binary=str(binary),
                                     cpu_affinity=cpu_affinity, model_bytes=local.stat().st_size, timeout_s=timeout_s))
        finally:
            try:
                removed = adb_run("shell", f"rm -f {shlex.quote(remote)}")
                problem = None if removed.returncode == 0 else (removed.stderr or removed.stdout).strip()
            except subprocess.TimeoutExpired:
                problem = f"timed out after {timeout_s:g} s"
            if problem:
                for m in out[-len(thread_counts):]:
                    m.warnings.append(f"could not remove {remote} from the phone: {problem}")
    if progress:
        progress(total, total, f"{name}: done")
    return out


def _run_cell(adb_run: Callable[..., subprocess.CompletedProcess[str]], command: str, *, ident: dict[str, str],
              threads: int, accelerator: str, device: dict[str, Any], base_settings: dict[str, Any], serial: str,
              binary: str, cpu_affinity: str | None, model_bytes: int, timeout_s: float) -> Measurement:
    """One benchmark_model run on the phone, parsed into its record (failed with the output's tail when it fails)."""
    settings = {**base_settings, "command": command}
    try:
        proc = adb_run("shell", command)
    except subprocess.TimeoutExpired:
        return _failed(ident, threads, "timeout", f"benchmark_model ran past {timeout_s:g} s on {serial} and was "
                       "stopped; raise the timeout or lower --min-runs/--min-seconds.", device, settings)
    text = (proc.stdout or "") + ("\n" + proc.stderr if proc.stderr else "")
    last = text.strip().splitlines()[-1] if text.strip() else ""
    if proc.returncode in (126, 127) or (binary in last and re.search(r"not found|No such file|Permission denied", last)):
        return _failed(ident, threads, "missing_runtime", f"benchmark_model could not be started on {serial} at "
                       f"{binary!r} (exit {proc.returncode}): {_tail(text.strip())}. Push LiteRT's benchmark_model "
                       "for the phone's ABI there and `chmod +x` it, or fix 'benchmark_model' in the inventory.",
                       device, settings)  # fmt: skip
    try:
        report = parse_benchmark_model(text)
    except ValueError as exc:
        return _failed(ident, threads, "crash" if proc.returncode else "error",
                       f"benchmark_model gave no report on {serial} (exit {proc.returncode}; {exc}). "
                       f"Its output ends:\n{_tail(text.strip())}", device, settings)  # fmt: skip
    if proc.returncode != 0:
        return _failed(ident, threads, "crash", f"benchmark_model exited {proc.returncode} on {serial} after its "
                       f"report (an inference failed?). Its output ends:\n{_tail(text.strip())}", device, settings)
    provenance = {"runtime": "litert", "tool": "benchmark_model", "benchmark_model": binary, "serial": serial,
                  "threads": threads, "affinity": cpu_affinity, "pinned": cpu_affinity is not None}  # fmt: skip
    try:  # what the phone was in right after the timed runs; provenance never fails a measurement
        state = adb_run("shell", STATE_COMMAND)
        provenance["device_state"] = parse_phone_state(state.stdout or "")
    except (OSError, subprocess.SubprocessError):
        provenance["device_state"] = parse_phone_state("")
    return report_measurement(report, ident=ident, threads=threads, accelerator=accelerator, device=device,
                              provenance=provenance, settings=settings, model_bytes=model_bytes)
