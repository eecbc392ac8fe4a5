"""Text models through the whole chain (issue 15): a BERT-like teacher and a 2-layer student, per artifact.

Per task (``classify``: the built-in intent sentences, 4 classes; ``embed``: the same sentences unlabelled):

1. a BERT-like teacher built from a config (6 layers, hidden 384, 12 heads, feed-forward 1536, random init); the
   classifier is fine-tuned on the training split by ``edgestill.compress.distill.text.train_text``, the embedder is
   used as initialised (a stand-in for a pretrained one: the student learns its embeddings all the same);
2. a 2-layer student made DistilBERT's way (``student_from_teacher(layers=2)``: the teacher's embeddings, its first
   and last layers and its head);
3. the product's own chain (``edgestill.chain.run.run_recipe`` on a text recipe): distil (response KD, or MSE +
   cosine on the pooled embeddings), export to ONNX, OpenVINO and TFLite in fp32 and int8 (each format's text route:
   onnxruntime dynamic int8, NNCF with the transformer model type, ai-edge-quantizer dynamic range) with strict
   validation, score every file on its own runtime on the held-out texts, and time it at sequence length 128 on one
   thread.

One JSON line per artifact (accuracy or cosine, size, p50 latency, speed-up over the same format's fp32), then one
summary line per task with issue 15's target per format: int8 >= 1.5x faster than fp32 at <= 1 point accuracy drop
(classifier) or >= 0.99 mean cosine to the fp32 file (embedder). ``--markdown`` writes the README table to stderr.

Usage: python perf/text_chain.py [--tasks classify,embed] [--samples 2000] [--epochs 3] [--seq-len 128]
       [--work perf/.cache/text_chain] [--markdown]
Takes about 10-15 minutes on 2 cores (the teacher's fine-tuning is cached in --work).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

TARGET_SPEEDUP = 1.5
MAX_DROP_POINTS = 1.0
MIN_COSINE_TO_FP32 = 0.99
TEACHER = {"family": "bert", "layers": 6, "hidden": 384, "heads": 12, "intermediate": 1536, "max_position": 128}


def _r(v: Any, nd: int = 4) -> Any:
    return round(float(v), nd) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def build_folders(task: str, work: Path, *, samples: int, epochs: int, seed: int) -> tuple[Path, Path]:
    """The teacher (fine-tuned once and kept in ``work`` for a classifier) and its 2-layer student's starting folder."""
    from edgestill.compress.distill.text import TextDistillConfig, student_from_teacher, train_text
    from edgestill.data.text import generated_texts
    from edgestill.models.hf import make_tiny_hf

    texts = generated_texts(samples, seed=seed, num_classes=4)
    tag = f"{task}-{samples}-{epochs}-{seed}-" + "-".join(f"{k}{v}" for k, v in TEACHER.items())
    root = work / tag
    teacher = root / ("teacher" if task == "embed" else "model")
    if not (teacher / "config.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        init = make_tiny_hf(root / "teacher" if task == "embed" else root / "teacher-init", task=task,
                            family=TEACHER["family"], layers=TEACHER["layers"], hidden=TEACHER["hidden"],
                            heads=TEACHER["heads"], intermediate=TEACHER["intermediate"], num_labels=4,
                            max_position=TEACHER["max_position"], seed=seed, texts=texts.texts)
        if task == "classify":
            n_train = int(len(texts.texts) * 0.7)  # the recipe's split holds out 30%; the teacher sees a like share
            config = TextDistillConfig(task="classify", epochs=epochs, alpha=1.0, max_length=32, seed=seed,
                                       train_threads=2, truncate=True)
            train_text(init, texts.texts[:n_train], texts.labels[:n_train], config, root)
    student = root / "student_init"
    if not (student / "config.json").is_file():
        student_from_teacher(teacher, root, layers=2)
    return teacher, student


def recipe_doc(task: str, teacher: Path, student: Path, *, samples: int, epochs: int, seq_len: int, seed: int) -> dict:
    distill: dict[str, Any] = {"epochs": epochs, "max_length": 32, "truncate": True}
    distill.update({"temperature": 2.0, "alpha": 0.5} if task == "classify" else {"mse_weight": 1.0, "cosine_weight": 1.0})
    data = {"text": "builtin", "samples": samples, "seed": seed}
    if task == "classify":
        data["classes"] = 4
    return {
        "name": f"text-chain-{task}", "task": f"text-{task}", "data": data,
        "teacher": {"hf": str(teacher)}, "student": {"hf": str(student)}, "distill": distill,
        "export": {"name": "student", "formats": ["onnx", "openvino", "tflite"], "precisions": ["fp32", "int8"],
                   "max_length": seq_len},
        "bench": {"threads": [1], "min_runs": 50, "min_seconds": 2.0, "max_seconds": 10.0, "warmup_runs": 5},
    }


