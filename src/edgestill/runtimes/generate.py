"""Generative (causal) language models on a runtime: one protocol for every format's KV-cache decoder.

Torch-free, like the rest of the runner's closure: a device needs numpy and the artifact's runtime (onnxruntime-genai
or onnxruntime for ONNX, openvino(-genai) for OpenVINO, ai-edge-litert for TFLite), never ``tokenizers`` or torch.
Prompts arrive as token ids (the host tokenizes); what comes back is token ids and timings.

An LLM artifact is an :class:`~edgestill.artifact.Artifact` whose ``source["llm"]`` block (:class:`LLMInfo`) says
so. Its runtime files live in a sub-folder named like the artifact, beside the manifest; ``files`` lists every one of
them with its sha256 and ``model_file`` is the file the runtime opens (``NAME/model.onnx``, ``NAME/openvino_model.xml``,
``NAME/model.tflite``).

Each format's module registers a loader in :data:`GENERATOR_LOADERS` (``edgestill.runtimes.llm_onnx`` for
``onnx``, ``llm_openvino``, ``llm_litert``); :func:`load_generator` imports the one the artifact needs.

Measuring (the runner's generative path): :func:`time_generation` times greedy generation at fixed prompt and
generation lengths (:func:`timing_lengths`, on a :func:`synthetic_prompt`) and gives TTFT, prefill and decode tokens/s
and every decode step's time; :func:`read_eval_arrays` checks an LLM eval .npz (``prompt_ids`` int [n, L] right-padded
with 0, ``prompt_len`` [n], ``answer_ids`` [n, A] padded with -1, ``marker_ids`` [m], ``strip_ids`` [s],
``max_new_tokens`` [], optional ``teacher_answer_ids`` [n, A2]) and :func:`score_generations` scores greedy
generations by ids: a generation's answer is its ids up to the first eos, after the LAST occurrence of the marker,
stripped of ``strip_ids`` at both ends (:func:`answer_ids`); it is an exact match when it equals the stripped
reference row, and agrees with the teacher when it equals the teacher's row (over the prompts the teacher answered).
"""

from __future__ import annotations

import gc
import importlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgestill.errors import InputError

LLM_SOURCE_KEY = "llm"  # Artifact.source[LLM_SOURCE_KEY] marks a generative model

# format -> module that defines ``load(artifact, *, threads, runtime=None) -> Generator``
GENERATOR_MODULES: dict[str, str] = {
    "onnx": "edgestill.runtimes.llm_onnx",
    "openvino": "edgestill.runtimes.llm_openvino",
    "tflite": "edgestill.runtimes.llm_litert",
}


@dataclass(frozen=True, kw_only=True)
class LLMInfo:
    """What a runtime and a scorer need to know about a generative artifact (``Artifact.source["llm"]``)."""

    vocab_size: int
    context_length: int  # the most tokens (prompt + generated) the file's KV cache holds
    eos_token_id: int | None
    bos_token_id: int | None = None
    pad_token_id: int | None = None
    tokenizer: str | None = None  # path of tokenizer.json relative to the artifact folder (for the host's scoring)
    route: str = ""  # how the file was made: "onnxruntime-genai builder", "optimum-intel stateful", "litert-torch", ...
    runtime: str = ""  # what runs it: "onnxruntime-genai", "onnxruntime", "openvino-genai", "openvino", "litert"
    num_layers: int | None = None
    num_kv_heads: int | None = None
    head_dim: int | None = None
    weight_bits: int | None = None  # 32, 16, 8 or 4: what the decode estimate reads per weight

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LLMInfo:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def llm_info(artifact: Any) -> LLMInfo | None:
    """The artifact's :class:`LLMInfo`, or None when it is not a generative model."""
    block = (getattr(artifact, "source", None) or {}).get(LLM_SOURCE_KEY)
    return LLMInfo.from_dict(block) if isinstance(block, dict) else None


@dataclass(kw_only=True)
class Generation:
    """One greedy generation: the new tokens and how long each took.

    ``ttft_ms`` is from the call to the first new token (prefill of the whole prompt plus the first sampling);
    ``step_ms[i]`` is the time of new token ``i + 1`` (one decode step each). ``stopped`` is ``"eos"`` or ``"length"``.
    """

    prompt_len: int
    tokens: list[int] = field(default_factory=list)
    ttft_ms: float = 0.0
    step_ms: list[float] = field(default_factory=list)
    stopped: str = "length"


