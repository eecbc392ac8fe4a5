"""What token-level KD from the offline top-k cache costs per training step. Prints ONE JSON line.

For each vocabulary size in --vocab, a Llama teacher and student of the built-in sizes (teacher 4 layers x 128,
student 2 x 64, as compress.distill.llm's TEACHER_SIZE / STUDENT_SIZE) and --batch sequences of --seq tokens
(the first --prompt of each a prompt, -100 in the labels). Three arms, each with its own copy of the student and
its own AdamW, one training step each (forward with use_cache=False, loss, backward, gradient clipping to 1,
optimizer step: what train_causal_lm does per step, batch building excluded):

- ``alone``: cross-entropy on the completion tokens (compress.distill.llm.completion_ce's loss);
- ``cache``: TokenKDObjective from the cache folder (the teacher is not loaded by it), the cache rows read from
  the memory-mapped files inside the timed step;
- ``live``: TokenKDObjective with the teacher loaded (its forward pass on every step, full logits).

Steps are interleaved (the arm order rotates each round) after --warmup rounds; the report gives each arm's median
step time and the ratios to ``alone`` (acceptance of issue 16: cache <= 1.10x alone).

With ``--truncation``, the JSON line also holds what truncating the teacher to its top-k costs
(compress.distill.llm_kd.truncation_report) on the built-in reasoning corpus: a teacher trained on it with
train_causal_lm (``--teacher-dir`` takes an already trained one instead), a student trained a quarter as long,
the loss from top-k vs full logits on the completion tokens of held-out examples, for each k and both rules.

Usage: python perf/llm_cache_step.py [--vocab 100,8192] [--rounds 30] [--k 16] [--kind fkl] [--threads 2]
                                     [--truncation [--teacher-dir DIR] [--train-steps 400]]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from edgestill.compress.distill.llm_cache import build_topk_cache  # noqa: E402
from edgestill.compress.distill.llm_kd import IGNORE, TokenKDObjective  # noqa: E402

TEACHER = {"layers": 4, "hidden": 128, "heads": 4, "kv_heads": 2, "intermediate": 384}
STUDENT = {"layers": 2, "hidden": 64, "heads": 4, "kv_heads": 2, "intermediate": 128}


def llama(size: dict[str, int], vocab: int, context: int, seed: int) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=size["hidden"], num_hidden_layers=size["layers"],
                         num_attention_heads=size["heads"], num_key_value_heads=size["kv_heads"],
                         intermediate_size=size["intermediate"], max_position_embeddings=context,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    return LlamaForCausalLM(config)


def make_batch(seqs: list[list[int]], prompt: int) -> dict[str, Any]:
    ids = torch.tensor(seqs, dtype=torch.long)
    labels = ids.clone()
    labels[:, :prompt] = IGNORE
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels,
            "index": torch.arange(len(seqs))}


def completion_ce(logits: Any, batch: dict[str, Any]) -> Any:
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch["labels"][:, 1:].flatten(),
                                             ignore_index=IGNORE)


class Arm:
    """One student copy, its optimizer and its loss; ``step()`` returns the step's wall and CPU time in ms (the
    process's CPU time, all threads: on a shared, overloaded machine the work done, without the waits)."""

    def __init__(self, student: Any, loss_fn: Any, batch: dict[str, Any]) -> None:
        self.model, self.loss_fn, self.batch = copy.deepcopy(student).train(), loss_fn, batch
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.times_ms: list[float] = []
        self.cpu_ms: list[float] = []

    def step(self) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        logits = self.model(input_ids=self.batch["input_ids"], attention_mask=self.batch["attention_mask"],
                            use_cache=False).logits
        loss = self.loss_fn(logits, self.batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        return 1000 * (time.perf_counter() - t0), 1000 * (time.process_time() - c0)


def run(vocab: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    seqs = [[1, *rng.integers(3, vocab, size=args.seq - 2).tolist(), 2] for _ in range(args.batch)]
    teacher = llama(TEACHER, vocab, args.seq, 0).eval()
    student = llama(STUDENT, vocab, args.seq, 1)
    t0 = time.perf_counter()
    cache = build_topk_cache(teacher, seqs, k=args.k, path=work / f"cache-{vocab}", batch_size=args.batch)
    build_s = time.perf_counter() - t0
    batch = make_batch(seqs, args.prompt)
    opts = {"kind": args.kind, "temperature": args.temperature, "alpha": args.alpha}
    from_cache = TokenKDObjective(cache.path, **opts)
    arms = {"alone": Arm(student, completion_ce, batch), "cache": Arm(student, from_cache, batch),
            "live": Arm(student, TokenKDObjective(teacher, **opts), batch)}
    names = list(arms)
    for r in range(args.warmup + args.rounds):
        order = names[r % 3:] + names[:r % 3]
        for name in order:
            ms, cpu_ms = arms[name].step()
            if r >= args.warmup:
                arms[name].times_ms.append(ms)
                arms[name].cpu_ms.append(cpu_ms)
    med = {name: statistics.median(arm.times_ms) for name, arm in arms.items()}
    cpu = {name: statistics.median(arm.cpu_ms) for name, arm in arms.items()}
    # ratio per round (same round, adjacent steps) is steadier than a ratio of medians on a shared machine
    per_round = [c / a for c, a in zip(arms["cache"].times_ms, arms["alone"].times_ms, strict=True)]
    return {"vocab": vocab, "k": args.k, "step_ms_median": {k: round(v, 2) for k, v in med.items()},
            "cache_over_alone": round(med["cache"] / med["alone"], 3),
            "cache_over_alone_per_round_median": round(statistics.median(per_round), 3),
            "live_over_alone": round(med["live"] / med["alone"], 3),
            "cpu_ms_median": {k: round(v, 2) for k, v in cpu.items()},
            "cpu_cache_over_alone": round(cpu["cache"] / cpu["alone"], 3),
            "cpu_live_over_alone": round(cpu["live"] / cpu["alone"], 3),
            "teacher_loaded_by_cache_objective": from_cache.teacher is not None,
            "cache_bytes": cache.size_bytes, "cache_bytes_per_token": round(cache.size_bytes / cache.header["rows"], 1),
            "cache_build_s": round(build_s, 2), "tokens_per_step": int((batch["labels"][:, 1:] != IGNORE).sum())}


def truncation(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """truncation_report on the built-in corpus, per (kind, temperature) in KD_SETTINGS."""
    from edgestill.compress.distill.llm import LMTrainConfig, encode_examples, ground_truth_pairs, train_causal_lm
    from edgestill.compress.distill.llm_kd import truncation_report
    from edgestill.data.reasoning import generate_problems
    from edgestill.models.llm import load_causal_lm, make_tiny_llama

    problems = generate_problems(args.train_examples + 64, seed=0)
    train, held_out = problems[:-64], problems[-64:]
    t0 = time.perf_counter()
    if args.teacher_dir:
        teacher, tokenizer = load_causal_lm(args.teacher_dir)
    else:
        make_tiny_llama(work / "teacher", seed=0, **TEACHER)
        teacher, tokenizer = load_causal_lm(work / "teacher")
        train_causal_lm(teacher, encode_examples(tokenizer, ground_truth_pairs(train)),
                        LMTrainConfig(steps=args.train_steps, batch_size=16))
    make_tiny_llama(work / "student", seed=1, tokenizer_dir=work / "teacher" if not args.teacher_dir
                    else args.teacher_dir, **STUDENT)
    student, _ = load_causal_lm(work / "student")
    train_causal_lm(student, encode_examples(tokenizer, ground_truth_pairs(train)),
                    LMTrainConfig(steps=max(args.train_steps // 4, 1), batch_size=16))
    train_s = time.perf_counter() - t0
    pairs = encode_examples(tokenizer, ground_truth_pairs(held_out))
    seqs, prompt_lens = [p + c for p, c in pairs], [len(p) for p, _ in pairs]
    teacher.eval()
    student.train()
    rows = []
    for kind, temperature in KD_SETTINGS:
        for r in truncation_report(teacher, student, seqs, k_values=(1, 2, 4, 8, 16, 32), kind=kind,
                                   temperature=temperature, prompt_lens=prompt_lens):
            rows.append({"kind": kind, "temperature": temperature,
                         **{key: round(v, 5) if isinstance(v, float) else v for key, v in r.items()}})
    return {"vocab": teacher.config.vocab_size, "teacher_dir": args.teacher_dir or "trained here",
            "train_steps": None if args.teacher_dir else args.train_steps, "train_s": round(train_s, 1),
            "held_out_sequences": len(seqs), "rows": rows}


KD_SETTINGS = (("fkl", 1.0), ("rkl", 1.0), ("fkl", 2.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", default="100,8192", help="comma-separated vocabulary sizes (100: the built-in character tokenizer)")
    ap.add_argument("--seq", type=int, default=96)
    ap.add_argument("--prompt", type=int, default=24)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--kind", default="fkl", choices=["fkl", "rkl", "jsd"])
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--alpha", type=float, default=0.9)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--truncation", action="store_true", help="also measure the top-k truncation error")
    ap.add_argument("--teacher-dir", default=None, help="a trained teacher folder for --truncation")
    ap.add_argument("--train-steps", type=int, default=400)
    ap.add_argument("--train-examples", type=int, default=2000)
    ap.add_argument("--skip-steps", action="store_true", help="only the truncation measurement")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="llm-cache-step-") as tmp:
        runs = [] if args.skip_steps else [run(int(v), args, Path(tmp)) for v in args.vocab.split(",")]
        trunc = truncation(args, Path(tmp)) if args.truncation else None
    out = {"script": "llm_cache_step", "threads": args.threads, "batch": args.batch, "seq": args.seq,
           "prompt": args.prompt, "kind": args.kind, "rounds": args.rounds, "teacher": TEACHER, "student": STUDENT,
           "target_cache_over_alone": 1.10, "runs": runs, "truncation": trunc,
           "nice": os.nice(0), "torch": torch.__version__}
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
