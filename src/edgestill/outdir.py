"""Output folders edgestill owns: a marker file says edgestill wrote it and what it wrote, so a rerun may replace it.

The marker (``.edgestill-out``, JSON) records the command that claimed the folder and, once that command ends, the
top-level entries it left there (``files``). A later run of the same command deletes only those; an entry the marker
does not list (a file the user added, or everything a killed run left before it could record) is never deleted
without ``--overwrite``. While a command works in a folder it holds an exclusive lock on it (``flock`` on the
folder itself, so no lock file is written): a second process claiming the same folder gets a clear error.
"""

from __future__ import annotations

import atexit
import fnmatch
import glob
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edgestill import __version__
from edgestill.errors import InputError

MARKER = ".edgestill-out"
_SHOWN = 5  # unrecorded entries named in a refusal

_lock = threading.Lock()
_held: dict[tuple[int, int], tuple[int, Path]] = {}  # (st_dev, st_ino) of a folder this process locked -> (fd, path)
_claimed: dict[tuple[int, int], tuple[Path, str]] = {}  # folders this process claimed -> (path, kind); sealed at exit
_sealing = False  # the exit hook that seals them is registered


def claim_output_dir(path: Path, *, kind: str, overwrite: bool = False,
                     inputs: Iterable[tuple[str, Path | str | None]] = (), owns: Iterable[str] = ()) -> Path:
    """Make ``path`` ready for a fresh run of ``kind`` and return it.

    An empty or missing folder is created; a folder an earlier run of the same ``kind`` wrote (its marker says so) is
    emptied; one another command wrote is emptied only with ``overwrite``; anything else is refused untouched.

    Args:
        kind: the command writing the folder (``quantize``, ``distill``, ``run``, ``export``); recorded in the marker.
        overwrite: the user passed ``--overwrite``: replace the output of another edgestill command.
        inputs: (option, path) pairs of the command's own input files; none may lie inside a folder to be emptied.
        owns: glob patterns of the top-level names this command writes (recorded in the marker before it writes
            anything), so that what a run killed before it could record its files left there is still its own.

    Raises:
        InputError: see :func:`check_output_dir`; or the folder is not writable.
    """
    path = Path(path)
    created = False
    if not path.exists() and not path.is_symlink():
        try:
            path.mkdir(parents=True)
            created = True
        except FileExistsError:
            pass  # another process made it first; the lock below decides who works in it
        except OSError as exc:
            raise InputError(f"cannot create --out {path}: {exc.strerror}. Pass a folder you can write to.") from None
    try:
        lock_output_dir(path)
        empty = check_output_dir(path, kind=kind, overwrite=overwrite, inputs=inputs)
    except BaseException:
        if created:
            release_output_dir(path)
            with _suppress_os_error():
                path.rmdir()  # only the empty folder this call made
        raise
    if empty:
        if not os.access(path, os.W_OK):
            raise InputError(f"--out {path} is not writable. Pass a folder you can write to.")
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    try:
        path.mkdir(parents=True, exist_ok=True)
        write_marker(path, kind, owns=list(owns))
    except OSError as exc:
        raise InputError(f"cannot write to --out {path}: {exc.strerror}. Pass a folder you can write to.") from None
    adopt_output_dir(path, kind)
    return path


def adopt_output_dir(path: Path, kind: str) -> None:
    """Lock ``path`` for this process and record, when the process ends, what is in it (the marker's ``files``).

    :func:`claim_output_dir` calls it; a command that resumes in its own folder (``edgestill run``) calls it directly.
    """
    lock_output_dir(path)
    key = _key(path)
    with _lock:
        _claimed[key] = (Path(path), kind)
        global _sealing
        if not _sealing:
            atexit.register(_seal_all)
            _sealing = True


