"""Model factories for export tests, importable as ``tests.export.models:NAME`` (the CLI's --model factory form)."""

from __future__ import annotations

import torch
from torch import nn

from tests.conftest import build_tiny_cnn


class ExportOnlyOffset(nn.Module):
    """Identity in eager mode, +0.5 when traced or exported: a layer that breaks parity only after export.

    This is the real failure users meet (a forward that branches on tracing/exporting), built on purpose.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing() or torch.compiler.is_exporting():
            return x + 0.5
        return x


class BrokenNet(nn.Module):
    """The tiny CNN with ``ExportOnlyOffset`` between its stem and its head, as module ``shift``."""

    def __init__(self) -> None:
        super().__init__()
        base = build_tiny_cnn()
        self.stem = base[:2]
        self.shift = ExportOnlyOffset()
        self.head = base[2:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.shift(self.stem(x)))


class EigNet(nn.Module):
    """Uses torch.linalg.eigvals, which no export format supports."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.eigvals(x[0, 0]).real


def tiny_cnn(num_classes: int = 10) -> nn.Module:
    return build_tiny_cnn()


def broken_net() -> nn.Module:
    return BrokenNet().eval()


def eig_net() -> nn.Module:
    return EigNet()


def not_a_model() -> str:
    return "a string, not a module"


def exits_factory() -> nn.Module:
    """A factory that ends the process the way a script's ``main()`` might: ``sys.exit(0)`` while building the model."""
    import sys

    sys.exit(0)


def raising_factory() -> nn.Module:
    """A factory that fails the way user code does: an exception with a message."""
    raise RuntimeError("weights folder /nonexistent/weights not found\nsecond line of detail")
