"""How long `edgestill demo` takes, cold (empty teacher/baseline cache) and warm (cache filled by the cold run).

Runs the real command in subprocesses, each into a fresh output folder and results store under a temporary
folder, with ``EDGESTILL_CACHE`` pointing at a new cache folder (so the user's cache is neither used nor touched).
Prints one JSON line: the wall time of each run (process start to exit), the engine's time per stage, the exit
code and the checks that failed. Targets (issue 11): cold <= 180 s, warm <= 120 s on the 2-core machine.

    python perf/demo_time.py            # one cold run, then one warm run
    python perf/demo_time.py --warm 2   # one cold, two warm
    python perf/demo_time.py --quick    # the toy-size recipe (a smoke test of this script)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLD_TARGET_S = 180.0
WARM_TARGET_S = 120.0


def run_demo(work: Path, cache: Path, label: str, quick: bool) -> dict:
    out, db = work / f"out-{label}", work / f"results-{label}.db"
    cmd = [sys.executable, "-m", "edgestill", "demo", "--out", str(out), "--db", str(db), "--json"]
    if quick:
        cmd.append("--quick")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "EDGESTILL_CACHE": str(cache)},
                          cwd=work)
    wall = time.perf_counter() - t0
    row: dict = {"run": label, "wall_s": round(wall, 1), "exit_code": proc.returncode}
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        row["error"] = proc.stderr.strip()[-2000:]
        return row
    row["stage_seconds"] = {k: round(v, 1) for k, v in report["stage_seconds"].items()}
    row["failed_checks"] = [f"{c['subject']}: {c['name']}" for c in report["checks"] if c["verdict"] != "pass"]
    row["teacher_cache"] = report["teacher"].get("cache")
    row["baseline_cache"] = report["student"].get("baseline_cache")
    row["kd_gain_points"] = report["student"].get("kd_gain_points")
    row["test_accuracy"] = {"teacher": report["teacher"].get("test_accuracy"), "student": report["student"]["test_accuracy"],
                            "baseline": report["student"].get("baseline_test_accuracy")}
    row["p50_ms"] = {a["artifact"]: (a.get("measurements") or [{}])[0].get("p50_ms") for a in report["artifacts"]}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warm", type=int, default=1, help="warm runs after the cold one (default 1)")
    parser.add_argument("--quick", action="store_true", help="time the toy-size recipe instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgestill-demo-time-") as tmp:
        work, cache = Path(tmp), Path(tmp) / "cache"
        runs = [run_demo(work, cache, "cold", args.quick)]
        runs += [run_demo(work, cache, f"warm{i + 1}", args.quick) for i in range(args.warm)]
    cold, warm = runs[0], runs[1:]
    best_warm = min((r["wall_s"] for r in warm), default=None)
    print(json.dumps({
        "script": "demo_time", "recipe": "demo-quick" if args.quick else "demo", "cpus": os.cpu_count(),
        "machine": platform.machine(), "cold_wall_s": cold["wall_s"], "warm_wall_s": best_warm,
        "cold_target_s": COLD_TARGET_S, "warm_target_s": WARM_TARGET_S,
        "cold_met": cold["wall_s"] <= COLD_TARGET_S, "warm_met": best_warm is not None and best_warm <= WARM_TARGET_S,
        "runs": runs,
    }))


if __name__ == "__main__":
    main()
