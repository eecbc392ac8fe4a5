"""Hugging Face text models from local folders (config.json + safetensors weights + tokenizer.json), never downloaded.

:func:`load_hf_model` wraps a transformers model in a module with a positional ``forward(input_ids, attention_mask[,
token_type_ids])`` that every exporter traces the same way: a sequence classifier gives its logits ``(N, num_labels)``,
any other model the attention-mask-weighted mean of its last hidden state ``(N, hidden)`` (a sentence embedding, the
pooling inside the graph so every format is validated on the embedding itself). Attention is transformers' "eager"
implementation: plain matmul + softmax, which torch.onnx, OpenVINO and litert-torch all convert.

:func:`make_tiny_hf` writes a real folder with random weights and a WordPiece tokenizer trained on generated text, for
tests and the demo. torch, transformers and tokenizers are imported inside functions only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from edgestill.errors import InputError
from edgestill.models.inputs import InputShape, LoadedModel

if TYPE_CHECKING:
    import torch

Task = Literal["classify", "embed"]
TASKS: tuple[str, ...] = ("classify", "embed")

FAMILIES: Mapping[str, str] = {
    "bert": "BERT (and MiniLM, which is a BERT)",
    "distilbert": "DistilBERT",
    "roberta": "RoBERTa",
    "xlm-roberta": "XLM-RoBERTa",
    "electra": "ELECTRA",
    "mpnet": "MPNet",
}
"""config.model_type -> what the family is called. Each was loaded, run and compared with transformers here."""
_POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "mpnet": 2}  # positions start after the padding index: max_pos - 2
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHT_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
                   "merges.txt", "sentencepiece.bpe.model", "spm.model")
"""What :func:`save_hf` copies from a tokenizer folder (whichever exist); tokenizer.json is the one edgestill reads."""
DEFAULT_SEQ_LEN = 128
_FAST_TOKENIZER = ("Make one from the folder's slow tokenizer files with: python -c \"from transformers import "
                   "AutoTokenizer; AutoTokenizer.from_pretrained('DIR').save_pretrained('DIR')\"")
_LOCAL_ONLY = ("edgestill reads local Hugging Face folders only and never downloads (a hub id is not a folder). "
               "Download it once yourself, e.g. huggingface-cli download NAME --local-dir DIR, and pass DIR.")


def is_hf_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder with a config.json (a Hugging Face model folder)."""
    p = Path(path)
    return p.is_dir() and (p / "config.json").is_file()


def _read_config(folder: Path) -> dict[str, Any]:
    if not folder.exists():
        raise InputError(f"model folder {folder} does not exist. {_LOCAL_ONLY}")
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder; a Hugging Face model is a folder with config.json, "
                         "model.safetensors and tokenizer.json.")
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise InputError(f"model folder {folder} has no config.json, so it is not a Hugging Face model folder. Save the "
                         "model with model.save_pretrained(DIR) (it writes config.json and model.safetensors).")
    try:
        d = json.loads(cfg.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{cfg} is not valid JSON ({exc}). Re-save the model with model.save_pretrained(DIR).") from None
    if not isinstance(d, dict):
        raise InputError(f"{cfg} holds a JSON {type(d).__name__}, not an object. Re-save it with model.save_pretrained(DIR).")
    family = d.get("model_type")
    if family not in FAMILIES:
        found = f"model_type {family!r}" if family else "no model_type"
        raise InputError(f"{cfg} has {found}; edgestill takes text encoders of the families "
                         f"{', '.join(FAMILIES.values())} (model_type {', '.join(FAMILIES)}).")
    if d.get("auto_map"):
        raise InputError(f"{cfg} names custom code (auto_map), which edgestill does not run. Use a folder of one of the "
                         f"standard families ({', '.join(FAMILIES.values())}).")
    return d


def _weights(folder: Path, trust: bool) -> list[Path]:
    """The weight files (one, or the shards an index names), refusing pickles unless trusted."""
    for name in (*WEIGHT_FILES, *(PICKLE_WEIGHT_FILES if trust else ())):
        p = folder / name
        if not p.is_file():
            continue
        if not name.endswith(".index.json"):
            return [p]
        try:
            shards = sorted(set(json.loads(p.read_text(encoding="utf-8"))["weight_map"].values()))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"{p} is not a weight index (JSON with a weight_map): {exc}. Re-save the model.") from None
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise InputError(f"{p} names shards missing from {folder}: {', '.join(missing[:5])}. Copy the whole folder.")
        return [folder / s for s in shards]
    if any((folder / n).is_file() for n in PICKLE_WEIGHT_FILES):
        raise InputError(f"model folder {folder} has its weights only as a pickled pytorch_model.bin; loading it could run "
                         "code from the file. Convert it to safetensors (model.save_pretrained(DIR, "
                         "safe_serialization=True)), or, only if you trust where it came from, pass --trust-checkpoint.")
    raise InputError(f"model folder {folder} has no weights: expected model.safetensors (or a sharded "
                     "model.safetensors.index.json). Copy the weights into the folder, or re-save the model with "
                     "model.save_pretrained(DIR).")


