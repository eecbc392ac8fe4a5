"""Turn what a user names into a torch model: a built-in name, a ``pkg.module:function`` factory, a checkpoint,
a ``torch.export`` program (.pt2) or an ONNX file, and an input shape such as ``1x3x224x224``.

Every failure here is the user's input, so every one raises :class:`InputError` (exit 2) with a message
that says what was received, what is valid and what to do. Torch is imported inside the functions only.
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgestill.errors import InputError, UnknownNameError

if TYPE_CHECKING:
    import torch

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")  # common training-script layouts, unwrapped as-is
_DYNAMIC = {"n", "?", "-1", "batch", "b"}
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_LIST_LIMIT = 12


@dataclass(frozen=True, kw_only=True)
class InputShape:
    """One model input: its batch-1 shape, whether the batch dim is dynamic, and its dtype (ids: in [low, high))."""

    dims: tuple[int, ...]
    dynamic_batch: bool = False
    dtype: str = "float32"
    low: int | None = None
    high: int | None = None

    def __str__(self) -> str:
        dims = ["N" if self.dynamic_batch else str(self.dims[0]), *map(str, self.dims[1:])]
        return "x".join(dims)

    def samples(self, n: int, *, seed: int = 0) -> np.ndarray:
        """``n`` seeded random samples, (n, *dims[1:]): standard normal floats, or ids in [low, high)."""
        rng = np.random.default_rng(seed)
        shape = (n, *self.dims[1:])
        if np.dtype(self.dtype).kind in "iu":
            return rng.integers(self.low or 0, self.high or 100, size=shape).astype(self.dtype)
        return rng.standard_normal(shape).astype(self.dtype)

    def example(self, *, seed: int = 0) -> torch.Tensor:
        """A seeded example tensor of the exact (batch-1) shape, the tensor exporters trace with."""
        import torch

        return torch.from_numpy(self.samples(self.dims[0], seed=seed))


@dataclass(kw_only=True)
class LoadedModel:
    """A model ready to export: the torch module (None for an ONNX source), its example inputs and provenance."""

    model: Any  # torch.nn.Module | None
    example_inputs: tuple  # tuple[torch.Tensor, ...]; empty for an ONNX source
    input_shapes: list[InputShape]
    source: dict[str, Any] = field(default_factory=dict)
    onnx_path: Path | None = None

    @property
    def kind(self) -> str:
        return self.source.get("kind", "")


def parse_input_shape(text: str, *, option: str = "--input-shape") -> InputShape:
    """Parse ``1x3x224x224`` (static) or ``Nx3x224x224`` / ``?x3x224x224`` (dynamic batch).

    Raises:
        InputError: not positive whole numbers separated by 'x', or a dynamic dim other than the first.
    """
    raw = str(text).strip()
    parts = [p.strip() for p in re.split(r"[xX×,]", raw)] if raw else []
    example = f"e.g. {option} 1x3x224x224, or Nx3x224x224 for a dynamic batch"
    if len(parts) < 2 or any(not p for p in parts):
        raise InputError(f"{option} {text!r} is not a shape: give the dims separated by 'x', batch first ({example}).")
    dynamic = parts[0].lower() in _DYNAMIC
    dims = [1] if dynamic else []
    for i, p in enumerate(parts[1:] if dynamic else parts):
        if p.lower() in _DYNAMIC:
            raise InputError(f"{option} {text!r}: only the batch (first) dim may be dynamic; dim {i + int(dynamic)} is {p!r} ({example}).")
        if not p.isdigit() or int(p) < 1:
            raise InputError(f"{option} {text!r}: dim {p!r} is not a whole number >= 1 ({example}).")
        dims.append(int(p))
    if not dynamic and dims[0] != 1:
        raise InputError(f"{option} {text!r}: the batch dim must be 1 (the traced shape) or N for a dynamic batch ({example}).")
    return InputShape(dims=tuple(dims), dynamic_batch=dynamic)


def resolve_model(spec: str, *, num_classes: int | None = None, in_channels: int | None = None, seed: int = 0) -> torch.nn.Module:
    """Build the model ``spec`` names: a built-in name (fresh weights from ``seed``) or a ``pkg.module:function`` factory.

    A factory is called with no arguments (``num_classes`` is passed when given); the current folder is
    importable, as for ``python -m``.

    Raises:
        UnknownNameError: an unknown built-in name (the message lists the names and the closest one).
        InputError: the factory's module or function cannot be imported, fails, or returns no torch module.
    """
    import torch

    if ":" in spec:
        if not _FACTORY.match(spec):
            raise InputError(f"--model {spec!r} is neither a built-in name nor a factory 'package.module:function' (e.g. mypkg.nets:build_model).")
        module_name, fn_name = spec.split(":")
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise InputError(f"--model {spec!r}: cannot import module {module_name!r} ({exc}). Run from the folder that holds it or install it.") from None
        fn = getattr(module, fn_name, None)
        if not callable(fn):
            names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
            raise UnknownNameError(f"function in {module_name}", fn_name, names)
        try:
            model = fn(num_classes=num_classes) if num_classes is not None else fn()
        except Exception as exc:  # user code: whatever it raises is a problem with the user's factory
            raise InputError(f"--model {spec!r}: the factory raised {type(exc).__name__}: {exc}") from None
        if not isinstance(model, torch.nn.Module):
            raise InputError(f"--model {spec!r} returned a {type(model).__name__}, not a torch.nn.Module. Return the model from the factory.")
        return model.eval()
    from edgestill.models import create_model, default_num_classes

    classes = num_classes if num_classes is not None else default_num_classes(spec)
    return create_model(spec, num_classes=classes, in_channels=in_channels or 3, seed=seed).eval()


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


def load_checkpoint(model: torch.nn.Module, path: str | os.PathLike[str], *, trust: bool = False) -> torch.nn.Module:
    """Load a checkpoint into ``model`` strictly: every key present, none extra, every shape equal.

    Raises:
        InputError: the file cannot be read (see :func:`read_state_dict`), or it belongs to another
            architecture: the message lists missing keys, unexpected keys and shape mismatches.
    """
    state = read_state_dict(path, trust=trust)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {list(state[k].shape)} vs model {list(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if items:
                more = f" (+{len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else ""
                parts.append(f"{label} ({len(items)}): {', '.join(items[:_LIST_LIMIT])}{more}")
        hint = ""
        if unexpected and all(k.startswith("module.") for k in unexpected):
            hint = " The keys start with 'module.' (saved from DataParallel/DDP): save model.module.state_dict() instead."
        raise InputError(
            f"--checkpoint {path} does not fit {type(model).__name__}: it was saved from another architecture or size. "
            f"{'; '.join(parts)}. Pass the --model (and --num-classes) it was trained with.{hint}"
        )
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_exported_program(path: str | os.PathLike[str]) -> Any:
    """Load a ``torch.export`` program saved with ``torch.export.save`` (.pt2).

    Raises:
        InputError: missing, truncated or not a torch.export program.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise InputError(f"--model {p} does not exist. Pass a .pt2 file written by torch.export.save.")
    try:
        return torch.export.load(str(p))
    except Exception as exc:  # the loader raises zip, pickle and runtime errors alike for a bad file
        raise InputError(f"--model {p} is not a torch.export program or is truncated ({type(exc).__name__}: {_first_line(exc)}). "
                         "Write it with torch.export.save(torch.export.export(model, args), path).") from None


