"""Distilling small generative language models: training on completions, the cached built-in teacher, sequence-level
KD from the teacher's verified traces (the R1 recipe), the Socratic route from a black-box teacher's JSONL, and
token-level KD through an objective (:mod:`edgestill.compress.distill.llm_kd`).

One trainer, :func:`train_causal_lm`, serves every mode: the examples are ``(prompt_ids, completion_ids)`` pairs,
the loss falls on the completion tokens only (a prompt is given, not learned), and an ``objective`` callable may
replace the cross-entropy with a distillation loss. :func:`distill_lm` is the one entry point a chain calls.

Sequence-level KD works on *text*: the teacher's traces are decoded and re-encoded with the student's tokenizer, so
teacher and student may have different tokenizers. Token-level KD compares distributions over one vocabulary and
refuses two tokenizers (:func:`edgestill.models.llm.check_same_tokenizer`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgestill.compress.distill.teacher_outputs import default_cache_dir
from edgestill.data.reasoning import Problem, extract_answer, verify
from edgestill.errors import ConfigError, InputError, RuntimeFailure
from edgestill.models.llm import TOKENIZER_FILES, load_causal_lm, make_tiny_llama, special_ids
from edgestill.outdir import fresh_work_dir, write_json_atomic

Example = tuple[list[int], list[int]]
"""(prompt ids, completion ids): the prompt starts with bos, the completion ends with eos."""
Objective = Callable[[Any, Mapping[str, Any]], Any]
"""``objective(student_logits [B, T, V], batch) -> scalar loss``; ``batch`` holds ``input_ids``, ``attention_mask``,
``labels`` (the input ids on completion tokens, -100 elsewhere; aligned with ``input_ids`` like Hugging Face labels:
the logits at position t - 1 predict ``labels[:, t]``) and ``index`` (each row's index in the example list)."""
Progress = Callable[[int, int, float], None]
"""``progress(step, total_steps, loss)``, called every ``log_every`` steps and at the last."""
Mode = Literal["ground-truth", "seq-kd", "socratic", "token-kd", "seq+token"]
MODES: tuple[str, ...] = ("ground-truth", "seq-kd", "socratic", "token-kd", "seq+token")
IGNORE = -100
_CACHE_FORMAT = 1


@dataclass(frozen=True, kw_only=True)
class LMTrainConfig:
    """How a causal LM is trained: AdamW, ``warmup`` steps of linear warm-up then cosine decay to a tenth of ``lr``,
    gradients clipped to norm 1, batches drawn without replacement (a new seeded order each pass)."""

    steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-3
    warmup: int = 50
    weight_decay: float = 0.01
    seed: int = 0
    max_length: int = 128
    log_every: int = 100

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            whole = f.type == "int"
            ok = number and (isinstance(value, int) if whole else True) and (
                value >= 0 if f.name in ("warmup", "weight_decay", "seed") else value > 0)
            if not ok:
                kind = "a non-negative" if f.name in ("warmup", "weight_decay", "seed") else "a positive"
                raise ConfigError(f"{f.name}={value!r} in the LM training config: it must be {kind} "
                                  f"{'integer' if whole else 'number'}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class LlamaSize:
    """The architecture of a built-in Llama (see :func:`edgestill.models.llm.make_tiny_llama`)."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    context_length: int = 128


TEACHER_SIZE = LlamaSize(layers=4, hidden=128, heads=4, kv_heads=2, intermediate=384)
"""0.81M parameters: 83.3% test exact match on the default corpus after 1200 steps of 32 (87.0% on "easy" after 800)."""
STUDENT_SIZE = LlamaSize(layers=2, hidden=64, heads=4, kv_heads=2, intermediate=128)
"""0.087M parameters: two narrow layers, 3-6% exact match on the corpus alone after 400-600 steps."""


# ------------------------------------------------------------------------------------------------ examples
def encode_examples(tokenizer: Any, pairs: Sequence[tuple[str, str]]) -> list[Example]:
    """(prompt, completion) texts → ids: the prompt with the tokenizer's special tokens (a bos), the completion
    without them and followed by eos.

    Raises:
        InputError: no pairs (an empty corpus), or a tokenizer without an eos token.
    """
    if not pairs:
        raise InputError("the training corpus is empty: there are no (prompt, completion) examples to train on.")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise InputError("the tokenizer has no eos token, so a completion's end cannot be taught; set eos_token.")
    return [(tokenizer(p).input_ids, tokenizer(c, add_special_tokens=False).input_ids + [eos]) for p, c in pairs]


def ground_truth_pairs(problems: Sequence[Problem]) -> list[tuple[str, str]]:
    """The corpus's own (prompt, solution) texts."""
    return [(p.prompt, p.solution) for p in problems]


def _batch(examples: Sequence[Example], index: np.ndarray, pad: int) -> dict[str, Any]:
    """Right-padded input ids, the attention mask, labels (-100 outside the completion) and the example indices."""
    import torch

    rows = [examples[i] for i in index]
    width = max(len(p) + len(c) for p, c in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for r, (p, c) in enumerate(rows):
        n = len(p) + len(c)
        ids[r, :n] = torch.tensor(p + c)
        mask[r, :n] = 1
        labels[r, len(p):n] = torch.tensor(c)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "index": torch.from_numpy(index.astype(np.int64))}


def completion_ce(logits: Any, batch: Mapping[str, Any]) -> Any:
    """Mean cross-entropy of the next-token predictions on the completion tokens."""
    import torch

    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch["labels"][:, 1:].flatten(),
                                             ignore_index=IGNORE)


def _check_examples(examples: Sequence[Example], config: LMTrainConfig, context: int) -> None:
    if not examples:
        raise InputError("the training corpus is empty: there are no examples to train on.")
    limit = min(config.max_length, context)
    for i, (p, c) in enumerate(examples):
        if not p or not c:
            raise InputError(f"training example {i} has an empty {'prompt' if not p else 'completion'}.")
        if len(p) + len(c) > limit:
            raise InputError(f"training example {i} is {len(p) + len(c)} tokens long, more than max_length "
                             f"{config.max_length} or the model's context of {context}. Raise max_length (up to the "
                             "context) or drop the long examples.")


def _lr_at(config: LMTrainConfig, step: int) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def train_causal_lm(model: Any, examples: Sequence[Example], config: LMTrainConfig, *,
                    objective: Objective | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Train ``model`` in place for ``config.steps`` steps on the completion tokens of ``examples``.

    Args:
        model: a transformers causal LM (float32).
        examples: (prompt ids, completion ids) pairs; see :data:`Example`.
        objective: the loss (see :data:`Objective`); default :func:`completion_ce`.
        progress: see :data:`Progress`.

    Returns:
        ``steps``, ``examples``, ``final_loss`` (mean of the last ``log_every`` steps), ``history`` ([step, loss]
        every ``log_every`` steps), ``step_ms_median`` (the median wall time of a step after the first five),
        ``wall_s`` and ``tokens`` (completion tokens seen).

    Raises:
        InputError: no examples, an empty or too long example, or a loss or gradient that is not finite (the step is
            not taken; the message names the step and what to change).
    """
    import torch

    _check_examples(examples, config, int(model.config.max_position_embeddings))
    loss_fn = objective or completion_ce
    pad = special_ids(model, None).pad or 0
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, 0.98))
    order: list[int] = []
    history, recent, step_s = [], [], []
    tokens = 0
    model.train()
    started = time.perf_counter()
    for step in range(config.steps):
        t0 = time.perf_counter()
        if len(order) < config.batch_size:
            order.extend(rng.permutation(len(examples)).tolist())
        index, order = np.array(order[:config.batch_size]), order[config.batch_size:]
        batch = _batch(examples, index, pad)
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(config, step)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        loss = loss_fn(logits, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        value = float(loss.detach())
        if not (math.isfinite(value) and math.isfinite(grad_norm)):
            model.eval()
            raise InputError(f"training diverged at step {step + 1} of {config.steps}: the loss is {value:.6g} and the "
                             f"gradient norm {grad_norm:.6g} at learning rate {_lr_at(config, step):.4g}. The step was "
                             f"not taken. Lower the learning rate (lr={config.lr:g}) or the loss's temperature, or "
                             "check the teacher cache for NaN or Inf values.")
        optimizer.step()
        tokens += int((batch["labels"] != IGNORE).sum())
        recent = (recent + [value])[-config.log_every:]
        step_s.append(time.perf_counter() - t0)
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            history.append([step + 1, statistics.fmean(recent)])
            if progress is not None:
                progress(step + 1, config.steps, history[-1][1])
    model.eval()
    timed = step_s[5:] or step_s
    return {"steps": config.steps, "examples": len(examples), "final_loss": history[-1][1], "history": history,
            "step_ms_median": 1000 * statistics.median(timed), "wall_s": time.perf_counter() - started,
            "tokens": tokens}


# ------------------------------------------------------------------------------------------------ generation
def _generate(model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int, batch_size: int,
              sample: Mapping[str, Any] | None = None, seed: int = 0) -> list[list[str]]:
    """Completions (decoded, up to eos, special tokens dropped) per prompt: one greedy, or ``num_return_sequences``
    sampled with the ``sample`` settings. Batched with left padding."""
    import torch

    ids = special_ids(model, tokenizer)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:  # many Llama folders have none; the mask hides what pads
        tokenizer.pad_token = tokenizer.eos_token
    out: list[list[str]] = []
    settings = dict(sample or {})
    n = int(settings.pop("num_return_sequences", 1))
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start:start + batch_size])
            enc = tokenizer(chunk, return_tensors="pt", padding=True, return_token_type_ids=False)
            torch.manual_seed(seed + start)
            with torch.no_grad():
                seqs = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=bool(sample),
                                      num_return_sequences=n, eos_token_id=ids.eos, pad_token_id=ids.pad,
                                      **({} if sample else {"temperature": None, "top_p": None, "top_k": None}),
                                      **settings)
            new = seqs[:, enc["input_ids"].shape[1]:].tolist()
            texts = [tokenizer.decode(_until_eos(row, ids.eos), skip_special_tokens=True) for row in new]
            out.extend(texts[i * n:(i + 1) * n] for i in range(len(chunk)))
    finally:
        tokenizer.padding_side = side
    return out


def _until_eos(row: list[int], eos: int | None) -> list[int]:
    return row[:row.index(eos)] if eos in row else row


def greedy_completions(model: Any, tokenizer: Any, problems: Sequence[Problem], *, max_new_tokens: int,
                       batch_size: int = 128) -> list[str]:
    """The model's greedy completion of each problem's prompt (torch, float32)."""
    return [c[0] for c in _generate(model, tokenizer, [p.prompt for p in problems], max_new_tokens=max_new_tokens,
                                    batch_size=batch_size)]


def exact_match(model: Any, tokenizer: Any, problems: Sequence[Problem], *, max_new_tokens: int) -> float:
    """Share of problems whose greedy completion's final answer is the reference answer.

    Raises:
        InputError: no problems.
    """
    if not problems:
        raise InputError("exact match of an empty problem list: pass at least one problem.")
    completions = greedy_completions(model, tokenizer, problems, max_new_tokens=max_new_tokens)
    return sum(verify(p, c) for p, c in zip(problems, completions, strict=True)) / len(problems)


def answer_agreement(completions: Sequence[str], reference: Sequence[str]) -> float:
    """Share of positions where two models' final answers are equal (both present)."""
    same = [extract_answer(a) is not None and extract_answer(a) == extract_answer(b)
            for a, b in zip(completions, reference, strict=True)]
    return sum(same) / max(1, len(same))


# ------------------------------------------------------------------------------------------------ seq-KD
def teacher_traces(teacher: Any, tokenizer: Any, problems: Sequence[Problem], *, samples_per_prompt: int = 4,
                   temperature: float = 0.7, top_p: float = 0.95, max_new_tokens: int = 64, seed: int = 0,
                   batch_size: int = 64) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Sample ``samples_per_prompt`` completions per problem from the teacher and keep those whose final answer
    verifies (the R1 recipe of keeping correct traces).

    Returns:
        The kept (prompt, completion) texts and ``{"generated", "kept", "kept_share", "prompts_covered"}``.

    Raises:
        ConfigError: a non-positive sample count, temperature or token budget, or top_p outside (0, 1].
        InputError: no problems, or no trace verified (the teacher is not good enough to teach).
    """
    if isinstance(samples_per_prompt, bool) or not isinstance(samples_per_prompt, int) or samples_per_prompt < 1:
        raise ConfigError(f"samples_per_prompt={samples_per_prompt!r}: it must be a positive integer.")
    if not (isinstance(temperature, (int, float)) and temperature > 0 and math.isfinite(temperature)):
        raise ConfigError(f"temperature={temperature!r}: it must be a positive number (lower is closer to greedy).")
    if not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ConfigError(f"top_p={top_p!r}: it must be in (0, 1].")
    if not problems:
        raise InputError("the training corpus is empty: there are no prompts for the teacher to answer.")
    samples = _generate(teacher, tokenizer, [p.prompt for p in problems], max_new_tokens=max_new_tokens,
                        batch_size=batch_size, seed=seed,
                        sample={"temperature": float(temperature), "top_p": float(top_p), "top_k": 0,
                                "num_return_sequences": samples_per_prompt})
    kept = [(p.prompt, c) for p, cs in zip(problems, samples, strict=True) for c in cs if verify(p, c)]
    covered = sum(any(verify(p, c) for c in cs) for p, cs in zip(problems, samples, strict=True))
    generated = len(problems) * samples_per_prompt
    if not kept:
        raise InputError(f"none of the teacher's {generated} sampled traces verified: it cannot teach this corpus. "
                         "Train the teacher longer, or lower the temperature.")
    return kept, {"generated": generated, "kept": len(kept), "kept_share": len(kept) / generated,
                  "prompts_covered": covered / len(problems)}


def examples_from_generations(rows: Sequence[tuple[str, str]],
                              problems: Sequence[Problem] | None = None) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """The Socratic route: a black-box teacher's (prompt, completion) rows, kept when their answer verifies against
    the problem of the same prompt; a row whose prompt is not among ``problems`` (or all, when ``problems`` is None)
    is kept unverified, and the stats say how many.

    Returns:
        The kept rows and ``{"rows", "kept", "verified", "unverified", "rejected"}``.

    Raises:
        InputError: no rows, or every row failed verification.
    """
    if not rows:
        raise InputError("the generations file has no rows: there is nothing to train on.")
    known = {p.prompt: p for p in problems or ()}
    kept, verified, rejected = [], 0, 0
    for prompt, completion in rows:
        problem = known.get(prompt)
        if problem is not None and not verify(problem, completion):
            rejected += 1
            continue
        verified += problem is not None
        kept.append((prompt, completion))
    if not kept:
        raise InputError(f"all {len(rows)} generations gave a wrong final answer for their problem; none is kept. "
                         "Check that the file answers these problems (the text after the last '####').")
    return kept, {"rows": len(rows), "kept": len(kept), "verified": verified, "unverified": len(kept) - verified,
                  "rejected": rejected}


# ------------------------------------------------------------------------------------------------ teacher cache
def teacher_cache_key(size: LlamaSize, problems: Sequence[Problem], config: LMTrainConfig, *, seed: int) -> str:
    """Hex sha256 over what determines the trained teacher: architecture, init seed, training config, the training
    texts, and the torch and transformers versions."""
    import torch
    import transformers

    corpus = hashlib.sha256(json.dumps(ground_truth_pairs(problems)).encode()).hexdigest()
    payload = {"format": _CACHE_FORMAT, "size": asdict(size), "seed": seed, "config": config.to_dict(),
               "corpus": corpus, "torch": torch.__version__, "transformers": transformers.__version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def train_teacher(train_problems: Sequence[Problem], val_problems: Sequence[Problem], config: LMTrainConfig, *,
                  size: LlamaSize = TEACHER_SIZE, seed: int = 0, max_new_tokens: int = 64,
                  cache_dir: Path | None = None, progress: Progress | None = None) -> tuple[Path, dict[str, Any]]:
    """The built-in teacher: a Llama of ``size`` trained on the ground-truth corpus, from the cache when an identical
    one was trained before (``<cache>/llm-teacher-<key>/``, an HF folder with ``edgestill-teacher.json``).

    Returns:
        The teacher's folder and ``{"cache": "hit"|"miss", "key", "val_exact_match", "train": <trainer result>}``.

    Raises:
        InputError: see :func:`train_causal_lm`.
        RuntimeFailure: a cached folder exists but cannot be read (the message names it: delete it to retrain).
    """
    key = teacher_cache_key(size, train_problems, config, seed=seed)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = root / f"llm-teacher-{key[:16]}"
    meta_path = folder / "edgestill-teacher.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("key") != key:
                raise ValueError(f"it holds key {meta.get('key')!r}")
            load_causal_lm(folder)
        except (ValueError, InputError, OSError) as exc:
            raise RuntimeFailure(f"cached teacher {folder} could not be read ({exc}); delete the folder to retrain "
                                 "it.") from None
        return folder, {**meta, "cache": "hit"}
    staging = fresh_work_dir(root, f".llm-teacher-{key[:16]}")
    make_tiny_llama(staging, seed=seed, **asdict(size))
    model, tokenizer = load_causal_lm(staging)
    train = train_causal_lm(model, encode_examples(tokenizer, ground_truth_pairs(train_problems)), config,
                            progress=progress)
    meta = {"key": key, "size": asdict(size), "seed": seed, "config": config.to_dict(), "train": train,
            "val_exact_match": exact_match(model, tokenizer, val_problems, max_new_tokens=max_new_tokens)}
    model.save_pretrained(str(staging), safe_serialization=True)
    write_json_atomic(staging / "edgestill-teacher.json", meta)
    _replace_dir(staging, folder)
    return folder, {**meta, "cache": "miss"}


# ------------------------------------------------------------------------------------------------ the entry point
def distill_lm(mode: str, *, student_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
               train_problems: Sequence[Problem], val_problems: Sequence[Problem],
               test_problems: Sequence[Problem], config: LMTrainConfig,
               teacher_dir: str | os.PathLike[str] | None = None, generations: str | os.PathLike[str] | None = None,
               make_objective: Callable[..., Objective] | None = None, samples_per_prompt: int = 4,
               temperature: float = 0.7, top_p: float = 0.95, max_new_tokens: int = 64, name: str = "student",
               progress: Progress | None = None) -> dict[str, Any]:
    """Train the student at ``student_dir`` in one mode and write it to ``out_dir/name`` as an HF folder.

    Modes: ``ground-truth`` (the corpus alone: the no-KD baseline), ``seq-kd`` (the teacher's verified sampled
    traces for the training prompts), ``socratic`` (the verified rows of the JSONL ``generations``, no teacher
    weights), ``token-kd`` (the corpus with the objective ``make_objective(examples, student=model)`` builds (the
    loaded student, for on-policy KD, which samples from it), e.g. KL to the
    teacher's cached top-k logits) and ``seq+token`` (the teacher's traces with that objective).

    Returns:
        ``mode``, ``student`` (the written folder), ``val_exact_match``, ``test_exact_match``,
        ``test_teacher_agreement`` (with a teacher), ``train`` (the trainer's result) and ``data`` (trace stats).

    Raises:
        ConfigError: an unknown mode, or a mode's missing input (a teacher, a generations file, an objective).
        InputError: a bad folder or file, two tokenizers for a token-level mode, an empty corpus, a diverged run.
    """
    from edgestill.data.reasoning import read_generations
    from edgestill.models.llm import check_same_tokenizer

    if mode not in MODES:
        raise ConfigError(f"distillation mode {mode!r} is not one of {', '.join(MODES)}.")
    needs = {"seq-kd": ["teacher_dir"], "token-kd": ["make_objective"], "seq+token": ["teacher_dir", "make_objective"],
             "socratic": ["generations"]}.get(mode, [])
    given = {"teacher_dir": teacher_dir, "make_objective": make_objective, "generations": generations}
    missing = [n for n in needs if given[n] is None]
    if missing:
        raise ConfigError(f"mode {mode!r} needs {' and '.join(missing)}.")
    if mode in ("token-kd", "seq+token") and teacher_dir is not None:
        check_same_tokenizer(teacher_dir, student_dir)
    student, tokenizer = load_causal_lm(student_dir)
    data: dict[str, Any] = {}
    pairs = ground_truth_pairs(train_problems)
    reference = None
    if teacher_dir is not None:  # used before training and released: training never holds the teacher
        teacher = load_causal_lm(teacher_dir)
        if mode in ("seq-kd", "seq+token"):
            pairs, data = teacher_traces(*teacher, train_problems, samples_per_prompt=samples_per_prompt,
                                         temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                                         seed=config.seed)
        reference = greedy_completions(*teacher, test_problems, max_new_tokens=max_new_tokens)
        del teacher
    if mode == "socratic":
        pairs, data = examples_from_generations(read_generations(generations), train_problems)
    examples = encode_examples(tokenizer, pairs)
    objective = make_objective(examples, student=student) if mode in ("token-kd", "seq+token") else None
    train = train_causal_lm(student, examples, config, objective=objective, progress=progress)
    test_completions = greedy_completions(student, tokenizer, test_problems, max_new_tokens=max_new_tokens)
    result: dict[str, Any] = {
        "mode": mode, "train": train, "data": data,
        "val_exact_match": exact_match(student, tokenizer, val_problems, max_new_tokens=max_new_tokens),
        "test_exact_match": sum(verify(p, c) for p, c in zip(test_problems, test_completions, strict=True))
        / max(1, len(test_problems))}
    if reference is not None:
        result["test_teacher_agreement"] = answer_agreement(test_completions, reference)
    out = Path(out_dir)
    staging = fresh_work_dir(out, f".{name}.staging")
    _save_student(student, Path(student_dir), staging)
    write_json_atomic(staging / "edgestill-distill.json", result)
    _replace_dir(staging, out / name)
    return {**result, "student": str(out / name)}


def _save_student(model: Any, source: Path, folder: Path) -> None:
    """The model's weights, config and generation config, and the source folder's tokenizer files."""
    model.save_pretrained(str(folder), safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, folder / name)


def _replace_dir(staging: Path, final: Path) -> None:
    """Move a complete staging folder to ``final``, removing what was there (a link is unlinked, never followed)."""
    if final.is_symlink() or final.is_file():
        final.unlink()
    elif final.is_dir():
        shutil.rmtree(final)
    os.replace(staging, final)
