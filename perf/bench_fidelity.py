"""Does edgestill's harness measure what the runtimes' own tools measure? Prints ONE JSON line.

For each fp32 / int8 artifact found in --artifacts (one thread):
- OpenVINO IR: edgestill's ``benchmark(...)`` (runner subprocess) vs OpenVINO's ``benchmark_app``
  (``-hint latency -api sync -infer_precision f32 -ip f32``, threads and streams via ``-load_config``; its
  "Median:"). ``-ip f32`` keeps the input f32 as edgestill feeds it: by default benchmark_app turns a 4-D
  3-channel input into a u8 image input with a Convert in front, a different model.
  benchmark_app's figures are ``InferRequest.latency``, OpenVINO's own clock inside the C++ request; edgestill's
  OpenVINO figure reads the same clock (its default ``--clock runtime``), and its wall-clock p50 of the same calls
  is reported beside it (``edgestill_wall_p50_ms``: that one also holds the Python binding's call);
- ONNX (onnxruntime) and TFLite (LiteRT): edgestill vs a bare ``time.perf_counter_ns`` loop around
  ``sess.run(None, feed)`` / ``interpreter.invoke()`` in a fresh subprocess with the same thread settings.
Pairs are interleaved (the order alternates each pair) and each pair gives one ratio
edgestill p50 / reference median; the report gives the median ratio per artifact (target: within ±5%).

``--cpu N`` pins both sides of every pair to CPU N (edgestill through the runner's affinity, the references through
``sched_setaffinity`` before exec): on a shared VM the latency of one process drifts between regimes that last
seconds, and pinning both sides alike removes core migration from the comparison.

``--control`` also measures the noise floor: each pair runs the reference a second time, and
``control_ratio_median`` (reference / reference) says how far two identical measurements disagree on this
machine. When it is itself outside ±5%, the machine cannot resolve the ±5% target.

Usage: python perf/bench_fidelity.py [--artifacts demo-out/artifacts] [--pairs 5] [--seconds 5] [--cpu N] [--control]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

TARGET = 0.05
PRECISIONS = ("fp32", "int8-static", "int8-dynamic")
REFERENCE = {"openvino": "benchmark_app", "onnx": "bare_loop", "tflite": "bare_loop"}

# The bare loop: the runtime's own call, nothing else, timed per call; run as `python -c BARE_LOOP args...`.
BARE_LOOP = r"""
import json, sys, time
import numpy as np
fmt, model, threads, seconds, inputs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), json.loads(sys.argv[5])
rng = np.random.default_rng(0)
def make(shape, dtype):
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.standard_normal(shape).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(max(info.min, -128), min(info.max, 127) + 1, size=shape).astype(dt)
if fmt == "onnx":
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])
    feed = {i["name"]: make(i["shape"], i["dtype"]) for i in inputs}
    call = lambda: sess.run(None, feed)
else:
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=model, num_threads=threads)
    interp.allocate_tensors()
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], make(list(d["shape"]), d["dtype"]))
    call = interp.invoke
for _ in range(10):
    call()
clock, samples = time.perf_counter_ns, []
start = clock()
while len(samples) < 50 or clock() - start < seconds * 1e9:
    t0 = clock(); call(); samples.append(clock() - t0)
print(json.dumps({"median_ms": float(np.median(samples)) / 1e6, "n": len(samples)}))
"""


def _pinned(cpu: int | None) -> Any:
    """A preexec_fn that pins the child to ``cpu`` (None: no pinning)."""
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def _edgestill_p50(manifest: Path, threads: int, seconds: float, cpu: int | None = None) -> tuple[float, float, str]:
    """(p50 as edgestill reports it, wall-clock p50 of the same calls, the clock the first was read from)."""
    from edgestill.benchmarks.bench import benchmark
    from edgestill.runtimes.harness import BenchOptions
    from edgestill.runtimes.base import RuntimeOptions

    bench = BenchOptions(min_runs=50, min_seconds=seconds, max_seconds=max(30.0, 2 * seconds))
    m = benchmark(manifest, options=RuntimeOptions(threads=threads), bench=bench, affinity=None if cpu is None else [cpu])
    if m.kind != "measured" or m.latency is None:
        raise RuntimeError(f"edgestill failed on {manifest}: {m.error}")
    return m.latency.p50_ms, (m.wall_latency or m.latency).p50_ms, m.clock


def _thread_env(threads: int) -> dict[str, str]:
    from edgestill.runtimes.runner import THREAD_ENV

    return {**os.environ, **{var: str(threads) for var in THREAD_ENV}}


def _benchmark_app_median(xml: Path, threads: int, seconds: float, home: Path, cpu: int | None = None) -> float:
    """OpenVINO's own tool, with telemetry declined through an opt-out consent file in a private HOME."""
    exe = Path(sys.executable).with_name("benchmark_app")
    # benchmark_app refuses -nthreads/-nstreams next to -hint latency (a UI rule of the tool), so the thread
    # and stream counts go in through -load_config: the same four settings edgestill's OpenVINO backend sets.
    config = home / f"ov-config-{threads}.json"
    config.write_text(json.dumps({"CPU": {"INFERENCE_NUM_THREADS": str(threads), "NUM_STREAMS": "1"}}))
    cmd = [str(exe), "-m", str(xml), "-d", "CPU", "-hint", "latency", "-api", "sync", "-load_config", str(config),
           "-infer_precision", "f32", "-ip", "f32", "-t", str(int(seconds)), "-report_type", "no_counters", "-report_folder", str(home)]  # fmt: skip
    env = {**_thread_env(threads), "HOME": str(home)}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120 + 4 * seconds, preexec_fn=_pinned(cpu))
    found = re.search(r"Median:\s*([0-9.]+)\s*(ms|us)", r.stdout + r.stderr)
    if r.returncode != 0 or not found:
        raise RuntimeError(f"benchmark_app failed (exit {r.returncode}) on {xml}:\n{(r.stdout + r.stderr)[-2000:]}")
    return float(found.group(1)) / (1000.0 if found.group(2) == "us" else 1.0)