def _sha256(paths: Sequence[Path]) -> str:
    """sha256 of the one weight file, or of the shards' sha256 in order."""
    digests = []
    for p in paths:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digests.append(h.hexdigest())
    return digests[0] if len(digests) == 1 else hashlib.sha256("".join(digests).encode()).hexdigest()


def max_seq_len(config: Mapping[str, Any]) -> int:
    """The longest sequence the model takes: max_position_embeddings, less RoBERTa's offset for the padding index."""
    return int(config.get("max_position_embeddings", 512)) - _POSITION_OFFSET.get(config.get("model_type", ""), 0)


def _task_of(config: Mapping[str, Any], task: str | None, folder: Path) -> str:
    classifier = any(str(a).endswith("ForSequenceClassification") for a in config.get("architectures") or ())
    if task is None:
        return "classify" if classifier else "embed"
    if task not in TASKS:
        raise InputError(f"task {task!r} is not one edgestill knows; valid: {', '.join(TASKS)}.")
    if task == "classify" and not classifier:
        raise InputError(f"task 'classify' asks for a sequence classifier, but {folder / 'config.json'} names "
                         f"{config.get('architectures') or 'no architecture'}: its classifier head would be random. Use "
                         "task 'embed' for this folder, or a folder saved from a *ForSequenceClassification model.")
    return task


def check_hf_folder(path: str | os.PathLike[str], *, task: str | None = None,
                    trust_checkpoint: bool = False) -> tuple[dict[str, Any], str, list[Path]]:
    """What can be checked of a local Hugging Face folder without loading it: its config.json (a supported family, no
    custom code), the task its architecture fits, its weight files and its tokenizer.json.

    Returns:
        The config as a dict, the task ("classify" or "embed") and the weight files.

    Raises:
        InputError: see :func:`load_hf_model` (everything it refuses before reading the weights).
    """
    folder = Path(path).expanduser()
    config_d = _read_config(folder)
    chosen = _task_of(config_d, task, folder)
    weights = _weights(folder, trust_checkpoint)
    if not (folder / "tokenizer.json").is_file():
        raise InputError(f"model folder {folder} has no tokenizer.json: edgestill needs the fast tokenizer file to "
                         f"encode text (validation data, raw text at run time). {_FAST_TOKENIZER}.")
    return config_d, chosen, weights


