"""Measure artifacts on a device over SSH (paramiko): host keys verified, key authentication only, every command from
a fixed template with each argument ``shlex.quote``-d.

A job on the device::

    <workdir>/bundles/edgestill-runner-<sha>.zip    the runner bundle, uploaded once per sha256 and reused
    <workdir>/job-<random>/                         made for this job (mode 700), removed when it ends
        a0/<manifest + model files>                 each artifact in its own folder, as its manifest lists them
        eval.npz                                    the eval data, when given
        job-0.json ...                              one runner job per cell (the local bench's schema, its
                                                    ``llm`` block the generative timing lengths asked for)

Each cell runs ``cd JOB && exec env PYTHONPATH=BUNDLE OMP_NUM_THREADS=N ... PYTHON -s -m edgestill.runtimes.runner
job-I.json``. Every file's sha256 is checked here before the upload (against its manifest) and on the device after it
(the probe hashes what arrived; the runner checks the manifest again before loading); the runner prints one JSON
document, and that becomes the cell's Measurement with the device
and its state (governor, clocks, temperature, throttling) in its provenance.

Failures never raise out of :func:`bench_on_ssh_device`: each cell it could not measure is a ``kind="failed"`` record
with ``settings["failure"]`` one of ``unreachable``, ``auth``, ``host_key``, ``missing_runtime``, ``timeout``,
``crash``, ``bad_input`` or ``error`` (see :mod:`edgestill.devices.transport`). An unknown or changed host key and a
refused key are the user's to fix (exit 2 where a command ends on them); the rest are device faults (exit 3).
Connection attempts that fail transiently (refused, timed out, reset) are retried ``retries`` times with exponential
backoff; authentication and host-key failures are never retried.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import json
import logging
import secrets
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from edgestill.errors import EdgestillError, InputError
from edgestill.devices.transport import (DEVICE_STATE_CODE, TRANSPORTS, AuthRefused, DeviceFault, DeviceTimeout, DeviceUnreachable,
                                         HostKeyRefused, MissingOnDevice, failed_cell, failure_of, runner_bundle,
                                         runtime_options)
from edgestill.record import Measurement, measurement_from_dict
from edgestill.runtimes.generate import DEFAULT_GEN_TOKENS, DEFAULT_PROMPT_TOKENS, check_lengths

if TYPE_CHECKING:
    import paramiko

    from edgestill.devices.inventory import DeviceEntry
    from edgestill.runtimes.harness import BenchOptions

BACKOFF_S = 0.5  # first retry delay; doubled per attempt, capped at BACKOFF_MAX_S
BACKOFF_MAX_S = 8.0
COMMAND_TIMEOUT_S = 60.0  # mkdir, probe, cleanup: small commands
SFTP_TIMEOUT_S = 60.0  # no reply to one SFTP request for this long: the device is gone
KEEPALIVE_S = 15  # seconds between keepalives on an idle link
_REFUSALS = frozenset({errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOSPC, errno.EDQUOT, errno.EROFS})
"""What an SFTP server answers for a file it will not write; any other error on a dead link is the link."""
MAX_OUTPUT_BYTES = 64 << 20  # a runner's JSON with raw samples is < 1 MB; more is a runaway process
STDERR_TAIL_CHARS = 2000
BAD_INPUT_EXIT = 2  # the runner's exit code for bad input
NOT_FOUND_EXITS = (126, 127)  # the shell's: found but not executable, not found


@dataclass(frozen=True)
class CommandResult:
    """What a command on the device gave: its exit status (None when the connection dropped first) and output."""

    exit_status: int | None
    stdout: str
    stderr: str


def command(*parts: str) -> str:
    """One shell command from fixed words and arguments, each argument quoted (``shlex.quote``)."""
    return " ".join(shlex.quote(str(p)) for p in parts)


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a public key (as ``ssh-keygen -lf`` prints it)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def _keyscan_type(key_name: str) -> str:
    """The ``ssh-keyscan -t`` and ``/etc/ssh/ssh_host_<type>_key`` name of a key algorithm."""
    if "ed25519" in key_name:
        return "ed25519"
    if "ecdsa" in key_name:
        return "ecdsa"
    return "rsa" if "rsa" in key_name else key_name


def _host_label(entry: DeviceEntry) -> str:
    return entry.host if entry.port == 22 else f"[{entry.host}]:{entry.port}"


class SshConnection:
    """One SSH connection to an inventory device (a context manager).

    Raises (from :meth:`connect`):
        HostKeyRefused: no known_hosts file, the host's key is not in it, or it differs from the recorded one.
        AuthRefused: the key file is missing, unreadable, encrypted, or the device refused it.
        DeviceUnreachable: no connection after ``entry.retries`` retries with exponential backoff.
    """

    def __init__(self, entry: DeviceEntry, *, sleep: Callable[[float], None] = time.sleep):
        if entry.transport != "ssh" or not entry.host or not entry.user:
            raise InputError(f"device {entry.name!r} is not an ssh device with host and user (transport "
                             f"{entry.transport!r}).")
        self.entry = entry
        self._sleep = sleep
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self.attempts = 0

    def __enter__(self) -> SshConnection:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connecting -----------------------------------------------------------------------------------------------
    def _pkey(self) -> paramiko.PKey:
        import paramiko

        e = self.entry
        path = e.key_file
        if path is None or not Path(path).is_file():
            raise AuthRefused(f"device {e.name!r}: key_file {path} does not exist; name the private key whose public "
                              f"key is in {e.user}@{e.host}'s ~/.ssh/authorized_keys (ssh devices use keys only).")
        try:
            return paramiko.PKey.from_path(str(path))
        except paramiko.PasswordRequiredException:
            raise AuthRefused(f"device {e.name!r}: key_file {path} is encrypted with a passphrase, and edgestill does "
                              "not ask for passphrases; use a key without one for the device lab (restricted to this "
                              "use on the device), or decrypt a copy with `ssh-keygen -p`.") from None
        except (paramiko.SSHException, OSError, ValueError, TypeError) as exc:
            raise AuthRefused(f"device {e.name!r}: key_file {path} is not a private key paramiko can read ({exc}); "
                              "give an OpenSSH private key (ssh-keygen -t ed25519).") from None

    def _policy(self) -> Any:
        import paramiko

        e = self.entry

        class _Refuse(paramiko.MissingHostKeyPolicy):
            def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> None:
                kind = _keyscan_type(key.get_name())
                raise HostKeyRefused(
                    f"device {e.name!r}: the host key of {_host_label(e)} ({key.get_name()}, {fingerprint(key)}) is not "
                    f"in {e.known_hosts}, so edgestill refuses to connect (an unknown key is never accepted on its "
                    f"own). Check the fingerprint on the device's console (`ssh-keygen -lf /etc/ssh/ssh_host_{kind}_"
                    f"key.pub`), then add it: `ssh-keyscan -p {e.port} -t {kind} {e.host} >> {e.known_hosts}`.")

        return _Refuse()

    def connect(self) -> None:
        """Connect (see the class docstring for what is raised); retries only transient failures."""
        import paramiko

        e = self.entry
        quiet = logging.getLogger("paramiko")
        if quiet.level == logging.NOTSET:  # its socket errors are reported as this module's errors instead
            quiet.setLevel(logging.CRITICAL)
        known = Path(e.known_hosts) if e.known_hosts else None
        if known is None or not known.is_file():
            raise HostKeyRefused(f"device {e.name!r}: known_hosts file {known} does not exist, so the host key of "
                                 f"{_host_label(e)} cannot be verified. Create it with the device's verified key: "
                                 f"`ssh-keyscan -p {e.port} {e.host} >> {known}` (check the fingerprint on the device).")
        pkey = self._pkey()
        started = time.monotonic()
        delay = BACKOFF_S
        last: BaseException | None = None
        for attempt in range(e.retries + 1):
            self.attempts = attempt + 1
            client = paramiko.SSHClient()
            try:
                client.load_host_keys(str(known))
            except (OSError, paramiko.SSHException) as exc:
                client.close()
                raise HostKeyRefused(f"device {e.name!r}: cannot read known_hosts {known} ({exc}).") from None
            client.set_missing_host_key_policy(self._policy())
            try:
                client.connect(e.host, port=e.port, username=e.user, pkey=pkey, look_for_keys=False,
                               allow_agent=False, timeout=e.connect_timeout_s, banner_timeout=e.connect_timeout_s,
                               auth_timeout=e.connect_timeout_s, channel_timeout=e.connect_timeout_s)
                transport = client.get_transport()
                if transport is not None:
                    transport.set_keepalive(KEEPALIVE_S)  # a device that vanishes mid-cell is noticed
                self._client = client
                return
            except HostKeyRefused:
                client.close()
                raise
            except paramiko.BadHostKeyException as exc:
                client.close()
                kind = _keyscan_type(exc.key.get_name())
                raise HostKeyRefused(
                    f"device {e.name!r}: the host key of {_host_label(e)} has CHANGED: it presents {exc.key.get_name()} "
                    f"{fingerprint(exc.key)}, but {known} records {fingerprint(exc.expected_key)}. Either the device "
                    "was reinstalled or someone is intercepting the connection; edgestill refuses to connect. If you "
                    f"know it was reinstalled, check the new fingerprint on its console (`ssh-keygen -lf "
                    f"/etc/ssh/ssh_host_{kind}_key.pub`), remove the old entry (`ssh-keygen -R '{_host_label(e)}' -f "
                    f"{known}`) and add the new one (`ssh-keyscan -p {e.port} -t {kind} {e.host} >> {known}`).") from None
            except paramiko.AuthenticationException as exc:
                client.close()
                raise AuthRefused(f"device {e.name!r}: {e.user}@{_host_label(e)} refused the key {e.key_file} "
                                  f"({exc}). Add its public key ({e.key_file}.pub) to ~{e.user}/.ssh/authorized_keys on "
                                  "the device, or fix 'user'/'key_file' in the inventory.") from None
            except (OSError, EOFError, paramiko.SSHException) as exc:  # refused, timed out, reset, no banner: transient
                client.close()
                last = exc
                if attempt < e.retries:
                    self._sleep(delay)
                    delay = min(delay * 2, BACKOFF_MAX_S)
        why = str(last) or type(last).__name__
        raise DeviceUnreachable(f"device {e.name!r}: cannot connect to {e.user}@{_host_label(e)} ({why}) after "
                                f"{self.attempts} attempt(s) in {time.monotonic() - started:.1f} s. Check that the device is "
                                "on, its sshd is running and the host/port in the inventory are right.")

    def close(self) -> None:
        for obj in (self._sftp, self._client):
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # noqa: BLE001 - closing a dead connection
                    pass
        self._sftp = self._client = None

    @property
    def alive(self) -> bool:
        t = self._client.get_transport() if self._client is not None else None
        return bool(t is not None and t.is_active())

    def _lost(self, what: str) -> DeviceUnreachable:
        e = self.entry
        return DeviceUnreachable(f"device {e.name!r}: the connection to {_host_label(e)} was lost while {what}; the "
                                 "device went down, rebooted or left the network.")

    # -- commands and files ------------------------------------------------------------------------------------------
    def run(self, cmd: str, *, timeout_s: float = COMMAND_TIMEOUT_S, what: str = "running a command",
            on_timeout: Callable[[], None] | None = None) -> CommandResult:
        """Run ``cmd`` (built with :func:`command` and fixed template text only) and collect its output.

        Raises:
            DeviceTimeout: it ran past ``timeout_s`` (``on_timeout`` is called first, e.g. to kill it on the device).
            DeviceUnreachable: the connection dropped.
        """
        if self._client is None:
            raise self._lost(what)
        try:
            transport = self._client.get_transport()
            if transport is None or not transport.is_active():
                raise self._lost(what)
            chan = transport.open_session(timeout=self.entry.connect_timeout_s)
            chan.exec_command(cmd)
        except (OSError, EOFError) as exc:
            raise self._lost(f"{what} ({exc})") from None
        except Exception as exc:  # paramiko.SSHException: the session could not be opened
            if isinstance(exc, EdgestillError):
                raise
            raise self._lost(f"{what} ({exc})") from None
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                busy = False
                while chan.recv_ready():
                    out += chan.recv(1 << 16)
                    busy = True
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(1 << 16)
                    busy = True
                if len(out) > MAX_OUTPUT_BYTES or len(err) > MAX_OUTPUT_BYTES:
                    raise DeviceFault(f"device {self.entry.name!r}: {what} printed more than "
                                      f"{MAX_OUTPUT_BYTES >> 20} MiB; stopped.")
                if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if chan.closed or not transport.is_active():
                    break
                if time.monotonic() > deadline:
                    if on_timeout is not None:
                        try:
                            on_timeout()
                        except EdgestillError:
                            pass
                    raise DeviceTimeout(f"device {self.entry.name!r}: {what} ran past {timeout_s:g} s and was killed.")
                if not busy:
                    time.sleep(0.005)
            status = chan.recv_exit_status() if chan.exit_status_ready() else None
        finally:
            chan.close()
        if status is None or status == -1:
            if not transport.is_active() or status is None:
                raise self._lost(what)
        return CommandResult(status, out.decode(errors="replace"), err.decode(errors="replace"))

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._client is None:
            raise self._lost("opening SFTP")
        if self._sftp is None:
            try:
                self._sftp = self._client.open_sftp()
                self._sftp.get_channel().settimeout(max(SFTP_TIMEOUT_S, self.entry.connect_timeout_s))
            except (OSError, EOFError) as exc:
                raise self._lost(f"opening SFTP ({exc})") from None
            except Exception as exc:  # noqa: BLE001 - paramiko.SSHException: no sftp subsystem
                raise DeviceFault(f"device {self.entry.name!r}: its sshd offers no SFTP ({exc}); enable the sftp "
                                  "Subsystem in its sshd_config.") from None
        return self._sftp

    def put(self, source: Path | bytes, remote: str) -> None:
        """Upload a local file (or bytes) to ``remote`` (its folder must exist); the size is checked after."""
        try:
            if isinstance(source, bytes):
                self.sftp.putfo(io.BytesIO(source), remote, file_size=len(source), confirm=True)
            else:
                self.sftp.put(str(source), remote, confirm=True)
        except EdgestillError:
            raise
        except Exception as exc:  # noqa: BLE001 - paramiko raises OSError, EOFError or SSHException for a dropped link
            refused = isinstance(exc, OSError) and exc.errno in _REFUSALS
            if not refused and self.dropped():
                raise self._lost(f"uploading {remote} ({type(exc).__name__}: {exc})") from None
            raise DeviceFault(f"device {self.entry.name!r}: cannot write {remote} ({exc}); check that the "
                              "inventory's workdir is writable by the user and the device has space.") from None

    def dropped(self, wait_s: float = 2.0) -> bool:
        """Whether the link is down; a reset socket may take a moment to show as such on the transport."""
        deadline = time.monotonic() + wait_s
        while self.alive:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def exists(self, remote: str, size: int | None = None) -> bool:
        try:
            st = self.sftp.stat(remote)
        except OSError:
            return False
        return size is None or st.st_size == size

    def rename(self, old: str, new: str) -> None:
        try:
            self.sftp.posix_rename(old, new)
        except OSError as exc:
            raise DeviceFault(f"device {self.entry.name!r}: cannot rename {old} to {new} ({exc}).") from None


# --- the job ----------------------------------------------------------------------------------------------------------
PROBE_CODE = DEVICE_STATE_CODE + r'''
import hashlib, json, os, sys
out = {"python": sys.version.split()[0], "executable": sys.executable}
args = sys.argv[2:]
names, files = (args[:args.index("--files")], args[args.index("--files") + 1:]) if "--files" in args else (args, [])
def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
out["bundle_sha256"] = sha256(sys.argv[1])
out["files_sha256"] = {p: sha256(p) for p in files}
try:
    import edgestill
    out["edgestill_file"] = os.path.abspath(edgestill.__file__)
except Exception as exc:
    out["edgestill_error"] = "%s: %s" % (type(exc).__name__, exc)
try:
    import numpy
    out["numpy"] = numpy.__version__
except Exception as exc:
    out["numpy_error"] = "%s: %s" % (type(exc).__name__, exc)
runtimes, errors = {}, {}
if "numpy" in out and "edgestill_file" in out:
    from edgestill.runtimes.base import BACKEND_MODULES, get_runtime
    for name in (names or sorted(BACKEND_MODULES)):
        try:
            runtimes[name] = str(get_runtime(name).version())
        except Exception as exc:
            errors[name] = ("%s: %s" % (type(exc).__name__, exc))[:400]
out["runtimes"], out["runtime_errors"] = runtimes, errors
out["device_state"] = _device_state()
out["torch_imported"] = "torch" in sys.modules
sys.stdout.write("\n" + json.dumps(out) + "\n")
'''
"""Run on the device with ``PYTHONPATH=bundle``: which python, numpy and runtimes import, that ``edgestill`` comes
from the bundle, the bundle's sha256 and the device state. Constant code; its arguments are paths and runtime names."""

