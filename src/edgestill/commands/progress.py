"""A rich progress display that implements the chain engine's Reporter (on stderr, so --json stays clean)."""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class RichReporter:
    """Shows one bar per stage; a finished stage leaves a line with its wall time."""

    def __init__(self, enabled: bool = True, file: TextIO | None = None):
        self.console = Console(file=file, stderr=file is None)
        self._progress = Progress(
            TextColumn("[bold]{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            disable=not enabled,
        )
        self._task = None
        self.enabled = enabled

    def __enter__(self) -> RichReporter:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def stage(self, name: str, total: int | None = None) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(name, total=total, info="")

    def advance(self, completed: int, total: int | None = None, info: str = "") -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=completed, total=total, info=info)

    def done(self, name: str, seconds: float, info: str = "") -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
        if self.enabled:
            self.console.print(f"[green]✓[/] {name:<10} {seconds:6.1f} s {info}")
