"""Benchmark artifacts on this machine, each in its own runner subprocess (crash isolation, clean RSS)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgestill.artifact import MAX_MANIFEST_BYTES, is_rejected, load_rejected
from edgestill.runtimes.harness import BenchOptions
from edgestill.record import Measurement, measurement_from_dict
from edgestill.errors import ConfigError, InputError
from edgestill.host import redact, redact_all
from edgestill.limits import available_memory_bytes, format_bytes
from edgestill.runtimes.base import DEFAULT_RUNTIME, RuntimeOptions
from edgestill.runtimes.generate import DEFAULT_GEN_TOKENS, DEFAULT_PROMPT_TOKENS, check_lengths
from edgestill.runtimes.runner import THREAD_ENV

HOST = "host"  # the machine edgestill runs on; other bench.devices names are devices of an inventory file
STDERR_TAIL_CHARS = 2000
REPEAT_CV_WARN_PERCENT = 5.0  # p50 CV across interleaved repetitions above this: the cell's numbers are not stable
BAD_INPUT_EXIT = 2  # the runner's exit code for bad input (errors.InputError)
DEFAULT_MEMORY_FRACTION = 0.9  # the runner's default memory limit: this share of the memory available when it starts
MIN_DEFAULT_MEMORY_BYTES = 512 << 20  # ...but never less: a busy moment must not make a small model fail
MIN_MEMORY_LIMIT_BYTES = 64 << 20  # Python, numpy and a runtime library need about 110-180 MiB of data; below this nothing runs
# What a runner that hit its memory limit prints: Python's MemoryError, C++'s std::bad_alloc (OpenVINO, onnxruntime),
# glibc failing to map a library or a thread's memory, numpy's and onnxruntime's own messages.
_OOM_MARKERS = ("MemoryError", "bad_alloc", "Cannot allocate memory", "cannot allocate memory", "Unable to allocate",
                "Failed to allocate memory", "failed to map segment", "out of memory")


def default_memory_limit_bytes() -> int:
    """The runner's memory limit when none is given: 90% of the memory available now (``$EDGESTILL_MEMORY_LIMIT``
    overrides it, see :func:`edgestill.limits.available_memory_bytes`), at least 512 MiB."""
    return max(int(available_memory_bytes() * DEFAULT_MEMORY_FRACTION), MIN_DEFAULT_MEMORY_BYTES)


def check_memory_limit(n_bytes: int, *, option: str = "memory_limit_bytes") -> int:
    """``n_bytes`` if it can be a runner's memory limit.

    Raises:
        InputError: not a whole number, or below the 64 MiB a runner needs before it loads any model.
    """
    if isinstance(n_bytes, bool) or not isinstance(n_bytes, int):
        raise InputError(f"{option} must be a whole number of bytes, got {n_bytes!r}.")
    if n_bytes < MIN_MEMORY_LIMIT_BYTES:
        raise InputError(f"{option} {format_bytes(n_bytes)} is below the {format_bytes(MIN_MEMORY_LIMIT_BYTES)} a runner "
                         "needs before it loads a model (Python, numpy and the runtime library); give at least 256M.")
    return n_bytes


def _limit_memory(pid: int, n_bytes: int) -> int | None:
    """Cap the data memory of the just-started runner ``pid`` at ``n_bytes``; return the limit set (None where the
    platform cannot set one: no ``prlimit`` outside Linux).

    ``RLIMIT_DATA`` (heap and private writable mappings, Linux >= 4.7), not ``RLIMIT_AS``: address space counts
    reservations that are never touched, so it fails runtimes that run fine. Measured here on the demo's artifacts
    at 32 threads: onnxruntime reserved 1.5 GB of address space for 70 MB resident, and under a 1 GiB RLIMIT_AS it
    could not even import numpy; under a 512 MiB RLIMIT_DATA onnxruntime, OpenVINO and LiteRT all ran (their data
    was 125-180 MB).

    Set from the parent with ``prlimit`` as soon as ``Popen`` returns (the child has just exec'd Python, which has
    allocated next to nothing yet), not in a ``preexec_fn``: that forces a plain fork of a parent that may hold
    torch's or JAX's threads, and a child that then runs Python code before exec can deadlock on a lock one of those
    threads held.
    """
    try:
        import resource

        _, hard = resource.prlimit(pid, resource.RLIMIT_DATA)
        soft = n_bytes if hard == resource.RLIM_INFINITY else min(n_bytes, hard)  # the hard limit cannot be raised
        resource.prlimit(pid, resource.RLIMIT_DATA, (soft, hard))
        return soft
    except (ImportError, AttributeError):  # Windows, macOS: no prlimit
        return None
    except ProcessLookupError:  # it has already exited (the child is ours and unreaped, so the pid is not reused)
        return n_bytes
    except OSError:
        return None


def _out_of_memory(limit_bytes: int | None, *texts: str) -> bool:
    """Whether a failed runner ran out of memory under its limit (its error or stderr says so)."""
    return limit_bytes is not None and any(marker in text for text in texts for marker in _OOM_MARKERS)


def _first_line(text: str, chars: int = 300) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= chars else line[:chars] + "..."


def _tail(text: str, chars: int = STDERR_TAIL_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= chars else "..." + text[-chars:]


def _read_small_json(path: Path) -> Any:
    """``path`` parsed as JSON when it is a regular file no larger than a manifest may be (else OSError/ValueError)."""
    if not path.is_file() or path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ValueError(f"{path} is not a manifest-sized regular file")
    return json.loads(path.read_bytes())


def _identity(artifact_path: Path) -> dict[str, Any]:
    """Name, format and precision from the manifest, for the record of a cell that failed; a bare model file without
    one (see :func:`edgestill.runtimes.inspect.artifact_for`) gives its name and the format of its suffix."""
    from edgestill.runtimes.inspect import SUFFIX_FORMAT, manifest_beside

    if _is_bare_model(artifact_path):
        return {"artifact": artifact_path.stem, "format": SUFFIX_FORMAT[artifact_path.suffix.lower()], "precision": "?"}
    try:
        d = _read_small_json(manifest_beside(artifact_path) or artifact_path)
        ident = {"artifact": d.get("name", artifact_path.name), "format": d.get("format", "?"), "precision": d.get("precision", "?")}
        if all(isinstance(v, str) for v in ident.values()):
            return ident
        raise ValueError("not a manifest")
    except (OSError, ValueError, AttributeError, RecursionError):
        name = artifact_path.name.removesuffix(".manifest.json")
        return {"artifact": name, "format": "?", "precision": "?"}


def _is_bare_model(artifact_path: Path) -> bool:
    """Whether ``artifact_path`` is a model file without a manifest, read by :func:`edgestill.runtimes.inspect.artifact_for`."""
    from edgestill.runtimes.inspect import SUFFIX_FORMAT, manifest_beside

    return artifact_path.suffix.lower() in SUFFIX_FORMAT and manifest_beside(artifact_path) is None


def _manifest(artifact_path: Path) -> dict[str, Any] | None:
    """The artifact's manifest as a dict (the file given, or the manifest beside a model file), or None (a bare model
    file: the runner then records the contract it read from the file, with ``settings["manifest_present"] = False``)."""
    candidates = [artifact_path] if artifact_path.name.endswith(".manifest.json") else [
        artifact_path.with_name(artifact_path.stem + ".manifest.json"), artifact_path.with_name(artifact_path.name + ".manifest.json")]
    for p in candidates:
        try:
            d = _read_small_json(p)
        except (OSError, ValueError, RecursionError):
            continue
        return d if isinstance(d, dict) else None
    return None


def _failed(ident: dict[str, Any], runtime: str | None, options: RuntimeOptions, why: str, settings: dict[str, Any]) -> Measurement:
    """A failed cell's record; what the runner printed is kept without credentials (:func:`edgestill.host.redact`)."""
    return Measurement(
        **ident,
        runtime=runtime or DEFAULT_RUNTIME.get(ident["format"], "default"),
        threads=options.threads,
        kind="failed",
        error=redact(why),
        settings=redact_all(settings),
    )


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """The bench stage: which cells it measures (thread counts × devices), how each one is timed (``timing``), and
    ``rounds``: the whole list of cells measured that many times, interleaved (A B C A B C ...), so that the
    machine's drift hits every cell alike; a cell's record is its median round (by p50).

    ``prompt_tokens`` and ``gen_tokens`` are the fixed lengths a generative model is timed at (TTFT, prefill and
    decode tokens/s; a context too short for them times the largest lengths that fit, with the same ratio); other
    models ignore them.

    ``devices`` are ``host`` and names of devices in the ``inventory`` file (measured there over SSH or ADB);
    ``estimate`` names device profiles to estimate latency on (``kind: estimated``, never shown as measured). The
    names are checked against the inventory and the profiles where the recipe is loaded (the devices layer).
    """

    threads: tuple[int, ...] = (1,)
    devices: tuple[str, ...] = (HOST,)
    inventory: str | None = None
    estimate: tuple[str, ...] = ()
    rounds: int = 1
    timing: BenchOptions = field(default_factory=BenchOptions)
    prompt_tokens: int = DEFAULT_PROMPT_TOKENS
    gen_tokens: int = DEFAULT_GEN_TOKENS

    def __post_init__(self) -> None:
        check_lengths(self.prompt_tokens, self.gen_tokens, prefix="bench.")
        threads = (self.threads,) if isinstance(self.threads, int) else self.threads
        if (not isinstance(threads, (list, tuple)) or not threads
                or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 1 for t in threads)):
            raise ConfigError(f"bench.threads must be a list of whole numbers >= 1 (e.g. [1, 2]), got {self.threads!r}.")
        object.__setattr__(self, "threads", tuple(threads))
        for name in ("devices", "estimate"):
            value = getattr(self, name)
            names = (value,) if isinstance(value, str) else value
            if (not isinstance(names, (list, tuple)) or not all(isinstance(d, str) and d.strip() for d in names)
                    or len(set(names)) != len(names)):
                raise ConfigError(f"bench.{name} must be a list of distinct names (e.g. [host, pi5-lab-1]), got "
                                  f"{value!r}.")
            object.__setattr__(self, name, tuple(names))
        if not self.devices and not self.estimate:
            raise ConfigError("bench.devices is empty and bench.estimate names no profile: there is nothing to bench. "
                              "Use devices: [host], or estimate: [raspberry-pi-5].")
        if self.inventory is not None and (not isinstance(self.inventory, str) or not self.inventory.strip()):
            raise ConfigError(f"bench.inventory must be the path of a devices.yaml file, got {self.inventory!r}.")
        remote = [d for d in self.devices if d != HOST]
        if remote and self.inventory is None:
            raise ConfigError(f"bench.devices: unknown device {remote[0]!r}: it is not this machine ({HOST!r}) and no "
                              "bench.inventory file says how to reach it. Add bench.inventory: devices.yaml (see "
                              "`edgestill lab --help`), or list a device profile under bench.estimate for an estimate.")
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or not 1 <= self.rounds <= 20:
            raise ConfigError(f"bench.rounds must be a whole number in [1, 20], got {self.rounds!r}.")
        if not isinstance(self.timing, BenchOptions):
            raise ConfigError(f"bench.timing must be a BenchOptions, got {type(self.timing).__name__}.")


