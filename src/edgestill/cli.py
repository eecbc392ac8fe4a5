"""The command line: each command parses, calls one API function, renders, and maps errors to exit codes."""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from edgestill import __version__
from edgestill.errors import EdgestillError
from edgestill.signals import Terminated

app = typer.Typer(
    name="edgestill",
    help=(
        "Distill a compact student from a teacher, quantize it, export it to ONNX, TFLite and OpenVINO, "
        "validate every file against torch, and measure accuracy and latency.\n\n"
        "\b\nExamples:\n"
        "  edgestill demo --out demo-out         # the whole chain on built-in data\n"
        "  edgestill demo --quick --out /tmp/d   # a small, fast run of the same chain\n"
        "  edgestill bench demo-out/artifacts/*.manifest.json --threads 1,2 --json"
    ),
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},  # click contexts pass it on to every subcommand
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

LOG_DIR = Path(".edgestill") / "logs"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgestill {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """edgestill: distill, quantize, export and benchmark models for edge devices."""


def run_command(fn: Callable[[], Any]) -> Any:
    """Run a command body; an EdgestillError becomes its message and exit code, anything else exit 3 + log."""
    try:
        return fn()
    except typer.Exit:  # a deliberate exit code (e.g. 1 for a failed check), not an internal error
        raise
    except EdgestillError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except Terminated:  # from edgestill.signals
        typer.echo("terminated (SIGTERM): finished stages and stored results are kept; rerun to continue", err=True)
        raise typer.Exit(143) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: finished stages and stored results are kept; rerun to continue", err=True)
        raise typer.Exit(130) from None
    except Exception as exc:  # an internal failure: keep the traceback in a log file, not on the terminal
        from edgestill.extras import missing_extra_error

        if (missing := missing_extra_error(exc)) is not None:  # torch etc. not installed: name the extra, exit 2
            typer.echo(f"error: {missing}", err=True)
            raise typer.Exit(missing.exit_code) from None
        log, why_not = _save_traceback()
        where = f"Traceback written to {log}." if log is not None else f"(the traceback could not be written: {why_not})"
        try:
            said = str(exc)
        except Exception:  # noqa: BLE001 - an exception whose __str__ fails
            said = "(its message could not be read)"
        _echo_err(f"internal error: {type(exc).__name__}: {said}. {where}")
        raise typer.Exit(3) from None


def _echo_err(text: str) -> None:
    """``text`` on stderr; a closed or broken stderr is not a second failure."""
    try:
        typer.echo(text, err=True)
    except (OSError, ValueError):
        pass


def _write_crash_log() -> Path:
    """Write the current traceback to a new file and return its path (see :func:`_save_traceback`).

    Raises:
        OSError: neither the log folder nor the temp folder could take it (the message says why for each).
    """
    path, why_not = _save_traceback()
    if path is None:
        raise OSError(f"the traceback could not be written: {why_not}")
    return path


def _save_traceback() -> tuple[Path | None, str]:
    """Write the current traceback to a new file; return its path, or ``(None, why)`` when no file could be written.

    Never raises: it runs while an error is already being reported, and a full disk (ENOSPC), a read-only file system
    or an unwritable temp folder must not turn one failure into a traceback on the terminal.

    ``.edgestill/logs/last-error.log`` is replaced atomically (a fresh temporary file, then a rename), so a symlink
    planted at that name is replaced, never written through; when that folder cannot be written, a new file with a
    unique name is created exclusively in the temp folder (never an existing file or a planted symlink).
    """
    try:
        text = traceback.format_exc()
    except Exception as exc:  # noqa: BLE001 - e.g. MemoryError formatting a huge traceback
        text = f"(the traceback could not be formatted: {type(exc).__name__}: {exc})\n"
    reasons = []
    try:
        from edgestill.outdir import write_text_atomic

        LOG_DIR.mkdir(parents=True, exist_ok=True)
        path = LOG_DIR / "last-error.log"
        write_text_atomic(path, text)
        return path, ""
    except Exception as exc:  # noqa: BLE001 - OSError above all; whatever it is, try the temp folder
        reasons.append(f"{LOG_DIR}: {_os_reason(exc)}")
    name = None
    try:
        import tempfile

        fd, name = tempfile.mkstemp(prefix="edgestill-last-error-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return Path(name), ""
    except Exception as exc:  # noqa: BLE001
        reasons.append(f"temp folder: {_os_reason(exc)}")
        if name is not None:  # a partial file would look like a whole log
            try:
                os.unlink(name)
            except OSError:
                pass
    return None, "; ".join(reasons)


def _os_reason(exc: BaseException) -> str:
    """``No space left on device`` rather than ``[Errno 28] No space left on device: '/x/y'``."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f" ({exc.filename})" if exc.filename else "")
    return f"{type(exc).__name__}: {exc}"


def echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


def _register_commands() -> None:
    """Import every module of ``edgestill.commands``: each one that defines a command adds it to ``app``."""
    import importlib
    import pkgutil

    import edgestill.commands as commands

    for module in sorted(m.name for m in pkgutil.iter_modules(commands.__path__)):
        importlib.import_module(f"edgestill.commands.{module}")


def main() -> None:
    from edgestill import signals

    signals.install()  # SIGTERM unwinds like Ctrl-C (exit 143); an interrupt a library swallows is raised again
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _register_commands()
    app(prog_name="edgestill")

