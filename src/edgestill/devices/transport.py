"""How a measurement reaches a device: the transport registry (``local``, ``ssh``, ``adb``), the runner bundle that
travels to a device, the device-state probe, and the failures a device can have.

Each transport is a function ``(entry, artifacts, thread_counts, *, bench, eval_data, runtime, accelerator, timeout_s,
progress, prompt_tokens, gen_tokens) -> list[Measurement]`` (the last two: the lengths a generative artifact is timed
at, as in :func:`edgestill.benchmarks.bench.benchmark`) registered in :data:`TRANSPORTS` under the inventory's ``transport`` name: ``local``
and ``adb`` (a wrapper of :func:`edgestill.devices.adb.bench_on_adb_device`) here, ``ssh`` by
:mod:`edgestill.devices.ssh`, which ``TRANSPORTS.get`` imports on first use (as the runtimes' registry does), so no
module imports its own dispatcher. A transport never raises for a device that fails: every cell it could not measure
becomes a ``kind="failed"`` record whose ``settings["failure"]`` names the class (:data:`FAILURES`) and whose ``error``
says what to do.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import io
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgestill.errors import EdgestillError, InputError, RuntimeFailure
from edgestill.imports import module_files, module_imports
from edgestill.record import Measurement
from edgestill.registry import Registry
from edgestill.runtimes.generate import DEFAULT_GEN_TOKENS, DEFAULT_PROMPT_TOKENS

if TYPE_CHECKING:
    from edgestill.devices.inventory import DeviceEntry
    from edgestill.runtimes.harness import BenchOptions

FAILURES = ("unreachable", "auth", "host_key", "missing_runtime", "timeout", "crash", "bad_input", "error")
"""``settings["failure"]`` of a failed cell: the device could not be reached, refused the key, presented a host key
that is unknown or changed, lacks python/numpy/the runtime, ran past the timeout, crashed; or the runner refused the
input (``bad_input``) or failed internally (``error``)."""
INPUT_FAILURES = frozenset({"auth", "host_key", "bad_input"})
"""Failures the user fixes in their own files (the inventory, known_hosts, the artifact): exit 2, not 3."""


# --- failures ---------------------------------------------------------------------------------------------------------
class DeviceFault(RuntimeFailure):
    """A device could not run a job (exit 3); ``failure`` is its class in :data:`FAILURES`."""

    failure = "crash"


class DeviceUnreachable(DeviceFault):
    """No connection: refused, timed out, reset, name not resolved (after the retries)."""

    failure = "unreachable"


class MissingOnDevice(DeviceFault):
    """The device lacks its python, numpy or the runtime a job needs."""

    failure = "missing_runtime"


class DeviceTimeout(DeviceFault):
    """A command on the device ran past its timeout and was killed."""

    failure = "timeout"


class HostKeyRefused(InputError):
    """The device's host key is not in known_hosts, or differs from the one recorded there (exit 2: a security
    refusal the user resolves by verifying the key and editing known_hosts)."""

    failure = "host_key"


class AuthRefused(InputError):
    """The device refused the key (exit 2: the user fixes the key file or the device's authorized_keys)."""

    failure = "auth"


def failure_of(exc: BaseException) -> str:
    """The :data:`FAILURES` class of an exception a transport raised."""
    return getattr(exc, "failure", None) or ("bad_input" if isinstance(exc, InputError) else "error")


def failure_exit_code(measurements: Sequence[Measurement]) -> int:
    """0 when no cell failed; 2 when every failure was the user's to fix (:data:`INPUT_FAILURES`); else 3."""
    failed = [m for m in measurements if m.kind == "failed"]
    if not failed:
        return 0
    return 2 if all(m.settings.get("failure") in INPUT_FAILURES for m in failed) else 3


def artifact_identity(path: str | Path) -> dict[str, str]:
    """Name, format and precision of an artifact for a record, read from its manifest (file names when unreadable)."""
    from edgestill.artifact import Artifact

    p = Path(path)
    try:
        art = Artifact.load(p)
        return {"artifact": art.name, "format": art.format, "precision": art.precision}
    except (EdgestillError, OSError, ValueError):
        name = p.name.removesuffix(".manifest.json")
        fmt = {".onnx": "onnx", ".tflite": "tflite", ".xml": "openvino"}.get(p.suffix, "?")
        return {"artifact": name.rsplit(".", 1)[0] if fmt != "?" else name, "format": fmt, "precision": "?"}


def failed_cell(artifact: str | Path, *, runtime: str | None, threads: int, failure: str, error: str,
                device: dict[str, Any], settings: dict[str, Any] | None = None) -> Measurement:
    """The record of a cell a device could not measure: ``kind="failed"``, no numbers, the reason in ``error``."""
    from edgestill.host import redact, redact_all
    from edgestill.runtimes.base import DEFAULT_RUNTIME

    ident = artifact_identity(artifact)
    return Measurement(
        **ident,
        runtime=runtime or DEFAULT_RUNTIME.get(ident["format"], "default"),
        threads=threads,
        kind="failed",
        error=redact(error),
        provenance={"device": dict(device)},
        settings=redact_all({**(settings or {}), "failure": failure}),
    )


def runtime_options(threads: int, accelerator: str | None) -> Any:
    """RuntimeOptions for one cell; ``accelerator`` is passed through where this edgestill's runtimes take one.

    Raises:
        InputError: an accelerator was asked for but the runtimes here have no accelerator option.
    """
    from edgestill.runtimes.base import RuntimeOptions

    if accelerator is None:
        return RuntimeOptions(threads=threads)
    if "accelerator" not in {f.name for f in fields(RuntimeOptions)}:
        raise InputError(f"accelerator {accelerator!r} was asked for, but this edgestill's runtimes take no "
                         "accelerator option yet; drop --accelerator to measure on the CPU.")
    return RuntimeOptions(threads=threads, accelerator=accelerator)  # type: ignore[call-arg]


# --- the runner bundle ------------------------------------------------------------------------------------------------
BUNDLE_ROOTS = ("edgestill.runtimes.runner", "edgestill.runtimes")
"""The bundle holds the runner, every runtime backend (imported by name at run time, so invisible to ``ast``) and
everything they import from the package."""
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so the same sources give the same bytes and the same sha256


@dataclass(frozen=True)
class RunnerBundle:
    """The torch-free modules a device needs to run the runner, zipped (importable with ``PYTHONPATH=bundle.zip``)."""

    data: bytes
    sha256: str
    modules: tuple[str, ...]

    @property
    def filename(self) -> str:
        return f"edgestill-runner-{self.sha256[:16]}.zip"


def _package_root() -> Path:
    import edgestill

    return Path(edgestill.__file__).resolve().parent


def bundle_modules(root: Path | None = None) -> list[str]:
    """The package modules the runner needs on a device: the closure of :data:`BUNDLE_ROOTS` over every import
    (lazy ones too) plus the packages that contain them.

    Raises:
        RuntimeFailure: a module in the closure imports torch (the runner must run where torch is not installed).
    """
    root = root or _package_root()
    mods = module_files(root.parent, root.name)
    todo = [m for m in mods if any(m == r or m.startswith(r + ".") for r in BUNDLE_ROOTS)]
    seen: set[str] = set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        deps, tops = module_imports(mods[m], m, mods)
        if "torch" in tops:
            raise RuntimeFailure(f"{mods[m]} imports torch, but it is part of the runner that runs on devices, which "
                                 "have numpy and one runtime only; move that import out of the runner's closure.")
        todo.extend(deps - seen)
    for m in list(seen):  # the packages above each module (their __init__ runs on import)
        parts = m.split(".")
        seen.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return sorted(seen)


@functools.lru_cache(maxsize=1)
def runner_bundle() -> RunnerBundle:
    """The runner bundle of this installation (deterministic zip: the same sources give the same sha256)."""
    root = _package_root()
    mods = module_files(root.parent, root.name)
    names = bundle_modules(root)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in names:
            path = mods[name]
            info = zipfile.ZipInfo("edgestill/" + path.relative_to(root).as_posix(), date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    data = buf.getvalue()
    return RunnerBundle(data=data, sha256=hashlib.sha256(data).hexdigest(), modules=tuple(names))


# --- device state -----------------------------------------------------------------------------------------------------
DEVICE_STATE_CODE = r'''
def _device_state():
    """What changes numbers on a device: frequency governor, clocks, temperature, throttling (None where unreadable)."""
    import glob, shutil, subprocess

    def read(p):
        try:
            with open(p) as f:
                return f.read().strip()
        except OSError:
            return None

    cpus = sorted(glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq"))
    govs = sorted({g for g in (read(c + "/scaling_governor") for c in cpus) if g})
    def mhz(name):
        vals = []
        for c in cpus:
            try:
                vals.append(int(read(c + "/" + name)) / 1000.0)
            except (TypeError, ValueError):
                pass
        return max(vals) if vals else None
    temps = []
    for zone in glob.glob("/sys/class/thermal/thermal_zone*"):
        try:
            temps.append(int(read(zone + "/temp")) / 1000.0)
        except (TypeError, ValueError):
            pass
    throttled, raw = None, None
    if shutil.which("vcgencmd"):  # Raspberry Pi firmware: bit 2 throttled now, bit 18 since boot
        try:
            out = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=2).stdout
            raw = out.strip().partition("=")[2] or None
            throttled = bool(int(raw, 16) & 0x4) if raw else None
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
    return {"governor": govs[0] if len(govs) == 1 else (govs or None), "cpu_cur_mhz": mhz("scaling_cur_freq"),
            "cpu_max_mhz": mhz("scaling_max_freq"), "temperature_c": max(temps) if temps else None,
            "throttled": throttled, "throttled_raw": raw}
'''
"""Standard-library code, run in place on this machine and sent as-is (never with user text in it) to a device."""


def local_device_state() -> dict[str, Any]:
    """:data:`DEVICE_STATE_CODE` run on this machine."""
    namespace: dict[str, Any] = {}
    exec(compile(DEVICE_STATE_CODE, "<device_state>", "exec"), namespace)  # noqa: S102 - our own constant code
    return namespace["_device_state"]()


# --- the transports ---------------------------------------------------------------------------------------------------
TransportFn = Callable[..., list[Measurement]]
TRANSPORT_MODULES = {"ssh": "edgestill.devices.ssh"}
"""Transports registered by their own module, imported on first use of the name."""


class _Transports(Registry[TransportFn]):
    def get(self, name: str) -> TransportFn:
        if name not in self and name in TRANSPORT_MODULES:
            importlib.import_module(TRANSPORT_MODULES[name])  # the module registers its transport
        return super().get(name)

    def names(self) -> list[str]:
        return sorted(set(super().names()) | set(TRANSPORT_MODULES))


TRANSPORTS: Registry[TransportFn] = _Transports("transport")


@TRANSPORTS.register("local")
def bench_on_local_device(entry: DeviceEntry, artifacts: Sequence[str | Path], thread_counts: Sequence[int], *,
                          bench: BenchOptions | None = None, eval_data: Path | None = None, runtime: str | None = None,
                          accelerator: str | None = None, timeout_s: float = 300.0,
                          progress: Callable[[int, int, str], None] | None = None,
                          prompt_tokens: int = DEFAULT_PROMPT_TOKENS,
                          gen_tokens: int = DEFAULT_GEN_TOKENS) -> list[Measurement]:
    """Measure on this machine with :func:`edgestill.benchmarks.bench.benchmark` (one runner process per cell),
    with the inventory's device and the machine's state in each record and ``cooldown_s`` between cells."""
    from edgestill.benchmarks.bench import benchmark

    device = {"id": entry.name, "profile": entry.profile, "transport": "local"}
    cells = [(Path(a), t) for a in artifacts for t in thread_counts]
    out = []
    for i, (path, threads) in enumerate(cells):
        if progress:
            progress(i, len(cells), f"{entry.name}: {path.name.removesuffix('.manifest.json')} ×{threads}")
        if i and entry.cooldown_s:
            time.sleep(entry.cooldown_s)
        state = local_device_state()
        m = benchmark(path, runtime=runtime, options=runtime_options(threads, accelerator), bench=bench,
                      eval_data=eval_data, timeout_s=timeout_s, prompt_tokens=prompt_tokens, gen_tokens=gen_tokens)
        m.provenance["device"] = dict(device)
        m.provenance["device_state"] = state
        if m.kind == "failed":
            m.settings.setdefault("failure", "error")
        out.append(m)
    if progress:
        progress(len(cells), len(cells), f"{entry.name}: done")
    return out


@TRANSPORTS.register("adb")
def _adb(entry: DeviceEntry, artifacts: Sequence[str | Path], thread_counts: Sequence[int], **kw: Any) -> list[Measurement]:
    try:  # another module's; imported by name, as TRANSPORT_MODULES are
        bench_on_adb_device = importlib.import_module("edgestill.devices.adb").bench_on_adb_device
    except (ImportError, AttributeError) as exc:
        raise InputError(f"device {entry.name!r} uses transport 'adb', but this edgestill has no ADB transport "
                         f"(edgestill.devices.adb: {exc}); measure it over ssh or update edgestill.") from None
    accepted = inspect.signature(bench_on_adb_device).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    passed = {k: v for k, v in kw.items() if takes_all or k in accepted}
    dropped = sorted(k for k, v in kw.items() if k not in passed and v is not None
                     and k in ("eval_data", "runtime", "accelerator"))  # what changes the answer, not how it is shown
    if dropped:
        raise InputError(f"device {entry.name!r} (adb) cannot take {', '.join(dropped)}: the ADB transport runs "
                         "LiteRT's benchmark_model, which has no such option here. Drop it for this device.")
    results = list(bench_on_adb_device(entry, artifacts, thread_counts, **passed))
    for m in results:
        m.provenance.setdefault("device", {"id": entry.name, "profile": entry.profile, "transport": "adb"})
    return results
