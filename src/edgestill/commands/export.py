"""``edgestill export``: a model → ONNX / TFLite / OpenVINO files, each validated against torch before it is published.

Float cells go through ``edgestill.export``; int8 cells through the quantize accuracy budget; both via one call,
:func:`edgestill.chain.convert.export_model`. The format and precision choices come from the registries.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import typer

from edgestill.artifact import Precision
from edgestill.chain.llm_export import DEFAULT_PROMPTS, DEFAULT_STEPS
from edgestill.cli import app, echo_json, run_command
from edgestill.commands.options import QUANT_FLAGS
from edgestill.compress.quantize.base import quant_precisions
from edgestill.compress.quantize.options import AUTO_PRECISION
from edgestill.compress.quantize.calibration import DEFAULT_CALIBRATION_SAMPLES
from edgestill.export.base import EXPORTERS, export_precisions, formats_of
from edgestill.export.validate import Threshold, Tolerances

REPORT_NAME = "export-report.json"
DEFAULT_SAMPLES = 64
WEIGHT_ONLY: tuple[str, ...] = tuple(p.value for p in Precision if p.is_weight_only)
FORMAT_CHOICES: tuple[str, ...] = tuple(f.value for f in formats_of(EXPORTERS))
_TOLERANCE_GROUPS = tuple(Tolerances.__dataclass_fields__)
_TOLERANCE_KEYS = tuple(Threshold.__dataclass_fields__)
FLOAT_CHOICES: tuple[str, ...] = tuple(p.value for p in export_precisions())
INT8_CHOICES: tuple[str, ...] = (*(p.value for p in quant_precisions()), AUTO_PRECISION)  # int8: each format's own
PRECISION_CHOICES: tuple[str, ...] = (*(p.value for p in Precision if p.value in (*FLOAT_CHOICES, *INT8_CHOICES)), AUTO_PRECISION)


@app.command(
    "export",
    epilog=(
        "\b\nExamples:\n"
        "  edgestill export --model mobilenet_v2 --format onnx,tflite,openvino --out exported\n"
        "  edgestill export --model resnet18 --checkpoint r18.safetensors --precision fp32,fp16 --data val.npz\n"
        "  edgestill export --model mypkg.nets:build --input-shape Nx3x224x224 --format onnx,openvino --json\n"
        "  edgestill export --model program.pt2 --format tflite\n"
        "  edgestill export --model model.onnx --format openvino --precision fp16   # ONNX → OpenVINO IR\n"
        "  edgestill export --model mypkg.text:build --input input_ids:1x128:int64 --input attention_mask:1x128:int64 \\\n"
        "      --vocab-size 30522 --data tokens.npz\n"
        "  edgestill export --model ./my-minilm --seq-len 64 --dynamic-length   # a Hugging Face folder (local)\n"
        "  edgestill export --model mobilenet_v2 --precision int8-static --data calib.npz --tolerance int8.min_sqnr_db=25\n"
        "  edgestill export --model mobilenet_v2 --precision fp32,int8-static --data val.npz --max-accuracy-drop 0.5\n"
        "  edgestill export --model ./my-minilm --seq-len 64 --precision fp32,int8 --data texts.npz   # int8: each format's own\n"
        "  edgestill export --model ./my-llama --formats onnx,openvino,tflite --precisions fp32,int4-weight   # a causal LM\n\n"
        "\b\nEvery file runs on its own runtime on --samples inputs (from --data, else seeded random inputs)\n"
        "and is compared with the torch model. A file that misses its tolerances is kept as *.rejected, never\n"
        "under its final name; for fp32 the report names the first torch module whose output diverges.\n"
        "int8 cells go through the same accuracy budget as `edgestill quantize` against the fp32 file on the same\n"
        "runtime: top-1 accuracy on the --samples inputs when --data has labels y, else top-1 agreement with fp32;\n"
        "over --max-accuracy-drop, sensitive layers stay float ('mixed'); a cell still over is kept as *.rejected.\n"
        "Writes OUT/export-report.json and OUT/logs/export.log (the conversion libraries' output). OUT is new, empty\n"
        "or an earlier export's (its files of the same names are replaced); another command's folder only with --overwrite.\n\n"
        "\b\nSeveral inputs: --input NAME:SHAPE[:DTYPE] once per forward argument, named like it (passed in the\n"
        "forward's order; input_ids, attention_mask and token_type_ids are int64 token inputs; S as dim 1 is a dynamic\n"
        "length on ONNX and OpenVINO). Every file keeps these names. --data for such a model is an .npz with one array\n"
        "per input, named like it, plus optional labels y. A Hugging Face folder (config.json, model.safetensors,\n"
        "tokenizer.json; read locally) needs no input options: --seq-len and --dynamic-length set its length, its\n"
        "tokenizer is kept beside every file, and an embedder is validated by per-sample cosine instead of top-1.\n\n"
        "\b\nA causal LM (a local Hugging Face folder whose config names a *ForCausalLM; fp32, fp16, int8-weight,\n"
        "int4-weight): each file is exported with a KV cache (onnxruntime-genai builder, optimum-intel stateful IR,\n"
        "litert-torch generative) and validated on its own runtime against torch's greedy trace on --samples prompts\n"
        "(seeded ids, or the prompts of an LLM eval .npz given as --data) over --steps decode steps: fp32/fp16 must\n"
        "give torch's greedy tokens on every prompt, with logits within tolerance; weight-only files need token\n"
        "agreement >= 0.8 and mean KL <= 0.05 nats against the fp32 file of their format. A failing file is kept as\n"
        "NAME.rejected/ beside NAME.manifest.json.rejected; a precision a format cannot make is reported, the rest go on.\n\n"
        "\b\nTolerances: --tolerance PRECISION.KEY=VALUE, repeatable or comma-separated; PRECISION "
        f"{', '.join(_TOLERANCE_GROUPS)}\n(int8 covers every int8 precision and mixed); KEY {', '.join(_TOLERANCE_KEYS)};\n"
        "VALUE a number or 'none'.\n"
        "  e.g. --tolerance fp16.atol=0.05 --tolerance int8.min_sqnr_db=25,int8.min_top1_agreement=0.97\n\n"
        "\b\nint8 options (the same as `edgestill quantize`): --calibration-method, --tflite-recipe, --equalize,\n"
        "--bias-correction, --integer-io; the budget's --max-accuracy-drop, --time-budget, --max-float-layers and\n"
        "--calibration-samples. A rejected int8 cell's message names its *.rejected files, by how much it missed, and\n"
        "what to try (`edgestill quantize ... --report`, another calibration method, equalisation, float layers,\n"
        "fp16); `edgestill bench --allow-rejected` measures a rejected file for diagnosis.\n\n"
        "\b\nEvery format x precision cell is tried, whatever another cell did (only bad input stops the run); each\n"
        "is reported (passed, or failed and why) on the console and in the report, which is written in every case.\n"
        "Exit codes: 0 every cell passed (also --no-strict with failures); 1 any cell failed parity or its int8\n"
        "accuracy budget (strict); 2 bad input (nothing written), or (strict) the only failures are ops a format\n"
        "cannot express (the message names them); 3 (strict) a conversion library or runtime failed and no cell\n"
        "failed a check."
    ),
)
def export_command(
    model: str = typer.Option(..., "--model", help="Built-in name, package.module:function factory, FILE.pt2, or FILE.onnx (OpenVINO only)."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Weights: .safetensors, or .pt/.pth (loaded weights-only)."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help="Allow a checkpoint holding pickled objects (runs code from the file)."),
    input_shape: list[str] = typer.Option(
        [], "--input-shape",
        help="One input's shape[:dtype]: e.g. 1x3x224x224, Nx3x224x224 for a dynamic batch (ONNX, OpenVINO), 1x128:int64."),
    named_inputs: list[str] = typer.Option(
        [], "--input",
        help="NAME:SHAPE[:DTYPE] per forward argument (repeatable), e.g. input_ids:1x128:int64; S as dim 1 = dynamic length."),
    seq_len: int | None = typer.Option(None, "--seq-len", help="Text models: tokens per input (default min(128, the model's maximum))."),
    dynamic_length: bool = typer.Option(False, "--dynamic-length", help="Text models: a symbolic sequence length (ONNX, OpenVINO; TFLite stays static)."),
    vocab_size: int | None = typer.Option(None, "--vocab-size", help="Vocabulary of a factory's input_ids (random ids stay below it; default 100)."),
    num_classes: int | None = typer.Option(None, "--num-classes", min=1, help="Classifier size of a built-in model (default: its standard one)."),
    formats: str = typer.Option(",".join(FORMAT_CHOICES), "--format", "--formats", help=f"Formats, comma-separated: {', '.join(FORMAT_CHOICES)}."),
    precisions: str = typer.Option(
        "fp32", "--precision", "--precisions",
        help=f"Precisions, comma-separated: {', '.join(PRECISION_CHOICES)} ({', '.join(INT8_CHOICES)} through the accuracy budget).",
    ),
    data: Path | None = typer.Option(
        None, "--data",
        help="An .npz with x, or one array per input named like it (input_ids, attention_mask, ...), and optional integer "
             "labels y: validation, budget and calibration samples."),
    max_accuracy_drop: float = typer.Option(
        1.0, "--max-accuracy-drop",
        help="int8 cells: allowed top-1 loss vs the fp32 file on the same runtime, absolute points (without labels: top-1 disagreement, %).",
    ),
    time_budget: float = typer.Option(300.0, "--time-budget", help="int8 cells: seconds for the float-fallback search per format."),
    max_float_layers: int | None = typer.Option(None, "--max-float-layers", min=0, help="int8 cells: at most this many layers kept float (0: all-int8)."),
    calibration_samples: int = typer.Option(
        DEFAULT_CALIBRATION_SAMPLES, "--calibration-samples", min=1,
        help="int8-static: at most this many --data samples (after the first --samples) calibrate.",
    ),
    calibration_method: str | None = QUANT_FLAGS["calibration_method"],
    tflite_recipe: str | None = QUANT_FLAGS["tflite_recipe"],
    equalize: bool | None = QUANT_FLAGS["equalize"],
    bias_correction: bool | None = QUANT_FLAGS["bias_correction"],
    integer_io: bool = QUANT_FLAGS["integer_io"],
    samples: int | None = typer.Option(
        None, "--samples", min=1,
        help=f"How many samples each file is validated on (default {DEFAULT_SAMPLES}; a causal LM: prompts, default "
             f"{DEFAULT_PROMPTS})."),
    steps: int = typer.Option(DEFAULT_STEPS, "--steps", min=1, help="A causal LM: greedy decode steps validated per prompt."),
    tolerance: list[str] = typer.Option([], "--tolerance", help="Override a threshold: PRECISION.KEY=VALUE (repeatable)."),
    name: str | None = typer.Option(None, "--name", help="Artifact name stem (default: from --model)."),
    out: Path = typer.Option(Path("export-out"), "--out", "-o", help="Folder for the artifacts and the report."),
    no_strict: bool = typer.Option(False, "--no-strict", help="Record parity failures and go on (exit 0) instead of stopping with exit 1."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an --out folder another edgestill command wrote."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
) -> None:
    """Export a model to ONNX, TFLite and OpenVINO (fp32, fp16, int8), validating every file against torch."""

    def body() -> None:
        from edgestill.chain.llm_export import is_causal_lm_folder

        if is_causal_lm_folder(model) or any(p in WEIGHT_ONLY for p in _split(precisions)):
            given = [flag for flag, value in (("--checkpoint", checkpoint), ("--input-shape", input_shape),
                                              ("--input", named_inputs), ("--seq-len", seq_len),
                                              ("--tolerance", tolerance), ("--num-classes", num_classes)) if value]
            export_llm_command(model, formats=_split(formats), precisions=_split(precisions), name=name, out=out,
                               data=data, samples=samples, steps=steps, ignored=given, strict=not no_strict,
                               overwrite=overwrite, json_out=json_out)
            return
        n_samples = DEFAULT_SAMPLES if samples is None else samples
        from edgestill.chain.convert import export_model
        from edgestill.commands.options import quant_options
        from edgestill.commands.progress import RichReporter
        from edgestill.commands.streams import library_output_to
        from edgestill.compress.quantize.budget import QuantizeConfig
        from edgestill.errors import CheckFailed, InputError, RuntimeFailure, UnsupportedError
        from edgestill.export.api import ExportConfig
        from edgestill.export.validate import Tolerances
        from edgestill.outdir import (
            MARKER,
            claim_output_dir,
            lock_output_dir,
            write_json_atomic,
            write_marker,
        )

        shape = input_shapes(input_shape, named_inputs, vocab_size=vocab_size)
        for s in shape or ():
            if data is None:
                s.check_samples(n_samples)  # before the model is built and run once on its example input
        stem = name or default_name(model)
        config = ExportConfig(
            formats=_split(formats), precisions=_split(precisions), name=stem,
            tolerances=Tolerances.parse(tolerance), strict=not no_strict,
            dynamic_batch=any(s.dynamic_batch for s in shape or ()),
        )
        text = {"seq_len": seq_len, "dynamic_seq": dynamic_length, "vocab_size": vocab_size}
        if shape and len(shape) == 1 and shape[0].name is None:
            shape = shape[0]  # one --input-shape: the model's one input, as before
        options = quant_options(calibration_method=calibration_method, tflite_recipe=tflite_recipe, equalize=equalize,
                                bias_correction=bias_correction, integer_io=integer_io)
        # the same QuantizeConfig `edgestill quantize` builds: formats, precision and name come from the export config
        budget = QuantizeConfig(max_accuracy_drop=max_accuracy_drop, time_budget_s=time_budget,
                                max_float_layers=max_float_layers, options=options,
                                calibration_samples=calibration_samples, name=stem, bench_latency=False,
                                chance_level="refuse")
        check_out_dir(out)
        inputs = [("--model", model if Path(model).exists() else None), ("--checkpoint", checkpoint), ("--data", data)]
        if check_export_dir(out, overwrite=overwrite, inputs=inputs):
            # --overwrite empties another command's folder: only once every input checked out, so a refused run
            # leaves that output as it was
            check_export_inputs(model, config, budget, checkpoint=checkpoint, trust_checkpoint=trust_checkpoint,
                                input_shape=shape, num_classes=num_classes, data=data, samples=n_samples, **text)
            claim_output_dir(out, kind="export", overwrite=True, inputs=inputs)
        elif out.is_dir():
            lock_output_dir(out)  # an export adding to its folder: a second process writing there is refused
        fd, tmp = tempfile.mkstemp(prefix="edgestill-export-", suffix=".log")
        os.close(fd)
        log = Path(tmp)
        results: list[Any] = []
        error: Exception | None = None
        keep_log = False
        try:
            with library_output_to(log) as (_, term_err):
                with RichReporter(enabled=not json_out, file=term_err) as rep:
                    rep.stage("export", total=len(config.formats) * len(config.precisions))
                    try:
                        results = export_model(
                            model, export=config, quantize=budget, out_dir=out, checkpoint=checkpoint,
                            trust_checkpoint=trust_checkpoint, input_shape=shape, num_classes=num_classes, data=data,
                            samples=n_samples, progress=lambda i, n, label="": rep.advance(i, n, label), **text,
                        )
                    except (CheckFailed, UnsupportedError, RuntimeFailure) as exc:  # every cell's outcome is reported
                        results, error = list(getattr(exc, "results", [])), exc
            keep_log = True
        except InputError:  # bad input: nothing was written, and no log is left behind either
            raise
        except BaseException:
            keep_log = True
            raise
        finally:
            if keep_log and out.is_dir() and not (out / MARKER).is_file():
                write_marker(out, "export")  # a later export may add to this folder; another command must ask first
            final_log = _keep_log(log, out) if keep_log else log.unlink(missing_ok=True)
        doc = report_doc(model, config, results, log=final_log, max_accuracy_drop=budget.max_accuracy_drop, quantize=budget)
        write_json_atomic(out / REPORT_NAME, doc)
        if json_out:
            echo_json(doc)
        else:
            print_results(results)
            typer.echo(cells_summary(results, expected=len(config.formats) * len(config.precisions)))
            typer.echo(f"Report: {out / REPORT_NAME}. Library output: {final_log}")
        if error is not None:
            raise error

    run_command(body)


def _keep_log(log: Path, out: Path) -> Path:
    """Move the library log into OUT/logs/export.log when OUT exists (else leave it where it is); return its path.

    The log is copied to a fresh file inside OUT, then renamed: a symlink planted at ``logs`` or ``export.log`` is
    replaced, never written through.
    """
    from edgestill.outdir import replacing

    if not log.exists() or not out.is_dir():
        return log
    logs = out / "logs"
    if logs.is_symlink():
        logs.unlink()  # the link only, never what it points at
    logs.mkdir(exist_ok=True)
    final = logs / "export.log"
    with replacing(final) as tmp:
        shutil.copyfile(log, tmp)
    log.unlink()
    return final


def _split(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def default_name(spec: str) -> str:
    """An artifact name stem from --model: the built-in name, the factory's function, the file's stem, or the folder's
    name (a Hugging Face model folder)."""
    path = Path(spec)
    if ":" in spec:
        stem = spec.rsplit(":", 1)[-1]
    elif path.suffix in (".pt2", ".onnx"):
        stem = path.stem
    else:
        stem = path.resolve().name if path.is_dir() else spec
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")
    return stem or "model"


def input_shapes(input_shape: list[str], inputs: list[str], *, vocab_size: int | None) -> list[Any] | None:
    """The InputShapes --input-shape (one) or --input (one per forward argument) give; None when neither is given.

    Raises:
        InputError: --input-shape given twice, both options given, or a malformed spec (see
            :func:`edgestill.models.loading.parse_input_spec`).
    """
    from edgestill.errors import InputError
    from edgestill.models.loading import parse_input_shape, parse_input_spec

    if len(input_shape) > 1:
        raise InputError(f"--input-shape is given {len(input_shape)} times ({', '.join(input_shape)}); it describes a model's "
                         "one input. For several inputs pass --input NAME:SHAPE[:DTYPE] once per forward argument, e.g. "
                         "--input input_ids:1x128:int64 --input attention_mask:1x128:int64.")
    if input_shape and inputs:
        raise InputError("--input-shape and --input are both given; use --input NAME:SHAPE[:DTYPE] for every input "
                         "(or --input-shape alone for a one-input model).")
    if inputs:
        return [parse_input_spec(t, vocab_size=vocab_size) for t in inputs]
    return [parse_input_shape(input_shape[0])] if input_shape else None


def check_export_inputs(model: str, config: Any, budget: Any, *, checkpoint: Path | None, trust_checkpoint: bool,
                        input_shape: Any, num_classes: int | None, data: Path | None, samples: int,
                        seq_len: int | None = None, dynamic_seq: bool = False, vocab_size: int | None = None) -> None:
    """Check every input ``export_model`` takes (model, checkpoint, input shape and forward, data, int8 budget data)
    without writing anything: what must hold before an --overwrite folder is emptied.

    It loads the model a second time, so it runs only when a folder is to be emptied.

    Raises:
        InputError: whatever :func:`edgestill.chain.convert.export_model` would refuse before writing.
    """
    import dataclasses

    from edgestill.chain import convert
    from edgestill.compress.quantize.budget import check_inputs
    from edgestill.models.loading import load_model

    loaded = load_model(model, checkpoint=checkpoint, trust_checkpoint=trust_checkpoint, input_shape=input_shape,
                        num_classes=num_classes, seq_len=seq_len, dynamic_seq=dynamic_seq, vocab_size=vocab_size)
    int8 = bool(config.int8_precisions)
    validation, calibration, ids, labels = convert._samples(  # noqa: SLF001  (chain exposes no public check yet)
        data, loaded.input_shapes, samples, budget.calibration_samples, 0, labels=int8)
    if int8 and loaded.model is not None:
        for precision in config.int8_precisions:
            qc = dataclasses.replace(budget, formats=config.formats, precision=precision, name=config.name)
            check_inputs(loaded.model, loaded.example_inputs, qc, calibration=calibration, calibration_ids=ids,
                         eval_x=validation, eval_y=labels)


def check_out_dir(out: Path) -> None:
    """Refuse an --out that cannot hold artifacts, before anything is loaded or written.

    Raises:
        InputError: --out is a file, lies inside a file, or its nearest existing folder is not writable.
    """
    from edgestill.errors import InputError

    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder. Pass a new or existing folder.")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"--out {out} lies inside {parent}, which is a file, so the folder cannot be created. Pass another folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"--out {out} is not writable ({parent} does not allow writing). Pass a folder you can write to.")


def check_export_dir(out: Path, *, overwrite: bool, inputs: list[tuple[str, Any]]) -> bool:
    """Check, touching nothing, that ``export`` may write into ``out``; return True when it must be emptied first.

    An export adds to a folder missing, empty or written by an earlier export (files of the same names are replaced);
    a folder another command wrote is emptied only with ``--overwrite``.

    Raises:
        InputError: a non-empty folder edgestill did not write, another command's folder without ``--overwrite``,
            or one holding an input (see :func:`edgestill.outdir.check_output_dir`).
    """
    from edgestill.outdir import check_output_dir, marker_kind

    if out.is_dir() and marker_kind(out) == "export":
        return False
    return check_output_dir(out, kind="export", overwrite=overwrite, inputs=inputs)


def report_doc(model: str, config: Any, results: list[Any], *, log: Path, max_accuracy_drop: float | None = None,
               quantize: Any = None) -> dict[str, Any]:
    """The export report: what was asked (with the int8 budget and options when int8 was), one entry per cell, how
    many passed and failed, and the overall verdict."""
    from edgestill import __version__

    cells = [r.to_dict() for r in results]
    int8 = None
    if quantize is not None and config.int8_precisions:
        int8 = {"max_accuracy_drop": quantize.max_accuracy_drop, "time_budget_s": quantize.time_budget_s,
                "max_float_layers": quantize.max_float_layers, "calibration_samples": quantize.calibration_samples,
                "options": quantize.options.to_dict()}
    return {
        "edgestill_version": __version__,
        "kind": "export",
        "model": model,
        "formats": list(config.formats),
        "precisions": list(config.precisions),
        "strict": config.strict,
        "dynamic_batch": config.dynamic_batch,
        "tolerances": config.tolerances.to_dict(),
        "max_accuracy_drop": max_accuracy_drop if config.int8_precisions else None,
        "quantize": int8,
        "passed": bool(cells) and all(c["passed"] for c in cells) and len(cells) == len(config.formats) * len(config.precisions),
        "cells": {"expected": len(config.formats) * len(config.precisions), "tried": len(cells),
                  "passed": sum(bool(c["passed"]) for c in cells), "failed": [c["name"] for c in cells if not c["passed"]]},
        "results": cells,
        "log": str(log),
    }


def print_results(results: list[Any], file: Any = None) -> None:
    """The results table (one row per cell), then divergence, notes and errors."""
    import sys

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(file=file, width=None if (file or sys.stdout).isatty() else 140)
    table = Table(title="Export (each file on its own runtime vs torch)")
    for col in ("format", "precision", "passed", "max_abs", "cosine", "top-1", "KB", "int8 drop (pts)"):
        table.add_column(col, justify="left" if col in ("format", "precision", "passed") else "right")
    for r in results:
        d = r.to_dict()
        table.add_row(
            d["format"], d["precision"], "yes" if d["passed"] else "[red]NO[/]",
            "" if d["max_abs"] is None else f"{d['max_abs']:.3g}",
            _cosine_cell(d),
            "" if d["top1_agreement"] is None else f"{100 * d['top1_agreement']:.2f}%",
            "" if d["model_bytes"] is None else f"{d['model_bytes'] / 1024:.0f}",
            _budget_cell(d["quantization"]),
        )
    console.print(table)
    metrics = sorted({r.quantization["metric"] for r in results if r.quantization})
    if metrics:
        console.print(f"int8 drop measured as {' / '.join(metrics)} vs the fp32 file on the same runtime.")
    for r in results:
        for note in r.notes:
            console.print(f"[yellow]note[/] {escape(r.name)}: {escape(str(note))}")
        if r.error:  # says where a failed file was kept (*.rejected) and what to try
            console.print(f"[red]{escape(r.name)}[/]: {escape(str(r.error))}")


def cells_summary(results: list[Any], *, expected: int) -> str:
    """One line: how many cells were tried, passed and failed (with why), so a failure never hides the others."""
    failed = [r for r in results if not r.passed]
    line = f"{len(results)} of {expected} cells tried: {len(results) - len(failed)} passed"
    if failed:
        why = ", ".join(f"{r.name}: {r.failure or 'failed'}" for r in failed)
        line += f", {len(failed)} failed ({why})"
    return line + "."


def _budget_cell(q: dict[str, Any] | None) -> str:
    """``0.52 / 1`` (drop / budget), red when over."""
    if not q:
        return ""
    text = f"{q['drop_points']:.2f} / {q['budget']:g}"
    return text if q["budget_met"] else f"[red]{text}[/]"


def _cosine_cell(d: dict[str, Any]) -> str:
    """The whole output's cosine; for an embedding, the worst sample's (what its verdict uses), marked 'min'."""
    from edgestill.export.validate import EMBEDDING_CRITERION

    if d.get("criterion") == EMBEDDING_CRITERION and d.get("cosine_min") is not None:
        return f"{d['cosine_min']:.6f} min"
    return "" if d["cosine"] is None else f"{d['cosine']:.6f}"


def export_llm_command(model: str, *, formats: tuple[str, ...], precisions: tuple[str, ...], name: str | None, out: Path,
                       data: Path | None, samples: int | None, steps: int, ignored: list[str], strict: bool,
                       overwrite: bool, json_out: bool) -> None:
    """``edgestill export`` for a causal LM: :func:`edgestill.chain.llm_export.export_llm`, its report and table.

    Raises:
        InputError: an option that does not apply to a causal LM, bad --data, or what export_llm refuses.
        CheckFailed / RuntimeFailure / UnsupportedError: (strict) see :meth:`LLMExportResult.failure`.
    """
    from edgestill import __version__
    from edgestill.chain.llm_export import export_llm
    from edgestill.commands.progress import RichReporter
    from edgestill.commands.streams import library_output_to
    from edgestill.errors import InputError
    from edgestill.outdir import write_json_atomic

    if ignored:
        raise InputError(f"{', '.join(ignored)} do not apply to a causal LM ({model}): its inputs are token ids, its "
                         "weights come from the folder and its validation compares greedy traces. Drop them.")
    if not Path(model).exists() and "/" not in model:  # a built-in or factory name with a weight-only precision
        raise InputError(f"{', '.join(p for p in precisions if p in WEIGHT_ONLY)} is a weight-only precision, made for "
                         f"causal LMs only, and --model {model} is not a local causal-LM folder. Pass such a folder, "
                         "or ask this model for int8 (each format's own), int8-static or int8-dynamic.")
    check_out_dir(out)
    fd, tmp = tempfile.mkstemp(prefix="edgestill-export-", suffix=".log")
    os.close(fd)
    log = Path(tmp)
    try:
        with library_output_to(log) as (_, term_err):
            with RichReporter(enabled=not json_out, file=term_err) as rep:
                rep.stage("export", total=len(formats) * len(precisions))
                result = export_llm(model, out, formats=formats, precisions=precisions, name=name, eval_data=data,
                                    n_prompts=samples or DEFAULT_PROMPTS, steps=steps, overwrite=overwrite,
                                    progress=lambda i, n, label="": rep.advance(i, n, label))
    except InputError:
        log.unlink(missing_ok=True)
        raise
    final_log = _keep_log(log, out)
    doc = {"edgestill_version": __version__, "strict": strict, **result.to_dict(), "log": str(final_log)}
    write_json_atomic(out / REPORT_NAME, doc)
    if json_out:
        echo_json(doc)
    else:
        print_llm_cells(doc["cells"])
        typer.echo(f"Report: {out / REPORT_NAME}. Library output: {final_log}")
    error = result.failure()
    if strict and error is not None:
        raise error


def print_llm_cells(cells: list[dict[str, Any]], file: Any = None) -> None:
    """One row per causal-LM cell (status, route, size, the validation's figures), then each miss's reasons."""
    import sys

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(file=file, width=None if (file or sys.stdout).isatty() else 140)
    table = Table(title="Export of a causal LM (each file on its own runtime vs torch's greedy trace)")
    for col in ("format", "precision", "status", "route", "KB", "tokens", "max_abs", "agreement", "mean KL"):
        table.add_column(col, justify="left" if col in ("format", "precision", "status", "route") else "right")
    for c in cells:
        v = c.get("validation") or {}
        tokens = "" if "tokens_identical" not in v else ("identical" if v["tokens_identical"] else "[red]differ[/]")
        table.add_row(c["format"], c["precision"], c["status"] if c["passed"] else f"[red]{c['status']}[/]",
                      escape(c.get("route") or ""), "" if c["model_bytes"] is None else f"{c['model_bytes'] / 1024:.0f}",
                      tokens, "" if v.get("max_abs") is None else f"{v['max_abs']:.3g}",
                      "" if v.get("token_agreement") is None else f"{v['token_agreement']:.3f}",
                      "" if v.get("mean_kl") is None else f"{v['mean_kl']:.3g}")
    console.print(table)
    for c in cells:
        for reason in c["reasons"]:
            console.print(f"[red]{escape(c['name'])}[/]: {escape(reason)}")
