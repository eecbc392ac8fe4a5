"""``edgestill history``: one metric across the stored runs, and the runs where it stepped up or down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgestill.cli import app, echo_json, run_command


@app.command(
    epilog=(
        "\b\nExamples:\n"
        "  edgestill history --model student-onnx-int8                 # p50_ms on every device in .edgestill/results.db\n"
        "  edgestill history --metric p90_ms --model student-onnx-int8 --device 3f9a --threads 2\n"
        "  edgestill history --metric accuracy --model student-tflite-fp32 --json\n\n"
        "A step is found by change-point detection on the whole series, not by comparing each run with the one\n"
        "before: one noisy run is not a step, a step that persists is (also in the last 3 runs), a slow drift is\n"
        "reported as a drift. The run named is the first of the new level, with its git ref and commit.\n"
        "Exit codes: 0 ok; 2 bad input (unknown metric, no matching records, a missing or corrupt store)."
    )
)
def history(
    metric: str = typer.Option("p50_ms", "--metric", "-m", help="p50_ms, p90_ms, p99_ms, mean_ms, cv_percent, accuracy, "
                               "teacher_top1_agreement, teacher_kl, model_bytes, peak_rss_mb or init_ms."),
    model: str = typer.Option(..., "--model", help="The artifact name, as bench stored it."),
    device: str | None = typer.Option(None, "--device", "-d", help="A device id (or a unique prefix), machine or CPU model."),
    format: str | None = typer.Option(None, "--format", help="Only this format (onnx, tflite, openvino)."),
    precision: str | None = typer.Option(None, "--precision", help="Only this precision (fp32, int8-static, ...)."),
    runtime: str | None = typer.Option(None, "--runtime", help="Only this runtime (onnxruntime, litert, openvino)."),
    threads: int | None = typer.Option(None, "--threads", "-t", min=1, help="Only this thread count."),
    min_effect: float = typer.Option(5.0, "--min-effect", min=0.1, max=500.0, help="Smallest step reported (percent)."),
    include_estimates: bool = typer.Option(False, "--include-estimates", help="Also show estimates, as series of their own."),
    db: Path = typer.Option(Path(".edgestill/results.db"), "--db", help="SQLite results store."),
    json_out: bool = typer.Option(False, "--json", help="Print the series and change points as JSON."),
) -> None:
    """Show a metric across stored runs and name the runs (git ref, commit) where it stepped up or down."""

    def body() -> None:
        from edgestill.benchmarks.history import history as read_history
        from edgestill.benchmarks.store import ResultsStore

        with ResultsStore.open_existing(db) as store:
            doc = read_history(store, metric=metric, model=model, device=device, format=format, precision=precision,
                               runtime=runtime, threads=threads, include_estimates=include_estimates,
                               min_effect=min_effect / 100.0)  # fmt: skip
        if json_out:
            echo_json(doc)
        else:
            print_history(doc)

    run_command(body)


def print_history(doc: dict[str, Any]) -> None:
    """A table per cell (change-point runs marked), then one line per change point and drift."""
    import sys

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140)
    unit = f" ({doc['unit']})" if doc["unit"] else ""
    for cell in doc["cells"]:
        title = (f"{cell['model']} · {cell['format']} {cell['precision']} · {cell['device']} · {cell['runtime']} "
                 f"{cell['threads']} thr" + (" · ESTIMATED" if cell["kind"] == "estimated" else ""))  # fmt: skip
        table = Table(title=escape(title))
        for col in ("run", "time", "git ref", "commit", doc["metric"] + unit, "stable", "step"):
            table.add_column(col, justify="right" if col in ("run", "stable") or col.startswith(doc["metric"]) else "left")
        steps = {p["run_id"]: p for p in cell["change_points"]}
        for s in cell["series"]:
            p = steps.get(s["run_id"])
            mark = "" if p is None else f"{'▲' if p['direction'] == 'up' else '▼'} {100 * p['relative_change']:+.1f}%"
            value = f"{s['value']:,.0f}" if abs(s["value"]) >= 1000 else f"{s['value']:.4g}"
            table.add_row(str(s["run_id"]), (s["created_at"] or "")[:16].replace("T", " "), escape(s["git_ref"] or ""),
                          (s["git_commit"] or "")[:8], value, {True: "yes", False: "no", None: ""}[s["stable"]], mark)  # fmt: skip
        console.print(table)
        for p in cell["change_points"]:
            console.print(escape(p["summary"]), highlight=False)
        if cell["drift"]:
            d = cell["drift"]
            console.print(f"{doc['metric']} drifted {100 * d['relative_change']:+.1f}% over {len(cell['series'])} runs "
                          f"({100 * d['per_run']:+.2f}% a run) within its levels; a drift is not a step.", highlight=False)
        if not cell["change_points"] and not cell["drift"]:
            console.print(f"no step of {100 * doc['min_effect']:g}% or more in {len(cell['series'])} runs.", highlight=False)
