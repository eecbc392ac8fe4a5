"""One path from a torch model to every format × precision: float cells through ``export``, int8 cells through the
quantize accuracy budget (the same verb and budget as ``edgestill quantize``), all returned as ExportResults.

``convert`` takes a model in memory; ``export_model`` loads one by name (built-in, factory, .pt2 or .onnx), builds
validation and calibration samples, and calls ``convert`` (what ``edgestill export`` runs).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgestill.artifact import MANIFEST_SUFFIX, REJECTED_SUFFIX, Artifact, Precision
from edgestill.compress.quantize.base import QUANTIZERS
from edgestill.compress.quantize.budget import METRIC_AGREEMENT, METRIC_COSINE, FormatResult, QuantizeConfig, check_inputs
from edgestill.compress.quantize.budget import quantize as quantize_within_budget
from edgestill.compress.quantize.samples import is_integer_input
from edgestill.compress.quantize.options import AUTO_PRECISION
from edgestill.errors import CheckFailed, ConfigError, EdgestillError, InputError, ParityError, UnsupportedError
from edgestill.export.api import (
    ExportConfig,
    ExportResult,
    check_float_cells,
    export_onnx_file,
    failure_kind,
    raise_failed_cells,
)
from edgestill.export.api import export as export_float
from edgestill.export.validate import check_samples

if TYPE_CHECKING:
    import torch

Progress = Callable[..., None]  # progress(done, total, label)
RANDOM_DATA_NOTE = "validated on seeded random inputs (no data given); pass --data for samples of the real input distribution"
RANDOM_CALIBRATION_NOTE = ("calibrated, validated and budget-checked on seeded random inputs (no data given): int8 ranges "
                           "are not representative; pass --data with real samples")


def convert(
    model: torch.nn.Module,
    example_inputs: Any,
    *,
    export: ExportConfig,
    quantize: QuantizeConfig | None,
    out_dir: str | Path,
    validation_inputs: np.ndarray | Sequence[np.ndarray],
    calibration: Any = None,
    calibration_ids: Sequence[Any] | None = None,
    eval_x: Any = None,
    eval_y: np.ndarray | None = None,
    progress: Progress | None = None,
    source: dict[str, Any] | None = None,
    hint: Mapping[str, str] | None = None,
) -> list[ExportResult]:
    """Make every format × precision of ``export``: float cells with :func:`edgestill.export.export`, int8 cells with
    the accuracy budget (:func:`edgestill.compress.quantize.quantize`), each validated against torch.

    The int8 cells reuse the fp32 files as the budget's baseline (an fp32 file is exported for a format that needs
    one and did not ask for it; it stays in ``out_dir`` beside the int8 file). Latency is not timed here.

    Args:
        model: the float torch model (eval mode is set; left unchanged).
        example_inputs: tensor or tuple of batch-1 tensors: the shape the files take.
        export: formats, precisions (float and int8), name, tolerances, strict, dynamic_batch.
        quantize: the budget and quantization options for the int8 cells (max_accuracy_drop, time_budget_s,
            max_float_layers, options); its formats, precision and name are taken from ``export``. None: defaults.
        out_dir: folder for the artifacts.
        validation_inputs: N samples compared between torch and each file (parity): one (N, ...) array per input.
        calibration: samples for static int8 ranges (required when export.precisions has int8-static): one array, or
            for a model with several inputs one per input (model order) or a dict named like them.
        calibration_ids: one id per calibration sample, recorded in the manifest.
        eval_x: the inputs the accuracy budget is measured on (default: ``validation_inputs``).
        eval_y: their integer labels; None measures top-1 agreement of the int8 file with the fp32 file on the same
            runtime (``quantization["metric"] == "top1_agreement_with_fp32"``).
        progress: called as ``progress(done, total, label)``.
        source: provenance added to every manifest's ``source``. A text model's ``source["text"]`` puts its tokenizer
            beside every file, int8 ones included, and ``source["text"]["task"] == "embed"`` makes the int8 cells'
            budget the mean cosine to the fp32 file (``quantize.min_cosine``) instead of top-1.
        hint: how the user named the inputs (``model``, ``checkpoint``, ``input_shape``, ``data``): a rejected int8
            cell's message suggests an ``edgestill quantize`` command with them (see :func:`rejection_hint`).

    Every cell is tried whatever the others did; only bad input (InputError) stops the run.

    Returns:
        One ExportResult per cell: float cells in formats × precisions order, then the int8 cells. An int8 cell's
        ``precision`` is "mixed" when layers were kept in float; its ``quantization`` holds the budget's facts
        (fp32_accuracy, accuracy, drop_points, budget, budget_met, float_layers, metric).

    Raises:
        ConfigError: a precision a format cannot make, or quantize settings that do not fit (before anything is written).
        InputError: int8-static without calibration; data of the wrong shape, empty, with NaN/Inf, missing an input,
            with inputs of different N, ids outside the vocabulary; labels of the wrong length (all before anything
            is written).
        ParityError, CheckFailed, RuntimeFailure, UnsupportedError: (strict) once every cell was tried, when any
            failed: exit 1 for a parity or budget failure, else 3 for a library failure, else 2 for ops a format
            cannot express (:func:`edgestill.export.api.failed_cells_error`); ``.results`` holds every cell. Without
            strict the failures are recorded (``ExportResult.failure``) and nothing is raised.
    """
    from edgestill.export.base import as_tuple

    args = as_tuple(example_inputs)
    floats = dataclasses.replace(export, precisions=export.float_precisions) if export.float_precisions else None
    if floats is not None:
        check_float_cells(floats)
    quant_configs = _quantize_configs(export, quantize or QuantizeConfig())
    task = _task_of(source)
    specs = tuple(export.inputs) or None
    if quant_configs:
        x_eval = validation_inputs if eval_x is None else eval_x  # one array, or one per input (samples.check_model_data)
        for qc in quant_configs:  # every int8 input checked before anything is written
            check_inputs(model, args, qc, calibration=calibration, calibration_ids=calibration_ids, eval_x=x_eval, eval_y=eval_y,
                         input_specs=specs, task=task)
        if len(args) == 1:
            check_samples(validation_inputs, args[0].shape[1:], what="validation")
    total = len(export.formats) * len(export.precisions)
    out = Path(out_dir)
    results: list[ExportResult] = []
    # every cell is tried whatever another one did: the float cells run without stopping, and strict raises once at
    # the end for all the failed cells (export.api.failed_cells_error)
    if floats is not None:
        results += export_float(model, args, dataclasses.replace(floats, strict=False), out,
                                validation_inputs=validation_inputs, source=source, progress=_offset(progress, 0, total))
    if quant_configs:
        baselines, notes = _baselines(model, args, export, results, out, validation_inputs, source)
        try:
            results += _int8_cells(model, args, export, quant_configs, out, baselines, notes, calibration=calibration,
                                   calibration_ids=calibration_ids, x_eval=x_eval, eval_y=eval_y,
                                   validation_inputs=validation_inputs, source=source, hint=hint, done=len(results),
                                   total=total, progress=progress, task=task)
        except EdgestillError as exc:  # bad input: the cells done so far, for the caller's report
            exc.results = [*results, *getattr(exc, "results", [])]  # type: ignore[attr-defined]
            raise
    if progress:
        progress(total, total, "done")
    if export.strict:
        raise_failed_cells(results)
    return results


def _int8_cells(
    model: Any, args: tuple, export: ExportConfig, quant_configs: list[QuantizeConfig], out: Path,
    baselines: dict[str, Artifact], notes: dict[str, str], *, calibration: Any, calibration_ids: Any, x_eval: Any,
    eval_y: Any, validation_inputs: Any, source: dict[str, Any] | None, hint: Mapping[str, str] | None, done: int,
    total: int, progress: Progress | None, task: str | None = None,
) -> list[ExportResult]:
    """Every int8 cell through the accuracy budget, each tried whatever the others did (bad input stops them all)."""
    cells: list[ExportResult] = []
    for qc in quant_configs:
        for fmt in export.formats:
            text = is_integer_input(args)
            label = export.artifact_name(fmt, qc.precision_for(fmt, text=text))
            if progress:
                progress(done, total, label)
            done += 1
            if fmt not in baselines:
                cells.append(ExportResult(name=label, format=fmt, precision=qc.precision_for(fmt, text=text), passed=False,
                                          error=f"{label} not made: {notes[fmt]}", failure="not made"))
                continue
            cell_config = dataclasses.replace(qc, formats=(fmt,), precision=qc.precision_for(fmt, text=text))
            t0 = time.perf_counter()
            try:
                qres = quantize_within_budget(
                    model, args, cell_config, out, calibration=calibration, calibration_ids=calibration_ids,
                    eval_x=x_eval, eval_y=eval_y, claimed=True, fp32_artifacts={fmt: baselines[fmt]},
                    validation_inputs=validation_inputs, tolerances=export.tolerances,
                    input_specs=tuple(export.inputs) or None, task=task, source=source,
                    progress=lambda msg, _d=done - 1, _l=label: progress(_d, total, f"{_l}: {msg}") if progress else None,
                )
            except EdgestillError as exc:
                if isinstance(exc, InputError) and not isinstance(exc, UnsupportedError):
                    exc.results = cells  # type: ignore[attr-defined]
                    raise
                cells.append(ExportResult(name=label, format=fmt, precision=cell_config.precision, passed=False, error=str(exc),
                                          export_seconds=time.perf_counter() - t0, failure=failure_kind(exc)))
                continue
            (fres,) = qres.formats
            cell = _int8_result(fres, source, notes.get(fmt), config=cell_config, out=out, hint=hint)
            cell.notes += list(qres.warnings)
            cells.append(cell)
    return cells


def _quantize_configs(export: ExportConfig, quantize: QuantizeConfig) -> list[QuantizeConfig]:
    """One QuantizeConfig per int8 precision of ``export`` (formats, precision and name from ``export``; no latency).

    Raises:
        ConfigError: a format without a quantizer for the precision, or options that do not fit it.
    """
    if not isinstance(quantize, QuantizeConfig):
        raise ConfigError(f"quantize must be a QuantizeConfig, got {type(quantize).__name__}.")
    configs = []
    if AUTO_PRECISION in export.int8_precisions and len(export.int8_precisions) > 1:
        raise ConfigError(f"export.precisions asks {AUTO_PRECISION} (each format's own int8) beside "
                          f"{', '.join(p for p in export.int8_precisions if p != AUTO_PRECISION)}: one format would get the "
                          f"same int8 file twice. Ask {AUTO_PRECISION} alone, or name the int8 precisions yourself.")
    for precision in export.int8_precisions:
        for fmt in export.formats:
            if precision != AUTO_PRECISION:  # "int8" resolves to a precision every format's quantizer makes
                QUANTIZERS.get(fmt).check_precision(precision, "quantizer")
        configs.append(dataclasses.replace(quantize, formats=export.formats, precision=precision, name=export.name,
                                           bench_latency=False))
    return configs


def _baselines(
    model: Any, args: tuple, export: ExportConfig, done: list[ExportResult], out: Path, validation_inputs: Any,
    source: dict[str, Any] | None,
) -> tuple[dict[str, Artifact], dict[str, str]]:
    """The published fp32 artifact per format (exported here when not asked for) and a note per format."""
    baselines: dict[str, Artifact] = {}
    notes: dict[str, str] = {}
    fp32 = {r.format: r for r in done if r.precision == "fp32"}
    missing = tuple(f for f in export.formats if f not in fp32)
    if missing:  # a baseline that fails makes its format's int8 cell "not made", with the baseline's error
        extra = export_float(model, args, dataclasses.replace(export, formats=missing, precisions=("fp32",), strict=False),
                             out, validation_inputs=validation_inputs, source=source)
        for r in extra:
            fp32[r.format] = r
            if r.passed:
                notes[r.format] = (f"the accuracy budget's fp32 baseline {r.name} was exported beside it "
                                   f"({r.artifact.model_file if r.artifact else ''})")
    for fmt, r in fp32.items():
        if r.passed and r.artifact is not None:
            baselines[fmt] = r.artifact
        else:
            notes[fmt] = f"its fp32 baseline {r.name} failed ({r.error}); the accuracy budget needs a valid fp32 file"
    return baselines, notes


def _int8_result(f: FormatResult, source: dict[str, Any] | None, note: str | None, *, config: QuantizeConfig, out: Path,
                 hint: Mapping[str, str] | None = None) -> ExportResult:
    """An int8 cell as an ExportResult: the budget's facts and the options that ran in ``quantization`` (the same
    facts the quantize report gives per format); a rejected cell's error says what to try next."""
    if f.artifact is not None and source:  # the text facts are already there, the tokenizer path made relative
        f.artifact.source.update({k: v for k, v in source.items() if k != "text"})
        f.artifact.write_manifest()
    validate_s = f.report.seconds if f.report else 0.0
    notes = [note] if note else []
    if f.metric == METRIC_AGREEMENT:
        runtime = f.report.runtime if f.report else f.runtime
        notes.append(f"no labels: the accuracy budget measured top-1 agreement with the fp32 file on {runtime} "
                     f"(drop = 100 x (1 - agreement)); pass data with y for top-1 accuracy")
    elif f.metric == METRIC_COSINE:
        runtime = f.report.runtime if f.report else f.runtime
        notes.append(f"an embedder: the budget measured the int8 embeddings' mean cosine to the fp32 file's on {runtime} "
                     f"(at least {f.budget:g}; quantize.min_cosine)")
    if f.naive is None or f.final is None:  # the format ended without an int8 file (baseline or naive attempt failed)
        failure = {2: "unsupported", 3: "library"}.get(f.exit_code or 3, "library")
        return ExportResult(
            name=f.name, format=f.format, precision=f.precision, passed=False, artifact=None, report=None,
            rejected_files=list(f.rejected_files), error=f.error or f"{f.name}: no int8 file was made", export_seconds=f.seconds,
            validate_seconds=0.0, notes=notes, quantization={"stopped_by": f.stopped_by, "failures": list(f.failures)},
            failure=failure,
        )
    budget = f.budget_facts()
    # what the format's quantizer recorded (method, per-channel, what equalisation did ...), less the budget's verdict
    settings = {k: v for k, v in _recorded_quantization(f).items() if k not in _BUDGET_KEYS and k not in budget}
    facts = {**budget, "runtime": f.runtime, "naive_accuracy": f.naive.accuracy,
             "naive_drop_points": f.naive.drop_points, "sqnr_db": f.final.sqnr_db, "stopped_by": f.stopped_by,
             "options": settings.pop("options", None) or config.options.to_dict(), "settings": settings}
    error, failure = f.error, None
    if not f.passed:
        failure = "budget" if not f.budget_met else "parity"
        error = f"{f.error or f.name + ' failed'} {rejection_hint(f, config, facts['options'], out=out, hint=hint)}"
    return ExportResult(
        name=f.name, format=f.format, precision=f.precision, passed=f.passed, artifact=f.artifact, report=f.report,
        rejected_files=list(f.rejected_files), error=error, export_seconds=max(0.0, f.seconds - validate_s),
        validate_seconds=validate_s, notes=notes, quantization=facts, failure=failure,
    )


