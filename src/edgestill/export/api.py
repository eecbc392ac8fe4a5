"""The export verb: every format × precision written to a staging folder, validated, then published or rejected."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgestill.errors import ConfigError, EdgestillError, InputError, ParityError, did_you_mean
from edgestill.export.artifact import FORMATS, MANIFEST_SUFFIX, Artifact, publish, reject
from edgestill.export.validate import ParityReport, Tolerances

if TYPE_CHECKING:
    import torch

EXPORT_PRECISIONS: tuple[str, ...] = ("fp32", "int8-static")
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
    """What to export: formats × precisions, the artifact name stem, parity thresholds, fail-fast or not."""

    formats: tuple[str, ...] = FORMATS
    precisions: tuple[str, ...] = ("fp32",)
    name: str = "model"
    tolerances: Tolerances = field(default_factory=Tolerances)
    strict: bool = True

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
        if not isinstance(self.strict, bool):
            raise ConfigError(f"export.strict must be true or false, got {self.strict!r}.")

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
) -> list[ExportResult]:
    """Export, validate against torch and publish every format × precision of ``config`` into ``out_dir``.

    Each cell is written into ``out_dir/.staging-<name>``; a passing one is moved to its final name with a
    manifest carrying the parity report; a failing one is kept as ``*.rejected`` files and never appears
    under its final name.

    Args:
        model: the torch model (eval mode is set).
        example_inputs: tensor or tuple of batch-1 tensors: the shape the files take.
        config: formats, precisions, name, tolerances, strict.
        out_dir: folder for the artifacts.
        validation_inputs: N samples (an (N, ...) array per input) compared between torch and each file.
        calibration: N samples for static int8 (required when precisions include "int8-static").
        calibration_ids: one id per calibration sample, recorded in the manifest.
        progress: called as ``progress(done, total, label)``.

    Returns:
        One ExportResult per cell, in formats × precisions order.

    Raises:
        ConfigError: int8-static asked without calibration data.
        InputError: calibration or validation data of the wrong shape, empty, or with NaN/Inf.
        ParityError: (strict) a cell failed validation; lists every failing output.
        RuntimeFailure: a conversion or runtime library failed (strict; otherwise recorded).
    """
    from edgestill.compress.quantize import calibration_manifest, check_calibration, quantize_export
    from edgestill.export.exporters import as_tuple, get_exporter
    from edgestill.export.validate import torch_reference, validate

    args = as_tuple(example_inputs)
    model.eval()
    out = Path(out_dir)
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
    out.mkdir(parents=True, exist_ok=True)
    cells = [(f, p) for f in config.formats for p in config.precisions]
    reference = None  # torch outputs over validation_inputs, computed once for every cell
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
            if precision == "fp32":
                art = get_exporter(fmt)(model, args, staging_dir=staging, name=name)
            else:
                art = quantize_export(
                    model, args, format=fmt, calibration=calibration, calibration_ids=calibration_ids,
                    staging_dir=staging, name=name,
                )
            t1 = time.perf_counter()
            if reference is None:
                reference = torch_reference(model, validation_inputs)
            report = validate(art, model, validation_inputs, config.tolerances, reference=reference)
            t2 = time.perf_counter()
        except EdgestillError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if config.strict or isinstance(exc, InputError):
                raise
            results.append(ExportResult(name=name, format=fmt, precision=precision, passed=False, error=str(exc)))
            continue
        except BaseException:  # an unexpected failure (or Ctrl-C): leave nothing half-written behind
            shutil.rmtree(staging, ignore_errors=True)
            raise
        art.validation = report.to_dict()
        result = ExportResult(
            name=name, format=fmt, precision=precision, passed=report.passed, report=report,
            export_seconds=t1 - t0, validate_seconds=t2 - t1,
        )
        _remove_final(out, name)
        if report.passed:
            publish(staging, out, list(art.files))
            art.directory = out
            art.write_manifest()
            result.artifact = art
        else:
            art.write_manifest()  # into staging: kept beside the rejected files for diagnosis
            result.rejected_files = reject(staging, out, [*art.files, art.manifest_path.name])
            result.error = f"{name} failed parity: {report.summary()}"
        shutil.rmtree(staging, ignore_errors=True)
        results.append(result)
        if not report.passed and config.strict:
            raise ParityError(
                f"{result.error}. Files kept as {', '.join(p.name for p in result.rejected_files)} in {out}. "
                "Loosen export tolerances only if the difference is expected, or fix the model or quantization.",
                report.failures,
            )
    if progress:
        progress(len(cells), len(cells), "done")
    return results


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
