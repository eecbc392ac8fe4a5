"""Small generative LMs (issue 16): does distillation beat the same student on the corpus alone, and what do the
models give once exported (``--deploy``: perf/llm_deploy.py on the teacher and each mode's seed-0 student)?

On the built-in reasoning corpus (``edgestill.data.reasoning``: multi-step arithmetic with worked steps, the ground
truth written in three equivalent styles):

1. the teacher (``TEACHER_SIZE`` Llama unless overridden) trained on the ground truth, cached in ``--work``
   (``compress.distill.llm.train_teacher``), its exact match on the test split;
2. sequence-level KD data: ``--samples`` traces per training prompt sampled from the teacher at ``--temperature``,
   kept only when the final answer verifies (the R1 recipe);
3. per seed (``--seeds``), the same 2-layer student (``STUDENT_SIZE``, the teacher's tokenizer, init seed = seed,
   batch order seed = seed) trained for the same ``--student-steps`` at the same batch size on the same training
   prompts, in each mode: ``ground-truth`` (no KD), ``seq-kd`` (the kept teacher traces), and ``token-kd`` (the ground
   truth with forward KL to the teacher's top-k logits from the offline cache, ``compress.distill.llm_kd``; the
   teacher is not loaded while training; skipped with a message when that module is missing).

One JSON line per trained student (test exact match, teacher agreement on the test answers, median step time), one
per mode with the mean ± sample std over seeds, and a final line saying whether each KD mode beats the ground truth
and the cache step-time ratio to the student alone. ``--markdown`` writes the README table to stderr.

Usage: python perf/llm_chain.py [--difficulty default] [--train 3000] [--teacher-steps 1500] [--student-steps 600]
       [--seeds 3] [--samples 4] [--temperature 0.7] [--k 16] [--threads 1] [--work perf/.cache/llm_chain] [--markdown]

Training runs on one torch thread by default: on the shared 2-core machine under load, two threads took 19 s of wall
time per teacher step (3 s of CPU, the OpenMP threads waiting for each other) against 0.35 s with one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _r(v: Any, nd: int = 4) -> Any:
    return round(v, nd) if isinstance(v, float) else v


def corpus(args: argparse.Namespace) -> dict[str, list[Any]]:
    from edgestill.data.reasoning import splits

    return splits(args.train, args.val, args.test, seed=args.corpus_seed, difficulty=args.difficulty)


def teacher(args: argparse.Namespace, parts: dict[str, list[Any]]) -> tuple[Path, dict[str, Any], list[str]]:
    """The cached teacher's folder, its training info (with test exact match) and its greedy test completions."""
    from edgestill.compress.distill.llm import (
        TEACHER_SIZE,
        LMTrainConfig,
        greedy_completions,
        train_teacher,
    )
    from edgestill.data.reasoning import verify
    from edgestill.models.llm import load_causal_lm

    size = replace(TEACHER_SIZE, layers=args.teacher_layers, hidden=args.teacher_hidden,
                   intermediate=args.teacher_hidden * 3)
    config = LMTrainConfig(steps=args.teacher_steps, batch_size=args.batch, lr=args.teacher_lr, seed=0)
    folder, info = train_teacher(parts["train"], parts["val"], config, size=size, max_new_tokens=args.max_new_tokens,
                                 cache_dir=args.work / "cache")
    model, tok = load_causal_lm(folder)
    completions = greedy_completions(model, tok, parts["test"], max_new_tokens=args.max_new_tokens)
    info["test_exact_match"] = sum(map(verify, parts["test"], completions)) / len(parts["test"])
    info["parameters"] = sum(p.numel() for p in model.parameters())
    info["size"] = asdict(size)
    return folder, info, completions


def seq_kd_pairs(args: argparse.Namespace, teacher_dir: Path,
                 parts: dict[str, list[Any]]) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    from edgestill.compress.distill.llm import teacher_traces
    from edgestill.models.llm import load_causal_lm

    model, tok = load_causal_lm(teacher_dir)
    started = time.perf_counter()
    pairs, stats = teacher_traces(model, tok, parts["train"], samples_per_prompt=args.samples,
                                  temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                                  seed=0)
    return pairs, {**stats, "seconds": time.perf_counter() - started}


