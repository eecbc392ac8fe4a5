"""The export verb: every format × precision written to a staging folder, validated, then published or rejected."""

from __future__ import annotations

import dataclasses
import inspect
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgestill.errors import ConfigError, EdgestillError, InputError, ParityError, UnsupportedError, did_you_mean
from edgestill.artifact import FORMATS, MANIFEST_SUFFIX, Artifact, publish, reject
from edgestill.export.validate import ParityReport, Tolerances

if TYPE_CHECKING:
    import torch

    from edgestill.export.divergence import Divergence

EXPORT_PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8-dynamic", "int8-static")
FLOAT_PRECISIONS: tuple[str, ...] = ("fp32", "fp16")
RANDOM_DATA_NOTE = "validated on seeded random inputs (no data given); pass --data for samples of the real input distribution"
RANDOM_CALIBRATION_NOTE = ("calibrated and validated on seeded random inputs (no data given): int8 ranges are not "
                           "representative; pass --data with real samples")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
Progress = Callable[..., None]  # progress(done, total, label)


def _choices(key: str, values: Any, valid: Sequence[str]) -> tuple[str, ...]:
    if isinstance(values, str):
        values = (values,)
    try:
        values = tuple(values)
    except TypeError:
        raise ConfigError(f"export.{key} must be a list of names from {', '.join(valid)}; got {values!r}.") from None
    if not values:
        raise ConfigError(f"export.{key} is empty; choose one or more of {', '.join(valid)}.")
    for v in values:
        if v not in valid:
            raise ConfigError(f"export.{key}: unknown value {v!r}.{did_you_mean(str(v), valid)} Valid: {', '.join(valid)}.")
    if len(set(values)) != len(values):
        raise ConfigError(f"export.{key} lists a value twice: {list(values)}; list each once.")
    return values


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """What to export: formats × precisions, the artifact name stem, parity thresholds, fail-fast or not.

    ``dynamic_batch`` gives ONNX and OpenVINO files a symbolic batch dim (TFLite stays static and says so);
    ``localize`` names the first divergent module when an fp32 cell fails parity.
    """

    formats: tuple[str, ...] = FORMATS
    precisions: tuple[str, ...] = ("fp32",)
    name: str = "model"
    tolerances: Tolerances = field(default_factory=Tolerances)
    strict: bool = True
    dynamic_batch: bool = False
    localize: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", _choices("formats", self.formats, FORMATS))
        object.__setattr__(self, "precisions", _choices("precisions", self.precisions, EXPORT_PRECISIONS))
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(
                f"export.name {self.name!r} is not a usable file name stem; use letters, digits, '.', '_' or '-', "
                "starting with a letter or digit (e.g. 'student')."
            )
        if isinstance(self.tolerances, dict):
            object.__setattr__(self, "tolerances", Tolerances(**self.tolerances))
        if not isinstance(self.tolerances, Tolerances):
            raise ConfigError(f"export.tolerances must be a Tolerances, got {type(self.tolerances).__name__}.")
        for key in ("strict", "dynamic_batch", "localize"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"export.{key} must be true or false, got {getattr(self, key)!r}.")

    def artifact_name(self, fmt: str, precision: str) -> str:
        return f"{self.name}-{fmt}-{precision}"


@dataclass(kw_only=True)
class ExportResult:
    """One format × precision cell: the published artifact, or why it was rejected."""

    name: str
    format: str
    precision: str
    passed: bool
    artifact: Artifact | None = None  # published artifact (None when rejected)
    report: ParityReport | None = None
    rejected_files: list[Path] = field(default_factory=list)
    error: str | None = None
    export_seconds: float = 0.0
    validate_seconds: float = 0.0
    divergence: dict[str, Any] | None = None  # fp32 failures: the first divergent module (see export/divergence.py)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: verdict, worst-case parity figures, files and timings."""
        outs = self.report.outputs if self.report else []
        top1 = [o.top1_agreement for o in outs if o.top1_agreement is not None]
        art = self.artifact
        return {
            "name": self.name, "format": self.format, "precision": self.precision, "passed": self.passed,
            "max_abs": max((o.max_abs for o in outs), default=None),
            "max_rel": max((o.max_rel for o in outs), default=None),
            "cosine": min((o.cosine for o in outs), default=None),
            "sqnr_db": min((o.sqnr_db for o in outs), default=None),
            "top1_agreement": min(top1, default=None),
            "n_samples": self.report.n_samples if self.report else None,
            "model_bytes": art.model_bytes if art else None,
            "manifest": str(art.manifest_path) if art else None,
            "inputs": [s.to_dict() for s in art.inputs] if art else None,
            "outputs": [s.to_dict() for s in art.outputs] if art else None,
            "failures": list(self.report.failures) if self.report else [],
            "divergence": self.divergence,
            "rejected_files": [str(p) for p in self.rejected_files],
            "error": self.error,
            "notes": list(self.notes),
            "export_seconds": round(self.export_seconds, 3),
            "validate_seconds": round(self.validate_seconds, 3),
        }