def program_module(ep: Any, static_batch: int | None = None) -> torch.nn.Module:
    """Wrap ``ep.module()`` in a plain module whose ``eval()``/``train()`` are no-ops (the program's mode is fixed).

    The module ``ExportedProgram.module()`` returns refuses ``eval()``, which every exporter calls. A program
    exported with a static batch refuses other batch sizes; with ``static_batch`` set, a larger batch (the
    validation samples) is run ``static_batch`` rows at a time.
    """
    import torch

    class ExportedProgramModule(torch.nn.Module):
        def __init__(self, program: torch.nn.Module):
            super().__init__()
            self.program = program
            self.training = False

        def forward(self, *args: Any) -> Any:
            n = args[0].shape[0] if args and isinstance(args[0], torch.Tensor) and args[0].ndim else None
            if static_batch is None or n is None or n == static_batch or n % static_batch:
                return self.program(*args)
            outs = [self.program(*(a[i : i + static_batch] for a in args)) for i in range(0, n, static_batch)]
            if isinstance(outs[0], torch.Tensor):
                return torch.cat(outs)
            return type(outs[0])(torch.cat(parts) for parts in zip(*outs))

        def train(self, mode: bool = True) -> ExportedProgramModule:
            return self

    return ExportedProgramModule(ep.module())


def _program_inputs(ep: Any) -> list[InputShape]:
    """Input shapes of an ExportedProgram's user inputs (a symbolic first dim → dynamic batch)."""
    import torch

    specs = []
    for node in ep.graph.nodes:
        if node.op != "placeholder" or node.name not in ep.graph_signature.user_inputs:
            continue
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            raise InputError(f"the .pt2 program takes a non-tensor input {node.name!r}; edgestill exports tensor inputs only.")
        dims = [d if isinstance(d, int) else None for d in val.shape]
        if any(d is None for d in dims[1:]):
            raise InputError(f"the .pt2 program's input {node.name!r} has symbolic dims {list(val.shape)} beyond the batch; "
                             "export it with static shapes except the batch dim.")
        dtype = str(val.dtype).removeprefix("torch.")
        specs.append(InputShape(dims=(1 if dims[0] is None else dims[0], *dims[1:]), dynamic_batch=dims[0] is None, dtype=dtype))
    return specs