def _task_of(source: Mapping[str, Any] | None) -> str | None:
    """A text model's task ("classify" or "embed") from its ``source["text"]``; None for other models."""
    text = (source or {}).get("text")
    return text.get("task") if isinstance(text, Mapping) else None


# manifest quantization keys that are the budget's verdict (already in budget_facts) or the search's log
_BUDGET_KEYS = frozenset({"accuracy", "fp32_accuracy", "accuracy_drop_points", "metric", "max_accuracy_drop",
                          "budget_met", "eval_samples", "runtime", "fp32_artifact", "search", "kd_repair",
                          "reference_at_chance"})


def _recorded_quantization(f: FormatResult) -> dict[str, Any]:
    """What the final file's manifest records under ``quantization``: the published artifact's, or the rejected
    manifest's (``*.manifest.json.rejected``, read as plain JSON; {} when unreadable)."""
    import json

    if f.artifact is not None:
        return dict(f.artifact.quantization or {})
    for p in f.rejected_files:
        if p.name.endswith(MANIFEST_SUFFIX + REJECTED_SUFFIX):
            try:
                q = json.loads(p.read_text(encoding="utf-8")).get("quantization")
            except (OSError, ValueError, AttributeError):
                return {}
            return dict(q) if isinstance(q, dict) else {}
    return {}


