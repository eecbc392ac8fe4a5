"""Model files edgestill did not write: their I/O contract read from the file itself, with its format's own library.

:func:`artifact_for` is how the runner and ``edgestill bench`` open what they are given: a manifest (or a model file
with one beside it) is loaded with :meth:`Artifact.load`; a bare ``.onnx``, ``.tflite`` or OpenVINO ``.xml`` (with its
``.bin``) becomes an in-memory :class:`Artifact` whose inputs and outputs (names, shapes with symbolic dims, numpy
dtypes, scale/zero-point of quantized .tflite I/O) come from the file, whose files carry their sha256, and whose
``source`` says ``{"manifest": False, ...}``. The runner then records ``settings["manifest_present"] = False`` and the
contract it read as ``settings["manifest"]`` (the store keeps that per artifact).

Precision is not written in a bare file, so it is read from what the file holds, conservatively (never claimed
quantized without quantized tensors or ops in the file): ``int8-static`` where activations are quantized (ONNX
QuantizeLinear/QLinear* ops, a .tflite QUANTIZE op or int8 I/O, an OpenVINO FakeQuantize), ``int8-dynamic`` where only
weights are int8 (ONNX DynamicQuantizeLinear or integer matmul/conv, .tflite int8 tensors without a QUANTIZE op),
``fp16`` where the float inputs or weights are float16, else ``fp32``. ``source["precision_from"]`` says what the guess
rests on; where the format's structure could not be read (an .onnx with onnxruntime but not the onnx package) it reads
only the I/O dtypes and says so.

Bare files are untrusted like manifests: the path must be a regular, non-empty, readable file (a symlink given on the
command line is followed, then everything is read relative to the real file's folder); an IR's ``.bin`` and every
external-data file an .onnx names must be regular files inside that folder. Torch-free: it runs on devices.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgestill.artifact import MANIFEST_SUFFIX, Artifact, Format, TensorSpec, is_rejected, rejected_message
from edgestill.errors import InputError

SUFFIX_FORMAT: dict[str, str] = {".onnx": Format.ONNX.value, ".tflite": Format.TFLITE.value, ".xml": Format.OPENVINO.value}
"""The model files :func:`artifact_for` reads without a manifest, by suffix."""

_ONNX_STATIC_OPS = frozenset({"QuantizeLinear", "QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul",
                              "QLinearGlobalAveragePool", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearConcat"})
_ONNX_DYNAMIC_OPS = frozenset({"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul"})


def manifest_beside(path: str | os.PathLike[str]) -> Path | None:
    """The manifest for ``path``: the path itself when it is one, else ``<stem>.manifest.json`` or
    ``<name>.manifest.json`` beside it when present, else None."""
    p = Path(path)
    if p.name.endswith(MANIFEST_SUFFIX):
        return p
    for c in (p.with_name(p.stem + MANIFEST_SUFFIX), p.with_name(p.name + MANIFEST_SUFFIX)):
        if c.exists():
            return c
    return None


def artifact_for(path: str | os.PathLike[str]) -> Artifact:
    """The artifact at ``path``: its manifest's when one is there, else one read from the bare model file.

    Args:
        path: a ``.manifest.json``; a model file with its manifest beside it; or a bare ``.onnx``, ``.tflite`` or
            OpenVINO ``.xml`` (its ``.bin`` beside it).

    Returns:
        The Artifact. A bare file's has ``source["manifest"] = False``, its files' sha256, and its I/O contract and
        precision as read from the file (see the module docstring).

    Raises:
        InputError: a ``*.rejected`` file (the message says why it was rejected, from its manifest, and that
            ``edgestill bench --allow-rejected`` measures it); a bad manifest (see :meth:`Artifact.load`); a path that is missing, not a regular file, empty,
            unreadable, of an unknown suffix, or that its format's library cannot parse; a missing ``.bin``; external
            data outside the file's folder; an I/O dtype edgestill cannot feed. The format's library missing is an
            InputError that names the extra to install.
    """
    if is_rejected(path):  # a file that failed validation: refused with why, and how to measure it anyway
        raise InputError(rejected_message(path))
    manifest = manifest_beside(path)
    if manifest is not None:
        return Artifact.load(manifest)
    p = Path(path)
    fmt = SUFFIX_FORMAT.get(p.suffix.lower())
    if fmt is None:
        raise InputError(f"{p} has no manifest beside it and its suffix {p.suffix or '(none)'!r} is not a model file "
                         f"edgestill reads on its own; pass a .manifest.json written by 'edgestill export', or a model "
                         f"file ending in {', '.join(SUFFIX_FORMAT)} (an OpenVINO .xml with its .bin beside it).")
    real = _model_file(p)
    reader: Callable[[Path], _Contract] = {"onnx": _onnx_contract, "tflite": _tflite_contract,
                                           "openvino": _openvino_contract}[fmt]
    contract = reader(real)
    art = Artifact(
        name=p.stem or real.stem,  # the name the user gave, not a symlink's target
        format=fmt,
        precision=contract.precision,
        directory=real.parent,
        model_file=real.name,
        files={n: "" for n in contract.extra_files},
        inputs=contract.inputs,
        outputs=contract.outputs,
        source={"manifest": False, "path": str(p), "read_with": contract.read_with,
                "precision_from": contract.precision_from},
    )
    art.hash_files()
    art.created_at = ""  # not known for a file edgestill did not write
    return art


class _Contract:
    """What a reader found in a file."""

    def __init__(self, inputs: list[TensorSpec], outputs: list[TensorSpec], precision: str, precision_from: str,
                 read_with: str, extra_files: tuple[str, ...] = ()):
        self.inputs, self.outputs = inputs, outputs
        self.precision, self.precision_from = precision, precision_from
        self.read_with, self.extra_files = read_with, extra_files


def _model_file(p: Path) -> Path:
    """The real path of the model file ``p`` once checked to be a regular, non-empty, readable file."""
    if not p.exists() and not p.is_symlink():
        raise InputError(f"model file {p} does not exist. Pass an existing .onnx, .tflite or OpenVINO .xml file, or "
                         "an artifact's .manifest.json.")
    try:
        real = p.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # a dangling link or a symlink loop (RuntimeError before Python 3.13)
        raise InputError(f"model file {p} cannot be resolved ({exc}); pass the model file itself.") from None
    if not real.is_file():
        raise InputError(f"{p} is not a regular file (a folder or a device); pass a model file.")
    if real.stat().st_size == 0:
        raise InputError(f"model file {p} is empty (0 bytes), not a model; copy or export it again.")
    try:
        with open(real, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise InputError(f"model file {p} cannot be read ({exc}); check its permissions.") from None
    return real


def _companion(real: Path, name: str, what: str) -> Path:
    """``name`` (relative) beside ``real``, checked to be a regular file inside ``real``'s folder."""
    folder = real.parent
    if not name or Path(name).is_absolute() or "\0" in name:
        raise InputError(f"{real} names {what} {name!r}; edgestill reads such files only from beside the model. "
                         "Re-save the model with its files beside it.")
    try:
        target = (folder / name).resolve()
    except (OSError, RuntimeError) as exc:
        raise InputError(f"{real}: {what} {name!r} cannot be resolved ({exc}).") from None
    if not target.is_relative_to(folder):
        raise InputError(f"{real} names {what} {name!r}, which resolves to {target}, outside its folder {folder}; "
                         "edgestill reads a model's files only from its own folder (no '..', no symlink out of it).")
    if not target.is_file():
        state = "is not a regular file" if target.exists() else "is missing"
        raise InputError(f"{real} needs {what} {name!r}, which {state} in {folder}. Copy it beside the model file "
                         "(it was written with it).")
    return target