def benchmark(
    artifact_path: str | os.PathLike[str],
    *,
    runtime: str | None = None,
    options: RuntimeOptions | None = None,
    bench: BenchOptions | None = None,
    eval_data: str | os.PathLike[str] | None = None,
    metric: str = "top1",
    inputs: str | os.PathLike[str] = "random",
    seed: int = 0,
    affinity: Sequence[int] | None = None,
    timeout_s: float = 300.0,
    memory_limit_bytes: int | None = None,
    allow_rejected: bool = False,
    prompt_tokens: int = DEFAULT_PROMPT_TOKENS,
    gen_tokens: int = DEFAULT_GEN_TOKENS,
) -> Measurement:
    """Measure one artifact on one runtime in a fresh runner subprocess; never raises for a failing cell.

    Args:
        artifact_path: the artifact's manifest, its model file with the manifest beside it, or a bare .onnx, .tflite
            or OpenVINO .xml that edgestill did not write (its I/O contract is read from the file).
        runtime: runtime name; default the format's own (onnxruntime, litert, openvino).
        options: threads and backend settings (recorded in the result).
        bench: the harness's stop rule.
        eval_data: an .npz with ``x`` and ``y`` to score accuracy on (optional).
        metric: accuracy metric name ("top1", "top5").
        inputs: "random" (seeded) or an .npy/.npz of timing inputs.
        seed: seed of the random inputs.
        affinity: CPU ids to pin the runner to (recorded either way).
        timeout_s: wall-clock limit of the subprocess; past it the runner's process group is killed.
        memory_limit_bytes: the runner's data memory limit (``RLIMIT_DATA``); default
            :func:`default_memory_limit_bytes`. A runner that hits it fails with "ran out of memory (limit X)".
        allow_rejected: measure a ``*.rejected`` file (one that failed validation) for diagnosis: its files are
            staged under their original names for the runner, and the record is marked ``settings["rejected"] =
            True`` with ``settings["rejected_reason"]`` and ``settings["rejected_path"]`` (the gate never counts it
            as passing). Without it a rejected file fails as bad input, with why it was rejected.
        prompt_tokens, gen_tokens: a generative model's timing lengths (see :class:`BenchConfig`); its eval data is
            the LLM eval NPZ and its accuracy ``exact_match``.

    Returns:
        the runner's Measurement (``kind="measured"``), or ``kind="failed"`` with ``error`` holding why (a crash,
        a non-zero exit, a timeout, running out of memory, unreadable output) and, for a crash or an internal
        failure, the tail of the runner's stderr. ``settings["failure"]`` names the class: ``bad_input``,
        ``timeout``, ``out_of_memory``, ``crash`` or ``error``.
    """
    options = options or RuntimeOptions()
    memory_limit_bytes = default_memory_limit_bytes() if memory_limit_bytes is None else check_memory_limit(memory_limit_bytes)
    bench = bench or BenchOptions()
    path = Path(artifact_path)
    check_lengths(prompt_tokens, gen_tokens)
    run = dict(runtime=runtime, options=options, bench=bench, eval_data=eval_data, metric=metric, inputs=inputs,
               seed=seed, affinity=affinity, timeout_s=timeout_s, memory_limit_bytes=memory_limit_bytes,
               llm={"prompt_tokens": prompt_tokens, "gen_tokens": gen_tokens})
    if not (allow_rejected and is_rejected(path)):
        return _benchmark(path, **run)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory(prefix="edgestill-rejected-") as staged:
        try:
            art, reason = load_rejected(path, staged)
        except InputError as exc:
            settings = {"failure": "bad_input", "runner_exit_code": BAD_INPUT_EXIT, "runner_error": str(exc),
                        "rejected": True, "rejected_path": str(path)}
            return _failed(_identity(path), runtime, options, str(exc), settings)
        m = _benchmark(art.manifest_path, **run)  # type: ignore[arg-type]
    # measured for diagnosis: the record says so, so reports, the store and the gate can tell
    m.settings.update(rejected=True, rejected_reason=reason, rejected_path=str(path))
    m.warnings.append("a rejected file, measured for diagnosis only (--allow-rejected): it failed validation"
                      + (f": {reason}" if reason else ""))
    return m