def rejection_hint(f: FormatResult, config: QuantizeConfig, options: Mapping[str, Any] | None, *, out: Path,
                   hint: Mapping[str, str] | None = None) -> str:
    """What a rejected int8 cell's message adds: where the file was kept, how to measure it, and what to try.

    Args:
        f: the format's budget outcome (missed budget or parity).
        config: the QuantizeConfig that ran (budget, time budget, float-layer limit, options).
        options: the options the file records (``QuantOptions.to_dict()``), for "another method than ...".
        out: the folder the rejected files are in.
        hint: how the user named the inputs, for the suggested command: ``model``, ``checkpoint``, ``input_shape``,
            ``data`` (placeholders where missing).
    """
    from edgestill.compress.quantize.options import CALIBRATION_METHODS

    given = dict(hint or {})
    kept = [p.name for p in f.rejected_files]
    manifest = next((p for p in f.rejected_files if p.name.endswith(MANIFEST_SUFFIX + REJECTED_SUFFIX)), None)
    parts = []
    if kept:
        parts.append(f"Kept as {', '.join(kept)} in {out}"
                     + (f" (`edgestill bench --allow-rejected {manifest}` measures it for diagnosis)." if manifest else "."))
    method = (options or {}).get("calibration_method") or config.options.calibration_method
    others = [m for m in CALIBRATION_METHODS if m not in (method, "auto")]
    cmd = f"edgestill quantize --model {given.get('model') or 'MODEL'}"
    for key in ("checkpoint", "input_shape"):
        if given.get(key):
            cmd += f" --{key.replace('_', '-')} {given[key]}"
    embed = f.metric == METRIC_COSINE
    budget_flag = f"--min-cosine {config.min_cosine:g}" if embed else f"--max-accuracy-drop {config.max_accuracy_drop:g}"
    cmd += (f" --format {f.format} --precision {config.precision} --data {given.get('data') or 'DATA.npz'} "
            f"{budget_flag}" + ("" if embed else " --repair"))
    limit = "any number" if config.max_float_layers is None else str(config.max_float_layers)
    fallback = "" if config.precision != "int8-static" else (
        f"; keep more layers in float (--max-float-layers, now {limit}; --time-budget, now {config.time_budget_s:g} s)")
    if f.budget_met:  # within budget but failed parity with torch
        first = ("What to try: check that the calibration data is real samples of the input (--data, "
                 "--calibration-samples); loosen --tolerance int8.min_sqnr_db=... only if the difference is expected")
    elif embed:
        parts.insert(0, f"Its mean cosine to fp32 is {f.final.accuracy:.5f}, below the {config.min_cosine:g} allowed.")
        first = (f"What to try: `{cmd}` (ranks the layers by int8 sensitivity and keeps the most sensitive in float; "
                 "--report shows the ranking)")
    else:
        over = f.final.drop_points - config.max_accuracy_drop
        parts.insert(0, f"It missed the accuracy budget by {over:.2f} points ({f.metric}).")
        first = (f"What to try: `{cmd}` (ranks the layers by int8 sensitivity, keeps the most sensitive in float, and "
                 "with --repair fine-tunes under int8 with the fp32 model as the oracle when that is not enough; "
                 "--report shows the ranking)")
    calibrate = "" if config.precision != "int8-static" else (
        f"; another --calibration-method than {method} ({', '.join(others)}, or auto to try each on held-out "
        "calibration data)")
    parts.append(
        f"{first}{calibrate}; --equalize and --bias-correction (cross-layer equalisation and bias correction, which "
        f"fix depthwise weights that quantize badly){fallback}; or ship {f.format} in float (--precision fp16 or fp32)."
    )
    return " ".join(parts)


