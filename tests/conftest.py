"""Shared fixtures. The network is blocked for every test: nothing may be downloaded at run time."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

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
