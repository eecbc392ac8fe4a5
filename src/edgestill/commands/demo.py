"""``edgestill demo``: the whole chain on built-in data."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgestill.cli import app, run_command


@app.command(
    epilog=(
        "\b\nExamples:\n"
        "  edgestill demo --out demo-out\n"
        "  edgestill demo --quick --out /tmp/demo --json > report.json\n\n"
        "Exit codes: 0 ok; 1 a demo check failed (fp32 top-1 parity or the int8 2-point budget); "
        "2 bad input; 3 internal error."
    )
)
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Folder for artifacts and reports (new, empty, or a previous demo's)."),
    quick: bool = typer.Option(False, "--quick", help="A small, fast run (smoke test; numbers are not meaningful)."),
    threads: int = typer.Option(1, "--threads", min=1, help="Threads for the latency measurement."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
) -> None:
    """Train a teacher, distill a student, quantize, export, validate and benchmark it on built-in data.

    Writes OUT/report.json (a measurement record per artifact plus teacher, KD-student and no-KD-student
    accuracy and each stage's wall time), OUT/report.md, and the artifacts under OUT/artifacts.
    """

    def body() -> None:
        from edgestill.commands.progress import RichReporter
        from edgestill.commands.render import print_demo_summary
        from edgestill.commands.streams import library_output_to
        from edgestill.outdir import claim_output_dir
        from edgestill.pipeline import DemoConfig, run_demo

        config = DemoConfig(out_dir=out, quick=quick, bench_threads=threads)
        claim_output_dir(out, kind="demo")  # a bad --out fails here, before anything is written
        log = out / "logs" / "demo.log"
        with library_output_to(log) as (term_out, term_err):
            with RichReporter(enabled=not json_out, file=term_err) as reporter:
                report = run_demo(config, reporter, claimed=True)
            if json_out:
                term_out.write(json.dumps(report, indent=2, default=str) + "\n")
            else:
                print_demo_summary(report, out, file=term_out)
                term_out.write(f"Library output: {log}\n")
        failed = [c["name"] for c in report["checks"] if c["enforced"] and not c["passed"]]
        if failed:
            typer.echo(f"demo check failed: {'; '.join(failed)}", err=True)
            raise typer.Exit(1)

    run_command(body)
