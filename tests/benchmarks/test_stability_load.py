"""Acceptance (issue 14, point 3): background CPU load during a bench moves its p50 by at most 5 %, or the cell is
flagged unstable.

A 224x224 conv net is benchmarked on one pinned core with the default stop rule (>= 50 runs and >= 1 s, extended up
to 5 s while unstable): quietly, then with busy loops on every core that start a quarter of a second into the steady
state, once as a burst that ends within the 5 s cap and once as load that lasts to the end, then quietly again. The
quiet figure is the range of the two quiet benches' p50 and the loaded run's own quiet start (the median of the first
quarter of its window, before the load began).

What the bound guarantees, and so what this test holds the harness to: a stable reported window has its median within
the drift bound (5 %) of the fastest stretch seen in the whole window, so a window that began quiet reports at most
5 % above its quiet start, or is flagged. Without the extension and the flag the same runs report 18 % and more above
the quiet figure, and this test fails. Load that covers the whole steady state cannot be seen from inside it (every
part is equally slow), so a loaded run counts only when the first quarter of its first window (the harness's block)
ran at the quiet level and the first check saw the load. The machine is shared and its speed shifts by 10-20 % for
seconds at a time even when idle: an attempt whose quiet benches are flagged or disagree by more than 5 % says
nothing and is repeated, and the test skips, saying so, when no attempt is conclusive within ~30 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Self

import numpy as np
import pytest

from edgestill.benchmarks.bench import benchmark
from edgestill.record import Measurement
from edgestill.runtimes import RuntimeOptions
from edgestill.runtimes.harness import BenchOptions

TOLERANCE = 0.05  # the loaded p50 may be this far outside the quiet range when the cell is not flagged
BENCH = BenchOptions()  # the defaults: >= 50 runs and >= 1 s, extended up to stability_max_seconds=5 while unstable
# The load starts this far into the steady state (estimated from the quiet run): early enough that most of the first
# window's calls are loaded (so its p50 alone would be far off), late enough that its first quarter is quiet.
LOAD_AFTER_STEADY_S = 0.25
BURST_S = 1.5
ATTEMPTS_UNTIL_S = 16.0  # no new attempt after this (an attempt takes 11-15 s): the test stays under ~30 s
CORES = sorted(os.sched_getaffinity(0))


def write_conv224(directory: Path, width: int = 96) -> Path:
    """A seeded 224x224 classifier (two 3x3 stride-2 convolutions, global pool, linear).

    About 5.7 ms a call here at width 96: longer than the scheduler's time slice, so a call that shares its core with
    a busy loop takes about twice as long (as the user's 224x224 network did). With a 1.3 ms call most calls ran
    between two slices untouched, and the p50 hardly moved under load.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgestill.artifact import Artifact, TensorSpec

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    weights = {
        "w1": (0.1 * rng.standard_normal((width, 3, 3, 3))).astype(np.float32),
        "w2": (0.1 * rng.standard_normal((2 * width, width, 3, 3))).astype(np.float32),
        "fc": (0.1 * rng.standard_normal((2 * width, 10))).astype(np.float32),
    }
    conv = {"strides": [2, 2], "pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], **conv),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], **conv),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv224",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(w, name) for name, w in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, directory / "conv224.onnx")
    art = Artifact(
        name="conv224",
        format="onnx",
        precision="fp32",
        directory=directory,
        model_file="conv224.onnx",
        inputs=[TensorSpec(name="x", shape=(1, 3, 224, 224), dtype="float32", logical_dtype="float32")],
        outputs=[TensorSpec(name="logits", shape=(1, 10), dtype="float32", logical_dtype="float32")],
        source={"model": "conv224"},
    )
    art.hash_files()
    return art.write_manifest()


SPIN = (
    "import os, time\n"
    "os.sched_setaffinity(0, {{{core}}})\n"
    "end = time.monotonic() + {seconds}\n"
    "while time.monotonic() < end:\n"
    "    pass\n"
)


class BackgroundLoad:
    """One busy loop per core, pinned to it, started ``after_s`` from entry and ending by itself after ``seconds``.

    Each loop runs in its own session: with the kernel's autogroup scheduling, loops in the test's session would
    share one group's weight and take a third of a core from the benchmark; an unrelated program takes half.
    Leaving the block kills whatever is still running (and cancels a start that has not happened yet).
    """

    def __init__(self, after_s: float, seconds: float):
        self.after_s, self.seconds = after_s, seconds
        self.started_at: float | None = None
        self._procs: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._timer = threading.Timer(after_s, self._start)

    def _start(self) -> None:
        with self._lock:
            if self._closed:
                return
            self.started_at = time.monotonic()
            for core in CORES:
                code = SPIN.format(core=core, seconds=self.seconds)
                self._procs.append(subprocess.Popen([sys.executable, "-c", code], start_new_session=True))

    def __enter__(self) -> Self:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        self._timer.join()  # a start already under way finishes first, so its loops are killed below
        with self._lock:
            self._closed = True
            for p in self._procs:
                p.kill()
            for p in self._procs:
                p.wait(timeout=10)


def bench(manifest: Path, load: tuple[float, float] | None = None) -> tuple[Measurement, dict[str, Any]]:
    """Benchmark on the first core; with ``load=(after_s, seconds)`` under :class:`BackgroundLoad`."""
    t0 = time.monotonic()
    if load is None:
        m = benchmark(manifest, options=RuntimeOptions(threads=1), bench=BENCH, affinity=CORES[:1])
        started = None
    else:
        with BackgroundLoad(*load) as bg:
            m = benchmark(manifest, options=RuntimeOptions(threads=1), bench=BENCH, affinity=CORES[:1])
        started = bg.started_at
    done = time.monotonic()
    assert m.kind == "measured" and m.latency is not None and m.stability is not None, m.error
    steady_s = float(m.settings["steady_seconds"])
    info = {
        "p50_ms": round(m.latency.p50_ms, 4),
        "flagged": m.unstable,
        "extension": m.stability["extension"],
        "extended_s": m.stability["extended_seconds"],
        "first_check_stable": m.stability["first_check"]["stable"],
        "first_segments_ms": [round(v, 3) for v in m.stability["first_check"]["segment_medians_ms"]],
        "reasons": m.stability["reasons"],
        "startup_s": done - t0 - steady_s,  # launch to steady state, plus the runner's few ms after it
        # the steady state began at done - steady_s at the latest: the load had at least this much quiet before it
        "quiet_lead_s": None if started is None else round(started - (done - steady_s), 3),
    }
    return m, info


def attempt(manifest: Path) -> tuple[str, dict[str, Any]]:
    """quiet, burst, lasting load, quiet; returns ("inconclusive", why) or ("ok", figures); asserts on a failure."""
    q1, q1_info = bench(manifest)
    if q1.unstable:
        return "inconclusive", {"why": "the first quiet bench was flagged: the machine is busy", "quiet": q1_info}
    after_s = q1_info["startup_s"] + LOAD_AFTER_STEADY_S
    loaded = {
        "burst": bench(manifest, load=(after_s, BURST_S)),
        "lasting": bench(manifest, load=(after_s, 30.0)),
    }
    q2, q2_info = bench(manifest)
    figures: dict[str, Any] = {"quiet": [q1_info, q2_info], **{k: info for k, (_, info) in loaded.items()}}
    if q2.unstable:
        return "inconclusive", {"why": "the second quiet bench was flagged: the machine is busy", **figures}
    assert q1.latency is not None and q2.latency is not None
    low, high = min(q1.latency.p50_ms, q2.latency.p50_ms), max(q1.latency.p50_ms, q2.latency.p50_ms)
    if high > (1 + TOLERANCE) * low:  # this VM changes speed now and then by 10-20 % for seconds, load or not
        return "inconclusive", {"why": "the quiet benches before and after disagree by more than 5%", **figures}
    counted = 0
    for name, (m, info) in loaded.items():
        # The run tests the harness when its first window began quiet (the harness compares later stretches with its
        # quarters: a shorter quiet start is invisible to it) and the load reached that window (its check failed).
        began_quiet = (1 - TOLERANCE) * low <= info["first_segments_ms"][0] <= (1 + TOLERANCE) * high
        if info["first_check_stable"] or not began_quiet:
            continue
        counted += 1
        assert m.latency is not None
        # the quiet figure: the quiet benches around it and this run's own quiet start (the machine's speed moves by a
        # few % within seconds; the nearest quiet reading of it is the run's own, before the load began)
        lo, hi = min(low, info["first_segments_ms"][0]), max(high, info["first_segments_ms"][0])
        within = (1 - TOLERANCE) * lo <= m.latency.p50_ms <= (1 + TOLERANCE) * hi
        assert within or m.unstable, (
            f"{name}: p50 {m.latency.p50_ms:.4f} ms is more than 5% outside the quiet range [{lo:.4f}, {hi:.4f}] ms "
            f"and the cell is not flagged unstable: {figures}"
        )
    if counted == 0:
        return "inconclusive", {"why": "the load hit neither run's first window after a quiet start", **figures}
    return "ok", figures


@pytest.mark.slow
def test_background_load_moves_p50_at_most_5_percent_or_is_flagged(tmp_path: Path) -> None:
    manifest = write_conv224(tmp_path / "art")
    t0 = time.monotonic()
    tried = []
    while not tried or time.monotonic() - t0 < ATTEMPTS_UNTIL_S:
        outcome, figures = attempt(manifest)
        tried.append(figures)
        if outcome == "ok":
            print(f"attempt {len(tried)}: {figures}")
            return
    pytest.skip(f"no conclusive attempt in {len(tried)} (the machine was busy or changed speed): {tried}")
