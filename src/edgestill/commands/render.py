"""Terminal tables for command results."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.markup import escape as _e  # user strings (names, errors) may hold "[/]" or "[bold]": text, never markup
from rich.table import Table


def print_measurements(measurements: list[Any]) -> None:
    """One row per measurement; failed cells show why, and warnings follow the table."""
    console = Console(width=None if sys.stdout.isatty() else 140)
    table = Table(title="Latency (ms, steady state)")
    for col in ("artifact", "runtime", "threads", "p50", "wall p50", "p90", "p99", "CV %", "n", "init", "RSS MB", "accuracy"):
        table.add_column(col, justify="left" if col in ("artifact", "runtime") else "right")
    for m in measurements:
        if m.kind != "measured" or m.latency is None:
            table.add_row(_e(m.artifact), _e(m.runtime), str(m.threads), "[red]failed[/]", *[""] * 8)
            continue
        lat = m.latency
        wall = m.wall_latency or lat  # p50 on the wall clock; differs where the runtime's own clock was used
        table.add_row(
            _e(m.artifact), _e(m.runtime), str(m.threads), f"{lat.p50_ms:.3f}{'*' if m.clock != 'wall' else ''}",
            f"{wall.p50_ms:.3f}", f"{lat.p90_ms:.3f}", f"{lat.p99_ms:.3f}",
            f"{lat.cv_percent:.1f}", str(lat.n), f"{m.init_ms:.1f}", f"{m.peak_rss_mb:.0f}",
            "" if m.accuracy is None else f"{m.accuracy.metric} {100 * m.accuracy.value:.2f}%",
        )
    console.print(table)
    clocks = sorted({m.clock for m in measurements if m.kind == "measured" and m.clock != "wall"})
    if clocks:
        console.print(f"* read from the runtime's own per-call clock ({', '.join(clocks)}); wall p50 includes the "
                      "Python binding's call overhead. --clock wall reports the wall clock everywhere.")
    for m in measurements:
        if m.error:
            from edgestill.benchmarks.bench import BAD_INPUT_EXIT, failure_reason

            # bad input: the runner's one paragraph (its log tail stays in the record); anything else: the whole error
            why = failure_reason(m) if m.settings.get("runner_exit_code") == BAD_INPUT_EXIT else m.error
            console.print(f"[red]{_e(m.artifact)} ({_e(m.runtime)}, {m.threads} thr) failed:[/] {_e(str(why))}")
        for w in m.warnings:
            console.print(f"[yellow]warning[/] {_e(m.artifact)} ({m.threads} thr): {_e(str(w))}")
