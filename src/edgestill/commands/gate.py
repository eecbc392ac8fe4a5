"""``edgestill gate``: fail a CI job when a candidate is slower, less accurate or bigger than its baseline."""

from __future__ import annotations

from pathlib import Path

import typer

from edgestill.cli import app, echo_json, run_command


@app.command(
    epilog=(
        "\b\nExamples:\n"
        "  edgestill gate --baseline main --candidate latest            # runs in .edgestill/results.db\n"
        "  edgestill gate --baseline base.json --candidate pr.json --md summary.md --junit gate.xml\n"
        "  edgestill gate --ab old.manifest.json new.manifest.json     # interleaved on this machine\n\n"
        "\b\nBASELINE/CANDIDATE: a run id, 'latest', a label, a git ref or commit of runs in --db; or a file: the JSON of\n"
        "`edgestill bench --json`, a report.json of `edgestill run`/`demo`, or a results store (its latest run).\n"
        "Cells are (model, format, precision, device, runtime, threads); estimates are gated only against estimates.\n"
        "Latency: a statistical test on the raw samples AND a minimum effect must agree; a cell whose noise cannot\n"
        "resolve the minimum effect is 'no verdict' (--fail-on-no-verdict makes it fail the job).\n"
        "Exit codes: 0 pass; 1 a regression; 2 bad input (e.g. no cell in common, a corrupt store)."
    )
)
def gate(
    baseline: str | None = typer.Option(None, "--baseline", "-b", help="Baseline: a run reference in --db or a file."),
    candidate: str = typer.Option("latest", "--candidate", "-c", help="Candidate: a run reference in --db or a file."),
    ab: tuple[Path, Path] | None = typer.Option(None, "--ab", help="OLD NEW manifests: benchmark both here, interleaved."),
    db: Path = typer.Option(Path(".edgestill/results.db"), "--db", help="SQLite results store that references name runs in."),
    min_effect: float = typer.Option(5.0, "--min-effect", help="Smallest latency change (percent) the gate calls."),
    max_accuracy_drop: float = typer.Option(1.0, "--max-accuracy-drop", help="Accuracy drop budget (points)."),
    max_agreement_drop: float = typer.Option(1.0, "--max-agreement-drop", help="Teacher-agreement drop budget (points)."),
    max_size_growth: float = typer.Option(5.0, "--max-size-growth", help="Model size growth budget (percent)."),
    max_cv: float = typer.Option(25.0, "--max-cv", help="A side noisier than this CV (percent) gets no verdict."),
    fail_on_no_verdict: bool = typer.Option(False, "--fail-on-no-verdict", help="Exit 1 when a cell has no verdict."),
    threads: int = typer.Option(1, "--threads", "-t", min=1, help="--ab: inference threads."),
    blocks: int = typer.Option(30, "--blocks", min=2, help="--ab: interleaved block pairs."),
    junit: Path | None = typer.Option(None, "--junit", help="Write JUnit XML (one test case per cell) here."),
    md: Path | None = typer.Option(None, "--md", help="Write the Markdown summary here (append it to $GITHUB_STEP_SUMMARY in CI)."),
    json_out: bool = typer.Option(False, "--json", help="Print the verdicts as JSON."),
) -> None:
    """Gate a candidate against a baseline: latency (statistical test + minimum effect), accuracy and size budgets."""

    def body() -> int:
        from edgestill.benchmarks.gate import GateBudgets, cells_text, gate_ab, gate_stored, to_junit, to_markdown
        from edgestill.errors import InputError
        from edgestill.outdir import write_text_atomic

        budgets = GateBudgets(min_effect_percent=min_effect, max_accuracy_drop_points=max_accuracy_drop,
                              max_agreement_drop_points=max_agreement_drop, max_size_growth_percent=max_size_growth,
                              max_cv_percent=max_cv, fail_on_no_verdict=fail_on_no_verdict)  # fmt: skip
        for option, out in (("--junit", junit), ("--md", md)):
            if out is not None and not out.parent.is_dir():
                why = "is a file" if out.parent.exists() else "does not exist"
                raise InputError(f"{option} {out} cannot be written: its folder {out.parent} {why}. Pass a path in an "
                                 "existing folder.")
            if out is not None and out.is_dir():
                raise InputError(f"{option} {out} is a folder. Pass a file path (e.g. gate.xml).")
        if ab is not None:
            result = gate_ab(ab[0], ab[1], budgets=budgets, threads=threads, blocks=blocks)
        elif baseline is None:
            raise InputError("name a --baseline (a run reference in --db or a results file), or compare two artifacts "
                             "with --ab OLD NEW. See `edgestill gate --help`.")
        else:
            result = gate_stored(baseline, candidate, db=db, budgets=budgets)
        if junit is not None:
            write_text_atomic(junit, to_junit(result))
        if md is not None:
            write_text_atomic(md, to_markdown(result))
        if json_out:
            echo_json(result.to_dict())
        else:
            typer.echo("\n".join(cells_text(result.cells)))
            counts = ", ".join(f"{v} {k}" for k, v in result.counts().items() if v)
            typer.echo(f"gate {'FAILED' if result.exit_code else 'passed'}: {counts}")
        return result.exit_code

    code = run_command(body)
    if code:
        raise typer.Exit(code)