def lock_output_dir(path: Path) -> None:
    """Take an exclusive lock on the folder ``path`` for the rest of this process (or :func:`release_output_dir`).

    Raises:
        InputError: another process holds it (another edgestill command is writing there now).
    """
    import fcntl

    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise InputError(f"cannot open --out {path}: {exc.strerror}. Pass a folder you can write to.") from None
    key = _stat_key(os.fstat(fd))
    with _lock:
        if key in _held:  # this process holds it already (a library caller claiming twice)
            os.close(fd)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError(
                f"--out {path} is in use: another edgestill command is writing there now (it holds the folder's lock), "
                "so nothing was touched. Wait for it to finish, or pass another --out."
            ) from None
        _held[key] = (fd, path)


def release_output_dir(path: Path) -> None:
    """Record what ``path`` holds in its marker and drop this process's lock on it (a no-op if it holds none)."""
    try:
        key = _key(path)
    except OSError:
        return
    with _lock:
        claimed = _claimed.pop(key, None)
        held = _held.pop(key, None)
    if claimed is not None:
        _seal(*claimed)
    if held is not None:
        os.close(held[0])  # closing the descriptor releases the flock


def _seal_all() -> None:
    with _lock:
        claimed = list(_claimed.values())
        _claimed.clear()
    for path, kind in claimed:
        _seal(path, kind)


def _seal(path: Path, kind: str) -> None:
    """Write the marker with the top-level entries ``path`` holds now: what this command may delete on its rerun."""
    with _suppress_os_error():
        if marker_kind(path) != kind:
            return  # the folder was removed or taken over meanwhile
        files = sorted(p.name for p in Path(path).iterdir() if p.name != MARKER)
        write_marker(path, kind, files=files, owns=_marker_doc(path).get("owns"))


def _marker_doc(path: Path) -> dict[str, object]:
    try:
        doc = json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _strings(value: object) -> list[str] | None:
    return value if isinstance(value, list) and all(isinstance(f, str) for f in value) else None


def recorded_entries(path: Path) -> list[str] | None:
    """The top-level entries the marker says the last command left in ``path``; None when it recorded none."""
    return _strings(_marker_doc(path).get("files"))


def unrecorded_entries(path: Path) -> list[str]:
    """Top-level entries of ``path`` its marker does not list (none for a folder this process claimed itself)."""
    path = Path(path)
    try:
        if _key(path) in _claimed:
            return []
    except OSError:
        return []
    recorded = set(recorded_entries(path) or ())
    owns = [*(_strings(_marker_doc(path).get("owns")) or ()), f".{MARKER}.*.tmp"]
    return sorted(p.name for p in path.iterdir()
                  if p.name != MARKER and p.name not in recorded and not any(fnmatch.fnmatchcase(p.name, g) for g in owns))


