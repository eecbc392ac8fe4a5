"""Offline teacher cache for token-level KD of causal LMs: the teacher's top-k raw logits per token, memory-mapped.

The teacher runs once over the training sequences (prompt + completion token ids); training then reads k logits
and k indices per token from disk and never loads the teacher. Row ``j`` of sequence ``i`` is the teacher's
distribution over the token at position ``j + 1`` (a sequence of L tokens has L - 1 rows).

Folder layout (every file written into a fresh folder beside the target, renamed into place when complete):

- ``header.json``: format, k, vocab, teacher / tokenizer / corpus sha256, n sequences, n rows, dtypes, per-file
  byte sizes and sha256.
- ``values.npy`` float16 [rows, k]: the top-k raw logits (temperature-free), largest first; a logit beyond float16's
  range is clamped to ±65504 (counted in the header as ``clamped``).
- ``indices.npy`` uint16 (vocab ≤ 65536) or int32 [rows, k]: their token ids.
- ``rest.npy`` float32 [rows]: logsumexp of the raw logits outside the top-k (-inf when k = vocab), so the
  teacher's mass outside the top-k is known exactly at temperature 1 (see :mod:`edgestill.compress.distill.llm_kd`).
- ``tokens.npy`` uint16 or int32 [tokens]: the sequences' ids, flat; ``offsets.npy`` int64 [n + 1] into it.
  Training checks each batch's ids against these, so a cache built on other sequences is refused.

Size: ``rows * (4 k + 4) + tokens * 2`` bytes with uint16 ids (``6 k + 4`` and 4 with int32 ids); k = 16 with
the built-in character tokenizer: 70.5 bytes per token measured (perf/llm_cache_step.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgestill.artifact import sha256_file
from edgestill.compress.distill.teacher_outputs import teacher_fingerprint
from edgestill.errors import ConfigError, InputError, RuntimeFailure
from edgestill.limits import format_bytes, read_small_text
from edgestill.outdir import write_json_atomic

CACHE_FORMAT = "edgestill-topk-logits"
CACHE_VERSION = 1
FP16_MAX = 65504.0
_ARRAYS = ("values", "indices", "rest", "tokens", "offsets")
_EXPECTABLE = ("teacher_sha256", "tokenizer_sha256", "corpus_sha256", "k", "vocab")

CacheProgress = Callable[[int, int], None]


def id_dtype(vocab: int) -> np.dtype:
    """uint16 when every id of a ``vocab``-sized vocabulary fits (≤ 65536 ids), else int32."""
    return np.dtype(np.uint16) if vocab <= 65536 else np.dtype(np.int32)


def corpus_sha256(sequences: Sequence[Sequence[int]]) -> str:
    """Hex sha256 of a list of token-id sequences (lengths and ids, as int64)."""
    h = hashlib.sha256()
    for seq in sequences:
        arr = np.asarray(seq, dtype=np.int64)
        h.update(np.int64(len(arr)).tobytes())
        h.update(arr.tobytes())
    return h.hexdigest()


def tokenizer_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a tokenizer: ``path`` is a ``tokenizer.json`` or a Hugging Face folder holding one.

    Raises:
        InputError: no tokenizer.json there.
    """
    p = Path(path)
    file = p / "tokenizer.json" if p.is_dir() else p
    if not file.is_file():
        raise InputError(f"no tokenizer.json at {p}: pass the Hugging Face folder of the model whose tokenizer made "
                         "the sequences, or its tokenizer.json file.")
    return sha256_file(file)