_NO_MANIFEST = "no manifest found beside it, so it was read as a bare model file, and"


def _unreadable(real: Path, fmt: str, library: str, exc: BaseException) -> InputError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return InputError(f"{real}: {_NO_MANIFEST} it is not a readable {fmt} model ({library}: {type(exc).__name__}: "
                      f"{first}). It is truncated, corrupt or of another format: copy or export it again.")


def _numpy_dtype(name: str, dtype: Any, real: Path) -> str:
    """The numpy name of ``dtype`` when edgestill can feed or read it, else an InputError naming the tensor."""
    import numpy as np

    from edgestill.artifact import DTYPES

    try:
        text = np.dtype(dtype).name
    except TypeError:
        text = str(dtype)
    if text not in DTYPES:
        raise InputError(f"{real}: tensor {name!r} has type {text}, which edgestill cannot feed or read (it handles "
                         f"{', '.join(DTYPES)}).")
    return text


def _dim(value: Any, i: int) -> int | str:
    """One dim: a whole number, or a symbolic name (``batch`` for the first dim, ``dim<i>`` where the file names none)."""
    if isinstance(value, str) and value:
        return value
    if value is None or isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return "batch" if i == 0 else f"dim{i}"
    return int(value)


# --- ONNX -------------------------------------------------------------------------------------------------------


def _onnx_contract(real: Path) -> _Contract:
    import importlib.util

    if importlib.util.find_spec("onnx") is not None:
        return _onnx_with_onnx(real)
    return _onnx_with_onnxruntime(real)


