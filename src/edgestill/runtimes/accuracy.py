"""Accuracy of a loaded session on labelled data, and agreement with a teacher (numpy only; the runner uses it on
devices): top-k accuracy and teacher agreement (top-1 + KL) for classifiers; mean cosine similarity and top-k
retrieval agreement for embedders."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgestill.record import Accuracy
from edgestill.errors import InputError
from edgestill.registry import Registry

# A metric maps (logits [n, classes], labels [n]) to a per-sample 0/1 correctness array.
METRICS: Registry[Callable[[np.ndarray, np.ndarray], np.ndarray]] = Registry("metric")


def _topk(k: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def correct(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        if logits.shape[1] < k:
            raise InputError(
                f"top{k} needs at least {k} classes but the model gives {logits.shape[1]}; use metric 'top1'."
            )
        if k == 1:
            return (np.argmax(logits, axis=1) == labels).astype(np.float64)
        # Ties at the k-th score are broken in favour of the lower index (argsort is stable on -logits).
        top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        return (top == labels[:, None]).any(axis=1).astype(np.float64)

    correct.__doc__ = f"1 where the label is among the {k} highest scores."
    return correct


METRICS.register("top1", _topk(1))
METRICS.register("top5", _topk(5))


def session_logits(session: Any, x: np.ndarray, batch_size: int = 1) -> np.ndarray:
    """The first output of a single-input classifier session on every sample of ``x``, as ``[n, classes]``.

    A model whose batch dim is fixed (an int in its input spec) is fed batches of exactly that size (the last
    batch padded with copies, whose outputs are dropped); a symbolic batch dim takes ``batch_size`` samples per call.

    Raises:
        InputError: empty ``x``, a bad batch size, a model with more than one input, or outputs that are not
            ``[batch, classes]`` scores.
    """
    x = np.asarray(x)
    if x.ndim < 1 or len(x) == 0:
        raise InputError(f"eval data x has shape {list(x.shape)}; expected [n, ...] with n > 0 samples.")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}.")
    specs = session.input_specs
    if len(specs) != 1:
        raise InputError(
            f"accuracy needs a single-input model; this one takes {[s.name for s in specs]}. Evaluate it in Python."
        )
    spec = specs[0]
    fixed = spec.shape[0] if spec.shape and isinstance(spec.shape[0], int) and spec.shape[0] > 0 else None
    step = fixed or batch_size
    dtype = np.dtype(spec.user_dtype)
    outs = []
    for start in range(0, len(x), step):
        batch = x[start : start + step]
        real = len(batch)
        if fixed and real < fixed:
            batch = np.concatenate([batch, np.repeat(batch[-1:], fixed - real, axis=0)])
        out = session.run({spec.name: np.ascontiguousarray(batch, dtype=dtype)})
        logits = np.asarray(out[session.output_specs[0].name])
        if logits.ndim != 2 or logits.shape[0] != len(batch):
            raise InputError(
                f"output {session.output_specs[0].name!r} has shape {list(logits.shape)}; a classifier's first "
                f"output must be scores [batch, classes] (batch {len(batch)})."
            )
        outs.append(logits[:real])
    return np.concatenate(outs)


def session_outputs(session: Any, inputs: Mapping[str, np.ndarray], batch_size: int = 1) -> np.ndarray:
    """The first output of a session on every sample of named ``inputs`` (one ``(n, ...)`` array per model input,
    e.g. ``input_ids``, ``attention_mask``, ``token_type_ids``), as ``[n, ...]``.

    Batches as :func:`session_logits` (a fixed batch dim gets exactly that many samples, the last batch padded with
    copies whose outputs are dropped); each array is cast to its input's user dtype (int64 ids for an int32 file: the
    session converts).

    Raises:
        InputError: an input of the model missing from ``inputs`` (or an array it does not take), arrays of different
            lengths or empty, a bad batch size, or an output whose batch is not the inputs'.
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}.")
    specs = session.input_specs
    names = [s.name for s in specs]
    missing = [n for n in names if n not in inputs]
    extra = [n for n in inputs if n not in names]
    if missing or extra:
        raise InputError(f"eval data holds arrays {sorted(inputs)} but the model takes {names}"
                         f"{'; missing ' + ', '.join(missing) if missing else ''}"
                         f"{'; not inputs of the model: ' + ', '.join(extra) if extra else ''}. Save one array per "
                         "model input, named like it (np.savez(path, input_ids=..., attention_mask=..., y=...)).")
    arrays = {n: np.asarray(inputs[n]) for n in names}
    lengths = {n: (len(a) if a.ndim else 0) for n, a in arrays.items()}
    n_samples = next(iter(lengths.values()))
    if len(set(lengths.values())) != 1 or n_samples == 0:
        raise InputError(f"eval data arrays have {lengths} samples; every input needs the same number n > 0 of rows.")
    fixed = {s.shape[0] for s in specs if s.shape and isinstance(s.shape[0], int) and s.shape[0] > 0}
    step = min(fixed) if fixed else batch_size
    outs = []
    for start in range(0, n_samples, step):
        feed = {}
        for spec in specs:
            batch = arrays[spec.name][start : start + step]
            if fixed and len(batch) < step:
                batch = np.concatenate([batch, np.repeat(batch[-1:], step - len(batch), axis=0)])
            feed[spec.name] = np.ascontiguousarray(batch, dtype=np.dtype(spec.user_dtype))
        real, fed = min(step, n_samples - start), len(next(iter(feed.values())))
        out = np.asarray(session.run(feed)[session.output_specs[0].name])
        if out.ndim < 1 or out.shape[0] != fed:
            raise InputError(f"output {session.output_specs[0].name!r} has shape {list(out.shape)} for a batch of "
                             f"{fed}; its first dim must be the batch.")
        outs.append(out[:real])
    return np.concatenate(outs)