def _benchmark(
    path: Path, *, runtime: str | None, options: RuntimeOptions, bench: BenchOptions, eval_data: Any, metric: str,
    inputs: Any, seed: int, affinity: Sequence[int] | None, timeout_s: float, memory_limit_bytes: int,
    llm: dict[str, int],
) -> Measurement:
    """:func:`benchmark` of an artifact path the runner can open."""
    ident = _identity(path)
    job = {
        # a bare model file keeps the name it was given (a symlink's, not its target's): the record's artifact name
        "artifact": os.path.abspath(path) if _is_bare_model(path) else str(path.resolve()),
        "runtime": runtime,
        "options": options.to_dict(),
        "bench": bench.to_dict(),
        "inputs": inputs if str(inputs) == "random" else str(Path(inputs).resolve()),
        "seed": seed,
        "eval_data": str(Path(eval_data).resolve()) if eval_data else None,
        "metric": metric,
        "affinity": list(affinity) if affinity else None,
        "llm": llm,  # read by the runner for a generative artifact only
    }
    settings: dict[str, Any] = {"runtime_options": options.to_dict(), "bench": bench.to_dict(), "timeout_s": timeout_s,
                                 "memory_limit_bytes": None}
    with tempfile.TemporaryDirectory(prefix="edgestill-job-") as tmp:
        job_path = Path(tmp) / "job.json"
        job_path.write_text(json.dumps(job))
        cmd = [sys.executable, "-m", "edgestill.runtimes.runner", str(job_path)]
        t0 = time.perf_counter()
        # Thread variables are set from process start, before any library reads them (the runner sets them too).
        env = {**os.environ, **{var: str(options.threads) for var in THREAD_ENV}}
        try:
            proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env
            )
        except OSError as exc:
            settings["failure"] = "error"
            return _failed(ident, runtime, options, f"could not start the runner ({' '.join(cmd)}): {exc}", settings)
        settings["memory_limit_bytes"] = _limit_memory(proc.pid, memory_limit_bytes)
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            settings["failure"] = "timeout"
            if err.strip():
                settings["runner_stderr_tail"] = _tail(err)
            return _failed(ident, runtime, options, f"runner timed out after {timeout_s:g} s and was killed.", settings)
        except BaseException:  # Ctrl-C: the runner is in its own session and would not see the signal
            _kill_group(proc)
            raise
        wall_ms = (time.perf_counter() - t0) * 1000.0
    doc = _parse(out)
    rc = proc.returncode
    settings["runner_exit_code"] = rc
    if rc == 0 and doc is not None and doc.get("kind") != "failed":
        try:
            m = measurement_from_dict(doc)
        except (TypeError, ValueError) as exc:
            settings["failure"] = "error"
            return _failed(ident, runtime, options, f"the runner's JSON is not a measurement record ({exc})", settings)
        m.settings["memory_limit_bytes"] = settings["memory_limit_bytes"]
        manifest = _manifest(path)
        if manifest is not None:  # the store keeps it once per artifact and run (its artifacts table)
            m.settings["manifest"] = manifest
        m.provenance["runner_wall_ms"] = round(wall_ms, 1)
        m.provenance["torch_imported"] = bool(doc.get("torch_imported"))
        # no credentials in what is stored and reported: a manifest's source URL with user:password, a token
        # a runtime echoed into a warning
        m.settings, m.provenance, m.warnings = redact_all(m.settings), redact_all(m.provenance), redact_all(m.warnings)
        return m
    runner_error = str(doc.get("error")) if doc is not None and doc.get("kind") == "failed" else ""
    if rc != BAD_INPUT_EXIT and _out_of_memory(settings["memory_limit_bytes"], runner_error, err):
        # the limit did its job: one line says so (the runner's own first line, e.g. numpy's request, follows);
        # the traceback or native abort it printed stays in the record, not in the reason
        settings["failure"] = "out_of_memory"
        if err.strip():
            settings["runner_stderr_tail"] = _tail(err)
        detail = _first_line(runner_error) or next((ln.strip() for ln in reversed(err.splitlines())
                                                    if any(k in ln for k in _OOM_MARKERS)), "")
        limit_text = format_bytes(settings["memory_limit_bytes"])
        why = f"ran out of memory (limit {limit_text}); raise --memory-limit if the model needs more"
        settings["runner_error"] = why
        return _failed(ident, runtime, options, f"{why}. The runner said: {detail}" if detail else why + ".", settings)
    if rc < 0:
        try:
            sig = signal.Signals(-rc).name
        except ValueError:
            sig = f"signal {-rc}"
        why = f"runner crashed ({sig}) without a result"
        if -rc == signal.SIGKILL:  # not ours (a timeout returned above): most often the kernel's OOM killer
            why = ("runner was killed (SIGKILL) without a result: most likely the machine ran out of memory and the "
                   "kernel's OOM killer stopped it; a lower --memory-limit stops a runner before that happens")
        settings["failure"] = "crash"
    elif doc is not None and doc.get("kind") == "failed":
        why = f"runner failed (exit {rc}): {doc.get('error')}"
        settings["runner_error"] = runner_error  # its own one-paragraph reason, without the log tail
        settings["failure"] = "bad_input" if rc == BAD_INPUT_EXIT else "error"
        if rc == BAD_INPUT_EXIT:  # the reason is the whole story; what the libraries printed stays in the record
            if err.strip():
                settings["runner_stderr_tail"] = _tail(err)
            return _failed(ident, runtime, options, why, settings)
    else:
        why = f"runner exited {rc} without a parseable JSON result"
        settings["failure"] = "crash"
    return _failed(ident, runtime, options, f"{why}\n--- runner stderr (tail) ---\n{_tail(err)}", settings)


