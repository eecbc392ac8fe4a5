"""``edgestill distill RECIPE.yaml``: train a student from a teacher as a recipe describes (no export)."""

from __future__ import annotations

from pathlib import Path

import typer

from edgestill.cli import app, run_command


@app.command(
    epilog=(
        "\b\nExamples:\n"
        "  edgestill distill examples/kd.yaml --out runs/kd\n"
        "  edgestill distill examples/fitnets.yaml --json > report.json\n"
        "  edgestill distill examples/blackbox-predictions.yaml --force   # start over, ignore the earlier run\n\n"
        "Writes OUT/checkpoints/student.safetensors, OUT/report.json and OUT/report.md. Rerunning into the same\n"
        "folder reuses the finished student when the recipe and its files are unchanged, and resumes an\n"
        "interrupted training from its last epoch. A folder another command wrote is replaced only with --overwrite.\n"
        "Exit codes: 0 ok; 2 bad input (unknown key or loss, layer name, teacher/student shape mismatch, bad data);\n"
        "3 internal error."
    )
)
def distill(
    recipe: Path = typer.Argument(..., help="Recipe YAML (see examples/*.yaml)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (default: runs/<recipe name>-distill)."),
    force: bool = typer.Option(False, "--force", help="Ignore an earlier run in --out and start over."),
    train_threads: int = typer.Option(2, "--train-threads", min=1, help="Torch threads for training."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an --out folder another edgestill command wrote."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
) -> None:
    """Distill a student from a teacher (or teacher answers) as RECIPE describes; the data, teacher, student and
    distill sections are used."""

    def body() -> None:
        from edgestill.chain.recipe import load_recipe
        from edgestill.chain.run import RunOptions
        from edgestill.commands.recipe_cli import run_recipe_command

        loaded = load_recipe(recipe)
        options = RunOptions(out_dir=out or Path("runs") / f"{loaded.name}-distill", through="distill", force=force,
                             train_threads=train_threads, db=None, command="distill", overwrite=overwrite)
        run_recipe_command(loaded, options, json_out=json_out)

    run_command(body)
