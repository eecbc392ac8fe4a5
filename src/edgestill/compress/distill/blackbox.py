"""Black-box teachers: a teacher known only by its answers, as a predictions file or an exported model file.

Torch-free. Both routes return teacher **logits** aligned row by row with a split, ready for the trainer's
``teacher_logits=``:

- ``logits`` are used as given;
- ``probabilities`` become log-probabilities ``log(max(p, 1e-7))`` (a softmax of them gives back ``p``; a
  temperature then softens them like logits);
- ``labels`` (hard answers, e.g. from a hosted API that returns only a class) become log-probabilities of a
  near one-hot distribution: ``1 - 1e-3`` on the answered class and ``1e-3 / (K - 1)`` spread over the others,
  so the KL term stays finite. Hard labels carry no dark knowledge: expect KD to act like label smoothing.

A predictions file is keyed by sample id (see :mod:`edgestill.data.loaders` for how ids are formed). Ids are
compared as strings, so ``17`` in a CSV matches the integer id 17.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

import numpy as np

from edgestill.data.datasets import DataSplits, Split
from edgestill.errors import ConfigError, InputError

Kind = Literal["auto", "logits", "probabilities", "labels"]
KINDS: tuple[str, ...] = ("auto", "logits", "probabilities", "labels")
PROB_FLOOR = 1e-7
HARD_LABEL_EPS = 1e-3
_NPZ_KEYS = {"logits": "logits", "probabilities": "probabilities", "probs": "probabilities", "labels": "labels"}
_SHOW = 5


def _examples(items: list[str]) -> str:
    shown = ", ".join(repr(i) for i in items[:_SHOW])
    return shown + (f", ... ({len(items) - _SHOW} more)" if len(items) > _SHOW else "")


def read_predictions(path: str | Path, *, kind: Kind = "auto") -> tuple[np.ndarray, np.ndarray, str]:
    """Read a predictions file into (ids as str, values, kind).

    NPZ: an ``ids`` array plus one of ``logits`` (N, K), ``probabilities``/``probs`` (N, K) or ``labels`` (N,).
    CSV: a header with an ``id`` column plus either a ``label`` column (hard answers) or one numeric column per
    class (any names, in class order) holding logits or probabilities.

    With ``kind="auto"`` a (N, K) array whose rows are non-negative and sum to 1 (±1e-3) is taken as
    probabilities, otherwise as logits; a ``labels`` array or column is labels.

    Raises:
        InputError: the file is missing or malformed (the message names the file and what was expected).
        ConfigError: ``kind`` is not one of the valid kinds.
    """
    if kind not in KINDS:
        raise ConfigError(f"teacher.kind {kind!r} is not valid; choose one of {', '.join(KINDS)}.")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"teacher predictions file {path} does not exist. Pass an .npz (ids + logits, probabilities "
                         "or labels) or a .csv (id column + one column per class, or a label column).")
    if path.suffix.lower() == ".npz":
        ids, values, found = _read_npz(path)
    elif path.suffix.lower() == ".csv":
        ids, values, found = _read_csv(path)
    else:
        raise InputError(f"teacher predictions file {path} is neither .npz nor .csv; save the predictions in one of them.")
    if found == "labels":
        if kind not in ("auto", "labels"):
            raise InputError(f"{path} holds hard labels but teacher.kind is {kind!r}; set teacher.kind: labels.")
        kind = "labels"
    elif kind == "labels":
        raise InputError(f"{path} holds a (N, K) table, not labels; set teacher.kind to logits or probabilities.")
    elif kind == "auto":
        kind = found if found != "table" else ("probabilities" if _looks_like_probabilities(values) else "logits")
    if kind == "probabilities" and not _looks_like_probabilities(values, tol=1e-2):
        raise InputError(f"{path}: teacher.kind is probabilities but the rows are not non-negative and summing to 1 "
                         "(checked with tolerance 0.01). Set teacher.kind: logits if these are raw scores.")
    if not np.isfinite(values).all():
        raise InputError(f"{path}: the predictions hold {int((~np.isfinite(values)).sum())} NaN or infinite value(s).")
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1].tolist()
        raise InputError(f"{path}: {len(dup)} sample id(s) appear more than once: {_examples(dup)}. Give one row per sample.")
    return ids, values, kind


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not a readable .npz of plain arrays ({exc}).") from None
    present = [k for k in _NPZ_KEYS if k in arrays]
    if "ids" not in arrays or len(present) != 1:
        raise InputError(f"{path} holds arrays {sorted(arrays) or 'none'}; a predictions file needs 'ids' plus exactly "
                         "one of 'logits', 'probabilities' (or 'probs') and 'labels'.")
    key = present[0]
    ids, values = np.asarray(arrays["ids"]).reshape(-1).astype(str), np.asarray(arrays[key])
    found = _NPZ_KEYS[key]
    want_ndim = 1 if found == "labels" else 2
    if values.ndim != want_ndim or len(values) != len(ids) or values.dtype.kind not in "fiu":
        raise InputError(f"{path}: '{key}' must be numeric of shape {'(N,)' if want_ndim == 1 else '(N, K)'} with N = "
                         f"len(ids) = {len(ids)}; got dtype {values.dtype}, shape {list(values.shape)}.")
    return ids, values.astype(np.float64 if found != "labels" else np.int64), found


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path} is not a readable UTF-8 CSV file ({exc}).") from None
    if len(rows) < 2 or "id" not in [h.strip() for h in rows[0]]:
        raise InputError(f"{path}: a predictions CSV needs a header with an 'id' column and one row per sample "
                         f"(header found: {rows[0] if rows else 'none'}).")
    header = [h.strip() for h in rows[0]]
    id_i = header.index("id")
    ids = np.asarray([r[id_i].strip() for r in rows[1:]])
    if "label" in header:
        col = header.index("label")
        try:
            labels = np.asarray([int(r[col]) for r in rows[1:]], dtype=np.int64)
        except (ValueError, IndexError):
            raise InputError(f"{path}: column 'label' must hold integer class indices on every row.") from None
        return ids, labels, "labels"
    cols = [i for i in range(len(header)) if i != id_i]
    try:
        values = np.asarray([[float(r[i]) for i in cols] for r in rows[1:]], dtype=np.float64)
    except (ValueError, IndexError):
        raise InputError(f"{path}: every column besides 'id' must hold numbers (one column per class, in class "
                         f"order); columns found: {', '.join(header)}.") from None
    return ids, values, "table"


def _looks_like_probabilities(values: np.ndarray, tol: float = 1e-3) -> bool:
    return values.ndim == 2 and bool((values >= 0).all()) and bool(np.allclose(values.sum(axis=1), 1.0, atol=tol))


def to_logits(values: np.ndarray, kind: str, num_classes: int) -> np.ndarray:
    """Turn logits, probabilities or labels into float32 logits (see the module docstring for the mapping)."""
    if kind == "labels":
        bad = np.flatnonzero((values < 0) | (values >= num_classes))
        if bad.size:
            raise InputError(f"teacher predictions: {bad.size} label(s) lie outside the class range [0, {num_classes}) "
                             f"(e.g. {values[bad[:_SHOW]].tolist()}). The teacher must answer with the data's classes.")
        probs = np.full((len(values), num_classes), HARD_LABEL_EPS / (num_classes - 1))
        probs[np.arange(len(values)), values] = 1.0 - HARD_LABEL_EPS
        return np.log(probs).astype(np.float32)
    if values.shape[1] != num_classes:
        raise InputError(f"teacher predictions have {values.shape[1]} classes per sample (shape {list(values.shape)}) "
                         f"but the data and the student have {num_classes}. The teacher must score the same classes, "
                         "in the same order.")
    if kind == "probabilities":
        return np.log(np.maximum(values, PROB_FLOOR)).astype(np.float32)
    return values.astype(np.float32)


def align(ids: np.ndarray, values: np.ndarray, split: Split, *, source: str, split_name: str = "train") -> np.ndarray:
    """Rows of ``values`` reordered to follow ``split.ids``.

    Raises:
        InputError: some samples of the split have no prediction (says how many and which).
    """
    index = {k: i for i, k in enumerate(ids.tolist())}
    want = split.ids.astype(str).tolist()
    missing = [k for k in want if k not in index]
    if missing:
        raise InputError(f"{source}: {len(missing)} of {len(want)} sample ids of the {split_name} split have no "
                         f"teacher prediction: {_examples(missing)}. The file's ids must be the data's sample ids "
                         f"(its ids look like {_examples(ids[:3].tolist())}; the data's like {_examples(want[:3])}).")
    return values[[index[k] for k in want]]


def check_prediction_ids(ids: np.ndarray, data: DataSplits, *, source: str) -> None:
    """Every id in a predictions file must name a sample of the data.

    Raises:
        InputError: ids that match no sample (says how many and which).
    """
    known = set()
    for split in (data.train, data.val, data.test):
        known.update(split.ids.astype(str).tolist())
    unknown = [k for k in ids.tolist() if k not in known]
    if unknown:
        raise InputError(f"{source}: {len(unknown)} of {len(ids)} sample ids match no sample of the data: "
                         f"{_examples(unknown)}. The predictions must come from the same data (ids like "
                         f"{_examples(data.train.ids[:3].astype(str).tolist())}).")


def teacher_logits_from_predictions(path: str | Path, data: DataSplits, *, kind: Kind = "auto",
                                    split_name: str = "train") -> np.ndarray:
    """Teacher logits for one split of ``data`` from a predictions file keyed by sample id.

    Returns:
        float32 array of shape (len(split), data.num_classes), row i for ``split.ids[i]``.

    Raises:
        InputError: file missing or malformed; ids that match no sample, or samples without a prediction
            (how many and which); a class count other than the data's.
    """
    ids, values, kind = read_predictions(path, kind=kind)
    source = f"teacher predictions {path}"
    if kind != "labels" and values.shape[1] != data.num_classes:
        raise InputError(f"{source} have {values.shape[1]} classes per sample (shape {list(values.shape)}) but the data "
                         f"and the student have {data.num_classes}. The teacher must score the same classes, in the "
                         "same order.")
    check_prediction_ids(ids, data, source=source)
    split = getattr(data, split_name)
    return to_logits(align(ids, values, split, source=source, split_name=split_name), kind, data.num_classes)


def _bare_artifact(path: Path):
    """An Artifact for a model file exported elsewhere (no edgestill manifest): I/O specs read from the file."""
    from edgestill.artifact import Artifact

    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from edgestill.export.onnx import onnx_specs as specs
        fmt = "onnx"
    elif suffix == ".tflite":
        from edgestill.export.tflite import tflite_specs as specs
        fmt = "tflite"
    elif suffix == ".xml":
        from edgestill.export.openvino import openvino_specs as specs
        fmt = "openvino"
    else:
        raise InputError(f"teacher artifact {path} is not a model file edgestill can run: pass an edgestill "
                         ".manifest.json, or an .onnx, .tflite or OpenVINO .xml file.")
    try:
        inputs, outputs = specs(path)
    except InputError:
        raise
    except Exception as exc:  # the library's own parse error: the file is not a model of its format
        raise InputError(f"teacher artifact {path} could not be read as {fmt} ({type(exc).__name__}: {exc}).") from None
    return Artifact(name=path.stem, format=fmt, precision="fp32", directory=path.parent, model_file=path.name,
                    inputs=inputs, outputs=outputs, source={"kind": "external"})


def teacher_logits_from_artifact(path: str | Path, split: Split, *, num_classes: int, runtime: str | None = None,
                                 threads: int = 1) -> np.ndarray:
    """Teacher logits for ``split`` from an exported model run on its runtime (onnxruntime, LiteRT, OpenVINO).

    ``path`` is an edgestill manifest, a model file with a manifest beside it, or a bare .onnx/.tflite/.xml file.
    The model's first output is taken as the logits.

    An artifact with a manifest is untrusted until its files match the manifest's sha256 and stay inside its folder
    (:meth:`Artifact.verify_files`, as the runner checks them); a bare model file has no record to check against.

    Raises:
        InputError: not a model file, a file missing, outside its folder or changed since export, inputs of another
            shape than the data, or an output that is not (N, num_classes).
        RuntimeFailure: the runtime failed to load or run it.
    """
    from edgestill.artifact import MANIFEST_SUFFIX, Artifact
    from edgestill.export.validate import run_artifact
    from edgestill.runtimes import RuntimeOptions, load

    path = Path(path)
    if not path.exists():
        raise InputError(f"teacher artifact {path} does not exist.")
    has_manifest = path.name.endswith(MANIFEST_SUFFIX) or path.with_name(path.stem + MANIFEST_SUFFIX).exists()
    art = Artifact.load(path) if has_manifest else _bare_artifact(path)
    if has_manifest:  # as the runner does: the files must be the ones the manifest recorded before a runtime parses them
        art.verify_files()
    if len(art.inputs) != 1:
        raise InputError(f"teacher artifact {path} takes {len(art.inputs)} inputs; a black-box image teacher takes one.")
    spec = art.inputs[0]
    sample = tuple(spec.shape[1:])
    if len(sample) != split.x.ndim - 1 or any(isinstance(d, int) and d != a for d, a in zip(sample, split.x.shape[1:])):
        raise InputError(f"teacher artifact {path} takes input {list(spec.shape)} but the data's samples are "
                         f"{list(split.x.shape[1:])}. Give data of the teacher's input shape (data.image_size, "
                         "data.channels) or another teacher.")
    session = load(art, RuntimeOptions(threads=threads), runtime=runtime)
    logits = run_artifact(session, art, [split.x])[0]
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise InputError(f"teacher artifact {path} outputs shape {list(logits.shape)} per batch but the data and the "
                         f"student have {num_classes} classes, so its outputs cannot teach this student "
                         f"(expected (N, {num_classes})).")
    return np.asarray(logits, dtype=np.float32)