STATE_CODE = DEVICE_STATE_CODE + "\nimport json, sys\nsys.stdout.write('\\n' + json.dumps(_device_state()) + '\\n')\n"


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed([ln for ln in text.splitlines() if ln.strip()]):
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            return None
        return doc if isinstance(doc, dict) else None
    return None


def _tail(text: str, chars: int = STDERR_TAIL_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= chars else "..." + text[-chars:]


@dataclass
class _Artifact:
    local: Path  # the path given
    art: Any  # edgestill.artifact.Artifact
    runtime: str
    manifest: Path | None  # None: a bare model file (the runner reads its I/O contract from the file)
    remote: str = ""  # what the job's "artifact" names on the device


def prepare_artifacts(artifacts: Sequence[str | Path], runtime: str | None) -> list[_Artifact]:
    """Load every artifact here and check its files' sha256 before anything is uploaded.

    Raises:
        InputError: a missing or malformed manifest, a file missing or changed since export, an unknown runtime.
    """
    from edgestill.runtimes.base import DEFAULT_RUNTIME, runtime_names
    from edgestill.runtimes.inspect import artifact_for, manifest_beside

    if runtime is not None and runtime not in runtime_names():
        from edgestill.errors import UnknownNameError

        raise UnknownNameError("runtime", runtime, runtime_names())
    out = []
    for a in artifacts:
        art = artifact_for(a)  # a manifest, or a bare .onnx/.tflite/.xml whose contract is read from the file
        art.verify_files()
        out.append(_Artifact(Path(a), art, runtime or DEFAULT_RUNTIME[art.format], manifest_beside(a)))
    return out


class _Job:
    """One device, one connection, one job folder: upload, probe, run the cells, clean up."""

    def __init__(self, conn: SshConnection, arts: list[_Artifact], eval_data: Path | None):
        self.conn, self.arts, self.eval_data = conn, arts, eval_data
        self.entry = conn.entry
        self.workdir = PurePosixPath(self.entry.workdir)
        self.jobdir = self.workdir / f"job-{secrets.token_hex(8)}"
        self.bundle_path = ""
        self.made_jobdir = False
        self.remote_eval: str | None = None
        self.uploaded: dict[str, str] = {}  # remote path -> the sha256 it must have on the device

    def upload(self) -> None:
        bundle = runner_bundle()
        bundles = self.workdir / "bundles"
        self._mkdir_job(bundles)
        self.bundle_path = str(bundles / bundle.filename)
        if not self.conn.exists(self.bundle_path, size=len(bundle.data)):
            self._put_bundle(bundle.data)
        for i, a in enumerate(self.arts):
            folder = self.jobdir / f"a{i}"
            names = a.art.required_files()
            dirs = sorted({str((folder / n).parent) for n in names} | {str(folder)})
            self.conn.run(command("mkdir", "-p", "--", *dirs), what="making the artifact folders")
            for n in names:
                self._put_file(a.art.directory / n, str(folder / n), a.art.files.get(n))
            if a.manifest is not None:
                self._put_file(a.manifest, str(folder / a.manifest.name))
                a.remote = str(folder / a.manifest.name)
            else:  # a model file edgestill did not write: the runner reads its I/O from the file
                a.remote = str(folder / a.art.model_file)
        if self.eval_data is not None:
            self.remote_eval = str(self.jobdir / "eval.npz")
            self._put_file(Path(self.eval_data), self.remote_eval)

    def _put_file(self, local: Path, remote: str, sha256: str | None = None) -> None:
        from edgestill.artifact import sha256_file

        self.uploaded[remote] = sha256 or sha256_file(local)  # an artifact file's: verified here against its manifest
        self.conn.put(local, remote)

    def _mkdir_job(self, bundles: PurePosixPath) -> None:
        r = self.conn.run(command("mkdir", "-p", "--", str(bundles)) + " && " + command("mkdir", "-m", "700", "--",
                          str(self.jobdir)), what="making the job folder")
        if r.exit_status != 0:
            raise DeviceFault(f"device {self.entry.name!r}: cannot make the job folder {self.jobdir} under workdir "
                              f"{self.workdir} ({_tail(r.stderr, 300) or f'exit {r.exit_status}'}); point 'workdir' "
                              "in the inventory at a folder the user may write.")
        self.made_jobdir = True

    def _put_bundle(self, data: bytes) -> None:
        tmp = f"{self.bundle_path}.{secrets.token_hex(4)}.part"
        self.conn.put(data, tmp)
        self.conn.rename(tmp, self.bundle_path)  # complete or absent under its final name, for the next job

    def probe(self, runtimes: Sequence[str], *, check_files: bool = True) -> dict[str, Any]:
        """Which python, numpy and runtimes the device has (see :data:`PROBE_CODE`), and that every uploaded file
        arrived with the sha256 it had here.

        Raises:
            MissingOnDevice: no python at the inventory's path, or no numpy.
            DeviceFault: the device imports edgestill from elsewhere than the bundle, or the probe failed.
        """
        e = self.entry
        cmd = (command("cd", str(self.jobdir)) + " && " +
               command("env", f"PYTHONPATH={self.bundle_path}", e.python, "-s", "-c", PROBE_CODE, self.bundle_path, *runtimes,
                       *(["--files", *self.uploaded] if check_files and self.uploaded else [])))
        r = self.conn.run(cmd, what="probing the device's python", timeout_s=COMMAND_TIMEOUT_S)
        doc = _last_json(r.stdout)
        if r.exit_status in NOT_FOUND_EXITS or (doc is None and "No such file" in r.stderr):
            raise MissingOnDevice(f"device {e.name!r}: its python {e.python!r} is missing or cannot run (exit "
                                  f"{r.exit_status}: {_tail(r.stderr, 300)}). Install Python 3 with numpy and a runtime "
                                  "(e.g. pip install numpy onnxruntime) there, or fix 'python' in the inventory.")
        if doc is None:
            raise DeviceFault(f"device {e.name!r}: {e.python} could not run the probe (exit {r.exit_status}):\n"
                              f"{_tail(r.stderr)}")
        if doc.get("bundle_sha256") != runner_bundle().sha256:
            raise DeviceFault(f"device {e.name!r}: the runner bundle {self.bundle_path} does not match what was uploaded "
                              "(sha256 differs); remove it on the device and run again.")
        arrived = doc.get("files_sha256") or {}
        for path, sha in (self.uploaded.items() if check_files else ()):
            if arrived.get(path) != sha:
                raise DeviceFault(f"device {e.name!r}: {path} arrived with sha256 {arrived.get(path)}, but it was sent "
                                  f"with {sha}; the upload was corrupted (disk full or failing storage on the device?).")
        if "numpy_error" in doc:
            raise MissingOnDevice(f"device {e.name!r}: {e.python} has no numpy ({doc['numpy_error']}); install it there "
                                  "(pip install numpy) with the runtime the artifacts need.")
        where = str(doc.get("edgestill_file") or "")
        if not where.startswith(self.bundle_path + "/"):
            raise DeviceFault(f"device {e.name!r}: {e.python} imports edgestill from {where or doc.get('edgestill_error')}"
                              f" instead of the uploaded runner bundle {self.bundle_path}; check the device's "
                              "PYTHONSTARTUP/.pth files.")
        return doc

    def cleanup(self) -> None:
        """Remove the job folder (only the one this job made)."""
        if self.made_jobdir and self.conn.alive:
            try:
                self.conn.run(command("rm", "-rf", "--", str(self.jobdir)), what="removing the job folder")
            except EdgestillError:
                pass

    def state(self) -> dict[str, Any] | None:
        try:
            r = self.conn.run(command(self.entry.python, "-s", "-c", STATE_CODE), what="reading the device state")
        except DeviceTimeout:
            return None
        return _last_json(r.stdout)

    def run_cell(self, i: int, a: _Artifact, threads: int, options: Any, bench: BenchOptions | None,
                 timeout_s: float, device: dict[str, Any], llm: dict[str, int]) -> Measurement:
        """One cell on the device; ``llm`` is the job's ``llm`` block (a generative artifact's timing lengths)."""
        from edgestill.runtimes.generate import llm_info
        from edgestill.runtimes.harness import BenchOptions
        from edgestill.runtimes.runner import THREAD_ENV

        bench = bench or BenchOptions()
        job = {"artifact": a.remote, "runtime": a.runtime, "options": options.to_dict(), "bench": bench.to_dict(),
               "inputs": "random", "seed": 0, "eval_data": self.remote_eval, "metric": "top1", "affinity": None,
               "llm": llm}
        job_path = str(self.jobdir / f"job-{i}.json")
        self.conn.put(json.dumps(job).encode(), job_path)
        pid_path = str(self.jobdir / f"runner-{i}.pid")
        env = [f"PYTHONPATH={self.bundle_path}", *(f"{v}={threads}" for v in THREAD_ENV)]
        cmd = (command("cd", str(self.jobdir)) + " && echo $$ > " + shlex.quote(pid_path) + " && exec " +
               command("env", *env, self.entry.python, "-s", "-m", "edgestill.runtimes.runner", job_path))

        def kill() -> None:
            self.conn.run('kill -KILL "$(cat ' + shlex.quote(pid_path) + ')"', what="killing the runner", timeout_s=15)

        settings: dict[str, Any] = {"runtime_options": options.to_dict(), "bench": bench.to_dict(), "timeout_s": timeout_s}
        if llm_info(a.art) is not None:  # a failed generative cell says which lengths were asked for
            settings["llm"] = dict(llm)
        t0 = time.perf_counter()
        try:
            r = self.conn.run(cmd, timeout_s=timeout_s, what=f"measuring {a.art.name}", on_timeout=kill)
        except DeviceTimeout as exc:
            return failed_cell(a.local, runtime=a.runtime, threads=threads, failure="timeout", error=str(exc),
                               device=device, settings=settings)
        wall_ms = (time.perf_counter() - t0) * 1000.0
        doc = _last_json(r.stdout)
        settings["runner_exit_code"] = r.exit_status
        if r.exit_status == 0 and doc is not None and doc.get("kind") != "failed":
            try:
                m = measurement_from_dict(doc)
            except (TypeError, ValueError) as exc:
                return failed_cell(a.local, runtime=a.runtime, threads=threads, failure="error", device=device,
                                   error=f"device {self.entry.name!r}: the runner's JSON is not a record ({exc})",
                                   settings=settings)
            from edgestill.host import redact_all

            m.settings["memory_limit_bytes"] = None  # no limit is set on a device
            if a.manifest is not None:  # as the local bench: the store keeps it once per artifact and run
                m.settings["manifest"] = json.loads(a.manifest.read_text())
            m.provenance["runner_wall_ms"] = round(wall_ms, 1)
            m.provenance["torch_imported"] = bool(doc.get("torch_imported"))
            m.settings, m.provenance, m.warnings = redact_all(m.settings), redact_all(m.provenance), redact_all(m.warnings)
            return m
        if doc is not None and doc.get("kind") == "failed":
            failure = "bad_input" if r.exit_status == BAD_INPUT_EXIT else "error"
            settings["runner_error"] = str(doc.get("error"))
            why = f"device {self.entry.name!r}: runner failed (exit {r.exit_status}): {doc.get('error')}"
        elif r.exit_status in NOT_FOUND_EXITS:
            failure, why = "missing_runtime", (f"device {self.entry.name!r}: {self.entry.python} is missing or cannot "
                                               f"run (exit {r.exit_status}): {_tail(r.stderr, 300)}")
        else:
            failure = "crash"
            why = f"device {self.entry.name!r}: runner exited {r.exit_status} without a result"
        if r.stderr.strip() and failure != "bad_input":
            why += f"\n--- runner stderr (tail) ---\n{_tail(r.stderr)}"
        elif r.stderr.strip():
            settings["runner_stderr_tail"] = _tail(r.stderr)
        return failed_cell(a.local, runtime=a.runtime, threads=threads, failure=failure, error=why, device=device,
                           settings=settings)


def bench_on_ssh_device(entry: DeviceEntry, artifacts: Sequence[str | Path], thread_counts: Sequence[int], *,
                        bench: BenchOptions | None = None, eval_data: str | Path | None = None,
                        runtime: str | None = None, accelerator: str | None = None, timeout_s: float = 300.0,
                        progress: Callable[[int, int, str], None] | None = None,
                        prompt_tokens: int = DEFAULT_PROMPT_TOKENS, gen_tokens: int = DEFAULT_GEN_TOKENS,
                        sleep: Callable[[float], None] = time.sleep) -> list[Measurement]:
    """Measure every artifact × thread count on an ssh device; one record per cell, in that order.

    Args:
        entry: the inventory device (transport ``ssh``).
        artifacts: manifest paths here (their files are checked and uploaded).
        thread_counts: runtime thread counts, one cell each.
        bench: the harness's stop rule (default :class:`BenchOptions`).
        eval_data: an .npz (``x`` and ``y``/``teacher_logits``) scored on the device with its own runtime.
        runtime, accelerator: as in ``edgestill bench``.
        timeout_s: wall-clock limit of one cell on the device; past it the runner is killed there.
        progress: called as ``progress(done, total, label)`` before each cell and at the end.
        prompt_tokens, gen_tokens: the lengths a generative artifact is timed at on the device (its record's
            ``prompt_tokens``/``generated_tokens`` say which were used: a short context shrinks them, same ratio).
        sleep: the wait between connection attempts and cells (tests pass a recorder).

    Returns:
        measured records with ``provenance["device"]`` and ``provenance["device_state"]``, or ``kind="failed"`` ones
        with ``settings["failure"]`` for every cell the device could not measure (never a partial row).

    Raises:
        InputError: bad local input (an artifact, eval data, runtime or accelerator), before anything is sent.
        ConfigError: a timing length below its minimum (see :func:`edgestill.runtimes.generate.check_lengths`).
    """
    from edgestill.errors import InputError as _InputError

    check_lengths(prompt_tokens, gen_tokens)
    llm = {"prompt_tokens": prompt_tokens, "gen_tokens": gen_tokens}
    arts = prepare_artifacts(artifacts, runtime)
    if eval_data is not None and not Path(eval_data).is_file():
        raise _InputError(f"eval data {eval_data} is not a file; pass an .npz with x and y (or teacher_logits).")
    options = {t: runtime_options(t, accelerator) for t in thread_counts}
    device = {"id": entry.name, "profile": entry.profile, "transport": "ssh", "host": entry.host}
    cells = [(a, t) for a in arts for t in thread_counts]
    results: list[Measurement | None] = [None] * len(cells)

    def fail_rest(exc: BaseException, start: int = 0) -> None:
        for k in range(start, len(cells)):
            if results[k] is None:
                a, t = cells[k]
                results[k] = failed_cell(a.local, runtime=a.runtime, threads=t, failure=failure_of(exc),
                                         error=str(exc), device=device, settings={"device_exit_code": getattr(exc, "exit_code", 3)})

    conn = SshConnection(entry, sleep=sleep)
    job: _Job | None = None
    try:
        if progress:
            progress(0, len(cells), f"{entry.name}: connecting")
        conn.connect()
        job = _Job(conn, arts, Path(eval_data) if eval_data is not None else None)
        job.upload()
        needed = sorted({a.runtime for a in arts})
        info = job.probe(needed)
        missing = {n: info["runtime_errors"].get(n, "not reported") for n in needed if n not in info["runtimes"]}
        if missing:
            have = job.probe([], check_files=False)["runtimes"]
            for k, (a, t) in enumerate(cells):
                if a.runtime in missing:
                    results[k] = failed_cell(
                        a.local, runtime=a.runtime, threads=t, failure="missing_runtime", device=device,
                        error=(f"device {entry.name!r}: runtime {a.runtime} does not import with {entry.python} "
                               f"({missing[a.runtime]}). Runtimes that import there: "
                               f"{', '.join(f'{n} {v}' for n, v in sorted(have.items())) or 'none'}. Install it on "
                               "the device, or pick one of those with --runtime."), settings={})
        state = info.get("device_state")
        for k, (a, t) in enumerate(cells):
            if results[k] is not None:
                continue
            if progress:
                progress(k, len(cells), f"{entry.name}: {a.art.name} ×{t}")
            if k and entry.cooldown_s:
                sleep(entry.cooldown_s)
            if k:
                state = job.state()
            m = job.run_cell(k, a, t, options[t], bench, timeout_s, device, llm)
            m.provenance["device"] = dict(device)
            m.provenance["device_state"] = state
            results[k] = m
    except EdgestillError as exc:
        if isinstance(exc, _InputError) and not hasattr(exc, "failure"):
            raise
        fail_rest(exc)
    except Exception as exc:  # noqa: BLE001 - what the connection layer did not classify: never a partial row
        if not conn.dropped():
            fail_rest(DeviceFault(f"device {entry.name!r}: the job failed ({type(exc).__name__}: {exc})."))
        else:
            fail_rest(DeviceUnreachable(f"device {entry.name!r}: the connection failed ({type(exc).__name__}: {exc})."))
    finally:
        if job is not None:
            job.cleanup()
        conn.close()
    if progress:
        progress(len(cells), len(cells), f"{entry.name}: done")
    return [m for m in results if m is not None]


TRANSPORTS.register("ssh", bench_on_ssh_device)