def _offset(progress: Progress | None, start: int, total: int) -> Progress | None:
    """A progress callback for a sub-step whose cells start at ``start`` of ``total``; its own "done" is dropped."""
    if progress is None:
        return None

    def report(i: int, _n: int, label: str = "") -> None:
        if label != "done":
            progress(start + i, total, label)

    return report


def export_model(
    model: str | torch.nn.Module,
    *,
    export: ExportConfig,
    quantize: QuantizeConfig | None = None,
    out_dir: str | Path,
    checkpoint: str | Path | None = None,
    trust_checkpoint: bool = False,
    input_shape: str | Any | None = None,
    num_classes: int | None = None,
    data: str | Path | np.ndarray | None = None,
    samples: int = 64,
    seed: int = 0,
    progress: Progress | None = None,
    seq_len: int | None = None,
    dynamic_seq: bool = False,
    vocab_size: int | None = None,
) -> list[ExportResult]:
    """Load what ``model`` names, build validation, calibration and eval samples, and :func:`convert` every cell.

    Args:
        model: a built-in name, ``pkg.module:function``, a ``.pt2`` program, an ``.onnx`` file (OpenVINO float
            only), or a torch module (then ``input_shape`` is required).
        export: formats, precisions, tolerances, strict (``dynamic_batch`` is also set by an ``N`` batch dim).
        quantize: the accuracy budget and options of the int8 cells (its ``calibration_samples`` caps calibration).
        out_dir: folder for the artifacts (created only once every input checked out).
        checkpoint: weights for a built-in or factory model (.safetensors, or .pt/.pth loaded weights-only).
        trust_checkpoint: allow a checkpoint holding pickled objects (runs code from the file).
        input_shape: e.g. ``"1x3x224x224"`` or ``"Nx3x224x224"``; default: the model's own.
        num_classes: classifier size for a built-in model (default: the model's standard one).
        data: an .npz holding ``x`` (and optionally integer labels ``y``), or an array: the first ``samples`` rows
            validate every file and measure the int8 budget (with ``y``: top-1 accuracy; without: top-1 agreement
            with fp32); the rest calibrate. Seeded random inputs of the input spec when None.
        samples: how many samples to validate (and measure the budget) on; one top-1 flip is 100/samples points.
        seed: seed of the random inputs.
        seq_len, dynamic_seq, vocab_size: a text model's sequence length, symbolic sequence dim (ONNX, OpenVINO) and
            vocabulary (see :func:`edgestill.models.loading.load_model`).

    Returns:
        One ExportResult per cell.

    Raises:
        InputError: any bad input (model name, checkpoint, shape, data), before anything is written.
        ConfigError, ParityError, CheckFailed, UnsupportedError, RuntimeFailure: as :func:`convert`.
    """
    from edgestill.models.loading import InputShape, LoadedModel, load_model, parse_input_shape

    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ConfigError(f"samples must be a whole number >= 1, got {samples!r}.")
    qconfig = quantize or QuantizeConfig()
    if isinstance(model, str):
        loaded = load_model(model, checkpoint=checkpoint, trust_checkpoint=trust_checkpoint, input_shape=input_shape,
                            num_classes=num_classes, seq_len=seq_len, dynamic_seq=dynamic_seq, vocab_size=vocab_size)
    else:
        shape = parse_input_shape(input_shape) if isinstance(input_shape, str) else input_shape
        if not isinstance(shape, InputShape):
            raise InputError("export_model with a torch module needs input_shape (e.g. '1x3x224x224').")
        if checkpoint is not None:
            from edgestill.models.loading import load_checkpoint

            load_checkpoint(model, checkpoint, trust=trust_checkpoint)
        loaded = LoadedModel(model=model.eval(), example_inputs=(shape.example(),), input_shapes=[shape],
                             source={"model": type(model).__name__, "kind": "module"})
    if any(s.dynamic_batch for s in loaded.input_shapes) and not export.dynamic_batch:
        export = dataclasses.replace(export, dynamic_batch=True)
    if not export.inputs:  # named inputs keep their names (and symbolic sequence) in every file
        from edgestill.models.loading import forward_parameters, input_specs

        params = forward_parameters(loaded.model) if loaded.model is not None else None
        export = dataclasses.replace(export, inputs=input_specs(loaded.input_shapes, params[0] if params else ()))
    int8 = bool(export.int8_precisions)
    validation, calibration, ids, labels = _samples(data, loaded.input_shapes, samples, qconfig.calibration_samples, seed,
                                                    labels=int8)
    if loaded.onnx_path is not None:
        return export_onnx_file(loaded.onnx_path, [s.dims for s in loaded.input_shapes], export, out_dir,
                                validation_inputs=validation, progress=progress)
    hint = {"model": model if isinstance(model, str) else None,
            "checkpoint": None if checkpoint is None else str(checkpoint),
            "input_shape": None if input_shape is None else str(input_shape),
            "data": None if data is None or isinstance(data, np.ndarray) else str(data)}
    try:
        results = convert(
            loaded.model, loaded.example_inputs, export=export, quantize=qconfig, out_dir=out_dir,
            validation_inputs=validation, calibration=calibration if int8 else None,
            calibration_ids=ids if int8 else None, eval_y=labels if int8 else None, progress=progress,
            source={"spec": loaded.source.get("model"), **{k: v for k, v in loaded.source.items() if k != "model"}},
            hint={k: v for k, v in hint.items() if v},
        )
    except EdgestillError as exc:  # strict: the failed cells' report carries the same notes
        _random_data_notes(getattr(exc, "results", []), data)
        raise
    return _random_data_notes(results, data)


