"""Turn what a user names into a torch model: a built-in name, a ``pkg.module:function`` factory, a checkpoint,
a ``torch.export`` program (.pt2) or an ONNX file, and an input shape such as ``1x3x224x224``.

Every failure here is the user's input, so every one raises :class:`InputError` (exit 2) with a message
that says what was received, what is valid and what to do. Torch is imported inside the functions only.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgestill.artifact import TensorSpec
from edgestill.errors import InputError, UnknownNameError
from edgestill.models.checkpoints import (  # noqa: F401  (re-exported: callers import them from here)
    _LIST_LIMIT,
    _WRAPPER_KEYS,
    CHECKPOINT_SUFFIXES,
    read_state_dict,
)
from edgestill.models.inputs import (  # noqa: F401  (re-exported: callers import them from here)
    _RANDOM_BYTES,
    INPUT_KINDS,
    NAMED_KINDS,
    InputShape,
    LoadedModel,
    kind_of,
    random_input,
)

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)
_DYNAMIC = {"n", "?", "-1", "batch", "b"}
_SEQ = {"s", "seq"}  # a symbolic sequence length as dim 1 (ONNX, OpenVINO; traced at SEQ_EXAMPLE or --seq-len)
SEQ_EXAMPLE = 128  # the length an S dim is traced (and validated) at when --seq-len does not say
INPUT_DTYPES = ("float32", "float16", "int64", "int32", "int8", "uint8")
DEFAULT_VOCAB = 100  # ids' vocabulary size when neither --vocab-size nor a model config gives one
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
MAX_RANK = 8  # images are 4-D and video 5-D; a longer --input-shape is almost always a typo (LiteRT kernels stop near 5-6)




def parse_input_shape(text: str, *, option: str = "--input-shape") -> InputShape:
    """Parse ``1x3x224x224`` (static), ``Nx3x224x224`` / ``?x3x224x224`` (dynamic batch), ``1xSx...`` (dim 1 a
    dynamic sequence, traced at SEQ_EXAMPLE), each with an optional ``:DTYPE`` suffix (float32 by default; one of
    INPUT_DTYPES). The input's kind is "int" for integer dtypes, else "float".

    Raises:
        InputError: a comma (several shapes in one option: that is --input NAME:SHAPE once per input), not positive
            whole numbers separated by 'x', a dynamic dim other than the batch (or the sequence as dim 1), more than
            ``MAX_RANK`` dims, an unknown dtype, or one example input too large for the machine's memory.
    """
    raw = str(text).strip()
    example = f"e.g. {option} 1x3x224x224, Nx3x224x224 for a dynamic batch, or 1x128:int64"
    if "," in raw:
        raise InputError(f"{option} {text!r} holds a comma: one {option} gives one input's shape. For a model with several "
                         "inputs pass --input NAME:SHAPE[:DTYPE] once per input (e.g. --input input_ids:1x128:int64 "
                         "--input attention_mask:1x128:int64).")
    dtype = "float32"
    if ":" in raw:
        raw, _, given = raw.rpartition(":")
        dtype = given.strip().lower()
        if dtype not in INPUT_DTYPES:
            raise InputError(f"{option} {text!r}: dtype {given!r} is not one of {', '.join(INPUT_DTYPES)} ({example}).")
    parts = [p.strip() for p in re.split(r"[xX×]", raw)] if raw.strip() else []
    if len(parts) < 2 or any(not p for p in parts):
        raise InputError(f"{option} {text!r} is not a shape: give the dims separated by 'x', batch first ({example}).")
    dynamic = parts[0].lower() in _DYNAMIC
    dynamic_seq = parts[1].lower() in _SEQ
    dims = [1] if dynamic else []
    for i, p in enumerate(parts[1:] if dynamic else parts):
        axis = i + int(dynamic)
        if axis == 1 and dynamic_seq:
            dims.append(SEQ_EXAMPLE)
            continue
        if p.lower() in _DYNAMIC | _SEQ:
            raise InputError(f"{option} {text!r}: only the batch (first) dim, or a sequence (S) as dim 1, may be dynamic; "
                             f"dim {axis} is {p!r} ({example}).")
        if not p.isdigit() or int(p) < 1:
            raise InputError(f"{option} {text!r}: dim {p!r} is not a whole number >= 1 ({example}).")
        dims.append(int(p))
    if not dynamic and dims[0] != 1:
        raise InputError(f"{option} {text!r}: the batch dim must be 1 (the traced shape) or N for a dynamic batch ({example}).")
    if len(dims) > MAX_RANK:
        raise InputError(f"{option} {text!r} has {len(dims)} dims; edgestill's formats take at most {MAX_RANK} ({example}).")
    from edgestill.limits import check_allocation, element_count

    check_allocation(element_count(dims) * (_RANDOM_BYTES + np.dtype(dtype).itemsize),
                     what=f"{option} {text} (one {dtype} example input)",
                     fix="Pass the input size the model really takes (batch first, e.g. 1x3x224x224).")
    return InputShape(dims=tuple(dims), dynamic_batch=dynamic, dtype=dtype, kind=kind_of(None, dtype), dynamic_seq=dynamic_seq)


def parse_input_spec(text: str, *, vocab_size: int | None = None) -> InputShape:
    """Parse ``--input NAME:SHAPE[:DTYPE]`` (e.g. ``input_ids:1x128:int64``; SHAPE as :func:`parse_input_shape` takes it).

    The kind follows the name: input_ids → ids (vocabulary ``vocab_size``; None: decided by :func:`load_model`),
    attention_mask → mask, token_type_ids → type_ids (these three default to int64), other integers → int, floats → float.

    Raises:
        InputError: not NAME:SHAPE, a name that is not an identifier, or a bad shape or dtype.
    """
    raw = str(text).strip()
    name, sep, rest = raw.partition(":")
    name = name.strip()
    if not sep or not rest.strip():
        raise InputError(f"--input {text!r} is not NAME:SHAPE[:DTYPE]; give the forward's argument name and its shape, "
                         "e.g. --input input_ids:1x128:int64 --input attention_mask:1x128:int64, or --input image:1x3x224x224.")
    if not _NAME.match(name):
        raise InputError(f"--input {text!r}: {name!r} is not an input name (letters, digits and '_', not starting with a "
                         "digit); use the name of the forward's argument, e.g. input_ids.")
    if ":" not in rest and name in NAMED_KINDS:
        rest += ":int64"  # token inputs are integers unless the user says otherwise
    shape = parse_input_shape(rest, option=f"--input {name}:")
    kind = kind_of(name, shape.dtype)
    return dataclasses.replace(shape, name=name, kind=kind, low=0 if kind == "ids" else None,
                               high=vocab_size if kind == "ids" else None)


def input_specs(shapes: Sequence[InputShape], names: Sequence[str] = ()) -> tuple[TensorSpec, ...]:
    """The TensorSpecs exported files take for ``shapes`` (names from ``names`` where a shape has none), or () when
    the inputs are unnamed and have no symbolic sequence (the writers' default names, as for a single image input)."""
    if not any(s.name or s.dynamic_seq for s in shapes):
        return ()
    fallback = list(names) + [f"input_{i}" for i in range(len(names), len(shapes))]
    return tuple(s.tensor_spec(fallback[i]) for i, s in enumerate(shapes))


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
        specs.append(InputShape(dims=(1 if dims[0] is None else dims[0], *dims[1:]), dynamic_batch=dims[0] is None, dtype=dtype,
                                name=node.name, kind=kind_of(node.name, dtype)))
    return specs


def load_model(
    spec: str,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    trust_checkpoint: bool = False,
    input_shape: InputShape | str | Sequence[InputShape] | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    seq_len: int | None = None,
    dynamic_seq: bool = False,
    vocab_size: int | None = None,
) -> LoadedModel:
    """Resolve ``spec`` (built-in name, ``pkg.module:function``, ``FILE.pt2``, ``FILE.onnx`` or a Hugging Face folder)
    into a LoadedModel.

    The input shape defaults to the built-in model's standard input, the .pt2 program's own inputs (with their
    names), the ONNX file's inputs, or a Hugging Face folder's token inputs; a factory needs ``input_shape``: one
    InputShape (or its text) for a one-input forward, or a list of named ones (``--input NAME:SHAPE``), passed to the
    forward in its parameters' order.

    Args:
        seq_len: a Hugging Face folder's traced sequence length (default min(128, its maximum)), or the length an
            ``S`` dim is traced at.
        dynamic_seq: a symbolic sequence dim (ONNX, OpenVINO) for a Hugging Face folder or the token inputs
            (ids, mask, type_ids) of a factory.
        vocab_size: the vocabulary of a factory's ``input_ids`` (random ids stay below it); default 100, with a warning.

    Raises:
        UnknownNameError: unknown built-in name (closest names suggested).
        InputError: a bad checkpoint, malformed input shape, missing or corrupt file, options that do not apply, inputs
            the forward does not take (see :func:`match_forward`), a sequence longer than the model's maximum, or a
            forward that fails on the example input (see :func:`check_forward`).
    """
    shapes = _shape_list(input_shape)
    if vocab_size is not None and (isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1):
        raise InputError(f"--vocab-size {vocab_size!r} is not a whole number >= 1; give the size of the model's vocabulary.")
    if seq_len is not None and (isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1):
        raise InputError(f"--seq-len {seq_len!r} is not a whole number >= 1; give the number of tokens the model takes.")
    source: dict[str, Any] = {"model": spec}
    if checkpoint is not None:
        source["checkpoint"] = str(checkpoint)
    path = Path(spec)
    if path.is_dir():
        return _hf_source(path, checkpoint, shapes, seq_len=seq_len, dynamic_seq=dynamic_seq, vocab_size=vocab_size,
                          trust_checkpoint=trust_checkpoint)
    token_options = [o for o, given in (("--seq-len", seq_len is not None), ("--dynamic-length", dynamic_seq),
                                        ("--vocab-size", vocab_size is not None)) if given]
    if path.suffix in (".pt2", ".onnx"):
        if checkpoint is not None:
            raise InputError(f"--checkpoint does not apply to {path.name}: a {path.suffix} file carries its own weights. Drop --checkpoint.")
        if token_options:
            raise InputError(f"{', '.join(token_options)} do(es) not apply to {path.name}: the file fixes its own inputs. Drop them.")
        if shapes is not None and len(shapes) != 1:
            raise InputError(f"--input does not apply to {path.name}: the file keeps its own input names and shapes. "
                             "Drop --input (or give one --input-shape to change a one-input program's shape).")
        shape = shapes[0] if shapes else None
        if path.suffix == ".onnx":
            return _onnx_source(path, shape, source)
        ep = load_exported_program(path)
        specs = _program_inputs(ep)
        static_batch = None if specs[0].dynamic_batch else specs[0].dims[0]
        if shape is not None:
            if len(specs) != 1:
                raise InputError(f"--input-shape gives one input but {path.name} takes {len(specs)}; leave it out to use the program's shapes.")
            specs = [dataclasses.replace(specs[0], dims=shape.dims, dynamic_batch=shape.dynamic_batch)]
        model = program_module(ep, static_batch=static_batch)
        source.update(kind="exported-program", sha256=_sha(path))
        examples = tuple(s.example() for s in specs)
        check_forward(model, examples, spec)
        return LoadedModel(model=model, example_inputs=examples, input_shapes=specs, source=source)
    if ":" not in spec and token_options:
        raise InputError(f"{', '.join(token_options)} do(es) not apply to the built-in image model {spec}. Drop them.")
    model = resolve_model(spec, num_classes=num_classes, in_channels=in_channels)
    if ":" in spec:
        source["kind"] = "factory"
        if shapes is None:
            raise InputError(f"--model {spec} is a factory: pass --input-shape (e.g. 1x3x224x224), or --input NAME:SHAPE "
                             "once per forward argument, so edgestill knows what it takes.")
        specs = _token_options(match_forward(model, shapes, spec), seq_len=seq_len, dynamic_seq=dynamic_seq,
                               vocab_size=vocab_size, spec=spec)
    else:
        from edgestill.models import standard_input

        if shapes is not None and len(shapes) != 1:
            raise InputError(f"--model {spec} takes one input; pass one --input-shape (e.g. 1x3x224x224), not {len(shapes)} --input.")
        shape = shapes[0] if shapes else None
        source["kind"] = "builtin"
        std = standard_input(spec)
        dims = shape.dims if shape is not None else tuple(std.shape)
        if shape is None and in_channels is not None and len(dims) > 1:
            dims = (dims[0], in_channels, *dims[2:])
        specs = [InputShape(dims=dims, dynamic_batch=bool(shape and shape.dynamic_batch), dtype=std.dtype, low=std.low,
                            high=std.high, kind=kind_of(None, std.dtype))]
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, trust=trust_checkpoint)
        source["checkpoint_sha256"] = _sha(Path(checkpoint))
    examples = tuple(s.example() for s in specs)
    check_forward(model.eval(), examples, spec)
    return LoadedModel(model=model, example_inputs=examples, input_shapes=specs, source=source)