Writer = Callable[[str, str, Path, str], Artifact]  # write(fmt, precision, staging_dir, name) -> unvalidated Artifact


def export(
    model: torch.nn.Module,
    example_inputs: Any,
    config: ExportConfig,
    out_dir: str | Path,
    *,
    validation_inputs: np.ndarray | Sequence[np.ndarray],
    calibration: np.ndarray | None = None,
    calibration_ids: Sequence[Any] | None = None,
    progress: Progress | None = None,
    source: dict[str, Any] | None = None,
) -> list[ExportResult]:
    """Export, validate against torch and publish every format × precision of ``config`` into ``out_dir``.

    Each cell is written into ``out_dir/.staging-<name>``; a passing one is moved to its final name with a
    manifest carrying the parity report; a failing one is kept as ``*.rejected`` files and never appears
    under its final name. A failing fp32 cell is localised (``config.localize``): the result, the rejected
    manifest and the ParityError name the first torch module whose output the export computes differently.

    Args:
        model: the torch model (eval mode is set).
        example_inputs: tensor or tuple of batch-1 tensors: the shape the files take.
        config: formats, precisions, name, tolerances, strict, dynamic_batch, localize.
        out_dir: folder for the artifacts.
        validation_inputs: N samples (an (N, ...) array per input) compared between torch and each file.
        calibration: N samples for static int8 (required when precisions include "int8-static").
        calibration_ids: one id per calibration sample, recorded in the manifest.
        progress: called as ``progress(done, total, label)``.
        source: provenance added to every manifest's ``source`` (e.g. the model spec and checkpoint sha256).

    Returns:
        One ExportResult per cell, in formats × precisions order.

    Raises:
        ConfigError: int8-static asked without calibration data.
        InputError: calibration or validation data of the wrong shape, empty, or with NaN/Inf.
        UnsupportedError: (strict) an op or construct a format cannot express; otherwise recorded.
        ParityError: (strict) a cell failed validation; lists every failing output; ``.results`` holds the cells so far.
        RuntimeFailure: a conversion or runtime library failed (strict; otherwise recorded).
    """
    from edgestill.compress.quantize import calibration_manifest, check_calibration
    from edgestill.export.exporters import as_tuple, get_exporter
    from edgestill.export.validate import torch_reference

    args = as_tuple(example_inputs)
    model.eval()
    if "int8-static" in config.precisions:
        if calibration is None:
            raise ConfigError(
                "export.precisions includes 'int8-static' but no calibration data was given; pass calibration= "
                "(N samples shaped like the model input) or drop 'int8-static'."
            )
        if len(args) != 1:
            raise InputError(f"static int8 calibration takes models with one input; this model takes {len(args)}.")
        calibration_manifest(check_calibration(calibration, args[0].shape[1:]), calibration_ids)  # fail fast
    if isinstance(validation_inputs, np.ndarray) and len(args) == 1:
        check_calibration(validation_inputs, args[0].shape[1:], what="validation")

    def write(fmt: str, precision: str, staging: Path, name: str) -> Artifact:
        if precision in FLOAT_PRECISIONS:
            art = get_exporter(fmt)(model, args, staging_dir=staging, name=name, precision=precision,
                                    dynamic_batch=config.dynamic_batch)
        else:
            art = _quantize(model, args, fmt, precision, staging, name, calibration, calibration_ids)
        art.source.update(source or {})
        return art

    def localize(art: Artifact, staging: Path) -> Divergence:
        from edgestill.export.divergence import Divergence, localize_divergence

        onnx_path = art.model_path if art.format == "onnx" else None
        try:
            return localize_divergence(model, args, validation_inputs, threshold=config.tolerances.fp32,
                                       work_dir=staging / ".localize", onnx_path=onnx_path)
        except Exception as exc:  # best effort: a failed diagnosis must not hide the parity failure itself
            return Divergence(found=False, note=f"could not localise the divergence ({type(exc).__name__}: {exc})")

    return _export_cells(config, Path(out_dir), write, lambda: torch_reference(model, validation_inputs), model,
                         validation_inputs, localize if config.localize else None, progress)


