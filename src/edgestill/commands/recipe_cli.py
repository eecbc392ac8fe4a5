"""The body shared by ``edgestill demo``, ``run`` and ``distill``: run a recipe through the engine, render, exit code."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, TextIO

import typer

from edgestill.errors import InputError


def run_recipe_command(recipe: Any, options: Any, *, json_out: bool) -> None:
    """Run ``recipe`` with ``options`` (a RunOptions) into ``options.out_dir`` and print the result.

    A bad input found before any stage finished, in a folder that was missing or empty, leaves it as it was: no
    partial output. A finished stage (e.g. a trained student) is kept, and a rerun resumes from it.

    Raises:
        InputError / ConfigError: bad recipe, data, teacher or student (exit 2).
        typer.Exit(1): a check failed (``run`` and ``demo``).
    """
    from edgestill.chain.run import STATE_FILE, failed_checks, prepare_out_dir, recipe_inputs, run_recipe
    from edgestill.commands.progress import RichReporter
    from edgestill.commands.streams import library_output_to

    out = options.out_dir
    created = not out.exists()
    was_empty = out.is_dir() and not any(out.iterdir())
    claimed = prepare_out_dir(out, kind=options.kind, force=options.force, overwrite=options.overwrite,
                              inputs=recipe_inputs(recipe), before_emptying=lambda: _check_data(recipe))
    log = out / "logs" / f"{options.command}.log"
    try:
        with library_output_to(log) as (term_out, term_err):
            with RichReporter(enabled=not json_out, file=term_err) as reporter:
                report = run_recipe(recipe, options, reporter, claimed=claimed)
            if json_out:
                term_out.write(json.dumps(report, indent=2, default=str) + "\n")
            else:
                print_summary(report, out, term_out)
                term_out.write(f"Library output: {log}\n")
    except InputError:
        if (created or was_empty) and not _finished_stages(out / STATE_FILE):  # a trained student is kept even then
            shutil.rmtree(out, ignore_errors=True)  # this run's own folder: it was missing or empty before
            if was_empty:
                out.mkdir()
        raise
    failed = failed_checks(report)
    if failed:
        typer.echo(f"check failed: {'; '.join(failed)}", err=True)
        raise typer.Exit(1)


def _check_data(recipe: Any) -> None:
    """Load the recipe's data once, so that bad data is refused before an earlier run's folder is emptied."""
    from edgestill.chain.run import load_recipe_data

    load_recipe_data(recipe)


def _finished_stages(state: Path) -> dict[str, Any]:
    try:
        return json.loads(state.read_text())
    except (OSError, ValueError):
        return {}


def print_summary(report: dict[str, Any], out: Path, file: TextIO | None = None) -> None:
    """A short terminal summary of a chain report."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from edgestill.chain.checks import describe_check

    console = Console(file=file, width=None if (file or sys.stdout).isatty() else 140)
    s, t = report["student"], report.get("teacher", {})
    models = Table(title=f"{report['kind']} {escape(str(report['recipe']))} (torch, test split)")
    for col in ("model", "source", "parameters", "MACs", "test accuracy"):
        models.add_column(col, justify="left" if col in ("model", "source") else "right")

    def pct(v: float | None) -> str:
        return "—" if v is None else f"{100 * v:.2f}%"

    def num(v: Any) -> str:
        return "—" if v is None else f"{v:,}"

    if t.get("source") not in (None, "none"):
        models.add_row("teacher", escape(str(t.get("model") or t["source"])), num(t.get("parameters")), num(t.get("macs")),
                       pct(t.get("test_accuracy")))
    models.add_row("student", escape(str(s["model"])), num(s["parameters"]), num(s.get("macs")), pct(s["test_accuracy"]))
    if "baseline_test_accuracy" in s:
        models.add_row("student, no KD", escape(str(s["model"])), num(s["parameters"]), num(s.get("macs")),
                       pct(s["baseline_test_accuracy"]))
    console.print(models)
    if report.get("artifacts"):
        embed = report.get("task") == "text-embed"  # an embedder: agreement with the teacher's embeddings, no accuracy
        generate = report.get("task") == "generate"  # exact match, and time to first token / decode tokens/s
        arts = Table(title="Artifacts, each on its own runtime (latency at the first bench thread count)")
        cols = ("cosine", "retrieval") if embed else ("exact match" if generate else "test acc", "drop pts", "teacher agree")
        timing = ("TTFT ms", "decode tok/s") if generate else ("p50 ms", "p90 ms")
        for col in ("artifact", "runtime", "parity", *cols, *timing, "KB"):
            arts.add_column(col, justify="left" if col in ("artifact", "runtime", "parity") else "right")
        for r in report["artifacts"]:
            m = (r.get("measurements") or [{}])[0]
            measured = m.get("kind") == "measured"
            scores = ((num(r.get("teacher_cosine")), pct(r.get("teacher_retrieval_agreement"))) if embed else
                      (pct(r.get("test_accuracy")), str(r.get("accuracy_drop_points", "—")),
                       pct(r.get("teacher_top1_agreement"))))
            keys = (("ttft_ms", "{:.2f}"), ("decode_tokens_per_s", "{:.0f}")) if generate else (
                ("p50_ms", "{:.3f}"), ("p90_ms", "{:.3f}"))
            shown = [f.format(m[k]) if measured and m.get(k) is not None else "—" for k, f in keys]
            arts.add_row(escape(str(r["artifact"])), escape(str(r.get("runtime") or "—")), "pass" if r["passed"] else "FAIL",
                         *scores, *shown, "" if r.get("model_bytes") is None else f"{r['model_bytes'] / 1024:.0f}")
        console.print(arts)
    for c in report.get("checks", []):
        console.print(f"{'[green]PASS' if c['verdict'] == 'pass' else '[red]FAIL'}[/] {escape(describe_check(c))}", markup=True,
                      highlight=False)
    skipped = [k for k, v in report["stages"].items() if v["status"].startswith("skipped")]
    if skipped:
        console.print(f"Unchanged since the last run, skipped: {', '.join(skipped)}.")
    if report.get("store"):
        console.print(f"Stored as run {report['store']['run_id']} in {escape(str(report['store']['path']))}.")
    html = f", {out / 'report.html'}" if (out / "report.html").is_file() else ""
    console.print(escape(f"Total {report['stage_seconds']['total']:.1f} s. Reports: {out / 'report.json'}, {out / 'report.md'}{html}"))
