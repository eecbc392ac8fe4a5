"""Calibration data: checks (it is user input) and its manifest entry. Torch-free."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgestill.errors import InputError


def check_calibration(calibration: Any, sample_shape: Sequence[int], *, what: str = "calibration") -> np.ndarray:
    """Return calibration as a contiguous array of N samples of ``sample_shape`` (the input shape without batch).

    Raises:
        InputError: not numeric, empty, the wrong shape, or holding NaN/Inf.
    """
    arr = np.asarray(calibration)
    expected = tuple(int(d) for d in sample_shape)
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{what} data has dtype {arr.dtype}; it must be numeric (float32 images, like the model's input).")
    if arr.ndim == 0 or arr.shape[0] == 0 or arr.size == 0:
        raise InputError(
            f"{what} data is empty (shape {list(arr.shape)}); static int8 needs samples of shape "
            f"(N, {', '.join(map(str, expected))}). Pass a few hundred representative inputs."
        )
    if tuple(arr.shape[1:]) != expected:
        raise InputError(
            f"{what} data has shape {list(arr.shape)} but the model's input is (N, {', '.join(map(str, expected))}) "
            "with N samples along the first axis. Pass samples shaped like the model's input, one per row."
        )
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).reshape(len(arr), -1).any(axis=1).sum())
        raise InputError(
            f"{what} data holds NaN or Inf in {bad} of {len(arr)} samples; quantization ranges would be meaningless. "
            "Remove or fix those samples."
        )
    return np.ascontiguousarray(arr)


def calibration_manifest(calibration: np.ndarray, sample_ids: Sequence[Any] | None = None) -> dict[str, Any]:
    """The manifest's calibration entry: n, sample ids and the sha256 of the concatenated sample bytes.

    Raises:
        InputError: ``sample_ids`` has a different length from the calibration data.
    """
    n = int(len(calibration))
    ids = [str(i) for i in range(n)] if sample_ids is None else [str(i) for i in sample_ids]
    if len(ids) != n:
        raise InputError(f"calibration_ids has {len(ids)} ids for {n} calibration samples; pass one id per sample.")
    h = hashlib.sha256()
    for sample in calibration:
        h.update(np.ascontiguousarray(sample).tobytes())
    return {"n": n, "sample_ids": ids, "sha256": h.hexdigest(), "dtype": str(calibration.dtype), "sample_shape": list(calibration.shape[1:])}
