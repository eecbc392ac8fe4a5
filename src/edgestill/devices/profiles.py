"""Device profiles as data: YAML files (schema-validated, every number with its source) and the detected host.

A profile says what a device can do: CPU clusters (core, count, clock, ISA, MACs per cycle per precision), caches,
memory size and bandwidth, accelerators, and which runtimes can use which accelerators there. The estimator turns
that into peaks (:meth:`Profile.peak_macs_per_s`) and scales them by the efficiencies of a calibration
(:meth:`Profile.calibration_for`).

Where profiles come from (:func:`profile_search_path`): the folders in ``$EDGESTILL_PROFILES`` (``os.pathsep``
separated), then ``.edgestill/profiles`` under the current folder, then the built-in ``devices/profiles/``. A file
in an earlier folder overrides a built-in with the same id (it may ``extends:`` the very profile it overrides);
two files with one id in the same folder are an error. ``host`` is detected from this machine (:func:`host_profile`)
unless a file defines it.

A calibration (``edgestill devices calibrate``) is a separate file, ``<profile id>.calibration.yaml``, in a folder
on the search path (or beside a profile loaded by path); the first one found is merged into
:attr:`Profile.calibration`, its entries replacing the profile's own for the same (runtime, precision, threads).

Files are read defensively: at most :data:`MAX_FILE_BYTES`, UTF-8, safe-loaded (no python tags), at most
:data:`MAX_YAML_ALIASES` YAML aliases (no alias bombs), no duplicate keys. Each refusal is a
:class:`~edgestill.errors.ConfigError` or :class:`~edgestill.errors.InputError` (exit 2) naming the file and field.
"""

from __future__ import annotations

import copy
import datetime as _dt
import difflib
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgestill.errors import ConfigError, InputError, UnknownNameError
from edgestill.limits import read_small_text

SCHEMA = "edgestill-device-profile"
CALIBRATION_SCHEMA = "edgestill-device-calibration"
SCHEMA_VERSION = 1
CALIBRATION_SCHEMA_VERSION = 1
BUILTIN_DIR = Path(__file__).resolve().parent / "profiles"
USER_DIR = Path(".edgestill") / "profiles"
PROFILES_ENV = "EDGESTILL_PROFILES"
CALIBRATION_SUFFIX = ".calibration.yaml"
HOST_ID = "host"

MAX_FILE_BYTES = 1 << 20  # a profile is a few KB; a bigger file is the wrong file
MAX_YAML_ALIASES = 10  # a profile needs none; ten bounds what an alias bomb can expand to (at most ~36x)
DEVICE_CLASSES = ("phone", "jetson", "raspberry-pi", "x86", "other")  # "other": a detected host that is none of these
PRECISIONS = ("fp32", "fp16", "int8")
RUNTIMES = ("onnxruntime", "litert", "openvino")
ACCELERATOR_KINDS = ("gpu", "npu", "dsp")
OP_CLASSES = ("stem", "conv", "conv1x1", "depthwise", "matmul", "attention", "elementwise", "softmax", "pool", "other")
_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_RUNTIME_ACCELERATOR = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")



# --- the profile ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CpuCluster:
    """Identical cores at one clock. ``macs_per_cycle`` is per core, per precision (fp32 always present)."""

    core: str
    count: int
    ghz: float
    isa: tuple[str, ...]
    macs_per_cycle: dict[str, float]
    source: str

    def __hash__(self) -> int:  # the generated one would fail on the dict field
        return hash((self.core, self.count, self.ghz))

    def macs_per_cycle_for(self, precision: str) -> float:
        """MACs per cycle per core at ``precision``: int8 falls back to 2x fp32 and fp16 to fp32 where not given."""
        p = normalize_precision(precision)
        if p in self.macs_per_cycle:
            return float(self.macs_per_cycle[p])
        fp32 = float(self.macs_per_cycle["fp32"])
        return 2.0 * fp32 if p == "int8" else fp32


