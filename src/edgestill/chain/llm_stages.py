"""The stages of a generate recipe (``task: generate``): data, teacher, distill, export, evaluate.

The engine (:func:`edgestill.chain.run.run_recipe`) runs them with the same resumption, checks, bench, results store
and report as the other tasks. Models travel between stages as Hugging Face causal-LM folders: the teacher's (given,
or built from ``teacher.llama`` and trained here on the corpus, cached by size, corpus and schedule) and the
student's, saved under the run's ``checkpoints/student/`` with the teacher's tokenizer.

Held-out problems score everything: the validation prompts check each exported file against torch (greedy tokens,
logits), the test problems give each artifact's exact match and agreement with the teacher on its own runtime, from
the LLM eval arrays (``checkpoints/test-eval.npz``) that also travel to remote devices.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgestill.chain.recipe import Recipe
from edgestill.errors import InputError

Progress = Callable[..., None]
STUDENT_DIR = "checkpoints/student"
TEST_EVAL = "checkpoints/test-eval.npz"  # the test problems as LLM eval arrays, with the teacher's answers
VAL_EVAL = "checkpoints/val-eval.npz"  # the validation prompts every exported file is checked on
TOPK_CACHE = "checkpoints/teacher-topk"
ARTIFACTS = "artifacts"


@dataclass(frozen=True)
class LLMData:
    """A generate recipe's problems: train, val and test (disjoint), and a content hash."""

    name: str
    train: list[Any]
    val: list[Any]
    test: list[Any]
    sha256: str

    def __len__(self) -> int:
        return len(self.train) + len(self.val) + len(self.test)


def load_llm_data(recipe: Recipe) -> LLMData:
    """The recipe's corpus: the built-in generated problems, or a JSONL of prompt/completion rows whose completions
    end with ``#### ANSWER`` (split into train/val/test by ``data.seed``).

    Raises:
        InputError: an unreadable or empty JSONL, rows without a final answer, fewer rows than val + test + 1.
    """
    from edgestill.data.reasoning import Problem, extract_answer, read_generations, splits

    d = recipe.data
    if d.builtin:
        parts = splits(d.problems, d.val, d.test, seed=d.seed)
        name = f"builtin reasoning ({d.problems} problems, seed {d.seed})"
    else:
        try:
            rows = read_generations(d.path)
        except InputError as exc:
            raise InputError(f"data.corpus: {exc}") from None
        unanswered = [i + 1 for i, (_, c) in enumerate(rows) if extract_answer(c) is None]
        if unanswered:
            raise InputError(f"data.corpus {d.path}: {len(unanswered)} row(s) (first: row {unanswered[0]}) have no final "
                             "answer after '####' in their completion, so exact match cannot score them. End each "
                             "completion with '#### ANSWER'.")
        if len(rows) < d.val + d.test + 1:
            raise InputError(f"data.corpus {d.path} holds {len(rows)} rows, but data.val + data.test hold out "
                             f"{d.val + d.test} and training needs at least one more. Add rows or lower data.val/test.")
        problems = [Problem(prompt=p, solution=c, answer=extract_answer(c)) for p, c in rows]
        random.Random(d.seed).shuffle(problems)
        n_train = min(d.problems, len(problems) - d.val - d.test)
        parts = {"train": problems[:n_train], "val": problems[n_train:n_train + d.val],
                 "test": problems[n_train + d.val:n_train + d.val + d.test]}
        name = f"{d.path.name} ({len(rows)} rows)"
    digest = hashlib.sha256(json.dumps({k: [(p.prompt, p.solution) for p in v] for k, v in parts.items()},
                                       sort_keys=True).encode()).hexdigest()
    return LLMData(name=name, train=parts["train"], val=parts["val"], test=parts["test"], sha256=digest)


def data_summary(recipe: Recipe, data: LLMData) -> dict[str, Any]:
    """The report's data section for a generate recipe."""
    return {"name": data.name, "task": recipe.task, "n_train": len(data.train), "n_val": len(data.val),
            "n_test": len(data.test), "sha256": data.sha256, "max_new_tokens": recipe.data.max_new_tokens,
            "input_shape": None, "num_classes": None, "class_names": [], "augment": "none", "labelled": True}


def _train_config(section: Any, max_length: int) -> Any:
    from edgestill.compress.distill.llm import LMTrainConfig

    return LMTrainConfig(steps=section.steps, batch_size=section.batch_size, lr=section.lr, seed=section.seed,
                         max_length=max_length)


def _size(arch: Any) -> Any:
    from edgestill.compress.distill.llm import LlamaSize

    a = arch.to_dict()
    return LlamaSize(layers=a["layers"], hidden=a["hidden"], heads=a["heads"], kv_heads=a["kv_heads"],
                     intermediate=a["intermediate"], context_length=a["context_length"])


