"""Real OpenSSH servers on 127.0.0.1 for the SSH transport and lab tests.

Each server gets its own host key, client key, authorized_keys, known_hosts and sshd_config in a temporary folder and
runs ``/usr/sbin/sshd -D -e -f CONFIG`` on a free loopback port. The "device" python is this test's python (it has
numpy and the runtimes); what runs there is the uploaded runner bundle. Without sshd the tests are skipped outside CI
(``make test`` installs Debian's openssh-server) and fail in CI, where they must run.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SSHD = "/usr/sbin/sshd"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ssh: starts a real OpenSSH server on 127.0.0.1 (make test installs openssh-server)")


def _require_sshd() -> None:
    if not Path(SSHD).is_file() or shutil.which("ssh-keygen") is None:
        if os.environ.get("CI"):
            pytest.fail(f"{SSHD} or ssh-keygen is missing in CI: `make test` installs openssh-server (make sshd).")
        pytest.skip(f"{SSHD} is not installed: run `make sshd` (apt-get install openssh-server) to run the SSH tests")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path, kind: str = "ed25519") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "edgestill-test", "-f", str(path)], check=True,
                   capture_output=True)
    return path


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


@dataclass
class Sshd:
    """One running sshd and the files a client needs to reach it."""

    folder: Path
    port: int
    host_key: Path
    client_key: Path
    known_hosts: Path
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(default=Path("/dev/null"))

    def entry(self, name: str = "loop", **over: Any) -> dict[str, Any]:
        """An inventory device (a dict, as in devices.yaml) for this server."""
        d = {"name": name, "profile": "host", "transport": "ssh", "host": "127.0.0.1", "port": self.port,
             "user": _user(), "key_file": str(self.client_key), "known_hosts": str(self.known_hosts),
             "python": sys.executable, "workdir": str(self.folder / "device-work"), "connect_timeout_s": 20,
             "retries": 0}
        d.update(over)
        return d

    def stop(self) -> None:
        """Kill the server and every session it started (a device that goes down, not a clean shutdown)."""
        if self.proc is None:
            return
        for pid in [self.proc.pid, *_descendants(self.proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        self.proc = None


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def start_sshd(folder: Path, *, host_key_kind: str = "ed25519") -> Sshd:
    _require_sshd()
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation needs it
    host_key = _keygen(folder / f"host_{host_key_kind}", host_key_kind)
    client_key = _keygen(folder / "client_ed25519")
    (folder / "authorized_keys").write_text((folder / "client_ed25519.pub").read_text())
    port = _free_port()
    pub = (folder / f"host_{host_key_kind}.pub").read_text().split()
    known = folder / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
    cfg = folder / "sshd_config"
    cfg.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {folder / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\n"
        f"PidFile {folder / 'sshd.pid'}\nStrictModes no\nUsePAM no\nSubsystem sftp internal-sftp\n"
        "MaxStartups 50\nMaxSessions 50\nLogLevel ERROR\n"
    )
    log = folder / "sshd.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stdout=err, stderr=err, start_new_session=True)
    server = Sshd(folder, port, host_key, client_key, known, proc, log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited {proc.returncode}: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port} within 10 s: {log.read_text()}")


@pytest.fixture
def sshd_factory(tmp_path: Path) -> Iterator[Any]:
    """Start servers on demand (``sshd_factory("name")``); all are stopped at the end of the test."""
    servers: list[Sshd] = []

    def make(name: str = "dev", **kw: Any) -> Sshd:
        s = start_sshd(tmp_path / f"sshd-{name}", **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """One server shared by a module's tests that do not stop it."""
    s = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield s
    s.stop()


def write_inventory(path: Path, devices: list[dict[str, Any]]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"schema": "edgestill-inventory", "schema_version": 1, "devices": devices},
                                   sort_keys=False))
    return path