@dataclass(frozen=True, kw_only=True)
class Profile:
    """One device: what it computes with, how fast its memory is, and the source of every number."""

    id: str
    name: str
    device_class: str
    soc: str
    aliases: tuple[str, ...]
    extends: str | None
    clusters: tuple[CpuCluster, ...]
    caches: dict[str, Any]
    memory_gb: float
    bandwidth_gbs: float
    accelerators: tuple[dict[str, Any], ...]
    runtimes: dict[str, tuple[str, ...]]
    calibration: tuple[dict[str, Any], ...]
    sources: dict[str, str]
    path: Path | None
    calibration_path: Path | None = None
    detected: dict[str, Any] | None = None  # the host only: what was read from the machine
    doc: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __hash__(self) -> int:  # the generated one would fail on the dict fields; a profile is its id and file
        return hash((self.id, self.path))

    @property
    def cpu_cores(self) -> int:
        return sum(c.count for c in self.clusters)

    @property
    def cpu_summary(self) -> str:
        """``4x Cortex-A76 2.4 GHz`` (clusters joined by ``+``)."""
        return " + ".join(f"{c.count}x {c.core} {c.ghz:g} GHz" for c in self.clusters)

    @property
    def calibrated(self) -> bool:
        return bool(self.calibration)

    def peak_macs_per_s(self, precision: str, threads: int) -> float:
        """Peak CPU MACs per second at ``precision`` on ``threads`` cores, filled from the fastest cluster first.

        Threads past the core count add nothing (SMT shares the vector units). int8 falls back to 2x fp32 and fp16
        to fp32 on a cluster that gives no figure.

        Raises:
            ConfigError: ``threads`` below 1 or an unknown precision.
        """
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"threads must be a whole number of at least 1, got {threads!r}.")
        p = normalize_precision(precision)
        ranked = sorted(self.clusters, key=lambda c: c.ghz * c.macs_per_cycle_for(p), reverse=True)
        left, total = threads, 0.0
        for c in ranked:
            n = min(c.count, left)
            total += n * c.ghz * 1e9 * c.macs_per_cycle_for(p)
            left -= n
            if left <= 0:
                break
        return total

    def calibration_for(self, runtime: str, precision: str, threads: int) -> dict[str, Any] | None:
        """The calibration entry for exactly this runtime, precision (``int8-static`` counts as int8) and thread
        count, or None when the device was not calibrated for it."""
        p = normalize_precision(precision)
        for entry in self.calibration:
            if entry["runtime"] == runtime and entry["precision"] == p and entry["threads"] == threads:
                return copy.deepcopy(entry)
        return None

    def to_dict(self) -> dict[str, Any]:
        """The profile as a file holds it (extends resolved, calibration merged): valid input for :func:`load_profile`."""
        d = copy.deepcopy(self.doc)
        d["calibration"] = [copy.deepcopy(e) for e in self.calibration]
        return d


def normalize_precision(precision: str) -> str:
    """``fp32``, ``fp16`` or ``int8`` for a profile's figures: an artifact's ``int8-dynamic``/``int8-static`` count as
    int8, ``float`` as fp32.

    Raises:
        ConfigError: a precision that is none of these (``mixed`` is not one figure).
    """
    p = str(precision).lower()
    if p in PRECISIONS:
        return p
    if p.startswith("int8"):
        return "int8"
    if p in ("float", "float32", "f32"):
        return "fp32"
    if p in ("float16", "f16", "half"):
        return "fp16"
    raise ConfigError(f"precision {precision!r} has no figure in a device profile; use one of {', '.join(PRECISIONS)} "
                      "(an artifact's int8-dynamic and int8-static count as int8).")


# --- search path and index ------------------------------------------------------------------------------------------


def profile_search_path() -> list[Path]:
    """Folders searched for profiles, first wins: ``$EDGESTILL_PROFILES`` (os.pathsep-separated), ``.edgestill/profiles``,
    then the built-in folder. A folder that does not exist is skipped, except one named in the variable.

    Raises:
        InputError: ``$EDGESTILL_PROFILES`` names something that is not a folder.
    """
    folders = []
    for part in os.environ.get(PROFILES_ENV, "").split(os.pathsep):
        if not part.strip():
            continue
        p = Path(part).expanduser()
        if not p.is_dir():
            raise InputError(f"${PROFILES_ENV} names {p}, which is not a folder. Create it, or remove it from the "
                             f"variable (folders are separated by {os.pathsep!r}).")
        folders.append(p)
    return [*folders, USER_DIR, BUILTIN_DIR]


@dataclass
class _Entry:
    id: str
    path: Path
    doc: dict[str, Any]
    rank: int  # position of its folder on the search path


