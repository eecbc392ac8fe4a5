"""Raw text into a text model's named integer inputs, torch-free: the tokenizer file kept beside an artifact.

An artifact exported from a Hugging Face folder carries ``source["text"]`` (task, the tokenizer file's name inside the
artifact folder, the maximum sequence length, whether the length is dynamic, labels) and its inputs say what each one
means (``TensorSpec.kind``: ids, mask, type_ids). :class:`TextEncoder` turns texts into those inputs in the file's
dtypes (int32 for TFLite), padded to the file's sequence length (or to the longest text where the length is dynamic);
:func:`run_text` runs them through a session. ``tokenizers`` (Rust, no torch) is imported inside functions only: the
runner never needs it, so a device that only times a model does not either.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgestill.artifact import Artifact, TensorSpec
from edgestill.errors import InputError

if TYPE_CHECKING:
    from edgestill.runtimes.base import Session

TEXT_KINDS: tuple[str, ...] = ("ids", "mask", "type_ids")
"""The input kinds a tokenizer fills: token ids, the attention mask (1 for a token, 0 for padding), token type ids."""
KIND_BY_NAME: Mapping[str, str] = {"input_ids": "ids", "attention_mask": "mask", "token_type_ids": "type_ids"}
"""The Hugging Face input names, for specs written before inputs carried a kind."""
PAD_TOKENS: tuple[str, ...] = ("[PAD]", "<pad>")  # BERT/WordPiece and RoBERTa/BPE, when tokenizer.json sets no padding
MAX_TEXTS = 1_000_000  # a batch this large is a mistake (a file read as one text per character?), not a workload
_MAKE_FAST = ("Save a fast tokenizer file with: from transformers import AutoTokenizer; "
              "AutoTokenizer.from_pretrained(FOLDER).save_pretrained(FOLDER)")


@dataclass(frozen=True, kw_only=True)
class Tokens:
    """A batch of tokenized texts, padded to one length: ids, mask and type ids, each (n, length) int64."""

    ids: np.ndarray
    mask: np.ndarray
    type_ids: np.ndarray

    def by_kind(self, kind: str) -> np.ndarray:
        return {"ids": self.ids, "mask": self.mask, "type_ids": self.type_ids}[kind]


def load_tokenizer(path: str | os.PathLike[str], *, what: str = "tokenizer") -> Any:
    """Read a ``tokenizer.json`` (the ``tokenizers`` library's format, what a fast Hugging Face tokenizer saves).

    Raises:
        InputError: the file is missing, not a file, or not a tokenizer the library can read.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} {p} does not exist or is not a file. A text model needs its fast tokenizer file "
                         f"(tokenizer.json). {_MAKE_FAST}.")
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise InputError("raw text needs the 'tokenizers' package (pip install tokenizers, or pip install 'edgestill[hf]'); "
                         "or pass token ids to Session.run instead.") from None
    try:
        return Tokenizer.from_file(str(p))
    except Exception as exc:  # the Rust side raises a bare Exception for bad JSON and for unknown components alike
        raise InputError(f"{what} {p} is not a tokenizer file the tokenizers library can read ({str(exc).splitlines()[0]}). "
                         f"It may be truncated or from a slow (Python) tokenizer. {_MAKE_FAST}.") from None


def pad_id(tokenizer: Any) -> int:
    """The id padding uses: the tokenizer file's own padding setting, else its [PAD] or <pad> token, else 0."""
    padding = tokenizer.padding
    if padding and padding.get("pad_id") is not None:
        return int(padding["pad_id"])
    for token in PAD_TOKENS:
        found = tokenizer.token_to_id(token)
        if found is not None:
            return int(found)
    return 0