def accuracy_of(logits: np.ndarray, y: np.ndarray, metric: str = "top1") -> Accuracy:
    """Score ``[n, classes]`` outputs against integer labels ``y``.

    Raises:
        InputError: unknown metric, lengths that differ, or labels that are not integers.
    """
    score = METRICS.get(metric)
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(logits) or len(y) == 0:
        raise InputError(f"labels y have shape {list(y.shape)} for {len(logits)} samples; expected y [n], one "
                         "integer class per sample (an .npz with arrays 'x' and 'y').")
    if y.dtype.kind not in "iu":
        raise InputError(f"labels y have dtype {y.dtype}; class indices must be integers.")
    hits = score(logits, y)
    return Accuracy(metric=metric, value=float(hits.mean()), n=int(hits.size))


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64) - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def teacher_agreement(logits: np.ndarray, teacher_logits: np.ndarray) -> tuple[float, float]:
    """(top-1 agreement, mean KL(teacher || artifact) in nats) of ``[n, classes]`` outputs with the teacher's.

    Both at temperature 1: the teacher's softmax p and the artifact's softmax q on the same samples; KL is
    sum p (log p - log q), averaged over samples. It needs no labels.

    Raises:
        InputError: the teacher's outputs do not have the artifact's shape.
    """
    t = np.asarray(teacher_logits)
    if t.shape != logits.shape:
        raise InputError(f"teacher outputs have shape {list(t.shape)} but the artifact gives {list(logits.shape)} on "
                         "the same samples; they must score the same classes for the same samples.")
    agree = float((logits.argmax(1) == t.argmax(1)).mean())
    log_p, log_q = _log_softmax(t), _log_softmax(logits)
    kl = float((np.exp(log_p) * (log_p - log_q)).sum(axis=1).mean())
    return agree, max(kl, 0.0)