class _Index:
    """Every profile file on a search path: id -> files (first folder first), alias -> id."""

    def __init__(self, search_path: Sequence[Path]):
        self.folders = [Path(f) for f in search_path]
        self.by_id: dict[str, list[_Entry]] = {}
        self.alias: dict[str, tuple[str, Path]] = {}
        for rank, folder in enumerate(self.folders):
            if not folder.is_dir():
                continue
            here: dict[str, Path] = {}
            for path in sorted(folder.glob("*.y*ml")):
                if path.name.endswith((CALIBRATION_SUFFIX, ".calibration.yml")) or path.suffix not in (".yaml", ".yml"):
                    continue
                if not path.is_file():
                    continue
                doc = _read_yaml(path, "device profile")
                pid = _profile_id(doc, path)
                if pid in here:
                    raise ConfigError(f"device profiles {here[pid]} and {path} both have id {pid!r}; one folder may "
                                      "hold one profile per id. Rename or remove one.")
                here[pid] = path
                self.by_id.setdefault(pid, []).append(_Entry(pid, path, doc, rank))
        for pid in sorted(self.by_id):
            top = self.by_id[pid][0]
            for alias in _aliases_of(top.doc, top.path):
                if alias in self.by_id and alias != pid:
                    raise ConfigError(f"{top.path}: alias {alias!r} is the id of another profile "
                                      f"({self.by_id[alias][0].path}); an alias must name one profile only.")
                if alias in self.alias and self.alias[alias][0] != pid:
                    other = self.alias[alias][1]
                    raise ConfigError(f"{top.path}: alias {alias!r} is also an alias in {other}; an alias must name one "
                                      "profile only. Remove it from one of them.")
                self.alias[alias] = (pid, top.path)

    def ids(self) -> list[str]:
        return sorted(self.by_id)

    def resolve_name(self, name: str) -> str | None:
        if name in self.by_id:
            return name
        hit = self.alias.get(name)
        return hit[0] if hit else None


def _profile_id(doc: Any, path: Path) -> str:
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{path}: a device profile is a YAML mapping (schema: {SCHEMA}, id, name, class, cpu, ...); "
                          f"got {type(doc).__name__}.")
    if "id" not in doc:
        raise ConfigError(f"{path}: id is missing; every profile names itself (e.g. id: {path.stem}).")
    pid = doc["id"]
    if not isinstance(pid, str) or not _ID.fullmatch(pid):
        raise ConfigError(f"{path}: id must be lower-case letters, digits, '.', '_' or '-' (at most 64), got {pid!r}.")
    return pid


def _aliases_of(doc: Mapping[str, Any], path: Path) -> list[str]:
    aliases = doc.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) and _ID.fullmatch(a) for a in aliases):
        raise ConfigError(f"{path}: aliases must be a list of ids (lower-case letters, digits, '.', '_', '-'), got "
                          f"{aliases!r}.")
    return aliases


# --- public loaders -------------------------------------------------------------------------------------------------


def load_profile(id_or_path: str | os.PathLike[str], *, search_path: Sequence[Path] | None = None) -> Profile:
    """The profile with this id or alias on the search path, or the profile file at this path.

    Args:
        id_or_path: an id (``raspberry-pi-5``), an alias (``snapdragon-8-gen-2-qcs8550``), ``host``, or a path to a
            ``.yaml`` file.
        search_path: folders to search, first wins (default :func:`profile_search_path`).

    Raises:
        UnknownNameError: no profile has this id or alias (the closest id is suggested).
        InputError: a path that does not exist or cannot be read; a file that is not valid YAML.
        ConfigError: a profile or calibration file that breaks the schema (the file and field are named), an
            ``extends`` cycle or an unknown parent.
    """
    folders = list(profile_search_path() if search_path is None else search_path)
    text = os.fspath(id_or_path)
    if text.endswith((".yaml", ".yml")) or os.sep in text or (os.altsep and os.altsep in text):
        return _load_file(Path(text).expanduser(), folders)
    index = _Index(folders)
    pid = index.resolve_name(text)
    if pid is None:
        if text == HOST_ID:
            return host_profile(search_path=folders)
        raise UnknownProfileError(text, [HOST_ID, *index.ids()], folders)
    doc, path = _resolve(index, pid, 0)
    return _build(doc, path, folders)


def list_profiles(search_path: Sequence[Path] | None = None) -> list[Profile]:
    """Every profile on the search path (a user file shadows a built-in with its id), ``host`` first, then by id.

    Raises:
        InputError, ConfigError: as :func:`load_profile`, for any file on the path.
    """
    folders = list(profile_search_path() if search_path is None else search_path)
    index = _Index(folders)
    found = [] if HOST_ID in index.by_id else [host_profile(search_path=folders)]
    for pid in index.ids():
        doc, path = _resolve(index, pid, 0)
        found.append(_build(doc, path, folders))
    return sorted(found, key=lambda p: (p.id != HOST_ID, p.id))


class UnknownProfileError(UnknownNameError):
    """No profile has this id or alias; the message suggests the closest id and says where profiles are read from."""

    def __init__(self, name: str, valid: Sequence[str], folders: Sequence[Path]):
        super().__init__("device profile", name, valid)
        where = ", ".join(str(f) for f in folders)
        self.args = (f"{self.args[0]} Profiles are read from {where} (set ${PROFILES_ENV} or pass --profiles DIR "
                     "to add a folder; `edgestill devices show raspberry-pi-5` prints a complete profile to copy).",)


