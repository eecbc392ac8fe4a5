"""compress/distill/llm.py: the completion-only trainer, the cached teacher, sequence-level KD that keeps verified
traces, the Socratic route and distill_lm's modes and refusals, on tiny Llamas."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from edgestill.compress.distill.llm import (  # noqa: E402
    IGNORE,
    LlamaSize,
    LMTrainConfig,
    completion_ce,
    distill_lm,
    encode_examples,
    examples_from_generations,
    ground_truth_pairs,
    teacher_traces,
    train_causal_lm,
    train_teacher,
)
from edgestill.data.reasoning import generate_problems, verify  # noqa: E402
from edgestill.errors import ConfigError, InputError  # noqa: E402
from edgestill.models.llm import build_char_tokenizer, load_causal_lm, make_tiny_llama  # noqa: E402

TINY = LlamaSize(layers=1, hidden=32, heads=2, kv_heads=1, intermediate=64, context_length=96)
MEMORIZE = LMTrainConfig(steps=150, batch_size=6, lr=1e-2, warmup=10, log_every=50)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from a second thread and lose a lot on a busy machine (the threads wait for each
    other); the previous setting is restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def problems():
    return generate_problems(10, seed=0, difficulty="easy")


@pytest.fixture(scope="module")
def teacher(problems, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Path]:
    """A tiny teacher that memorised six problems (trained once, then found in the cache)."""
    cache = tmp_path_factory.mktemp("cache")
    folder, info = train_teacher(problems[:6], problems[6:8], MEMORIZE, size=TINY, max_new_tokens=40, cache_dir=cache)
    return folder, info, cache


def test_config_is_validated() -> None:
    for bad in ({"steps": 0}, {"lr": -1.0}, {"batch_size": 2.5}, {"warmup": -1}, {"lr": math.nan}, {"steps": True}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            LMTrainConfig(**bad)


def test_training_lowers_the_loss_on_completions_only(problems, tmp_path: Path) -> None:
    model, tok = load_causal_lm(make_tiny_llama(tmp_path / "s", seed=1, **vars(TINY)))
    examples = encode_examples(tok, ground_truth_pairs(problems))
    seen = []

    def objective(logits, batch):
        seen.append({k: v.clone() for k, v in batch.items()})
        return completion_ce(logits, batch)

    result = train_causal_lm(model, examples, LMTrainConfig(steps=40, batch_size=4, lr=5e-3, warmup=5, log_every=10),
                             objective=objective)
    assert result["history"][-1][1] < 0.7 * result["history"][0][1]
    assert result["steps"] == 40 and len(seen) == 40 and result["tokens"] > 0
    batch = seen[0]
    assert set(batch) == {"input_ids", "attention_mask", "labels", "index"}
    for row, i in enumerate(batch["index"].tolist()):  # labels: exactly the completion (with eos), aligned with ids
        prompt, completion = examples[i]
        labels = batch["labels"][row]
        assert labels[labels != IGNORE].tolist() == completion
        assert batch["input_ids"][row, len(prompt):len(prompt) + len(completion)].tolist() == completion
        assert int(batch["attention_mask"][row].sum()) == len(prompt) + len(completion)


def test_diverged_training_and_bad_examples_are_refused(problems, tmp_path: Path) -> None:
    model, tok = load_causal_lm(make_tiny_llama(tmp_path / "s", **vars(TINY)))
    examples = encode_examples(tok, ground_truth_pairs(problems))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InputError, match="diverged at step 1.*not taken"):
        train_causal_lm(model, examples, LMTrainConfig(steps=3, batch_size=2),
                        objective=lambda logits, batch: logits.sum() * math.nan)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(InputError, match="corpus is empty"):
        train_causal_lm(model, [], LMTrainConfig(steps=1))
    with pytest.raises(InputError, match="example 0 is .* tokens long"):
        train_causal_lm(model, examples, LMTrainConfig(steps=1, max_length=10))
    with pytest.raises(InputError, match="corpus is empty"):
        encode_examples(tok, [])


def test_teacher_is_cached(problems, teacher) -> None:
    folder, info, cache = teacher
    assert info["cache"] == "miss" and info["val_exact_match"] >= 0.0
    again, info2 = train_teacher(problems[:6], problems[6:8], MEMORIZE, size=TINY, max_new_tokens=40, cache_dir=cache)
    assert again == folder and info2["cache"] == "hit" and info2["key"] == info["key"]
    other, info3 = train_teacher(problems[:5], problems[6:8], LMTrainConfig(steps=2, batch_size=2), size=TINY,
                                 cache_dir=cache)
    assert other != folder and info3["cache"] == "miss"


def test_seq_kd_keeps_only_verified_traces(problems, teacher) -> None:
    model, tok = load_causal_lm(teacher[0])
    kept, stats = teacher_traces(model, tok, problems[:6], samples_per_prompt=6, temperature=1.5, top_p=1.0,
                                 max_new_tokens=40, seed=0)
    by_prompt = {p.prompt: p for p in problems}
    assert kept and all(verify(by_prompt[prompt], completion) for prompt, completion in kept)
    assert stats["generated"] == 36 and stats["kept"] == len(kept) < 36  # some samples were wrong and dropped
    assert stats["kept_share"] == pytest.approx(len(kept) / 36)
    with pytest.raises(ConfigError, match="temperature"):
        teacher_traces(model, tok, problems[:2], temperature=0.0)


def test_socratic_rows_are_verified_when_the_problem_is_known(problems) -> None:
    p = problems[0]
    rows = [(p.prompt, p.solution), (p.prompt, " 1+1=2 #### -7"), ("Q: unknown ?\nA:", " #### 3")]
    kept, stats = examples_from_generations(rows, problems)
    assert kept == [rows[0], rows[2]]
    assert stats == {"rows": 3, "kept": 2, "verified": 1, "unverified": 1, "rejected": 1}
    assert examples_from_generations(rows)[1]["unverified"] == 3
    with pytest.raises(InputError, match="wrong final answer"):
        examples_from_generations([rows[1]], problems)


def test_distill_lm_modes(problems, teacher, tmp_path: Path) -> None:
    student = make_tiny_llama(tmp_path / "student", tokenizer_dir=teacher[0], **vars(TINY))
    config = LMTrainConfig(steps=4, batch_size=4, log_every=2)
    common = {"student_dir": student, "out_dir": tmp_path / "out", "train_problems": problems[:6],
              "val_problems": problems[6:8], "test_problems": problems[8:], "config": config, "max_new_tokens": 40}
    result = distill_lm("seq-kd", teacher_dir=teacher[0], samples_per_prompt=2, temperature=1.0, **common)
    written = Path(result["student"])
    assert written == tmp_path / "out" / "student" and load_causal_lm(written)
    assert json.loads((written / "edgestill-distill.json").read_text())["mode"] == "seq-kd"
    assert result["data"]["kept"] >= 1 and 0.0 <= result["test_teacher_agreement"] <= 1.0
    jsonl = tmp_path / "gen.jsonl"
    jsonl.write_text("".join(json.dumps({"prompt": p.prompt, "completion": p.solution}) + "\n" for p in problems[:6]))
    socratic = distill_lm("socratic", generations=jsonl, name="socratic", **common)
    assert socratic["data"]["verified"] == 6 and "test_teacher_agreement" not in socratic
    calls = []
    token = distill_lm("token-kd", teacher_dir=teacher[0], name="token",
                       make_objective=lambda examples, student: calls.append(len(examples)) or completion_ce, **common)
    assert calls == [6] and token["train"]["steps"] == 4
    with pytest.raises(ConfigError, match="mode 'seq-kd' needs teacher_dir"):
        distill_lm("seq-kd", **common)
    with pytest.raises(ConfigError, match="not one of"):
        distill_lm("distill-harder", **common)
    build_char_tokenizer(tmp_path / "digits", alphabet="0123456789+-*=;# QA:?()\n")
    other = make_tiny_llama(tmp_path / "other", tokenizer_dir=tmp_path / "digits", **vars(TINY))
    with pytest.raises(InputError, match="different tokenizers"):
        distill_lm("token-kd", teacher_dir=teacher[0], make_objective=lambda e, student: completion_ce,
                   **{**common, "student_dir": other})