def _bare_loop_median(art: Any, threads: int, seconds: float, cpu: int | None = None) -> float:
    inputs = [{"name": s.name, "shape": list(s.concrete_shape(1)), "dtype": s.dtype} for s in art.inputs]
    cmd = [sys.executable, "-c", BARE_LOOP, art.format, str(art.model_path), str(threads), f"{seconds:g}", json.dumps(inputs)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_thread_env(threads), timeout=120 + 4 * seconds,
                       preexec_fn=_pinned(cpu))
    if r.returncode != 0:
        raise RuntimeError(f"bare loop failed (exit {r.returncode}) on {art.model_path}:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])["median_ms"]


def _select(directory: Path) -> list[Any]:
    """fp32 and int8 artifacts per format (int8-static preferred over int8-dynamic), sorted by format."""
    from edgestill.artifact import Artifact

    chosen: dict[tuple[str, str], Any] = {}
    for manifest in sorted(directory.glob("*.manifest.json")):
        art = Artifact.load(manifest)
        if art.format not in REFERENCE or art.precision not in PRECISIONS:
            continue
        group = "fp32" if art.precision == "fp32" else "int8"
        key = (art.format, group)
        if key not in chosen or PRECISIONS.index(art.precision) < PRECISIONS.index(chosen[key][1].precision):
            chosen[key] = (manifest, art)
    return [chosen[k] for k in sorted(chosen)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=Path("demo-out/artifacts"))
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cpu", type=int, default=None, help="pin both sides of every pair to this CPU")
    parser.add_argument("--control", action="store_true", help="also time the reference against itself (noise floor)")
    args = parser.parse_args()
    if args.pairs < 1 or args.seconds <= 0:
        sys.exit("--pairs must be >= 1 and --seconds > 0")
    selected = _select(args.artifacts)
    if not selected:
        sys.exit(f"no fp32/int8 onnx, tflite or openvino manifests in {args.artifacts}; run 'edgestill demo' first.")

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edgestill-fidelity-") as tmp:
        home = Path(tmp)
        (home / "intel").mkdir()
        (home / "intel" / "openvino_telemetry").write_text("0\n")  # consent file: telemetry declined
        for manifest, art in selected:
            reference = REFERENCE[art.format]
            # benchmark_app's -t takes whole seconds; both sides of an OpenVINO pair run that long
            seconds = max(1, round(args.seconds)) if reference == "benchmark_app" else args.seconds
            ours, theirs, walls, controls = [], [], [], []
            clock = "wall"
            for pair in range(args.pairs):

                def measure_reference(art: Any = art) -> float:
                    if reference == "benchmark_app":
                        return _benchmark_app_median(art.model_path, args.threads, seconds, home, args.cpu)
                    return _bare_loop_median(art, args.threads, seconds, args.cpu)

                if pair % 2 == 0:  # alternate who goes first, so drift hits both sides alike
                    p50, wall, clock = _edgestill_p50(manifest, args.threads, seconds, args.cpu)
                    theirs.append(measure_reference())
                else:
                    theirs.append(measure_reference())
                    p50, wall, clock = _edgestill_p50(manifest, args.threads, seconds, args.cpu)
                ours.append(p50)
                walls.append(wall)
                if args.control:
                    controls.append(measure_reference())
            ratios = [a / b for a, b in zip(ours, theirs)]
            ratio = statistics.median(ratios)
            results[art.name] = {
                "format": art.format,
                "precision": art.precision,
                "reference": reference,
                "seconds": seconds,
                "edgestill_clock": clock,
                "edgestill_p50_ms": [round(x, 6) for x in ours],
                "edgestill_wall_p50_ms": [round(x, 6) for x in walls],
                "reference_median_ms": [round(x, 6) for x in theirs],
                "ratios": [round(r, 4) for r in ratios],
                "ratio_median": round(ratio, 4),
                "wall_ratio_median": round(statistics.median(w / b for w, b in zip(walls, theirs)), 4),
                "within_5_percent": abs(ratio - 1.0) <= TARGET,
                **({"control_ratios": [round(c / b, 4) for c, b in zip(controls, theirs)],
                    "control_ratio_median": round(statistics.median(c / b for c, b in zip(controls, theirs)), 4)}
                   if args.control else {}),
            }
    print(json.dumps({
        "threads": args.threads,
        "cpu": args.cpu,
        "pairs": args.pairs,
        "seconds": args.seconds,
        "artifacts": results,
        "all_within_5_percent": all(r["within_5_percent"] for r in results.values()),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
