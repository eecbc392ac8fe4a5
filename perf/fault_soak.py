"""Fault soak: kill edgestill at random (SIGKILL, the whole process tree), restart it, and count what was lost.

Two workloads, each killed at random moments and restarted until it completes:

* **recipe**: ``edgestill run`` of the built-in ``demo-quick`` recipe (data, teacher, distill, export to three formats
  at two precisions, evaluate, bench); a rerun resumes from the last finished stage.
* **bench**: ``edgestill bench`` of that run's artifacts at two thread counts with ``--run-key``, so a restarted
  matrix measures only the cells the killed one had not journalled.

A round is one output folder (or one run key), killed and restarted until it exits on its own; rounds continue
until half the kills went to each workload.

Then it counts, in the SQLite stores: runs and measurement rows expected (from what each completed command reported)
vs present vs duplicated; and checks every published artifact: its manifest loads and its files match the sha256
recorded in it. One JSON line on stdout; the process exits 1 when anything was lost or duplicated or an artifact is
unreadable.

    python perf/fault_soak.py                          # 24 kills, about 10-20 min on 2 cores
    python perf/fault_soak.py --kills 6 --only recipe  # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (from /proc), children first found by parent id."""
    parents: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                parents.setdefault(int(fields[1]), []).append(int(d.name))
            except (OSError, IndexError, ValueError):
                continue
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the command and everything it started (runner subprocesses run in their own sessions)."""
    victims = [proc.pid, *descendants(proc.pid)]
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def run_killed(cmd: list[str], *, kills_left: int, guess_s: float, env: dict[str, str], log: Path,
               rng: random.Random, deadline: float) -> dict[str, object]:
    """Start ``cmd`` and kill it at a random moment, restarting it each time, until it exits on its own.

    While ``kills_left`` and time remain, the moment is uniform in [0.3 s, guess]; the guess starts at how long a
    whole run took last time and grows by 20% after each kill (a resumed run skips what is done, so its remaining
    work is shorter, but a stage longer than the guess must be reachable too).
    """
    guess, kills, attempts, exits = guess_s, 0, 0, []
    while True:
        attempts += 1
        kill_at = rng.uniform(0.3, guess) if kills < kills_left and time.monotonic() < deadline else None
        with open(log, "ab") as f:
            f.write(f"\n=== attempt {attempts}: {' '.join(cmd)} (kill at {kill_at}) ===\n".encode())
            f.flush()
            start = time.monotonic()
            proc = subprocess.Popen(cmd, stdout=f, stderr=f, env=env, cwd=env["SOAK_CWD"])
            try:
                proc.wait(timeout=kill_at)
            except subprocess.TimeoutExpired:
                kill_tree(proc)
                kills += 1
                exits.append("SIGKILL")
                guess *= 1.2
                continue
        exits.append(proc.returncode)
        return {"attempts": attempts, "kills": kills, "exit": proc.returncode, "exits": exits,
                "seconds": round(time.monotonic() - start, 1)}


def store_rows(db: Path) -> list[tuple]:
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return con.execute("SELECT run_id, artifact, runtime, threads, kind FROM measurements").fetchall()


def store_runs(db: Path) -> list[int]:
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return [r[0] for r in con.execute("SELECT id FROM runs")]


def check_artifacts(folder: Path) -> dict[str, int]:
    """Every manifest under ``folder`` loads, and its files match their recorded sha256."""
    from edgestill.artifact import Artifact

    counts = Counter()
    for manifest in sorted(folder.rglob("*.manifest.json")):
        counts["checked"] += 1
        try:
            art = Artifact.load(manifest)
            counts["readable"] += 1
            art.verify_files()
            counts["hash_ok"] += 1
        except Exception as exc:  # noqa: BLE001 - counted and printed, the soak goes on
            print(f"artifact {manifest}: {type(exc).__name__}: {exc}", file=sys.stderr)
    leftovers = [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
    counts["temporary_files_left"] = len(leftovers)
    return dict(counts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=24, help="random kills in all (split over the workloads and rounds)")
    ap.add_argument("--max-rounds", type=int, default=12, help="at most this many rounds per workload (each a fresh folder / key)")
    ap.add_argument("--max-seconds", type=float, default=2400, help="stop killing after this long; finish the rounds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: a new temporary one)")
    ap.add_argument("--only", choices=("recipe", "bench"), default=None, help="soak one workload (bench needs a recipe round)")
    args = ap.parse_args()

    from edgestill.chain.recipe import builtin_recipe_text

    rng = random.Random(args.seed)
    work = args.work or Path(tempfile.mkdtemp(prefix="edgestill-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    recipe = work / "demo-quick.yaml"
    recipe.write_text(builtin_recipe_text("demo-quick"))
    env = {**os.environ, "EDGESTILL_CACHE": str(work / "cache"), "SOAK_CWD": str(work), "PYTHONUNBUFFERED": "1"}
    edgestill = [sys.executable, "-m", "edgestill"]
    log = work / "soak.log"
    started = time.monotonic()
    deadline = started + args.max_seconds
    result: dict[str, object] = {"seed": args.seed, "work": str(work)}

    recipe_db, bench_db = work / "recipe.db", work / "bench.db"
    recipe_target = 0 if args.only == "bench" else args.kills if args.only == "recipe" else args.kills // 2
    bench_target = args.kills - recipe_target if args.only != "recipe" else 0

    # recipe rounds: one folder each, killed until it completes; a new round while kills remain
    rounds, expected_rows, guess, kills = [], 0, 60.0, 0
    while not rounds or (kills < recipe_target and time.monotonic() < deadline and len(rounds) < args.max_rounds):
        out = work / f"run-{len(rounds)}"
        outcome = run_killed([*edgestill, "run", str(recipe), "--out", str(out), "--db", str(recipe_db)],
                             kills_left=recipe_target - kills, guess_s=guess, env=env, log=log, rng=rng, deadline=deadline)
        kills += int(outcome["kills"])
        guess = max(5.0, float(outcome["seconds"])) if not outcome["kills"] else guess
        report = json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else {}
        store = report.get("store") or {}
        expected_rows += int(store.get("measurements", 0))
        rounds.append({**outcome, "run_id": store.get("run_id"), "measurements": store.get("measurements")})
    rows = store_rows(recipe_db)
    result["recipe"] = {
        "rounds": rounds, "kills": kills, "runs_expected": len(rounds), "runs_present": len(store_runs(recipe_db)),
        "rows_expected": expected_rows, "rows_present": len(rows), "rows_lost": max(0, expected_rows - len(rows)),
        "rows_duplicated": sum(n - 1 for n in Counter(rows).values() if n > 1), "artifacts": check_artifacts(work),
    }

    # bench rounds: one run key each, killed until it completes; a new key while kills remain
    manifests = sorted(str(p) for p in (work / "run-0" / "artifacts").glob("*.manifest.json"))
    b_rounds, b_expected, guess, kills = [], 0, 30.0, 0
    while args.only != "recipe" and (not b_rounds or (kills < bench_target and time.monotonic() < deadline
                                                      and len(b_rounds) < args.max_rounds)):
        key = f"soak-{args.seed}-{len(b_rounds)}"
        outcome = run_killed([*edgestill, "bench", *manifests, "--threads", "1,2", "--min-runs", "20", "--min-seconds",
                              "0.3", "--db", str(bench_db), "--run-key", key, "--json"],
                             kills_left=bench_target - kills, guess_s=guess, env=env, log=log, rng=rng, deadline=deadline)
        kills += int(outcome["kills"])
        guess = max(5.0, float(outcome["seconds"])) if not outcome["kills"] else guess
        b_expected += len(manifests) * 2
        b_rounds.append({**outcome, "run_key": key})
    rows = store_rows(bench_db)
    result["bench"] = {
        "rounds": b_rounds, "kills": kills, "runs_expected": len(b_rounds), "runs_present": len(store_runs(bench_db)),
        "rows_expected": b_expected, "rows_present": len(rows), "rows_lost": max(0, b_expected - len(rows)),
        "rows_duplicated": sum(n - 1 for n in Counter(rows).values() if n > 1),
    }
    rec, ben = result["recipe"], result["bench"]
    result["kills"] = rec["kills"] + ben["kills"]  # type: ignore[operator]
    result["lost"] = rec["rows_lost"] + ben["rows_lost"]  # type: ignore[operator]
    result["duplicated"] = rec["rows_duplicated"] + ben["rows_duplicated"]  # type: ignore[operator]
    art = rec["artifacts"]  # type: ignore[index]
    result["artifacts_ok"] = art.get("checked", 0) == art.get("hash_ok", -1) and art.get("checked", 0) > 0
    result["all_completed"] = all(x["exit"] == 0 for x in rounds + b_rounds)
    result["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(result))
    ok = (result["lost"] == 0 and result["duplicated"] == 0 and result["artifacts_ok"] and result["all_completed"]
          and rec["runs_present"] == rec["runs_expected"] and ben["runs_present"] == ben["runs_expected"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
