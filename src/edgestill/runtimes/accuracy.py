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


def evaluate_session(session: Any, x: np.ndarray, y: np.ndarray, metric: str = "top1", batch_size: int = 1) -> Accuracy:
    """Score a single-input classifier session on ``x`` with labels ``y``.

    A model whose batch dim is fixed (an int in its input spec) is fed batches of exactly that size
    (the last batch padded with copies, whose outputs are dropped); a symbolic batch dim takes
    ``batch_size`` samples per call.

    Args:
        session: a loaded session (``input_specs``, ``run``).
        x: inputs, first axis = samples.
        y: integer labels, one per sample.
        metric: a name in ``METRICS`` ("top1", "top5").
        batch_size: samples per call when the batch dim is symbolic.

    Returns:
        ``Accuracy(metric, value in [0, 1], n)``.

    Raises:
        InputError: unknown metric, lengths that differ, non-integer labels, a model with more than one
            input, or outputs that are not ``[batch, classes]`` scores.
    """
    score = METRICS.get(metric)
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 1 or y.ndim != 1 or len(x) != len(y) or len(y) == 0:
        raise InputError(
            f"eval data has x of shape {list(x.shape)} and y of shape {list(y.shape)}; expected x [n, ...] and "
            "y [n] with the same n > 0 (an .npz with arrays 'x' and 'y')."
        )
    if y.dtype.kind not in "iu":
        raise InputError(f"labels y have dtype {y.dtype}; class indices must be integers.")
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
    correct = []
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
        correct.append(score(logits[:real], y[start : start + real]))
    hits = np.concatenate(correct)
    return Accuracy(metric=metric, value=float(hits.mean()), n=int(hits.size))
