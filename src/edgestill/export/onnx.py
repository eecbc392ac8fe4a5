"""ONNX exporter: torch.onnx.export (dynamo, opset 20) into one self-contained .onnx file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgestill.errors import RuntimeFailure
from edgestill.export.artifact import Artifact, TensorSpec
from edgestill.export.exporters import EXPORTERS, dist_versions, logical_dtypes, new_artifact, staging, with_logical

if TYPE_CHECKING:
    import torch

OPSET = 20


def write_onnx(model: torch.nn.Module, args: tuple, path: Path) -> None:
    """Write ``model`` to ``path`` as one .onnx file (weights inside, no external .data)."""
    import torch

    model.eval()
    try:
        torch.onnx.export(model, args, str(path), dynamo=True, opset_version=OPSET, external_data=False)
    except Exception as exc:  # the exporter raises many types; all mean "this model did not convert"
        raise RuntimeFailure(f"torch.onnx.export failed for {type(model).__name__}: {exc}") from exc


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


@EXPORTERS.register("onnx")
def export_onnx(model: torch.nn.Module, example_inputs: Any, *, staging_dir: Path, name: str) -> Artifact:
    """Export fp32 ONNX to ``staging_dir/<name>.onnx``; return the unvalidated Artifact.

    Raises:
        InputError: example_inputs are not tensors.
        RuntimeFailure: the exporter failed.
    """
    args, staging_dir = staging(example_inputs, staging_dir)
    model_file = f"{name}.onnx"
    write_onnx(model, args, staging_dir / model_file)
    ins, outs = onnx_specs(staging_dir / model_file)
    in_dt, out_dt = logical_dtypes(model, args)
    return new_artifact(
        name=name, fmt="onnx", precision="fp32", staging_dir=staging_dir, model_file=model_file,
        inputs=with_logical(ins, in_dt), outputs=with_logical(outs, out_dt), model=model, args=args,
        versions=dist_versions("torch", "onnx", "onnxscript", "onnxruntime"),
    )
