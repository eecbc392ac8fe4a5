"""TFLite exporter: litert_torch.convert into one .tflite file; specs read back with the LiteRT interpreter.

fp16: litert-torch's fp16 recipe (``full_fp16_recipe``): weights stored as float16 and dequantized by the
interpreter; inputs and outputs stay float32. Batch: litert-torch traces a static batch, so a dynamic
batch is not available for TFLite; the file takes the example batch and the manifest says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgestill.artifact import Artifact, TensorSpec
from edgestill.export.base import EXPORTERS, conversion_error, dist_versions, logical_dtypes, new_artifact, staging, with_logical

STATIC_BATCH_NOTE = "TFLite: litert-torch converts a static batch; this file takes the example batch size only."

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
        raise conversion_error(exc, "tflite", model) from exc


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


def export_tflite(
    model: torch.nn.Module, example_inputs: Any, *, staging_dir: Path, name: str, precision: str = "fp32",
    dynamic_batch: bool = False,
) -> Artifact:
    """Export fp32 or fp16 TFLite to ``staging_dir/<name>.tflite``; return the unvalidated Artifact.

    ``dynamic_batch`` cannot be honoured (see the module docstring): the artifact's source records it.

    Raises:
        ConfigError: a precision this writer does not make.
        InputError: example_inputs are not tensors; UnsupportedError for an op litert-torch cannot lower.
        RuntimeFailure: the converter failed.
    """
    precision = EXPORTERS.get("tflite").check_precision(precision, "writer")
    args, staging_dir = staging(example_inputs, staging_dir)
    quant_config = None
    if precision == "fp16":
        from litert_torch.generative.quantize import quant_recipes

        quant_config = quant_recipes.full_fp16_recipe()
    write_tflite(model, args, staging_dir / f"{name}.tflite", quant_config=quant_config)
    art = tflite_artifact(model, args, staging_dir, name, precision)
    art.source["dynamic_batch"] = False
    if dynamic_batch:
        art.source["notes"] = [STATIC_BATCH_NOTE]
    if precision == "fp16":
        art.quantization = {"method": "fp16", "tool": "litert_torch full_fp16_recipe", "weights": "float16", "io": "float32"}
    return art
