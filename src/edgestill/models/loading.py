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

from edgestill.artifact import INPUT_KINDS  # noqa: F401  (what InputShape.kind may be)
from edgestill.errors import InputError, UnknownNameError

if TYPE_CHECKING:
    import torch

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")  # common training-script layouts, unwrapped as-is
_DYNAMIC = {"n", "?", "-1", "batch", "b"}
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_LIST_LIMIT = 12
MAX_RANK = 8  # images are 4-D and video 5-D; a longer --input-shape is almost always a typo (LiteRT kernels stop near 5-6)
_RANDOM_BYTES = 8  # seeded samples are drawn as float64, then cast: 8 transient bytes per element on top of the result




@dataclass(frozen=True, kw_only=True)
class InputShape:
    """One model input: its name, batch-1 shape, which dims are dynamic, dtype and meaning (``kind``, see INPUT_KINDS).

    ``name`` is the input's name in every exported file (None: the exporter's default, for single-input models);
    ``dynamic_seq`` makes dim 1 (the sequence) symbolic where the format allows (ONNX, OpenVINO); ids are in [low, high).
    """

    dims: tuple[int, ...]
    dynamic_batch: bool = False
    dtype: str = "float32"
    low: int | None = None
    high: int | None = None
    name: str | None = None
    kind: str = "float"
    dynamic_seq: bool = False

    def __str__(self) -> str:
        dims = ["N" if self.dynamic_batch else str(self.dims[0]), *map(str, self.dims[1:])]
        return "x".join(dims)

    def check_samples(self, n: int) -> None:
        """Refuse (InputError) ``n`` random samples of this input that would not fit the machine's memory."""
        from edgestill.limits import check_allocation, element_count

        check_allocation(element_count((n, *self.dims[1:])) * (_RANDOM_BYTES + np.dtype(self.dtype).itemsize),
                         what=f"{n} random samples of input {self} ({self.dtype})",
                         fix="Pass a smaller --samples (64 is the default), a smaller --input-shape, or --data with real samples.")

    def samples(self, n: int, *, seed: int = 0) -> np.ndarray:
        """``n`` seeded random samples, (n, *dims[1:]): standard normal floats, or ids in [low, high).

        Raises:
            InputError: the samples would not fit the machine's memory (checked before anything is allocated).
        """
        self.check_samples(n)
        shape = (n, *self.dims[1:])
        rng = np.random.default_rng(seed)
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
        InputError: not positive whole numbers separated by 'x', a dynamic dim other than the first, more than
            ``MAX_RANK`` dims, or one example input too large for the machine's memory (checked before allocating).
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
    if len(dims) > MAX_RANK:
        raise InputError(f"{option} {text!r} has {len(dims)} dims; edgestill's formats take at most {MAX_RANK} ({example}).")
    from edgestill.limits import check_allocation, element_count

    check_allocation(element_count(dims) * (_RANDOM_BYTES + 4), what=f"{option} {text} (one float32 example input)",
                     fix="Pass the input size the model really takes (batch first, e.g. 1x3x224x224).")
    return InputShape(dims=tuple(dims), dynamic_batch=dynamic)