def _quantize(model: Any, args: tuple, fmt: str, precision: str, staging: Path, name: str,
              calibration: Any, calibration_ids: Any) -> Artifact:
    """An int8 cell through the quantization module's ``quantize_export``."""
    from edgestill.compress.quantize import quantize_export

    kwargs: dict[str, Any] = dict(format=fmt, calibration=calibration, calibration_ids=calibration_ids, staging_dir=staging, name=name)
    if "precision" in inspect.signature(quantize_export).parameters:
        kwargs["precision"] = precision
    elif precision != "int8-static":
        raise UnsupportedError(f"{precision} is not available from this build's quantization module (static int8 only); "
                               "use --precision int8-static, fp16 or fp32.")
    return quantize_export(model, args, **kwargs)


def _export_cells(
    config: ExportConfig, out: Path, write: Writer, reference_of: Callable[[], list[np.ndarray]], model: Any,
    validation_inputs: Any, localize: Callable[[Artifact, Path], Divergence] | None, progress: Progress | None,
) -> list[ExportResult]:
    """The cell loop shared by torch and ONNX sources: stage, validate, localise, publish or reject."""
    from edgestill.export.validate import validate

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder {out}: {exc.strerror}. Pass a folder you can write to.") from None
    cells = [(f, p) for f in config.formats for p in config.precisions]
    reference = None  # reference outputs over validation_inputs, computed once for every cell
    results: list[ExportResult] = []
    for i, (fmt, precision) in enumerate(cells):
        name = config.artifact_name(fmt, precision)
        if progress:
            progress(i, len(cells), name)
        staging = out / f".staging-{name}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            t0 = time.perf_counter()
            art = write(fmt, precision, staging, name)
            t1 = time.perf_counter()
            if reference is None:
                reference = reference_of()
            report = validate(art, model, validation_inputs, config.tolerances, reference=reference)
            t2 = time.perf_counter()
            divergence = localize(art, staging) if localize and not report.passed and precision == "fp32" else None
        except EdgestillError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if config.strict or (isinstance(exc, InputError) and not isinstance(exc, UnsupportedError)):
                exc.results = results  # type: ignore[attr-defined]  # what was done before, for the caller's report
                raise
            results.append(ExportResult(name=name, format=fmt, precision=precision, passed=False, error=str(exc)))
            continue
        except BaseException:  # an unexpected failure (or Ctrl-C): leave nothing half-written behind
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(staging / ".localize", ignore_errors=True)
        art.validation = report.to_dict()
        result = ExportResult(
            name=name, format=fmt, precision=precision, passed=report.passed, report=report,
            export_seconds=t1 - t0, validate_seconds=t2 - t1, notes=list(art.source.get("notes", [])),
        )
        if divergence is not None:
            result.divergence = divergence.to_dict()
            art.validation["divergence"] = result.divergence
        _remove_final(out, name)
        if report.passed:
            publish(staging, out, list(art.files))
            art.directory = out
            art.write_manifest()
            result.artifact = art
        else:
            art.write_manifest()  # into staging: kept beside the rejected files for diagnosis
            result.rejected_files = reject(staging, out, [*art.files, art.manifest_path.name])
            result.error = f"{name} failed parity: {parity_lines(report)}"
            if divergence is not None:
                result.error += f". {divergence.describe()}"
        shutil.rmtree(staging, ignore_errors=True)
        results.append(result)
        if not report.passed and config.strict:
            err = ParityError(
                f"{result.error}. Files kept as {', '.join(p.name for p in result.rejected_files)} in {out}. "
                "Loosen export tolerances only if the difference is expected, or fix the model or quantization.",
                report.failures,
            )
            err.results = results  # type: ignore[attr-defined]
            raise err
    if progress:
        progress(len(cells), len(cells), "done")
    return results


def parity_lines(report: ParityReport) -> str:
    """Every failing output with its numbers: the missed criteria, then max_abs, max_rel, cosine, SQNR and top-1."""
    missed: dict[str, list[str]] = {}
    for f in report.failures:
        missed.setdefault(f["output"], []).append(f"{f['metric']} {f['value']:.4g} vs bound {f['bound']:.4g}")
    parts = []
    for o in report.outputs:
        if o.name in missed:
            top1 = "" if o.top1_agreement is None else f", top-1 agreement {o.top1_agreement:.4f}"
            parts.append(f"output {o.name!r} missed {', '.join(missed[o.name])} (max_abs {o.max_abs:.4g}, "
                         f"max_rel {o.max_rel:.4g}, cosine {o.cosine:.6f}, SQNR {o.sqnr_db:.1f} dB{top1})")
    return "; ".join(parts)