def load_hf_model(path: str | os.PathLike[str], *, seq_len: int | None = None, dynamic_batch: bool = False,
                  dynamic_seq: bool = False, task: str | None = None, trust_checkpoint: bool = False) -> LoadedModel:
    """Load a local Hugging Face folder as a :class:`LoadedModel` (see the module docstring for the wrapper).

    Args:
        seq_len: the traced sequence length (default min(128, the model's maximum)).
        task: "classify" (logits; the folder must hold a *ForSequenceClassification) or "embed" (pooled last
            hidden state: mean, or what a sentence-transformers modules.json says, see :func:`read_head`); default
            from config.architectures.
        trust_checkpoint: accept a pickled pytorch_model.bin when there is no safetensors file.

    Raises:
        InputError: not an existing folder (hub ids are refused), no or bad config.json, an unsupported family or
            custom code, no weights (or only a pickle without ``trust_checkpoint``), weights that do not fit the
            config, no tokenizer.json, a tokenizer larger than the vocabulary, ``seq_len`` out of 1..maximum, a
            sentence-transformers module list edgestill cannot apply (see :func:`read_head`).
    """
    config_d, chosen, _ = check_hf_folder(path, task=task, trust_checkpoint=trust_checkpoint)
    folder = Path(path).expanduser().resolve()
    weights = _weights(folder, trust_checkpoint)
    tokenizer_file = folder / "tokenizer.json"
    limit = max_seq_len(config_d)
    seq = min(DEFAULT_SEQ_LEN, limit) if seq_len is None else seq_len
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= limit:
        raise InputError(f"sequence length {seq_len!r} for {folder.name}: the model takes 1 to {limit} tokens "
                         f"(max_position_embeddings {config_d.get('max_position_embeddings')}"
                         f"{', less 2 for the padding offset' if config_d['model_type'] in _POSITION_OFFSET else ''}). "
                         f"Pass a sequence length of at most {limit}.")
    from edgestill.runtimes.text import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_file, what=f"tokenizer of {folder.name}:")
    vocab = int(config_d.get("vocab_size", 0))
    if tokenizer.get_vocab_size() > vocab:
        raise InputError(f"{tokenizer_file} has {tokenizer.get_vocab_size()} tokens but the model's vocabulary is {vocab}: "
                         "the tokenizer belongs to another model. Copy the model's own tokenizer files into the folder.")
    head, head_files = (read_head(folder, int(_hidden_size(config_d)), trust=trust_checkpoint) if chosen == "embed"
                        else (None, []))
    hf = _from_pretrained(folder, chosen, weights)
    takes_types = "token_type_ids" in _parameters(hf) and int(config_d.get("type_vocab_size", 0) or 0) > 1
    model = wrap(hf, chosen, token_types=takes_types, head=head)
    names = ["input_ids", "attention_mask", *(["token_type_ids"] if takes_types else [])]
    shapes = [InputShape(dims=(1, seq), dynamic_batch=dynamic_batch, dynamic_seq=dynamic_seq, dtype="int64",
                         name=name, kind=kind, low=0, high=high)
              for name, kind, high in (("input_ids", "ids", vocab), ("attention_mask", "mask", 2),
                                       ("token_type_ids", "type_ids", int(config_d.get("type_vocab_size") or 1)))
              if name in names]
    text: dict[str, Any] = {"task": chosen, "tokenizer_path": str(tokenizer_file), "max_length": seq,
                            "dynamic_length": dynamic_seq}
    if chosen == "classify":
        text["labels"] = _labels(hf.config)
    else:
        text["head"] = (head or Head()).to_dict()
    source = {"kind": "hf", "path": str(folder), "family": config_d["model_type"],
              "architecture": type(hf).__name__, "sha256": _sha256([*weights, *head_files]), "text": text}
    return LoadedModel(model=model, example_inputs=example_inputs(shapes, pad=_pad_id(tokenizer)), input_shapes=shapes,
                       source=source)


def _pad_id(tokenizer: Any) -> int:
    from edgestill.runtimes.text import pad_id

    return pad_id(tokenizer)


def _labels(config: Any) -> list[str]:
    id2label = getattr(config, "id2label", None) or {}
    return [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(int(config.num_labels))]


def _parameters(hf: Any) -> list[str]:
    import inspect

    return list(inspect.signature(hf.forward).parameters)


def _from_pretrained(folder: Path, task: str, weights: list[Path]) -> Any:
    """The transformers model in eval mode, eager attention, float32; refused when the weights do not fit the config."""
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModel, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    cls = AutoModelForSequenceClassification if task == "classify" else AutoModel
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the unused-weights notice for an embedder read from a classifier folder
    try:
        hf, info = cls.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False,
                                       attn_implementation="eager", torch_dtype=torch.float32,
                                       use_safetensors=weights[0].suffix != ".bin", output_loading_info=True)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, SafetensorError) as exc:
        raise InputError(f"model folder {folder} could not be loaded by transformers ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}). The weights may be truncated or saved from "
                         "another config; re-save the model with model.save_pretrained(DIR).") from None
    finally:
        hf_logging.set_verbosity(level)
    missing = [k for k in info.get("missing_keys", ()) if not k.startswith("pooler.")]  # mean pooling skips the pooler
    mismatched = [str(k[0]) if isinstance(k, tuple) else str(k) for k in info.get("mismatched_keys", ())]
    if missing or mismatched:
        listed = ", ".join((missing + mismatched)[:8])
        raise InputError(f"the weights in {folder} do not fit its config.json: {len(missing)} missing and "
                         f"{len(mismatched)} mismatched tensors ({listed}); transformers would fill them with random "
                         "values. Copy the folder again, or re-save it with model.save_pretrained(DIR).")
    return hf.eval()