def _load_file(path: Path, folders: list[Path]) -> Profile:
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "is not a regular file" if path.exists() else "does not exist"
        raise InputError(f"device profile {path} {what}. Pass a profile id (edgestill devices list) or a .yaml file.")
    doc = _read_yaml(path, "device profile")
    pid = _profile_id(doc, path)
    index = _Index(folders)
    rank = -1  # above every folder: a file with its id on the path (not itself) is a parent it may extend
    entry = _Entry(pid, path, doc, rank)
    merged = _merge_chain(index, entry, [])
    return _build(merged, path, [*folders, path.parent])


def _resolve(index: _Index, pid: str, level: int) -> tuple[dict[str, Any], Path]:
    entry = index.by_id[pid][level]
    return _merge_chain(index, entry, []), entry.path


def _merge_chain(index: _Index, entry: _Entry, seen: list[str]) -> dict[str, Any]:
    """The entry's document with its ``extends`` chain merged in (child wins), validated."""
    key = f"{entry.id} ({entry.path})"
    if key in seen:
        chain = " -> ".join([*seen, key])
        raise ConfigError(f"device profiles extend each other in a cycle: {chain}. Make one of them stand alone "
                          "(extends: null).")
    seen = [*seen, key]
    parent_name = entry.doc.get("extends")
    if parent_name is None:
        _validate_profile(entry.doc, str(entry.path))
        return copy.deepcopy(entry.doc)
    if not isinstance(parent_name, str):
        raise ConfigError(f"{entry.path}: extends must be a profile id or null, got {parent_name!r}.")
    parent = _parent_entry(index, entry, parent_name)
    merged = _merge(_merge_chain(index, parent, seen), entry.doc, str(entry.path), "")
    for own in ("id", "aliases", "extends", "name", "schema", "schema_version"):  # never inherited
        merged.pop(own, None)
        if own in entry.doc:
            merged[own] = copy.deepcopy(entry.doc[own])
    _validate_profile(merged, f"{entry.path} (after extends: {parent_name})")
    return merged


def _parent_entry(index: _Index, entry: _Entry, parent_name: str) -> _Entry:
    pid = index.resolve_name(parent_name)
    if pid is None:
        raise ConfigError(f"{entry.path}: extends names {parent_name!r}, which is not a profile."
                          f"{_did_you_mean(parent_name, index.ids())} Profiles: {', '.join(index.ids())}.")
    if pid == entry.id:  # a user file extending the built-in it overrides: the next file with the id down the path
        below = [e for e in index.by_id[pid] if e.rank > entry.rank and e.path.resolve() != entry.path.resolve()]
        if not below:
            raise ConfigError(f"{entry.path}: extends its own id {pid!r}, and no folder after it on the search path "
                              "holds a profile with that id to extend.")
        return below[0]
    return index.by_id[pid][0]


def _merge(base: dict[str, Any], over: Mapping[str, Any], where: str, prefix: str) -> dict[str, Any]:
    """``over`` on top of ``base``: mappings merge key by key, anything else (lists included) is replaced.

    A block with a ``source`` whose numbers the child changes must carry the child's own ``source``: a parent's
    citation never vouches for a child's figure.
    """
    out = copy.deepcopy(base)
    for key, value in over.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            child = _merge(out[key], value, where, path + ".")
            if "source" in out[key] and "source" not in value and any(k != "source" for k in value):
                raise ConfigError(f"{where}: {path} changes {', '.join(k for k in value if k != 'source')} but keeps "
                                  f"the parent's source; give {path}.source for the new figures.")
            out[key] = child
        else:
            out[key] = copy.deepcopy(value)
    return out


