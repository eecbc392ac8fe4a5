"""Accuracy of a loaded session on labelled data (numpy only; the runner uses it on devices)."""

from __future__ import annotations

from collections.abc import Callable
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