def load_model(
    spec: str,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    trust_checkpoint: bool = False,
    input_shape: InputShape | str | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
) -> LoadedModel:
    """Resolve ``spec`` (built-in name, ``pkg.module:function``, ``FILE.pt2`` or ``FILE.onnx``) into a LoadedModel.

    The input shape defaults to the built-in model's standard input, the .pt2 program's own input shapes,
    or the ONNX file's inputs; a factory needs ``input_shape``.

    Raises:
        UnknownNameError: unknown built-in name (closest names suggested).
        InputError: a bad checkpoint, malformed input shape, missing file, or options that do not apply.
    """
    shape = parse_input_shape(input_shape) if isinstance(input_shape, str) else input_shape
    source: dict[str, Any] = {"model": spec}
    if checkpoint is not None:
        source["checkpoint"] = str(checkpoint)
    path = Path(spec)
    if path.suffix in (".pt2", ".onnx"):
        if checkpoint is not None:
            raise InputError(f"--checkpoint does not apply to {path.name}: a {path.suffix} file carries its own weights. Drop --checkpoint.")
        if path.suffix == ".onnx":
            return _onnx_source(path, shape, source)
        ep = load_exported_program(path)
        specs = _program_inputs(ep)
        static_batch = None if specs[0].dynamic_batch else specs[0].dims[0]
        if shape is not None:
            if len(specs) != 1:
                raise InputError(f"--input-shape gives one input but {path.name} takes {len(specs)}; leave it out to use the program's shapes.")
            specs = [InputShape(dims=shape.dims, dynamic_batch=shape.dynamic_batch, dtype=specs[0].dtype)]
        model = program_module(ep, static_batch=static_batch)
        source.update(kind="exported-program", sha256=_sha(path))
        return LoadedModel(model=model, example_inputs=tuple(s.example() for s in specs), input_shapes=specs, source=source)
    model = resolve_model(spec, num_classes=num_classes, in_channels=in_channels)
    if ":" in spec:
        source["kind"] = "factory"
        if shape is None:
            raise InputError(f"--model {spec} is a factory: pass --input-shape (e.g. 1x3x224x224) so edgestill knows what it takes.")
        specs = [shape]
    else:
        from edgestill.models import standard_input

        source["kind"] = "builtin"
        std = standard_input(spec)
        dims = shape.dims if shape is not None else tuple(std.shape)
        if shape is None and in_channels is not None and len(dims) > 1:
            dims = (dims[0], in_channels, *dims[2:])
        specs = [InputShape(dims=dims, dynamic_batch=bool(shape and shape.dynamic_batch), dtype=std.dtype, low=std.low, high=std.high)]
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, trust=trust_checkpoint)
        source["checkpoint_sha256"] = _sha(Path(checkpoint))
    return LoadedModel(model=model.eval(), example_inputs=tuple(s.example() for s in specs), input_shapes=specs, source=source)


def _onnx_source(path: Path, shape: InputShape | None, source: dict[str, Any]) -> LoadedModel:
    if not path.is_file():
        raise InputError(f"--model {path} does not exist. Pass an .onnx file to convert to OpenVINO.")
    from edgestill.export.onnx import onnx_specs

    try:
        ins, _ = onnx_specs(path)
    except Exception as exc:  # onnx raises DecodeError and others for a file that is not a model
        raise InputError(f"--model {path} is not an ONNX model or is truncated ({type(exc).__name__}: {_first_line(exc)}).") from None
    specs = []
    for s in ins:
        dynamic = bool(s.shape) and (not isinstance(s.shape[0], int) or s.shape[0] < 1) or bool(shape and shape.dynamic_batch)
        rest = s.shape[1:]
        if any(not isinstance(d, int) or d < 1 for d in rest):
            if shape is None or len(ins) != 1:
                raise InputError(f"{path.name}: input {s.name!r} has symbolic dims {list(s.shape)}; pass --input-shape (e.g. Nx3x224x224).")
            rest = shape.dims[1:]
        specs.append(InputShape(dims=(1, *rest), dynamic_batch=dynamic, dtype=s.dtype))
    source.update(kind="onnx", sha256=_sha(path))
    return LoadedModel(model=None, example_inputs=(), input_shapes=specs, source=source, onnx_path=path)


def _sha(path: Path) -> str:
    from edgestill.artifact import sha256_file

    return sha256_file(path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