def _build(doc: dict[str, Any], path: Path | None, folders: Sequence[Path],
           detected: dict[str, Any] | None = None) -> Profile:
    """A Profile from a validated document, with the first calibration file found on ``folders`` merged in."""
    pid = doc["id"]
    calibration = [copy.deepcopy(e) for e in doc.get("calibration") or []]
    cal_path = None
    for folder in folders:
        candidate = Path(folder) / f"{pid}{CALIBRATION_SUFFIX}"
        if candidate.is_file():
            cal_path = candidate
            overlay = load_calibration(candidate, profile_id=pid)
            keys = {_cal_key(e) for e in overlay}
            calibration = [e for e in calibration if _cal_key(e) not in keys] + overlay
            break
    cpu = doc["cpu"]
    clusters = tuple(
        CpuCluster(core=c["core"], count=int(c["count"]), ghz=float(c["ghz"]), isa=tuple(c.get("isa") or ()),
                   macs_per_cycle={k: float(v) for k, v in c["macs_per_cycle"].items()}, source=c["source"])
        for c in cpu["clusters"]
    )
    sources = {f"cpu.clusters[{i}]": c["source"] for i, c in enumerate(cpu["clusters"])}
    if cpu.get("caches"):
        sources["cpu.caches"] = cpu["caches"]["source"]
    sources["memory"] = doc["memory"]["source"]
    for i, a in enumerate(doc.get("accelerators") or []):
        sources[f"accelerators[{i}]"] = a["source"]
    return Profile(
        id=pid, name=doc["name"], device_class=doc["class"], soc=doc["soc"], aliases=tuple(doc.get("aliases") or ()),
        extends=doc.get("extends"), clusters=clusters, caches=dict(cpu.get("caches") or {}),
        memory_gb=float(doc["memory"]["size_gb"]), bandwidth_gbs=float(doc["memory"]["bandwidth_gbs"]),
        accelerators=tuple(copy.deepcopy(a) for a in doc.get("accelerators") or []),
        runtimes={k: tuple(v) for k, v in (doc.get("runtimes") or {}).items()},
        calibration=tuple(calibration), sources=sources, path=path, calibration_path=cal_path,
        detected=detected if detected is not None else doc.get("detected"), doc=copy.deepcopy(doc),
    )


def _cal_key(entry: Mapping[str, Any]) -> tuple[str, str, int]:
    return entry["runtime"], entry["precision"], entry["threads"]


# --- calibration files ----------------------------------------------------------------------------------------------


def calibration_path(profile_id: str, folder: str | os.PathLike[str] | None = None) -> Path:
    """Where ``edgestill devices calibrate`` writes a profile's calibration (default folder ``.edgestill/profiles``)."""
    return Path(folder if folder is not None else USER_DIR) / f"{profile_id}{CALIBRATION_SUFFIX}"


def load_calibration(path: str | os.PathLike[str], *, profile_id: str | None = None) -> list[dict[str, Any]]:
    """The validated entries of a calibration file.

    Raises:
        InputError: unreadable, too large or not YAML.
        ConfigError: a field missing or bad (named with the file), or the file is for another profile.
    """
    p = Path(path)
    doc = _read_yaml(p, "device calibration")
    validate_calibration(doc, str(p))
    if profile_id is not None and doc["profile"] != profile_id:
        raise ConfigError(f"{p}: profile is {doc['profile']!r} but the file is named for {profile_id!r}; rename the "
                          f"file to {doc['profile']}{CALIBRATION_SUFFIX} or rerun `edgestill devices calibrate`.")
    return [copy.deepcopy(e) for e in doc["entries"]]


def save_calibration(profile_id: str, entries: Sequence[Mapping[str, Any]], *,
                     folder: str | os.PathLike[str] | None = None) -> Path:
    """Write (or update) ``<folder>/<profile_id>.calibration.yaml``: ``entries`` replace the file's entries with the
    same (runtime, precision, threads) and the rest are kept. The file is validated before it is written and replaced
    atomically.

    Raises:
        ConfigError: an entry that breaks the schema (the field is named); an existing file that does.
        InputError: the folder cannot be created or written.
    """
    import yaml

    from edgestill.outdir import write_text_atomic

    target = calibration_path(profile_id, folder)
    kept: list[dict[str, Any]] = []
    if target.is_file():
        new_keys = {(e.get("runtime"), normalize_precision(e.get("precision", "fp32")), e.get("threads"))
                    for e in entries}
        kept = [e for e in load_calibration(target, profile_id=profile_id) if _cal_key(e) not in new_keys]
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc = {"schema": CALIBRATION_SCHEMA, "schema_version": CALIBRATION_SCHEMA_VERSION, "profile": profile_id,
           "created": created, "entries": kept + [_plain(dict(e)) for e in entries]}
    validate_calibration(doc, str(target))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(target, yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=120))
    except OSError as exc:
        raise InputError(f"cannot write the calibration {target}: {exc.strerror or exc}.") from None
    return target