def teacher_stage(recipe: Recipe, data: LLMData, log: Callable[[str], None], progress: Progress, *,
                  cache_dir: Path) -> tuple[Path | None, dict[str, Any]]:
    """(the teacher's folder, or None for a black-box teacher; info for the report). A ``llama`` teacher is trained on
    the ground-truth corpus and cached by size, corpus and schedule; an ``hf`` teacher is used as it is."""
    from edgestill.compress.distill.llm import exact_match, train_teacher
    from edgestill.models.llm import load_causal_lm

    t, n_new = recipe.teacher, recipe.data.max_new_tokens
    if t.black_box:
        return None, {"source": "generations", "path": str(t.generations), "black_box": True}
    if t.llama is not None:
        size = _size(t.llama)
        log(f"teacher: a Llama {size.layers}x{size.hidden} trained on the corpus ({t.train.steps} steps; cached)")
        folder, meta = train_teacher(data.train, data.val, _train_config(t.train, size.context_length), size=size,
                                     seed=t.train.seed, max_new_tokens=n_new, cache_dir=Path(cache_dir),
                                     progress=_steps(progress))
        info = {"source": "llama", "model": f"llama {size.layers}x{size.hidden}", "kwargs": t.llama.to_dict(),
                "cache": meta.get("cache"), "val_exact_match": meta.get("val_exact_match")}
    else:
        folder, info = Path(t.hf), {"source": "hf", "path": str(t.hf)}
    model, tokenizer = load_causal_lm(folder, trust_checkpoint=t.trust_checkpoint)
    info.update(parameters=int(sum(p.numel() for p in model.parameters())),
                test_exact_match=exact_match(model, tokenizer, data.test, max_new_tokens=n_new))
    info["test_accuracy"] = info["test_exact_match"]
    return folder, info


def _steps(progress: Progress) -> Callable[..., None]:
    """The trainers' progress (step, total, loss) as the engine's (epoch, step, total, loss, acc)."""

    def report(step: int, total: int, loss: float = float("nan"), *_: Any) -> None:
        progress(1, step, total, loss, float("nan"))

    return report


def init_student(recipe: Recipe, teacher_dir: Path | None, work: Path) -> Path:
    """The student's starting folder: a ``llama`` built with the teacher's tokenizer (the built-in character one for a
    black-box teacher), or the recipe's ``hf`` folder."""
    from edgestill.models.llm import make_tiny_llama

    s = recipe.student
    if s.hf is not None:
        return Path(s.hf)
    size = _size(s.llama)
    return make_tiny_llama(work, layers=size.layers, hidden=size.hidden, heads=size.heads, kv_heads=size.kv_heads,
                           intermediate=size.intermediate, context_length=size.context_length, seed=recipe.distill.seed,
                           tokenizer_dir=teacher_dir)


def distill_stage(recipe: Recipe, data: LLMData, teacher_dir: Path | None, out: Path, log: Callable[[str], None],
                  progress: Progress) -> tuple[Path, dict[str, Any]]:
    """Train the student by the recipe's method into ``checkpoints/student/``; token-level KD reads the teacher's
    top-k logits from an offline cache (``checkpoints/teacher-topk/``) built once, so the teacher is not in memory
    while the student trains."""
    from edgestill.artifact import sha256_file
    from edgestill.compress.distill.llm import distill_lm
    from edgestill.models.llm import load_causal_lm
    from edgestill.outdir import fresh_work_dir

    d = recipe.distill
    method = {"ground-truth": "ground-truth", "seq-kd": "seq-kd", "token-kd": "token-kd", "seq+token": "seq+token",
              "socratic": "socratic"}[d.method]
    work = fresh_work_dir(out / "checkpoints", ".student-init")
    start = init_student(recipe, teacher_dir, work)
    context = _size(recipe.student.llama).context_length if recipe.student.llama is not None else 2048
    make_objective = _objective(recipe, teacher_dir, out, log) if d.uses_cache else None
    log(f"distill: {d.method}, {d.steps} steps")
    result = distill_lm(method, student_dir=start, out_dir=out / "checkpoints", train_problems=data.train,
                        val_problems=data.val, test_problems=data.test,
                        config=_train_config(d, context), teacher_dir=teacher_dir,
                        generations=recipe.teacher.generations, make_objective=make_objective,
                        samples_per_prompt=d.samples_per_prompt, temperature=d.sample_temperature,
                        max_new_tokens=recipe.data.max_new_tokens, name="student", progress=_steps(progress))
    shutil.rmtree(work, ignore_errors=True)  # this stage's own fresh folder
    student = Path(result["student"])
    model, _ = load_causal_lm(student)

    info = {"model": recipe.student.llama and f"llama {recipe.student.llama.layers}x{recipe.student.llama.hidden}"
            or str(recipe.student.hf), "method": d.method, "steps": d.steps,
            "test_exact_match": result.get("test_exact_match"), "val_exact_match": result.get("val_exact_match"),
            "test_teacher_agreement": result.get("test_teacher_agreement"), "traces": result.get("data") or {},
            "train": {k: v for k, v in (result.get("train") or {}).items() if k != "losses"},
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "sha256": sha256_file(student / "model.safetensors")}
    info["test_accuracy"] = info["test_exact_match"]
    return student, info