def _shape_list(input_shape: InputShape | str | Sequence[InputShape] | None) -> list[InputShape] | None:
    if input_shape is None:
        return None
    if isinstance(input_shape, str):
        return [parse_input_shape(input_shape)]
    if isinstance(input_shape, InputShape):
        return [input_shape]
    shapes = [parse_input_shape(s) if isinstance(s, str) else s for s in input_shape]
    if not shapes or not all(isinstance(s, InputShape) for s in shapes):
        raise InputError(f"input shapes must be InputShapes (or shape strings), one per input; got {input_shape!r}.")
    names = [s.name for s in shapes if s.name]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"--input names {', '.join(dup)} more than once; give each forward argument one --input.")
    if len(shapes) > 1 and len(names) != len(shapes):
        raise InputError("several inputs need a name each: pass --input NAME:SHAPE[:DTYPE] once per forward argument "
                         "(e.g. --input input_ids:1x128:int64 --input attention_mask:1x128:int64).")
    return shapes


def forward_parameters(model: Any) -> tuple[list[str], int] | None:
    """The forward's positional parameter names and how many of them are required, or None when it takes ``*args``."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return None
    positional = [p for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    return [p.name for p in positional], sum(p.default is inspect.Parameter.empty for p in positional)


def match_forward(model: Any, shapes: list[InputShape], spec: str) -> list[InputShape]:
    """``shapes`` in the order the model's forward takes them: named inputs by the forward's parameter names, unnamed
    ones positionally. A forward with ``*args`` takes the inputs in the order given.

    Raises:
        InputError: a name the forward does not take, fewer inputs than its required parameters, more than it takes,
            or named inputs that skip one of its parameters (they are passed positionally); the message names the
            forward's parameters.
    """
    signature = forward_parameters(model)
    if signature is None:
        return shapes
    params, required = signature
    takes = f"{type(model).__name__}.forward takes ({', '.join(params)})" + (
        f", {required} of them required" if required != len(params) else "")
    how = "Pass --input NAME:SHAPE[:DTYPE] once per forward argument, e.g. " + " ".join(
        f"--input {n}:1x128:int64" for n in params[:3]) if params else ""
    if all(s.name for s in shapes):
        unknown = [s.name for s in shapes if s.name not in params]
        if unknown:
            raise InputError(f"--model {spec}: --input names {', '.join(map(repr, unknown))}, which the forward does not take; "
                             f"{takes}. Name each --input after a forward argument.")
        ordered = sorted(shapes, key=lambda s: params.index(s.name))
        expected = params[: len(ordered)]
        if [s.name for s in ordered] != expected:
            missing = [n for n in expected if n not in {s.name for s in shapes}]
            raise InputError(f"--model {spec}: the inputs are passed positionally, so they must be the forward's first "
                             f"{len(ordered)} arguments; {', '.join(missing)} is missing. {takes}. {how}.")
        shapes = ordered
    if len(shapes) < required:
        missing = params[len(shapes): required]
        raise InputError(f"--model {spec}: {len(shapes)} input(s) given but {takes}; missing {', '.join(missing)}. {how}.")
    if len(shapes) > len(params):
        raise InputError(f"--model {spec}: {len(shapes)} inputs given but {takes}. Drop the extra --input.")
    return shapes


def _token_options(shapes: list[InputShape], *, seq_len: int | None, dynamic_seq: bool, vocab_size: int | None,
                   spec: str) -> list[InputShape]:
    """Apply --seq-len, --dynamic-length and --vocab-size to a factory's token inputs (ids, mask, type_ids)."""
    tokens = [i for i, s in enumerate(shapes) if s.kind in ("ids", "mask", "type_ids") and len(s.dims) > 1]
    if (seq_len is not None or dynamic_seq) and not tokens:
        raise InputError(f"--seq-len and --dynamic-length apply to token inputs (input_ids, attention_mask, "
                         f"token_type_ids) and {spec} has none. Drop them, or name the inputs with --input.")
    out = list(shapes)
    for i in tokens:
        s = out[i]
        dims = (s.dims[0], seq_len, *s.dims[2:]) if seq_len is not None else s.dims
        out[i] = dataclasses.replace(s, dims=dims, dynamic_seq=s.dynamic_seq or dynamic_seq)
    for i, s in enumerate(out):
        if s.kind == "ids" and s.high is None:
            if vocab_size is None:
                logger.warning("input %s: no --vocab-size given; random ids are drawn from 0..%d", s.name, DEFAULT_VOCAB - 1)
            out[i] = dataclasses.replace(s, low=0, high=vocab_size or DEFAULT_VOCAB)
    return out


def _hf_source(path: Path, checkpoint: Any, shapes: list[InputShape] | None, *, seq_len: int | None, dynamic_seq: bool,
               vocab_size: int | None, trust_checkpoint: bool) -> LoadedModel:
    """A Hugging Face folder through :func:`edgestill.models.hf.load_hf_model`."""
    from edgestill.models.hf import is_hf_dir, load_hf_model

    if not is_hf_dir(path):
        raise InputError(f"--model {path} is a folder without config.json. Pass a Hugging Face model folder (config.json, "
                         "model.safetensors, tokenizer.json), a built-in name, a factory, or a .pt2/.onnx file.")
    for option, given in (("--checkpoint", checkpoint is not None), ("--input/--input-shape", shapes is not None),
                          ("--vocab-size", vocab_size is not None)):
        if given:
            raise InputError(f"{option} does not apply to the Hugging Face folder {path}: its weights, inputs and vocabulary "
                             "come from the folder (config.json); set the sequence length with --seq-len. Drop it.")
    return load_hf_model(path, seq_len=seq_len, dynamic_seq=dynamic_seq, trust_checkpoint=trust_checkpoint)


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
