"""data/reasoning.py: the generated arithmetic corpus, answer checks, the Socratic JSONL reader and the eval arrays."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from edgestill.data.reasoning import (
    MARKER,
    Problem,
    eval_arrays,
    extract_answer,
    generate_problems,
    read_generations,
    splits,
    verify,
)
from edgestill.errors import ConfigError, InputError


def _evaluate(expression: str) -> int:
    assert re.fullmatch(r"[0-9+\-*() ]+", expression)
    return int(eval(expression))  # noqa: S307 - digits and operators only (checked above)


def test_corpus_is_deterministic_and_its_answers_are_right() -> None:
    a = generate_problems(300, seed=7)
    assert a == generate_problems(300, seed=7)
    assert a != generate_problems(300, seed=8)
    assert len({p.prompt for p in a}) == 300
    for p in a:
        expression = p.prompt.removeprefix("Q: ").removesuffix(" ?\nA:")
        assert p.answer == str(_evaluate(expression)) and int(p.answer) >= 0
        steps, answer = p.solution.split(MARKER)
        assert answer.strip() == p.answer
        for step in steps.strip().split("; "):  # every worked step is true arithmetic
            left, right = step.split("=")
            assert _evaluate(left) == int(right)
        assert steps.strip().split("; ")[-1].endswith(f"={p.answer}")


def test_ground_truth_is_multimodal() -> None:
    styles = {len(p.solution.split(";")) for p in generate_problems(200, seed=0)}
    assert styles == {3, 4}  # three-step and distributed four-step solutions both occur
    swapped = [p for p in generate_problems(200, seed=0) if p.prompt.startswith("Q: (")
               and p.solution.split("=")[0].strip() != p.prompt[4:].split(")")[0]]
    assert swapped  # operands written in another order than the prompt's


def test_splits_are_disjoint() -> None:
    parts = splits(200, 50, 50, seed=1)
    prompts = [{p.prompt for p in parts[k]} for k in ("train", "val", "test")]
    assert [len(s) for s in prompts] == [200, 50, 50]
    assert not (prompts[0] & prompts[1]) and not (prompts[0] & prompts[2]) and not (prompts[1] & prompts[2])
    with pytest.raises(ConfigError, match="difficulty 'impossible'"):
        generate_problems(3, seed=0, difficulty="impossible")
    with pytest.raises(ConfigError, match="too few distinct problems"):
        generate_problems(100_000, seed=0, difficulty="easy")


def test_extract_and_verify() -> None:
    p = Problem(prompt="Q: (1+2)*3-4 ?\nA:", solution=" 1+2=3; 3*3=9; 9-4=5 #### 5", answer="5")
    assert verify(p, p.solution)
    assert extract_answer(" 2+2=4 #### 4 #### 12 ") == "12"  # the last marker counts
    assert not verify(p, " 1+2=3; 3*3=9; 9-4=5 #### 6")
    assert not verify(p, " 1+2=3; 3*3=9; 9-4=5")
    assert extract_answer("#### ") is None


def test_read_generations(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "Q: 1 ?\\nA:", "completion": " #### 1", "model": "x"}\n\n'
                    '{"prompt": "Q: 2 ?\\nA:", "completion": " #### 2"}\n', encoding="utf-8")
    assert read_generations(good) == [("Q: 1 ?\nA:", " #### 1"), ("Q: 2 ?\nA:", " #### 2")]
    cases = {
        "missing": ('{"prompt": "a", "completion": "b"}\n{"prompt": "Q"}\n', r'line 2 has no "completion" field'),
        "nonstring": ('{"prompt": "a", "completion": 3}\n', r'line 1: "completion" is a int'),
        "badjson": ('{"prompt": "a", "completion": "b"}\n{"prompt": \n', r"line 2 is not valid JSON"),
        "notobject": ('["a", "b"]\n', r"line 1 holds a JSON list"),
        "empty": ("", r"has no rows"),
        "blank": ("\n  \n", r"has no rows"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(InputError, match=message):
            read_generations(path)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"prompt": "a", "completion": "b"}\n{"prompt": "caf\xe9", "completion": "x"}\n')
    with pytest.raises(InputError, match=r"not UTF-8 text \(byte 0xe9 on line 2\)"):
        read_generations(latin)
    with pytest.raises(InputError, match="cannot be read"):
        read_generations(tmp_path / "absent.jsonl")


def test_eval_arrays_follow_the_contract(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from transformers import PreTrainedTokenizerFast

    from edgestill.models.llm import build_char_tokenizer

    tok = PreTrainedTokenizerFast.from_pretrained(str(build_char_tokenizer(tmp_path / "tok")))
    problems = generate_problems(5, seed=0)
    teacher = [problems[0].solution, " 1+1=2 #### 999", "no marker", problems[3].solution, problems[4].solution]
    arrays = eval_arrays(problems, tok, max_new_tokens=40, teacher_completions=teacher)
    assert {k: v.dtype for k, v in arrays.items()} == {k: np.dtype(np.int32) for k in arrays}
    assert arrays["prompt_ids"].shape == (5, int(arrays["prompt_len"].max()))
    assert arrays["marker_ids"].tolist() == tok(MARKER, add_special_tokens=False).input_ids
    assert set(arrays["strip_ids"].tolist()) >= {tok.convert_tokens_to_ids(" "), tok.convert_tokens_to_ids("\n")}
    assert int(arrays["max_new_tokens"]) == 40
    for i, p in enumerate(problems):
        n = int(arrays["prompt_len"][i])
        assert arrays["prompt_ids"][i, :n].tolist() == tok(p.prompt).input_ids
        assert not arrays["prompt_ids"][i, n:].any()
        answer = [t for t in arrays["answer_ids"][i].tolist() if t != -1]
        assert tok.decode(answer) == f" {p.answer}"
        # what a correct greedy decode emits: the completion's ids end with exactly these
        assert tok(p.solution, add_special_tokens=False).input_ids[-len(answer):] == answer
    teacher_rows = [[t for t in row if t != -1] for row in arrays["teacher_answer_ids"].tolist()]
    assert tok.decode(teacher_rows[1]) == " 999" and teacher_rows[2] == []
    # the device's id-level scorer reads them as the text-level verify() does
    from edgestill.runtimes.generate import score_generations

    eos = tok.eos_token_id
    right = [tok(p.solution, add_special_tokens=False).input_ids + [eos, 7, 7] for p in problems]
    wrong = [tok(p.solution + "1", add_special_tokens=False).input_ids + [eos] for p in problems]
    scored = score_generations(right, arrays, eos_token_id=eos)
    assert scored["exact_match"] == 1.0 and scored["teacher_agreement"] == pytest.approx(3 / 4)
    assert score_generations(wrong, arrays, eos_token_id=eos)["exact_match"] == 0.0
    with pytest.raises(InputError, match="corpus is empty"):
        eval_arrays([], tok, max_new_tokens=4)
    with pytest.raises(InputError, match="exceeds the model's context of 30"):
        eval_arrays(problems, tok, max_new_tokens=20, context_length=30)
    with pytest.raises(ConfigError, match="max_new_tokens=0"):
        eval_arrays(problems, tok, max_new_tokens=0)
    assert json.dumps(arrays["answer_ids"].tolist())  # plain ints: travels in an NPZ
