"""Ctrl-C and SIGTERM that no library can swallow.

The CLI installs :func:`install`: SIGINT raises ``KeyboardInterrupt`` and SIGTERM raises :class:`Terminated` (a
``KeyboardInterrupt``) where the process is, and both are also remembered. Some conversion libraries catch every
exception around their work (and fall back to another path), so a ``KeyboardInterrupt`` raised inside them can be
lost; long-running code calls :func:`check` between steps, which raises the remembered interrupt again.
"""

from __future__ import annotations

import signal
import threading

_pending: list[int] = []


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI job cancelled, a container stopped): unwinds like Ctrl-C; the CLI exits 143."""


def _handler(signum: int, frame: object) -> None:
    _pending.append(signum)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def install() -> None:
    """Route SIGINT and SIGTERM through :func:`_handler` (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handler)
        signal.signal(signal.SIGTERM, _handler)


def check() -> None:
    """Raise the interrupt received earlier, if any (again: a library may have swallowed the first one)."""
    if _pending:
        raise Terminated() if _pending[-1] == signal.SIGTERM else KeyboardInterrupt()
