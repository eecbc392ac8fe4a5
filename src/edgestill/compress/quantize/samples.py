"""Model inputs as data for calibration and evaluation: one (N, ...) array per model input. Torch-free.

A single-input model's samples stay one array (what every image path has always taken); a model with several
inputs (a text model's input_ids, attention_mask[, token_type_ids]) takes a tuple of arrays in the model's input
order, all with the same N. Users may give them as a list (model order) or a dict named like the inputs;
:func:`check_model_data` turns either into the tuple and refuses data that would make int8 ranges or a budget
meaningless (a missing input, different N, ids outside the vocabulary, a mask that is not 0/1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgestill.errors import InputError

Samples = np.ndarray | tuple[np.ndarray, ...]  # one array (single input) or one array per input, model order


def arrays_of(data: Samples) -> list[np.ndarray]:
    """The data as a list with one array per model input."""
    return [data] if isinstance(data, np.ndarray) else list(data)


def n_samples(data: Samples) -> int:
    """How many samples (rows of the first axis) the data holds."""
    first = arrays_of(data)[0]
    return int(len(first)) if first.ndim else 0


def take(data: Samples, idx: Any) -> Samples:
    """The samples ``idx`` (indices or a slice) of every input, in the data's own form."""
    if isinstance(data, np.ndarray):
        return data[idx]
    return tuple(a[idx] for a in data)


def concat(parts: Sequence[Samples]) -> Samples:
    """Samples of several parts stacked along N (every part of the same form)."""
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(list(parts))
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(len(parts[0])))


def torch_batch(data: Samples, start: int, stop: int, dtypes: Sequence[Any] | None = None) -> tuple:
    """Samples ``start:stop`` as a tuple of torch tensors, one per input (cast to ``dtypes`` when given)."""
    import torch

    out = []
    for i, a in enumerate(arrays_of(data)):
        t = torch.from_numpy(np.ascontiguousarray(a[start:stop]))
        out.append(t.to(dtypes[i]) if dtypes is not None else t)
    return tuple(out)


def feeds(data: Samples, names: Sequence[str]) -> list[dict[str, np.ndarray]]:
    """One batch-1 feed per sample, ``{input name: array}`` (what onnxruntime and ai-edge-quantizer calibrate on)."""
    arrays = arrays_of(data)
    return [{name: np.ascontiguousarray(a[i : i + 1]) for name, a in zip(names, arrays)} for i in range(n_samples(data))]


def sample_digest(data: Samples) -> str:
    """sha256 over every sample's bytes, input after input within a sample (the calibration manifest's hash)."""
    h = hashlib.sha256()
    arrays = arrays_of(data)
    for i in range(n_samples(data)):
        for a in arrays:
            h.update(np.ascontiguousarray(a[i]).tobytes())
    return h.hexdigest()


def is_integer_input(args: Sequence[Any]) -> bool:
    """Whether any example input is an integer tensor (token ids, masks): a text-like model."""
    return any(not getattr(a, "is_floating_point", lambda: True)() for a in args)


