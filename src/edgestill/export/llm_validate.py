"""Strict validation of a generative (KV-cache) artifact against its reference: greedy tokens, logits, KL.

Torch-free and pure numpy: the caller computes the reference traces (torch's, and for a weight-only file also the fp32
file's on the same runtime) and passes arrays; this module runs the artifact's :class:`~edgestill.runtimes.generate.
Generator` on the same prompts and judges it.

What is compared, per prompt, over a greedy trace of ``steps`` decode steps (``steps + 1`` logits rows: the prefill's
last position, then one row per fed-back token):

- **Float files (fp32, fp16)**: the greedy tokens must be identical to the reference's on every prompt, both from
  ``Generator.logits`` (argmax of each row) and from ``Generator.generate`` stopping at eos (the path scoring uses;
  up to and including the reference's first eos: what a runtime does after eos is its own affair). A
  mismatch fails and names the prompt, the first differing step, both tokens and the reference's top-1 - top-2 logit
  margin there, so a near-tie is visible. The logits rows up to and including the first divergence (where both traces
  still saw the same tokens) must lie within ``atol + rtol * max|reference|`` and have a cosine of at least
  ``min_cosine`` per row.
- **Weight-only files (int8-weight, int4-weight)**: quantized weights change logits by design, so tokens may differ.
  ``token_agreement`` is the mean over prompts of the share of positions equal before the first divergence;
  ``sequence_match`` the share of prompts whose whole trace is identical; ``mean_kl`` the mean over the compared rows
  (those before and at the first divergence) of KL(reference || file) of the softmax distributions, in nats. The
  reference is the fp32 file of the same format where the caller has one (that isolates the quantization's error
  from the conversion's), else torch.

Default budgets and why:

- fp32: ``atol = rtol = 1e-3`` and cosine >= 0.9999 per row, as :mod:`edgestill.export.validate` uses for other
  models: runtimes reorder float sums (differences of 1e-7..1e-5 are normal) while a wrong layer, a stale KV cache
  entry or a wrong position gives differences of order 0.1 and more. On the trained model below the fp32 files of all
  three formats gave torch's greedy tokens on 16 of 16 prompts x 40 steps, logits within 2e-5 to 4e-5.
- fp16: ``atol = rtol = 1e-2`` and cosine >= 0.999 (fp16 keeps about three decimal digits).
- weight-only: token agreement >= 0.8 and mean KL <= 0.05 nats. Measured on a trained 2-layer, 128-wide Llama
  (the built-in reasoning corpus, 16 of its prompts, 40 decode steps), each file against its format's fp32 file:

  ============  ==========================  ==========================  ==========================
  file          ONNX (MatMulNBits, blk 32)  OpenVINO (NNCF)             TFLite (ai-edge-quantizer)
  ============  ==========================  ==========================  ==========================
  int8-weight   agree 0.997, KL 0.00035     agree 1.000, KL 0.00031     agree 0.886, KL 0.00087
  int4-weight   agree 0.518, KL 0.021       agree 0.636, KL 0.033       agree 0.639, KL 0.034
  ============  ==========================  ==========================  ==========================

  Agreement is the binding criterion: 0.8 passes every int8 file and rejects every int4 file of this small model,
  whose greedy answers diverge half-way on average (a flip at step 2 of a 41-token trace costs that prompt 95%, so
  one early flip in 16 prompts already costs 0.06). The KL bound catches a file whose distributions are off even
  where the argmax survives (a wrong scale or zero point gives 1 nat and more); 0.05 nats is the divergence of a top
  token moved from p = 0.5 by about 0.2. A near-tie at the reference (a random-weight model has nothing but) flips
  tokens under any quantization, so the agreement of an untrained model says nothing: tests pass budgets of their
  own. Both are stated per file in the result and can be changed (:class:`LLMBudgets`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgestill.artifact import Precision
from edgestill.errors import ConfigError, InputError, RuntimeFailure

_FLOAT_PRECISIONS = (Precision.FP32.value, Precision.FP16.value)
_WEIGHT_ONLY = (Precision.INT8_WEIGHT.value, Precision.INT4_WEIGHT.value)
_SHOWN_DIVERGENCES = 8  # first divergences listed in a result (all prompts are counted)


@dataclass(frozen=True, kw_only=True)
class FloatBudget:
    """Logits bounds for a float file (its greedy tokens must be identical in any case)."""

    atol: float
    rtol: float
    min_cosine: float


@dataclass(frozen=True, kw_only=True)
class LLMBudgets:
    """What a generative file must meet, per kind of precision (see the module docstring for the defaults' reasons).

    Raises:
        ConfigError: a bound that is not a finite number in its range.
    """

    fp32: FloatBudget = field(default_factory=lambda: FloatBudget(atol=1e-3, rtol=1e-3, min_cosine=0.9999))
    fp16: FloatBudget = field(default_factory=lambda: FloatBudget(atol=1e-2, rtol=1e-2, min_cosine=0.999))
    min_token_agreement: float = 0.8
    max_mean_kl: float = 0.05

    def __post_init__(self) -> None:
        for key, budget in (("fp32", self.fp32), ("fp16", self.fp16)):
            if not isinstance(budget, FloatBudget):
                raise ConfigError(f"budgets.{key} must be a FloatBudget(atol=..., rtol=..., min_cosine=...), got "
                                  f"{type(budget).__name__}.")
            for name in ("atol", "rtol"):
                _check_bound(f"budgets.{key}.{name}", getattr(budget, name), 0.0, math.inf)
            _check_bound(f"budgets.{key}.min_cosine", budget.min_cosine, -1.0, 1.0)
        _check_bound("budgets.min_token_agreement", self.min_token_agreement, 0.0, 1.0)
        _check_bound("budgets.max_mean_kl", self.max_mean_kl, 0.0, math.inf)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_bound(key: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ConfigError(f"{key} must be a finite number in [{low:g}, {high:g}], got {value!r}.")


@dataclass(frozen=True, kw_only=True)
class TraceReference:
    """Greedy traces of one model over the validation prompts: per prompt, float32 logits ``[steps + 1, vocab]``.

    ``source`` says whose traces they are (``"torch"``, or ``"fp32 file NAME"``); the greedy tokens are the argmax of
    each row.
    """

    prompts: list[list[int]]
    logits: list[np.ndarray]
    source: str = "torch"

    def __post_init__(self) -> None:
        if not self.prompts:
            raise InputError("validation needs at least one prompt; pass token id lists (or let the default seeded "
                             "prompts be made).")
        if len(self.prompts) != len(self.logits):
            raise InputError(f"the {self.source} reference has {len(self.logits)} traces for {len(self.prompts)} "
                             "prompts; compute one trace per prompt.")
        steps = {np.shape(t)[0] for t in self.logits}
        if len(steps) != 1 or any(np.ndim(t) != 2 for t in self.logits):
            raise InputError(f"the {self.source} reference's traces must all be [steps + 1, vocab] with the same "
                             f"steps; got shapes {sorted({np.shape(t) for t in self.logits})}.")

    @property
    def steps(self) -> int:
        return int(np.shape(self.logits[0])[0]) - 1

    @property
    def tokens(self) -> list[np.ndarray]:
        return [np.argmax(t, axis=-1) for t in self.logits]


def generator_trace(gen: Any, prompts: Sequence[Sequence[int]], steps: int, *, source: str) -> TraceReference:
    """The greedy traces of a loaded generator over ``prompts`` (e.g. an fp32 file's, the reference of its weight-only
    siblings)."""
    return TraceReference(prompts=[list(p) for p in prompts],
                          logits=[np.asarray(gen.logits(list(p), steps), dtype=np.float32) for p in prompts],
                          source=source)


def validate_generator(gen: Any, reference: TraceReference, *, precision: str, budgets: LLMBudgets | None = None,
                       fp32_reference: TraceReference | None = None) -> dict[str, Any]:
    """Judge a loaded generative artifact against its reference traces.

    Args:
        gen: a :class:`~edgestill.runtimes.generate.Generator` (the artifact on its own runtime).
        reference: torch's traces over the validation prompts.
        precision: the artifact's precision (fp32, fp16, int8-weight, int4-weight).
        budgets: the bounds (default :class:`LLMBudgets`).
        fp32_reference: for a weight-only file, the fp32 file's traces on the same prompts (used instead of torch).

    Returns:
        The dict recorded as ``Artifact.validation``: ``passed``, ``reasons`` (one sentence per failed criterion),
        ``failures`` (``output``, ``metric``, ``value``, ``bound``: what :func:`edgestill.artifact.rejected_reason`
        reads), the measured figures and the first divergence of each prompt that diverged.

    Raises:
        InputError: an unknown precision, or an fp32 reference over other prompts or steps.
    """
    budgets = budgets or LLMBudgets()
    if precision in _FLOAT_PRECISIONS:
        return _validate_float(gen, reference, precision, budgets)
    if precision in _WEIGHT_ONLY:
        ref = reference
        if fp32_reference is not None:
            if fp32_reference.prompts != reference.prompts or fp32_reference.steps != reference.steps:
                raise InputError("the fp32 file's traces were taken on other prompts or steps than the torch "
                                 "reference; compute both on the same prompts.")
            ref = fp32_reference
        return _validate_weight_only(gen, ref, precision, budgets)
    raise InputError(f"precision {precision!r} has no generative validation; valid: "
                     f"{', '.join(_FLOAT_PRECISIONS + _WEIGHT_ONLY)}.")


def _file_trace(gen: Any, prompt: list[int], steps: int, vocab: int) -> np.ndarray:
    """The file's trace, checked to be ``[steps + 1, vocab]`` finite float32."""
    got = np.asarray(gen.logits(prompt, steps), dtype=np.float32)
    if got.shape != (steps + 1, vocab):
        raise RuntimeFailure(f"the {getattr(gen, 'runtime', 'runtime')} generator returned logits of shape "
                             f"{got.shape} for {steps} steps; expected {(steps + 1, vocab)}.")
    return got


def _first_divergence(ref: np.ndarray, got: np.ndarray) -> int | None:
    diff = np.nonzero(np.asarray(ref) != np.asarray(got))[0]
    return int(diff[0]) if diff.size else None


def _margin(row: np.ndarray) -> float:
    """top-1 minus top-2 logit: how far the reference's greedy choice was from a tie."""
    top2 = np.partition(row, -2)[-2:]
    return float(top2[1] - top2[0])


def _divergence(k: int, step: int, ref_row: np.ndarray, ref_tok: int, tok: int, path: str) -> dict[str, Any]:
    return {"prompt": k, "step": step, "reference_token": int(ref_tok), "token": int(tok), "path": path,
            "reference_margin": round(_margin(ref_row), 6)}


def _cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    num = np.sum(a64 * b64, axis=-1)
    den = np.linalg.norm(a64, axis=-1) * np.linalg.norm(b64, axis=-1)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(np.all(a64 == b64, axis=-1), 1.0, 0.0))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    shifted = x64 - x64.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def kl_rows(reference: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """KL(softmax(reference) || softmax(logits)) per row, in nats (float64)."""
    lp, lq = _log_softmax(reference), _log_softmax(logits)
    return np.maximum(np.sum(np.exp(lp) * (lp - lq), axis=-1), 0.0)


def _divergence_text(d: dict[str, Any], source: str) -> str:
    """One divergence in words; a margin within the logits bound is called a near-tie (the file's own tolerance
    cannot decide it)."""
    return (f"prompt {d['prompt']} first differs at step {d['step']} ({d['path']}): {source} token {d['reference_token']}, "
            f"file token {d['token']}; {source}'s top-1 - top-2 logit margin there is {d['reference_margin']:.4g}"
            + (" (a near-tie, within the logits bound)" if d.get("near_tie") else ""))


def _expected_generation(ref_tok: np.ndarray, eos: int | None) -> np.ndarray:
    """What greedy generation that stops at eos must emit: the reference's tokens up to and including its first eos."""
    if eos is None:
        return ref_tok
    hits = np.nonzero(ref_tok == eos)[0]
    return ref_tok[: int(hits[0]) + 1] if hits.size else ref_tok


def _validate_float(gen: Any, reference: TraceReference, precision: str, budgets: LLMBudgets) -> dict[str, Any]:
    budget = budgets.fp32 if precision == Precision.FP32.value else budgets.fp16
    steps, vocab = reference.steps, int(np.shape(reference.logits[0])[1])
    eos = getattr(getattr(gen, "info", None), "eos_token_id", None)
    divergences: list[dict[str, Any]] = []
    worst_abs, worst_bound_ratio, min_cos = 0.0, 0.0, 1.0
    for k, (prompt, ref) in enumerate(zip(reference.prompts, reference.logits)):
        ref_tok = np.argmax(ref, axis=-1)
        got = _file_trace(gen, prompt, steps, vocab)
        got_tok = np.argmax(got, axis=-1)
        first = _first_divergence(ref_tok, got_tok)
        if first is not None:
            divergences.append(_divergence(k, first, ref[first], ref_tok[first], got_tok[first], "logits"))
        else:  # the path scoring uses: greedy generation that stops at eos
            expected = _expected_generation(ref_tok, eos)
            made = np.asarray(gen.generate(prompt, steps + 1, stop_on_eos=True).tokens, dtype=np.int64)
            n = min(len(made), len(expected))
            gen_first = _first_divergence(expected[:n], made[:n])
            if gen_first is None and len(made) != len(expected):  # stopped early or went past eos
                gen_first = n
            if gen_first is not None:
                tok = made[gen_first] if gen_first < len(made) else -1  # -1: no token where the reference has one
                divergences.append(_divergence(k, gen_first, ref[gen_first], ref_tok[gen_first], tok, "generate"))
        rows = slice(0, (first if first is not None else steps) + 1)  # same context up to the first divergence
        err = np.abs(got[rows].astype(np.float64) - ref[rows])
        bound = budget.atol + budget.rtol * float(np.abs(ref[rows]).max())
        if divergences and divergences[-1]["prompt"] == k:
            divergences[-1]["near_tie"] = divergences[-1]["reference_margin"] <= bound
        worst_abs = max(worst_abs, float(err.max()))
        worst_bound_ratio = max(worst_bound_ratio, float(err.max()) / bound)
        min_cos = min(min_cos, float(_cosine_rows(got[rows], ref[rows]).min()))
    failures, reasons = [], []
    if divergences:
        failures.append({"output": "tokens", "metric": "prompts with differing greedy tokens",
                         "value": len(divergences), "bound": 0})
        reasons.append(f"greedy tokens differ from {reference.source} on {len(divergences)} of "
                       f"{len(reference.prompts)} prompts; " + "; ".join(
                           _divergence_text(d, reference.source) for d in divergences[:3]))
    if worst_bound_ratio > 1.0:
        failures.append({"output": "logits", "metric": "max_abs / bound", "value": worst_bound_ratio, "bound": 1.0})
        reasons.append(f"logits differ from {reference.source} by up to {worst_abs:.3g}, over the bound "
                       f"atol {budget.atol:g} + rtol {budget.rtol:g} x max|{reference.source}| "
                       f"({worst_bound_ratio:.3g} times the bound)")
    if min_cos < budget.min_cosine:
        failures.append({"output": "logits", "metric": "min_cosine", "value": min_cos, "bound": budget.min_cosine})
        reasons.append(f"a logits row's cosine to {reference.source} is {min_cos:.6f} < {budget.min_cosine:g}")
    return {
        "passed": not failures, "kind": "generative", "precision": precision, "reference": reference.source,
        "prompts": len(reference.prompts), "steps": steps, "budget": asdict(budget),
        "tokens_identical": not divergences, "max_abs": worst_abs, "max_abs_over_bound": worst_bound_ratio,
        "min_cosine": min_cos, "divergences": divergences[:_SHOWN_DIVERGENCES], "failures": failures,
        "reasons": reasons,
    }


def _validate_weight_only(gen: Any, reference: TraceReference, precision: str, budgets: LLMBudgets) -> dict[str, Any]:
    steps, vocab = reference.steps, int(np.shape(reference.logits[0])[1])
    shares, kls, divergences = [], [], []
    for k, (prompt, ref) in enumerate(zip(reference.prompts, reference.logits)):
        ref_tok = np.argmax(ref, axis=-1)
        got = _file_trace(gen, prompt, steps, vocab)
        first = _first_divergence(ref_tok, np.argmax(got, axis=-1))
        equal = steps + 1 if first is None else first
        shares.append(equal / (steps + 1))
        if first is not None:
            divergences.append(_divergence(k, first, ref[first], ref_tok[first], np.argmax(got[first]), "logits"))
        rows = slice(0, min(equal, steps) + 1)
        kls.extend(kl_rows(ref[rows], got[rows]).tolist())
    agreement = float(np.mean(shares))
    sequence_match = 1.0 - len(divergences) / len(reference.prompts)
    mean_kl, max_kl = float(np.mean(kls)), float(np.max(kls))
    failures, reasons = [], []
    if agreement < budgets.min_token_agreement:
        failures.append({"output": "tokens", "metric": "token_agreement", "value": agreement,
                         "bound": budgets.min_token_agreement})
        reasons.append(f"token agreement with {reference.source} is {agreement:.3f} < {budgets.min_token_agreement:g} "
                       "(mean share of positions equal before the first divergence)")
    if mean_kl > budgets.max_mean_kl:
        failures.append({"output": "logits", "metric": "mean_kl", "value": mean_kl, "bound": budgets.max_mean_kl})
        reasons.append(f"mean KL({reference.source} || file) per step is {mean_kl:.4g} nats > {budgets.max_mean_kl:g}")
    return {
        "passed": not failures, "kind": "generative", "precision": precision, "reference": reference.source,
        "prompts": len(reference.prompts), "steps": steps,
        "budget": {"min_token_agreement": budgets.min_token_agreement, "max_mean_kl": budgets.max_mean_kl},
        "token_agreement": agreement, "sequence_match": sequence_match, "mean_kl": mean_kl, "max_kl": max_kl,
        "divergences": divergences[:_SHOWN_DIVERGENCES], "failures": failures, "reasons": reasons,
    }