def _quantization(q: dict[str, Any] | None) -> dict[str, Any]:
    """The int8 facts of a row: the route chosen, the budget's metric and verdict, the layers kept in float; for an
    embedder the budget's own figure, the mean cosine to the fp32 file on the same runtime (``accuracy`` there)."""
    if not q:
        return {}
    chosen = (q.get("settings") or {}).get("chosen") or {}
    out = {"method": (q.get("settings") or {}).get("method"), "chosen": chosen.get("precision"), "metric": q.get("metric"),
           "budget_met": q.get("budget_met"), "float_layers": q.get("float_layers"), "sqnr_db": q.get("sqnr_db")}
    if q.get("metric") == "mean_cosine_to_fp32":
        out["cosine_to_fp32"] = _r(q.get("accuracy"), 6)
    return out


def rows_of(task: str, report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in report["artifacts"]:
        m = (r.get("measurements") or [{}])[0]
        rows.append({
            "task": task, "artifact": r["artifact"], "format": r["format"], "precision": r["precision"],
            "passed": r["passed"], "error": r.get("error"),
            "accuracy": _r(r.get("test_accuracy")), "teacher_agreement": _r(r.get("teacher_top1_agreement")),
            "teacher_cosine": _r(r.get("teacher_cosine")), "retrieval_agreement": _r(r.get("teacher_retrieval_agreement")),
            "mb": _r((r.get("model_bytes") or 0) / 1e6, 2), "p50_ms": _r(m.get("p50_ms"), 3),
            "quantization": _quantization(r.get("quantization")),
        })
    by_format = {(x["format"], x["precision"]): x for x in rows}
    for x in rows:
        base = by_format.get((x["format"], "fp32"))
        if x["precision"] != "fp32" and base and base["p50_ms"] and x["p50_ms"]:
            x["speedup"] = _r(base["p50_ms"] / x["p50_ms"], 2)
            if task == "classify" and base["accuracy"] is not None and x["accuracy"] is not None:
                x["drop_points"] = _r(100 * (base["accuracy"] - x["accuracy"]), 2)
                x["meets_target"] = x["speedup"] >= TARGET_SPEEDUP and x["drop_points"] <= MAX_DROP_POINTS
            else:
                cos = x["quantization"].get("cosine_to_fp32")
                x["cosine_to_fp32"] = _r(cos)
                x["meets_target"] = x["speedup"] >= TARGET_SPEEDUP and cos is not None and cos >= MIN_COSINE_TO_FP32
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| task | artifact | accuracy / cosine to teacher | MB | p50 ms (seq 128, 1 thread) | int8 speed-up | int8 vs fp32 | target |",
             "|---|---|---|---|---|---|---|---|"]
    for x in rows:
        score = (f"{100 * x['accuracy']:.1f}%" if x["accuracy"] is not None
                 else f"{x['teacher_cosine']:.4f}" if x["teacher_cosine"] is not None else "-")
        vs = (f"{x['drop_points']:+.1f} pt drop" if x.get("drop_points") is not None
              else f"cos {x['cosine_to_fp32']:.4f}" if x.get("cosine_to_fp32") is not None else "")
        target = "" if "meets_target" not in x else ("met" if x["meets_target"] else "missed")
        lines.append(f"| {x['task']} | {x['artifact']}{'' if x['passed'] else ' (rejected)'} | {score} | {x['mb']} | "
                     f"{x['p50_ms'] if x['p50_ms'] is not None else '-'} | {x.get('speedup', '')} | {vs} | {target} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="classify,embed")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path(__file__).resolve().parent / ".cache" / "text_chain")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)

    from edgestill.chain.recipe import recipe_from_dict
    from edgestill.chain.run import RunOptions, run_recipe

    # the converters print to fd 1: the JSON lines go to the real stdout, everything else to stderr
    out_fd = os.dup(1)
    os.dup2(2, 1)
    emit = os.fdopen(out_fd, "w", buffering=1)  # sys.stdout now writes to stderr, like the libraries' prints
    all_rows = []
    for task in args.tasks.split(","):
        t0 = time.perf_counter()
        teacher, student = build_folders(task, args.work, samples=args.samples, epochs=args.epochs, seed=args.seed)
        doc = recipe_doc(task, teacher, student, samples=args.samples, epochs=args.epochs, seq_len=args.seq_len,
                         seed=args.seed)
        out = args.work / f"run-{task}-{os.getpid()}"
        report = run_recipe(recipe_from_dict(doc), RunOptions(out_dir=out, db=None, cache_dir=args.work / "cache",
                                                              force=True, train_threads=2))
        rows = rows_of(task, report)
        for x in rows:
            print(json.dumps(x), file=emit, flush=True)
        met = {x["format"]: x.get("meets_target") for x in rows if "meets_target" in x}
        print(json.dumps({"summary": task, "teacher": {k: _r(report["teacher"].get(k)) for k in ("test_accuracy", "parameters")},
                          "student": {k: _r(report["student"].get(k)) for k in ("test_accuracy", "teacher_cosine",
                                                                                 "teacher_retrieval_agreement", "parameters")},
                          "int8_target_met": met, "seconds": _r(time.perf_counter() - t0, 1), "out": str(out)}),
              file=emit, flush=True)
        all_rows.extend(rows)
    if args.markdown:
        print(markdown(all_rows), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
