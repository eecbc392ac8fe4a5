"""How often the gate cries wolf, and how often it catches a real slowdown, on this machine.

Each comparison is the product's own path: ``edgestill.benchmarks.gate.gate_ab`` (one runner process timing the two
artifacts in alternating blocks, then the paired decision) — the same as ``edgestill gate --ab OLD NEW``.

(a) ``--aa`` A/A comparisons of one artifact against itself: the share called a regression is the false-alarm rate
    (target <= 1% of 100);
(b) ``--slow15`` comparisons against a variant with about 15% more work (a dense chain with 23 layers instead of 20;
    its real cost ratio is measured first, in one long interleaved run): the share called a regression is the detection
    rate (target >= 95% of 40);
(c) ``--slow5`` the same for about 5% (21 layers): where "no verdict" begins;
(d) ``--stored`` A/A comparisons of two separate ``edgestill bench`` runs of the artifact gated as stored runs
    (Mann–Whitney + bootstrap): what gating against a stored baseline costs in false alarms on a drifting VM.

Prints one JSON line (and appends it to perf/results/gate_calibration.jsonl with --save). Run it on a quiet machine:
a training job beside it makes every figure worse.

    python perf/gate_calibration.py                         # 100 A/A, 40 × 15%, 40 × 5%, 20 stored A/A
    python perf/gate_calibration.py --aa 5 --slow15 3 --slow5 3 --stored 2 --blocks 10   # a smoke test
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from gate_models import write_dense_chain

BASE_LAYERS, SLOW15_LAYERS, SLOW5_LAYERS = 20, 23, 21


def _verdicts(results: list) -> dict:
    c = Counter(r.cells[0].latency.verdict for r in results)
    n = len(results)
    out = {"n": n, **{k: c.get(k, 0) for k in ("regression", "improvement", "no change", "no verdict")}}
    out["regression_rate"] = round(c.get("regression", 0) / n, 4) if n else None
    ratios = [r.cells[0].latency.ratio for r in results if r.cells[0].latency.ratio is not None]
    out["ratio_median"] = round(float(np.median(ratios)), 4) if ratios else None
    return out


def measured_ratio(old: Path, new: Path, blocks: int) -> float:
    """The real cost ratio of two artifacts: the median paired block ratio of one long interleaved run."""
    from edgestill.benchmarks.bench import benchmark_ab

    doc = benchmark_ab(old, new, blocks=blocks)
    return float(np.median([np.median(b["new_ms"]) / np.median(b["old_ms"]) for b in doc["blocks"]]))


def stored_aa(manifest: Path, count: int, work: Path, budgets) -> dict:
    """``count`` pairs of separate bench runs of one artifact, gated as stored runs."""
    from edgestill.benchmarks.gate import gate_stored

    results = []
    for i in range(count):
        docs = []
        for side in ("base", "cand"):
            path = work / f"stored-{i}-{side}.json"
            proc = subprocess.run([sys.executable, "-m", "edgestill", "bench", str(manifest), "--db", str(work / "stored.db"),
                                   "--json"], capture_output=True, text=True, check=True)  # fmt: skip
            path.write_text(proc.stdout)
            docs.append(str(path))
        results.append(gate_stored(docs[0], docs[1], db=work / "stored.db", budgets=budgets))
    return _verdicts(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--aa", type=int, default=100)
    parser.add_argument("--slow15", type=int, default=40)
    parser.add_argument("--slow5", type=int, default=40)
    parser.add_argument("--stored", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=30, help="A/B block pairs per comparison (the CLI's default)")
    parser.add_argument("--save", action="store_true", help="append the JSON line to perf/results/gate_calibration.jsonl")
    args = parser.parse_args()

    from edgestill.benchmarks.gate import GateBudgets, gate_ab

    budgets = GateBudgets()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgestill-gate-cal-") as tmp:
        work = Path(tmp)
        base = write_dense_chain(work / "base", "model", BASE_LAYERS)
        slow15 = write_dense_chain(work / "slow15", "model", SLOW15_LAYERS)
        slow5 = write_dense_chain(work / "slow5", "model", SLOW5_LAYERS)
        row: dict = {"script": "gate_calibration", "mode": "ab", "blocks": args.blocks,
                     "min_effect_percent": budgets.min_effect_percent, "alpha": budgets.alpha,
                     "model": f"dense chain {BASE_LAYERS} x 256x256, batch 8, onnxruntime fp32, 1 thread"}  # fmt: skip
        if args.slow15 or args.slow5:
            row["measured_ratio"] = {"slow15": round(measured_ratio(base, slow15, 200), 4),
                                     "slow5": round(measured_ratio(base, slow5, 200), 4)}  # fmt: skip

        def run(new: Path, count: int) -> dict:
            return _verdicts([gate_ab(base, new, budgets=budgets, blocks=args.blocks) for _ in range(count)])

        for name, new, count, rate in (("aa", base, args.aa, "false_alarm_rate"), ("slow15", slow15, args.slow15, "detection_rate"),
                                       ("slow5", slow5, args.slow5, "detection_rate")):  # fmt: skip
            if count:
                row[name] = run(new, count)
                row[name][rate] = row[name].pop("regression_rate")
        if args.stored:
            row["stored_aa"] = stored_aa(base, args.stored, work, budgets)
            row["stored_aa"]["false_alarm_rate"] = row["stored_aa"].pop("regression_rate")
    if "aa" in row and "slow15" in row:
        row["targets_met"] = {"false_alarms_le_1pct": row["aa"]["false_alarm_rate"] <= 0.01,
                              "detection_ge_95pct": row["slow15"]["detection_rate"] >= 0.95}  # fmt: skip
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    row["host"] = {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()}
    line = json.dumps(row)
    print(line)
    if args.save:
        out = Path(__file__).parent / "results" / "gate_calibration.jsonl"
        with open(out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