def _plain(obj: Any) -> Any:
    """JSON-like plain Python (numpy scalars to float/int, tuples to lists) so safe_dump can write it."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    return obj


# --- validation -----------------------------------------------------------------------------------------------------


class _Check:
    """Field checks that raise ConfigError naming the file and the field (``cpu.clusters[0].ghz is missing``)."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, path: str, problem: str) -> None:
        raise ConfigError(f"{self.where}: {path} {problem}")

    def mapping(self, d: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(d, Mapping):
            self.fail(path, f"must be a mapping, got {_short(d)}.")
        return d

    def keys(self, d: Mapping[str, Any], path: str, required: Sequence[str], optional: Sequence[str] = (),
             extra_ok: bool = False) -> None:
        prefix = f"{path}." if path else ""
        for k in required:
            if k not in d:
                self.fail(f"{prefix}{k}", "is missing. Add it (`edgestill devices show raspberry-pi-5` prints a complete "
                                          "profile).")
        if extra_ok:
            return
        allowed = [*required, *optional]
        for k in d:
            if k not in allowed:
                self.fail(f"{prefix}{k}", f"is not a field here.{_did_you_mean(str(k), allowed)} Fields: "
                                          f"{', '.join(allowed)}.")

    def text(self, v: Any, path: str) -> str:
        if not isinstance(v, str) or not v.strip():
            self.fail(path, f"must be non-empty text, got {_short(v)}.")
        return v

    def number(self, v: Any, path: str, *, minimum: float = 0.0, strict: bool = True,
               maximum: float | None = None) -> float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ok = ok and (v > minimum if strict else v >= minimum) and (maximum is None or v <= maximum)
        if not ok:
            bound = f"greater than {minimum:g}" if strict else f"at least {minimum:g}"
            bound += f" and at most {maximum:g}" if maximum is not None else ""
            self.fail(path, f"must be a number {bound}, got {_short(v)}.")
        return float(v)

    def integer(self, v: Any, path: str, *, minimum: int = 1) -> int:
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            self.fail(path, f"must be a whole number of at least {minimum}, got {_short(v)}.")
        return v

    def choice(self, v: Any, path: str, choices: Sequence[str]) -> str:
        if v not in choices:
            self.fail(path, f"is {_short(v)}; valid: {', '.join(choices)}.{_did_you_mean(str(v), choices)}")
        return v

    def str_list(self, v: Any, path: str, pattern: re.Pattern[str] | None = None) -> list[str]:
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            self.fail(path, f"must be a list of names, got {_short(v)}.")
        for i, x in enumerate(v):
            if pattern is not None and not pattern.fullmatch(x):
                self.fail(f"{path}[{i}]", f"{x!r} must be lower-case letters, digits, '_' or '-'.")
        if len(set(v)) != len(v):
            self.fail(path, f"names one thing twice: {v!r}.")
        return v


def _validate_profile(doc: Any, where: str) -> None:
    """Raise ConfigError naming the first missing or bad field of a (merged) profile document."""
    c = _Check(where)
    c.mapping(doc, "the profile")
    c.keys(doc, "", ["schema", "schema_version", "id", "name", "class", "soc", "cpu", "memory", "runtimes"],
           ["aliases", "extends", "accelerators", "calibration", "detected", "notes"])
    if doc["schema"] != SCHEMA:
        c.fail("schema", f"is {_short(doc['schema'])}; a device profile says schema: {SCHEMA}.")
    if doc["schema_version"] != SCHEMA_VERSION:
        c.fail("schema_version", f"is {_short(doc['schema_version'])}; this edgestill reads version {SCHEMA_VERSION}.")
    c.text(doc["name"], "name")
    c.text(doc["soc"], "soc")
    c.choice(doc["class"], "class", DEVICE_CLASSES)
    if doc.get("extends") is not None:
        c.text(doc["extends"], "extends")
    if doc.get("aliases") is not None:
        c.str_list(doc["aliases"], "aliases", _ID)
    cpu = c.mapping(doc["cpu"], "cpu")
    c.keys(cpu, "cpu", ["clusters"], ["caches"])
    clusters = cpu["clusters"]
    if not isinstance(clusters, list) or not clusters:
        c.fail("cpu.clusters", f"must be a list of at least one cluster (fastest first), got {_short(clusters)}.")
    for i, cl in enumerate(clusters):
        p = f"cpu.clusters[{i}]"
        c.mapping(cl, p)
        c.keys(cl, p, ["core", "count", "ghz", "macs_per_cycle", "source"], ["isa"])
        c.text(cl["core"], f"{p}.core")
        c.integer(cl["count"], f"{p}.count")
        c.number(cl["ghz"], f"{p}.ghz", maximum=10.0)
        if cl.get("isa") is not None:
            c.str_list(cl["isa"], f"{p}.isa")
        macs = c.mapping(cl["macs_per_cycle"], f"{p}.macs_per_cycle")
        c.keys(macs, f"{p}.macs_per_cycle", ["fp32"], [*PRECISIONS, "bf16"])
        for k, v in macs.items():
            c.number(v, f"{p}.macs_per_cycle.{k}", maximum=100000.0)
        c.text(cl["source"], f"{p}.source")
    if cpu.get("caches") is not None:
        caches = c.mapping(cpu["caches"], "cpu.caches")
        c.keys(caches, "cpu.caches", ["source"], ["l1d_kb", "l2_kb", "l3_kb"])
        for k in ("l1d_kb", "l2_kb", "l3_kb"):
            if k in caches:
                c.number(caches[k], f"cpu.caches.{k}")
        c.text(caches["source"], "cpu.caches.source")
    mem = c.mapping(doc["memory"], "memory")
    c.keys(mem, "memory", ["size_gb", "bandwidth_gbs", "source"])
    c.number(mem["size_gb"], "memory.size_gb")
    c.number(mem["bandwidth_gbs"], "memory.bandwidth_gbs")
    c.text(mem["source"], "memory.source")
    accelerators = doc.get("accelerators") or []
    if not isinstance(accelerators, list):
        c.fail("accelerators", f"must be a list (may be empty), got {_short(accelerators)}.")
    names = []
    for i, a in enumerate(accelerators):
        p = f"accelerators[{i}]"
        c.mapping(a, p)
        c.keys(a, p, ["name", "kind", "source"], ["model", "peak_gflops"])
        if not isinstance(a["name"], str) or not _RUNTIME_ACCELERATOR.fullmatch(a["name"]):
            c.fail(f"{p}.name", f"must be a short lower-case name (gpu, npu), got {_short(a['name'])}.")
        if a["name"] in names or a["name"] == "cpu":
            c.fail(f"{p}.name", f"{a['name']!r} is used twice (cpu is always the CPU).")
        names.append(a["name"])
        c.choice(a["kind"], f"{p}.kind", ACCELERATOR_KINDS)
        if a.get("model") is not None:
            c.text(a["model"], f"{p}.model")
        if a.get("peak_gflops") is not None:
            peaks = c.mapping(a["peak_gflops"], f"{p}.peak_gflops")
            c.keys(peaks, f"{p}.peak_gflops", [], [*PRECISIONS, "bf16"])
            for k, v in peaks.items():
                c.number(v, f"{p}.peak_gflops.{k}")
        c.text(a["source"], f"{p}.source")
    runtimes = c.mapping(doc["runtimes"], "runtimes")
    for rt, accs in runtimes.items():
        c.choice(rt, f"runtimes.{rt}", RUNTIMES)
        c.str_list(accs, f"runtimes.{rt}", _RUNTIME_ACCELERATOR)
    if doc.get("calibration") is not None:
        if not isinstance(doc["calibration"], list):
            c.fail("calibration", f"must be a list of entries, got {_short(doc['calibration'])}.")
        _validate_entries(c, doc["calibration"], "calibration")
    if doc.get("detected") is not None:
        c.mapping(doc["detected"], "detected")


def validate_calibration(doc: Any, where: str) -> None:
    """Raise ConfigError naming the first missing or bad field of a calibration document (see the module docstring)."""
    c = _Check(where)
    c.mapping(doc, "the calibration")
    c.keys(doc, "", ["schema", "schema_version", "profile", "entries"], extra_ok=True)  # e.g. the calibrator's device
    if doc["schema"] != CALIBRATION_SCHEMA:
        c.fail("schema", f"is {_short(doc['schema'])}; a calibration says schema: {CALIBRATION_SCHEMA}.")
    if doc["schema_version"] != CALIBRATION_SCHEMA_VERSION:
        c.fail("schema_version", f"is {_short(doc['schema_version'])}; this edgestill reads version "
                                 f"{CALIBRATION_SCHEMA_VERSION}.")
    if not isinstance(doc["profile"], str) or not _ID.fullmatch(doc["profile"]):
        c.fail("profile", f"must be a profile id, got {_short(doc['profile'])}.")
    if doc.get("created") is not None and not isinstance(doc["created"], (str, _dt.datetime, _dt.date)):
        c.fail("created", f"must be a time (2026-12-02T14:00:00Z), got {_short(doc['created'])}.")
    if not isinstance(doc["entries"], list):
        c.fail("entries", f"must be a list, got {_short(doc['entries'])}.")
    _validate_entries(c, doc["entries"], "entries")


def _validate_entries(c: _Check, entries: list[Any], path: str) -> None:
    """Calibration entries: known fields are checked; extra fields a newer calibrator adds are kept."""
    seen: dict[tuple[str, str, int], int] = {}
    for i, e in enumerate(entries):
        p = f"{path}[{i}]"
        c.mapping(e, p)
        c.keys(e, p, ["runtime", "precision", "threads", "efficiency"], extra_ok=True)
        c.choice(e["runtime"], f"{p}.runtime", RUNTIMES)
        c.choice(e["precision"], f"{p}.precision", PRECISIONS)
        c.integer(e["threads"], f"{p}.threads")
        eff = c.mapping(e["efficiency"], f"{p}.efficiency")
        if not eff:
            c.fail(f"{p}.efficiency", f"is empty; give a share of peak per op class ({', '.join(OP_CLASSES)}).")
        for k, v in eff.items():
            c.choice(k, f"{p}.efficiency.{k}", OP_CLASSES)
            c.number(v, f"{p}.efficiency.{k}", strict=False)  # 0 for a class that moves bytes, not MACs (a copy)
        if e.get("bandwidth_efficiency") is not None:  # None: the profile had no bandwidth to compare with
            c.number(e["bandwidth_efficiency"], f"{p}.bandwidth_efficiency")
        for k in ("overhead_ms", "per_node_ms"):
            if e.get(k) is not None:
                c.number(e[k], f"{p}.{k}", strict=False)
        if e.get("error") is not None:
            err = c.mapping(e["error"], f"{p}.error")
            if err.get("median_abs_percent") is not None:  # None: too few points for a cross-validated error
                c.number(err["median_abs_percent"], f"{p}.error.median_abs_percent", strict=False)
            if err.get("within_25_percent") is not None:
                c.number(err["within_25_percent"], f"{p}.error.within_25_percent", strict=False, maximum=1.0)
            if err.get("n") is not None:
                c.integer(err["n"], f"{p}.error.n", minimum=0)
        key = (e["runtime"], e["precision"], e["threads"])
        if key in seen:
            c.fail(p, f"repeats runtime {key[0]}, precision {key[1]}, threads {key[2]} of {path}[{seen[key]}]; keep one.")
        seen[key] = i


def _short(v: Any, limit: int = 60) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _did_you_mean(name: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


# --- safe YAML ------------------------------------------------------------------------------------------------------

_YAML_CACHE: dict[tuple[str, int, int], Any] = {}


def _read_yaml(path: Path, what: str) -> Any:
    """Safe-load one YAML file within the budgets in the module docstring (cached by path, mtime and size).

    Raises:
        InputError: unreadable, larger than :data:`MAX_FILE_BYTES`, not UTF-8, or not valid YAML (line named).
        ConfigError: too many aliases or a duplicate key (line named).
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise InputError(f"{what} {path} cannot be read: {exc.strerror or exc}.") from None
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key in _YAML_CACHE:
        return copy.deepcopy(_YAML_CACHE[key])
    text = read_small_text(path, max_bytes=MAX_FILE_BYTES, what=what)
    doc = _safe_load(text, f"{what} {path}")
    if len(_YAML_CACHE) > 256:
        _YAML_CACHE.clear()
    _YAML_CACHE[key] = doc
    return copy.deepcopy(doc)


def _safe_load(text: str, where: str) -> Any:
    import yaml

    class Loader(yaml.SafeLoader):
        aliases_seen = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self.aliases_seen += 1
                if self.aliases_seen > MAX_YAML_ALIASES:
                    line = self.peek_event().start_mark.line + 1
                    raise ConfigError(f"{where} uses more than {MAX_YAML_ALIASES} YAML aliases (line {line}); a profile "
                                      "needs none. Write the values out.")
            return super().compose_node(parent, index)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                first: dict[Any, int] = {}
                for key_node, _ in node.value:
                    key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                    if key is None:
                        continue
                    line = key_node.start_mark.line + 1
                    if key in first:
                        raise ConfigError(f"{where} has the key {key!r} twice (lines {first[key]} and {line}); YAML "
                                          "would silently keep the last one. Keep one.")
                    first[key] = line
            return super().construct_mapping(node, deep=deep)

    loader = None
    try:
        loader = Loader(text)
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise InputError(f"{where} is not valid YAML{at}: {problem}.") from None
    except RecursionError:
        raise ConfigError(f"{where} is nested too deep to read; a profile is a few levels deep.") from None
    finally:
        if loader is not None:
            loader.dispose()


# --- the host ------------------------------------------------------------------------------------------------------


def host_profile(*, search_path: Sequence[Path] | None = None) -> Profile:
    """This machine's profile, detected (no file): CPU model, cores, ISA flags, caches, memory, clocks, governor.

    MACs per cycle are derived from the ISA flags (x86) or the core type (Arm), each source says ``detected: ...``;
    the memory bandwidth is not detectable without measuring, so it is :data:`edgestill.devices.hostdetect.ASSUMED_BANDWIDTH_GBS` with source
    ``assumed`` until ``edgestill devices calibrate host`` refits it. A calibration file for ``host`` on the search
    path is merged in.
    """
    folders = list(profile_search_path() if search_path is None else search_path)
    from edgestill.devices.hostdetect import detect_host

    doc = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "id": HOST_ID, "aliases": [], "extends": None,
           **detect_host(Path("/"))}
    _validate_profile(doc, "host (detected)")
    return _build(doc, None, folders, detected=doc["detected"])