def benchmark_ab(
    old: str | os.PathLike[str],
    new: str | os.PathLike[str],
    *,
    runtime: str | None = None,
    options: RuntimeOptions | None = None,
    blocks: int = 30,
    block_seconds: float = 0.05,
    block_min_runs: int = 5,
    affinity: Sequence[int] | None = None,
    timeout_s: float = 600.0,
    memory_limit_bytes: int | None = None,
) -> dict[str, Any]:
    """Time two artifacts interleaved in one runner process (:mod:`edgestill.runtimes.ab`); return its JSON document.

    The runner runs under ``memory_limit_bytes`` (default :func:`default_memory_limit_bytes`), as in :func:`benchmark`.

    Raises:
        InputError: the runner found bad input (an artifact its runtime cannot load, a bad option); the message is
            the runner's.
        RuntimeFailure: the runner crashed, timed out or printed no result.
    """
    from edgestill.errors import RuntimeFailure

    options = options or RuntimeOptions()
    limit = default_memory_limit_bytes() if memory_limit_bytes is None else check_memory_limit(memory_limit_bytes)
    job = {"old": str(Path(old).resolve()), "new": str(Path(new).resolve()), "runtime": runtime,
           "options": options.to_dict(), "blocks": blocks, "block_seconds": block_seconds, "block_min_runs": block_min_runs,
           "affinity": list(affinity) if affinity else None}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="edgestill-ab-") as tmp:
        job_path = Path(tmp) / "job.json"
        job_path.write_text(json.dumps(job))
        env = {**os.environ, **{var: str(options.threads) for var in THREAD_ENV}}
        proc = subprocess.Popen([sys.executable, "-m", "edgestill.runtimes.ab", str(job_path)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)  # fmt: skip
        limit = _limit_memory(proc.pid, limit)
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            raise RuntimeFailure(f"the A/B runner timed out after {timeout_s:g} s and was killed.") from None
        except BaseException:
            _kill_group(proc)
            raise
    doc = _parse(out)
    if proc.returncode == 0 and doc is not None and doc.get("kind") == "ab":
        return doc
    if proc.returncode == BAD_INPUT_EXIT and doc is not None:
        raise InputError(str(doc.get("error")))
    if _out_of_memory(limit, str((doc or {}).get("error") or ""), err):
        raise RuntimeFailure(f"the A/B runner ran out of memory (limit {format_bytes(limit)}).\n"
                             f"--- runner stderr (tail) ---\n{_tail(err)}")
    raise RuntimeFailure(f"the A/B runner failed (exit {proc.returncode}): "
                         f"{(doc or {}).get('error') or 'no result'}\n--- runner stderr (tail) ---\n{_tail(err)}")


def _parse(stdout: str) -> dict[str, Any] | None:
    """The runner's JSON document: the last non-empty stdout line."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    if not lines:
        return None
    try:
        doc = json.loads(lines[-1])
    except json.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def benchmark_matrix(
    artifacts: Sequence[str | os.PathLike[str]],
    threads_list: Sequence[int] = (1,),
    *,
    runtime: str | None = None,
    options: RuntimeOptions | None = None,
    accelerator: str | None = None,
    bench: BenchOptions | None = None,
    eval_data: str | os.PathLike[str] | None = None,
    metric: str = "top1",
    affinity: Sequence[int] | None = None,
    rounds: int = 1,
    timeout_s: float = 300.0,
    memory_limit_bytes: int | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    journal: str | os.PathLike[str] | None = None,
    allow_rejected: bool = False,
    inputs: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]] = "random",
    prompt_tokens: int = DEFAULT_PROMPT_TOKENS,
    gen_tokens: int = DEFAULT_GEN_TOKENS,
) -> list[Measurement]:
    """Benchmark every artifact × thread count, one runner subprocess per cell; a failed cell does not stop the rest.

    With ``rounds > 1`` the whole list of cells is run that many times, interleaved (A B A B ...), so
    drift on a shared machine hits every cell alike; each round is its own Measurement with
    ``settings["round"]`` set, ready for :func:`edgestill.stats.bootstrap_ratio_ci`.

    Args:
        artifacts: manifest paths.
        threads_list: thread counts; each cell uses ``options`` with ``threads`` replaced.
        accelerator: where each cell runs (``RuntimeOptions.accelerator``: cpu, gpu, npu, cuda, ...); None keeps
            ``options``' own. Each record says which one ran in ``settings["accelerator"]``; one the runtime or the
            machine lacks makes the cell fail as bad input.
        rounds: interleaved repetitions of the whole matrix (>= 1).
        memory_limit_bytes: every runner's memory limit; default :func:`default_memory_limit_bytes`, taken once
            before the first cell so that every cell runs under the same limit.
        progress: called as ``progress(done, total, label)`` before each cell and once at the end.
        journal: a file where each finished cell's record is appended (flushed to disk) as it completes. A rerun of
            the same matrix with the same journal takes those cells from it and measures only the rest, so a matrix
            killed part-way loses at most the cell it was in. A journal of another matrix is refused.
        allow_rejected: measure ``*.rejected`` files for diagnosis, their records marked (see :func:`benchmark`).
        inputs: the timing inputs of every cell ("random" or an .npy/.npz, as :func:`benchmark`), or a mapping from
            each artifact (as given in ``artifacts``) to its own (e.g. a text encoded with each artifact's tokenizer).
        prompt_tokens, gen_tokens: a generative model's timing lengths (see :class:`BenchConfig`).
        (the rest as :func:`benchmark`)

    Returns:
        one Measurement per cell and round: rounds outer, then artifacts, then threads; failed cells have
        ``kind="failed"``.

    Raises:
        InputError: ``rounds`` < 1 or an empty thread list.
    """
    if rounds < 1 or not threads_list:
        raise InputError(f"rounds must be >= 1 and threads_list non-empty; got rounds={rounds}, threads_list={list(threads_list)}.")
    base = options or RuntimeOptions()
    if accelerator is not None:
        base = replace(base, accelerator=accelerator)  # validated by RuntimeOptions (InputError listing the valid ones)
    memory_limit_bytes = default_memory_limit_bytes() if memory_limit_bytes is None else check_memory_limit(memory_limit_bytes)
    cells = [(r, Path(a), t) for r in range(rounds) for a in artifacts for t in threads_list]
    inputs_of = ({str(Path(k)): str(v) for k, v in inputs.items()} if isinstance(inputs, Mapping)
                 else {str(Path(a)): str(inputs) for a in artifacts})
    job = {"artifacts": [str(Path(a).resolve()) for a in artifacts], "threads": list(threads_list), "runtime": runtime,
           "options": base.to_dict(), "bench": (bench or BenchOptions()).to_dict(), "rounds": rounds, "metric": metric,
           "eval_data": None if eval_data is None else str(Path(eval_data).resolve()),
           **({"llm": [prompt_tokens, gen_tokens]} if (prompt_tokens, gen_tokens) != (DEFAULT_PROMPT_TOKENS,
                                                                                   DEFAULT_GEN_TOKENS) else {}),
           # the inputs by content (a temporary file's path changes between runs; its bytes do not)
           **({"inputs": {a: v if v == "random" else _sha256_path(v) for a, v in inputs_of.items()}}
              if isinstance(inputs, Mapping) or str(inputs) != "random" else {})}
    done = _read_journal(Path(journal), job) if journal is not None else {}
    results = []
    for i, (round_index, path, threads) in enumerate(cells):
        if progress:
            progress(i, len(cells), f"{path.name.removesuffix('.manifest.json')} ×{threads}")
        if i in done:
            results.append(done[i])
            continue
        m = benchmark(
            path,
            runtime=runtime,
            options=replace(base, threads=threads),
            bench=bench,
            eval_data=eval_data,
            metric=metric,
            inputs=inputs_of.get(str(path), "random"),
            affinity=affinity,
            timeout_s=timeout_s,
            memory_limit_bytes=memory_limit_bytes,
            allow_rejected=allow_rejected,
            prompt_tokens=prompt_tokens,
            gen_tokens=gen_tokens,
        )
        if rounds > 1:
            m.settings["round"] = round_index
        results.append(m)
        if journal is not None:
            _append_journal(Path(journal), job, i, m)
    if progress:
        progress(len(cells), len(cells), "done")
    return results


def _sha256_path(path: str) -> str:
    import hashlib

    p = Path(path)
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else path


def _read_journal(path: Path, job: dict[str, Any]) -> dict[int, Measurement]:
    """The cells an earlier, interrupted run of the same matrix finished: {cell index: record}.

    A torn last line (the process was killed while writing it) is ignored; that cell is measured again.

    Raises:
        InputError: the journal belongs to a different matrix (other artifacts, threads, options or data).
    """
    if not path.is_file():
        return {}
    raw = path.read_bytes()
    if not raw.endswith(b"\n"):  # the last line was torn by a kill: drop it so the next append starts a clean line
        raw = raw[: raw.rfind(b"\n") + 1]
        with open(path, "r+b") as f:
            f.truncate(len(raw))
    done: dict[int, Measurement] = {}
    for n, line in enumerate(raw.decode("utf-8", errors="replace").splitlines()):
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if n == 0:  # the header: which matrix this journal is of
            if not isinstance(entry, dict) or entry.get("job") != job:
                raise InputError(f"the run key's journal {path} belongs to a different bench (other artifacts, "
                                 "threads, options or data). Pass a new --run-key for this matrix.")
            continue
        try:
            done[int(entry["cell"])] = measurement_from_dict(entry["record"])
        except (KeyError, TypeError, ValueError):
            continue
    return done


def _append_journal(path: Path, job: dict[str, Any], cell: int, m: Measurement) -> None:
    """Append one finished cell (with its raw samples) and flush it to disk before the next cell starts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        if new:
            f.write(json.dumps({"job": job}) + "\n")
        f.write(json.dumps({"cell": cell, "record": m.to_dict(with_samples=True)}, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


_BAD_INPUT_PREFIXES = ("InputError: ", "ConfigError: ", "UnknownNameError: ", "UnsupportedError: ")


def failure_reason(m: Measurement) -> str:
    """Why a cell failed in one paragraph: the runner's own message when it gave one, else the whole error.

    A bad-input message is shown without its class name: it is written for the user, who fixes the input.
    """
    reason = str(m.settings.get("runner_error") or m.error or "")
    if m.settings.get("runner_exit_code") == BAD_INPUT_EXIT:
        for prefix in _BAD_INPUT_PREFIXES:
            reason = reason.removeprefix(prefix)
    return reason


def failure_exit_code(measurements: Sequence[Measurement]) -> int:
    """The exit code a run of cells maps to: 0 none failed; 2 every failure was bad input; 3 otherwise.

    A cell is bad input when its runner exited 2 (an InputError: a file its runtime cannot parse, inputs
    of the wrong shape, bad eval data). One crash, timeout or internal failure among them makes it 3:
    a real failure is never hidden behind a user mistake.
    """
    failed = [m for m in measurements if m.kind == "failed"]
    if not failed:
        return 0
    if all(m.settings.get("runner_exit_code") == BAD_INPUT_EXIT for m in failed):
        return BAD_INPUT_EXIT
    return 3


def repeat_summary(measurements: Sequence[Measurement], cv_warn_percent: float = REPEAT_CV_WARN_PERCENT) -> list[dict[str, Any]]:
    """Per artifact × runtime × threads cell: the p50 of each repetition and their CV (std, ddof=1, / mean).

    Args:
        measurements: the output of :func:`benchmark_matrix` (failed cells are skipped).
        cv_warn_percent: a p50 CV across repetitions above this adds a ``warning`` to the cell.

    Returns:
        one dict per cell, in first-seen order: ``artifact, runtime, threads, repeat`` (repetitions run),
        ``p50_ms_each`` (measured ones), ``p50_cv_percent`` (None with fewer than 2 measured) and ``warning`` (None or a message).
    """
    import numpy as np

    cells: dict[tuple[str, str, int], list[float]] = {}
    runs: dict[tuple[str, str, int], int] = {}
    for m in measurements:
        key = (m.artifact, m.runtime, m.threads)
        cells.setdefault(key, [])
        runs[key] = runs.get(key, 0) + 1
        if m.kind == "measured" and m.latency is not None:
            cells[key].append(m.latency.p50_ms)
    out = []
    for (artifact, runtime, threads), p50s in cells.items():
        cv = None
        if len(p50s) >= 2 and np.mean(p50s) > 0:
            cv = round(float(np.std(p50s, ddof=1) / np.mean(p50s) * 100.0), 2)
        warning = None
        if cv is not None and cv > cv_warn_percent:
            warning = (
                f"p50 varies {cv:.1f}% across {len(p50s)} repetitions (> {cv_warn_percent:g}%): the machine was "
                "busy or throttling; compare cells only as interleaved ratios, or pin cores and repeat."
            )
        out.append({"artifact": artifact, "runtime": runtime, "threads": threads, "repeat": runs[(artifact, runtime, threads)],
                    "p50_ms_each": [round(p, 4) for p in p50s], "p50_cv_percent": cv, "warning": warning})  # fmt: skip
    return out


def median_round(rounds: Sequence[Measurement]) -> Measurement:
    """One record for a cell measured in several interleaved rounds: the round with the median p50 (the lower
    middle one for an even count), with every round's p50 in ``settings["rounds_p50_ms"]``. A cell that failed in
    every round gives its first failure."""
    measured = sorted((m for m in rounds if m.kind == "measured" and m.latency is not None), key=lambda m: m.latency.p50_ms)
    if not measured:
        return rounds[0]
    chosen = measured[(len(measured) - 1) // 2]
    chosen.settings["rounds"] = len(rounds)
    chosen.settings["rounds_p50_ms"] = [None if m.latency is None else round(m.latency.p50_ms, 5) for m in rounds]
    return chosen