def wrap(hf: Any, task: str, *, token_types: bool, head: Head | None = None) -> torch.nn.Module:
    """The exportable module around a transformers model: positional (input_ids, attention_mask[, token_type_ids])
    → logits (task "classify") or the pooled last hidden state (task "embed": ``head``, default mean pooling)."""
    classes = _wrapper_classes()
    return classes[token_types](hf, task, head or Head()).eval()


_WRAPPERS: dict[bool, Any] = {}


def _wrapper_classes() -> dict[bool, Any]:
    """The two wrapper classes (defined once, on first use, so that importing this module does not import torch)."""
    if _WRAPPERS:
        return _WRAPPERS
    import torch

    class HFTextModel(torch.nn.Module):
        """A Hugging Face text model with positional integer inputs and one output tensor."""

        def __init__(self, hf: Any, task: str, head: Head):
            super().__init__()
            self.hf = hf
            self.task = task
            self.head = head
            self.projection = head.linear  # a registered submodule (or None): moves and saves with the model

        def _output(self, out: Any, attention_mask: torch.Tensor) -> torch.Tensor:
            if self.task == "classify":
                return out.logits
            hidden = out.last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            if self.head.pooling == "cls":
                pooled = hidden[:, 0]
            elif self.head.pooling == "max":  # padding set far below any value, as sentence-transformers does
                pooled = torch.where(weights > 0, hidden, torch.full_like(hidden, -1e9)).max(1).values
            else:
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            if self.projection is not None:
                pooled = self.projection(pooled)
                if self.head.activation == "tanh":
                    pooled = torch.tanh(pooled)
            if self.head.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
            return pooled

    class HFTextPair(HFTextModel):
        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self._output(self.hf(input_ids=input_ids, attention_mask=attention_mask), attention_mask)

    class HFTextTriple(HFTextModel):
        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
            out = self.hf(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return self._output(out, attention_mask)

    _WRAPPERS.update({False: HFTextPair, True: HFTextTriple})
    return _WRAPPERS


# --- sentence-transformers heads (modules.json): pooling, one Dense projection, L2 normalisation ---------------------

POOLING_MODES: tuple[str, ...] = ("mean", "cls", "max")
_ST = "sentence_transformers.models."
_ACTIVATIONS = {"torch.nn.modules.linear.Identity": "identity", "torch.nn.modules.activation.Tanh": "tanh"}
_ACTIVATION_NAMES = {v: k for k, v in _ACTIVATIONS.items()}
_POOLING_KEYS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max"}
_OTHER_POOLING = ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")


@dataclass(frozen=True)
class Head:
    """What an embedder does after the transformer: pooling (mean, cls, max), an optional linear projection with its
    activation (identity, tanh) and an optional L2 normalisation; the default is plain mean pooling."""

    pooling: str = "mean"
    linear: Any = None  # torch.nn.Linear | None
    activation: str = "identity"
    normalize: bool = False

    def to_dict(self) -> dict[str, Any]:
        dense = None if self.linear is None else [int(self.linear.in_features), int(self.linear.out_features)]
        return {"pooling": self.pooling, "dense": dense, "activation": self.activation if dense else None,
                "normalize": self.normalize}


def _hidden_size(config: Mapping[str, Any]) -> int:
    return int(config.get("hidden_size") or config.get("dim") or 0)


def read_head(folder: Path, hidden: int, *, trust: bool = False) -> tuple[Head | None, list[Path]]:
    """The embedder head a sentence-transformers folder declares in modules.json (None without one), and the weight
    files it reads. Understood: Transformer (the folder itself, first), Pooling (mean, cls or max tokens), at most one
    Dense (identity or tanh, safetensors weights), Normalize (last).

    Raises:
        InputError: modules.json unreadable, a module type or pooling mode edgestill does not apply (named, with those
            it does), a Transformer module in a subfolder, a Dense whose size or weights do not fit.
    """
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return None, []
    what = f"{modules_file} (a sentence-transformers module list)"
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        kinds = [(str(m["type"]).removeprefix(_ST), str(m.get("path", ""))) for m in modules]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{what} cannot be read ({type(exc).__name__}: {exc}). Re-save the model, or delete "
                         "modules.json to use mean pooling.") from None
    known = ("Transformer", "Pooling", "Dense", "Normalize")
    unknown = [k for k, _ in kinds if k not in known]
    if unknown:
        raise InputError(f"{what} uses module {unknown[0]!r}; edgestill applies {', '.join(known)} (at most one Dense). "
                         "Export the model without it, or delete modules.json to use mean pooling.")
    order = [k for k, _ in kinds]
    if order[:1] != ["Transformer"] or kinds[0][1] not in ("", ".") or order.count("Dense") > 1 \
            or order.count("Pooling") > 1 or ("Normalize" in order and order[-1] != "Normalize"):
        raise InputError(f"{what} lists {order} (paths {[p for _, p in kinds]}); edgestill reads Transformer (the folder "
                         "itself) first, then Pooling, at most one Dense and Normalize last.")
    pooling = "mean"
    if "Pooling" in order:
        pooling = _pooling_mode(folder / kinds[order.index("Pooling")][1], what)
    linear, activation, files = None, "identity", []
    if "Dense" in order:
        linear, activation, files = _dense(folder / kinds[order.index("Dense")][1], hidden, trust)
    return Head(pooling=pooling, linear=linear, activation=activation, normalize="Normalize" in order), files