def resolve_model(spec: str, *, num_classes: int | None = None, in_channels: int | None = None, seed: int = 0) -> torch.nn.Module:
    """Build the model ``spec`` names: a built-in name (fresh weights from ``seed``) or a ``pkg.module:function`` factory.

    A factory is called with no arguments (``num_classes`` is passed when given); the current folder is
    importable, as for ``python -m``.

    Raises:
        UnknownNameError: an unknown built-in name (the message lists the names and the closest one).
        InputError: the factory's module or function cannot be imported, its import or call raises or exits
            (``sys.exit()``), or it returns no torch module.
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
            raise InputError(f"--model {spec!r}: cannot import module {module_name!r} ({_first_line(exc)}). Run from the folder that holds it or install it.") from None
        except SystemExit as exc:  # a script's top-level sys.exit(): not a success, nothing was built
            raise InputError(f"--model {spec!r}: importing module {module_name!r} exited (SystemExit {exc.code}) before the "
                             "factory could build the model. Move the script code under `if __name__ == \"__main__\":`.") from None
        except Exception as exc:  # user code runs on import: whatever it raises is a problem with the user's module
            raise InputError(f"--model {spec!r}: importing module {module_name!r} raised {type(exc).__name__}: {_first_line(exc)}. "
                             "Fix the module so it imports cleanly (python -c 'import ...').") from None
        fn = getattr(module, fn_name, None)
        if not callable(fn):
            names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
            raise UnknownNameError(f"function in {module_name}", fn_name, names)
        try:
            model = fn(num_classes=num_classes) if num_classes is not None else fn()
        except SystemExit as exc:  # sys.exit() in a factory is not a model: report it rather than exit as a success
            raise InputError(f"--model {spec!r}: the factory {fn_name}() exited (SystemExit {exc.code}) while building the model. "
                             "Make it return the torch.nn.Module instead of calling sys.exit().") from None
        except Exception as exc:  # user code: whatever it raises is a problem with the user's factory
            raise InputError(f"--model {spec!r}: the factory {fn_name}() raised {type(exc).__name__}: {_first_line(exc)}. "
                             "Fix the factory (call it in Python to see the whole traceback).") from None
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
    """Load a checkpoint into ``model`` strictly: every key present, none extra, every shape equal, every dtype the
    model's or a lossless widening of it (float16/bfloat16 weights load into a float32 model; see :func:`_lossless_cast`).

    Raises:
        InputError: the file cannot be read (see :func:`read_state_dict`), or it belongs to another
            architecture: the message lists missing keys, unexpected keys, shape and dtype mismatches; or its
            tensors have a dtype that would be cast with a loss (float64 into float32) or across kinds (int into float).
    """
    state = read_state_dict(path, trust=trust)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {list(state[k].shape)} vs model {list(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    dtypes = [f"{k}: checkpoint {_dtype(state[k])} vs model {_dtype(own[k])}" for k in own
              if k in state and not _lossless_cast(state[k].dtype, own[k].dtype)]
    if missing or unexpected or shapes or dtypes:
        parts = []
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes),
                             ("dtype mismatches", dtypes)):
            if items:
                more = f" (+{len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else ""
                parts.append(f"{label} ({len(items)}): {', '.join(items[:_LIST_LIMIT])}{more}")
        hint = ""
        if unexpected and all(k.startswith("module.") for k in unexpected):
            hint = " The keys start with 'module.' (saved from DataParallel/DDP): save model.module.state_dict() instead."
        if dtypes and not (missing or unexpected or shapes):
            raise InputError(
                f"--checkpoint {path} has tensors of another dtype than {type(model).__name__} holds, and loading would "
                f"cast them silently: {parts[0]}. Save the weights in the model's dtype (e.g. "
                "{k: v.float() for k, v in state.items()}); half-precision (float16, bfloat16) weights into float32 are accepted."
            )
        raise InputError(
            f"--checkpoint {path} does not fit {type(model).__name__}: it was saved from another architecture or size. "
            f"{'; '.join(parts)}. Pass the --model (and --num-classes) it was trained with.{hint}"
        )
    model.load_state_dict(state, strict=True)
    return model.eval()


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _lossless_cast(saved: torch.dtype, model: torch.dtype) -> bool:
    """Whether checkpoint values of ``saved`` dtype load into a ``model`` tensor without a silent change of meaning.

    The same dtype, or a widening within one kind (float16/bfloat16 → float32, int32 → int64): a half-precision
    checkpoint of a float32 model is common and loses nothing. Refused: a narrowing (float64 → float32 rounds every
    weight) and a change of kind (int or bool weights into float parameters, floats into an integer buffer).
    """
    import torch

    if saved == model:
        return True
    if saved.is_floating_point != model.is_floating_point or saved.is_complex != model.is_complex or torch.bool in (saved, model):
        return False
    return torch.promote_types(saved, model) == model


def load_exported_program(path: str | os.PathLike[str]) -> Any:
    """Load a ``torch.export`` program saved with ``torch.export.save`` (.pt2).

    Raises:
        InputError: missing, truncated or not a torch.export program.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise InputError(f"--model {p} does not exist. Pass a .pt2 file written by torch.export.save.")
    if p.stat().st_size == 0:
        raise InputError(f"--model {p} is empty (0 bytes), not a torch.export program. "
                         "Write it with torch.export.save(torch.export.export(model, args), path).")
    import logging

    quiet = logging.getLogger("torch.export")  # logs a traceback for a bad archive before trying its legacy reader
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return torch.export.load(str(p))
    except Exception as exc:  # the loader raises zip, pickle and runtime errors alike for a bad file
        raise InputError(f"--model {p} is not a torch.export program or is truncated ({type(exc).__name__}: {_first_line(exc)}). "
                         "Write it with torch.export.save(torch.export.export(model, args), path).") from None
    finally:
        quiet.setLevel(level)


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
        InputError: a bad checkpoint, malformed input shape, missing or corrupt file, options that do not apply, or a
            forward that fails on the example input (see :func:`check_forward`).
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
        examples = tuple(s.example() for s in specs)
        check_forward(model, examples, spec)
        return LoadedModel(model=model, example_inputs=examples, input_shapes=specs, source=source)
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
    examples = tuple(s.example() for s in specs)
    check_forward(model.eval(), examples, spec)
    return LoadedModel(model=model, example_inputs=examples, input_shapes=specs, source=source)


def check_forward(model: torch.nn.Module, example_inputs: tuple, spec: str) -> None:
    """Run ``model`` once on its batch-1 example inputs, so a shape it cannot take is reported here, in one paragraph,
    before any output folder is touched (an exporter would bury the same error in pages of tracing output).

    Raises:
        InputError: the forward raised (or called ``sys.exit()``): names the input shape and the cause's first line.
    """
    import torch

    try:
        with torch.no_grad():
            model(*example_inputs)
    except (Exception, SystemExit) as exc:  # user code on an input shape it may not take: anything it raises is that
        shapes = ", ".join("x".join(map(str, t.shape)) + f" ({str(t.dtype).removeprefix('torch.')})" for t in example_inputs)
        cause = f"SystemExit {exc.code}" if isinstance(exc, SystemExit) else f"{type(exc).__name__}: {_first_line(exc)}"
        raise InputError(
            f"--model {spec}: the model's forward failed on the example input of shape {shapes}: {cause}. "
            "Pass the --input-shape the model takes (batch first, e.g. 1x3x224x224 for an image model), or check the "
            "model with that input in Python."
        ) from None


def _onnx_source(path: Path, shape: InputShape | None, source: dict[str, Any]) -> LoadedModel:
    if not path.is_file():
        raise InputError(f"--model {path} does not exist. Pass an .onnx file to convert to OpenVINO.")
    from edgestill.export.onnx import check_onnx_file, onnx_specs

    check_onnx_file(path)
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
