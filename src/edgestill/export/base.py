"""The EXPORTERS registry and what every float writer shares: versions, parent hash, reference outputs, errors.

The registry is a table of :class:`BackendSpec`: the format, the precisions the writer makes and where its
function lives (``module:function``), so what can be exported is known without importing torch or any format
library; :func:`edgestill.export.api.get_exporter` imports the writer when it is used. A writer is
``fn(model, example_inputs, *, staging_dir, name, precision="fp32", dynamic_batch=False) -> Artifact``: it writes
one float model into ``staging_dir`` and returns an unvalidated Artifact whose I/O specs are read from the written
file itself. Writers import this module only, never the dispatcher (``api``). Torch is imported inside functions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgestill.artifact import Artifact, Format, Precision, TensorSpec
from edgestill.errors import ConfigError, InputError, RuntimeFailure, UnsupportedError
from edgestill.registry import Registry

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, kw_only=True)
class BackendSpec:
    """One registered backend (a float writer or an int8 quantizer): what it makes and where its function lives.

    ``target`` is ``"package.module:function"``; the module is imported by :meth:`load` only, so reading the
    table (CLI choices, config validation) never imports torch or a format library.
    """

    format: Format
    precisions: tuple[Precision, ...]
    target: str
    label: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "format", Format(self.format))
        object.__setattr__(self, "precisions", tuple(Precision(p) for p in self.precisions))
        if not self.precisions or ":" not in self.target:
            raise ValueError(f"backend {self.target!r} needs at least one precision and a 'module:function' target")

    def load(self) -> Callable[..., Artifact]:
        """Import the backend module and return its function."""
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def check_precision(self, precision: str, kind: str) -> str:
        """``precision`` (its plain string value) when this backend makes it.

        Raises:
            ConfigError: a precision this backend does not make (the message lists the ones it does).
        """
        if precision not in self.precisions:
            raise ConfigError(
                f"the {self.label} {kind} makes {', '.join(self.precisions)}, not {precision!r}; "
                + ("int8 goes through edgestill.compress.quantize (or edgestill.chain.convert)." if kind == "writer"
                   else "float files go through edgestill.export.")
            )
        return Precision(precision).value


def formats_of(registry: Registry[BackendSpec]) -> tuple[Format, ...]:
    """The formats ``registry`` has a backend for, in the order of :class:`Format`."""
    return tuple(f for f in Format if f.value in registry)


def precisions_of(registry: Iterable[BackendSpec] | Registry[BackendSpec]) -> tuple[Precision, ...]:
    """Every precision any backend of ``registry`` makes, in the order of :class:`Precision`."""
    specs = [registry.get(n) for n in registry.names()] if isinstance(registry, Registry) else list(registry)
    made = {p for s in specs for p in s.precisions}
    return tuple(p for p in Precision if p in made)


Exporter = Callable[..., Artifact]
EXPORTERS: Registry[BackendSpec] = Registry("exporter")
EXPORTERS.register("onnx", BackendSpec(format=Format.ONNX, precisions=(Precision.FP32, Precision.FP16),
                                       target="edgestill.export.onnx:export_onnx", label="ONNX (torch.onnx dynamo exporter)"))
EXPORTERS.register("tflite", BackendSpec(format=Format.TFLITE, precisions=(Precision.FP32, Precision.FP16),
                                         target="edgestill.export.tflite:export_tflite", label="TFLite (litert-torch)"))
EXPORTERS.register("openvino", BackendSpec(format=Format.OPENVINO, precisions=(Precision.FP32, Precision.FP16),
                                           target="edgestill.export.openvino:export_openvino", label="OpenVINO (ov.convert_model)"))


def export_precisions() -> tuple[Precision, ...]:
    """The float precisions the registered writers make (what :func:`edgestill.export.export` accepts)."""
    return precisions_of(EXPORTERS)


def dist_versions(*dists: str) -> dict[str, str]:
    """Installed versions of the named distributions (``edgestill`` always included)."""
    out = {}
    for d in ("edgestill", *dists):
        try:
            out[d] = version(d)
        except PackageNotFoundError:
            out[d] = "not installed"
    return out


def state_dict_sha256(model: torch.nn.Module) -> str:
    """sha256 over the model's state dict: every key, dtype, shape and the raw tensor bytes, in key order."""
    import torch

    h = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def as_tuple(example_inputs: Any) -> tuple:
    """Example inputs as a tuple of tensors (a single tensor is accepted)."""
    import torch

    args = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    if not args or not all(isinstance(a, torch.Tensor) for a in args):
        raise InputError(
            f"example_inputs must be a tensor or a tuple of tensors, got {type(example_inputs).__name__}. "
            "Pass e.g. (torch.zeros(1, 3, 32, 32),)."
        )
    return args


