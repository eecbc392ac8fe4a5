"""The built-in "reasoning" corpus: multi-step arithmetic with worked steps and a verifiable final answer.

A problem reads ``"Q: (17+5)*3-4 ?\\nA:"`` and its completion ``" 17+5=22; 22*3=66; 66-4=62 #### 62"`` (the model
then emits its eos token). Like human-written solutions, the ground truth is multi-modal: each problem is solved in
one of several equivalent styles drawn at random (operands in written or swapped order, or the product distributed
over the sum), so the corpus is a noisier target than one teacher's consistent traces; that is the classic reason
sequence-level distillation helps a small student.

Everything here is deterministic by seed and torch-free (:func:`eval_arrays` only calls the tokenizer object it is
given). :func:`eval_arrays` builds the arrays that travel to a device (the LLM eval NPZ); the id-level scoring of
those arrays lives in :mod:`edgestill.runtimes.generate`.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgestill.errors import ConfigError, InputError
from edgestill.limits import read_small_text

MARKER = "####"
"""Separates the worked steps from the final answer; exact match compares the text after its last occurrence."""
GENERATIONS_MAX_BYTES = 256 << 20
"""A generations file past this is refused unread: 256 MiB is about a million short reasoning traces."""
_WHITESPACE = (" ", "\n", "\t", "\r")


@dataclass(frozen=True, kw_only=True)
class Difficulty:
    """Operand ranges (inclusive): ``a``, ``b`` the sum's terms, ``c`` the multiplier, ``d`` the last term."""

    ab: tuple[int, int]
    c: tuple[int, int]
    d: tuple[int, int]


DIFFICULTIES: dict[str, Difficulty] = {
    "easy": Difficulty(ab=(1, 9), c=(2, 5), d=(1, 9)),
    "default": Difficulty(ab=(2, 15), c=(2, 6), d=(1, 20)),
    "hard": Difficulty(ab=(2, 39), c=(2, 9), d=(1, 50)),
}
"""Sizes of the built-in task. Measured with perf/llm_chain.py (one thread, a busy 2-core machine): the 0.8M-parameter
4-layer teacher reached 87.0% test exact match on "easy" (2000 problems, 800 steps of 32) and 83.3% on "default"
(3000 problems, 1200 steps), while the 2-layer, 64-wide student on the ground truth alone stayed at 6.3% and 3.0%."""


@dataclass(frozen=True)
class Problem:
    """One problem: the prompt, a worked solution (the completion text, without eos) and the final answer."""

    prompt: str
    solution: str
    answer: str


def _steps(template: str, a: int, b: int, c: int, d: int, style: int) -> list[str]:
    """The worked steps of one problem in one of three equivalent styles (0: as written, 1: operands swapped,
    2: the product distributed over the sum, or the last two terms grouped)."""
    if template == "sum-times":  # (a+b)*c-d
        s, t = a + b, (a + b) * c
        return [[f"{a}+{b}={s}", f"{s}*{c}={t}", f"{t}-{d}={t - d}"],
                [f"{b}+{a}={s}", f"{c}*{s}={t}", f"{t}-{d}={t - d}"],
                [f"{a}*{c}={a * c}", f"{b}*{c}={b * c}", f"{a * c}+{b * c}={t}", f"{t}-{d}={t - d}"]][style]
    if template == "diff-times":  # (a-b)*c+d
        s, t = a - b, (a - b) * c
        return [[f"{a}-{b}={s}", f"{s}*{c}={t}", f"{t}+{d}={t + d}"],
                [f"{a}-{b}={s}", f"{c}*{s}={t}", f"{d}+{t}={t + d}"],
                [f"{a}*{c}={a * c}", f"{b}*{c}={b * c}", f"{a * c}-{b * c}={t}", f"{t}+{d}={t + d}"]][style]
    t = a * c  # a*c+b-d (b >= d)
    return [[f"{a}*{c}={t}", f"{t}+{b}={t + b}", f"{t + b}-{d}={t + b - d}"],
            [f"{c}*{a}={t}", f"{b}+{t}={t + b}", f"{t + b}-{d}={t + b - d}"],
            [f"{a}*{c}={t}", f"{b}-{d}={b - d}", f"{t}+{b - d}={t + b - d}"]][style]


_EXPRESSIONS: dict[str, Callable[[int, int, int, int], str]] = {
    "sum-times": lambda a, b, c, d: f"({a}+{b})*{c}-{d}",
    "diff-times": lambda a, b, c, d: f"({a}-{b})*{c}+{d}",
    "times-plus": lambda a, b, c, d: f"{a}*{c}+{b}-{d}",
}


