"""The export verb: every float format × precision written to a staging folder, validated, then published or rejected.

int8 files are not made here: they go through the accuracy budget of ``edgestill.compress.quantize``, and
``edgestill.chain.convert.convert`` runs both (float cells here, int8 cells there) for one ExportConfig.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgestill.artifact import FORMATS, INPUT_KINDS, MANIFEST_SUFFIX, Artifact, Precision, TensorSpec, publish, reject, sha256_file
from edgestill.errors import ConfigError, EdgestillError, InputError, ParityError, UnsupportedError, did_you_mean
from edgestill.export.base import EXPORTERS, Exporter, as_tuple, attach_text_files, export_precisions, forward_inputs
from edgestill.export.validate import EMBEDDING_CRITERION, ParityReport, Tolerances, check_samples
from edgestill.outdir import fresh_work_dir

logger = logging.getLogger(__name__)
MAX_LISTING_BYTES = 16 << 20  # a manifest larger than this is not one edgestill wrote: its files are left alone

if TYPE_CHECKING:
    import torch

    from edgestill.export.divergence import Divergence

# What an ExportConfig may ask for: every precision a file can be made in ("mixed" is an outcome of the accuracy
# budget, never a request), and "int8": each format's own int8 for the model (edgestill.compress.quantize.options
# AUTO_PRECISION: int8-static for image models; for a text model onnx int8-dynamic, OpenVINO int8-static with NNCF's
# transformer type, TFLite int8-dynamic). export() makes the float ones; the int8 ones go through edgestill.chain.convert.
AUTO_INT8 = "int8"
# Weight-only precisions are the generative models' (edgestill.export.llm), not requestable for these models.
REQUESTABLE_PRECISIONS: tuple[str, ...] = (
    *(p.value for p in Precision if p is not Precision.MIXED and not p.is_weight_only), AUTO_INT8)
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


def _input_specs(inputs: Any) -> tuple[TensorSpec, ...]:
    try:
        specs = tuple(s if isinstance(s, TensorSpec) else TensorSpec.from_dict(s) for s in inputs or ())
    except (TypeError, KeyError, AttributeError) as exc:
        raise ConfigError(f"export.inputs must be a list of input specs (name, shape, dtype[, kind, high]); got {inputs!r} ({exc}).") from None
    names = [s.name for s in specs]
    if any(not isinstance(n, str) or not n for n in names) or len(set(names)) != len(names):
        raise ConfigError(f"export.inputs must give each input its own non-empty name; got {names}.")
    for s in specs:
        if s.kind is not None and s.kind not in INPUT_KINDS:
            raise ConfigError(f"export.inputs: input {s.name!r} has kind {s.kind!r}; valid: {', '.join(INPUT_KINDS)}.")
    return specs


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """What to export: formats × precisions, the artifact name stem, parity thresholds, fail-fast or not.

    ``precisions`` may include int8 ones (int8-static, int8-dynamic): :func:`export` refuses them, and
    ``edgestill.chain.convert.convert`` sends them through the quantize accuracy budget.

    ``dynamic_batch`` gives ONNX and OpenVINO files a symbolic batch dim (TFLite stays static and says so);
    ``localize`` names the first divergent module when an fp32 cell fails parity.

    ``inputs``: one spec per model input, in the forward's order (TensorSpec or its dict): every file's inputs take
    these names, a string dim 1 is a symbolic sequence (ONNX, OpenVINO; TFLite traces the example length), and
    ``kind``/``high`` are written into each manifest. Empty: a model with several inputs keeps its forward's
    parameter names (see :func:`edgestill.export.base.forward_inputs`); one input keeps the writer's default name.
    ``embedding``: the outputs are embeddings, validated by per-sample cosine instead of top-1 (None: from the
    source's text facts, ``source["text"]["task"] == "embed"``).
    """

    formats: tuple[str, ...] = FORMATS
    precisions: tuple[str, ...] = ("fp32",)
    name: str = "model"
    tolerances: Tolerances = field(default_factory=Tolerances)
    strict: bool = True
    dynamic_batch: bool = False
    localize: bool = True
    inputs: tuple[TensorSpec, ...] = ()
    embedding: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", _choices("formats", self.formats, FORMATS))
        object.__setattr__(self, "precisions", _choices("precisions", self.precisions, REQUESTABLE_PRECISIONS))
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
        if self.embedding is not None and not isinstance(self.embedding, bool):
            raise ConfigError(f"export.embedding must be true, false or none (from the model's text facts), got {self.embedding!r}.")
        object.__setattr__(self, "inputs", _input_specs(self.inputs))

    def artifact_name(self, fmt: str, precision: str) -> str:
        return f"{self.name}-{fmt}-{precision}"

    @property
    def float_precisions(self) -> tuple[str, ...]:
        """The precisions :func:`export` makes (fp32, fp16), in the order asked."""
        return tuple(p for p in self.precisions if p != AUTO_INT8 and Precision(p).is_float)

    @property
    def int8_precisions(self) -> tuple[str, ...]:
        """The int8 precisions asked (they go through the accuracy budget), in the order asked."""
        return tuple(p for p in self.precisions if p == AUTO_INT8 or not Precision(p).is_float)


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
    # int8 cells: the accuracy budget's facts: fp32_accuracy, accuracy, drop_points, budget, budget_met,
    # float_layers, metric ("top1_accuracy" with labels, "top1_agreement_with_fp32" without)
    quantization: dict[str, Any] | None = None
    # why a cell failed, one of FAILURE_KINDS: "parity" (the file missed its tolerances), "budget" (an int8 cell over
    # its accuracy budget), "unsupported" (an op the format cannot express), "library" (a conversion library or
    # runtime failed), "not made" (an int8 cell whose fp32 baseline failed); None when it passed
    failure: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: verdict, worst-case parity figures, files and timings."""
        outs = self.report.outputs if self.report else []
        embedding = bool(self.report) and self.report.criterion == EMBEDDING_CRITERION
        top1 = [] if embedding else [o.top1_agreement for o in outs if o.top1_agreement is not None]  # none for embeddings
        art = self.artifact
        return {
            "name": self.name, "format": self.format, "precision": self.precision, "passed": self.passed,
            "max_abs": max((o.max_abs for o in outs), default=None),
            "max_rel": max((o.max_rel for o in outs), default=None),
            "cosine": min((o.cosine for o in outs), default=None),
            "sqnr_db": min((o.sqnr_db for o in outs), default=None),
            "top1_agreement": min(top1, default=None),
            "cosine_min": min((o.cosine_min for o in outs if o.cosine_min is not None), default=None),  # worst sample
            "criterion": self.report.criterion if self.report else None,
            "n_samples": self.report.n_samples if self.report else None,
            "model_bytes": art.model_bytes if art else None,
            "manifest": str(art.manifest_path) if art else None,
            "inputs": [s.to_dict() for s in art.inputs] if art else None,
            "outputs": [s.to_dict() for s in art.outputs] if art else None,
            "failures": list(self.report.failures) if self.report else [],
            "divergence": self.divergence,
            "quantization": self.quantization,
            "rejected_files": [str(p) for p in self.rejected_files],
            "failure": self.failure,
            "error": self.error,
            "notes": list(self.notes),
            "export_seconds": round(self.export_seconds, 3),
            "validate_seconds": round(self.validate_seconds, 3),
        }


Writer = Callable[[str, str, Path, str], Artifact]  # write(fmt, precision, staging_dir, name) -> unvalidated Artifact


def get_exporter(fmt: str) -> Exporter:
    """Return the float writer registered for a format (imports its module).

    Raises:
        UnknownNameError: no writer for ``fmt`` (the message lists the registered formats).
    """
    return EXPORTERS.get(fmt).load()


def check_float_cells(config: ExportConfig) -> None:
    """Refuse int8 precisions and format × precision cells no writer makes, before anything is written.

    Raises:
        ConfigError: an int8 precision (it names the function that makes it), or a precision a format's writer lacks.
    """
    if config.int8_precisions:
        made = ", ".join(export_precisions())
        raise ConfigError(
            f"export() writes float files only ({made}); export.precisions also asks {', '.join(config.int8_precisions)}. "
            "int8 files go through the accuracy budget: call edgestill.chain.convert.convert(model, ..., export=config, "
            "quantize=QuantizeConfig(...)) (what `edgestill export --precision int8-static` does), or drop "
            f"{', '.join(config.int8_precisions)} from export.precisions."
        )
    for fmt in config.formats:
        for precision in config.precisions:
            EXPORTERS.get(fmt).check_precision(precision, "writer")


def export(
    model: torch.nn.Module,
    example_inputs: Any,
    config: ExportConfig,
    out_dir: str | Path,
    *,
    validation_inputs: np.ndarray | Sequence[np.ndarray],
    progress: Progress | None = None,
    source: dict[str, Any] | None = None,
) -> list[ExportResult]:
    """Export, validate against torch and publish every float format × precision of ``config`` into ``out_dir``.

    Each cell is written into a fresh ``out_dir/.staging-<name>-XXXX``; a passing one is moved to its final name with a
    manifest carrying the parity report; a failing one is kept as ``*.rejected`` files and never appears
    under its final name. Every cell is tried, whatever another cell did (only bad input stops the run). A failing fp32 cell is localised (``config.localize``): the result, the rejected
    manifest and the ParityError name the first torch module whose output the export computes differently.

    Args:
        model: the torch model (eval mode is set).
        example_inputs: tensor or tuple of batch-1 tensors: the shape the files take.
        config: formats, float precisions (fp32, fp16), name, tolerances, strict, dynamic_batch, localize.
        out_dir: folder for the artifacts.
        validation_inputs: N samples (an (N, ...) array per input) compared between torch and each file.
        progress: called as ``progress(done, total, label)``.
        source: provenance added to every manifest's ``source`` (e.g. the model spec and checkpoint sha256). A text
            model's ``source["text"]`` with ``tokenizer_path`` puts the tokenizer beside every file (see
            :func:`edgestill.export.base.attach_text_files`).

    Returns:
        One ExportResult per cell, in formats × precisions order.

    Raises:
        ConfigError: an int8 precision in ``config`` (use edgestill.chain.convert.convert), checked before writing.
        InputError: validation data of the wrong shape, empty, or with NaN/Inf.
        ParityError, UnsupportedError, RuntimeFailure: (strict) once every cell was tried, when any failed (see
            :func:`failed_cells_error` for which); ``.results`` holds every cell. Without strict, failures are recorded
            in the results (``failure`` says why) and nothing is raised.
    """
    from edgestill.export.validate import torch_reference

    check_float_cells(config)
    args = as_tuple(example_inputs)
    model.eval()
    if isinstance(validation_inputs, np.ndarray) and len(args) == 1:
        check_samples(validation_inputs, args[0].shape[1:], what="validation")

    inputs = config.inputs or forward_inputs(model, args)  # several inputs keep the forward's names by default
    named = {"inputs": inputs} if inputs else {}  # writers registered before named inputs still work

    def write(fmt: str, precision: str, staging: Path, name: str) -> Artifact:
        art = get_exporter(fmt)(model, args, staging_dir=staging, name=name, precision=precision,
                                dynamic_batch=config.dynamic_batch, **named)
        art.source.update({k: v for k, v in (source or {}).items() if k != "text"})
        return attach_text_files(art, staging, source)

    def localize(art: Artifact, staging: Path) -> Divergence:
        from edgestill.export.divergence import Divergence, localize_divergence

        onnx_path = art.model_path if art.format == "onnx" else None
        try:
            return localize_divergence(model, args, validation_inputs, threshold=config.tolerances.fp32,
                                       work_dir=staging / ".localize", onnx_path=onnx_path)
        except Exception as exc:  # best effort: a failed diagnosis must not hide the parity failure itself
            return Divergence(found=False, note=f"could not localise the divergence ({type(exc).__name__}: {exc})")

    return _export_cells(config, Path(out_dir), write, lambda: torch_reference(model, validation_inputs), model,
                         validation_inputs, localize if config.localize else None, progress,
                         embedding=config.embedding)


def _export_cells(
    config: ExportConfig, out: Path, write: Writer, reference_of: Callable[[], list[np.ndarray]], model: Any,
    validation_inputs: Any, localize: Callable[[Artifact, Path], Divergence] | None, progress: Progress | None,
    *, embedding: bool | None = None,
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
        staging = fresh_work_dir(out, f".staging-{name}")
        try:
            t0 = time.perf_counter()
            art = write(fmt, precision, staging, name)
            t1 = time.perf_counter()
            if reference is None:
                reference = reference_of()
            report = validate(art, model, validation_inputs, config.tolerances, reference=reference, embedding=embedding)
            t2 = time.perf_counter()
            divergence = localize(art, staging) if localize and not report.passed and precision == "fp32" else None
        except EdgestillError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, InputError) and not isinstance(exc, UnsupportedError):
                exc.results = results  # type: ignore[attr-defined]  # bad input fails every cell alike: stop here
                raise
            # an op the format cannot express, or a library failure: this cell fails, the others are still tried
            results.append(ExportResult(name=name, format=fmt, precision=precision, passed=False, error=str(exc),
                                        failure=failure_kind(exc)))
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
            result.failure = "parity"
            result.error = f"{name} failed parity: {parity_lines(report)}"
            if divergence is not None:
                result.error += f". {divergence.describe()}"
            result.error += (f". Kept as {', '.join(p.name for p in result.rejected_files)} in {out}; loosen export "
                             "tolerances only if the difference is expected, or fix the model")
        shutil.rmtree(staging, ignore_errors=True)
        results.append(result)
    if progress:
        progress(len(cells), len(cells), "done")
    if config.strict:
        raise_failed_cells(results)
    return results


FAILURE_KINDS = ("parity", "budget", "unsupported", "library", "not made")


def failure_kind(exc: BaseException) -> str:
    """The ``ExportResult.failure`` of a cell that raised ``exc``: "unsupported" or "library"."""
    return "unsupported" if isinstance(exc, UnsupportedError) else "library"


def failed_cells_error(results: Sequence[ExportResult]) -> EdgestillError | None:
    """One error for every failed cell of a strict run (None when every cell passed), with ``.results`` = all cells.

    Every cell is tried before this is raised, so the message counts them all and names each failure. Its exit code:
    1 (ParityError, or CheckFailed for budget misses only) when any cell failed parity or its accuracy budget or was
    not made because its fp32 baseline failed; otherwise 3 (RuntimeFailure) when a conversion library or runtime
    failed; otherwise 2 (UnsupportedError) when the only failures are ops a format cannot express.
    """
    from edgestill.errors import CheckFailed, RuntimeFailure

    failed = [r for r in results if not r.passed]
    if not failed:
        return None
    passed = [r.name for r in results if r.passed]
    lines = "; ".join(f"[{r.failure or 'failed'}] {r.error or r.name + ' failed'}" for r in failed)
    message = (f"{len(failed)} of {len(results)} cells failed (every cell was tried; the report lists each): {lines}"
               + (f". Passed: {', '.join(passed)}." if passed else "."))
    kinds = {r.failure for r in failed}
    err: EdgestillError
    if kinds & {"parity", "not made", None}:
        err = ParityError(message, [f for r in failed if r.report is not None for f in r.report.failures])
    elif "budget" in kinds:
        err = CheckFailed(message)
    elif "library" in kinds:
        err = RuntimeFailure(message)
    else:
        err = UnsupportedError(message)
    err.results = list(results)  # type: ignore[attr-defined]
    return err


def raise_failed_cells(results: Sequence[ExportResult]) -> None:
    """Raise :func:`failed_cells_error` when a cell failed (strict runs)."""
    err = failed_cells_error(results)
    if err is not None:
        raise err


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


def export_onnx_file(
    onnx_path: str | Path, example_shapes: Sequence[Sequence[int]], config: ExportConfig, out_dir: str | Path, *,
    validation_inputs: np.ndarray | Sequence[np.ndarray], progress: Progress | None = None,
) -> list[ExportResult]:
    """Convert an ONNX file to OpenVINO IR (fp32/fp16), validated against the ONNX file itself on onnxruntime.

    There is no torch model: the reference outputs come from the ONNX file.

    Args:
        onnx_path: the .onnx file.
        example_shapes: the batch-1 shape of each input (the shapes the IR takes; batch -1 with ``dynamic_batch``).
        config: formats must be ("openvino",) and precisions float ones.
        out_dir: folder for the artifacts.
        validation_inputs: N samples per input.
        progress: called as ``progress(done, total, label)``.

    Raises:
        ConfigError: another format, or an int8 precision, asked.
        ParityError, UnsupportedError, RuntimeFailure: as :func:`export`.
    """
    from edgestill.export.onnx import onnx_specs
    from edgestill.export.openvino import export_openvino_from_onnx
    from edgestill.export.validate import run_artifact
    from edgestill.runtimes import RuntimeOptions, load

    made = EXPORTERS.get("openvino").precisions
    bad = [f for f in config.formats if f != "openvino"] + [p for p in config.precisions if p not in made]
    if bad:
        raise ConfigError(
            f"an ONNX file converts to OpenVINO {'/'.join(made)} only; {', '.join(bad)} asked. Pass --format openvino "
            f"--precision {','.join(made)}, or give the torch model (--model NAME or pkg.module:function) for other formats "
            "and for int8."
        )
    path = Path(onnx_path)
    ins, outs = onnx_specs(path)
    source = Artifact(name=path.stem, format="onnx", precision="fp32", directory=path.parent, model_file=path.name,
                      inputs=ins, outputs=outs)
    arrays = [validation_inputs] if isinstance(validation_inputs, np.ndarray) else list(validation_inputs)
    stand_ins = tuple(np.zeros(tuple(s), np.float32) for s in example_shapes)  # only .shape is read

    def reference() -> list[np.ndarray]:
        return run_artifact(load(source, RuntimeOptions(threads=1)), source, arrays)

    def write(fmt: str, precision: str, staging: Path, name: str) -> Artifact:
        return export_openvino_from_onnx(path, stand_ins, staging_dir=staging, name=name, precision=precision,
                                         dynamic_batch=config.dynamic_batch)

    return _export_cells(config, Path(out_dir), write, reference, None, validation_inputs, None, progress)


def _remove_final(out: Path, name: str) -> None:
    """Remove an earlier artifact and earlier rejected files of this name: the folder shows the latest run only.

    A file the old manifest lists is removed only when it is one edgestill wrote there (see :func:`_written_by_us`);
    any other entry, e.g. ``../x`` or an absolute path in a crafted manifest, is left alone and logged.
    """
    manifest = out / f"{name}{MANIFEST_SUFFIX}"
    if manifest.is_symlink():
        manifest.unlink()  # the link only, never what it points at
    elif manifest.is_file():
        old_files = _listed_files(manifest)
        manifest.unlink()
        for f, sha in old_files.items():
            path = _written_by_us(out, f, sha)
            if path is None and os.path.lexists(out / f):
                logger.warning("%s lists %r, which is not a file edgestill wrote inside %s; left as it is", manifest, f, out)
            elif path is not None:
                path.unlink()
    for stale in out.glob(f"{_glob_escape(name)}.*.rejected"):
        stale.unlink()


def _listed_files(manifest: Path) -> dict[Any, Any]:
    """The ``files`` map of a manifest read as plain JSON ({} when unreadable): each entry is checked by the caller."""
    try:
        if manifest.stat().st_size > MAX_LISTING_BYTES:
            return {}
        files = json.loads(manifest.read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError, RecursionError):
        return {}
    return files if isinstance(files, dict) else {}


def _written_by_us(out: Path, entry: object, sha256: object) -> Path | None:
    """``out / entry`` when it may be deleted as an earlier run's file, else None.

    That is: a relative path without ``..``, whose folder resolves inside ``out`` (no symlink leading out), naming a
    regular file (not a symlink) whose sha256 is the one the manifest recorded, i.e. the file edgestill wrote.
    """
    if not isinstance(entry, str) or not entry or "\\" in entry or "\0" in entry:
        return None
    rel = Path(entry)
    if rel.is_absolute() or any(part in ("..", "") for part in rel.parts) or rel.drive:
        return None
    path = out / rel
    try:
        root = out.resolve(strict=True)
        if not path.parent.resolve(strict=True).is_relative_to(root):
            return None
        if path.is_symlink() or not path.is_file():
            return None
        return path if sha256_file(path) == sha256 else None
    except (OSError, RuntimeError):
        return None


def _glob_escape(text: str) -> str:
    """Escape glob metacharacters in a file name stem."""
    return re.sub(r"([*?\[])", r"[\1]", text)