def _pooling_mode(where: Path, what: str) -> str:
    try:
        cfg = json.loads((where / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"the Pooling module of {what} has no readable {where / 'config.json'} ({exc}).") from None
    modes = [mode for key, mode in _POOLING_KEYS.items() if cfg.get(key)]
    other = [k for k in _OTHER_POOLING if cfg.get(k)]
    if other or len(modes) != 1:
        raise InputError(f"the Pooling module in {where} asks for {modes + other or 'no pooling'}; edgestill applies "
                         f"exactly one of {', '.join(_POOLING_KEYS)}.")
    return modes[0]


def _dense(where: Path, hidden: int, trust: bool) -> tuple[Any, str, list[Path]]:
    import torch

    try:
        cfg = json.loads((where / "config.json").read_text(encoding="utf-8"))
        in_f, out_f = int(cfg["in_features"]), int(cfg["out_features"])
        activation = str(cfg.get("activation_function", "torch.nn.modules.activation.Tanh"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"the Dense module in {where} has no readable config.json with in_features and out_features "
                         f"({type(exc).__name__}: {exc}).") from None
    if activation not in _ACTIVATIONS:
        raise InputError(f"the Dense module in {where} applies {activation}; edgestill applies "
                         f"{', '.join(_ACTIVATIONS)}.")
    if in_f != hidden:
        raise InputError(f"the Dense module in {where} takes {in_f} features but the model's hidden size is {hidden}: "
                         "the folder's parts do not belong together.")
    weights = where / "model.safetensors"
    if not weights.is_file():
        pickled = where / "pytorch_model.bin"
        if not (trust and pickled.is_file()):
            raise InputError(f"the Dense module in {where} has no model.safetensors"
                             f"{' (only a pickled pytorch_model.bin: pass --trust-checkpoint if you trust it)' if pickled.is_file() else ''}. "
                             "Copy the folder again.")
        weights = pickled
    from edgestill.models.checkpoints import read_state_dict

    state = read_state_dict(weights, trust=trust)
    linear = torch.nn.Linear(in_f, out_f, bias="linear.bias" in state)
    try:
        linear.load_state_dict({k.removeprefix("linear."): v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        raise InputError(f"the Dense module's weights in {weights} do not fit its config ({in_f} -> {out_f}): "
                         f"{str(exc).splitlines()[0]}. Copy the folder again.") from None
    return linear.eval(), _ACTIVATIONS[activation], [weights]


def write_head(folder: Path, head: Head, hidden: int) -> None:
    """Write ``head`` as sentence-transformers modules (modules.json, 1_Pooling, 2_Dense, then Normalize) into
    ``folder``; :func:`read_head` reads it back."""
    from safetensors.torch import save_file

    modules = [{"idx": 0, "name": "0", "path": "", "type": f"{_ST}Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": f"{_ST}Pooling"}]
    (folder / "1_Pooling").mkdir()
    pooling = {"word_embedding_dimension": hidden, **{k: mode == head.pooling for k, mode in _POOLING_KEYS.items()},
               **dict.fromkeys(_OTHER_POOLING, False)}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2), encoding="utf-8")
    if head.linear is not None:
        (folder / "2_Dense").mkdir()
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": f"{_ST}Dense"})
        dense = {"in_features": int(head.linear.in_features), "out_features": int(head.linear.out_features),
                 "bias": head.linear.bias is not None, "activation_function": _ACTIVATION_NAMES[head.activation]}
        (folder / "2_Dense" / "config.json").write_text(json.dumps(dense, indent=2), encoding="utf-8")
        save_file({f"linear.{k}": v.detach().contiguous().clone() for k, v in head.linear.state_dict().items()},
                  str(folder / "2_Dense" / "model.safetensors"))
    if head.normalize:
        n = len(modules)
        (folder / f"{n}_Normalize").mkdir()
        modules.append({"idx": n, "name": str(n), "path": f"{n}_Normalize", "type": f"{_ST}Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules, indent=2), encoding="utf-8")


def example_inputs(shapes: Sequence[InputShape], *, pad: int = 0, seed: int = 0) -> tuple:
    """Example int64 tensors for text inputs: ids in [low, high) with a padded tail (pad id), a mask of ones then
    zeros over the last quarter, token types of zeros."""
    import torch

    rng = np.random.default_rng(seed)
    n, seq = shapes[0].dims
    real = max(1, seq - seq // 4)
    out = []
    for s in shapes:
        if s.kind == "ids":
            a = rng.integers(min(s.low or 0, (s.high or 2) - 1), s.high or 2, size=(n, seq))
            a[:, real:] = pad
        elif s.kind == "mask":
            a = np.zeros((n, seq))
            a[:, :real] = 1
        else:
            a = np.zeros((n, seq))
        out.append(torch.from_numpy(a.astype(np.int64)))
    return tuple(out)


# --- tiny folders for tests and the demo ----------------------------------------------------------------------------

_WORDPIECE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_ROBERTA_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # ids 0..4: bos 0, pad 1, eos 2 (RobertaConfig's)
TINY_FAMILIES: tuple[str, ...] = ("bert", "distilbert", "roberta")
TINY_VOCAB = 1000


def train_tokenizer(texts: Sequence[str], *, family: str = "bert", vocab_size: int = TINY_VOCAB) -> Any:
    """A WordPiece ``tokenizers.Tokenizer`` whose vocabulary comes from ``texts``, lower-casing, with the family's
    special tokens and post-processor ([CLS] x [SEP] for BERT/DistilBERT, <s> x </s> for RoBERTa) and padding set.

    The vocabulary is built here, not by ``WordPieceTrainer`` (whose merges break ties in hash order, so the same texts
    gave different ids from run to run): the special tokens, every character alone and as a ``##`` continuation, then
    the most frequent whole words (ties by spelling) up to ``vocab_size``. Any word spells out in characters.
    """
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    roberta = family == "roberta"
    specials = _ROBERTA_SPECIALS if roberta else _WORDPIECE_SPECIALS
    normalizer, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = Counter(w for t in texts for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(t)))
    chars = sorted({c for w in words for c in w})
    vocab = [*specials, *chars, *(f"##{c}" for c in chars)]
    known = set(vocab)
    vocab += [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])) if w not in known]
    unk = "<unk>" if roberta else "[UNK]"
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab[: max(vocab_size, len(specials) + 2 * len(chars))])},
                                     unk_token=unk))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre, decoders.WordPiece()
    first, last, pad = ("<s>", "</s>", "<pad>") if roberta else ("[CLS]", "[SEP]", "[PAD]")
    ids = {t: tok.token_to_id(t) for t in (first, last, pad)}
    pair = f"{first} $A {last} {last} $B {last}" if roberta else f"{first} $A {last} $B:1 {last}:1"
    tok.post_processor = processors.TemplateProcessing(single=f"{first} $A {last}", pair=pair,
                                                       special_tokens=[(first, ids[first]), (last, ids[last])])
    tok.enable_padding(pad_id=ids[pad], pad_token=pad)
    return tok