def _stat_key(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def _key(path: Path) -> tuple[int, int]:
    return _stat_key(os.stat(path))


@contextmanager
def _suppress_os_error() -> Iterator[None]:
    try:
        yield
    except OSError:
        pass


def check_output_dir(path: Path, *, kind: str, overwrite: bool = False,
                     inputs: Iterable[tuple[str, Path | str | None]] = ()) -> bool:
    """Check, touching nothing, that ``path`` may be claimed by ``kind``; return True when claiming empties it.

    Raises:
        InputError: ``path`` is a file; a non-empty folder edgestill did not write; a folder another command wrote
            (without ``overwrite``); or one holding one of ``inputs``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"--out {path} is a file, not a folder. Pass a new or empty folder.")
    if not path.is_dir() or not any(path.iterdir()):
        return False
    writer = marker_kind(path)
    if writer is None:
        raise InputError(
            f"--out {path} is not empty and was not written by edgestill, so nothing was touched. "
            "Pass a new or empty folder, or one a previous edgestill run wrote (it holds a "
            f"{MARKER} file)."
        )
    if writer != kind and not overwrite:
        raise InputError(
            f"--out {path} holds the output of 'edgestill {writer}' (its {MARKER} marker says so), which this "
            f"{kind} command would delete before writing, so nothing was touched. Pass a new or empty folder, or add "
            "--overwrite to replace that output."
        )
    inside = inputs_inside(path, inputs)
    if inside:
        raise InputError(
            f"{', '.join(inside)} inside --out {path}, which this {kind} command empties before writing, so nothing "
            "was touched. Pass another --out, or move the input out of that folder first."
        )
    if writer == kind and not overwrite:
        extra = unrecorded_entries(path)
        if extra:
            shown = ", ".join(extra[:_SHOWN]) + (f" and {len(extra) - _SHOWN} more" if len(extra) > _SHOWN else "")
            raise InputError(
                f"--out {path} holds {len(extra)} entr{'y' if len(extra) == 1 else 'ies'} the earlier 'edgestill {kind}' "
                f"run did not record writing ({shown}): you added them, or that run was stopped before it could record "
                "what it wrote. Nothing was touched. Move them out, pass another --out, or add --overwrite to replace "
                "the whole folder."
            )
    return True


def inputs_inside(folder: Path, inputs: Iterable[tuple[str, Path | str | None]]) -> list[str]:
    """``'--option PATH lies'`` for each input path that is ``folder`` or lies inside it (symlinks resolved)."""
    root = Path(folder).resolve()
    found = []
    for option, value in inputs:
        if value is None or str(value) == "":
            continue
        p = Path(value)
        for candidate in {p.absolute(), p.resolve()}:
            if candidate == root or candidate.is_relative_to(root):
                found.append(f"{option} {value} lies")
                break
    return found


def marker_kind(path: Path) -> str | None:
    """The command that wrote ``path`` as its marker records it; ``"unknown"`` when the marker has no kind; None when
    there is no marker (edgestill did not write the folder)."""
    marker = Path(path) / MARKER
    if not marker.is_file():
        return None
    try:
        kind = json.loads(marker.read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return "unknown"
    return kind if isinstance(kind, str) and kind.isidentifier() else "unknown"


def write_marker(path: Path, kind: str, *, files: list[str] | None = None, owns: object = None) -> None:
    """Record that edgestill's ``kind`` command wrote the folder ``path``: the top-level name patterns it ``owns``
    (written before anything else) and, once it ended, the ``files`` it left."""
    doc: dict[str, object] = {"tool": "edgestill", "version": __version__, "kind": kind}
    if _strings(owns):
        doc["owns"] = owns
    if files is not None:
        doc["files"] = files
    write_text_atomic(Path(path) / MARKER, json.dumps(doc) + "\n")


def write_json_atomic(path: Path, obj: object) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (see :func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the whole new one, never a part
    (UTF-8, ``\\n`` line ends; see :func:`write_bytes_atomic`)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one, never a part.

    The temporary file is created exclusively under a fresh name in the same folder (``mkstemp``: never an existing
    file, never through a symlink planted there), flushed to disk, then renamed over ``path``; it is removed on
    failure. The result keeps ``path``'s earlier permissions, else 0644 (``mkstemp``'s 0600 would hide a report).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        mode = path.stat().st_mode & 0o777 if path.is_file() and not path.is_symlink() else 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path`` for a writer that takes a file name (torch.save, safetensors);
    when the block ends without error it is renamed over ``path``, else removed.

    The temporary file is created exclusively under a unique name (``mkstemp``), so no symlink planted at a
    predictable name is ever written through. The result is 0644, like :func:`write_text_atomic`'s.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fresh_work_dir(out: Path, prefix: str) -> Path:
    """A new, empty working folder ``out/<prefix>-XXXXXXXX`` created exclusively (``mkdtemp``).

    Folders an interrupted earlier run left under the same prefix are removed first (real folders only: a symlink
    is unlinked, never followed), so a planted link at a predictable name can never redirect the writes.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in [out / prefix, *out.glob(f"{glob.escape(prefix)}-????????")]:  # an older version's name, mkdtemp's
        if old.is_symlink():
            old.unlink()
        elif old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=out))