def export_model(
    model: str | torch.nn.Module,
    *,
    config: ExportConfig,
    out_dir: str | Path,
    checkpoint: str | Path | None = None,
    trust_checkpoint: bool = False,
    input_shape: str | Any | None = None,
    num_classes: int | None = None,
    data: str | Path | np.ndarray | None = None,
    samples: int = 64,
    calibration_samples: int = 300,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[ExportResult]:
    """Load what ``model`` names, build validation (and calibration) samples, and export every cell.

    Args:
        model: a built-in name, ``pkg.module:function``, a ``.pt2`` program, an ``.onnx`` file (OpenVINO
            only), or a torch module (then ``input_shape`` is required).
        config: formats, precisions, tolerances, strict (``dynamic_batch`` is also set by an ``N`` batch dim).
        out_dir: folder for the artifacts (created only once every input checked out).
        checkpoint: weights for a built-in or factory model (.safetensors, or .pt/.pth loaded weights-only).
        trust_checkpoint: allow a checkpoint holding pickled objects (runs code from the file).
        input_shape: e.g. ``"1x3x224x224"`` or ``"Nx3x224x224"``; default: the model's own.
        num_classes: classifier size for a built-in model (default: the model's standard one).
        data: an .npz holding ``x`` (and optionally ``y``), or an array: validation and calibration samples;
            seeded random inputs of the input spec when None.
        samples: how many samples to validate on.
        calibration_samples: at most this many samples for static int8 calibration.

    Returns:
        One ExportResult per cell.

    Raises:
        InputError: any bad input (model name, checkpoint, shape, data), before anything is written.
        ParityError, UnsupportedError, RuntimeFailure: as :func:`export`.
    """
    from edgestill.models.loading import InputShape, LoadedModel, load_model, parse_input_shape

    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ConfigError(f"samples must be a whole number >= 1, got {samples!r}.")
    if isinstance(model, str):
        loaded = load_model(model, checkpoint=checkpoint, trust_checkpoint=trust_checkpoint, input_shape=input_shape,
                            num_classes=num_classes)
    else:
        shape = parse_input_shape(input_shape) if isinstance(input_shape, str) else input_shape
        if not isinstance(shape, InputShape):
            raise InputError("export_model with a torch module needs input_shape (e.g. '1x3x224x224').")
        if checkpoint is not None:
            from edgestill.models.loading import load_checkpoint

            load_checkpoint(model, checkpoint, trust=trust_checkpoint)
        loaded = LoadedModel(model=model.eval(), example_inputs=(shape.example(),), input_shapes=[shape],
                             source={"model": type(model).__name__, "kind": "module"})
    if any(s.dynamic_batch for s in loaded.input_shapes) and not config.dynamic_batch:
        config = dataclasses.replace(config, dynamic_batch=True)
    validation, calibration, ids = _samples(data, loaded.input_shapes, samples, calibration_samples, seed)
    if loaded.onnx_path is not None:
        return _export_onnx_source(loaded, config, Path(out_dir), validation, progress)
    static = "int8-static" in config.precisions
    results = export(loaded.model, loaded.example_inputs, config, out_dir, validation_inputs=validation,
                     calibration=calibration if static else None, calibration_ids=ids if static else None, progress=progress,
                     source={"spec": loaded.source.get("model"), **{k: v for k, v in loaded.source.items() if k != "model"}})
    if data is None:
        for r in results:
            r.notes.append(RANDOM_DATA_NOTE if r.precision != "int8-static" else RANDOM_CALIBRATION_NOTE)
    return results


def _samples(data: Any, shapes: list[Any], n: int, n_calib: int, seed: int) -> tuple[Any, np.ndarray | None, list[str] | None]:
    """Validation inputs (first ``n`` samples), calibration samples (the rest, else all) and their ids."""
    if data is None:
        val = [s.samples(n, seed=seed) for s in shapes]
        calib = shapes[0].samples(min(n_calib, 100), seed=seed + 1) if len(shapes) == 1 else None
        ids = [f"random-{i}" for i in range(len(calib))] if calib is not None else None
        return (val[0] if len(val) == 1 else val), calib, ids
    label = "--data"
    if isinstance(data, np.ndarray):
        x = data
    else:
        path = Path(data)
        label = f"--data {path}"
        if not path.is_file():
            raise InputError(f"{label} does not exist. Pass an .npz file holding an array x (and optionally y).")
        try:
            with np.load(path, allow_pickle=False) as npz:
                if "x" not in npz.files:
                    raise InputError(f"{label} holds {npz.files} but no array 'x'. Save it with np.savez(path, x=samples, y=labels).")
                x = npz["x"]
        except (OSError, ValueError) as exc:
            raise InputError(f"{label} is not a readable .npz file ({exc}). Save it with np.savez(path, x=samples).") from None
    if len(shapes) != 1:
        raise InputError(f"{label}: the model takes {len(shapes)} inputs; --data supports single-input models. Leave it out to validate on random inputs.")
    spec = shapes[0]
    expected = tuple(spec.dims[1:])
    if x.ndim != len(spec.dims) or tuple(x.shape[1:]) != expected or len(x) == 0:
        raise InputError(f"{label}: x has shape {list(x.shape)}; the model takes (N, {', '.join(map(str, expected))}). "
                         "Pass samples shaped like the model's input, one per row, or set --input-shape.")
    if x.dtype.kind not in "fiu":
        raise InputError(f"{label}: x has dtype {x.dtype}; it must be numeric.")
    x = np.ascontiguousarray(x.astype(spec.dtype, copy=False))
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise InputError(f"{label}: x holds NaN or Inf; remove or fix those samples.")
    val = x[:n]
    rest = np.arange(n, len(x)) if len(x) > n else np.arange(len(x))
    idx = rest[:n_calib]
    return val, x[idx], [f"x[{i}]" for i in idx]


def _export_onnx_source(loaded: Any, config: ExportConfig, out: Path, validation: Any, progress: Progress | None) -> list[ExportResult]:
    """An ONNX file → OpenVINO IR, validated against the ONNX file itself on onnxruntime (there is no torch model)."""
    from edgestill.export.onnx import onnx_specs
    from edgestill.export.openvino import export_openvino_from_onnx
    from edgestill.export.validate import run_artifact
    from edgestill.runtimes import RuntimeOptions, load

    bad = [f for f in config.formats if f != "openvino"] + [p for p in config.precisions if p not in FLOAT_PRECISIONS]
    if bad:
        raise ConfigError(
            f"an ONNX file converts to OpenVINO fp32/fp16 only; {', '.join(bad)} asked. Pass --format openvino "
            "--precision fp32,fp16, or give the torch model (--model NAME or pkg.module:function) for other formats."
        )
    path = loaded.onnx_path
    ins, outs = onnx_specs(path)
    source = Artifact(name=path.stem, format="onnx", precision="fp32", directory=path.parent, model_file=path.name,
                      inputs=ins, outputs=outs)
    arrays = [validation] if isinstance(validation, np.ndarray) else list(validation)

    def reference() -> list[np.ndarray]:
        return run_artifact(load(source, RuntimeOptions(threads=1)), source, arrays)

    def write(fmt: str, precision: str, staging: Path, name: str) -> Artifact:
        return export_openvino_from_onnx(path, loaded.example_inputs or tuple(_zeros(s) for s in loaded.input_shapes),
                                         staging_dir=staging, name=name, precision=precision,
                                         dynamic_batch=config.dynamic_batch)

    return _export_cells(config, out, write, reference, None, validation, None, progress)


def _zeros(shape: Any) -> Any:
    """A batch-1 numpy stand-in with ``.shape`` for an ONNX source (no torch needed)."""
    return np.zeros(shape.dims, dtype=shape.dtype)

def _remove_final(out: Path, name: str) -> None:
    """Remove an earlier artifact and earlier rejected files of this name: the folder shows the latest run only."""
    manifest = out / f"{name}{MANIFEST_SUFFIX}"
    if manifest.exists():
        try:
            old = Artifact.load(manifest)
            old_files = list(old.files)
        except InputError:
            old_files = []
        manifest.unlink()
        for f in old_files:
            (out / f).unlink(missing_ok=True)
    for stale in out.glob(f"{_glob_escape(name)}.*.rejected"):
        stale.unlink()


def _glob_escape(text: str) -> str:
    """Escape glob metacharacters in a file name stem."""
    return re.sub(r"([*?\[])", r"[\1]", text)