def tokenize(tokenizer: Any, texts: Sequence[str], *, max_length: int, pad_to: int | None = None,
             truncate: bool = False, what: str = "text") -> Tokens:
    """Tokenize ``texts`` (special tokens added) and pad them to ``pad_to`` tokens, or to the longest one when None.

    The tokenizer file's own truncation and padding settings are ignored: the length is the model's, not the file's.

    Raises:
        InputError: no texts, a text that is not a string, or one longer than ``max_length`` tokens while
            ``truncate`` is off (the message names the first such text by index, with its token count).
    """
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise InputError(f"no {what}s to encode: pass at least one string.")
    if len(texts) > MAX_TEXTS:
        raise InputError(f"{len(texts)} {what}s in one call; at most {MAX_TEXTS}. Encode them in batches.")
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise InputError(f"{what} {bad} is a {type(texts[bad]).__name__}, not a string. Pass a list of strings.")
    if max_length < 1 or (pad_to is not None and not 1 <= pad_to <= max_length):
        raise InputError(f"sequence length {pad_to} with a maximum of {max_length} tokens: both must be >= 1, "
                         "the length at most the maximum.")
    tokenizer.no_truncation()
    tokenizer.no_padding()
    encodings = tokenizer.encode_batch(texts)
    limit = pad_to or max_length
    too_long = [(i, len(e.ids)) for i, e in enumerate(encodings) if len(e.ids) > limit]
    if too_long:
        if not truncate:
            i, n = too_long[0]
            more = f" ({len(too_long)} {what}s are too long)" if len(too_long) > 1 else ""
            raise InputError(f"{what} {i} ({_preview(texts[i])}) is {n} tokens long, special tokens included; the model "
                             f"takes at most {limit}{more}. Shorten it, or ask for truncation (truncate=True, "
                             "--truncate) to cut it to the model's length.")
        tokenizer.enable_truncation(limit)
        try:
            encodings = tokenizer.encode_batch(texts)
        finally:
            tokenizer.no_truncation()
    length = pad_to or max(len(e.ids) for e in encodings)
    n = len(encodings)
    ids = np.full((n, length), pad_id(tokenizer), dtype=np.int64)
    mask = np.zeros((n, length), dtype=np.int64)
    type_ids = np.zeros((n, length), dtype=np.int64)
    for row, e in enumerate(encodings):
        k = len(e.ids)
        ids[row, :k] = e.ids
        mask[row, :k] = e.attention_mask
        type_ids[row, :k] = e.type_ids
    return Tokens(ids=ids, mask=mask, type_ids=type_ids)


def _preview(text: str, width: int = 40) -> str:
    return repr(text if len(text) <= width else text[:width] + "...")


def text_kind(spec: TensorSpec) -> str:
    """What a tokenizer puts into input ``spec``: its recorded kind, else the one its Hugging Face name implies.

    Raises:
        InputError: the input is not one a tokenizer fills (a float input, an unknown integer input).
    """
    kind = spec.kind or KIND_BY_NAME.get(spec.name)
    if kind not in TEXT_KINDS:
        raise InputError(f"input {spec.name!r} (kind {spec.kind or 'unknown'}, dtype {spec.dtype}) is not one a tokenizer "
                         f"fills; text models take {', '.join(KIND_BY_NAME)}. Pass arrays with Session.run instead.")
    return kind


