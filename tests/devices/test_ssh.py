"""The SSH transport against a real OpenSSH server on 127.0.0.1 (see conftest): a remote measurement matches a local one,
and every way a device can refuse or fail gives a failed record that says why, never a partial row."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgestill.devices.inventory import parse_inventory
from edgestill.devices.ssh import SshConnection, bench_on_ssh_device, command
from edgestill.devices.transport import runner_bundle
from edgestill.runtimes.harness import BenchOptions
from tests.benchmarks.conftest import labelled_data, write_tiny_onnx

pytestmark = pytest.mark.ssh
QUICK = BenchOptions(min_runs=20, min_seconds=0.05, stability_max_seconds=0)


def _entry(d: dict):
    doc = {"schema": "edgestill-inventory", "schema_version": 1, "devices": [d]}
    return parse_inventory(doc).devices[0]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_onnx(tmp_path_factory.mktemp("art"))


@pytest.fixture(scope="module")
def eval_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    x, y, _ = labelled_data()
    p = tmp_path_factory.mktemp("eval") / "eval.npz"
    np.savez(p, x=x, y=y)
    return p


def test_the_runner_bundle_is_torch_free_and_holds_every_runtime() -> None:
    b = runner_bundle()
    assert "edgestill.runtimes.runner" in b.modules and "edgestill.runtimes.onnxruntime" in b.modules
    assert not any(m.startswith(("edgestill.compress", "edgestill.export", "edgestill.devices", "edgestill.chain"))
                   for m in b.modules)
    assert runner_bundle().sha256 == b.sha256  # deterministic, so a device caches it by sha256


def test_remote_record_matches_local_in_schema_and_value(sshd, artifact: Path, eval_npz: Path, tmp_path: Path) -> None:
    from edgestill.benchmarks.bench import benchmark
    from edgestill.runtimes.base import RuntimeOptions

    # a workdir a shell would run code from, were any command built from a string: it must be taken as a path
    trap = tmp_path / "pwned"
    workdir = f"{sshd.folder}/work dir $(touch {trap}); echo"
    entry = _entry(sshd.entry("loop", workdir=workdir))
    remote = bench_on_ssh_device(entry, [artifact], [1], bench=QUICK, eval_data=eval_npz)
    local = benchmark(artifact, options=RuntimeOptions(threads=1), bench=QUICK, eval_data=eval_npz)
    assert [m.kind for m in remote] == ["measured"], remote[0].error
    r, loc = remote[0], local
    assert set(r.to_dict()) == set(loc.to_dict())
    assert set(loc.settings) <= set(r.settings) and set(loc.provenance) <= set(r.provenance)
    assert r.provenance["device"] == {"id": "loop", "profile": "host", "transport": "ssh", "host": "127.0.0.1"}
    assert set(r.provenance["device_state"]) >= {"governor", "temperature_c", "throttled"}
    assert r.provenance["torch_imported"] is False
    # accuracy is measured on the device with its own runtime: the same data and model give the same score
    assert r.accuracy is not None and r.accuracy.value == loc.accuracy.value and r.accuracy.n == 20
    ratio = r.latency.p50_ms / loc.latency.p50_ms
    assert 0.1 < ratio < 10, f"remote p50 {r.latency.p50_ms} ms vs local {loc.latency.p50_ms} ms"  # a shared machine
    assert not trap.exists()
    work = Path(workdir)
    assert sorted(p.name for p in work.iterdir()) == ["bundles"]  # the job folder was removed, the bundle cached
    bundle = work / "bundles" / runner_bundle().filename
    mtime = bundle.stat().st_mtime_ns
    waits: list[float] = []
    cooled = _entry(sshd.entry("loop", workdir=workdir, cooldown_s=7))
    again = bench_on_ssh_device(cooled, [artifact], [1, 2], bench=QUICK, sleep=waits.append)
    assert [(m.kind, m.threads) for m in again] == [("measured", 1), ("measured", 2)]
    assert waits == [7.0]  # the cool-down between cells, not before the first
    assert bundle.stat().st_mtime_ns == mtime  # uploaded once


def test_an_artifact_changed_since_export_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    from edgestill.errors import InputError

    manifest = write_tiny_onnx(tmp_path / "art")
    with (tmp_path / "art" / "tiny.onnx").open("ab") as f:
        f.write(b"\0")
    entry = _entry({"name": "never", "profile": "host", "transport": "ssh", "host": "127.0.0.1", "port": 9,
                    "user": "pi", "key_file": str(tmp_path / "nokey")})
    with pytest.raises(InputError, match="changed since it was exported"):
        bench_on_ssh_device(entry, [manifest], [1], sleep=lambda s: pytest.fail("no connection was to be tried"))


def test_an_unknown_host_key_is_refused(sshd, artifact: Path, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    [m] = bench_on_ssh_device(_entry(sshd.entry(known_hosts=str(empty))), [artifact], [1], bench=QUICK)
    assert m.kind == "failed" and m.settings["failure"] == "host_key"
    assert "is not in" in m.error and "ssh-ed25519" in m.error and "SHA256:" in m.error and "ssh-keyscan" in m.error
    assert m.latency is None


def test_a_changed_host_key_is_refused(sshd, artifact: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known = tmp_path / "known_hosts"
    kind, key = (other.with_suffix(".pub")).read_text().split()[:2]
    known.write_text(f"[127.0.0.1]:{sshd.port} {kind} {key}\n")
    [m] = bench_on_ssh_device(_entry(sshd.entry(known_hosts=str(known))), [artifact], [1], bench=QUICK)
    assert m.kind == "failed" and m.settings["failure"] == "host_key"
    assert "CHANGED" in m.error and "ssh-keygen -R" in m.error


def test_a_refused_client_key_is_an_auth_failure(sshd, artifact: Path, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    [m] = bench_on_ssh_device(_entry(sshd.entry(key_file=str(stranger), retries=3)), [artifact], [1], bench=QUICK,
                              sleep=lambda s: pytest.fail("an auth failure must not be retried"))
    assert m.kind == "failed" and m.settings["failure"] == "auth"
    assert "refused the key" in m.error and "authorized_keys" in m.error


def test_an_unreachable_port_fails_fast_after_bounded_retries(sshd, artifact: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    waits: list[float] = []
    t0 = time.monotonic()
    [m] = bench_on_ssh_device(_entry(sshd.entry(port=port, retries=3)), [artifact], [1], bench=QUICK, sleep=waits.append)
    assert time.monotonic() - t0 < 5
    assert m.kind == "failed" and m.settings["failure"] == "unreachable" and f"127.0.0.1]:{port}" in m.error
    assert waits == [0.5, 1.0, 2.0]  # exponential backoff, then it gives up


def test_a_missing_python_numpy_or_runtime_on_the_device_is_named(sshd, artifact: Path, tmp_path: Path) -> None:
    [m] = bench_on_ssh_device(_entry(sshd.entry("nopy", python="/nonexistent/python3")), [artifact], [1], bench=QUICK)
    assert m.kind == "failed" and m.settings["failure"] == "missing_runtime"
    assert "'nopy'" in m.error and "/nonexistent/python3" in m.error
    # a python without site-packages: no numpy
    bare = tmp_path / "bare-python"
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    bare.chmod(0o755)
    [m] = bench_on_ssh_device(_entry(sshd.entry(python=str(bare))), [artifact], [1], bench=QUICK)
    assert m.settings["failure"] == "missing_runtime" and "no numpy" in m.error
    # numpy, but an onnxruntime that does not import there
    shadow = tmp_path / "shadow" / "onnxruntime"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no onnxruntime on this board')\n")
    wrapped = tmp_path / "python-without-ort"
    wrapped.write_text(f"#!/bin/sh\nPYTHONPATH=\"$PYTHONPATH:{shadow.parent}\" exec {sys.executable} \"$@\"\n")
    wrapped.chmod(0o755)
    [m] = bench_on_ssh_device(_entry(sshd.entry(python=str(wrapped))), [artifact], [1], bench=QUICK)
    assert m.settings["failure"] == "missing_runtime"
    assert "onnxruntime does not import" in m.error and "no onnxruntime on this board" in m.error
    assert "openvino" in m.error  # what does import there is listed


def test_a_cell_past_its_timeout_is_killed_on_the_device(sshd, artifact: Path) -> None:
    entry = _entry(sshd.entry("slow"))
    [m] = bench_on_ssh_device(entry, [artifact], [1], bench=BenchOptions(min_runs=10**6, min_seconds=60, max_runs=10**7, max_seconds=120),
                              timeout_s=2)
    assert m.kind == "failed" and m.settings["failure"] == "timeout" and "2 s" in m.error
    time.sleep(0.3)
    runners = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p).count(sshd.folder.name)
               and "edgestill.runtimes.runner" in _cmdline(p)]
    assert runners == []


def _cmdline(p: Path) -> str:
    try:
        return (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_commands_quote_every_argument() -> None:
    assert command("rm", "-rf", "--", "/tmp/a b; rm -rf ~") == "rm -rf -- '/tmp/a b; rm -rf ~'"


def test_a_connection_runs_commands_with_status_and_output(sshd) -> None:
    with SshConnection(_entry(sshd.entry())) as conn:
        r = conn.run(command("sh", "-c", "echo out; echo err >&2; exit 7"))
    assert (r.exit_status, r.stdout, r.stderr) == (7, "out\n", "err\n")


def test_a_file_corrupted_in_transit_is_caught_on_the_device(sshd, artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_put = SshConnection.put

    def flip_a_byte(self, source, remote):  # what a failing SD card or a full disk can do to an upload
        if str(remote).endswith(".onnx"):
            data = bytearray(Path(source).read_bytes())
            data[-1] ^= 0xFF
            source = bytes(data)
        return real_put(self, source, remote)

    monkeypatch.setattr(SshConnection, "put", flip_a_byte)
    [m] = bench_on_ssh_device(_entry(sshd.entry("flaky")), [artifact], [1], bench=QUICK)
    assert m.kind == "failed" and m.settings["failure"] == "crash"
    assert "tiny.onnx arrived with sha256" in m.error and m.latency is None

