"""The device lab: artifacts × devices, one job per device at a time, devices in parallel.

A device that is unreachable or fails is reported (its cells ``kind="failed"`` with the reason) while the others
complete. Results are stored as each device finishes, ONE RUN PER DEVICE in the results store (command ``lab run
--device NAME ...``, label ``lab:NAME``, machine the device's name), so a lab killed part-way keeps every device that
had finished, and ``edgestill gate``/``report`` compare one device's runs with its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgestill.devices.transport import failed_cell, failure_exit_code, failure_of
from edgestill.errors import EdgestillError, InputError
from edgestill.record import Measurement
from edgestill.runtimes.generate import DEFAULT_GEN_TOKENS, DEFAULT_PROMPT_TOKENS, check_lengths

if TYPE_CHECKING:
    from edgestill.devices.inventory import DeviceEntry, Inventory
    from edgestill.runtimes.harness import BenchOptions

MAX_PARALLEL_DEVICES = 32  # threads; each mostly waits on its device


@dataclass
class DeviceOutcome:
    """What one device gave: its records, the store run they went to, and why it failed (None when every cell ran)."""

    device: str
    transport: str
    profile: str
    measurements: list[Measurement] = field(default_factory=list)
    run_id: int | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> list[Measurement]:
        return [m for m in self.measurements if m.kind == "failed"]

    @property
    def ok(self) -> bool:
        return bool(self.measurements) and not self.failed

    @property
    def error(self) -> str | None:
        """The first failed cell's reason (one paragraph), or None."""
        failed = self.failed
        return None if not failed else (failed[0].error or "failed").split("\n--- ")[0]

    @property
    def failure(self) -> str | None:
        failed = self.failed
        return None if not failed else str(failed[0].settings.get("failure", "error"))

    def summary(self) -> dict[str, Any]:
        measured = [m for m in self.measurements if m.kind == "measured"]
        return {"device": self.device, "transport": self.transport, "profile": self.profile, "ok": self.ok,
                "cells": len(self.measurements), "measured": len(measured), "failed": len(self.failed),
                "failure": self.failure, "error": self.error, "run_id": self.run_id, "seconds": round(self.seconds, 2),
                "p50_ms": {f"{m.artifact} ×{m.threads}": m.latency.p50_ms for m in measured if m.latency}}


@dataclass
class LabResult:
    """Every device's outcome, in inventory order, and the store they went to."""

    devices: list[DeviceOutcome]
    db: Path

    @property
    def measurements(self) -> list[Measurement]:
        return [m for d in self.devices for m in d.measurements]

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.devices)

    @property
    def exit_code(self) -> int:
        """0 every cell measured; 2 every failure was the user's to fix (host key, key, bad input); else 3."""
        return failure_exit_code(self.measurements)

    def to_dict(self, with_samples: bool = False) -> dict[str, Any]:
        return {"db": str(self.db), "ok": self.ok, "exit_code": self.exit_code,
                "devices": [d.summary() for d in self.devices],
                "measurements": [m.to_dict(with_samples=with_samples) for m in self.measurements]}


