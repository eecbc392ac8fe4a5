"""Where ``edgestill quantize`` gets its data: a built-in dataset or an .npz (labelled or not); calibration and eval
drawn from it, the split stated. Torch-free."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgestill.compress.quantize.calibration import DEFAULT_CALIBRATION_SAMPLES, select_calibration
from edgestill.errors import InputError

DEFAULT_EVAL_FRACTION = 0.5  # of one .npz, held out for the budget; the rest is the calibration pool (and KD repair's data)


@dataclass(kw_only=True, eq=False)
class QuantData:
    """Calibration samples (with ids), eval samples and labels (None: unlabelled), and training data for KD repair.

    The samples are one array (an .npz's ``x``, a built-in dataset), or a dict of arrays named like the model's
    inputs (an .npz of a model with several inputs: ``input_ids``, ``attention_mask``, ...), which
    budget.check_inputs puts in model order.

    ``source`` says where each part came from and how many samples each holds (the report's ``data`` entry);
    ``warnings`` are about the data (labels ignored, few eval samples).
    """

    calibration: np.ndarray | dict[str, np.ndarray]
    calibration_ids: list[str]
    eval_x: np.ndarray | dict[str, np.ndarray]
    eval_y: np.ndarray | None
    train_x: np.ndarray | dict[str, np.ndarray]
    train_y: np.ndarray | None
    source: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        return self.eval_y is not None

    def repair_data(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(inputs, labels or None) for KD repair: the training inputs with their labels when labelled; without labels
        every input outside the eval set, a --calibration file's samples included (the oracle needs no labels)."""
        if self.train_y is not None or self.source.get("calibration_file") is None or isinstance(self.train_x, dict):
            return self.train_x, self.train_y
        if self.calibration.shape[1:] != self.train_x.shape[1:] or len(self.train_x) == 0:
            return (self.calibration if len(self.train_x) == 0 else self.train_x), None
        return np.concatenate([self.train_x, self.calibration.astype(self.train_x.dtype, copy=False)]), None


def _npz(path: Path, what: str) -> dict[str, np.ndarray]:
    from edgestill.runtimes.base import read_npz

    if not path.exists():
        raise InputError(f"{what} {path} does not exist. Pass an .npz file holding an array x (inputs) and, optionally, "
                         "y (integer labels).")
    return read_npz(path, what=f"{what} {path}")  # every declared size checked before numpy allocates it


_NOT_INPUTS = ("y", "ids")  # arrays of an .npz that are not model inputs


def _inputs_of(arrays: dict[str, np.ndarray], data: str, flag: str) -> np.ndarray | dict[str, np.ndarray]:
    """The inputs an .npz holds: ``x``, or (a model with several inputs) every array but ``y``/``ids``, by name.

    Raises:
        InputError: no input arrays; named arrays with different numbers of samples.
    """
    if "x" in arrays:
        return arrays["x"]
    named = {k: v for k, v in arrays.items() if k not in _NOT_INPUTS}
    if not named:
        raise InputError(f"{flag} {data} holds arrays {sorted(arrays)}; it needs x (inputs) or, for a model with several "
                         "inputs, one array per input named like it (input_ids, attention_mask, ...), and optionally y "
                         "(integer labels).")
    lengths = {k: (len(v) if v.ndim else 0) for k, v in named.items()}
    if len(set(lengths.values())) > 1:
        raise InputError(f"{flag} {data}: its input arrays hold different numbers of samples "
                         f"({', '.join(f'{k}: {n}' for k, n in lengths.items())}); every input needs one row per sample.")
    return named


def _rows(x: np.ndarray | dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
    return {k: v[idx] for k, v in x.items()} if isinstance(x, dict) else x[idx]


def _count(x: np.ndarray | dict[str, np.ndarray]) -> tuple[int, list[int]]:
    first = next(iter(x.values())) if isinstance(x, dict) else x
    return (len(first) if first.ndim else 0), list(first.shape)


def check_eval_fraction(eval_fraction: Any, *, has_calibration_file: bool = False) -> float:
    """The share of an .npz held out for the budget: 0 < F < 1 (F = 1 only when --calibration gives the calibration set).

    Raises:
        InputError: not a number in that range.
    """
    top = 1.0 if has_calibration_file else math.nextafter(1.0, 0.0)
    ok = not isinstance(eval_fraction, bool) and isinstance(eval_fraction, (int, float)) and math.isfinite(eval_fraction)
    if not ok or not 0.0 < eval_fraction <= top:
        upper = "<= 1 (1 only with --calibration, which then holds every calibration sample)" if has_calibration_file else (
            "< 1 (the rest is the calibration pool; 1 needs --calibration)")
        raise InputError(f"--eval-fraction must be a fraction > 0 and {upper}; got {eval_fraction!r}. The default, "
                         f"{DEFAULT_EVAL_FRACTION}, holds out half of --data for the budget.")
    return float(eval_fraction)


def _labels(arrays: dict[str, np.ndarray], n: int, data: str, warnings: list[str]) -> np.ndarray | None:
    """``y`` when it holds one integer label per sample; None (with a warning) when it is absent or not integers.

    Raises:
        InputError: integer labels of another shape or length than x.
    """
    if "y" not in arrays:
        return None
    y = arrays["y"]
    if y.dtype.kind not in "iu":
        warnings.append(
            f"--data {data}: y has dtype {y.dtype}, not integer class ids, so it is ignored and the data treated as "
            "unlabelled (the budget is top-1 agreement with the fp32 file and KL). Save y as integers for an accuracy budget."
        )
        return None
    if y.ndim != 1 or len(y) != n:
        raise InputError(f"--data {data}: y has shape {list(y.shape)} for {n} samples in x; pass one integer label per "
                         "sample, or no y (the budget then measures agreement with the fp32 model).")
    return y


def load_quant_data(
    data: str, *, calibration_file: Path | None = None, n_calibration: int = DEFAULT_CALIBRATION_SAMPLES, seed: int = 0,
    eval_fraction: float | None = None,
) -> QuantData:
    """Load the data ``quantize`` needs.

    ``data`` is a built-in dataset name (calibration from its training split, stratified by class; eval on its
    test split) or an .npz with ``x`` (or, for a model with several inputs, one array per input named like it:
    ``input_ids``, ``attention_mask``, ...) and, optionally, ``y``: a seeded ``eval_fraction`` of it (default 0.5,
    stratified by class when labelled) is held out for the budget, calibration is drawn from the rest (at most
    ``n_calibration``), and KD repair trains on all of the rest. Without integer labels the budget measures
    agreement with the fp32 file. ``calibration_file`` (an .npz with ``x`` or named inputs, optional ``ids``)
    replaces the drawn calibration set.

    Raises:
        InputError: a missing or unreadable file, no x (nor named inputs), named inputs of different lengths, integer labels of the wrong length, a bad eval fraction
            (or one given with a built-in dataset, which keeps its own train/test split); UnknownNameError for an
            unknown dataset name.
    """
    warnings: list[str] = []
    if not data.endswith(".npz"):
        from edgestill.data import load_dataset

        if eval_fraction is not None:
            raise InputError(f"--eval-fraction applies to an .npz given as --data; the built-in dataset {data!r} keeps its "
                             "own train/test split (calibration from train, eval on test). Leave --eval-fraction out.")
        ds = load_dataset(data)
        idx = select_calibration(len(ds.train), labels=ds.train.y, n=n_calibration, seed=seed)
        calib, ids = ds.train.x[idx], [f"{ds.name}/train/{i}" for i in ds.train.ids[idx]]
        eval_x, eval_y, train_x, train_y = ds.test.x, ds.test.y, ds.train.x, ds.train.y
        source: dict[str, Any] = {
            "dataset": ds.name, "sha256": ds.sha256, "labelled": True,
            "calibration_from": f"train ({len(idx)} of {len(ds.train)}, class-stratified)", "calibration_samples": int(len(idx)),
            "eval_on": f"test ({len(ds.test)} samples)", "eval_samples": int(len(ds.test)), "train_samples": int(len(ds.train)),
        }
    else:
        arrays = _npz(Path(data), "--data")
        x = _inputs_of(arrays, data, "--data")
        n_x, shape = _count(x)
        if n_x < 2:
            what = "x" if not isinstance(x, dict) else "its inputs"
            raise InputError(f"--data {data}: {what} has shape {shape}; it needs at least 2 samples (some to calibrate on, "
                             "some to measure the budget on).")
        y = _labels(arrays, n_x, data, warnings)
        frac = check_eval_fraction(DEFAULT_EVAL_FRACTION if eval_fraction is None else eval_fraction,
                                   has_calibration_file=calibration_file is not None)
        n_eval = min(n_x, max(1, round(frac * n_x)))
        if n_eval == n_x and calibration_file is None:
            n_eval = n_x - 1
        eval_idx = select_calibration(n_x, labels=y, n=n_eval, seed=seed)  # a seeded (stratified) draw
        rest = np.setdiff1d(np.arange(n_x), eval_idx)
        calib_idx = rest[select_calibration(len(rest), labels=None if y is None else y[rest], n=n_calibration, seed=seed + 1)]
        calib, ids = _rows(x, calib_idx), [f"data/{i}" for i in calib_idx]
        eval_x, eval_y = _rows(x, eval_idx), None if y is None else y[eval_idx]
        train_x, train_y = _rows(x, rest), None if y is None else y[rest]
        how = "class-stratified" if y is not None else "seeded uniform draw"
        source = {
            "npz": str(data), "samples": int(n_x), "labelled": y is not None, "eval_fraction": frac,
            **({"inputs": sorted(x)} if isinstance(x, dict) else {}),
            "eval_on": f"{len(eval_idx)} of {n_x} samples of data ({how})", "eval_samples": int(len(eval_idx)),
            "calibration_from": f"{len(calib_idx)} of the other {len(rest)} samples of data ({how})",
            "calibration_samples": int(len(calib_idx)), "train_samples": int(len(rest)),
        }
    if calibration_file is not None:
        arrays = _npz(Path(calibration_file), "--calibration")
        calib = _inputs_of(arrays, str(calibration_file), "--calibration")
        n_calib = _count(calib)[0]
        ids = [str(i) for i in arrays["ids"]] if "ids" in arrays else [f"calibration/{i}" for i in range(n_calib)]
        source["calibration_from"] = f"{calibration_file} ({n_calib} samples)"
        source["calibration_file"] = str(calibration_file)
        source["calibration_samples"] = int(n_calib)
    return QuantData(calibration=calib, calibration_ids=ids, eval_x=eval_x, eval_y=eval_y, train_x=train_x, train_y=train_y,
                     source=source, warnings=warnings)
