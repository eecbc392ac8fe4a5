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
        "  edgestill run examples/run-full.yaml --out runs/full --force --threads 1,2 --json\n"
        "  edgestill recipes show demo > demo.yaml && edgestill run demo.yaml   # the demo, from a file\n\n"
        "Stages: data -> teacher (trained, loaded, or black-box answers) -> distill -> export (floats validated\n"
        "against torch; int8 through the quantize budget) -> evaluate (test accuracy and teacher agreement on each\n"
        "file's runtime) -> bench (latency per thread count) -> checks (the gate's budgets). Writes OUT/report.json,\n"
        "OUT/report.md, OUT/artifacts/ and OUT/checkpoints/, and adds the run to the results store (--db). A rerun\n"
        "into the same folder skips every stage whose recipe sections and inputs are unchanged.\n"
        "Exit codes: 0 ok; 1 a check failed; 2 bad input; 3 internal error."
    )
)
def run(
    recipe: Path = typer.Argument(..., help="Recipe YAML (see examples/*.yaml, or 'edgestill recipes show demo')."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (default: runs/<recipe name>)."),
    force: bool = typer.Option(False, "--force", help="Ignore an earlier run in --out and start over."),
    threads: str | None = typer.Option(None, "--threads", "-t", help="Inference threads for the latency cells, e.g. 1,2 (default: the recipe's bench.threads)."),
    train_threads: int = typer.Option(2, "--train-threads", min=1, help="Torch threads for training."),
    db: Path = typer.Option(Path(".edgestill/results.db"), "--db", help="SQLite results store the run is added to."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an --out folder another edgestill command wrote."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
) -> None:
    """Run the whole chain a recipe describes: distill, quantize + export, validate, evaluate, benchmark, check."""

    def body() -> None:
        from edgestill.chain.recipe import load_recipe, with_bench_threads
        from edgestill.chain.run import RunOptions
        from edgestill.commands.options import parse_int_list
        from edgestill.commands.recipe_cli import run_recipe_command

        loaded = load_recipe(recipe)
        if threads is not None:
            loaded = with_bench_threads(loaded, tuple(parse_int_list(threads, option="--threads")))
        options = RunOptions(out_dir=out or Path("runs") / loaded.name, force=force, train_threads=train_threads,
                             db=db, command="run", overwrite=overwrite)
        run_recipe_command(loaded, options, json_out=json_out)

    run_command(body)
