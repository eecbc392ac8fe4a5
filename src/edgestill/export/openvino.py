"""OpenVINO exporter: ov.convert_model + ov.save_model(compress_to_fp16=False) → .xml + .bin."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgestill.errors import RuntimeFailure
from edgestill.export.artifact import Artifact, TensorSpec
from edgestill.export.exporters import EXPORTERS, dist_versions, logical_dtypes, new_artifact, staging, with_logical
from edgestill.runtimes.openvino import no_telemetry

if TYPE_CHECKING:
    import torch


def convert_openvino(model: torch.nn.Module, args: tuple) -> Any:
    """Convert to an ov.Model with static input shapes of the example inputs and named outputs."""
    with no_telemetry():
        import openvino as ov

    try:
        with no_telemetry():
            om = ov.convert_model(model.eval(), example_input=args, input=[tuple(a.shape) for a in args])
    except Exception as exc:  # the converter raises many types; all mean "this model did not convert"
        raise RuntimeFailure(f"ov.convert_model failed for {type(model).__name__}: {exc}") from exc
    for i, port in enumerate(om.outputs):
        if not port.get_names():
            port.get_tensor().set_names({f"output_{i}"})
    return om


def save_openvino(ov_model: Any, path: Path) -> None:
    """Save with full-precision weights (save_model would compress them to fp16 by default)."""
    import openvino as ov

    ov.save_model(ov_model, str(path), compress_to_fp16=False)


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


def openvino_artifact(model: torch.nn.Module, args: tuple, staging_dir: Path, name: str, precision: str) -> Artifact:
    """Build the Artifact for ``staging_dir/<name>.xml`` (+ .bin) already written."""
    ins, outs = openvino_specs(staging_dir / f"{name}.xml")
    in_dt, out_dt = logical_dtypes(model, args)
    return new_artifact(
        name=name, fmt="openvino", precision=precision, staging_dir=staging_dir, model_file=f"{name}.xml",
        extra_files=(f"{name}.bin",), inputs=with_logical(ins, in_dt), outputs=with_logical(outs, out_dt),
        model=model, args=args, versions=dist_versions("torch", "openvino", "nncf"),
    )


@EXPORTERS.register("openvino")
def export_openvino(model: torch.nn.Module, example_inputs: Any, *, staging_dir: Path, name: str) -> Artifact:
    """Export fp32 OpenVINO IR to ``staging_dir/<name>.xml`` + ``.bin``; return the unvalidated Artifact.

    Raises:
        InputError: example_inputs are not tensors.
        RuntimeFailure: the converter failed.
    """
    args, staging_dir = staging(example_inputs, staging_dir)
    save_openvino(convert_openvino(model, args), staging_dir / f"{name}.xml")
    return openvino_artifact(model, args, staging_dir, name, "fp32")
