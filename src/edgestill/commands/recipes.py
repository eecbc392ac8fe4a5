"""``edgestill recipes``: the built-in recipes (the demo among them), printed as YAML to copy and edit."""

from __future__ import annotations

import typer

from edgestill.cli import app, run_command

recipes_app = typer.Typer(
    help="The built-in recipes: list them, or print one as YAML to copy and edit.",
    epilog=("\b\nExamples:\n"
            "  edgestill recipes list\n"
            "  edgestill recipes show demo > my-demo.yaml\n"
            "  edgestill run my-demo.yaml --out runs/my-demo"),
    no_args_is_help=True,
)
app.add_typer(recipes_app, name="recipes")


@recipes_app.command("list")
def list_recipes() -> None:
    """Name the built-in recipes."""
    from edgestill.chain.recipe import BUILTIN_RECIPES

    for name in BUILTIN_RECIPES:
        typer.echo(name)


@recipes_app.command("show")
def show(name: str = typer.Argument(..., help="A built-in recipe: demo or demo-quick.")) -> None:
    """Print a built-in recipe as YAML: 'edgestill run' of that file runs what 'edgestill demo' runs."""

    def body() -> None:
        from edgestill.chain.recipe import builtin_recipe, builtin_recipe_text

        builtin_recipe(name)  # an unknown name fails here, with the valid ones listed
        typer.echo(builtin_recipe_text(name), nl=False)

    run_command(body)
