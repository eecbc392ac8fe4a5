"""Shared fixtures. The network is blocked for every test: nothing may be downloaded at run time."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import numpy as np
import pytest


class NetworkBlocked(RuntimeError):
    pass


def _is_local(address: object) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX paths
        return True
    host = address[0] if isinstance(address, tuple) else address
    return str(host) in {"127.0.0.1", "::1", "localhost", "0.0.0.0"} or str(host).startswith("127.")


@pytest.fixture(autouse=True)
def _block_network(monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect = socket.socket.connect

    def guarded_connect(self: socket.socket, address: object) -> object:
        if not _is_local(address):
            raise NetworkBlocked(f"test tried to reach {address!r}: edgestill must not use the network")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the teacher cache of tests (and of the CLI subprocesses they start) out of the user's home."""
    old = os.environ.get("EDGESTILL_CACHE")
    os.environ["EDGESTILL_CACHE"] = str(tmp_path_factory.getbasetemp() / "edgestill-cache")
    yield
    if old is None:
        os.environ.pop("EDGESTILL_CACHE", None)
    else:
        os.environ["EDGESTILL_CACHE"] = old


# --- a tiny seeded CNN and seeded data, shared by the export, quantize and runtime tests ---
def build_tiny_cnn(seed: int = 0):
    """The tiny CNN every export test uses; BN running stats are randomised so folding matters."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    def block(cin: int, cout: int, stride: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6())

    model = nn.Sequential(block(3, 8, 2), block(8, 16, 2), block(16, 16, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_cnn():
    return build_tiny_cnn()


@pytest.fixture(scope="session")
def example_inputs():
    import torch

    return (torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)),)


@pytest.fixture(scope="session")
def validation_x() -> np.ndarray:
    return np.random.default_rng(10).standard_normal((64, 3, 32, 32)).astype(np.float32)


@pytest.fixture(scope="session")
def calibration_x() -> np.ndarray:
    return np.random.default_rng(20).standard_normal((32, 3, 32, 32)).astype(np.float32)
