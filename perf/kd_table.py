"""The KD table: the built-in student at two widths × {no KD, KD, DKD, FitNets+KD, RKD+KD} × N seeds.

On the generated set (synthetic-shapes, default size) with the demo's teacher (trained once, then reused from
the teacher cache) and the demo's student schedule. Prints one JSON line per (width, variant) with the mean,
sample std and per-seed test accuracies, then one summary line per width (best KD variant vs no KD). With
``--markdown`` it prints the README table instead (from this run, or from an earlier run's lines with --from).

Trainings run in ``--jobs`` worker processes with ``--train-threads`` torch threads each. The default (2 widths × 5
variants × 3 seeds, 8 epochs) took about 15 minutes on 2 idle cores.

Usage:
    python perf/kd_table.py > kd_table.jsonl                       # the full table
    python perf/kd_table.py --from kd_table.jsonl --markdown        # the README table from those lines
    python perf/kd_table.py --size quick --epochs 1 --seeds 2 --widths 0.25 --variants no-kd,kd   # smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

FITNETS_PAIR = ["features.3", "features.3"]  # student 8×8 map after its second stage ↔ teacher's last 8×8 stage
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "no-kd": [{"name": "ce"}],
    "kd": [{"name": "kd", "options": {"temperature": 4.0, "alpha": 0.9}}],
    "dkd": [{"name": "ce"}, {"name": "dkd", "options": {"alpha": 1.0, "beta": 8.0, "temperature": 4.0,
                                                        "warmup_epochs": 1}}],
    "fitnets+kd": [{"name": "kd", "options": {"temperature": 4.0, "alpha": 0.9}},
                   {"name": "fitnets", "weight": 0.5, "options": {"pairs": [FITNETS_PAIR]}}],
    "rkd+kd": [{"name": "kd", "options": {"temperature": 4.0, "alpha": 0.9}},
               {"name": "rkd", "weight": 1.0, "options": {"pairs": [["pool", "pool"]], "distance": 1.0, "angle": 2.0}}],
}
_STATE: dict[str, Any] = {}


def _setup(size: str, threads: int) -> tuple[Any, Any]:
    """Data and the demo teacher, once per process."""
    if "data" not in _STATE:
        import torch

        from demo_settings import DEMO
        from edgestill.compress.distill.teacher_cache import train_or_load_teacher
        from edgestill.data import load_dataset
        from edgestill.compress.distill.teacher_outputs import default_cache_dir

        torch.set_num_threads(threads)
        data = load_dataset(DEMO.dataset, seed=0, size=size)
        teacher, info = train_or_load_teacher(DEMO.teacher_model, dict(DEMO.teacher_kwargs), data, DEMO.teacher_train,
                                              cache_dir=default_cache_dir())
        _STATE.update(data=data, teacher=teacher, teacher_info=info)
    return _STATE["data"], _STATE["teacher"]


def _one(task: dict[str, Any]) -> dict[str, Any]:
    """Train one (width, variant, seed) and return its accuracies."""
    from edgestill.compress.distill.losses import parse_terms
    from demo_settings import DEMO
    from edgestill.compress.distill.trainer import evaluate, train
    from edgestill.models import create_model

    data, teacher = _setup(task["size"], task["threads"])
    seed = task["seed"]
    kwargs = {**DEMO.student_kwargs, "width_mult": task["width"]}
    student = create_model(DEMO.student_model, num_classes=data.num_classes, in_channels=data.input_shape[0],
                           seed=seed, **kwargs)
    config = dataclasses.replace(DEMO.student_train_kd, seed=seed, epochs=task["epochs"],
                                 warmup_epochs=min(DEMO.student_train_kd.warmup_epochs, task["epochs"] - 1))
    terms = parse_terms(VARIANTS[task["variant"]])
    started = time.perf_counter()
    result = train(student, data, config, teacher=teacher, terms=terms)
    return {**task, "test_acc": evaluate(result.model, data.test), "val_acc": result.best_val_accuracy,
            "best_epoch": result.best_epoch, "wall_s": time.perf_counter() - started}


def _rows(results: list[dict[str, Any]], widths: list[float], variants: list[str]) -> list[dict[str, Any]]:
    from edgestill.compress.distill.trainer import summarize_seeds

    rows = []
    for width in widths:
        by_variant = {}
        for variant in variants:
            rs = sorted((r for r in results if r["width"] == width and r["variant"] == variant), key=lambda r: r["seed"])
            test = summarize_seeds([r["test_acc"] for r in rs])
            by_variant[variant] = test
            rows.append({"width_mult": width, "variant": variant, "terms": VARIANTS[variant],
                         "seeds": [r["seed"] for r in rs], "epochs": rs[0]["epochs"], "dataset_size": rs[0]["size"],
                         "test_acc_mean": round(test.mean, 4), "test_acc_std": round(test.std, 4),
                         "test_acc": [round(r["test_acc"], 4) for r in rs],
                         "val_acc": [round(r["val_acc"], 4) for r in rs],
                         "wall_s_mean": round(statistics.fmean(r["wall_s"] for r in rs), 1)})
        if "no-kd" in by_variant and len(by_variant) > 1:
            base = by_variant["no-kd"]
            best = max((v for v in by_variant if v != "no-kd"), key=lambda v: by_variant[v].mean)
            gain = by_variant[best].mean - base.mean
            noise = max(base.std, by_variant[best].std)
            rows.append({"summary": True, "width_mult": width, "best_variant": best,
                         "gain_points": round(100 * gain, 2), "seed_std_points": round(100 * noise, 2),
                         "beats_no_kd_by_more_than_std": gain > noise})
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The README table: test accuracy mean ± std over seeds, and the gain over no KD, per width and variant."""
    cells = [r for r in rows if not r.get("summary")]
    if not cells:
        return ""
    first = cells[0]
    lines = [f"| student width | variant | test accuracy (mean ± std, {len(first['seeds'])} seeds) | vs no KD | per seed |",
             "|---:|---|---:|---:|---|"]
    for r in cells:
        base = next((b for b in cells if b["width_mult"] == r["width_mult"] and b["variant"] == "no-kd"), None)
        delta = "—" if base is None or r["variant"] == "no-kd" else f"{100 * (r['test_acc_mean'] - base['test_acc_mean']):+.2f}"
        per_seed = ", ".join(f"{100 * a:.2f}" for a in r["test_acc"])
        lines.append(f"| ×{r['width_mult']} | {r['variant']} | {100 * r['test_acc_mean']:.2f}% ± "
                     f"{100 * r['test_acc_std']:.2f} | {delta} | {per_seed} |")
    lines.append("")
    lines.append(f"({first['epochs']} epochs, synthetic-shapes {first['dataset_size']}, seeds {first['seeds']}; "
                 "generated by `perf/kd_table.py`.)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", default="0.5,0.25", help="student width_mult values (default 0.5,0.25)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {','.join(VARIANTS)}")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8, help="student epochs (the demo's: 8)")
    parser.add_argument("--size", choices=("default", "quick"), default="default")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--train-threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--markdown", action="store_true", help="print the README table instead of JSON lines")
    parser.add_argument("--from", dest="from_file", type=Path, help="read the JSON lines of an earlier run")
    args = parser.parse_args()

    if args.from_file:
        rows = [json.loads(line) for line in args.from_file.read_text().splitlines() if line.strip().startswith("{")]
        print(markdown(rows) if args.markdown else "\n".join(json.dumps(r) for r in rows))
        return
    widths = [float(w) for w in args.widths.split(",")]
    variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variant(s) {unknown}; valid: {', '.join(VARIANTS)}")

    # Teacher and its cached outputs are made once here, so the workers only read them.
    from edgestill.compress.distill.teacher_outputs import cached_teacher_outputs
    from edgestill.compress.distill.trainer import seed_list
    from edgestill.compress.distill.teacher_outputs import default_cache_dir

    started = time.perf_counter()
    data, teacher = _setup(args.size, max(args.train_threads, 1))
    for feats in ([], [FITNETS_PAIR[1]], ["pool"]):
        cached_teacher_outputs(teacher, data, cache_dir=default_cache_dir() / "teacher-outputs", features=feats)
    print(json.dumps({"setup": True, "teacher_cache": _STATE["teacher_info"]["cache"],
                      "teacher_test_acc": _STATE["teacher_info"].get("test_accuracy"),
                      "setup_s": round(time.perf_counter() - started, 1)}), file=sys.stderr)
    tasks = [{"width": w, "variant": v, "seed": s, "epochs": args.epochs, "size": args.size, "threads": args.train_threads}
             for w in widths for s in seed_list(args.seeds) for v in variants]
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = []
        for i, r in enumerate(pool.map(_one, tasks), 1):
            results.append(r)
            print(f"[{i}/{len(tasks)}] width {r['width']} {r['variant']} seed {r['seed']}: test {r['test_acc']:.4f} "
                  f"({r['wall_s']:.0f} s)", file=sys.stderr, flush=True)
    rows = _rows(results, widths, variants)
    if args.markdown:
        print(markdown(rows))
    else:
        for row in rows:
            print(json.dumps(row), flush=True)
    print(json.dumps({"total_s": round(time.perf_counter() - started, 1)}), file=sys.stderr)


if __name__ == "__main__":
    main()
