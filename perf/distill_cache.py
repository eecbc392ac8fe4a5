"""Epoch time of (a) the student alone, (b) online KD, (c) KD from the teacher-output cache; print one JSON line.

The three are interleaved in rounds (a, b, c, a, b, c, ...) in one process so machine drift hits all of them
alike; each round trains one epoch of each from the same initial weights. It reports the median epoch time of
each and the ratios b/a and c/a (median of the per-round ratios, with their range). The cache is filled once
before the rounds (its one-time cost is reported as ``cache_fill_s``). Needs a quiet machine for a final figure.

Usage: python perf/distill_cache.py [--rounds 5] [--train-threads 1] [--size default|quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--train-threads", type=int, default=1)
    parser.add_argument("--size", choices=("default", "quick"), default="default")
    args = parser.parse_args()

    import torch

    from demo_settings import DEMO
    from edgestill.compress.distill.teacher_outputs import cached_teacher_outputs
    from edgestill.compress.distill.trainer import train
    from edgestill.data import load_dataset
    from edgestill.models import create_model

    torch.set_num_threads(args.train_threads)
    data = load_dataset(DEMO.dataset, seed=0, size=args.size)
    c = data.input_shape[0]
    # The demo's architectures; the teacher's weights do not change its cost, so it is not trained here.
    teacher = create_model(DEMO.teacher_model, num_classes=data.num_classes, in_channels=c, seed=0,
                           **DEMO.teacher_kwargs).eval()
    config = dataclasses.replace(DEMO.student_train_kd, epochs=1, warmup_epochs=0)

    def student():
        return create_model(DEMO.student_model, num_classes=data.num_classes, in_channels=c, seed=0,
                            **DEMO.student_kwargs)

    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = Path(tmp)
        t0 = time.perf_counter()
        cached_teacher_outputs(teacher, data, cache_dir=cache_dir)
        fill_s = time.perf_counter() - t0
        runs = {
            "alone": lambda: train(student(), data, config),
            "online": lambda: train(student(), data, config, teacher=teacher, teacher_mode="online"),
            "cached": lambda: train(student(), data, config, teacher=teacher, cache_dir=cache_dir),
        }
        for run in runs.values():  # warm-up: first-call allocations and page faults
            run()
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                result = run()
                assert result.teacher_mode == {"alone": "none", "online": "online", "cached": "cached"}[name]
                times[name].append(result.history[0].wall_s)

    per_round = {k: [b / a for a, b in zip(times["alone"], times[k])] for k in ("online", "cached")}
    out = {
        "script": "distill_cache", "dataset": data.name, "n_train": len(data.train), "threads": args.train_threads,
        "rounds": args.rounds, "student": DEMO.student_model, "teacher": DEMO.teacher_model,
        "batch_size": config.batch_size, "cache_fill_s": round(fill_s, 3),
        "epoch_s_median": {k: round(statistics.median(v), 3) for k, v in times.items()},
        "epoch_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "ratio_online_over_alone": round(statistics.median(per_round["online"]), 3),
        "ratio_cached_over_alone": round(statistics.median(per_round["cached"]), 3),
        "ratio_range": {k: [round(min(v), 3), round(max(v), 3)] for k, v in per_round.items()},
        "note": "epoch time includes the validation pass; needs a quiet machine for a final figure",
    }
    out["cached_within_1_10x"] = out["ratio_cached_over_alone"] <= 1.10
    print(json.dumps(out))


if __name__ == "__main__":
    main()
