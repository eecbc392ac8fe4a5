"""Terminal tables for command results."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table


def print_demo_summary(report: dict[str, Any], out: Path, file: TextIO | None = None) -> None:
    console = Console(file=file, width=None if (file or sys.stdout).isatty() else 140)
    m = report["models"]
    models = Table(title="Models (test accuracy, torch)")
    for col in ("model", "parameters", "test accuracy"):
        models.add_column(col, justify="right" if col != "model" else "left")
    for key, label in (("teacher", "teacher"), ("student_kd", "student, KD"), ("student_baseline", "student, no KD")):
        models.add_row(label, f"{m[key]['parameters']:,}", f"{100 * m[key]['test_accuracy']:.2f}%")
    console.print(models)
    console.print(f"KD gain over no-KD student: {report['kd_gain_points']:+.2f} points")
    arts = Table(title=f"Artifacts ({report['bench']['threads']} thread, each on its own runtime)")
    for col in ("artifact", "runtime", "test acc", "drop pts", "parity", "p50 ms", "p90 ms", "CV %", "KB"):
        arts.add_column(col, justify="left" if col in ("artifact", "runtime", "parity") else "right")
    for r in report["artifacts"]:
        measured = r["kind"] == "measured"
        arts.add_row(
            r["artifact"],
            r["runtime"],
            "—" if r["test_accuracy"] is None else f"{100 * r['test_accuracy']:.2f}%",
            str(r["accuracy_drop_points"]),
            "pass" if r["parity_passed"] else "FAIL",
            f"{r['p50_ms']:.3f}" if measured else "failed",
            f"{r['p90_ms']:.3f}" if measured else "",
            f"{r['cv_percent']:.1f}" if measured else "",
            "" if r.get("model_bytes") is None else f"{r['model_bytes'] / 1024:.0f}",
        )
    console.print(arts)
    for c in report["checks"]:
        if not c["passed"]:
            console.print(f"[red]FAIL[/] {c['name']} ({c['detail']})")
    console.print(f"Total {report['stage_seconds']['total']:.0f} s. Reports: {out / 'report.json'}, {out / 'report.md'}")


def print_measurements(measurements: list[Any]) -> None:
    """One row per measurement; failed cells show why, and warnings follow the table."""
    console = Console(width=None if sys.stdout.isatty() else 140)
    table = Table(title="Latency (ms, steady state)")
    for col in ("artifact", "runtime", "threads", "p50", "wall p50", "p90", "p99", "CV %", "n", "init", "RSS MB", "accuracy"):
        table.add_column(col, justify="left" if col in ("artifact", "runtime") else "right")
    for m in measurements:
        if m.kind != "measured" or m.latency is None:
            table.add_row(m.artifact, m.runtime, str(m.threads), "[red]failed[/]", *[""] * 8)
            continue
        lat = m.latency
        wall = m.wall_latency or lat  # p50 on the wall clock; differs where the runtime's own clock was used
        table.add_row(
            m.artifact, m.runtime, str(m.threads), f"{lat.p50_ms:.3f}{'*' if m.clock != 'wall' else ''}",
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
            console.print(f"[red]{m.artifact} ({m.runtime}, {m.threads} thr) failed:[/] {m.error}")
        for w in m.warnings:
            console.print(f"[yellow]warning[/] {m.artifact} ({m.threads} thr): {w}")