def _tiny_config(family: str, task: str, *, vocab: int, layers: int, hidden: int, heads: int, intermediate: int,
                 num_labels: int, max_position: int, labels: Sequence[str]) -> Any:
    from transformers import BertConfig, DistilBertConfig, RobertaConfig

    common: dict[str, Any] = {"vocab_size": vocab, "num_labels": num_labels,
                              "id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}}
    if family == "bert":
        cfg = BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                         intermediate_size=intermediate, max_position_embeddings=max_position, pad_token_id=0, **common)
    elif family == "distilbert":
        cfg = DistilBertConfig(dim=hidden, n_layers=layers, n_heads=heads, hidden_dim=intermediate,
                               max_position_embeddings=max_position, pad_token_id=0, **common)
    else:
        cfg = RobertaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                            intermediate_size=intermediate, max_position_embeddings=max_position + 2, type_vocab_size=1,
                            pad_token_id=1, bos_token_id=0, eos_token_id=2, **common)
    prefix = {"bert": "Bert", "distilbert": "DistilBert", "roberta": "Roberta"}[family]
    cfg.architectures = [f"{prefix}ForSequenceClassification" if task == "classify" else f"{prefix}Model"]
    return cfg


def make_tiny_hf(out_dir: str | os.PathLike[str], *, task: str = "classify", family: str = "bert", layers: int = 2,
                 hidden: int = 64, heads: int = 4, intermediate: int = 128, num_labels: int = 4, max_position: int = 128,
                 seed: int = 0, texts: Sequence[str] | None = None) -> Path:
    """Write a Hugging Face folder with random weights (seeded) and a tokenizer trained on ``texts`` (default: 2000
    generated intent sentences of all 8 classes): config.json, model.safetensors, tokenizer.json, tokenizer_config.json.

    ``max_position`` is the longest sequence the model takes (RoBERTa's config gets 2 more, its padding offset).
    The folder is written beside ``out_dir`` and renamed into place, so it is whole or absent.

    Raises:
        InputError: an unknown family or task, sizes that do not fit (hidden not divisible by heads, < 1),
            ``out_dir`` exists and is not empty.
    """
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, PreTrainedTokenizerFast

    if family not in TINY_FAMILIES:
        raise InputError(f"make_tiny_hf builds the families {', '.join(TINY_FAMILIES)}, not {family!r}.")
    if task not in TASKS:
        raise InputError(f"task {task!r} is not one edgestill knows; valid: {', '.join(TASKS)}.")
    if min(layers, hidden, heads, intermediate, num_labels, max_position) < 1 or hidden % heads:
        raise InputError(f"tiny model sizes: layers {layers}, hidden {hidden}, heads {heads}, intermediate {intermediate}, "
                         f"labels {num_labels}, max_position {max_position}; all must be >= 1 and hidden divisible by heads.")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} already exists and is not an empty folder; pass a new folder for the tiny model.")
    from edgestill.data.text import MAX_CLASSES, generated_texts

    if texts is None:  # every class's words, whatever num_labels: the tokenizer covers the whole generated set
        texts = generated_texts(2000, seed=seed, num_classes=MAX_CLASSES).texts
    tok = train_tokenizer(texts, family=family)
    if num_labels <= MAX_CLASSES:
        names = generated_texts(1, num_classes=MAX_CLASSES).class_names[:num_labels]
    else:
        names = [f"LABEL_{i}" for i in range(num_labels)]
    cfg = _tiny_config(family, task, vocab=tok.get_vocab_size(), layers=layers, hidden=hidden, heads=heads,
                       intermediate=intermediate, num_labels=num_labels, max_position=max_position, labels=names)
    torch.manual_seed(seed)
    cls = AutoModelForSequenceClassification if task == "classify" else AutoModel
    model = cls.from_config(cfg, attn_implementation="eager").eval()
    roberta = family == "roberta"
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, model_max_length=max_position,
        **({"bos_token": "<s>", "eos_token": "</s>", "cls_token": "<s>", "sep_token": "</s>", "unk_token": "<unk>",
            "pad_token": "<pad>", "mask_token": "<mask>"} if roberta else
           {"cls_token": "[CLS]", "sep_token": "[SEP]", "unk_token": "[UNK]", "pad_token": "[PAD]", "mask_token": "[MASK]"}))
    return _publish(out, lambda tmp: (model.save_pretrained(tmp, safe_serialization=True), fast.save_pretrained(tmp)))