def topk_objective_factory(args: argparse.Namespace, teacher_dir: Path) -> Any:
    """``make(examples, student) -> objective`` for token-level KD from the offline top-k cache, or None when the module is
    not there. The cache is built once per example list (the teacher loaded for that only, then released)."""
    try:
        from edgestill.compress.distill.llm_cache import build_topk_cache_from_folder
        from edgestill.compress.distill.llm_kd import TokenKDObjective
    except ImportError as exc:
        print(f"token-kd skipped: {exc}", file=sys.stderr)
        return None

    def make(examples: list[tuple[list[int], list[int]]], student: Any = None) -> Any:
        path = args.work / f"topk-{teacher_dir.name}-k{args.k}-n{len(examples)}"
        build_topk_cache_from_folder(teacher_dir, [p + c for p, c in examples], k=args.k, path=path)
        return TokenKDObjective(path, kind="fkl", temperature=1.0, alpha=args.alpha)

    return make


def train_student(args: argparse.Namespace, mode: str, seed: int, teacher_dir: Path, pairs: list[tuple[str, str]],
                  parts: dict[str, list[Any]], teacher_test: list[str], make_objective: Any = None) -> dict[str, Any]:
    """One student from its seeded initialisation, trained in ``mode``; scored on the test split."""
    from edgestill.compress.distill.llm import (
        STUDENT_SIZE,
        LMTrainConfig,
        answer_agreement,
        encode_examples,
        greedy_completions,
        train_causal_lm,
    )
    from edgestill.data.reasoning import verify
    from edgestill.models.llm import load_causal_lm, make_tiny_llama
    from edgestill.outdir import fresh_work_dir

    folder = make_tiny_llama(fresh_work_dir(args.work, f"student-{mode}-{seed}"), seed=seed, tokenizer_dir=teacher_dir,
                             **asdict(replace(STUDENT_SIZE, hidden=args.student_hidden,
                                              intermediate=args.student_hidden * 2)))
    model, tok = load_causal_lm(folder)
    examples = encode_examples(tok, pairs)
    objective = make_objective(examples, student=None) if make_objective is not None else None
    config = LMTrainConfig(steps=args.student_steps, batch_size=args.batch, lr=args.student_lr, seed=seed)
    train = train_causal_lm(model, examples, config, objective=objective)
    completions = greedy_completions(model, tok, parts["test"], max_new_tokens=args.max_new_tokens)
    row = {"mode": mode, "seed": seed, "examples": len(examples), "steps": config.steps, "batch": config.batch_size,
           "test_exact_match": sum(map(verify, parts["test"], completions)) / len(parts["test"]),
           "teacher_agreement": answer_agreement(completions, teacher_test),
           "step_ms_median": train["step_ms_median"], "final_loss": train["final_loss"], "train_s": train["wall_s"],
           "parameters": sum(p.numel() for p in model.parameters())}
    if objective is not None:
        row["teacher_loaded_while_training"] = getattr(objective, "teacher", None) is not None
    if args.deploy and seed == 0:  # the trained weights, for perf/llm_deploy.py (the folder holds the tokenizer)
        model.save_pretrained(str(folder), safe_serialization=True)
        row["folder"] = str(folder)
    return row


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    from edgestill.compress.distill.trainer import summarize_seeds

    out = {}
    for mode in dict.fromkeys(r["mode"] for r in rows):
        mine = [r for r in rows if r["mode"] == mode]
        out[mode] = {key: summarize_seeds([r[key] for r in mine]).to_dict()
                     for key in ("test_exact_match", "teacher_agreement", "step_ms_median")}
    return out