@dataclass(frozen=True, kw_only=True, eq=False)
class TopKCache:
    """A top-k logit cache opened read-only; the arrays are memory-mapped (nothing is read until used).

    ``row_offsets[i]`` is the first row of sequence ``i`` (``offsets[i] - i``: L - 1 rows per sequence).
    """

    path: Path
    header: Mapping[str, Any]
    values: np.ndarray
    indices: np.ndarray
    rest: np.ndarray
    tokens: np.ndarray
    offsets: np.ndarray

    @property
    def k(self) -> int:
        return int(self.header["k"])

    @property
    def vocab(self) -> int:
        return int(self.header["vocab"])

    @property
    def n_sequences(self) -> int:
        return int(self.header["n_sequences"])

    @property
    def size_bytes(self) -> int:
        """Bytes on disk of the arrays (the header excluded)."""
        return sum(int(f["bytes"]) for f in self.header["files"].values())

    def sequence(self, i: int) -> np.ndarray:
        """The token ids of sequence ``i``."""
        return self.tokens[self.offsets[i]:self.offsets[i + 1]]

    def rows(self, i: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values, indices, rest) of the first ``n`` rows of sequence ``i``: one contiguous slice of each file."""
        start = int(self.offsets[i]) - i
        return self.values[start:start + n], self.indices[start:start + n], self.rest[start:start + n]

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, expect: Mapping[str, Any] | None = None,
             verify: bool = False) -> TopKCache:
        """Open the cache folder ``path``, checking its header, each file's shape and size, and ``expect``.

        Args:
            expect: header values the caller requires, among ``teacher_sha256``, ``tokenizer_sha256``,
                ``corpus_sha256``, ``k`` and ``vocab`` (e.g. the tokenizer of the student being trained).
            verify: also compare every file's sha256 with the header's (reads the whole cache once).

        Raises:
            InputError: not a cache, a file missing, truncated or changed, or a header value other than expected.
        """
        root = Path(path)
        header = _read_header(root)
        for key, want in (expect or {}).items():
            if key not in _EXPECTABLE:
                raise ConfigError(f"top-k cache: cannot check {key!r}; checkable: {', '.join(_EXPECTABLE)}.")
            if want is not None and header.get(key) != want:
                raise InputError(f"top-k cache {root} was built for {key} {header.get(key)!r}, not {want!r}: it "
                                 "belongs to another teacher, tokenizer or corpus. Rebuild it with build_topk_cache "
                                 "(or point to the cache made for this one).")
        arrays = {name: _open_array(root, name, header, verify) for name in _ARRAYS}
        cache = cls(path=root, header=header, **arrays)
        _check_shapes(cache)
        return cache


def _read_header(root: Path) -> dict[str, Any]:
    file = root / "header.json"
    if not file.is_file():
        raise InputError(f"{root} is not a top-k logit cache (no header.json). Build one with build_topk_cache.")
    try:
        header = json.loads(read_small_text(file, max_bytes=1 << 20, what="top-k cache header"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{file} is not valid JSON ({exc}); the cache is damaged. Delete {root} and rebuild it.") \
            from exc
    if not isinstance(header, dict) or header.get("format") != CACHE_FORMAT:
        raise InputError(f"{file} is not a top-k logit cache header (format {CACHE_FORMAT!r} expected).")
    if header.get("version") != CACHE_VERSION:
        raise InputError(f"top-k cache {root} has version {header.get('version')!r}; this edgestill reads "
                         f"version {CACHE_VERSION}. Rebuild it with build_topk_cache.")
    return header


def _open_array(root: Path, name: str, header: Mapping[str, Any], verify: bool) -> np.ndarray:
    file = root / f"{name}.npy"
    meta = header.get("files", {}).get(name)
    damaged = f"Delete {root} and rebuild it with build_topk_cache."
    if not isinstance(meta, dict) or not file.is_file():
        raise InputError(f"top-k cache {root}: {name}.npy is missing. {damaged}")
    if file.stat().st_size != meta.get("bytes"):
        raise InputError(f"top-k cache {root}: {name}.npy has {file.stat().st_size} bytes, the header says "
                         f"{meta.get('bytes')} (truncated or replaced). {damaged}")
    if verify and sha256_file(file) != meta.get("sha256"):
        raise InputError(f"top-k cache {root}: {name}.npy changed since it was written (sha256 differs). {damaged}")
    try:
        return np.load(file, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"top-k cache {root}: {name}.npy cannot be read ({exc}). {damaged}") from exc


def _check_shapes(c: TopKCache) -> None:
    h = c.header
    n, rows, k = int(h["n_sequences"]), int(h["rows"]), int(h["k"])
    want = {"values": ((rows, k), np.float16), "indices": ((rows, k), id_dtype(int(h["vocab"]))),
            "rest": ((rows,), np.float32), "tokens": ((int(h["tokens"]),), id_dtype(int(h["vocab"]))),
            "offsets": ((n + 1,), np.int64)}
    for name, (shape, dtype) in want.items():
        arr = getattr(c, name)
        if arr.shape != shape or arr.dtype != dtype:
            raise InputError(f"top-k cache {c.path}: {name}.npy is {arr.dtype}{list(arr.shape)}, the header implies "
                             f"{np.dtype(dtype)}{list(shape)}. Delete {c.path} and rebuild it.")
    if c.offsets[0] != 0 or c.offsets[-1] != int(h["tokens"]) or np.any(np.diff(c.offsets) < 2):
        raise InputError(f"top-k cache {c.path}: offsets.npy is inconsistent. Delete {c.path} and rebuild it.")


def check_sequences(sequences: Sequence[Sequence[int]], vocab: int, *, what: str = "build_topk_cache"
                    ) -> list[np.ndarray]:
    """The sequences as int64 arrays, each checked: at least 2 integer ids, all inside [0, vocab).

    Raises:
        InputError: no sequences, or one that is too short, not integer, or has an id outside the vocabulary
            (the message names ``what`` and the sequence).
    """
    if len(sequences) == 0:
        raise InputError(f"{what}: no sequences given; pass the training sequences (prompt + completion token ids), "
                         "at least one.")
    out = []
    for i, seq in enumerate(sequences):
        arr = np.asarray(seq)
        if arr.ndim != 1 or arr.size < 2 or not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"{what}: sequence {i} must be a list of at least 2 integer token ids (the teacher "
                             f"predicts each next token), got shape {list(arr.shape)} of {arr.dtype}.")
        bad = arr[(arr < 0) | (arr >= vocab)]
        if bad.size:
            raise InputError(f"{what}: sequence {i} has token id {int(bad[0])} outside the teacher's vocabulary "
                             f"[0, {vocab}); the sequences were tokenized with another tokenizer.")
        out.append(arr.astype(np.int64))
    return out


def _check_k(k: int, vocab: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= vocab:
        raise ConfigError(f"top-k cache: k must be an integer in [1, vocab = {vocab}], got {k!r}. 8 to 32 keeps "
                          "most of the teacher's mass at a few bytes per token (see truncation_report).")


def vocab_of(teacher: Any) -> int:
    """``teacher.config.vocab_size``.

    Raises:
        InputError: the model has none (not a Hugging Face causal LM).
    """
    vocab = getattr(getattr(teacher, "config", None), "vocab_size", None)
    if not isinstance(vocab, int):
        raise InputError(f"the teacher ({type(teacher).__name__}) has no config.vocab_size; pass a Hugging Face "
                         "causal LM (an *ForCausalLM module).")
    return vocab


def build_topk_cache(teacher: Any, sequences: Sequence[Sequence[int]], *, k: int, path: str | os.PathLike[str],
                     batch_size: int = 16, progress: CacheProgress | None = None,
                     tokenizer_sha256: str | None = None, replace: bool = False) -> TopKCache:
    """Run ``teacher`` once over ``sequences`` and store its top-k raw logits per token under the folder ``path``.

    If ``path`` already holds a cache built from the same teacher, tokenizer, sequences and k, it is opened and
    returned without running the teacher. A cache of other inputs there is refused, or with ``replace`` rebuilt
    (the old one removed only once the new one is complete: a run that owns the folder, such as a resumed chain).

    Args:
        teacher: a Hugging Face causal LM (``teacher(input_ids=..., attention_mask=...).logits`` [B, T, V]).
        sequences: token ids of each training sequence (prompt + completion), in the order the trainer indexes them.
        k: logits kept per token, in [1, vocab].
        path: the cache folder (created; its parent must exist or be creatable).
        batch_size: sequences per teacher forward pass.
        progress: called as ``progress(done_sequences, total_sequences)`` after each batch.
        tokenizer_sha256: the tokenizer's hash (:func:`tokenizer_sha256`), recorded so a student with another
            tokenizer is refused.
        replace: rebuild a cache of other inputs found at ``path`` instead of refusing it.

    Raises:
        ConfigError: k or batch_size out of range.
        InputError: no sequences, a sequence shorter than 2 tokens or with ids outside the vocabulary, or ``path``
            exists and is not a cache of these inputs.
        RuntimeFailure: the teacher produced NaN logits.
    """
    vocab = vocab_of(teacher)
    _check_k(k, vocab)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"build_topk_cache: batch_size must be a positive integer, got {batch_size!r}.")
    seqs = check_sequences(sequences, vocab)
    want = {"teacher_sha256": teacher_fingerprint(teacher), "tokenizer_sha256": tokenizer_sha256,
            "corpus_sha256": corpus_sha256(seqs), "k": k, "vocab": vocab}
    root = Path(path)
    stale = None
    if root.exists() or root.is_symlink():
        if root.is_symlink() or not (root / "header.json").is_file():
            raise InputError(f"build_topk_cache: {root} exists and is not a top-k cache; choose a new folder.")
        try:
            return TopKCache.open(root, expect=want)
        except InputError:
            if not replace:
                raise
        stale = root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        header = _write_arrays(teacher, seqs, k, vocab, tmp, batch_size, progress)
        header.update(want)
        write_json_atomic(tmp / "header.json", header)
        if stale is not None:
            trash = Path(tempfile.mkdtemp(prefix=f".{root.name}-old-", dir=root.parent))
            os.rename(stale, trash / "cache")
            shutil.rmtree(trash, ignore_errors=True)
        os.rename(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TopKCache.open(root)


def build_topk_cache_from_folder(teacher_dir: str | os.PathLike[str], sequences: Sequence[Sequence[int]], *, k: int,
                                 path: str | os.PathLike[str], batch_size: int = 16,
                                 progress: CacheProgress | None = None) -> TopKCache:
    """:func:`build_topk_cache` for a teacher given as a local Hugging Face folder: loaded here, its tokenizer's
    hash recorded, and released on return, so training from the returned cache never holds the teacher.

    Raises:
        InputError: a folder that is not a causal LM (see ``models.llm.load_causal_lm``), and the
            :func:`build_topk_cache` refusals.
    """
    from edgestill.models.llm import load_causal_lm

    teacher, _ = load_causal_lm(teacher_dir)
    return build_topk_cache(teacher, sequences, k=k, path=path, batch_size=batch_size, progress=progress,
                            tokenizer_sha256=tokenizer_sha256(teacher_dir))


def _write_arrays(teacher: Any, seqs: list[np.ndarray], k: int, vocab: int, out: Path, batch_size: int,
                  progress: CacheProgress | None) -> dict[str, Any]:
    """Write the five arrays into ``out``; return the header without the identity fields."""
    import torch

    ids = id_dtype(vocab)
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    rows = int(offsets[-1]) - len(seqs)
    np.save(out / "tokens.npy", np.concatenate(seqs).astype(ids))
    np.save(out / "offsets.npy", offsets)
    values = np.lib.format.open_memmap(out / "values.npy", mode="w+", dtype=np.float16, shape=(rows, k))
    indices = np.lib.format.open_memmap(out / "indices.npy", mode="w+", dtype=ids, shape=(rows, k))
    rest = np.lib.format.open_memmap(out / "rest.npy", mode="w+", dtype=np.float32, shape=(rows,))
    clamped = 0
    was_training = teacher.training
    teacher.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(seqs), batch_size):
                batch = seqs[start:start + batch_size]
                logits = run_teacher(teacher, batch)
                top_v, top_i, rest_lse = topk_split(logits, k)
                clamped += int((top_v.abs() > FP16_MAX).sum())
                top_v = top_v.clamp(-FP16_MAX, FP16_MAX).half().numpy()
                top_i, rest_lse = top_i.numpy().astype(ids), rest_lse.numpy()
                for b, seq in enumerate(batch):
                    r0, n = int(offsets[start + b]) - (start + b), len(seq) - 1
                    values[r0:r0 + n], indices[r0:r0 + n], rest[r0:r0 + n] = top_v[b, :n], top_i[b, :n], \
                        rest_lse[b, :n]
                if progress is not None:
                    progress(min(start + batch_size, len(seqs)), len(seqs))
    finally:
        teacher.train(was_training)
    for arr in (values, indices, rest):
        arr.flush()
    del values, indices, rest
    files = {name: {"bytes": (out / f"{name}.npy").stat().st_size, "sha256": sha256_file(out / f"{name}.npy")}
             for name in _ARRAYS}
    return {"format": CACHE_FORMAT, "version": CACHE_VERSION, "logits": "raw (temperature-free)",
            "n_sequences": len(seqs), "rows": rows, "tokens": int(offsets[-1]), "values_dtype": "float16",
            "indices_dtype": str(ids), "clamped": clamped, "files": files,
            "size": format_bytes(sum(f["bytes"] for f in files.values()))}


def run_teacher(teacher: Any, batch: list[np.ndarray]) -> Any:
    """The teacher's float32 logits [B, T, V] on right-padded ``batch``.

    Raises:
        RuntimeFailure: a logit is NaN.
    """
    import torch

    width = max(len(s) for s in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, seq in enumerate(batch):
        ids[b, :len(seq)] = torch.from_numpy(seq)
        mask[b, :len(seq)] = 1
    logits = teacher(input_ids=ids, attention_mask=mask).logits.float()
    if torch.isnan(logits).any():
        raise RuntimeFailure("build_topk_cache: the teacher produced NaN logits; check its weights (a diverged "
                             "training run) before caching its outputs.")
    return logits


def topk_split(logits: Any, k: int) -> tuple[Any, Any, Any]:
    """(top-k values, their indices, logsumexp of the logits outside the top-k) along the last dim.

    The rest is computed directly over the other logits (never as a difference of logsumexps, which cancels
    catastrophically when the top-k holds nearly all the mass); it is -inf when k equals the vocabulary.
    """
    import torch

    top_v, top_i = logits.topk(k, dim=-1)
    rest = logits.scatter(-1, top_i, float("-inf")).logsumexp(-1)
    return top_v, top_i, rest


def describe(cache: TopKCache) -> str:
    """One line for logs: sequences, rows, k, vocab and size on disk."""
    return (f"top-k cache {cache.path}: {cache.n_sequences} sequences, {int(cache.header['rows'])} tokens, "
            f"k={cache.k} of vocab {cache.vocab}, {format_bytes(cache.size_bytes)} on disk")
