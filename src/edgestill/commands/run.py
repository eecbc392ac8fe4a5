"""``edgestill run RECIPE.yaml``: the whole chain from one recipe, resumable."""

from __future__ import annotations

from pathlib import Path

import typer

from edgestill.cli import app, run_command


@app.command(
    epilog=(
        "\b\nExamples:\n"
        "  edgestill run examples/run-full.yaml --out runs/full\n"
        "  edgestill run examples/run-full.yaml --out runs/full        # again: finished stages are skipped\n"
        "  edgestill run examples/run-full.yaml --out runs/full --force --json\n\n"
        "Stages: data -> teacher (trained, loaded, or black-box answers) -> distill -> export + int8 (validated\n"
        "against torch) -> bench (host latency) -> gate (the recipe's budgets). Writes OUT/report.json,\n"
        "OUT/report.md, OUT/artifacts/ and OUT/checkpoints/. A rerun into the same folder skips every stage whose\n"
        "recipe sections and inputs are unchanged.\n"
        "Exit codes: 0 ok; 1 a gate budget was missed; 2 bad input; 3 internal error."
    )
)
def run(
    recipe: Path = typer.Argument(..., help="Recipe YAML (see examples/*.yaml)."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: runs/<recipe name>)."),
    force: bool = typer.Option(False, "--force", help="Ignore an earlier run in --out and start over."),
    threads: int = typer.Option(2, "--threads", min=1, help="Torch threads for training."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
) -> None:
    """Run the whole chain a recipe describes: distill, quantize + export, validate, benchmark, gate."""
    from edgestill.commands.recipe_cli import run_recipe_command

    run_command(lambda: run_recipe_command(recipe, out, through="gate", force=force, threads=threads,
                                           json_out=json_out))
