"""TFLite exporter: litert_torch.convert into one .tflite file; specs read back with the LiteRT interpreter.

fp16: litert-torch's fp16 recipe (``full_fp16_recipe``): weights stored as float16 and dequantized by the
interpreter; inputs and outputs stay float32. Batch: litert-torch traces a static batch, so a dynamic
batch is not available for TFLite; the file takes the example batch and the manifest says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgestill.artifact import Artifact, TensorSpec
from edgestill.export.base import (
    EXPORTERS,
    conversion_error,
    dist_versions,
    input_names,
    logical_dtypes,
    new_artifact,
    staging,
    with_input_facts,
    with_logical,
)

STATIC_BATCH_NOTE = "TFLite: litert-torch converts a static batch; this file takes the example batch size only."
STATIC_LENGTH_NOTE = ("TFLite: litert-torch converts a static sequence length; this file takes the example length only "
                      "(pad shorter texts; ONNX and OpenVINO files keep the length dynamic).")

if TYPE_CHECKING:
    import torch


def named_inputs(model: torch.nn.Module, names: Sequence[str]) -> torch.nn.Module:
    """``model`` behind a ``forward(**inputs)`` that passes the named inputs positionally in ``names``' order.

    litert-torch names a signature's inputs after the keyword arguments it is converted with (tensor names
    ``serving_default_<name>``), and lists them sorted by name; positional arguments become ``args_0``, ``args_1``.
    """
    import torch

    class NamedInputs(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module, order: tuple[str, ...]):
            super().__init__()
            self.inner = inner
            self.order = order

        def forward(self, **inputs: Any) -> Any:
            return self.inner(*(inputs[n] for n in self.order))

    return NamedInputs(model, tuple(names)).eval()


def write_tflite(model: torch.nn.Module, args: tuple, path: Path, quant_config: Any = None, *,
                 inputs: Sequence[TensorSpec] | None = None) -> None:
    """Convert with litert_torch (optionally with a QuantConfig) and write ``path``.

    ``inputs`` (one spec per example input) names the signature's inputs; int64 inputs become int32 in the file
    (litert-torch's default; the manifest keeps int64 as the logical dtype and the session casts).
    """
    import litert_torch

    names = input_names(inputs, len(args))
    try:
        extra = {} if quant_config is None else {"quant_config": quant_config}
        if names:
            converted = litert_torch.convert(named_inputs(model, names), sample_args=(),
                                             sample_kwargs=dict(zip(names, args)), **extra)
        else:
            converted = litert_torch.convert(model.eval() if quant_config is None else model, args, **extra)
        converted.export(str(path))
    except Exception as exc:  # the converter raises many types; all mean "this model did not convert"
        raise conversion_error(exc, "tflite", model) from exc


def tflite_specs(path: Path, *, names: Sequence[str] | None = None) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Read I/O specs from a .tflite file, with scale/zero-point for quantized tensors as the file reports them.

    With ``names`` (the signature's input names, see :func:`write_tflite`), the inputs are returned in that order and
    named by them (the session finds each through the signature); else in the file's order under its tensor names.
    """
    from edgestill.runtimes.litert import interpreter_module, signature_inputs

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

    outs = [spec(d) for d in interp.get_output_details()]
    if names:
        by_signature = signature_inputs(interp)
        missing = [n for n in names if n not in by_signature]
        if missing:
            from edgestill.errors import RuntimeFailure

            raise RuntimeFailure(f"{path.name}: litert-torch wrote no signature input named {missing} "
                                 f"(the signature has {sorted(by_signature)}).")
        return [dataclasses.replace(spec(by_signature[n]), name=n) for n in names], outs
    return [spec(d) for d in interp.get_input_details()], outs


def tflite_artifact(model: torch.nn.Module, args: tuple, staging_dir: Path, name: str, precision: str, *,
                    inputs: Sequence[TensorSpec] | None = None) -> Artifact:
    """Build the Artifact for ``staging_dir/<name>.tflite`` already written (``inputs``: the names and meanings it was
    written with, see :func:`write_tflite`)."""
    model_file = f"{name}.tflite"
    ins, outs = tflite_specs(staging_dir / model_file, names=input_names(inputs, len(args)))
    in_dt, out_dt = logical_dtypes(model, args)
    return new_artifact(
        name=name, fmt="tflite", precision=precision, staging_dir=staging_dir, model_file=model_file,
        inputs=with_input_facts(with_logical(ins, in_dt), inputs), outputs=with_logical(outs, out_dt), model=model, args=args,
        versions=dist_versions("torch", "litert-torch", "ai-edge-litert"),
    )


def export_tflite(
    model: torch.nn.Module, example_inputs: Any, *, staging_dir: Path, name: str, precision: str = "fp32",
    dynamic_batch: bool = False, inputs: Sequence[TensorSpec] | None = None,
) -> Artifact:
    """Export fp32 or fp16 TFLite to ``staging_dir/<name>.tflite``; return the unvalidated Artifact.

    ``dynamic_batch`` cannot be honoured (see the module docstring): the artifact's source records it. ``inputs``
    names the inputs (see :func:`write_tflite`); a symbolic sequence dim in them is traced at its example length
    (litert-torch converts static shapes), and the manifest's input shapes say so.

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
    write_tflite(model, args, staging_dir / f"{name}.tflite", quant_config=quant_config, inputs=inputs)
    art = tflite_artifact(model, args, staging_dir, name, precision, inputs=inputs)
    art.source["dynamic_batch"] = False
    notes = [STATIC_BATCH_NOTE] if dynamic_batch else []
    if inputs and any(len(s.shape) > 1 and isinstance(s.shape[1], str) for s in inputs):
        notes.append(STATIC_LENGTH_NOTE)
    if notes:
        art.source["notes"] = notes
    if precision == "fp16":
        art.quantization = {"method": "fp16", "tool": "litert_torch full_fp16_recipe", "weights": "float16", "io": "float32"}
    return art