def _publish(out: Path, write: Any) -> Path:
    """Write a folder through ``write(staging)`` beside ``out``, then rename it into place (out absent or empty)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write(staging)
        if out.is_dir():
            out.rmdir()  # empty (checked by the caller); os.replace cannot replace a folder
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out.resolve()


def save_hf(model: Any, tokenizer_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """Save a transformers model (or the wrapper :func:`load_hf_model` returns) as a folder with safetensors weights and
    the tokenizer files of ``tokenizer_dir`` (those of :data:`TOKENIZER_FILES` that exist): a folder
    :func:`load_hf_model` reads back. A wrapper's embedder head other than mean pooling is written as
    sentence-transformers modules (:func:`write_head`).

    Raises:
        InputError: ``model`` is not a transformers model, ``tokenizer_dir`` has no tokenizer.json, ``out_dir`` exists
            and is not empty.
    """
    hf = getattr(model, "hf", model)
    if not hasattr(hf, "save_pretrained") or not hasattr(hf, "config"):
        raise InputError(f"save_hf saves transformers models; got a {type(model).__name__}.")
    src = Path(tokenizer_dir)
    if not (src / "tokenizer.json").is_file():
        raise InputError(f"{src} has no tokenizer.json to copy beside the model. {_FAST_TOKENIZER}.")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} already exists and is not an empty folder; pass a new folder to save the model in.")

    head = getattr(model, "head", None)

    def write(tmp: Path) -> None:
        hf.save_pretrained(tmp, safe_serialization=True)
        for name in TOKENIZER_FILES:
            if (src / name).is_file():
                shutil.copyfile(src / name, tmp / name)
        if isinstance(head, Head) and head != Head():  # a sentence-transformers head beyond plain mean pooling
            write_head(tmp, head, int(hf.config.hidden_size if hasattr(hf.config, "hidden_size") else hf.config.dim))

    return _publish(out, write)


# --- optimum, for comparison ----------------------------------------------------------------------------------------

OPTIMUM_FORMATS: tuple[str, ...] = ("onnx", "openvino")
_OPTIMUM_TASKS = {"classify": "text-classification", "embed": "feature-extraction"}


def export_with_optimum(path: str | os.PathLike[str], fmt: str, out: str | os.PathLike[str], *,
                        task: str | None = None) -> list[Path]:
    """Export a local folder with optimum's own exporter (optimum-onnx for "onnx", optimum-intel for "openvino"),
    offline, fp32; return the files written (model plus the config and tokenizer files optimum copies).

    Not edgestill's export path (see :mod:`edgestill.export`): optimum exports the transformers model itself, so a
    feature-extraction file outputs ``last_hidden_state`` (N, seq, hidden), not the pooled embedding edgestill validates,
    and it has no TFLite route. It is here to compare against. ``out`` is written beside and renamed into place.

    Raises:
        InputError: a bad folder (as :func:`load_hf_model`), an unknown format or task, ``out`` not empty, the extra
            that holds the exporter not installed.
    """
    folder = Path(path).expanduser()
    config = _read_config(folder)
    folder = folder.resolve()
    _weights(folder, trust=False)
    if fmt not in OPTIMUM_FORMATS:
        raise InputError(f"optimum exports {', '.join(OPTIMUM_FORMATS)}, not {fmt!r} (edgestill's own export writes tflite).")
    chosen = _task_of(config, task, folder)
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InputError(f"{target} already exists and is not an empty folder; pass a new folder for optimum's files.")
    try:
        if fmt == "onnx":
            from optimum.exporters.onnx import main_export as onnx_export
        else:
            from optimum.exporters.openvino import main_export as ov_export
            from optimum.intel import OVConfig
    except ImportError as exc:
        raise InputError(f"optimum's {fmt} exporter is not installed ({exc}); pip install -e '.[hf]'.") from None

    def write(staging: Path) -> None:
        common = {"task": _OPTIMUM_TASKS[chosen], "local_files_only": True, "trust_remote_code": False,
                  "library_name": "transformers"}
        if fmt == "onnx":
            onnx_export(str(folder), output=str(staging), do_validation=True, **common)
        else:  # fp32 weights said explicitly (optimum-intel compresses models of >= 1B parameters to int8 unless told)
            ov_export(str(folder), output=str(staging), ov_config=OVConfig(dtype="fp32"), **common)

    published = _publish(target, write)
    return sorted(p for p in published.rglob("*") if p.is_file())
