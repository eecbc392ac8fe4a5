"""Every error edgestill raises on purpose, with the exit code the CLI maps it to.

Exit codes: 0 ok; 1 a check failed (gate, parity, accuracy budget); 2 bad input or usage;
3 an internal or runtime failure.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EdgestillError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 3


class InputError(EdgestillError):
    """Bad input or usage: a path, a value, a file that is not what it claims to be."""

    exit_code = 2


class ConfigError(InputError):
    """A config or recipe value that is invalid; the message names the key and the valid choices."""


class UnknownNameError(InputError):
    """A name that is not registered; the message lists the valid names and the closest match."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]):
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        super().__init__(f"unknown {kind} {name!r}.{did_you_mean(name, self.valid)} Valid {kind}s: {', '.join(self.valid)}.")


class UnsupportedError(InputError):
    """The model uses an op or construct a target format cannot express; the message names it and what to try."""


class CheckFailed(EdgestillError):
    """A check the user asked for failed (gate, parity, accuracy budget)."""

    exit_code = 1


class ParityError(CheckFailed):
    """An exported artifact does not match its torch reference within tolerance."""

    def __init__(self, message: str, failures: list[dict] | None = None):
        super().__init__(message)
        self.failures = failures or []


class RuntimeFailure(EdgestillError):
    """A runtime or conversion library failed in a way that is not the user's input."""

    exit_code = 3


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """Return ' Did you mean X?' for the closest valid name, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""
