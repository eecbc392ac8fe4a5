"""``edgestill demo``: the built-in recipe ``demo`` run through the same engine as ``edgestill run``."""

from __future__ import annotations

from pathlib import Path

import typer

from edgestill.cli import app, run_command


@app.command(
    epilog=(
        "\b\nExamples:\n"
        "  edgestill demo --out demo-out\n"
        "  edgestill demo --quick --out /tmp/demo --json > report.json\n"
        "  edgestill recipes show demo > my.yaml && edgestill run my.yaml   # the same chain, from a file you edit\n\n"
        "The demo is the built-in recipe 'demo' ('demo-quick' with --quick): 'edgestill run' of that YAML gives the\n"
        "same report. It always starts afresh in --out; the teacher and the no-KD baseline come from the cache\n"
        "($EDGESTILL_CACHE or ~/.cache/edgestill) after the first run. Measurements go to the results store (--db).\n"
        "Exit codes: 0 ok; 1 a check failed (KD gain, fp32 parity, int8 budget or speed); 2 bad input; 3 internal error."
    )
)
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", "-o", help="Folder for artifacts and reports (new, empty, or a previous run's)."),
    quick: bool = typer.Option(False, "--quick", help="The toy-size recipe 'demo-quick' (a smoke test; numbers are not meaningful)."),
    threads: str | None = typer.Option(None, "--threads", "-t", help="Inference threads for the latency cells, e.g. 1 or 1,2 (default: the recipe's, 1)."),
    train_threads: int = typer.Option(2, "--train-threads", min=1, help="Torch threads for training."),
    db: Path = typer.Option(Path(".edgestill/results.db"), "--db", help="SQLite results store the run is added to."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an --out folder another edgestill command wrote."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
) -> None:
    """Train a teacher, distill a student, quantize, export, validate and benchmark it on built-in data."""

    def body() -> None:
        from edgestill.chain.recipe import builtin_recipe, with_bench_threads
        from edgestill.chain.run import RunOptions
        from edgestill.commands.options import parse_int_list
        from edgestill.commands.recipe_cli import run_recipe_command

        recipe = builtin_recipe("demo-quick" if quick else "demo")
        if threads is not None:
            recipe = with_bench_threads(recipe, tuple(parse_int_list(threads, option="--threads")))
        options = RunOptions(out_dir=out, force=True, train_threads=train_threads, db=db, command="demo",
                             overwrite=overwrite)
        run_recipe_command(recipe, options, json_out=json_out)

    run_command(body)