class Generator(Protocol):
    """A loaded generative artifact. Greedy decoding only (what validation, scoring and timing need)."""

    info: LLMInfo
    runtime: str  # "onnxruntime-genai", "openvino", ... (recorded with every measurement)
    runtime_version: str

    def logits(self, prompt_ids: Sequence[int], steps: int) -> Any:
        """The greedy trace's logits, float32 ``[steps + 1, vocab]``: row 0 after the prefill of ``prompt_ids``
        (its last position), row ``i`` after feeding the ``i``-th greedy token (the argmax of row ``i - 1``) through
        the KV cache. Validation compares it with torch."""
        ...

    def generate(self, prompt_ids: Sequence[int], max_new_tokens: int, *, stop_on_eos: bool = True) -> Generation:
        """Greedy decoding from ``prompt_ids``; with ``stop_on_eos=False`` exactly ``max_new_tokens`` are made (the
        timing protocol's fixed lengths). Raises InputError when the prompt plus ``max_new_tokens`` exceeds
        ``info.context_length``."""
        ...

    def close(self) -> None: ...


def check_prompt(info: LLMInfo, prompt_len: int, max_new_tokens: int) -> None:
    """Refuse a prompt that does not fit the file's context (bad input, exit 2), before anything is run."""
    if prompt_len < 1:
        raise InputError("an empty prompt cannot be generated from: pass at least one token.")
    if prompt_len + max_new_tokens > info.context_length:
        raise InputError(f"a prompt of {prompt_len} tokens plus {max_new_tokens} new tokens exceeds the model's context "
                         f"of {info.context_length} tokens; shorten the prompt or ask for fewer new tokens.")


def load_generator(artifact: Any, *, threads: int | None = None, runtime: str | None = None) -> Generator:
    """Load a generative artifact on its format's runtime (``runtime`` picks one where a format has two)."""
    info = llm_info(artifact)
    if info is None:
        raise InputError(f"{getattr(artifact, 'manifest_path', artifact)} is not a generative model (its manifest has "
                         f"no source.{LLM_SOURCE_KEY} block); bench it as a plain model.")
    module = GENERATOR_MODULES.get(str(artifact.format))
    if module is None:
        raise InputError(f"no generative runtime for format {artifact.format!r}; formats: {', '.join(GENERATOR_MODULES)}.")
    return importlib.import_module(module).load(artifact, threads=threads, runtime=runtime)


# --- timing (DESIGN "Measurement method", for a decoder) ---------------------------------------------------------------

DEFAULT_PROMPT_TOKENS = 128  # the fixed lengths tokens/s are reported at (the published tables' 128/128)
DEFAULT_GEN_TOKENS = 128
DEFAULT_GEN_REPEATS = 3  # timed generations at least; more while min_seconds is not reached
DEFAULT_GEN_WARMUP = 1


