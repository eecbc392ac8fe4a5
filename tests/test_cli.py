"""The CLI's contract: version, help with examples, exit 2 with a named fix for bad usage and bad --out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edgestill import __version__


def edgestill(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgestill", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_version() -> None:
    r = edgestill("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"edgestill {__version__}"


def test_help_lists_commands_with_examples() -> None:
    r = edgestill("--help")
    assert r.returncode == 0
    assert "demo" in r.stdout and "Examples" in r.stdout
    r = edgestill("demo", "--help")
    assert r.returncode == 0
    assert "edgestill demo --out" in r.stdout


def test_unknown_command_names_the_closest() -> None:
    r = edgestill("dmeo")
    assert r.returncode == 2
    assert "No such command 'dmeo'" in r.stderr and "Did you mean 'demo'?" in r.stderr
    assert "Traceback" not in r.stderr


def test_unknown_option_names_the_closest() -> None:
    r = edgestill("demo", "--quik")
    assert r.returncode == 2
    assert "--quick" in r.stderr
    assert "Traceback" not in r.stderr


def test_demo_refuses_a_foreign_non_empty_folder(tmp_path: Path) -> None:
    """Bad input: --out is a folder edgestill did not write. Exit 2, nothing touched."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    before = sorted(p.name for p in out.iterdir())
    r = edgestill("demo", "--quick", "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert "not empty" in r.stderr and "nothing was touched" in r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == before
    assert (out / "thesis.tex").read_text() == "precious"


def test_demo_refuses_a_file_as_out(tmp_path: Path) -> None:
    """Bad input: --out names an existing file."""
    f = tmp_path / "report.txt"
    f.write_text("x")
    r = edgestill("demo", "--quick", "--out", str(f))
    assert r.returncode == 2
    assert "is a file" in r.stderr
    assert f.read_text() == "x"


def test_a_deliberate_exit_code_is_not_turned_into_an_internal_error() -> None:
    """A command that exits 1 for a failed check must exit 1, not 3."""
    import pytest
    import typer

    from edgestill.cli import run_command

    def body() -> None:
        raise typer.Exit(1)

    with pytest.raises(typer.Exit) as info:
        run_command(body)
    assert info.value.exit_code == 1


def _command_paths() -> list[tuple[str, ...]]:
    """Every command and group registered on the app, as argument paths ((), ("bench",), ...)."""
    import typer.main

    from edgestill.cli import _register_commands, app

    _register_commands()
    paths: list[tuple[str, ...]] = []

    def walk(cmd, path: tuple[str, ...]) -> None:  # a group has .commands (typer may vendor its own click)
        paths.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return paths


def test_dash_h_is_help_on_every_command() -> None:
    from typer.testing import CliRunner

    from edgestill.cli import app

    paths = _command_paths()
    assert {("bench",), ("demo",), ("export",), ("quantize",)} <= set(paths), paths
    runner = CliRunner()
    for path in paths:
        short = runner.invoke(app, [*path, "-h"], prog_name="edgestill")
        long = runner.invoke(app, [*path, "--help"], prog_name="edgestill")
        assert short.exit_code == 0, (path, short.output)
        assert "Usage: edgestill" in short.output and "-h, --help" in short.output, (path, short.output)
        assert short.output == long.output, path


def test_dash_h_from_the_shell() -> None:
    r = edgestill("-h")
    assert r.returncode == 0 and "Usage: edgestill" in r.stdout and "Examples" in r.stdout
    r = edgestill("bench", "-h")
    assert r.returncode == 0 and "Usage: edgestill bench" in r.stdout, r.stderr