def run_lab(
    inventory: Inventory,
    artifacts: Sequence[str | Path],
    thread_counts: Sequence[int] = (1,),
    *,
    devices: Sequence[str] | None = None,
    db: str | Path,
    bench: BenchOptions | None = None,
    eval_data: str | Path | None = None,
    runtime: str | None = None,
    timeout_s: float = 300.0,
    progress: Callable[[str, int, int, str], None] | None = None,
    on_device_done: Callable[[DeviceOutcome], None] | None = None,
    prompt_tokens: int = DEFAULT_PROMPT_TOKENS,
    gen_tokens: int = DEFAULT_GEN_TOKENS,
) -> LabResult:
    """Run artifacts × thread counts on every selected device, devices in parallel, and store each device's results.

    Args:
        inventory: the loaded inventory.
        artifacts: manifest paths (checked here once, before any device is contacted).
        thread_counts: thread counts per cell.
        devices: device names to use (default: all), each checked against the inventory.
        db: the SQLite results store; one run per device (see the module docstring).
        progress: called as ``progress(device, done, total, label)`` from the device's worker thread.
        on_device_done: called with each device's outcome as it is stored (in the calling thread).
        prompt_tokens, gen_tokens: the lengths a generative artifact is timed at on every device (see
            :func:`edgestill.devices.remote.bench_on_device`).

    Returns:
        a LabResult: a device that failed has ``kind="failed"`` records naming why; the others are measured.

    Raises:
        InputError: an unknown device name, no devices, bad artifacts, thread counts, eval data or timing lengths
            (nothing runs).
    """
    from edgestill.benchmarks.store import ResultsStore
    from edgestill.devices.remote import bench_on_device
    from edgestill.devices.ssh import prepare_artifacts
    from edgestill.host import redact

    check_lengths(prompt_tokens, gen_tokens)
    chosen = inventory.select(devices)
    if not chosen:
        raise InputError(f"no devices selected from inventory {inventory.path}; name some with --devices.")
    if len(set(d.name for d in chosen)) != len(chosen):
        raise InputError(f"--devices names a device twice ({', '.join(d.name for d in chosen)}); name each once.")
    if not artifacts:
        raise InputError("no artifacts to measure; pass one or more .manifest.json paths.")
    prepare_artifacts(artifacts, runtime)  # a bad artifact fails here, for every device at once
    if eval_data is not None and not Path(eval_data).is_file():
        raise InputError(f"eval data {eval_data} is not a file; pass an .npz with x and y (or teacher_logits).")
    store = ResultsStore(db)  # opened (and created) before any device runs: a bad --db fails here
    lock = threading.Lock()

    def one(entry: DeviceEntry) -> DeviceOutcome:
        t0 = time.perf_counter()
        out = DeviceOutcome(entry.name, entry.transport, entry.profile)

        def report(done: int, total: int, label: str) -> None:
            if progress is not None:
                with lock:
                    progress(entry.name, done, total, label)

        try:
            out.measurements = bench_on_device(entry, artifacts, thread_counts, bench=bench, eval_data=eval_data,
                                               runtime=runtime, timeout_s=timeout_s, progress=report,
                                               prompt_tokens=prompt_tokens, gen_tokens=gen_tokens)
        except Exception as exc:  # noqa: BLE001 - one device's failure must not stop the others
            failure = failure_of(exc) if isinstance(exc, EdgestillError) else "error"
            why = str(exc) if isinstance(exc, EdgestillError) else f"internal error: {type(exc).__name__}: {exc}"
            device = {"id": entry.name, "profile": entry.profile, "transport": entry.transport}
            out.measurements = [failed_cell(a, runtime=runtime, threads=t, failure=failure, error=why, device=device)
                                for a in artifacts for t in thread_counts]
        out.seconds = time.perf_counter() - t0
        return out

    outcomes: dict[str, DeviceOutcome] = {}
    with store, ThreadPoolExecutor(max_workers=min(len(chosen), MAX_PARALLEL_DEVICES),
                                   thread_name_prefix="edgestill-lab") as pool:
        futures = {pool.submit(one, entry): entry for entry in chosen}
        for fut in as_completed(futures):
            entry = futures[fut]
            out = fut.result()
            command = redact(f"lab run --device {entry.name} " + " ".join(str(a) for a in artifacts))
            out.run_id = store.add_run(command, label=f"lab:{entry.name}",
                                       machine=None if entry.transport == "local" else entry.name,
                                       measurements=out.measurements)
            outcomes[entry.name] = out
            if on_device_done is not None:
                on_device_done(out)
    return LabResult([outcomes[e.name] for e in chosen], Path(db))


__all__ = ["DeviceOutcome", "LabResult", "run_lab"]