def staging(example_inputs: Any, staging_dir: Path | str) -> tuple[tuple, Path]:
    """Validated example inputs and the created staging folder: what every writer starts from."""
    args = as_tuple(example_inputs)
    staging_dir = Path(staging_dir)
    staging_dir.mkdir(parents=True, exist_ok=True)
    return args, staging_dir


def flatten_outputs(out: Any) -> list:
    """A model's output(s) as a flat list of tensors (tensor, tuple/list, or dict in key order)."""
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        flat = []
        for o in out:
            flat.extend(flatten_outputs(o))
        return flat
    return [out]


def torch_outputs(model: torch.nn.Module, args: Sequence) -> list[np.ndarray]:
    """Run the model in eval mode without gradients; return its outputs as numpy arrays."""
    import torch

    model.eval()
    with torch.no_grad():
        return [t.detach().cpu().numpy() for t in flatten_outputs(model(*args))]


def logical_dtypes(model: torch.nn.Module, args: Sequence) -> tuple[list[str], list[str]]:
    """numpy dtype names of what the torch model takes and gives (what a session accepts/returns)."""
    outs = torch_outputs(model, args)
    return [str(a.detach().cpu().numpy().dtype) for a in args], [str(o.dtype) for o in outs]


def with_logical(specs: list[TensorSpec], dtypes: list[str]) -> list[TensorSpec]:
    """Attach the torch-side dtype to specs read from a file (positional match)."""
    out = []
    for i, s in enumerate(specs):
        logical = dtypes[i] if i < len(dtypes) else None
        out.append(TensorSpec(name=s.name, shape=s.shape, dtype=s.dtype, logical_dtype=logical, scale=s.scale, zero_point=s.zero_point))
    return out


def input_names(inputs: Sequence[TensorSpec] | None, n_args: int) -> list[str] | None:
    """The names the files' inputs take (``inputs``' names, in the model's input order), or None for the writer's default.

    Raises:
        InputError: ``inputs`` lists another number of inputs than the model takes, or repeats a name.
    """
    if not inputs:
        return None
    names = [s.name for s in inputs]
    if len(names) != n_args:
        raise InputError(f"the input specs name {len(names)} input(s) ({', '.join(names)}) but the model is exported with "
                         f"{n_args} example input(s); give one spec per forward input, in the forward's order.")
    if len(set(names)) != len(names):
        raise InputError(f"the input specs repeat a name ({', '.join(names)}); each input needs its own name.")
    return names


# what an input means from its name (TensorSpec.kind; other integers are "int", floats "float")
NAMED_KINDS = {"input_ids": "ids", "attention_mask": "mask", "token_type_ids": "type_ids"}


def kind_of(name: str | None, dtype: str) -> str:
    """What an input means from its name and dtype: input_ids → ids, attention_mask → mask, token_type_ids →
    type_ids (integer inputs only), other integers → int, floats → float."""
    if np.dtype(dtype).kind in "iub":
        return NAMED_KINDS.get(name or "", "int")
    return "float"


