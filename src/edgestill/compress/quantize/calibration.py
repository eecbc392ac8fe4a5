"""Calibration data: checks (it is user input) and its manifest entry. Torch-free."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgestill.errors import InputError
from edgestill.export.validate import check_samples


def check_calibration(calibration: Any, sample_shape: Sequence[int], *, what: str = "calibration") -> np.ndarray:
    """Return calibration as a contiguous array of N samples of ``sample_shape`` (the input shape without batch).

    Raises:
        InputError: not numeric, empty, the wrong shape, or holding NaN/Inf.
    """
    return check_samples(calibration, sample_shape, what=what, why="quantization ranges would be meaningless")


def calibration_manifest(calibration: Any, sample_ids: Sequence[Any] | None = None) -> dict[str, Any]:
    """The manifest's calibration entry: n, sample ids and the sha256 of the concatenated sample bytes.

    ``calibration`` is one array, or one array per model input (samples.Samples: each sample's inputs are hashed
    in model order; ``dtype`` and ``sample_shape`` then hold one entry per input).

    Raises:
        InputError: ``sample_ids`` has a different length from the calibration data.
    """
    from edgestill.compress.quantize.samples import n_samples, sample_digest

    n = n_samples(calibration)
    ids = [str(i) for i in range(n)] if sample_ids is None else [str(i) for i in sample_ids]
    if len(ids) != n:
        raise InputError(f"calibration_ids has {len(ids)} ids for {n} calibration samples; pass one id per sample.")
    if isinstance(calibration, np.ndarray):
        dtype: Any = str(calibration.dtype)
        shape: Any = list(calibration.shape[1:])
    else:
        dtype, shape = [str(a.dtype) for a in calibration], [list(a.shape[1:]) for a in calibration]
    return {"n": n, "sample_ids": ids, "sha256": sample_digest(calibration), "dtype": dtype, "sample_shape": shape}


DEFAULT_CALIBRATION_SAMPLES = 300
MIN_USEFUL_SAMPLES = 32  # fewer than this: activation ranges rest on a handful of inputs (a warning, not an error)
_SHIFT_MEAN_STDS = 0.5  # a per-channel calibration mean this many eval stds away from the eval mean is a shift
_SHIFT_STD_RATIO = 2.0  # or a per-channel std this many times larger or smaller


def select_calibration(n_available: int, *, labels: np.ndarray | None = None, n: int = DEFAULT_CALIBRATION_SAMPLES, seed: int = 0) -> np.ndarray:
    """Sorted indices of up to ``n`` calibration samples, stratified by class when ``labels`` are given.

    Each class contributes in proportion to its share (at least one sample per class present); without labels
    a seeded uniform draw. All samples when ``n >= n_available``.
    """
    rng = np.random.default_rng(seed)
    if n >= n_available:
        return np.arange(n_available)
    if labels is None:
        return np.sort(rng.choice(n_available, size=n, replace=False))
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.floor(counts / counts.sum() * n).astype(int))
    picks = [rng.permutation(np.flatnonzero(labels == k))[:q] for k, q in zip(classes, quota)]
    chosen = np.concatenate(picks)
    if len(chosen) < n:  # rounding left a few places: fill them uniformly from the rest
        rest = np.setdiff1d(np.arange(n_available), chosen)
        chosen = np.concatenate([chosen, rng.choice(rest, size=min(n - len(chosen), len(rest)), replace=False)])
    return np.sort(chosen[:n])


def calibration_warnings(calibration: Any, eval_x: Any = None) -> list[str]:
    """Warnings about calibration data that is valid but likely to give poor int8 ranges.

    Checks: fewer than MIN_USEFUL_SAMPLES samples; per-channel (axis 1) mean or spread unlike the eval data's.
    """
    from edgestill.compress.quantize.samples import n_samples

    out = []
    if n_samples(calibration) < MIN_USEFUL_SAMPLES:
        out.append(
            f"only {n_samples(calibration)} calibration samples (fewer than {MIN_USEFUL_SAMPLES}): activation ranges rest on few "
            f"inputs and int8 accuracy may suffer; {DEFAULT_CALIBRATION_SAMPLES} class-stratified samples is the default."
        )
    if eval_x is None or not isinstance(calibration, np.ndarray) or not isinstance(eval_x, np.ndarray):
        return out  # several inputs (token ids, masks): per-channel statistics mean nothing
    if calibration.ndim < 2 or eval_x.shape[1:] != calibration.shape[1:]:
        return out

    def stats(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flat = np.moveaxis(a.astype(np.float64), 1, 0).reshape(a.shape[1], -1)
        return flat.mean(axis=1), flat.std(axis=1)

    cm, cs = stats(calibration)
    em, es = stats(np.asarray(eval_x))
    scale = np.where(es > 1e-12, es, 1.0)
    mean_gap = np.abs(cm - em) / scale
    ratio = np.maximum(cs, 1e-12) / np.maximum(es, 1e-12)
    bad = np.flatnonzero((mean_gap > _SHIFT_MEAN_STDS) | (ratio > _SHIFT_STD_RATIO) | (ratio < 1 / _SHIFT_STD_RATIO))
    if len(bad):
        worst = int(bad[np.argmax(mean_gap[bad])])
        out.append(
            f"the calibration data looks unlike the eval data in {len(bad)} of {len(cm)} channels (channel {worst}: "
            f"mean {cm[worst]:.3g} vs {em[worst]:.3g}, std {cs[worst]:.3g} vs {es[worst]:.3g}); calibrate on samples "
            "from the same distribution and preprocessing as the data the model will see."
        )
    return out