def _onnx_with_onnx(real: Path) -> _Contract:
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    try:
        model = onnx.load(str(real), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and others: the bytes are not a ModelProto
        raise _unreadable(real, "ONNX", "onnx", exc) from None
    graph = model.graph
    if model.ir_version == 0 or not graph.node or not graph.output:
        raise InputError(f"{real}: {_NO_MANIFEST} it parses as an empty ONNX model (IR version {model.ir_version}, {len(graph.node)} nodes, "
                         f"{len(graph.output)} outputs): it is empty, truncated or not an ONNX file. Copy or export it "
                         "again.")
    external: list[str] = []
    for tensor in onnx_tensors(graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = {e.key: e.value for e in tensor.external_data}.get("location", "")
            if location not in external:
                _companion(real, location, "the external data file")
                external.append(location)
    initializers = {i.name for i in graph.initializer}

    def spec(v: Any) -> TensorSpec:
        t = v.type.tensor_type
        if not v.type.HasField("tensor_type"):
            raise InputError(f"{real}: {v.name!r} is not a tensor (a sequence or map); edgestill feeds tensors only.")
        try:
            np_type = tensor_dtype_to_np_dtype(t.elem_type)
        except (KeyError, ValueError, TypeError):
            np_type = onnx.TensorProto.DataType.Name(t.elem_type).lower()
        dims = tuple(_dim(d.dim_value if d.HasField("dim_value") else (d.dim_param or None), i)
                     for i, d in enumerate(t.shape.dim))
        return TensorSpec(name=v.name, shape=dims, dtype=_numpy_dtype(v.name, np_type, real))

    inputs = [spec(v) for v in graph.input if v.name not in initializers]
    outputs = [spec(v) for v in graph.output]
    ops = {n.op_type for n in graph.node}
    if ops & _ONNX_STATIC_OPS:
        precision, why = "int8-static", f"quantized activations: {', '.join(sorted(ops & _ONNX_STATIC_OPS))}"
    elif ops & _ONNX_DYNAMIC_OPS:
        precision, why = "int8-dynamic", f"weights-only int8: {', '.join(sorted(ops & _ONNX_DYNAMIC_OPS))}"
    else:
        floats = [i.data_type for i in graph.initializer if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
        half = sum(1 for d in floats if d == onnx.TensorProto.FLOAT16)
        if any(s.dtype == "float16" for s in inputs) or (floats and half * 2 > len(floats)):
            precision, why = "fp16", "float16 inputs or weights"
        else:
            precision, why = "fp32", "no quantized ops and float32 weights"
    return _Contract(inputs, outputs, precision, why, f"onnx {onnx.__version__}", tuple(external))


def onnx_tensors(graph: Any) -> Any:
    """Every initializer and constant tensor of ``graph`` and its subgraphs (If/Loop bodies)."""
    import onnx

    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t
            elif attr.type == onnx.AttributeProto.GRAPH:
                yield from onnx_tensors(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from onnx_tensors(g)


_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16", "tensor(uint16)": "uint16",
              "tensor(int32)": "int32", "tensor(uint32)": "uint32", "tensor(int64)": "int64", "tensor(uint64)": "uint64",
              "tensor(bool)": "bool"}


def _onnx_with_onnxruntime(real: Path) -> _Contract:
    """The contract from onnxruntime alone (a device without the onnx package): I/O only, no graph structure."""
    from edgestill.extras import require

    ort = require("onnxruntime", purpose=f"reading {real.name}")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(real), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own InvalidProtobuf/Fail types
        raise _unreadable(real, "ONNX", "onnxruntime", exc) from None

    def spec(a: Any) -> TensorSpec:
        dtype = _ORT_TYPES.get(a.type)
        if dtype is None:
            raise InputError(f"{real}: tensor {a.name!r} has type {a.type}, which edgestill cannot feed or read.")
        return TensorSpec(name=a.name, shape=tuple(_dim(d, i) for i, d in enumerate(a.shape)), dtype=dtype)

    inputs, outputs = [spec(a) for a in sess.get_inputs()], [spec(a) for a in sess.get_outputs()]
    if any(s.dtype == "float16" for s in inputs):
        precision, why = "fp16", "float16 inputs (I/O only: the onnx package is not installed to read the graph)"
    else:
        precision, why = "fp32", "I/O dtypes only (the onnx package is not installed to read the graph's ops)"
    return _Contract(inputs, outputs, precision, why, f"onnxruntime {ort.__version__}")


# --- TFLite -----------------------------------------------------------------------------------------------------


def _tflite_contract(real: Path) -> _Contract:
    with open(real, "rb") as f:
        head = f.read(8)
    if head[4:8] != b"TFL3":
        raise InputError(f"{real}: {_NO_MANIFEST} it is not a .tflite model: no TFL3 flatbuffer identifier at bytes 4..8 (found "
                         f"{head[4:8]!r}). Copy or convert it again.")
    try:
        from edgestill.runtimes.litert import interpreter_module

        mod, version, _ = interpreter_module()
    except Exception as exc:  # noqa: BLE001 - RuntimeFailure: no interpreter installed
        from edgestill.extras import extra_error

        raise extra_error("ai_edge_litert", purpose=f"reading {real.name}") from exc
    try:
        interp = mod.Interpreter(model_path=str(real))
        ins, outs = interp.get_input_details(), interp.get_output_details()
    except (ValueError, RuntimeError) as exc:
        raise _unreadable(real, "TFLite", version, exc) from None

    def spec(d: dict[str, Any]) -> TensorSpec:
        sig = d.get("shape_signature")
        sig = d["shape"] if sig is None or len(sig) != len(d["shape"]) else sig
        scale, zero_point = d.get("quantization", (0.0, 0))
        quantized = bool(scale) and float(scale) > 0
        dtype = _numpy_dtype(d["name"], d["dtype"], real)
        return TensorSpec(name=d["name"], shape=tuple(_dim(int(n), i) for i, n in enumerate(sig)), dtype=dtype,
                          logical_dtype="float32" if quantized else None,
                          scale=float(scale) if quantized else None, zero_point=int(zero_point) if quantized else None)

    inputs, outputs = [spec(d) for d in ins], [spec(d) for d in outs]
    try:
        ops = {str(o.get("op_name", "")).upper() for o in interp._get_ops_details()}  # noqa: SLF001 - no public API
    except (AttributeError, RuntimeError, ValueError):
        ops = set()
    try:
        tensor_types = {_safe_dtype(t["dtype"]) for t in interp.get_tensor_details()}
    except (RuntimeError, ValueError):
        tensor_types = set()
    if any(s.quantized for s in inputs + outputs) or "QUANTIZE" in ops:
        precision, why = "int8-static", "quantized activations (int8 I/O or a QUANTIZE op)"
    elif tensor_types & {"int8", "uint8"} and not any(s.dtype in ("int8", "uint8") for s in inputs):
        precision, why = "int8-dynamic", "int8 weight tensors with float activations"
    elif "float16" in tensor_types:
        precision, why = "fp16", "float16 weight tensors"
    else:
        precision, why = "fp32", "no quantized or float16 tensors"
    return _Contract(inputs, outputs, precision, why, version)


def _safe_dtype(dtype: Any) -> str:
    import numpy as np

    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(dtype)


# --- OpenVINO ---------------------------------------------------------------------------------------------------


def _openvino_contract(real: Path) -> _Contract:
    with open(real, "rb") as f:
        head = f.read(64)
    if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        raise InputError(f"{real}: {_NO_MANIFEST} it is not an OpenVINO IR: an IR .xml starts with '<' (found {head[:16]!r}). Copy or "
                         "convert it again.")
    bin_name = real.with_suffix(".bin").name
    _companion(real, bin_name, "its weights file")
    from edgestill.extras import require

    ov = require("openvino", purpose=f"reading {real.name}")
    try:
        om = ov.Core().read_model(str(real))
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError and its own types
        raise _unreadable(real, "OpenVINO IR", f"openvino {ov.__version__}", exc) from None

    def spec(port: Any, i: int, kind: str) -> TensorSpec:
        names = sorted(port.get_names())
        if not names:
            raise InputError(f"{real}: {kind} {i} has no tensor name; edgestill feeds and reads tensors by name. Give "
                             "the model's inputs and outputs names before converting it.")
        shape = port.get_partial_shape()
        if shape.rank.is_dynamic:
            raise InputError(f"{real}: {kind} {port.get_any_name()!r} has a dynamic rank; edgestill needs each input's "
                             "rank to make inputs for it. Reshape the model to a fixed rank.")
        dims = tuple(d.get_length() if d.is_static else _dim(None, j) for j, d in enumerate(shape))
        return TensorSpec(name=port.get_any_name(), shape=dims,
                          dtype=_numpy_dtype(port.get_any_name(), port.get_element_type().to_dtype(), real))

    inputs = [spec(p, i, "input") for i, p in enumerate(om.inputs)]
    outputs = [spec(p, i, "output") for i, p in enumerate(om.outputs)]
    types = {op.get_type_name() for op in om.get_ops()}
    const_types = {op.get_element_type().get_type_name() for op in om.get_ops() if op.get_type_name() == "Constant"}
    if "FakeQuantize" in types or "FakeConvert" in types:
        precision, why = "int8-static", "FakeQuantize ops (quantized activations)"
    elif const_types & {"i8", "u8", "i4", "u4"}:
        precision, why = "int8-dynamic", "int8 weight constants without FakeQuantize (weights-only compression)"
    elif "f16" in const_types:
        precision, why = "fp16", "float16 weight constants"
    else:
        precision, why = "fp32", "no FakeQuantize and float32 weights"
    return _Contract(inputs, outputs, precision, why, f"openvino {ov.__version__}", (bin_name,))