def forward_inputs(model: Any, args: Sequence[Any]) -> tuple[TensorSpec, ...]:
    """Input specs named after the forward's positional parameters, for a model with several inputs exported without
    explicit ones (e.g. ``forward(input_ids, attention_mask)``), so every format keeps those names; () for one input,
    or a forward taking ``*args`` or fewer named parameters than inputs."""
    import inspect

    if len(args) < 2:
        return ()
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError, AttributeError):
        return ()
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return ()
    names = [p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    if len(names) < len(args):
        return ()
    specs = []
    for name, a in zip(names, args):
        dtype = str(a.detach().cpu().numpy().dtype) if hasattr(a, "detach") else str(np.asarray(a).dtype)
        specs.append(TensorSpec(name=name, shape=tuple(int(d) for d in a.shape), dtype=dtype, kind=kind_of(name, dtype)))
    return tuple(specs)


def dynamic_dims(inputs: Sequence[TensorSpec] | None, n_args: int, *, dynamic_batch: bool) -> list[dict[int, str]]:
    """Per input, its symbolic dims as {axis: name}: 0 → "batch" with ``dynamic_batch``, 1 → "seq" where the spec's dim 1
    is symbolic (a text model's sequence; every input with it shares the one "seq" dim, so they keep equal lengths)."""
    out = []
    for i in range(n_args):
        dims: dict[int, str] = {0: "batch"} if dynamic_batch else {}
        if inputs and len(inputs[i].shape) > 1 and isinstance(inputs[i].shape[1], str):
            dims[1] = "seq"
        out.append(dims)
    return out


def with_input_facts(specs: list[TensorSpec], inputs: Sequence[TensorSpec] | None) -> list[TensorSpec]:
    """The file's input specs in ``inputs``' order (by name when the file keeps them, else by position), each with the
    meaning ``inputs`` gives it (``kind``, ``high``): what random inputs and text encoders read from a manifest."""
    if not inputs:
        return list(specs)
    by_name = {s.name: s for s in specs}
    ordered = [by_name[s.name] for s in inputs] if all(s.name in by_name for s in inputs) else list(specs)
    def shape(f: TensorSpec, i: TensorSpec) -> tuple[int | str, ...]:  # a symbolic dim keeps the name asked ("seq")
        if len(f.shape) != len(i.shape):
            return f.shape
        return tuple(d if isinstance(d, str) and isinstance(fd, str) else fd for fd, d in zip(f.shape, i.shape))

    return [dataclasses.replace(f, shape=shape(f, i), kind=i.kind, high=i.high)
            for f, i in zip(ordered, inputs)] + ordered[len(inputs):]


TOKENIZER_SUFFIX = ".tokenizer.json"


def attach_text_files(art: Artifact, staging_dir: Path | str, source: dict[str, Any] | None) -> Artifact:
    """Keep a text model's tokenizer beside its file: copy ``source["text"]["tokenizer_path"]`` into ``staging_dir`` as
    ``<artifact name>.tokenizer.json``, list it in ``art.files`` (hashed), and record ``art.source["text"]`` with the
    relative ``tokenizer`` name instead of the absolute path (a manifest names no path outside its folder).
    ``dynamic_length`` is set from the file itself: True only when its inputs' sequence dim is symbolic.

    Every writer's cell (float, and int8 via edgestill.chain.convert / compress.quantize) calls it after writing the model
    file into its staging folder, before the artifact is validated and published. Without ``source["text"]`` it does nothing.

    Raises:
        InputError: ``tokenizer_path`` names no readable file.
    """
    import shutil

    text = (source or {}).get("text")
    if not isinstance(text, dict):
        return art
    tokenizer = text.get("tokenizer_path")
    text = {k: v for k, v in text.items() if k != "tokenizer_path"}
    if tokenizer is not None:
        src = Path(tokenizer)
        if not src.is_file():
            raise InputError(f"the model's tokenizer {src} does not exist, so the exported files could not carry it. "
                             "Keep tokenizer.json in the model folder (AutoTokenizer.from_pretrained(dir).save_pretrained(dir)).")
        rel = f"{art.name}{TOKENIZER_SUFFIX}"
        shutil.copyfile(src, Path(staging_dir) / rel)
        art.files[rel] = ""
        text["tokenizer"] = rel
    text["dynamic_length"] = any(len(s.shape) > 1 and isinstance(s.shape[1], str) for s in art.inputs)
    art.source["text"] = text
    art.hash_files()
    return art


def new_artifact(
    *, name: str, fmt: str, precision: str, staging_dir: Path, model_file: str, extra_files: Sequence[str] = (),
    inputs: list[TensorSpec], outputs: list[TensorSpec], model: torch.nn.Module, args: Sequence, versions: dict[str, str],
) -> Artifact:
    """Build an unvalidated Artifact for files already written in ``staging_dir`` and hash them."""
    art = Artifact(
        name=name,
        format=fmt,
        precision=precision,
        directory=Path(staging_dir),
        model_file=model_file,
        files={f: "" for f in (model_file, *extra_files)},
        inputs=inputs,
        outputs=outputs,
        parent_sha256=state_dict_sha256(model),
        source={"model": type(model).__name__, "input_shapes": [list(a.shape) for a in args]},
        versions=versions,
    )
    art.hash_files()
    return art


_OP_PATTERNS = (
    re.compile(r"No ONNX function found for <OpOverload\(op='([\w.]+)'"),
    re.compile(r"Lowering not found: ([\w.]+)"),
    re.compile(r"No conversion rule found for operations?: ([^\n]+)"),
)


def _exception_text(exc: BaseException) -> str:
    parts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


def conversion_error(exc: BaseException, fmt: str, model: object) -> Exception:
    """The error to raise for a failed conversion: UnsupportedError naming the op or construct, else RuntimeFailure."""
    text = _exception_text(exc)
    label = EXPORTERS.get(fmt).label if fmt in EXPORTERS else fmt
    model_name = type(model).__name__
    others = ", ".join(f for f in formats_of(EXPORTERS) if f != fmt)
    for pattern in _OP_PATTERNS:
        m = pattern.search(text)
        if m:
            ops = m.group(1).strip().rstrip(".")
            return UnsupportedError(
                f"{label} has no conversion for op {ops} used by {model_name}. Try instead: rewrite that part of the "
                f"model's forward with ops the format supports (or compute it outside the model), or export to "
                f"another format ({others}) with --format."
            )
    if "data-dependent" in text or "GuardOnDataDependent" in text:
        return UnsupportedError(
            f"{label} cannot export {model_name}: its forward branches or loops on tensor values (data-dependent control "
            "flow), which a traced graph cannot hold. Try instead: torch.where / torch.cond for the branch, or move the "
            "decision out of forward."
        )
    return RuntimeFailure(f"{label} failed for {model_name}: {_summary(exc)}")


_CAUSE = re.compile(r"^<class '([\w.]+)'>: (.+)$", re.MULTILINE)  # how torch.export's TorchExportError quotes its cause


def _summary(exc: BaseException, limit: int = 400) -> str:
    """One line for a converter's exception: its first line and, when a library wraps the real error in pages of
    advice (torch.onnx's "Failed to export the model with torch.export ... Next steps: ..."), the cause it quotes."""
    text = str(exc).strip()
    first = text.splitlines()[0].strip() if text else ""
    if first.endswith(":") and ". " in first:  # "... Next steps:" introduces the advice that follows: drop it
        first = first.rsplit(". ", 1)[0] + "."
    line = f"{type(exc).__name__}: {first}".rstrip(": ")
    m = _CAUSE.search(text)
    if m and m.group(2).strip() not in first:
        line += f" Cause: {m.group(1).rsplit('.', 1)[-1]}: {m.group(2).strip()}"
    return line if len(line) <= limit else line[: limit - 1] + "…"
