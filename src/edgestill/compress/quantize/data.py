"""Where ``edgestill quantize`` gets its data: a built-in dataset or an .npz; calibration drawn from it. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgestill.compress.quantize.calibration import DEFAULT_CALIBRATION_SAMPLES, select_calibration
from edgestill.errors import InputError


@dataclass(kw_only=True, eq=False)
class QuantData:
    """Calibration samples (with ids), eval samples and labels, and training data for KD repair."""

    calibration: np.ndarray
    calibration_ids: list[str]
    eval_x: np.ndarray
    eval_y: np.ndarray
    train_x: np.ndarray
    train_y: np.ndarray
    source: dict[str, Any]


def _npz(path: Path, what: str) -> dict[str, np.ndarray]:
    from edgestill.runtimes.base import read_npz

    if not path.exists():
        raise InputError(f"{what} {path} does not exist. Pass an .npz file holding arrays x (inputs) and y (integer labels).")
    return read_npz(path, what=f"{what} {path}")  # every declared size checked before numpy allocates it


def load_quant_data(
    data: str, *, calibration_file: Path | None = None, n_calibration: int = DEFAULT_CALIBRATION_SAMPLES, seed: int = 0,
) -> QuantData:
    """Load the data ``quantize`` needs.

    ``data`` is a built-in dataset name (calibration from its training split, stratified by class; eval on its
    test split) or an .npz with ``x`` and ``y`` (calibration drawn from it, stratified; eval on the rest).
    ``calibration_file`` (an .npz with ``x``, optional ``ids``) replaces the drawn calibration set.

    Raises:
        InputError: a missing or unreadable file, missing arrays, labels that do not match; UnknownNameError for
            an unknown dataset name.
    """
    if not data.endswith(".npz"):
        from edgestill.data import load_dataset

        ds = load_dataset(data)
        idx = select_calibration(len(ds.train), labels=ds.train.y, n=n_calibration, seed=seed)
        calib, ids = ds.train.x[idx], [f"{ds.name}/train/{i}" for i in ds.train.ids[idx]]
        eval_x, eval_y, train_x, train_y = ds.test.x, ds.test.y, ds.train.x, ds.train.y
        source = {"dataset": ds.name, "sha256": ds.sha256, "calibration_from": "train", "eval_on": "test"}
    else:
        arrays = _npz(Path(data), "--data")
        if "x" not in arrays or "y" not in arrays:
            raise InputError(f"--data {data} holds arrays {sorted(arrays)}; it needs x (inputs) and y (integer labels) to measure accuracy.")
        x, y = arrays["x"], arrays["y"]
        if y.ndim != 1 or len(y) != len(x):
            raise InputError(f"--data {data}: y has shape {list(y.shape)} for {len(x)} samples in x; pass one integer label per sample.")
        pool = min(n_calibration, len(x) // 2)  # the other half (at least) is kept for eval
        idx = select_calibration(len(x), labels=y if y.dtype.kind in "iu" else None, n=pool, seed=seed)
        rest = np.setdiff1d(np.arange(len(x)), idx)
        calib, ids = x[idx], [f"data/{i}" for i in idx]
        eval_x, eval_y, train_x, train_y = x[rest], y[rest], x[idx], y[idx]
        source = {"npz": str(data), "calibration_from": "data (stratified)", "eval_on": "the rest of data"}
    if calibration_file is not None:
        arrays = _npz(Path(calibration_file), "--calibration")
        if "x" not in arrays:
            raise InputError(f"--calibration {calibration_file} holds arrays {sorted(arrays)}; it needs x (calibration inputs).")
        calib = arrays["x"]
        ids = [str(i) for i in arrays["ids"]] if "ids" in arrays else [f"calibration/{i}" for i in range(len(calib))]
        source["calibration_from"] = str(calibration_file)
    return QuantData(calibration=calib, calibration_ids=ids, eval_x=eval_x, eval_y=eval_y, train_x=train_x, train_y=train_y, source=source)