def _random_data_notes(results: list[ExportResult], data: Any) -> list[ExportResult]:
    """Say on every cell that it was validated (and int8 calibrated) on random inputs when no data was given."""
    if data is None:
        for r in results:
            calibrated = r.precision in (Precision.INT8_STATIC, Precision.MIXED)
            r.notes.append(RANDOM_CALIBRATION_NOTE if calibrated else RANDOM_DATA_NOTE)
    return results


def _samples(
    data: Any, shapes: list[Any], n: int, n_calib: int, seed: int, *, labels: bool = False,
) -> tuple[Any, np.ndarray | None, list[str] | None, np.ndarray | None]:
    """Validation inputs (first ``n`` samples), calibration samples (the rest, else all), their ids, and (``labels``)
    the labels of the validation samples (None when the data has no ``y``)."""
    if data is None:
        val = [s.samples(n, seed=seed) for s in shapes]
        # every input drawn as its kind says (InputShape.samples: ids in the vocabulary, masks with a padded tail)
        calib_arrays = [s.samples(min(n_calib, 100), seed=seed + 1) for s in shapes]
        calib = calib_arrays[0] if len(shapes) == 1 else tuple(calib_arrays)
        ids = [f"random-{i}" for i in range(len(calib_arrays[0]))]
        return (val[0] if len(val) == 1 else val), calib, ids, None
    label = "--data"
    y = None
    if len(shapes) > 1 and not isinstance(data, np.ndarray):  # one array per input, named like it
        from edgestill.data.loaders import load_input_arrays

        arrays, y = load_input_arrays(data, shapes, labels=labels)
        idx = np.arange(n, len(arrays[0])) if len(arrays[0]) > n else np.arange(len(arrays[0]))
        idx = idx[:n_calib]
        return ([a[:n] for a in arrays], [a[idx] for a in arrays], [f"row[{i}]" for i in idx],
                None if y is None else y[:n])
    if isinstance(data, np.ndarray):
        x = data
    else:
        path = Path(data)
        label = f"--data {path}"
        if not path.is_file():
            raise InputError(f"{label} does not exist. Pass an .npz file holding an array x (and optionally y).")
        from edgestill.runtimes.base import read_npz

        arrays = read_npz(path, what=label, keys=("x", "y") if labels else ("x",))  # sizes checked before allocation
        if "x" not in arrays:
            raise InputError(f"{label} holds no array 'x'. Save it with np.savez(path, x=samples, y=labels).")
        x, y = arrays["x"], arrays.get("y") if labels else None
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
    if y is not None and (y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in "iu"):
        raise InputError(f"{label}: y has shape {list(y.shape)} dtype {y.dtype} for {len(x)} samples in x; pass one integer "
                         "class id per sample, or leave y out (int8 budgets then measure top-1 agreement with fp32).")
    val = x[:n]
    rest = np.arange(n, len(x)) if len(x) > n else np.arange(len(x))
    idx = rest[:n_calib]
    return val, x[idx], [f"x[{i}]" for i in idx], (None if y is None else y[:n])