def markdown(teacher_info: dict[str, Any], stats: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    lines = ["| model | training data | test exact match (mean ± std, n) | teacher agreement | step ms (median) |",
             "|---|---|---|---|---|",
             f"| teacher ({teacher_info['parameters']:,} params) | ground truth, {args.teacher_steps} steps | "
             f"{100 * teacher_info['test_exact_match']:.1f}% | — | — |"]
    for mode, s in stats.items():
        em, agree, step = s["test_exact_match"], s["teacher_agreement"], s["step_ms_median"]
        lines.append(f"| student, {mode} | {args.student_steps} steps × {args.batch} | {100 * em['mean']:.1f} ± "
                     f"{100 * em['std']:.1f}% (n={em['n']}) | {100 * agree['mean']:.1f}% | {step['mean']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from edgestill.compress.distill.llm import STUDENT_SIZE, TEACHER_SIZE

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--difficulty", default="default")
    ap.add_argument("--train", type=int, default=3000)
    ap.add_argument("--val", type=int, default=100)
    ap.add_argument("--test", type=int, default=300)
    ap.add_argument("--corpus-seed", type=int, default=0)
    ap.add_argument("--teacher-steps", type=int, default=1500)
    ap.add_argument("--teacher-layers", type=int, default=TEACHER_SIZE.layers)
    ap.add_argument("--teacher-hidden", type=int, default=TEACHER_SIZE.hidden)
    ap.add_argument("--teacher-lr", type=float, default=3e-3)
    ap.add_argument("--student-steps", type=int, default=600)
    ap.add_argument("--student-hidden", type=int, default=STUDENT_SIZE.hidden)
    ap.add_argument("--student-lr", type=float, default=3e-3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--modes", default="ground-truth,seq-kd,token-kd")
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=0.9)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path(__file__).resolve().parent / ".cache" / "llm_chain")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--deploy", action="store_true", help="then export the teacher and each mode's seed-0 student "
                    "with a KV cache, score and time every file (perf/llm_deploy.py; its JSON lines follow)")
    ap.add_argument("--deploy-args", default="", help="extra perf/llm_deploy.py arguments, e.g. '--threads 1,2'")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    out_fd = os.dup(1)  # the JSON lines go to the real stdout, the libraries' prints to stderr
    os.dup2(2, 1)
    emit = os.fdopen(out_fd, "w", buffering=1)

    def line(doc: dict[str, Any]) -> None:
        print(json.dumps({k: _r(v) for k, v in doc.items()}), file=emit, flush=True)

    started = time.perf_counter()
    parts = corpus(args)
    teacher_dir, info, teacher_test = teacher(args, parts)
    line({"what": "teacher", "cache": info["cache"], "parameters": info["parameters"], "size": info["size"],
          "val_exact_match": info["val_exact_match"], "test_exact_match": info["test_exact_match"],
          "train_s": info["train"]["wall_s"], "step_ms_median": info["train"]["step_ms_median"]})
    modes = args.modes.split(",")
    data = {"ground-truth": ([(p.prompt, p.solution) for p in parts["train"]], None)}
    if "seq-kd" in modes:
        pairs, stats = seq_kd_pairs(args, teacher_dir, parts)
        line({"what": "seq-kd traces", **stats})
        data["seq-kd"] = (pairs, None)
    if "token-kd" in modes:
        make = topk_objective_factory(args, teacher_dir)
        if make is not None:
            data["token-kd"] = (data["ground-truth"][0], make)
    rows = []
    for seed in range(args.seeds):
        for mode in (m for m in modes if m in data):
            pairs, make = data[mode]
            row = train_student(args, mode, seed, teacher_dir, pairs, parts, teacher_test, make)
            line({"what": "student", **row})
            rows.append(row)
    stats = summarize(rows)
    for mode, s in stats.items():
        line({"what": "summary", "mode": mode, **s})
    base = stats.get("ground-truth", {}).get("test_exact_match", {}).get("mean")
    verdict = {"what": "verdict", "seconds": time.perf_counter() - started,
               **{f"{m}_beats_ground_truth": s["test_exact_match"]["mean"] > base
                  for m, s in stats.items() if m != "ground-truth" and base is not None}}
    if "token-kd" in stats and "ground-truth" in stats:
        verdict["cache_step_ratio"] = stats["token-kd"]["step_ms_median"]["mean"] / stats["ground-truth"]["step_ms_median"]["mean"]
    line(verdict)
    if args.markdown:
        print(markdown(info, stats, args), file=sys.stderr)
    if args.deploy:
        import shlex
        import subprocess

        models = [f"teacher={teacher_dir}"] + [f"student-{r['mode']}={r['folder']}" for r in rows if r.get("folder")]
        cmd = [sys.executable, str(Path(__file__).with_name("llm_deploy.py")), "--train", str(args.train),
               "--val", str(args.val), "--test", str(args.test), "--corpus-seed", str(args.corpus_seed), "--difficulty", args.difficulty,
               "--max-new-tokens", str(args.max_new_tokens), *[a for m in models for a in ("--model", m)],
               *(["--markdown"] if args.markdown else []), *shlex.split(args.deploy_args)]
        emit.flush()
        return subprocess.run(cmd, stdout=emit, check=False).returncode
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
