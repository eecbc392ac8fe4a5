"""Strict validation of generative files: identical traces pass, a perturbed one fails naming its step, weight-only
files are judged by token agreement and KL against budgets.

The generator here is a real numpy language model (a bigram table: the next token's logits are the row of the last
token), run greedily like a KV-cache decoder; the reference is the same model's trace, as torch's would be.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgestill.errors import ConfigError, InputError
from edgestill.export.llm_validate import (
    FloatBudget,
    LLMBudgets,
    TraceReference,
    generator_trace,
    kl_rows,
    validate_generator,
)
from edgestill.runtimes.generate import Generation, LLMInfo

VOCAB, STEPS = 16, 6


class BigramLM:
    """Greedy decoding of a bigram logits table (the protocol's ``logits`` and ``generate``)."""

    runtime = "numpy"
    runtime_version = np.__version__

    def __init__(self, table: np.ndarray, *, generate_offset: int = 0, eos: int | None = None):
        self.table = table.astype(np.float32)
        self.info = LLMInfo(vocab_size=VOCAB, context_length=64, eos_token_id=eos)
        self.generate_offset = generate_offset  # a decoder whose generate() path differs from its logits() path

    def logits(self, prompt_ids, steps):
        rows, last = [], int(prompt_ids[-1])
        for _ in range(steps + 1):
            rows.append(self.table[last])
            last = int(np.argmax(self.table[last]))
        return np.stack(rows)

    def generate(self, prompt_ids, max_new_tokens, *, stop_on_eos=True):
        trace = self.logits(prompt_ids, max_new_tokens - 1)
        tokens = [(int(t) + self.generate_offset) % VOCAB for t in np.argmax(trace, axis=-1)]
        if stop_on_eos and self.info.eos_token_id in tokens:
            tokens = tokens[: tokens.index(self.info.eos_token_id) + 1]
        return Generation(prompt_len=len(prompt_ids), tokens=tokens, step_ms=[0.0] * (len(tokens) - 1))

    def close(self):
        pass


def _table(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 3.0, size=(VOCAB, VOCAB)).astype(np.float32)


PROMPTS = [[1, 2, 3], [4], [5, 6], [7, 8, 9, 10]]


def _reference(table: np.ndarray) -> TraceReference:
    return generator_trace(BigramLM(table), PROMPTS, STEPS, source="torch")


def test_identical_traces_pass_fp32() -> None:
    table = _table()
    result = validate_generator(BigramLM(table), _reference(table), precision="fp32")
    assert result["passed"] and result["tokens_identical"]
    assert result["max_abs"] == 0.0 and result["min_cosine"] == pytest.approx(1.0)
    assert result["failures"] == [] and result["reasons"] == []


def test_float_noise_within_bounds_passes() -> None:
    table = _table()
    noisy = table + np.random.default_rng(1).normal(0, 1e-5, table.shape).astype(np.float32)
    result = validate_generator(BigramLM(noisy), _reference(table), precision="fp32")
    assert result["passed"], result["reasons"]
    assert 0 < result["max_abs"] < 1e-3


def test_a_perturbed_trace_fails_naming_the_step_and_margin() -> None:
    table = _table()
    ref = _reference(table)
    # prompt 1 starts from token 4; make the file pick another token at its third step (step 2)
    path = np.argmax(ref.logits[1], axis=-1)
    row = int(path[1])  # the token fed at step 2
    bad = table.copy()
    bad[row, (path[2] + 1) % VOCAB] = table[row].max() + 5.0
    result = validate_generator(BigramLM(bad), ref, precision="fp32")
    assert not result["passed"] and not result["tokens_identical"]
    first = next(d for d in result["divergences"] if d["prompt"] == 1)
    assert first["step"] == 2 and first["reference_token"] == int(path[2])
    assert first["token"] == (int(path[2]) + 1) % VOCAB
    assert first["reference_margin"] > 0
    assert any("first differs at step 2" in r for r in result["reasons"])
    assert {f["output"] for f in result["failures"]} >= {"tokens", "logits"}


def test_a_generate_path_that_differs_fails_even_when_logits_agree() -> None:
    table = _table()
    result = validate_generator(BigramLM(table, generate_offset=1), _reference(table), precision="fp32")
    assert not result["passed"]
    assert result["divergences"][0]["path"] == "generate" and result["divergences"][0]["step"] == 0


def test_fp16_bounds_are_looser_than_fp32() -> None:
    table = _table()
    noisy = table + np.random.default_rng(2).normal(0, 6e-3, table.shape).astype(np.float32)
    assert not validate_generator(BigramLM(noisy), _reference(table), precision="fp32")["passed"]
    assert validate_generator(BigramLM(noisy), _reference(table), precision="fp16")["passed"]


def _int4_rows(table: np.ndarray, bits: int) -> np.ndarray:
    """Symmetric per-row weight quantization, as a weight-only file stores its weights."""
    q = 2 ** (bits - 1) - 1
    scale = np.abs(table).max(axis=1, keepdims=True) / q
    return (np.round(table / scale).clip(-q, q) * scale).astype(np.float32)


def test_weight_only_is_judged_by_agreement_and_kl() -> None:
    table = _table()
    ref = _reference(table)
    int8 = validate_generator(BigramLM(_int4_rows(table, 8)), ref, precision="int8-weight")
    assert int8["passed"], int8["reasons"]
    assert int8["token_agreement"] == 1.0 and int8["sequence_match"] == 1.0
    assert 0 < int8["mean_kl"] < 0.05
    int2 = validate_generator(BigramLM(_int4_rows(table, 2)), ref, precision="int4-weight")
    assert int2["mean_kl"] > int8["mean_kl"]
    strict = LLMBudgets(max_mean_kl=int2["mean_kl"] / 2)
    judged = validate_generator(BigramLM(_int4_rows(table, 2)), ref, precision="int4-weight", budgets=strict)
    assert not judged["passed"] and judged["failures"][-1]["metric"] == "mean_kl"


def test_weight_only_token_agreement_counts_positions_before_the_first_divergence() -> None:
    table = _table()
    ref = _reference(table)
    path = np.argmax(ref.logits[0], axis=-1)
    bad = table.copy()
    bad[int(path[2]), (path[3] + 1) % VOCAB] = table[int(path[2])].max() + 5.0  # prompt 0 diverges at step 3
    result = validate_generator(BigramLM(bad), ref, precision="int4-weight",
                                budgets=LLMBudgets(min_token_agreement=1.0, max_mean_kl=100.0))
    shares = [1.0 if not any(d["prompt"] == k for d in result["divergences"])
              else next(d["step"] for d in result["divergences"] if d["prompt"] == k) / (STEPS + 1)
              for k in range(len(PROMPTS))]
    assert result["token_agreement"] == pytest.approx(np.mean(shares))
    assert shares[0] == pytest.approx(3 / (STEPS + 1))
    assert result["sequence_match"] < 1.0 and not result["passed"]


def test_weight_only_prefers_the_fp32_files_reference() -> None:
    table = _table()
    fp32_file = _int4_rows(table, 8)  # pretend the fp32 file drifted: its quantized sibling matches it exactly
    fp32_ref = generator_trace(BigramLM(fp32_file), PROMPTS, STEPS, source="fp32 file")
    result = validate_generator(BigramLM(fp32_file), _reference(table), precision="int8-weight",
                                fp32_reference=fp32_ref)
    assert result["reference"] == "fp32 file" and result["mean_kl"] == pytest.approx(0.0, abs=1e-12)


def test_kl_rows_is_zero_for_equal_and_positive_otherwise() -> None:
    a = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    assert kl_rows(a, a) == pytest.approx([0.0, 0.0])
    assert (kl_rows(a, a[::-1]) > 0).all()


def test_bad_inputs_are_refused() -> None:
    table = _table()
    ref = _reference(table)
    with pytest.raises(InputError, match="no generative validation"):
        validate_generator(BigramLM(table), ref, precision="int8-static")
    with pytest.raises(InputError, match="at least one prompt"):
        TraceReference(prompts=[], logits=[])
    with pytest.raises(InputError, match="same steps"):
        TraceReference(prompts=[[1], [2]], logits=[np.zeros((3, 4)), np.zeros((4, 4))])
    with pytest.raises(ConfigError, match="max_mean_kl"):
        LLMBudgets(max_mean_kl=float("nan"))
    with pytest.raises(ConfigError, match="min_cosine"):
        LLMBudgets(fp32=FloatBudget(atol=1e-3, rtol=1e-3, min_cosine=2.0))
    other = generator_trace(BigramLM(table), PROMPTS[:2], STEPS, source="fp32 file")
    with pytest.raises(InputError, match="other prompts"):
        validate_generator(BigramLM(table), ref, precision="int4-weight", fp32_reference=other)


def test_a_near_tie_still_fails_fp32_but_is_named_as_one() -> None:
    table = _table()
    start = PROMPTS[0][-1]
    top = int(np.argmax(table[start]))
    other = (top + 1) % VOCAB
    tied = table.copy()
    tied[start, other] = tied[start, top] - 1e-6  # torch's choice wins by a hair
    flipped = tied.copy()
    flipped[start, other] = tied[start, top] + 1e-6  # the file's by a hair the other way
    result = validate_generator(BigramLM(flipped), _reference(tied), precision="fp32")
    assert not result["passed"]
    first = result["divergences"][0]
    assert first["step"] == 0 and first["near_tie"] and first["reference_margin"] < 1e-5
    assert "near-tie" in result["reasons"][0]


def test_generation_is_compared_up_to_the_first_eos() -> None:
    table = _table()
    ref = _reference(table)
    path = [int(t) for t in np.argmax(ref.logits[0], axis=-1)]
    eos = path[2]  # prompt 0's greedy path emits this token at step 2: generation stops there
    result = validate_generator(BigramLM(table, eos=eos), ref, precision="fp32")
    assert result["passed"], result["reasons"]
    # a runtime that does not stop at eos emits a token where torch's generation has ended: a difference there
    class NoStop(BigramLM):
        def generate(self, prompt_ids, max_new_tokens, *, stop_on_eos=True):
            return super().generate(prompt_ids, max_new_tokens, stop_on_eos=False)

    bad = validate_generator(NoStop(table, eos=eos), ref, precision="fp32")
    assert not bad["passed"]
    first = next(d for d in bad["divergences"] if d["prompt"] == 0)
    assert first["path"] == "generate" and first["step"] == 3
