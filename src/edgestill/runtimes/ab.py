"""Two models timed interleaved in one process: ``python -m edgestill.runtimes.ab JOB.json``.

For comparing an old and a new artifact on a machine whose speed drifts (a shared VM, a phone that heats up): both
are loaded, warmed up, then timed in short alternating blocks (A B, B A, A B, ...: the order flips every block so
neither side always runs second). Each block pair sees the same machine state, so the ratio of a pair's medians is
free of drift that is slow compared with a block; the gate decides on those paired ratios.

Like the runner it needs numpy and one runtime, never torch, and prints ONE JSON document on stdout.

Job file (JSON)::

    {"old": "a.manifest.json", "new": "b.manifest.json",   # required
     "runtime": null, "options": {"threads": 1},            # as the runner's
     "blocks": 30, "block_seconds": 0.05, "block_min_runs": 5, "warmup_runs": 10,
     "inputs": "random", "seed": 0, "affinity": null}

Output: ``{"kind": "ab", "old": {...}, "new": {...}, "blocks": [{"order": "old,new", "old_ms": [...], "new_ms":
[...]}, ...], "provenance": {...}}`` where each side holds artifact, format, precision, runtime, threads, model_bytes,
init_ms and its samples. On failure: ``{"kind": "failed", "error": ...}`` and exit 2 (bad input) or 3.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

WARMUP_SECONDS = 0.25  # per side, at least warmup_runs calls: a first block timed after 10 calls ran 2x slow here
AB_KEYS = ("old", "new", "runtime", "options", "blocks", "block_seconds", "block_min_runs", "warmup_runs", "inputs",
           "seed", "affinity")  # fmt: skip
AB_DEFAULTS: dict[str, Any] = {"runtime": None, "options": {}, "blocks": 30, "block_seconds": 0.05, "block_min_runs": 5,
                               "warmup_runs": 10, "inputs": "random", "seed": 0, "affinity": None}  # fmt: skip


def read_ab_job(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check an A/B job file; return it with defaults filled in.

    Raises:
        InputError: missing or unreadable file, no ``old``/``new``, an unknown key or a value out of range.
    """
    from edgestill.errors import InputError

    p = Path(path)
    try:
        job = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"A/B job file {p} is not readable JSON ({exc}); write it with edgestill.benchmarks.bench.") from None
    if not isinstance(job, dict) or "old" not in job or "new" not in job:
        raise InputError(f"A/B job file {p} must be a JSON object with 'old' and 'new' manifest paths.")
    unknown = sorted(set(job) - set(AB_KEYS))
    if unknown:
        raise InputError(f"A/B job file {p} has unknown key(s) {unknown}; valid keys: {', '.join(AB_KEYS)}.")
    job = {**AB_DEFAULTS, **job}
    if not (isinstance(job["blocks"], int) and 2 <= job["blocks"] <= 10000):
        raise InputError(f"blocks must be a whole number in [2, 10000], got {job['blocks']!r}.")
    if not (isinstance(job["block_seconds"], (int, float)) and 0 < job["block_seconds"] <= 10):
        raise InputError(f"block_seconds must be in (0, 10], got {job['block_seconds']!r}.")
    if not (isinstance(job["block_min_runs"], int) and 1 <= job["block_min_runs"] <= 100000):
        raise InputError(f"block_min_runs must be a whole number >= 1, got {job['block_min_runs']!r}.")
    return job


def _time_block(session: Any, feed: Any, seconds: float, min_runs: int) -> list[float]:
    """Call ``session.invoke`` back to back for at least ``min_runs`` calls and ``seconds``; per-call ms."""
    clock = time.perf_counter_ns
    out: list[float] = []
    end = clock() + int(seconds * 1e9)
    while True:
        t0 = clock()
        session.invoke(feed)
        t1 = clock()
        out.append((t1 - t0) / 1e6)
        if len(out) >= min_runs and t1 >= end:
            return out


def run_ab_job(job: dict[str, Any]) -> dict[str, Any]:
    """Load both artifacts, warm them up, time them in alternating blocks; return the JSON-able result.

    Raises:
        InputError: a bad artifact, option or input.
    """
    from edgestill.artifact import Artifact
    from edgestill.host import host_provenance
    from edgestill.runtimes.base import DEFAULT_RUNTIME, get_runtime
    from edgestill.runtimes.runner import THREAD_ENV, _pin, _runtime_options, load_model, make_inputs, text_seq_len

    options = _runtime_options(dict(job["options"] or {}))
    cores = _pin(job["affinity"])
    for var in THREAD_ENV:
        os.environ[var] = str(options.threads)
    arts = {side: Artifact.load(job[side]) for side in ("old", "new")}
    for art in arts.values():
        art.verify_files()  # before a runtime parses them, and outside the init time
    sides: dict[str, dict[str, Any]] = {}
    sessions, feeds = {}, {}
    for side, art in arts.items():
        runtime_name = job["runtime"] or DEFAULT_RUNTIME[art.format]
        runtime = get_runtime(runtime_name)
        t0 = time.perf_counter_ns()
        sessions[side] = load_model(art, options, runtime_name)
        init_ms = (time.perf_counter_ns() - t0) / 1e6
        feeds[side] = sessions[side].prepare(make_inputs(sessions[side].input_specs, job["inputs"], int(job["seed"]),
                                                             seq_len=text_seq_len(art)))
        sides[side] = {"artifact": art.name, "format": art.format, "precision": art.precision, "runtime": runtime_name,
                       "runtime_version": runtime.version(), "threads": options.threads, "init_ms": init_ms,
                       "model_bytes": art.model_bytes or art.model_path.stat().st_size, "manifest": str(art.manifest_path)}  # fmt: skip
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # as the harness: no collection of our own objects inside a timed call
    try:
        for side in ("old", "new"):  # caches, allocator and frequency settle in the first few hundred ms, not 10 calls
            _time_block(sessions[side], feeds[side], WARMUP_SECONDS, int(job["warmup_runs"]))
        blocks = []
        for b in range(int(job["blocks"])):
            order = ("old", "new") if b % 2 == 0 else ("new", "old")
            block: dict[str, Any] = {"order": ",".join(order)}
            for side in order:
                block[f"{side}_ms"] = _time_block(sessions[side], feeds[side], float(job["block_seconds"]),
                                                  int(job["block_min_runs"]))  # fmt: skip
            blocks.append(block)
        for side in ("old", "new"):
            sessions[side].collect()
    finally:
        if gc_was_enabled:
            gc.enable()
    provenance = host_provenance()
    provenance.update(threads=options.threads, affinity=cores, pinned=bool(job["affinity"]))
    return {"kind": "ab", "old": sides["old"], "new": sides["new"], "blocks": blocks, "provenance": provenance,
            "settings": {"blocks": job["blocks"], "block_seconds": job["block_seconds"],
                         "block_min_runs": job["block_min_runs"], "warmup_runs": job["warmup_runs"],
                         "runtime_options": options.to_dict(), "inputs": job["inputs"], "seed": job["seed"]}}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the A/B job file named on the command line; print one JSON document; return the exit code."""
    from edgestill.runtimes.runner import serve_json

    return serve_json(argv, module="edgestill.runtimes.ab", doc=__doc__, work=lambda path, _: run_ab_job(read_ab_job(path)))


if __name__ == "__main__":
    sys.exit(main())