def input_names_of(model: Any, n: int, specs: Sequence[Any] | None = None) -> list[str]:
    """Names of the model's ``n`` inputs: from ``specs`` (``.name``), else the parameters of ``model.forward``.

    Falls back to ``input{i}`` for what neither names (a ``*args`` forward).
    """
    names: list[str | None] = [getattr(s, "name", None) for s in specs] if specs else []
    if len(names) != n or not all(names):
        import inspect

        try:
            params = [p for p in inspect.signature(model.forward).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            params = []
        names = [p.name for p in params[:n]] if len(params) >= n else []
    if len(names) != n:
        names = [f"input{i}" for i in range(n)]
    return [str(x) for x in names]


def _kind_of(spec: Any) -> tuple[str | None, int | None, int | None]:
    if spec is None:
        return None, None, None
    return getattr(spec, "kind", None), getattr(spec, "low", None), getattr(spec, "high", None)


def check_model_data(
    data: Any, sample_shapes: Sequence[Sequence[int]], *, what: str, names: Sequence[str], dtypes: Sequence[Any] | None = None,
    specs: Sequence[Any] | None = None, why: str = "int8 ranges and the accuracy budget would be meaningless",
) -> Samples:
    """User data for a model's inputs, checked and in model order: one array, or a tuple of one array per input.

    Args:
        data: an (N, ...) array (single-input models), a list/tuple of arrays in model order, or a dict of arrays
            named like the inputs (extra keys such as ``y`` are ignored).
        sample_shapes: each input's shape without its batch axis.
        what: the data's role, named in messages ("calibration", "eval", "validation").
        names: the inputs' names (model order).
        dtypes: numpy dtypes to cast each input to (the model's; None keeps them).
        specs: per input, an object with ``kind`` (float, ids, mask, type_ids, int) and ``low``/``high``
            (InputShape or TensorSpec); ids and type ids must lie in [low, high), masks in {0, 1}.

    Raises:
        InputError: a missing input, too many arrays, a non-numeric, empty or misshapen array, NaN/Inf, arrays with
            different N, ids outside the vocabulary or type ids outside [low, high), a mask that is not 0/1.
    """
    n_in = len(sample_shapes)
    if isinstance(data, Mapping):
        missing = [n for n in names if n not in data]
        if missing:
            raise InputError(
                f"{what} data holds arrays {sorted(map(str, data))} but the model's inputs are {', '.join(names)}: "
                f"{', '.join(missing)} is missing. Save one (N, ...) array per input, named like the input "
                "(np.savez(path, input_ids=..., attention_mask=..., y=labels))."
            )
        arrays = [data[n] for n in names]
    elif isinstance(data, (list, tuple)):
        arrays = list(data)
    else:
        arrays = [data]
    if len(arrays) != n_in:
        raise InputError(
            f"{what} data gives {len(arrays)} array(s) but the model takes {n_in} input(s) ({', '.join(names)}). "
            + ("Pass one (N, ...) array per input in that order, or a dict named like the inputs." if n_in > 1 else
               "Pass one (N, ...) array of samples.")
        )
    from edgestill.export.validate import check_samples

    out = []
    for i, (arr, shape, name) in enumerate(zip(arrays, sample_shapes, names)):
        label = what if n_in == 1 else f"{what} input {name!r}"
        a = check_samples(arr, shape, what=label, why=why)
        if dtypes is not None and dtypes[i] is not None:
            target = np.dtype(dtypes[i])
            if target.kind in "iu" and a.dtype.kind == "f":
                if not np.array_equal(a, np.round(a)):
                    raise InputError(f"{label} holds fractional values but the model takes integers ({target}); pass "
                                     "whole numbers (token ids, mask 0/1).")
            a = np.ascontiguousarray(a.astype(target, copy=False))
        kind, low, high = _kind_of(specs[i] if specs and i < len(specs) else None)
        if kind in ("ids", "type_ids", "int") and high is not None and len(a):
            lo = 0 if low is None else int(low)
            bad = (a < lo) | (a >= int(high))
            if bad.any():
                first = int(a[bad].reshape(-1)[0])
                meaning = "token ids" if kind == "ids" else "values"
                raise InputError(
                    f"{label} holds {int(bad.sum())} {meaning} outside [{lo}, {int(high)}) (e.g. {first})"
                    + (f": the model's vocabulary has {int(high)} entries and an id past it would index past the embedding "
                       "table. Encode the texts with this model's own tokenizer." if kind == "ids" else
                       ". Pass values the model's embedding table holds.")
                )
        if kind == "mask" and len(a) and not np.isin(a, (0, 1)).all():
            raise InputError(f"{label} is an attention mask but holds values other than 0 and 1; pass 1 for real tokens "
                             "and 0 for padding.")
        out.append(a)
    lengths = [len(a) for a in out]
    if len(set(lengths)) > 1:
        raise InputError(
            f"{what} data: the inputs hold different numbers of samples ({', '.join(f'{n}: {k}' for n, k in zip(names, lengths))}); "
            "every input needs one row per sample, the same N for all."
        )
    return out[0] if n_in == 1 else tuple(out)
