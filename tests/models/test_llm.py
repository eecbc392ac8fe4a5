"""models/llm.py: the character tokenizer, the tiny Llama folder, the torch greedy reference and the folder checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from edgestill.errors import InputError  # noqa: E402
from edgestill.models.llm import (  # noqa: E402
    build_char_tokenizer,
    check_causal_lm_folder,
    check_same_tokenizer,
    load_causal_lm,
    make_tiny_llama,
    torch_greedy,
    torch_logits_trace,
)

TINY = {"layers": 1, "hidden": 32, "heads": 2, "kv_heads": 1, "intermediate": 64, "context_length": 48}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("llm") / "tiny", seed=3, **TINY)


def test_char_tokenizer_round_trips_text_and_is_deterministic(tmp_path: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    a, b = build_char_tokenizer(tmp_path / "a"), build_char_tokenizer(tmp_path / "b")
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
    tok = PreTrainedTokenizerFast.from_pretrained(str(a))
    text = "Q: (17+5)*3-4 ?\nA: 17+5=22; 22*3=66 #### 62"
    ids = tok(text).input_ids
    assert ids[0] == tok.bos_token_id and len(ids) == len(text) + 1
    assert tok.decode(ids, skip_special_tokens=True) == text
    # character-level: the ids of prompt + completion are the prompt's followed by the completion's
    prompt, completion = text.split("A:")[0] + "A:", text.split("A:")[1]
    assert tok(prompt).input_ids + tok(completion, add_special_tokens=False).input_ids == ids
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)


def test_tiny_llama_folder_loads_with_transformers(tiny: Path) -> None:
    from transformers import AutoModelForCausalLM

    config, weights = check_causal_lm_folder(tiny)
    assert config["architectures"] == ["LlamaForCausalLM"] and weights == [tiny / "model.safetensors"]
    gen = json.loads((tiny / "generation_config.json").read_text())
    assert (gen["bos_token_id"], gen["eos_token_id"], gen["pad_token_id"]) == (1, 2, 0)
    model = AutoModelForCausalLM.from_pretrained(str(tiny), local_files_only=True)
    assert model.config.num_hidden_layers == 1 and model.config.vocab_size == config["vocab_size"]
    again = make_tiny_llama(tiny.parent / "again", seed=3, **TINY)
    assert (again / "model.safetensors").read_bytes() == (tiny / "model.safetensors").read_bytes()


def test_greedy_and_trace_agree_with_generate(tiny: Path) -> None:
    model, tok = load_causal_lm(tiny)
    prompt = tok("Q: 3+4 ?\nA:").input_ids
    steps = 12
    trace = torch_logits_trace(model, prompt, steps)
    assert trace.shape == (steps + 1, model.config.vocab_size) and trace.dtype == np.float32
    ref = model.generate(torch.tensor([prompt]), max_new_tokens=steps + 1, do_sample=False, eos_token_id=None,
                         output_logits=True, return_dict_in_generate=True)
    assert trace.argmax(1).tolist() == ref.sequences[0, len(prompt):].tolist()
    np.testing.assert_allclose(trace, torch.stack(ref.logits)[:, 0].numpy(), rtol=1e-4, atol=1e-4)
    greedy = torch_greedy(model, prompt, steps, eos_id=None)
    assert greedy == trace.argmax(1)[:steps].tolist()
    stop = greedy[3]  # pretend the fourth token is eos: decoding stops there, eos included
    assert torch_greedy(model, prompt, steps, eos_id=stop) == greedy[:greedy.index(stop) + 1]


def test_prompt_longer_than_context_is_refused(tiny: Path) -> None:
    model, tok = load_causal_lm(tiny)
    long_prompt = tok("x" * 60).input_ids
    with pytest.raises(InputError, match="exceeds the model's context of 48 tokens"):
        torch_greedy(model, long_prompt, 4, eos_id=2)
    with pytest.raises(InputError, match="exceeds the model's context"):
        torch_logits_trace(model, tok("x" * 40).input_ids, 10)
    with pytest.raises(InputError, match="outside the model's vocabulary"):
        torch_greedy(model, [1, 5000], 2, eos_id=2)


def test_different_tokenizers_are_refused_for_token_kd(tmp_path: Path, tiny: Path) -> None:
    same = make_tiny_llama(tmp_path / "same", tokenizer_dir=tiny, **TINY)
    check_same_tokenizer(tiny, same)
    build_char_tokenizer(tmp_path / "digits", alphabet="0123456789+-*=; #")
    other = make_tiny_llama(tmp_path / "other", tokenizer_dir=tmp_path / "digits", **TINY)
    with pytest.raises(InputError, match="different tokenizers.*Token-level KD.*one tokenizer.*Sequence-level KD"):
        check_same_tokenizer(tiny, other)


def test_bad_folders_are_refused(tmp_path: Path, tiny: Path) -> None:
    with pytest.raises(InputError, match="does not exist.*never downloads"):
        check_causal_lm_folder("meta-llama/Llama-3.2-1B")
    with pytest.raises(InputError, match="no config.json"):
        check_causal_lm_folder(tmp_path)
    enc = shutil.copytree(tiny, tmp_path / "encoder")
    cfg = json.loads((enc / "config.json").read_text())
    (enc / "config.json").write_text(json.dumps({**cfg, "architectures": ["BertModel"]}))
    with pytest.raises(InputError, match="not a causal language model"):
        check_causal_lm_folder(enc)
    pickled = shutil.copytree(tiny, tmp_path / "pickled")
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(InputError, match="pickled pytorch_model.bin"):
        check_causal_lm_folder(pickled)
    no_tok = shutil.copytree(tiny, tmp_path / "notok")
    (no_tok / "tokenizer.json").unlink()
    with pytest.raises(InputError, match="no tokenizer.json"):
        load_causal_lm(no_tok)
    bad_weights = shutil.copytree(tiny, tmp_path / "truncated")
    data = (bad_weights / "model.safetensors").read_bytes()
    (bad_weights / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="could not be loaded"):
        load_causal_lm(bad_weights)
