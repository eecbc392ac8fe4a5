"""``edgestill report``: stored runs as a self-contained HTML page, Markdown, or JSON."""

from __future__ import annotations

from pathlib import Path

import typer

from edgestill.cli import app, echo_json, run_command


@app.command(
    epilog=(
        "\b\nExamples:\n"
        "  edgestill report                                  # the latest run, Markdown on stdout\n"
        "  edgestill report latest --html report.html --md report.md\n"
        "  edgestill report 12 13 --html runs.html           # two runs by id, side by side\n"
        "  edgestill report main --db ci/results.db --json   # the runs of a git ref, as JSON\n\n"
        "\b\nRUN is a run id (12 or #12), 'latest', a label, a git ref (branch or tag) or a commit.\n"
        "The HTML file needs nothing else: no network, no script; send it or attach it to a CI job as it is.\n"
        "Estimates are shown apart from measurements and labelled; unstable and failed cells are marked.\n"
        "Exit codes: 0 written; 2 bad input (no such results store or run, a folder that does not exist)."
    )
)
def report(
    runs: list[str] = typer.Argument(None, help="Runs to report (default: latest)."),
    db: Path = typer.Option(Path(".edgestill/results.db"), "--db", help="SQLite results store to read (never created)."),
    html: Path | None = typer.Option(None, "--html", help="Write the self-contained HTML report here."),
    md: Path | None = typer.Option(None, "--md", help="Write the Markdown report here."),
    json_out: bool = typer.Option(False, "--json", help="Print the report's data as JSON."),
) -> None:
    """Report stored runs: per device a table and an accuracy-vs-latency chart, int8 vs fp32, parity, provenance."""

    def body() -> None:
        from edgestill.benchmarks.report import render_markdown, write_report

        data = write_report(db, runs or ["latest"], html=html, md=md)
        if json_out:
            echo_json(data)
        elif html is None and md is None:
            typer.echo(render_markdown(data), nl=False)
        else:
            typer.echo("wrote " + " and ".join(str(p) for p in (html, md) if p is not None))

    run_command(body)
