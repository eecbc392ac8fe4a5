"""The body shared by ``edgestill distill`` and ``edgestill run``: load, run, render, exit code."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, TextIO

import typer

from edgestill.errors import InputError


def run_recipe_command(recipe_path: Path, out: Path | None, *, through: str, force: bool, threads: int,
                       json_out: bool) -> None:
    """Load the recipe (bad keys fail before anything is written), run it into ``out``, print the result.

    A bad input found before any stage finished, in a folder that was missing or empty, leaves it as it was: no
    partial output. A finished stage (e.g. a trained student) is kept, and a rerun resumes from it.

    Raises:
        InputError / ConfigError: bad recipe, data, teacher or student (exit 2).
        typer.Exit(1): a gate budget was missed (``run`` only).
    """
    from edgestill.chain import failed_checks, prepare_out_dir, run_recipe
    from edgestill.commands.progress import RichReporter
    from edgestill.commands.streams import library_output_to
    from edgestill.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    kind = "distill" if through == "distill" else "run"
    out = out or Path("runs") / (f"{recipe.name}-distill" if kind == "distill" else recipe.name)
    created = not out.exists()
    was_empty = out.is_dir() and not any(out.iterdir())
    claimed = prepare_out_dir(out, kind=kind, force=force)
    log = out / "logs" / f"{kind}.log"
    try:
        with library_output_to(log) as (term_out, term_err):
            with RichReporter(enabled=not json_out, file=term_err) as reporter:
                report = run_recipe(recipe, out, through=through, force=force, reporter=reporter,
                                    train_threads=threads, claimed=claimed)
            if json_out:
                term_out.write(json.dumps(report, indent=2, default=str) + "\n")
            else:
                print_summary(report, out, term_out)
                term_out.write(f"Library output: {log}\n")
    except InputError:
        if (created or was_empty) and not _finished_stages(out):  # a trained student is kept even then
            shutil.rmtree(out, ignore_errors=True)
            if was_empty:
                out.mkdir()
        raise
    failed = failed_checks(report)
    if failed:
        typer.echo(f"gate failed: {'; '.join(failed)}", err=True)
        raise typer.Exit(1)


def _finished_stages(out: Path) -> dict[str, Any]:
    from edgestill.chain import STATE_FILE

    try:
        return json.loads((out / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def print_summary(report: dict[str, Any], out: Path, file: TextIO | None = None) -> None:
    """A short terminal summary of a recipe report."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, width=None if (file or sys.stdout).isatty() else 140)
    s, t = report["student"], report.get("teacher", {})
    models = Table(title=f"{report['kind']} {report['recipe']} (torch, test split)")
    for col in ("model", "source", "parameters", "test accuracy"):
        models.add_column(col, justify="right" if col in ("parameters", "test accuracy") else "left")
    if t.get("source") not in (None, "none"):
        acc = t.get("test_accuracy")
        models.add_row("teacher", t.get("model") or t["source"], f"{t['parameters']:,}" if "parameters" in t else "—",
                       "—" if acc is None else f"{100 * acc:.2f}%")
    models.add_row("student", s["model"], f"{s['parameters']:,}", f"{100 * s['test_accuracy']:.2f}%")
    if "baseline_test_accuracy" in s:
        models.add_row("student, no KD", s["model"], f"{s['parameters']:,}", f"{100 * s['baseline_test_accuracy']:.2f}%")
    console.print(models)
    if report.get("export"):
        arts = Table(title="Artifacts")
        for col in ("artifact", "parity", "test acc", "drop pts", "KB"):
            arts.add_column(col, justify="left" if col in ("artifact", "parity") else "right")
        for r in report["export"]["artifacts"]:
            arts.add_row(r["artifact"], "pass" if r["passed"] else "FAIL",
                         "—" if r.get("test_accuracy") is None else f"{100 * r['test_accuracy']:.2f}%",
                         str(r.get("accuracy_drop_points", "—")),
                         "" if r.get("model_bytes") is None else f"{r['model_bytes'] / 1024:.0f}")
        console.print(arts)
    if report.get("bench"):
        lat = Table(title="Latency on this host (ms, steady state)")
        for col in ("artifact", "runtime", "threads", "p50", "p90", "CV %"):
            lat.add_column(col, justify="left" if col in ("artifact", "runtime") else "right")
        for m in report["bench"]["measurements"]:
            measured = m.get("kind") == "measured"
            lat.add_row(m["artifact"], str(m.get("runtime")), str(m["threads"]),
                        f"{m['p50_ms']:.3f}" if measured else "failed", f"{m['p90_ms']:.3f}" if measured else "",
                        f"{m['cv_percent']:.1f}" if measured else "")
        console.print(lat)
    for c in report.get("checks", []):
        console.print(f"{'[green]PASS' if c['passed'] else '[red]FAIL'}[/] {c['name']} ({c['detail']})")
    skipped = [k for k, v in report["stages"].items() if v["status"].startswith("skipped")]
    if skipped:
        console.print(f"Unchanged since the last run, skipped: {', '.join(skipped)}.")
    console.print(f"Total {report['stage_seconds']['total']:.1f} s. Reports: {out / 'report.json'}, {out / 'report.md'}")
