"""``edgestill export``: a model → ONNX / TFLite / OpenVINO files, each validated against torch before it is published."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import typer

from edgestill.cli import app, echo_json, run_command

REPORT_NAME = "export-report.json"


@app.command(
    "export",
    epilog=(
        "\b\nExamples:\n"
        "  edgestill export --model mobilenet_v2 --format onnx,tflite,openvino --out exported\n"
        "  edgestill export --model resnet18 --checkpoint r18.safetensors --precision fp32,fp16 --data val.npz\n"
        "  edgestill export --model mypkg.nets:build --input-shape Nx3x224x224 --format onnx,openvino --json\n"
        "  edgestill export --model program.pt2 --format tflite\n"
        "  edgestill export --model model.onnx --format openvino --precision fp16   # ONNX → OpenVINO IR\n"
        "  edgestill export --model mobilenet_v2 --precision int8-static --data calib.npz --tolerance int8.min_sqnr_db=25\n\n"
        "\b\nEvery file runs on its own runtime on --samples inputs (from --data, else seeded random inputs)\n"
        "and is compared with the torch model. A file that misses its tolerances is kept as *.rejected, never\n"
        "under its final name; for fp32 the report names the first torch module whose output diverges.\n"
        "Writes OUT/export-report.json and OUT/logs/export.log (the conversion libraries' output).\n\n"
        "\b\nTolerances: --tolerance PRECISION.KEY=VALUE, repeatable or comma-separated; PRECISION fp32, fp16\n"
        "or int8; KEY atol, rtol, min_cosine, min_sqnr_db or min_top1_agreement; VALUE a number or 'none'.\n"
        "  e.g. --tolerance fp16.atol=0.05 --tolerance int8.min_sqnr_db=25,int8.min_top1_agreement=0.97\n\n"
        "\b\nExit codes: 0 ok (also --no-strict with failures); 1 a file failed parity (strict); 2 bad input\n"
        "(nothing written), or an op a format cannot express (the message names it; the report is written);\n"
        "3 a conversion library or runtime failed."
    ),
)
def export_command(
    model: str = typer.Option(..., "--model", help="Built-in name, package.module:function factory, FILE.pt2, or FILE.onnx (OpenVINO only)."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Weights: .safetensors, or .pt/.pth (loaded weights-only)."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help="Allow a checkpoint holding pickled objects (runs code from the file)."),
    input_shape: str | None = typer.Option(None, "--input-shape", help="e.g. 1x3x224x224, or Nx3x224x224 for a dynamic batch (ONNX, OpenVINO)."),
    num_classes: int | None = typer.Option(None, "--num-classes", min=1, help="Classifier size of a built-in model (default: its standard one)."),
    formats: str = typer.Option("onnx,tflite,openvino", "--format", help="Formats, comma-separated: onnx, tflite, openvino."),
    precisions: str = typer.Option("fp32", "--precision", help="Precisions, comma-separated: fp32, fp16, int8-dynamic, int8-static."),
    data: Path | None = typer.Option(None, "--data", help="An .npz with x (and optional y): validation and calibration samples."),
    samples: int = typer.Option(64, "--samples", min=1, help="How many samples each file is validated on."),
    tolerance: list[str] = typer.Option([], "--tolerance", help="Override a threshold: PRECISION.KEY=VALUE (repeatable)."),
    name: str | None = typer.Option(None, "--name", help="Artifact name stem (default: from --model)."),
    out: Path = typer.Option(Path("export-out"), "--out", help="Folder for the artifacts and the report."),
    no_strict: bool = typer.Option(False, "--no-strict", help="Record parity failures and go on (exit 0) instead of stopping with exit 1."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
) -> None:
    """Export a model to ONNX, TFLite and OpenVINO (fp32, fp16, int8), validating every file against torch."""

    def body() -> None:
        from edgestill.commands.progress import RichReporter
        from edgestill.commands.streams import library_output_to
        from edgestill.errors import InputError, ParityError, UnsupportedError
        from edgestill.export.api import ExportConfig, export_model
        from edgestill.models.loading import parse_input_shape
        from edgestill.outdir import write_json_atomic

        shape = parse_input_shape(input_shape) if input_shape is not None else None
        config = ExportConfig(
            formats=_split(formats), precisions=_split(precisions), name=name or default_name(model),
            tolerances=parse_tolerances(tolerance), strict=not no_strict,
            dynamic_batch=bool(shape and shape.dynamic_batch),
        )
        check_out_dir(out)
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
                            model, config=config, out_dir=out, checkpoint=checkpoint, trust_checkpoint=trust_checkpoint,
                            input_shape=shape, num_classes=num_classes, data=data, samples=samples,
                            progress=lambda i, n, label="": rep.advance(i, n, label),
                        )
                    except (ParityError, UnsupportedError) as exc:  # reported with the cells done so far
                        results, error = list(getattr(exc, "results", [])), exc
            keep_log = True
        except InputError:  # bad input: nothing was written, and no log is left behind either
            raise
        except BaseException:
            keep_log = True
            raise
        finally:
            final_log = _keep_log(log, out) if keep_log else log.unlink(missing_ok=True)
        doc = report_doc(model, config, results, log=final_log)
        write_json_atomic(out / REPORT_NAME, doc)
        if json_out:
            echo_json(doc)
        else:
            print_results(results)
            typer.echo(f"Report: {out / REPORT_NAME}. Library output: {final_log}")
        if error is not None:
            raise error

    run_command(body)


def _keep_log(log: Path, out: Path) -> Path:
    """Move the library log into OUT/logs/export.log when OUT exists (else leave it where it is); return its path."""
    if not log.exists() or not out.is_dir():
        return log
    final = out / "logs" / "export.log"
    final.parent.mkdir(exist_ok=True)
    shutil.move(str(log), final)
    final.chmod(0o644)  # mkstemp made it private to this user
    return final


def _split(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def default_name(spec: str) -> str:
    """An artifact name stem from --model: the built-in name, the factory's function, or the file's stem."""
    stem = spec.rsplit(":", 1)[-1] if ":" in spec else (Path(spec).stem if Path(spec).suffix in (".pt2", ".onnx") else spec)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")
    return stem or "model"


def parse_tolerances(items: list[str]) -> Any:
    """``["fp32.atol=1e-4", "int8.min_sqnr_db=25"]`` → Tolerances with those thresholds replaced.

    Raises:
        ConfigError: an item not of the form PRECISION.KEY=VALUE, an unknown precision or key, a bad value.
    """
    from edgestill.errors import ConfigError
    from edgestill.export.validate import Threshold, Tolerances

    base = Tolerances()
    keys = sorted(Threshold.__dataclass_fields__)
    changes: dict[str, dict[str, Any]] = {}
    for item in items:
        for part in (p.strip() for p in item.split(",") if p.strip()):
            m = re.fullmatch(r"(\w+)\.(\w+)=(.+)", part)
            if not m:
                raise ConfigError(f"--tolerance {part!r} is not PRECISION.KEY=VALUE (e.g. fp32.atol=1e-4); keys: {', '.join(keys)}.")
            prec, key, value = m.groups()
            if prec not in ("fp32", "fp16", "int8"):
                raise ConfigError(f"--tolerance {part!r}: precision {prec!r} is not one of fp32, fp16, int8.")
            if key not in keys:
                from edgestill.errors import did_you_mean

                raise ConfigError(f"--tolerance {part!r}: unknown key {key!r}.{did_you_mean(key, keys)} Valid keys: {', '.join(keys)}.")
            if value.lower() == "none":
                parsed = None
            else:
                try:
                    parsed = float(value)
                except ValueError:
                    raise ConfigError(f"--tolerance {part!r}: {value!r} is not a number (or 'none' to switch the criterion off).") from None
            changes.setdefault(prec, {})[key] = parsed
    return Tolerances(**{p: dataclasses.replace(getattr(base, p), **kv) for p, kv in changes.items()})


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


def report_doc(model: str, config: Any, results: list[Any], *, log: Path) -> dict[str, Any]:
    """The export report: what was asked, one entry per cell, and the overall verdict."""
    from edgestill import __version__

    cells = [r.to_dict() for r in results]
    return {
        "edgestill_version": __version__,
        "kind": "export",
        "model": model,
        "formats": list(config.formats),
        "precisions": list(config.precisions),
        "strict": config.strict,
        "dynamic_batch": config.dynamic_batch,
        "tolerances": config.tolerances.to_dict(),
        "passed": bool(cells) and all(c["passed"] for c in cells) and len(cells) == len(config.formats) * len(config.precisions),
        "results": cells,
        "log": str(log),
    }


def print_results(results: list[Any], file: Any = None) -> None:
    """The results table (one row per cell), then divergence, notes and errors."""
    import sys

    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, width=None if (file or sys.stdout).isatty() else 140)
    table = Table(title="Export (each file on its own runtime vs torch)")
    for col in ("format", "precision", "passed", "max_abs", "cosine", "top-1", "KB"):
        table.add_column(col, justify="left" if col in ("format", "precision", "passed") else "right")
    for r in results:
        d = r.to_dict()
        table.add_row(
            d["format"], d["precision"], "yes" if d["passed"] else "[red]NO[/]",
            "" if d["max_abs"] is None else f"{d['max_abs']:.3g}",
            "" if d["cosine"] is None else f"{d['cosine']:.6f}",
            "" if d["top1_agreement"] is None else f"{100 * d['top1_agreement']:.2f}%",
            "" if d["model_bytes"] is None else f"{d['model_bytes'] / 1024:.0f}",
        )
    console.print(table)
    for r in results:
        for note in r.notes:
            console.print(f"[yellow]note[/] {r.name}: {note}")
        if r.error:
            console.print(f"[red]{r.name}[/]: {r.error}")
            if r.rejected_files:
                console.print(f"  kept as {', '.join(str(p) for p in r.rejected_files)}")
