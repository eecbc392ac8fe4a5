"""ONNX exporter: torch.onnx.export (dynamo, opset 20). One .onnx file below 2 GB, external ``.data`` above.

fp16: the fp32 graph is converted with onnxruntime's float16 tool (``convert_float_to_float16``,
``keep_io_types=True``): weights and compute in float16, inputs and outputs kept float32 (recorded in the
manifest's I/O dtypes). onnxruntime's CPU provider inserts casts for ops without a float16 kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgestill.artifact import Artifact, TensorSpec
from edgestill.errors import InputError
from edgestill.export.base import (
    EXPORTERS,
    conversion_error,
    dist_versions,
    dynamic_dims,
    input_names,
    logical_dtypes,
    new_artifact,
    staging,
    with_input_facts,
    with_logical,
)
from edgestill.runtimes.inspect import onnx_tensors

if TYPE_CHECKING:
    import torch

OPSET = 20
# protobuf caps one message at 2 GiB; stay clear of it (the graph itself takes some bytes too)
EXTERNAL_DATA_THRESHOLD_BYTES = 2 * 1024**3 - 64 * 1024**2


def model_bytes_estimate(model: torch.nn.Module) -> int:
    """Bytes of the model's parameters and buffers: about what its weights take in the ONNX file."""
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def write_onnx(
    model: torch.nn.Module, args: tuple, path: Path, *, dynamic_batch: bool = False,
    external_data_threshold_bytes: int | None = None, inputs: Sequence[TensorSpec] | None = None,
) -> list[str]:
    """Write ``model`` to ``path``: one file, or ``path`` + ``<path name>.data`` when the weights exceed the threshold.

    ``inputs`` (one spec per example input) names the graph's inputs and makes dim 1 symbolic ("seq", shared by
    every input that has it) where a spec's dim 1 is a string; without it the exporter's names are kept.

    Returns:
        The names of the files written (relative to ``path.parent``).

    Raises:
        InputError: the model uses an op or construct the exporter cannot express (the message names it).
        RuntimeFailure: the exporter failed otherwise.
    """
    import torch

    threshold = EXTERNAL_DATA_THRESHOLD_BYTES if external_data_threshold_bytes is None else external_data_threshold_bytes
    external = model_bytes_estimate(model) > threshold
    kwargs: dict[str, Any] = {}
    names = input_names(inputs, len(args))
    if names:
        kwargs["input_names"] = names
    axes = dynamic_dims(inputs, len(args), dynamic_batch=dynamic_batch)
    if any(axes):
        dims = {"batch": torch.export.Dim("batch"), "seq": torch.export.Dim("seq")}
        kwargs["dynamic_shapes"] = tuple({axis: dims[label] for axis, label in a.items()} or None for a in axes)
    model.eval()
    try:
        torch.onnx.export(model, args, str(path), dynamo=True, opset_version=OPSET, external_data=external, **kwargs)
    except Exception as exc:  # the exporter raises many types; all mean "this model did not convert"
        raise conversion_error(exc, "onnx", model) from exc
    return [path.name, *[p.name for p in path.parent.glob(path.name + ".data") if p.is_file()]]