def check_lengths(prompt_tokens: int, gen_tokens: int, *, prefix: str = "") -> None:
    """Refuse timing lengths no generation can be timed at: at least 1 prompt token and 2 new tokens (the first
    comes from the prefill, the rest are the decode steps tokens/s is computed from).

    Raises:
        ConfigError: a length that is not a whole number or below its minimum; ``prefix`` (e.g. ``"bench."``) opens
            the key's name as a recipe writes it.
    """
    from edgestill.errors import ConfigError

    for key, value, low in (("prompt_tokens", prompt_tokens, 1), ("gen_tokens", gen_tokens, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{prefix}{key} must be a whole number >= {low} (the prompt is prefilled, the first new "
                              f"token comes from it, the rest are decode steps), got {value!r}; the default is 128.")


def timing_lengths(info: LLMInfo, prompt_tokens: int, gen_tokens: int) -> tuple[int, int]:
    """The prompt and generation lengths a file is timed at: the ones asked for where the context holds both, else
    the largest that fit with the same ratio (a 64-token context times 32 + 32 for 128/128).

    Raises:
        InputError: a length below its minimum (:func:`check_lengths`), or a context too short for that minimum.
    """
    check_lengths(prompt_tokens, gen_tokens)
    if prompt_tokens + gen_tokens <= info.context_length:
        return prompt_tokens, gen_tokens
    if info.context_length < 3:
        raise InputError(f"the model's context of {info.context_length} tokens cannot hold a 1-token prompt and 2 new "
                         "tokens; nothing can be timed on it.")
    prompt = min(max(1, info.context_length * prompt_tokens // (prompt_tokens + gen_tokens)), info.context_length - 2)
    return prompt, info.context_length - prompt


def synthetic_prompt(info: LLMInfo, n_tokens: int, *, seed: int = 0) -> list[int]:
    """A seeded prompt of ``n_tokens`` ids drawn uniformly from the vocabulary less its special tokens (timing only:
    a decoder's speed does not depend on what the ids mean)."""
    special = {t for t in (info.eos_token_id, info.bos_token_id, info.pad_token_id) if t is not None}
    ids = np.setdiff1d(np.arange(info.vocab_size), np.fromiter(special, dtype=np.int64, count=len(special)))
    return [int(t) for t in np.random.default_rng(seed).choice(ids if ids.size else np.arange(info.vocab_size), n_tokens)]


def time_generation(gen: Generator, prompt_ids: Sequence[int], *, gen_tokens: int, warmup: int = DEFAULT_GEN_WARMUP,
                    repeats: int = DEFAULT_GEN_REPEATS, min_seconds: float = 0.0,
                    max_seconds: float = float("inf")) -> dict[str, Any]:
    """Time greedy generation at a fixed prompt and generation length (``stop_on_eos=False``): ``warmup`` untimed
    generations, then timed ones until at least ``repeats`` were made and ``min_seconds`` passed (``max_seconds``
    stops it past ``repeats``). Init is the caller's to time (around :func:`load_generator`).

    Returns:
        ``prompt_tokens``, ``generated_tokens``; ``ttft_ms`` (median over the timed generations; prefill of the
        prompt plus the first token); ``prefill_tokens_per_s`` = prompt_tokens / ttft; ``decode_tokens_per_s``: per
        generation its decode steps (``generated_tokens - 1``) over their summed time, the median of those;
        ``samples_ms``: every decode step's time, generation after generation (the per-token decode latency the
        record's latency summary, the gate and history use); ``ttft_samples_ms``, ``decode_tokens_per_s_each``;
        ``first_ms``: the first generation's TTFT (cold caches); ``warmup_ms``: each warm-up generation's total;
        ``repeats``: timed generations made; ``timed_seconds``.

    Raises:
        InputError: bad counts, or the prompt plus ``gen_tokens`` exceeds the context (:func:`check_prompt`).
        RuntimeFailure: the generator made another number of tokens than asked or no step times (it broke the
            :class:`Generator` contract).
    """
    from edgestill.errors import RuntimeFailure

    for what, value, low in (("warmup", warmup, 0), ("repeats", repeats, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"generation {what} must be a whole number >= {low}, got {value!r}.")
    check_prompt(gen.info, len(prompt_ids), gen_tokens)
    prompt = [int(t) for t in prompt_ids]

    def one() -> Generation:
        g = gen.generate(prompt, gen_tokens, stop_on_eos=False)
        if len(g.tokens) != gen_tokens or len(g.step_ms) != gen_tokens - 1:
            raise RuntimeFailure(f"{gen.runtime} made {len(g.tokens)} tokens with {len(g.step_ms)} step times when "
                                 f"asked for exactly {gen_tokens} (stop_on_eos=False): its generator ignores the fixed "
                                 "length, so no tokens/s can be computed.")
        return g

    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # as the harness: no collector pause lands in a timed step
    try:
        first = one()
        warm = [first] + [one() for _ in range(warmup - 1)] if warmup else []
        timed: list[Generation] = [] if warmup else [first]
        t0 = time.perf_counter()
        while len(timed) < repeats or min(min_seconds, max_seconds) > time.perf_counter() - t0:
            timed.append(one())
    finally:
        if gc_was_enabled:
            gc.enable()
    ttfts = [g.ttft_ms for g in timed]
    rates = [len(g.step_ms) / (sum(g.step_ms) / 1e3) if sum(g.step_ms) > 0 else float("inf") for g in timed]
    ttft_ms = float(np.median(ttfts))
    return {
        "prompt_tokens": len(prompt),
        "generated_tokens": gen_tokens,
        "ttft_ms": ttft_ms,
        "prefill_tokens_per_s": len(prompt) / (ttft_ms / 1e3) if ttft_ms > 0 else float("inf"),
        "decode_tokens_per_s": float(np.median(rates)),
        "samples_ms": [float(s) for g in timed for s in g.step_ms],
        "ttft_samples_ms": [float(t) for t in ttfts],
        "decode_tokens_per_s_each": [float(r) for r in rates],
        "first_ms": float(first.ttft_ms),
        "warmup_ms": [float(g.ttft_ms + sum(g.step_ms)) for g in warm],
        "repeats": len(timed),
        "timed_seconds": time.perf_counter() - t0,
    }


# --- eval data and scoring (the LLM eval NPZ of edgestill.data.reasoning.eval_arrays) ----------------------------------

EVAL_REQUIRED = ("prompt_ids", "prompt_len", "answer_ids", "marker_ids", "strip_ids", "max_new_tokens")
EVAL_OPTIONAL = ("teacher_answer_ids",)
_EVAL_FIX = "Write it with edgestill.data.reasoning.eval_arrays (with the artifact's own tokenizer)."


def read_eval_arrays(path: str | Path, info: LLMInfo) -> dict[str, np.ndarray]:
    """Read an LLM eval .npz and refuse what a generative artifact cannot be scored on, before anything is loaded or
    timed: missing keys, non-integer dtypes, shapes that disagree, ids outside the vocabulary, a prompt length outside
    its row or a prompt that with ``max_new_tokens`` does not fit the context (:func:`check_prompt`).

    Raises:
        InputError: the file or one of its arrays, named with what is wrong and how to fix it.
    """
    from edgestill.runtimes.base import npz_headers, read_npz

    what = f"LLM eval data {path}"
    heads = npz_headers(path, what=f"cannot read {what}", keys=(*EVAL_REQUIRED, *EVAL_OPTIONAL))
    missing = [k for k in EVAL_REQUIRED if k not in heads]
    if missing:
        raise InputError(f"{what} lacks {missing}; a generative model's eval data holds {', '.join(EVAL_REQUIRED)} "
                         f"(and optionally {EVAL_OPTIONAL[0]}). {_EVAL_FIX}")
    odd = {k: str(d) for k, (_, d) in heads.items() if d.kind not in "iu"}
    if odd:
        raise InputError(f"{what}: {odd} are not integer arrays; token ids and lengths are whole numbers. {_EVAL_FIX}")
    ndims = {"prompt_ids": 2, "prompt_len": 1, "answer_ids": 2, "marker_ids": 1, "strip_ids": 1,
             "max_new_tokens": 0, "teacher_answer_ids": 2}  # fmt: skip
    n = heads["prompt_ids"][0][0] if len(heads["prompt_ids"][0]) == 2 else 0
    for k, (shape, _) in heads.items():
        per_prompt = k in ("prompt_ids", "prompt_len", "answer_ids", "teacher_answer_ids")
        if len(shape) != ndims[k] or (per_prompt and shape[0] != n) or (k != "strip_ids" and 0 in shape):
            raise InputError(f"{what}: {k} has shape {list(shape)}; expected {ndims[k]} dimension(s)"
                             + (f", {n} prompts first (as prompt_ids)" if per_prompt else "")
                             + " and no empty one. " + _EVAL_FIX)
    arrays = {k: a.astype(np.int64) for k, a in read_npz(path, what=f"cannot read {what}", keys=heads).items()}
    _check_eval_values(what, arrays, info)
    return arrays


def _check_eval_values(what: str, a: dict[str, np.ndarray], info: LLMInfo) -> None:
    """The value checks of :func:`read_eval_arrays`: lengths, id ranges, the context."""
    width, vocab = a["prompt_ids"].shape[1], info.vocab_size
    bad = np.flatnonzero((a["prompt_len"] < 1) | (a["prompt_len"] > width))
    if bad.size:
        raise InputError(f"{what}: prompt_len of prompt {int(bad[0])} is {int(a['prompt_len'][bad[0]])}, outside 1.."
                         f"{width} (the width of prompt_ids). {_EVAL_FIX}")
    used = np.arange(width)[None, :] < a["prompt_len"][:, None]
    ranges = {"prompt_ids": a["prompt_ids"][used], "marker_ids": a["marker_ids"], "strip_ids": a["strip_ids"]}
    for k in ("answer_ids", "teacher_answer_ids"):
        if k in a:
            ranges[k] = a[k][a[k] != -1]  # -1 pads a row
    for k, ids in ranges.items():
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
            raise InputError(f"{what}: {k} holds ids from {int(ids.min())} to {int(ids.max())}, outside the model's "
                             f"vocabulary 0..{vocab - 1}"
                             + (" (-1 pads a row)" if "answer" in k else "") + f". {_EVAL_FIX}")
    max_new = int(a["max_new_tokens"])
    if max_new < 1:
        raise InputError(f"{what}: max_new_tokens is {max_new}; greedy decoding needs at least 1 new token. {_EVAL_FIX}")
    longest = int(np.argmax(a["prompt_len"]))
    try:
        check_prompt(info, int(a["prompt_len"][longest]), max_new)
    except InputError as exc:
        raise InputError(f"{what}: prompt {longest}: {exc}") from None


def eval_generations(gen: Generator, arrays: dict[str, np.ndarray]) -> list[list[int]]:
    """Greedy generation of every eval prompt (up to ``max_new_tokens``, stopping at eos): the new tokens of each."""
    max_new = int(arrays["max_new_tokens"])
    return [gen.generate([int(t) for t in row[:length]], max_new, stop_on_eos=True).tokens
            for row, length in zip(arrays["prompt_ids"], arrays["prompt_len"])]


def _strip(ids: Sequence[int], strip: set[int]) -> tuple[int, ...]:
    lo, hi = 0, len(ids)
    while lo < hi and ids[lo] in strip:
        lo += 1
    while hi > lo and ids[hi - 1] in strip:
        hi -= 1
    return tuple(int(t) for t in ids[lo:hi])


def _row(ids: np.ndarray, strip: set[int]) -> tuple[int, ...]:
    """A -1-padded reference row as its ids, stripped."""
    end = np.flatnonzero(ids == -1)
    return _strip(list(ids[: end[0] if end.size else len(ids)]), strip)


def answer_ids(tokens: Sequence[int], marker: Sequence[int], strip: set[int], eos_token_id: int | None) -> tuple[int, ...] | None:
    """The final answer of a generation at the id level: its tokens up to the first eos, after the LAST occurrence of
    ``marker`` (the ids of "####"), with ``strip`` ids removed from both ends; None when the marker never occurs."""
    toks = [int(t) for t in tokens]
    if eos_token_id is not None and eos_token_id in toks:
        toks = toks[: toks.index(eos_token_id)]
    m = len(marker)
    starts = [i for i in range(len(toks) - m + 1) if toks[i:i + m] == list(marker)]
    return _strip(toks[starts[-1] + m:], strip) if starts else None


def score_generations(generations: Sequence[Sequence[int] | Generation], eval_arrays: dict[str, np.ndarray], *,
                      eos_token_id: int | None = None) -> dict[str, Any]:
    """Exact match and teacher agreement of greedy generations (one per eval prompt, in order), by token ids.

    Exact match: a generation's :func:`answer_ids` equals the reference row of ``answer_ids`` (stripped); a generation
    without the marker never matches. Teacher agreement (when ``teacher_answer_ids`` is there): over the prompts the
    teacher answered (a row of -1 only is a teacher completion without the marker: nothing to agree with), the share
    whose answer equals the teacher's.

    Returns:
        ``{"exact_match": share 0..1, "n": prompts, "teacher_agreement": share or None (no teacher answers),
        "teacher_n": prompts the teacher answered or None}``.

    Raises:
        InputError: the number of generations differs from the number of prompts.
    """
    refs = np.asarray(eval_arrays["answer_ids"])
    if len(generations) != len(refs):
        raise InputError(f"{len(generations)} generations for {len(refs)} eval prompts; score one per prompt, in order.")
    marker = [int(t) for t in np.asarray(eval_arrays["marker_ids"]).ravel()]
    strip = {int(t) for t in np.asarray(eval_arrays["strip_ids"]).ravel()}
    answers = [answer_ids(g.tokens if isinstance(g, Generation) else g, marker, strip, eos_token_id) for g in generations]
    exact = [a is not None and a == _row(r, strip) for a, r in zip(answers, refs)]
    teacher = eval_arrays.get("teacher_answer_ids")
    agree = None if teacher is None else [a == _row(t, strip) for a, t in zip(answers, np.asarray(teacher))
                                          if (np.asarray(t) != -1).any()]
    return {"exact_match": float(np.mean(exact)) if exact else 0.0, "n": len(exact),
            "teacher_agreement": float(np.mean(agree)) if agree else None,
            "teacher_n": None if agree is None else len(agree)}
