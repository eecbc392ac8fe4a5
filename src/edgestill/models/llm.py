"""Generative (causal) language models from local Hugging Face folders, and the tiny built-in Llama.

A causal-LM folder is what ``save_pretrained`` writes: ``config.json`` naming a ``*ForCausalLM`` architecture,
``model.safetensors``, the fast tokenizer (``tokenizer.json`` + ``tokenizer_config.json`` +
``special_tokens_map.json``) and ``generation_config.json`` (bos/eos/pad ids). Nothing is downloaded: a hub id is
refused like :mod:`edgestill.models.hf` refuses one.

The built-in tokenizer is character-level (:func:`build_char_tokenizer`): a ``tokenizers`` WordLevel model over single
characters, so the text of the built-in corpus tokenizes the same way whether cut at the prompt or not (the ids of
``prompt + completion`` are the prompt's ids followed by the completion's), which the eval arrays rely on.

:func:`torch_logits_trace` and :func:`torch_greedy` are the torch reference every exported KV-cache file is validated
against: greedy, float32, each step a full forward pass over the whole sequence (no cache: mathematically what a
KV-cache decoder computes, with none of its bookkeeping to get wrong). torch, transformers and tokenizers are imported
inside functions only.
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgestill.errors import InputError
from edgestill.models.hf import _FAST_TOKENIZER, _LOCAL_ONLY, _weights
from edgestill.runtimes.generate import LLMInfo, check_prompt

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
"""Ids 0..3 of the built-in tokenizer, in this order (pad is 0: the eval arrays pad prompts with 0)."""
DEFAULT_ALPHABET = "".join(c for c in string.printable if c not in "\t\r\x0b\x0c")
"""Printable ASCII and the newline: the built-in corpus uses a few dozen of them; the rest keep a user's text (a
Socratic generations file) from turning into ``<unk>``."""
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@dataclass(frozen=True, kw_only=True)
class SpecialIds:
    """The token ids generation needs: bos starts a prompt, eos ends a completion, pad fills a batch."""

    bos: int | None
    eos: int | None
    pad: int | None


def build_char_tokenizer(out_dir: str | os.PathLike[str], alphabet: str | None = None) -> Path:
    """Write a character-level fast tokenizer (tokenizer.json, tokenizer_config.json, special_tokens_map.json).

    Ids: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, ``<unk>`` 3, then each character of ``alphabet`` in order (duplicates
    dropped). Encoding a single text prepends ``<bos>`` (``add_special_tokens=False`` leaves it out); decoding joins
    the characters. The files are the same bytes for the same alphabet.

    Args:
        out_dir: the folder (created when missing).
        alphabet: the characters (default :data:`DEFAULT_ALPHABET`).

    Returns:
        ``out_dir`` as a Path.

    Raises:
        InputError: an empty alphabet, or one holding a special token's text.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = list(dict.fromkeys(DEFAULT_ALPHABET if alphabet is None else alphabet))
    if not chars:
        raise InputError("the tokenizer alphabet is empty; pass the characters the text uses (or None for printable "
                         "ASCII).")
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), "isolated")  # every character its own token
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])])
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
                                   clean_up_tokenization_spaces=False, model_max_length=1 << 30,
                                   model_input_names=["input_ids", "attention_mask"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out))
    return out


def make_tiny_llama(out_dir: str | os.PathLike[str], *, layers: int = 2, hidden: int = 64, heads: int = 4,
                    kv_heads: int = 2, intermediate: int = 128, context_length: int = 256, seed: int = 0,
                    tokenizer_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write a real Hugging Face ``LlamaForCausalLM`` folder with seeded random weights.

    The folder holds config.json, model.safetensors, the tokenizer files (copied from ``tokenizer_dir``, or a new
    character-level tokenizer) and generation_config.json with the tokenizer's bos/eos/pad ids. The vocabulary is the
    tokenizer's size. Embeddings are not tied to the output head (every exporter sees two plain weights).

    Raises:
        InputError: a size that is not a positive integer, ``hidden`` not divisible by ``heads`` or ``heads`` by
            ``kv_heads``, an odd head size (rotary embeddings split it in halves), a tokenizer folder without
            tokenizer.json.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    sizes = {"layers": layers, "hidden": hidden, "heads": heads, "kv_heads": kv_heads, "intermediate": intermediate,
             "context_length": context_length}
    for key, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{key}={value!r} for a Llama model: it must be a positive integer.")
    if hidden % heads or heads % kv_heads or (hidden // heads) % 2:
        raise InputError(f"hidden={hidden}, heads={heads}, kv_heads={kv_heads}: hidden must be a multiple of heads, "
                         "heads a multiple of kv_heads, and the head size (hidden / heads) even (rotary embeddings).")
    out = Path(out_dir)
    if tokenizer_dir is None:
        build_char_tokenizer(out)
    else:
        _copy_tokenizer(Path(tokenizer_dir), out)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(out), local_files_only=True)
    ids = SpecialIds(bos=tokenizer.bos_token_id, eos=tokenizer.eos_token_id, pad=tokenizer.pad_token_id)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, intermediate_size=intermediate,
                         max_position_embeddings=context_length, bos_token_id=ids.bos, eos_token_id=ids.eos,
                         pad_token_id=ids.pad, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(out), safe_serialization=True)
    GenerationConfig(bos_token_id=ids.bos, eos_token_id=ids.eos, pad_token_id=ids.pad,
                     do_sample=False).save_pretrained(str(out))
    return out