def evaluate_session(session: Any, x: np.ndarray, y: np.ndarray, metric: str = "top1", batch_size: int = 1) -> Accuracy:
    """Score a single-input classifier session on ``x`` with labels ``y`` (see :func:`session_logits`).

    Raises:
        InputError: as :func:`session_logits` and :func:`accuracy_of`.
    """
    x, y = np.asarray(x), np.asarray(y)
    if y.ndim != 1 or len(x) != len(y) or len(y) == 0:
        raise InputError(
            f"eval data has x of shape {list(x.shape)} and y of shape {list(y.shape)}; expected x [n, ...] and "
            "y [n] with the same n > 0 (an .npz with arrays 'x' and 'y')."
        )
    METRICS.get(metric)
    if y.dtype.kind not in "iu":
        raise InputError(f"labels y have dtype {y.dtype}; class indices must be integers.")
    return accuracy_of(session_logits(session, x, batch_size), y, metric)


DEFAULT_RETRIEVAL_K = 5
"""Neighbours compared per held-out text in the retrieval agreement: the first page of a small search result."""


@dataclass(frozen=True, kw_only=True)
class EmbeddingAgreement:
    """How closely an embedder's outputs follow the teacher's on the same held-out texts.

    mean_cosine: mean over texts of cos(artifact embedding, teacher embedding) (same space: a distilled student).
    retrieval_agreement: the mean share, over texts, of the ``k`` nearest neighbours by cosine (among the other
        held-out texts) that the artifact's embeddings and the teacher's have in common: 1.0 returns the same search
        results as the teacher.
    """

    mean_cosine: float
    retrieval_agreement: float
    k: int
    n: int


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


_NEIGHBOUR_CHUNK = 512  # rows per similarity block: 512 x n float64 (20 MB for 5000 texts)


def top_k_neighbours(embeddings: np.ndarray, k: int) -> np.ndarray:
    """``[n, k]`` indices of each row's ``k`` most cosine-similar other rows (itself excluded; ties to the lower index)."""
    e = _unit_rows(np.asarray(embeddings))
    out = np.empty((len(e), k), dtype=np.int64)
    for start in range(0, len(e), _NEIGHBOUR_CHUNK):  # a chunk of rows at a time: never an n x n matrix in memory
        rows = np.arange(start, min(start + _NEIGHBOUR_CHUNK, len(e)))
        sim = e[rows] @ e.T
        sim[np.arange(len(rows)), rows] = -np.inf
        out[rows] = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return out


def embedding_agreement(embeddings: np.ndarray, teacher_embeddings: np.ndarray, *,
                        k: int = DEFAULT_RETRIEVAL_K) -> EmbeddingAgreement:
    """Mean cosine similarity to the teacher's embeddings and top-``k`` retrieval agreement with the teacher.

    ``k`` is capped at n - 1 (the other texts there are); the record says which ``k`` was used.

    Raises:
        InputError: shapes that differ or are not ``[n, dim]``, fewer than 2 texts, NaN/Inf, or ``k`` < 1.
    """
    a, t = np.asarray(embeddings), np.asarray(teacher_embeddings)
    if a.ndim != 2 or a.shape != t.shape:
        raise InputError(f"embeddings have shape {list(a.shape)} and the teacher's {list(t.shape)}; both must be "
                         "[n, dim] for the same n texts and the same dim (a student distilled to the teacher's space).")
    if len(a) < 2:
        raise InputError(f"retrieval agreement needs at least 2 held-out texts, got {len(a)}.")
    if not (np.isfinite(a).all() and np.isfinite(t).all()):
        raise InputError("embeddings hold NaN or Inf; the model's outputs are not usable embeddings.")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InputError(f"retrieval k must be a whole number >= 1, got {k!r}.")
    k = min(k, len(a) - 1)
    cos = float((_unit_rows(a) * _unit_rows(t)).sum(axis=1).mean())
    mine, theirs = top_k_neighbours(a, k), top_k_neighbours(t, k)
    shared = [len(set(m).intersection(th)) / k for m, th in zip(mine.tolist(), theirs.tolist(), strict=True)]
    return EmbeddingAgreement(mean_cosine=cos, retrieval_agreement=float(np.mean(shared)), k=k, n=len(a))
