"""runtimes.generate's torch-free parts: timing arithmetic at fixed lengths, id-level scoring, the LLM eval NPZ checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgestill.errors import InputError, RuntimeFailure
from edgestill.runtimes.generate import (
    Generation,
    LLMInfo,
    answer_ids,
    read_eval_arrays,
    score_generations,
    synthetic_prompt,
    time_generation,
    timing_lengths,
)

INFO = LLMInfo(vocab_size=20, context_length=64, eos_token_id=2, bos_token_id=1, pad_token_id=0)


class ScriptedGenerator:
    """A Generator whose timings are given: TTFT and step times cycle through the lists, tokens count up."""

    runtime, runtime_version = "scripted", "0"

    def __init__(self, ttft_ms: list[float], step_ms: float, *, short_by: int = 0) -> None:
        self.info, self.ttfts, self.step, self.short_by, self.calls = INFO, ttft_ms, step_ms, short_by, []

    def generate(self, prompt_ids, max_new_tokens, *, stop_on_eos=True) -> Generation:
        self.calls.append((list(prompt_ids), max_new_tokens, stop_on_eos))
        n = max_new_tokens - self.short_by
        return Generation(prompt_len=len(prompt_ids), tokens=[3 + i % 10 for i in range(n)],
                          ttft_ms=self.ttfts[(len(self.calls) - 1) % len(self.ttfts)],
                          step_ms=[self.step * (1 + len(self.calls) % 2)] * (n - 1))

    def close(self) -> None: ...


def test_timing_reports_median_ttft_prefill_and_decode_rates_at_fixed_lengths() -> None:
    gen = ScriptedGenerator([50.0, 10.0, 20.0, 40.0], step_ms=2.0)  # call 1 is the warm-up
    out = time_generation(gen, list(range(3, 19)), gen_tokens=9, warmup=1, repeats=3)
    assert all(stop is False and n == 9 for _, n, stop in gen.calls) and len(gen.calls) == 4
    assert (out["prompt_tokens"], out["generated_tokens"], out["repeats"]) == (16, 9, 3)
    assert out["first_ms"] == 50.0 and out["warmup_ms"] == [50.0 + 8 * 4.0]  # call 1: odd -> 2 * step
    assert out["ttft_samples_ms"] == [10.0, 20.0, 40.0] and out["ttft_ms"] == 20.0
    assert out["prefill_tokens_per_s"] == pytest.approx(16 / 0.020)
    # calls 2, 3, 4: steps of 2, 4, 2 ms -> 500, 250, 500 tokens/s; the median is 500
    assert out["decode_tokens_per_s_each"] == pytest.approx([500.0, 250.0, 500.0])
    assert out["decode_tokens_per_s"] == pytest.approx(500.0)
    assert out["samples_ms"] == [2.0] * 8 + [4.0] * 8 + [2.0] * 8  # per-token decode latency, every step kept


def test_timing_refuses_a_generator_that_ignores_the_fixed_length_and_a_prompt_over_the_context() -> None:
    with pytest.raises(RuntimeFailure, match="exactly 9"):
        time_generation(ScriptedGenerator([1.0], 1.0, short_by=3), [3, 4], gen_tokens=9)
    with pytest.raises(InputError, match="exceeds the model's context of 64"):
        time_generation(ScriptedGenerator([1.0], 1.0), [3] * 60, gen_tokens=9)


def test_timing_lengths_keep_the_request_where_it_fits_else_shrink_with_the_same_ratio() -> None:
    assert timing_lengths(LLMInfo(vocab_size=9, context_length=512, eos_token_id=2), 128, 128) == (128, 128)
    assert timing_lengths(INFO, 128, 128) == (32, 32)
    assert timing_lengths(INFO, 96, 32) == (48, 16)
    with pytest.raises(InputError, match="gen_tokens must be a whole number >= 2"):
        timing_lengths(INFO, 8, 1)


def test_synthetic_prompt_is_seeded_and_avoids_special_tokens() -> None:
    a, b = synthetic_prompt(INFO, 200, seed=1), synthetic_prompt(INFO, 200, seed=1)
    assert a == b and len(a) == 200 and a != synthetic_prompt(INFO, 200, seed=2)
    assert not {0, 1, 2} & set(a) and max(a) < INFO.vocab_size


# --- scoring: marker "#", "#" = ids [7, 7]; space = 5; eos = 2 --------------------------------------------------------
def _arrays(answers: list[list[int]], teacher: list[list[int]] | None = None) -> dict[str, np.ndarray]:
    def pad(rows: list[list[int]]) -> np.ndarray:
        width = max(len(r) for r in rows)
        return np.array([r + [-1] * (width - len(r)) for r in rows], dtype=np.int32)

    out = {"answer_ids": pad(answers), "marker_ids": np.array([7, 7], np.int32), "strip_ids": np.array([5], np.int32)}
    if teacher is not None:
        out["teacher_answer_ids"] = pad(teacher)
    return out


def test_exact_match_takes_the_text_after_the_last_marker_up_to_eos_stripped() -> None:
    arrays = _arrays([[5, 9, 4], [9, 4], [9, 4], [9, 4], [9, 4]])
    generations = [
        [8, 7, 7, 5, 9, 4, 5, 2, 3, 3],  # marker, " 94 ", eos, then junk: match
        [7, 7, 3, 8, 7, 7, 9, 4],  # two markers: the last one's answer counts: match
        [8, 9, 4, 2],  # no marker: never a match
        [8, 2, 7, 7, 9, 4],  # the marker comes only after eos: no match
        Generation(prompt_len=3, tokens=[7, 7, 9, 4, 4]),  # a longer answer: no match
    ]
    out = score_generations(generations, arrays, eos_token_id=2)
    assert out == {"exact_match": pytest.approx(2 / 5), "n": 5, "teacher_agreement": None, "teacher_n": None}
    assert answer_ids([7, 7, 5, 5], [7, 7], {5}, 2) == () and answer_ids([9], [7, 7], {5}, 2) is None


def test_teacher_agreement_counts_the_prompts_the_teacher_answered() -> None:
    arrays = _arrays([[9], [9], [9], [9], [9]], teacher=[[9], [4], [-1], [5, 9, 5], [9]])
    # agree, differ, teacher gave no answer (left out), agree once stripped, no answer vs the teacher's 9
    generations = [[7, 7, 9], [7, 7, 9], [3, 3], [7, 7, 5, 9, 2], [9, 2]]
    out = score_generations(generations, arrays, eos_token_id=2)
    assert (out["teacher_agreement"], out["teacher_n"]) == (pytest.approx(2 / 4), 4)
    assert out["exact_match"] == pytest.approx(3 / 5)
    none = score_generations(generations, _arrays([[9]] * 5, teacher=[[-1]] * 5), eos_token_id=2)
    assert (none["teacher_agreement"], none["teacher_n"]) == (None, 0)
    with pytest.raises(InputError, match="3 generations for 5 eval prompts"):
        score_generations(generations[:3], arrays)


# --- the eval NPZ's checks ---------------------------------------------------------------------------------------------
def write_eval(path: Path, **override: object) -> Path:
    arrays = {"prompt_ids": np.array([[3, 4, 5, 0], [6, 7, 0, 0]], np.int32), "prompt_len": np.array([3, 2], np.int32),
              "answer_ids": np.array([[9, -1], [8, 9]], np.int32), "marker_ids": np.array([7, 7], np.int32),
              "strip_ids": np.array([5], np.int32), "max_new_tokens": np.array(16, np.int32)}
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_a_good_eval_file_reads_as_int64_arrays(tmp_path: Path) -> None:
    arrays = read_eval_arrays(write_eval(tmp_path / "e.npz"), INFO)
    assert arrays["prompt_ids"].dtype == np.int64 and int(arrays["max_new_tokens"]) == 16


@pytest.mark.parametrize("override, message", [
    ({"answer_ids": None}, r"lacks \['answer_ids'\]"),
    ({"prompt_ids": np.array([[3.0, 4, 5, 0], [6, 7, 0, 0]])}, "not integer arrays"),
    ({"prompt_ids": np.array([[3, 4, 25, 0], [6, 7, 0, 0]], np.int32)}, r"prompt_ids holds ids from 3 to 25, outside .*0\.\.19"),
    ({"answer_ids": np.array([[9, -3], [8, 9]], np.int32)}, "answer_ids holds ids from -3"),
    ({"prompt_len": np.array([3, 5], np.int32)}, "prompt_len of prompt 1 is 5, outside 1..4"),
    ({"prompt_len": np.array([3], np.int32)}, r"prompt_len has shape \[1\]"),
    ({"max_new_tokens": np.array(62, np.int32)}, "prompt 0: a prompt of 3 tokens plus 62 new tokens exceeds .* 64"),
])  # fmt: skip
def test_bad_eval_files_are_refused_with_the_array_named(tmp_path: Path, override: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        read_eval_arrays(write_eval(tmp_path / "e.npz", **override), INFO)


# --- a real KV-cache decoder: the ONNX export on both of its runtimes ------------------------------------------------
@pytest.fixture(scope="module")
def onnx_llm(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("onnxruntime_genai")
    from edgestill.export.llm_onnx import export_llm_onnx
    from edgestill.models.llm import make_tiny_llama

    root = tmp_path_factory.mktemp("onnx-llm")
    hf = make_tiny_llama(root / "hf", layers=1, hidden=32, heads=2, kv_heads=1, intermediate=64, context_length=64)
    return export_llm_onnx(hf, root / "out", "tiny-onnx", "fp32")


@pytest.mark.parametrize("runtime", ["onnxruntime-genai", "onnxruntime"])
def test_timing_a_real_onnx_decoder_at_fixed_lengths(onnx_llm, runtime: str) -> None:
    from edgestill.runtimes.generate import load_generator

    gen = load_generator(onnx_llm, threads=1, runtime=runtime)
    try:
        prompt = synthetic_prompt(gen.info, 12, seed=3)
        out = time_generation(gen, prompt, gen_tokens=10, warmup=1, repeats=3)
    finally:
        gen.close()
    assert gen.runtime == runtime and (out["prompt_tokens"], out["generated_tokens"], out["repeats"]) == (12, 10, 3)
    assert len(out["samples_ms"]) == 3 * 9 and all(s > 0 for s in out["samples_ms"]) and len(out["warmup_ms"]) == 1
    steps = np.array(out["samples_ms"]).reshape(3, 9)
    assert out["decode_tokens_per_s_each"] == pytest.approx(list(9 / (steps.sum(axis=1) / 1e3)))
    assert out["decode_tokens_per_s"] == pytest.approx(float(np.median(out["decode_tokens_per_s_each"])))
    assert out["ttft_ms"] == pytest.approx(float(np.median(out["ttft_samples_ms"])))
    assert out["prefill_tokens_per_s"] == pytest.approx(12 / (out["ttft_ms"] / 1e3))
