"""TFLite exporter: litert_torch.convert into one .tflite file; specs read back with the LiteRT interpreter."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgestill.errors import RuntimeFailure
from edgestill.export.artifact import Artifact, TensorSpec
from edgestill.export.exporters import EXPORTERS, dist_versions, logical_dtypes, new_artifact, staging, with_logical

if TYPE_CHECKING:
    import torch


def write_tflite(model: torch.nn.Module, args: tuple, path: Path, quant_config: Any = None) -> None:
    """Convert with litert_torch (optionally with a QuantConfig) and write ``path``."""
    import litert_torch

    try:
        if quant_config is None:
            converted = litert_torch.convert(model.eval(), args)
        else:
            converted = litert_torch.convert(model, args, quant_config=quant_config)
        converted.export(str(path))
    except Exception as exc:  # the converter raises many types; all mean "this model did not convert"
        raise RuntimeFailure(f"litert_torch.convert failed for {type(model).__name__}: {exc}") from exc


def tflite_specs(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Read I/O specs from a .tflite file, with scale/zero-point for quantized tensors as the file reports them."""
    from edgestill.runtimes.litert import interpreter_module

    mod = interpreter_module()[0]
    interp = mod.Interpreter(model_path=str(path))

    def spec(d: dict) -> TensorSpec:
        sig = d.get("shape_signature", d["shape"])
        shape = tuple(int(n) if n >= 0 else ("batch" if i == 0 else f"dim{i}") for i, n in enumerate(sig))
        scale, zp = d["quantization"]
        quantized = scale != 0.0
        return TensorSpec(
            name=d["name"], shape=shape, dtype=d["dtype"].__name__ if hasattr(d["dtype"], "__name__") else str(d["dtype"]),
            scale=float(scale) if quantized else None, zero_point=int(zp) if quantized else None,
        )

    return [spec(d) for d in interp.get_input_details()], [spec(d) for d in interp.get_output_details()]


def tflite_artifact(model: torch.nn.Module, args: tuple, staging_dir: Path, name: str, precision: str) -> Artifact:
    """Build the Artifact for ``staging_dir/<name>.tflite`` already written."""
    model_file = f"{name}.tflite"
    ins, outs = tflite_specs(staging_dir / model_file)
    in_dt, out_dt = logical_dtypes(model, args)
    return new_artifact(
        name=name, fmt="tflite", precision=precision, staging_dir=staging_dir, model_file=model_file,
        inputs=with_logical(ins, in_dt), outputs=with_logical(outs, out_dt), model=model, args=args,
        versions=dist_versions("torch", "litert-torch", "ai-edge-litert"),
    )


@EXPORTERS.register("tflite")
def export_tflite(model: torch.nn.Module, example_inputs: Any, *, staging_dir: Path, name: str) -> Artifact:
    """Export fp32 TFLite to ``staging_dir/<name>.tflite``; return the unvalidated Artifact.

    Raises:
        InputError: example_inputs are not tensors.
        RuntimeFailure: the converter failed.
    """
    args, staging_dir = staging(example_inputs, staging_dir)
    write_tflite(model, args, staging_dir / f"{name}.tflite")
    return tflite_artifact(model, args, staging_dir, name, "fp32")