def _draw(rng: random.Random, level: Difficulty) -> tuple[str, int, int, int, int]:
    template = rng.choice(list(_EXPRESSIONS))
    a, b = rng.randint(*level.ab), rng.randint(*level.ab)
    c, d = rng.randint(*level.c), rng.randint(*level.d)
    if template == "diff-times":
        a, b = max(a, b) + 1, min(a, b)  # a > b: the difference is positive
    elif template == "sum-times":
        d = min(d, (a + b) * c)
    else:
        b, d = max(b, d), min(b, d)  # b >= d: every intermediate is non-negative
    return template, a, b, c, d


def generate_problems(n: int, *, seed: int, difficulty: str = "default") -> list[Problem]:
    """``n`` distinct problems, the same for the same arguments; each solved in a style drawn at random.

    Args:
        n: how many.
        seed: the random seed.
        difficulty: a name in :data:`DIFFICULTIES`.

    Raises:
        ConfigError: ``n`` or ``seed`` not a non-negative integer, an unknown difficulty, or more problems asked than
            the difficulty has.
    """
    for key, value in (("n", n), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{key}={value!r}: it must be a non-negative integer.")
    if difficulty not in DIFFICULTIES:
        raise ConfigError(f"difficulty {difficulty!r} is not one of {', '.join(DIFFICULTIES)}.")
    level = DIFFICULTIES[difficulty]
    rng = random.Random(f"reasoning/{difficulty}/{seed}")
    seen: set[str] = set()
    problems: list[Problem] = []
    repeats = 0  # draws in a row that gave a problem already seen: the space is (nearly) exhausted
    while len(problems) < n:
        template, a, b, c, d = _draw(rng, level)
        expression = _EXPRESSIONS[template](a, b, c, d)
        style = rng.randrange(3)
        if expression in seen:
            repeats += 1
            if repeats > 2000:
                raise ConfigError(f"difficulty {difficulty!r} has too few distinct problems for {n}; ask for "
                                  "fewer or use a harder difficulty.")
            continue
        repeats = 0
        seen.add(expression)
        steps = _steps(template, a, b, c, d, style)
        answer = steps[-1].rsplit("=", 1)[1]
        problems.append(Problem(prompt=f"Q: {expression} ?\nA:", solution=f" {'; '.join(steps)} {MARKER} {answer}",
                                answer=answer))
    return problems


def splits(n_train: int, n_val: int, n_test: int, *, seed: int,
           difficulty: str = "default") -> dict[str, list[Problem]]:
    """Disjoint train/val/test problem lists from one seed (no prompt appears in two of them)."""
    everything = generate_problems(n_train + n_val + n_test, seed=seed, difficulty=difficulty)
    return {"train": everything[:n_train], "val": everything[n_train:n_train + n_val],
            "test": everything[n_train + n_val:]}


def extract_answer(text: str) -> str | None:
    """The final answer of a completion: the text after the last ``####``, stripped; None without one (or empty)."""
    if MARKER not in text:
        return None
    answer = text.rsplit(MARKER, 1)[1].strip()
    return answer or None


def verify(problem: Problem, completion: str) -> bool:
    """Whether ``completion``'s final answer is the problem's answer (the steps are not checked)."""
    return extract_answer(completion) == problem.answer


def read_generations(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """The (prompt, completion) pairs of a JSONL file of a black-box teacher's generations (the Socratic route).

    Each non-blank line is a JSON object with string fields ``prompt`` and ``completion`` (other fields ignored).

    Raises:
        InputError: unreadable, larger than :data:`GENERATIONS_MAX_BYTES`, not UTF-8 (the byte and line named), a line
            that is not JSON or not an object, a missing or non-string field (the line named), no rows at all.
    """
    text = read_small_text(path, max_bytes=GENERATIONS_MAX_BYTES, what="generations",
                           typical="one JSON object per line, a few hundred bytes each")
    rows: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"generations {path} line {number} is not valid JSON ({exc.msg} at column {exc.colno}); "
                             'each line must be one object like {"prompt": "...", "completion": "..."}.') from None
        if not isinstance(row, dict):
            raise InputError(f"generations {path} line {number} holds a JSON {type(row).__name__}, not an object with "
                             '"prompt" and "completion".')
        for field in ("prompt", "completion"):
            if field not in row:
                raise InputError(f'generations {path} line {number} has no "{field}" field (it has '
                                 f"{', '.join(map(repr, row)) or 'none'}); each line needs \"prompt\" and "
                                 '"completion" strings.')
            if not isinstance(row[field], str):
                raise InputError(f'generations {path} line {number}: "{field}" is a {type(row[field]).__name__}, '
                                 "not a string.")
        rows.append((row["prompt"], row["completion"]))
    if not rows:
        raise InputError(f"generations {path} has no rows; it needs one JSON object per line with \"prompt\" and "
                         '"completion" strings.')
    return rows


def _ids(tokenizer: Any, text: str, *, special: bool) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=special).ids)


