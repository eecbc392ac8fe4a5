"""Measure the demo's distillation stage: teacher, KD student, no-KD student; print one JSON line.

Usage: python perf/kd_demo_check.py [--seed N] [--quick] [--train-threads 2] [--override JSON]

``--override`` replaces fields of the preset to try another configuration before changing the preset, e.g.
``--override '{"teacher_kwargs": {"width": 32, "blocks": [2, 2, 2]}, "student_kwargs": {"width_mult": 1.25}}'``
(TrainConfig fields go in as dicts: ``{"teacher_train": {"epochs": 15}}``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="use QUICK instead of DEMO")
    parser.add_argument("--train-threads", type=int, default=2)
    parser.add_argument("--override", type=json.loads, default={}, help="JSON object of preset fields to replace")
    args = parser.parse_args()

    import torch

    from demo_settings import DEMO, QUICK
    from edgestill.compress.distill.trainer import evaluate, train
    from edgestill.data import load_dataset
    from edgestill.models import count_parameters, create_model

    torch.set_num_threads(args.train_threads)
    s = QUICK if args.quick else DEMO
    changes = {}
    for key, value in args.override.items():
        current = getattr(s, key)
        changes[key] = dataclasses.replace(current, **value) if dataclasses.is_dataclass(current) else value
    s = dataclasses.replace(s, **changes)
    seed = args.seed
    out: dict = {"preset": "quick" if args.quick else "demo", "seed": seed, "threads": args.train_threads, "override": args.override}

    t0 = time.perf_counter()
    data = load_dataset(s.dataset, seed=seed, size=s.dataset_size)
    out["data_s"] = round(time.perf_counter() - t0, 2)
    out["n_train"], out["n_test"] = len(data.train), len(data.test)

    def cfg(c):
        return dataclasses.replace(c, seed=seed)

    def build(name, kwargs):
        return create_model(name, num_classes=data.num_classes, in_channels=data.input_shape[0], seed=seed, **kwargs)

    cpu_s = {}

    def timed(label, *a, **kw):
        c0 = time.process_time()
        result = train(*a, **kw)
        cpu_s[label] = time.process_time() - c0
        return result

    teacher = build(s.teacher_model, s.teacher_kwargs)
    res_t = timed("teacher", teacher, data, cfg(s.teacher_train))
    kd = timed("kd_student", build(s.student_model, s.student_kwargs), data, cfg(s.student_train_kd), teacher=res_t.model)
    base = timed("baseline_student", build(s.student_model, s.student_kwargs), data, cfg(s.student_train_baseline))
    for label, res in (("teacher", res_t), ("kd_student", kd), ("baseline_student", base)):
        out[label] = {"test_acc": round(evaluate(res.model, data.test), 4), "val_acc": round(res.best_val_accuracy, 4),
                      "best_epoch": res.best_epoch, "wall_s": round(res.wall_s, 1),
                      "cpu_s": round(cpu_s[label], 1), "params": count_parameters(res.model)}
    out["train_wall_s_total"] = round(res_t.wall_s + kd.wall_s + base.wall_s, 1)
    # CPU seconds / threads: what the wall time would be with the cores to itself (the machine may be shared)
    out["train_cpu_s_total"] = round(sum(cpu_s.values()), 1)
    out["load_average_1m"] = round(__import__("os").getloadavg()[0], 2)
    out["teacher_minus_baseline"] = round(out["teacher"]["test_acc"] - out["baseline_student"]["test_acc"], 4)
    out["kd_minus_baseline"] = round(out["kd_student"]["test_acc"] - out["baseline_student"]["test_acc"], 4)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
