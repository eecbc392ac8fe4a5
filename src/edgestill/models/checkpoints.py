"""Reading a checkpoint's tensors safely: .safetensors, or a torch file loaded weights-only (pickles only when trusted).

Its own module, below :mod:`edgestill.models.loading` and :mod:`edgestill.models.hf` (both read checkpoints), so the two
loaders need not import each other. Every failure is the user's input: :class:`InputError` (exit 2).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgestill.errors import InputError

if TYPE_CHECKING:
    import torch

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")  # common training-script layouts, unwrapped as-is
_LIST_LIMIT = 12


def read_state_dict(path: str | os.PathLike[str], *, trust: bool = False) -> dict[str, torch.Tensor]:
    """Read a checkpoint's tensors: .safetensors, or a torch file loaded with ``weights_only=True``.

    ``{"state_dict": ...}``, ``{"model_state_dict": ...}`` and ``{"model": ...}`` layouts are unwrapped; a
    pickled module (only with ``trust=True``) gives its state dict.

    Raises:
        InputError: missing, truncated or corrupt file; pickled objects without ``trust``; no tensors in it.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise InputError(f"--checkpoint {p} does not exist. Pass a .safetensors or .pt/.pth file.")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except Exception as exc:  # SafetensorError and OSError mean the same: the file is not a whole safetensors file
            raise InputError(
                f"--checkpoint {p} could not be read as safetensors ({exc}); it is truncated or not a safetensors file. "
                "Copy it again or re-save it with safetensors.torch.save_file(model.state_dict(), path)."
            ) from None
    if p.suffix not in CHECKPOINT_SUFFIXES:
        raise InputError(f"--checkpoint {p}: unknown file type {p.suffix!r}; valid: {', '.join(CHECKPOINT_SUFFIXES)}.")
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust:
            raise InputError(
                f"--checkpoint {p} holds pickled Python objects, not only tensors ({_first_line(exc)}). Loading it would run "
                "code from the file. Re-save it as a state dict (torch.save(model.state_dict(), path)) or safetensors; or, "
                "only if you trust where the file came from, pass --trust-checkpoint."
            ) from None
        obj = _load_trusted(p)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise InputError(f"--checkpoint {p} is truncated or not a torch checkpoint ({_first_line(exc)}). Copy it again or re-save it.") from None
    return _tensors_of(obj, p)


def _load_trusted(p: Path) -> Any:
    import torch

    try:
        return torch.load(str(p), map_location="cpu", weights_only=False)
    except Exception as exc:  # unpickling user objects can raise anything (missing class, truncation)
        raise InputError(f"--checkpoint {p} could not be unpickled even with --trust-checkpoint ({type(exc).__name__}: {_first_line(exc)}).") from None


def _tensors_of(obj: Any, p: Path) -> dict[str, torch.Tensor]:
    import torch

    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, torch.nn.Module):
                return inner.state_dict()
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return dict(inner)
        if obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
            return dict(obj)
        keys = list(obj)[:_LIST_LIMIT]
        raise InputError(
            f"--checkpoint {p} is a dict whose values are not all tensors (keys: {keys}) and has none of the usual "
            f"wrappers {list(_WRAPPER_KEYS)}. Save model.state_dict() itself."
        )
    raise InputError(f"--checkpoint {p} holds a {type(obj).__name__}, not a state dict. Save model.state_dict().")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