def _after_marker(ids: list[int], marker: list[int]) -> list[int] | None:
    """The ids after the last occurrence of ``marker`` in ``ids``, or None when it does not occur."""
    for start in range(len(ids) - len(marker), -1, -1):
        if ids[start:start + len(marker)] == marker:
            return ids[start + len(marker):]
    return None


def _padded(rows: Sequence[Sequence[int]], fill: int) -> np.ndarray:
    out = np.full((len(rows), max((len(r) for r in rows), default=0) or 1), fill, dtype=np.int32)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def eval_arrays(problems: Sequence[Problem], tokenizer: Any, *, max_new_tokens: int,
                teacher_completions: Sequence[str] | None = None,
                context_length: int | None = None) -> dict[str, np.ndarray]:
    """The LLM eval arrays of ``problems`` (what travels to a device; see the module docstring of
    :mod:`edgestill.runtimes.generate` for how they are scored).

    ``prompt_ids`` are the prompts encoded with the tokenizer's special tokens (a bos first), right-padded with 0;
    ``answer_ids`` the reference completion's ids after the marker's, from tokenizing the whole completion, padded
    with -1; ``teacher_answer_ids`` the same of the teacher's completions (a row of -1 where one has no marker).

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` or a transformers fast tokenizer (its backend is used).
        max_new_tokens: the generation budget a device uses.
        teacher_completions: the teacher's greedy completions, one per problem.
        context_length: the model's context; a prompt that does not fit with ``max_new_tokens`` is refused.

    Raises:
        InputError: no problems (an empty corpus), a teacher list of another length, a prompt that does not fit the
            context, a tokenizer that does not encode the marker inside a reference completion.
        ConfigError: ``max_new_tokens`` not a positive integer.
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens={max_new_tokens!r}: it must be a positive integer.")
    if not problems:
        raise InputError("the evaluation corpus is empty: pass at least one problem.")
    if teacher_completions is not None and len(teacher_completions) != len(problems):
        raise InputError(f"{len(teacher_completions)} teacher completions for {len(problems)} problems; pass one per "
                         "problem.")
    tok = getattr(tokenizer, "backend_tokenizer", tokenizer)
    marker = _ids(tok, MARKER, special=False)
    prompts = [_ids(tok, p.prompt, special=True) for p in problems]
    if context_length is not None:
        for i, ids in enumerate(prompts):
            if len(ids) + max_new_tokens > context_length:
                raise InputError(f"problem {i} ({problems[i].prompt!r}) has a prompt of {len(ids)} tokens; with "
                                 f"{max_new_tokens} new tokens it exceeds the model's context of {context_length}. "
                                 "Shorten the prompts or lower max_new_tokens.")
    answers = []
    for p in problems:
        after = _after_marker(_ids(tok, p.solution, special=False), marker)
        if after is None:
            raise InputError(f"the tokenizer does not encode the marker {MARKER!r} as the same ids inside the "
                             f"completion {p.solution!r}; exact match needs a tokenizer that keeps it apart.")
        answers.append(after)
    arrays = {"prompt_ids": _padded(prompts, 0), "prompt_len": np.array([len(p) for p in prompts], dtype=np.int32),
              "answer_ids": _padded(answers, -1), "marker_ids": np.array(marker, dtype=np.int32),
              "strip_ids": np.array(sorted({i for w in _WHITESPACE for i in _ids(tok, w, special=False)
                                            if len(_ids(tok, w, special=False)) == 1}), dtype=np.int32),
              "max_new_tokens": np.array(max_new_tokens, dtype=np.int32)}
    if teacher_completions is not None:
        arrays["teacher_answer_ids"] = _padded(
            [_after_marker(_ids(tok, c, special=False), marker) or [] for c in teacher_completions], -1)
    return arrays