@dataclass(frozen=True, kw_only=True)
class TextEncoder:
    """Encodes raw text to a model's named inputs: the tokenizer file, the inputs it fills, the maximum length.

    A static sequence length (an int in the inputs' dim 1) pads every batch to it; a dynamic one (a string dim) pads
    to the batch's longest text, at most ``max_length`` tokens.
    """

    tokenizer_file: Path
    inputs: tuple[TensorSpec, ...]
    max_length: int
    _tokenizer: list = field(default_factory=list, repr=False, compare=False)  # loaded on first use

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if not self.inputs:
            raise InputError("a text encoder needs at least one input (input_ids).")
        for spec in self.inputs:
            text_kind(spec)
            if len(spec.shape) != 2:
                raise InputError(f"text input {spec.name!r} has shape {list(spec.shape)}; text inputs are "
                                 "(batch, sequence).")
        if not isinstance(self.max_length, int) or isinstance(self.max_length, bool) or self.max_length < 1:
            raise InputError(f"a text model's max_length must be a whole number >= 1, got {self.max_length!r}.")

    @property
    def seq_len(self) -> int | None:
        """The fixed sequence length of the inputs, or None where it is dynamic."""
        dims = {spec.shape[1] for spec in self.inputs}
        fixed = [d for d in dims if isinstance(d, int) and d > 0]
        return fixed[0] if fixed else None

    @property
    def tokenizer(self) -> Any:
        if not self._tokenizer:
            self._tokenizer.append(load_tokenizer(self.tokenizer_file))
        return self._tokenizer[0]

    def encode(self, texts: Sequence[str], *, truncate: bool = False) -> dict[str, np.ndarray]:
        """Texts → {input name: (n, length) array in the input's file dtype}.

        Raises:
            InputError: see :func:`tokenize` (no texts, not strings, a text too long without ``truncate``).
        """
        seq = self.seq_len
        tokens = tokenize(self.tokenizer, texts, max_length=seq or self.max_length, pad_to=seq, truncate=truncate)
        return {spec.name: tokens.by_kind(text_kind(spec)).astype(spec.dtype) for spec in self.inputs}

    @classmethod
    def for_artifact(cls, artifact: Artifact) -> TextEncoder:
        """The encoder of an artifact with text facts (``source["text"]``, see the module docstring).

        Raises:
            InputError: the artifact has no text facts or tokenizer; the tokenizer's name leaves the artifact folder,
                is not listed in its files, or the file changed since export; a bad max_length.
        """
        text = artifact.source.get("text")
        where = f"artifact {artifact.manifest_path}"
        if not isinstance(text, dict) or not text.get("tokenizer"):
            raise InputError(f"{where} has no tokenizer, so it cannot take raw text: it was not exported from a Hugging "
                             "Face folder with a tokenizer.json. Pass token ids to Session.run, or re-export the model "
                             "from its folder (edgestill export --model HF_DIR).")
        name = text["tokenizer"]
        root = artifact.directory.resolve()
        if not isinstance(name, str) or Path(name).is_absolute() or not _inside(root, root / name):
            raise InputError(f"{where} names tokenizer {name!r}, which is not a file inside the artifact's folder; "
                             "a manifest may only name files beside it. Re-export the artifact.")
        if name not in artifact.files:
            raise InputError(f"{where} names tokenizer {name!r} but does not list it in its files (with its sha256). "
                             "Re-export the artifact.")
        path = artifact.directory / name
        if not path.is_file():
            raise InputError(f"{where} names tokenizer {name!r}, which is missing from {artifact.directory}. Copy the "
                             "whole artifact folder (manifest, model and tokenizer files together).")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != artifact.files[name]:
            raise InputError(f"{where}: tokenizer {name!r} changed since export (sha256 {digest[:12]}..., the manifest "
                             f"records {str(artifact.files[name])[:12]}...). Re-export the artifact.")
        max_length = text.get("max_length")
        specs = [s for s in artifact.inputs if (s.kind or KIND_BY_NAME.get(s.name)) in TEXT_KINDS]
        if len(specs) != len(artifact.inputs):
            other = [s.name for s in artifact.inputs if s not in specs]
            raise InputError(f"{where} takes inputs {other} that a tokenizer does not fill; raw text needs a model whose "
                             f"inputs are all text inputs ({', '.join(KIND_BY_NAME)}).")
        return cls(tokenizer_file=path, inputs=tuple(specs), max_length=max_length)


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root)
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def run_text(session: Session, texts: Sequence[str], *, encoder: TextEncoder | None = None,
             truncate: bool = False) -> dict[str, np.ndarray]:
    """Run raw texts through a session of a text artifact: {output name: (len(texts), ...) array}.

    A file with a fixed batch of 1 gets the texts one at a time (outputs concatenated). ``encoder`` defaults to the
    session's artifact's (:meth:`TextEncoder.for_artifact`); pass one to reuse it across calls.

    Raises:
        InputError: the artifact has no tokenizer, or see :meth:`TextEncoder.encode`.
    """
    encoder = encoder or TextEncoder.for_artifact(session.artifact)
    feed = encoder.encode(texts, truncate=truncate)
    batch = {spec.shape[0] for spec in session.input_specs}
    n = len(next(iter(feed.values())))
    fixed = next((b for b in batch if isinstance(b, int) and b > 0), None)
    if fixed is None or fixed == n:
        return session.run(feed)
    if fixed != 1:
        raise InputError(f"the model takes a fixed batch of {fixed}; pass {fixed} texts at a time (got {n}).")
    parts = [session.run({k: v[i : i + 1] for k, v in feed.items()}) for i in range(n)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
