"""OpenVINO exporter: ov.convert_model + ov.save_model → .xml + .bin.

fp32 artifacts keep fp32 weights (``compress_to_fp16=False``; save_model would halve them by default).
fp16 artifacts store fp16 weights (``compress_to_fp16=True``); the CPU plugin decompresses them and runs
with INFERENCE_PRECISION_HINT f32 (the hint edgestill validates and benchmarks with), because f16
compute is only native on CPUs with AVX512-FP16/AMX-FP16. The manifest records both choices.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgestill.artifact import Artifact, TensorSpec
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
from edgestill.runtimes.openvino import no_telemetry

if TYPE_CHECKING:
    import torch



def convert_openvino(model: Any, args: tuple, *, dynamic_batch: bool = False, inputs: Sequence[TensorSpec] | None = None) -> Any:
    """Convert a torch module (or an .onnx path) to an ov.Model with the example inputs' shapes and named outputs.

    ``dynamic_batch`` makes the first dim of every input dynamic (-1). ``inputs`` (one spec per example input) names
    the input ports (ov.convert_model names them after graph values, e.g. "79") and makes dim 1 dynamic where a
    spec's dim 1 is a string (a text model's sequence).
    """
    with no_telemetry():
        import openvino as ov

    names = input_names(inputs, len(args))
    axes = dynamic_dims(inputs, len(args), dynamic_batch=dynamic_batch)
    shapes = [tuple(-1 if i in ax else int(d) for i, d in enumerate(a.shape)) for a, ax in zip(args, axes)]
    try:
        with no_telemetry():
            if isinstance(model, (str, Path)):
                om = ov.convert_model(str(model))
                if shapes:
                    om.reshape({i: ov.PartialShape(list(s)) for i, s in enumerate(shapes)})
            else:
                om = ov.convert_model(model.eval(), example_input=args, input=[tuple(s) for s in shapes])
    except Exception as exc:  # the converter raises many types; all mean "this model did not convert"
        raise conversion_error(exc, "openvino", model) from exc
    for port, name in zip(om.inputs, names or ()):
        port.get_tensor().set_names({name})
    for i, port in enumerate(om.outputs):
        if not port.get_names():
            port.get_tensor().set_names({f"output_{i}"})
    return om


def save_openvino(ov_model: Any, path: Path, *, compress_to_fp16: bool = False) -> None:
    """Save with full-precision weights unless fp16 is asked for (save_model would compress them by default)."""
    import openvino as ov

    ov.save_model(ov_model, str(path), compress_to_fp16=compress_to_fp16)


def openvino_specs(xml: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Read I/O specs from an OpenVINO IR (.xml)."""
    import openvino as ov

    om = ov.Core().read_model(str(xml))

    def spec(port: Any, i: int) -> TensorSpec:
        names = sorted(port.get_names())
        dims = tuple(
            d.get_length() if d.is_static else ("batch" if j == 0 else f"dim{j}") for j, d in enumerate(port.get_partial_shape())
        )
        return TensorSpec(name=port.get_any_name() if names else f"port_{i}", shape=dims, dtype=str(port.get_element_type().to_dtype()))

    return [spec(p, i) for i, p in enumerate(om.inputs)], [spec(p, i) for i, p in enumerate(om.outputs)]


def openvino_artifact(model: torch.nn.Module, args: tuple, staging_dir: Path, name: str, precision: str, *,
                      inputs: Sequence[TensorSpec] | None = None) -> Artifact:
    """Build the Artifact for ``staging_dir/<name>.xml`` (+ .bin) already written (``inputs``: the meanings to record)."""
    ins, outs = openvino_specs(staging_dir / f"{name}.xml")
    in_dt, out_dt = logical_dtypes(model, args)
    return new_artifact(
        name=name, fmt="openvino", precision=precision, staging_dir=staging_dir, model_file=f"{name}.xml",
        extra_files=(f"{name}.bin",), inputs=with_input_facts(with_logical(ins, in_dt), inputs), outputs=with_logical(outs, out_dt),
        model=model, args=args, versions=dist_versions("torch", "openvino", "nncf"),
    )


def export_openvino(
    model: torch.nn.Module, example_inputs: Any, *, staging_dir: Path, name: str, precision: str = "fp32",
    dynamic_batch: bool = False, inputs: Sequence[TensorSpec] | None = None,
) -> Artifact:
    """Export an fp32 or fp16 OpenVINO IR to ``staging_dir/<name>.xml`` + ``.bin``; return the unvalidated Artifact.

    ``inputs``: the input names, symbolic dims and meanings to keep (see :func:`convert_openvino`).

    Raises:
        ConfigError: a precision this writer does not make.
        InputError: example_inputs are not tensors; UnsupportedError for an op OpenVINO cannot convert.
        RuntimeFailure: the converter failed.
    """
    precision = EXPORTERS.get("openvino").check_precision(precision, "writer")
    args, staging_dir = staging(example_inputs, staging_dir)
    om = convert_openvino(model, args, dynamic_batch=dynamic_batch, inputs=inputs)
    save_openvino(om, staging_dir / f"{name}.xml", compress_to_fp16=precision == "fp16")
    art = openvino_artifact(model, args, staging_dir, name, precision, inputs=inputs)
    art.source["dynamic_batch"] = dynamic_batch
    art.quantization = _precision_record(precision)
    return art


def _precision_record(precision: str) -> dict[str, Any] | None:
    if precision != "fp16":
        return None
    return {"method": "fp16", "tool": "ov.save_model(compress_to_fp16=True)", "weights": "float16",
            "inference_precision_hint": "f32", "io": "float32"}


def export_openvino_from_onnx(onnx_path: Path, example_inputs: tuple, *, staging_dir: Path, name: str,
                              precision: str = "fp32", dynamic_batch: bool = False) -> Artifact:
    """Convert an ONNX file to an OpenVINO IR in ``staging_dir``; specs and provenance come from the files.

    Raises:
        ConfigError: a precision this writer does not make.
        UnsupportedError / RuntimeFailure: the conversion failed.
    """
    from edgestill.artifact import sha256_file

    precision = EXPORTERS.get("openvino").check_precision(precision, "writer")
    staging_dir = Path(staging_dir)
    staging_dir.mkdir(parents=True, exist_ok=True)
    om = convert_openvino(Path(onnx_path), tuple(example_inputs), dynamic_batch=dynamic_batch)
    save_openvino(om, staging_dir / f"{name}.xml", compress_to_fp16=precision == "fp16")
    ins, outs = openvino_specs(staging_dir / f"{name}.xml")
    art = Artifact(
        name=name, format="openvino", precision=precision, directory=staging_dir, model_file=f"{name}.xml",
        files={f"{name}.xml": "", f"{name}.bin": ""},
        inputs=[TensorSpec(name=s.name, shape=s.shape, dtype=s.dtype, logical_dtype=s.dtype) for s in ins],
        outputs=[TensorSpec(name=s.name, shape=s.shape, dtype=s.dtype, logical_dtype=s.dtype) for s in outs],
        parent_sha256=sha256_file(onnx_path),
        source={"model": str(onnx_path), "kind": "onnx", "input_shapes": [list(a.shape) for a in example_inputs],
                "dynamic_batch": dynamic_batch},
        versions=dist_versions("onnx", "openvino"),
        quantization=_precision_record(precision),
    )
    art.hash_files()
    return art