def _copy_tokenizer(src: Path, dst: Path) -> None:
    if not (src / "tokenizer.json").is_file():
        raise InputError(f"tokenizer folder {src} has no tokenizer.json. {_FAST_TOKENIZER}.")
    dst.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            (dst / name).write_bytes((src / name).read_bytes())


def check_causal_lm_folder(path: str | os.PathLike[str], *,
                           trust_checkpoint: bool = False) -> tuple[dict[str, Any], list[Path]]:
    """What can be checked of a local causal-LM folder without loading it: config.json naming a ``*ForCausalLM``
    architecture (no custom code), its weight files and its tokenizer.json.

    Returns:
        The config as a dict and the weight files.

    Raises:
        InputError: not an existing folder (a hub id is refused), no or bad config.json, not a causal LM, custom code
            (auto_map), no weights (or only a pickled pytorch_model.bin without ``trust_checkpoint``), no
            tokenizer.json.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise InputError(f"causal-LM folder {folder} {what}. {_LOCAL_ONLY}")
    cfg = folder / "config.json"
    try:
        config = json.loads(cfg.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{folder} has no config.json, so it is not a Hugging Face model folder. Save the model with "
                         "model.save_pretrained(DIR).") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{cfg} is not valid JSON ({exc}). Re-save the model with model.save_pretrained(DIR).") from None
    if not isinstance(config, dict):
        raise InputError(f"{cfg} holds a JSON {type(config).__name__}, not an object. Re-save the model.")
    architectures = [str(a) for a in config.get("architectures") or ()]
    if not any(a.endswith("ForCausalLM") for a in architectures):
        raise InputError(f"{cfg} names {architectures or 'no architecture'}, not a causal language model "
                         "(*ForCausalLM, e.g. LlamaForCausalLM). Generative distillation and export need a model saved "
                         "from AutoModelForCausalLM; a text encoder or classifier goes through the text-model commands.")
    if config.get("auto_map"):
        raise InputError(f"{cfg} names custom code (auto_map), which edgestill does not run. Use a folder of a "
                         "standard transformers architecture.")
    weights = _weights(folder, trust_checkpoint)
    if not (folder / "tokenizer.json").is_file():
        raise InputError(f"causal-LM folder {folder} has no tokenizer.json: edgestill needs the fast tokenizer file to "
                         f"encode prompts and score answers. {_FAST_TOKENIZER}.")
    return config, weights


def load_causal_lm(path: str | os.PathLike[str], *, trust_checkpoint: bool = False) -> tuple[Any, Any]:
    """Load a local causal-LM folder: the transformers model (float32, eval mode) and its fast tokenizer.

    Raises:
        InputError: what :func:`check_causal_lm_folder` refuses; weights that do not fit the config; a tokenizer
            with more tokens than the model's vocabulary, or without an eos token.
    """
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    config, weights = check_causal_lm_folder(path, trust_checkpoint=trust_checkpoint)
    folder = Path(path).expanduser().resolve()
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False, dtype=torch.float32,
            use_safetensors=weights[0].suffix != ".bin", output_loading_info=True)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, SafetensorError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise InputError(f"causal-LM folder {folder} could not be loaded by transformers ({type(exc).__name__}: "
                         f"{first}). The weights may be truncated or saved from another config; re-save the model "
                         "with model.save_pretrained(DIR).") from None
    bad = [*info.get("missing_keys", ()), *(str(k[0]) if isinstance(k, tuple) else str(k)
                                            for k in info.get("mismatched_keys", ()))]
    if bad:
        raise InputError(f"the weights in {folder} do not fit its config.json ({', '.join(bad[:8])}); transformers "
                         "would fill them with random values. Copy the folder again or re-save it.")
    vocab = int(config.get("vocab_size") or model.config.vocab_size)
    if len(tokenizer) > vocab:
        raise InputError(f"{folder / 'tokenizer.json'} has {len(tokenizer)} tokens but the model's vocabulary is "
                         f"{vocab}: the tokenizer belongs to another model. Copy the model's own tokenizer files.")
    if special_ids(model, tokenizer).eos is None:
        raise InputError(f"causal-LM folder {folder} names no eos token (generation_config.json, config.json or the "
                         "tokenizer's eos_token): generation could never stop. Set eos_token_id and re-save.")
    return model.eval(), tokenizer


def special_ids(model: Any, tokenizer: Any) -> SpecialIds:
    """bos/eos/pad ids: the generation config's, else the model config's, else the tokenizer's (pad falls back to
    eos, as Llama folders often have none)."""
    sources = [getattr(model, "generation_config", None), model.config]

    def first(name: str) -> int | None:
        for src in sources:
            value = getattr(src, f"{name}_token_id", None) if src is not None else None
            if isinstance(value, list):
                value = value[0] if value else None
            if value is not None:
                return int(value)
        value = getattr(tokenizer, f"{name}_token_id", None)
        return None if value is None else int(value)

    eos = first("eos")
    pad = first("pad")
    return SpecialIds(bos=first("bos"), eos=eos, pad=eos if pad is None else pad)


def check_same_tokenizer(teacher_dir: str | os.PathLike[str], student_dir: str | os.PathLike[str]) -> None:
    """Refuse a teacher and a student that do not share one tokenizer (same vocabulary, same special ids).

    Token-level KD compares the two models' distributions position by position over one vocabulary, so it needs this;
    sequence-level KD trains on the teacher's *text*, which the student's own tokenizer re-encodes, so it does not
    call this check.

    Raises:
        InputError: a missing tokenizer.json, or vocabularies / special ids that differ (the first differences named).
    """
    from transformers import PreTrainedTokenizerFast

    found = {}
    for role, folder in (("teacher", Path(teacher_dir)), ("student", Path(student_dir))):
        if not (folder / "tokenizer.json").is_file():
            raise InputError(f"{role} folder {folder} has no tokenizer.json. {_FAST_TOKENIZER}.")
        tok = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
        found[role] = (tok.get_vocab(), {n: getattr(tok, f"{n}_token_id") for n in ("bos", "eos", "pad", "unk")})
    (t_vocab, t_ids), (s_vocab, s_ids) = found["teacher"], found["student"]
    differences = [f"{n} id {t_ids[n]} vs {s_ids[n]}" for n in t_ids if t_ids[n] != s_ids[n]]
    if t_vocab != s_vocab:
        changed = sorted(k for k in t_vocab.keys() | s_vocab.keys() if t_vocab.get(k) != s_vocab.get(k))
        differences.insert(0, f"{len(t_vocab)} vs {len(s_vocab)} tokens, {len(changed)} differing (e.g. "
                              f"{', '.join(repr(k) for k in changed[:3])})")
    if differences:
        raise InputError(f"the teacher {teacher_dir} and the student {student_dir} have different tokenizers "
                         f"({'; '.join(differences)}). Token-level KD compares the two models' next-token "
                         "distributions over one vocabulary, so it needs one tokenizer: build the student with the "
                         "teacher's tokenizer (make_tiny_llama(..., tokenizer_dir=TEACHER)). Sequence-level KD "
                         "(mode seq-kd or socratic) trains on the teacher's text and works across tokenizers.")


def _context_info(model: Any) -> LLMInfo:
    config = model.config
    return LLMInfo(vocab_size=int(config.vocab_size), context_length=int(config.max_position_embeddings),
                   eos_token_id=getattr(config, "eos_token_id", None))


def _check_ids(model: Any, prompt_ids: Sequence[int], new_tokens: int) -> list[int]:
    """The prompt as a list of ints after refusing one that is empty, out of the vocabulary or too long."""
    info = _context_info(model)
    ids = [int(i) for i in prompt_ids]
    check_prompt(info, len(ids), new_tokens)
    outside = [i for i in ids if not 0 <= i < info.vocab_size]
    if outside:
        raise InputError(f"prompt token ids {outside[:5]} are outside the model's vocabulary of {info.vocab_size}.")
    return ids


def torch_logits_trace(model: Any, prompt_ids: Sequence[int], steps: int) -> np.ndarray:
    """The greedy trace's logits, float32 ``[steps + 1, vocab]`` (the :class:`~edgestill.runtimes.generate.Generator`
    contract): row 0 at the prompt's last position, row ``i`` after appending the argmax of row ``i - 1``.

    Raises:
        InputError: an empty prompt, ids outside the vocabulary, or ``len(prompt) + steps`` past the context.
    """
    import torch

    ids = _check_ids(model, prompt_ids, steps)
    rows = []
    with torch.no_grad():
        for _ in range(steps + 1):
            logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1].float()
            rows.append(logits.numpy().copy())
            ids.append(int(logits.argmax()))
    return np.stack(rows).astype(np.float32)


def torch_greedy(model: Any, prompt_ids: Sequence[int], max_new_tokens: int, eos_id: int | None) -> list[int]:
    """Greedy decoding in float32: the new tokens, ending with ``eos_id`` when it was generated before
    ``max_new_tokens`` tokens.

    Raises:
        InputError: as :func:`torch_logits_trace` (with ``max_new_tokens`` for ``steps``).
    """
    import torch

    ids = _check_ids(model, prompt_ids, max_new_tokens)
    new: list[int] = []
    with torch.no_grad():
        while len(new) < max_new_tokens:
            token = int(model(input_ids=torch.tensor([ids + new]), use_cache=False).logits[0, -1].argmax())
            new.append(token)
            if token == eos_id:
                break
    return new