def _objective(recipe: Recipe, teacher_dir: Path | None, out: Path, log: Callable[[str], None]) -> Callable[..., Any]:
    """``make_objective(examples, student)`` for token-level KD: the teacher's top-k cache over the training
    sequences, built once (reused when it matches; rebuilt for another teacher or corpus), then the KD objective
    reading only that cache. With ``distill.on_policy`` the teacher stays loaded and scores the student's samples."""
    from edgestill.compress.distill.llm_cache import build_topk_cache, tokenizer_sha256
    from edgestill.compress.distill.llm_kd import TokenKDObjective
    from edgestill.models.llm import load_causal_lm

    d = recipe.distill

    def make(examples: list[Any], student: Any) -> Any:
        teacher, _ = load_causal_lm(teacher_dir, trust_checkpoint=recipe.teacher.trust_checkpoint)
        if d.on_policy > 0:  # sequences sampled from the student are scored by the loaded teacher: no cache
            log(f"token-level KD with the teacher loaded, {d.on_policy:.0%} of the batches on-policy")
            return TokenKDObjective(teacher, kind=d.kind, beta=d.beta, temperature=d.temperature, alpha=d.alpha,
                                    on_policy=d.on_policy, student=student, max_new_tokens=recipe.data.max_new_tokens,
                                    seed=d.seed)
        log(f"teacher top-{d.top_k} logit cache over {len(examples)} training sequences")
        cache = build_topk_cache(teacher, [list(p) + list(c) for p, c in examples], k=d.top_k, path=out / TOPK_CACHE,
                                 tokenizer_sha256=tokenizer_sha256(Path(teacher_dir) / "tokenizer.json"), replace=True)
        del teacher  # the student trains from the cache alone
        return TokenKDObjective(cache, kind=d.kind, beta=d.beta, temperature=d.temperature, alpha=d.alpha)

    return make


def eval_files(recipe: Recipe, data: LLMData, student_dir: Path, teacher_dir: Path | None, out: Path) -> None:
    """Write the validation and test problems as LLM eval arrays (the test ones with the teacher's greedy answers)."""
    from edgestill.compress.distill.llm import greedy_completions
    from edgestill.data.reasoning import eval_arrays
    from edgestill.models.llm import load_causal_lm
    from edgestill.outdir import replacing

    _, tokenizer = load_causal_lm(student_dir)
    n_new = recipe.data.max_new_tokens
    teacher_answers = None
    if teacher_dir is not None:
        teacher, t_tok = load_causal_lm(teacher_dir, trust_checkpoint=recipe.teacher.trust_checkpoint)
        teacher_answers = greedy_completions(teacher, t_tok, data.test, max_new_tokens=n_new)
    for rel, problems, answers in ((VAL_EVAL, data.val, None), (TEST_EVAL, data.test, teacher_answers)):
        arrays = eval_arrays(problems, tokenizer, max_new_tokens=n_new, teacher_completions=answers)
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
            np.savez(f, **arrays)


def export_stage(recipe: Recipe, student_dir: Path, out: Path, progress: Progress) -> list[dict[str, Any]]:
    """Every format x precision of the export section, each validated against torch on the validation prompts
    (fp32: greedy tokens identical; weight-only: token agreement and KL to the fp32 file). One row per cell."""
    from edgestill.chain.llm_export import export_llm

    e = recipe.llm_export
    art_dir = out / ARTIFACTS
    result = export_llm(student_dir, art_dir, formats=e.formats, precisions=e.precisions, name="student",
                        eval_data=out / VAL_EVAL, n_prompts=len(np.load(out / VAL_EVAL)["prompt_len"]),
                        steps=e.validate_tokens, overwrite=True,
                        progress=lambda i, n, label="": progress(i, n, label))
    rows = []
    for cell in result.cells:
        c = cell.to_dict()
        manifest = c.get("manifest")
        rows.append({**c, "artifact": c["name"],
                     "manifest": None if manifest is None else str(Path(manifest).resolve().relative_to(out.resolve())),
                     "passed": bool(c.get("passed"))})
    return rows


def evaluate_stage(rows: list[dict[str, Any]], out: Path, student_info: dict[str, Any], progress: Progress) -> None:
    """Score every published artifact on its own runtime over the test problems (in place on ``rows``): greedy exact
    match (and its drop vs the torch student, in points) and agreement with the teacher's answers."""
    from edgestill.artifact import Artifact
    from edgestill.runtimes.generate import eval_generations, load_generator, read_eval_arrays, score_generations

    todo = [r for r in rows if r["passed"]]
    for i, row in enumerate(todo):
        progress(i, len(todo), row["artifact"])
        art = Artifact.load(out / row["manifest"])
        gen = load_generator(art, threads=1)
        try:
            arrays = read_eval_arrays(out / TEST_EVAL, gen.info)
            scores = score_generations(eval_generations(gen, arrays), arrays, eos_token_id=gen.info.eos_token_id)
        finally:
            gen.close()
        em = scores["exact_match"]
        row.update(runtime=gen.runtime, n_test=scores["n"], test_accuracy=em, accuracy_metric="exact_match",
                   accuracy_drop_points=round(100 * (student_info["test_exact_match"] - em), 2),
                   teacher_top1_agreement=scores.get("teacher_agreement"), teacher_kl=None)
    progress(len(todo), len(todo), "done")