def convert_to_fp16(path: Path, *, external: bool) -> list[str]:
    """Rewrite the .onnx at ``path`` with float16 weights and compute, float32 inputs and outputs."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(path), load_external_data=True)
    half = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=external)
    data = path.with_name(path.name + ".data")
    data.unlink(missing_ok=True)
    if external:
        onnx.save_model(half, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name)
        return [path.name, data.name]
    onnx.save_model(half, str(path))
    return [path.name]


def check_onnx_file(path: Path) -> None:
    """Refuse an .onnx file that is not a whole model, before a converter or runtime meets it.

    protobuf parses an empty file as an empty model and a converter then fails with an unrelated message, so the
    file must hold a graph (an IR version, at least one node and one output); every external-data file it names must
    lie beside it, inside its folder, and be long enough for the ranges the model reads from it.

    Raises:
        InputError: an empty file or model, bytes that are not an ONNX model (garbage, truncated), or missing,
            outside or short external data (the message names the file).
    """
    import onnx

    path = Path(path)
    label = f"--model {path}"
    if path.stat().st_size == 0:
        raise InputError(f"{label} is empty (0 bytes), not an ONNX model. Export it again (torch.onnx.export) or copy it again.")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and others: the bytes are not a ModelProto
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise InputError(f"{label} is not an ONNX model or is truncated ({type(exc).__name__}: {first}). "
                         "Export it again or copy it again.") from None
    if model.ir_version == 0 or not model.graph.node or not model.graph.output:
        raise InputError(f"{label} parses as an empty ONNX model (IR version {model.ir_version}, {len(model.graph.node)} "
                         f"nodes, {len(model.graph.output)} outputs): it is empty, truncated or not an ONNX file. "
                         "Export it again or copy it again.")
    folder = path.resolve().parent
    needs: dict[str, int] = {}  # external file -> bytes the model reads from it
    for tensor in onnx_tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        end = int(info.get("offset") or 0) + int(info.get("length") or 0)
        needs[location] = max(needs.get(location, 0), end)
    for location, end in needs.items():
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise InputError(f"{label} names external data {location!r} outside its folder; edgestill reads external data "
                             "only from files beside the .onnx. Re-save the model with its data beside it.")
        if not target.is_file():
            raise InputError(f"{label} keeps its weights in the external data file {location!r}, which is missing from "
                             f"{folder}. Copy {location} next to the .onnx file (it was written with it).")
        if target.stat().st_size < end:
            raise InputError(f"{label}: its external data file {location!r} holds {target.stat().st_size} bytes but the "
                             f"model reads up to byte {end}: it is truncated. Copy it again.")


def onnx_specs(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Read input and output specs (names, shapes with symbolic dims, numpy dtypes) from an .onnx file."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}

    def spec(v: Any) -> TensorSpec:
        t = v.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or f"dim{i}") for i, d in enumerate(t.shape.dim))
        return TensorSpec(name=v.name, shape=shape, dtype=str(tensor_dtype_to_np_dtype(t.elem_type)))

    return [spec(v) for v in graph.input if v.name not in initializers], [spec(v) for v in graph.output]


def export_onnx(
    model: torch.nn.Module, example_inputs: Any, *, staging_dir: Path, name: str, precision: str = "fp32",
    dynamic_batch: bool = False, external_data_threshold_bytes: int | None = None, inputs: Sequence[TensorSpec] | None = None,
) -> Artifact:
    """Export ONNX (fp32 or fp16) to ``staging_dir/<name>.onnx`` (+ ``.onnx.data`` above 2 GB); return the unvalidated Artifact.

    ``inputs``: the input names, symbolic dims and meanings to keep (see :func:`write_onnx`).

    Raises:
        ConfigError: a precision this writer does not make.
        InputError: example_inputs are not tensors; an op or construct ONNX cannot express.
        RuntimeFailure: the exporter failed.
    """
    precision = EXPORTERS.get("onnx").check_precision(precision, "writer")
    args, staging_dir = staging(example_inputs, staging_dir)
    model_file = f"{name}.onnx"
    files = write_onnx(model, args, staging_dir / model_file, dynamic_batch=dynamic_batch,
                       external_data_threshold_bytes=external_data_threshold_bytes, inputs=inputs)
    if precision == "fp16":
        files = convert_to_fp16(staging_dir / model_file, external=len(files) > 1)
    ins, outs = onnx_specs(staging_dir / model_file)
    in_dt, out_dt = logical_dtypes(model, args)
    art = new_artifact(
        name=name, fmt="onnx", precision=precision, staging_dir=staging_dir, model_file=model_file, extra_files=files[1:],
        inputs=with_input_facts(with_logical(ins, in_dt), inputs), outputs=with_logical(outs, out_dt), model=model, args=args,
        versions=dist_versions("torch", "onnx", "onnxscript", "onnxruntime"),
    )
    art.source.update(dynamic_batch=dynamic_batch, external_data=len(files) > 1, opset=OPSET)
    if precision == "fp16":
        art.quantization = {"method": "fp16", "tool": "onnxruntime.transformers.float16 (keep_io_types=True)",
                            "weights": "float16", "io": "float32"}
    return art
