"""The device inventory (``devices.yaml``): which devices exist, how to reach each one and which profile describes it.

Example::

    schema: edgestill-inventory
    schema_version: 1
    devices:
      - name: pi5-lab-1
        profile: raspberry-pi-5
        transport: ssh              # ssh | adb | local
        host: 192.168.1.20
        port: 22
        user: pi
        key_file: ~/.ssh/id_ed25519
        known_hosts: ~/.ssh/known_hosts
        python: /home/pi/venv/bin/python
        workdir: /tmp/edgestill-jobs
        cooldown_s: 0
      - name: pixel-8
        profile: pixel-8
        transport: adb
        serial: 3A071FDH2003XY
        benchmark_model: /data/local/tmp/benchmark_model
        workdir: /data/local/tmp/edgestill

The file is untrusted input: it is read with a safe YAML loader, at most :data:`MAX_INVENTORY_BYTES`, with duplicate
keys refused and aliases expanding to at most :data:`MAX_VALUES` values. Every error names the file, the device and
the field, and says what is valid (exit 2). Local paths (``key_file``, ``known_hosts``) have ``~`` expanded and are
taken relative to the inventory file's folder; device paths (``python``, ``workdir``, ``benchmark_model``) are the
device's own and are only checked for shape (absolute, one line).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgestill.errors import ConfigError, EdgestillError, InputError, did_you_mean
from edgestill.limits import read_small_text

SCHEMA = "edgestill-inventory"
SCHEMA_VERSION = 1
TRANSPORT_NAMES = ("ssh", "adb", "local")
MAX_INVENTORY_BYTES = 1 << 20
"""An inventory lists devices, a few hundred bytes each: 1 MiB is thousands of devices."""
MAX_VALUES = 100_000
"""Values (mappings, lists, scalars) the file may expand to once its aliases are resolved (an alias bomb stops here)."""
MAX_DEPTH = 32
"""Nesting levels; an inventory has three (file, devices, device)."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_FIELDS = {
    "common": ("name", "profile", "transport", "cooldown_s", "workdir"),
    "ssh": ("host", "port", "user", "key_file", "known_hosts", "python", "connect_timeout_s", "retries"),
    "adb": ("serial", "benchmark_model", "adb"),
    "local": (),
}
_DEFAULT_WORKDIR = {"ssh": "/tmp/edgestill-jobs", "adb": "/data/local/tmp/edgestill", "local": ""}


@dataclass(frozen=True, kw_only=True)
class DeviceEntry:
    """One device of the inventory. Fields that do not apply to its transport are None."""

    name: str
    profile: str
    transport: str
    host: str | None = None
    port: int = 22
    user: str | None = None
    key_file: Path | None = None
    known_hosts: Path | None = None
    python: str = "python3"
    workdir: str = ""
    cooldown_s: float = 0.0
    connect_timeout_s: float = 10.0
    retries: int = 3  # connection attempts after the first, for transient failures only (refused, timed out, reset)
    serial: str | None = None
    benchmark_model: str | None = None
    adb: str = "adb"  # the adb client on this machine
    source: Path | None = None  # the inventory file it came from

    def to_dict(self) -> dict[str, Any]:
        """The entry as plain JSON-able values (paths as strings)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Inventory:
    """The devices of one inventory file, in file order."""

    path: Path | None
    devices: tuple[DeviceEntry, ...] = field(default_factory=tuple)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.devices]

    def get(self, name: str) -> DeviceEntry:
        """The device called ``name``.

        Raises:
            InputError: no such device (the closest name is suggested, the valid ones listed).
        """
        for d in self.devices:
            if d.name == name:
                return d
        raise InputError(f"no device {name!r} in the inventory {self.path}.{did_you_mean(name, self.names)} "
                         f"Devices there: {', '.join(self.names) or '(none)'}.")

    def select(self, names: Sequence[str] | None) -> list[DeviceEntry]:
        """The devices called ``names`` (all of them when None), in the order given; each name checked."""
        if names is None:
            return list(self.devices)
        return [self.get(n) for n in names]

    def __iter__(self) -> Iterator[DeviceEntry]:
        return iter(self.devices)

    def __len__(self) -> int:
        return len(self.devices)


def load_inventory(path: str | os.PathLike[str], *, check_profiles: bool = True,
                   profile_search_path: Sequence[Path] | None = None) -> Inventory:
    """Read and validate an inventory file.

    Args:
        path: the ``devices.yaml``.
        check_profiles: resolve each device's ``profile`` with :func:`edgestill.devices.profiles.load_profile`
            (an unknown profile id is an error naming the device).
        profile_search_path: where profiles are looked up (default: the profiles module's search path).

    Raises:
        InputError: the file is missing, too large or not YAML; ConfigError: a schema problem (file, device and field
            named, the valid choices listed), a duplicate key or device name, an alias bomb, an unknown profile.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"inventory {p} does not exist. Write a devices.yaml (schema: {SCHEMA}; see "
                         "`edgestill lab run --help`) and pass its path with --inventory.")
    if not p.is_file():
        raise InputError(f"inventory {p} is not a regular file; pass the path of a devices.yaml.")
    text = read_small_text(p, max_bytes=MAX_INVENTORY_BYTES, what="inventory")
    doc = safe_yaml(text, where=str(p))
    inv = parse_inventory(doc, where=str(p), base=p.parent)
    inv = Inventory(p, tuple(_with_source(d, p) for d in inv.devices))
    if check_profiles:
        _check_profiles(inv, profile_search_path)
    return inv


def _with_source(d: DeviceEntry, p: Path) -> DeviceEntry:
    from dataclasses import replace

    return replace(d, source=p)


def _check_profiles(inv: Inventory, search_path: Sequence[Path] | None) -> None:
    try:
        from edgestill.devices.profiles import load_profile
    except ImportError as exc:  # the profiles module is part of this package; its absence is an install problem
        raise InputError(f"cannot check the profiles of inventory {inv.path}: edgestill.devices.profiles is missing "
                         f"({exc}); reinstall edgestill.") from None
    for d in inv.devices:
        try:
            load_profile(d.profile, search_path=search_path)
        except EdgestillError as exc:
            raise ConfigError(f"{inv.path}: device {d.name!r} has profile {d.profile!r}, which cannot be loaded: {exc}") from None


def parse_inventory(doc: Any, *, where: str = "inventory", base: Path | None = None) -> Inventory:
    """Validate a loaded inventory document (see the module docstring) and build its entries.

    Raises:
        ConfigError: the first schema problem, with the file, the device and the field named.
    """
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: an inventory is a mapping with 'schema: {SCHEMA}', 'schema_version: "
                          f"{SCHEMA_VERSION}' and 'devices: [...]'; got {type(doc).__name__}.")
    unknown = sorted(set(map(str, doc)) - {"schema", "schema_version", "devices"})
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key(s) {unknown}; valid keys: schema, schema_version, devices.")
    if doc.get("schema") != SCHEMA:
        raise ConfigError(f"{where}: 'schema' is {doc.get('schema')!r}; an inventory file says 'schema: {SCHEMA}'.")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise ConfigError(f"{where}: 'schema_version' is {doc.get('schema_version')!r}; this edgestill reads "
                          f"version {SCHEMA_VERSION}.")
    devices = doc.get("devices")
    if not isinstance(devices, list) or not devices:
        raise ConfigError(f"{where}: 'devices' must be a non-empty list of devices (each with name, profile, "
                          f"transport ...); got {devices!r:.80}.")
    entries: list[DeviceEntry] = []
    seen: set[str] = set()
    for i, raw in enumerate(devices):
        entry = _entry(raw, where=f"{where}: devices[{i}]", base=base)
        if entry.name in seen:
            raise ConfigError(f"{where}: devices[{i}] repeats the device name {entry.name!r}; names must be unique.")
        seen.add(entry.name)
        entries.append(entry)
    return Inventory(None, tuple(entries))


def _entry(raw: Any, *, where: str, base: Path | None) -> DeviceEntry:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping with name, profile and transport; got {raw!r:.80}.")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{where}.name is {name!r}; a device name is 1-64 letters, digits, '.', '_' or '-' "
                          "(e.g. pi5-lab-1).")
    where = f"{where} ({name})"
    transport = raw.get("transport")
    if transport not in TRANSPORT_NAMES:
        hint = did_you_mean(str(transport), TRANSPORT_NAMES) if isinstance(transport, str) else ""
        raise ConfigError(f"{where}.transport is {transport!r}.{hint} Valid transports: {', '.join(TRANSPORT_NAMES)}.")
    valid = _FIELDS["common"] + _FIELDS[transport]
    unknown = sorted(set(map(str, raw)) - set(valid))
    if unknown:
        k = unknown[0]
        raise ConfigError(f"{where}: unknown field {k!r} for a {transport} device.{did_you_mean(k, valid)} "
                          f"Valid fields: {', '.join(valid)}.")
    profile = raw.get("profile")
    if not isinstance(profile, str) or not profile.strip():
        raise ConfigError(f"{where}.profile is {profile!r}; name a device profile id (see `edgestill devices list`), "
                          "e.g. raspberry-pi-5 or host.")
    kw: dict[str, Any] = {"name": name, "profile": profile, "transport": transport}
    kw["cooldown_s"] = _number(raw, "cooldown_s", where, 0.0, low=0.0, high=3600.0)
    kw["workdir"] = _device_path(raw, "workdir", where, _DEFAULT_WORKDIR[transport]) if transport != "local" else ""
    if transport == "ssh":
        kw["host"] = _text(raw, "host", where, required=True, example="192.168.1.20")
        kw["user"] = _text(raw, "user", where, required=True, example="pi")
        port = raw.get("port", 22)
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ConfigError(f"{where}.port is {port!r}; a TCP port is a whole number in 1..65535 (ssh uses 22).")
        kw["port"] = port
        key = raw.get("key_file")
        if key is None:
            raise ConfigError(f"{where}.key_file is missing; ssh devices use key authentication only: name the private "
                              "key file (e.g. ~/.ssh/id_ed25519) whose public key is in the device's authorized_keys.")
        kw["key_file"] = _local_path(key, "key_file", where, base)
        kw["known_hosts"] = _local_path(raw.get("known_hosts", "~/.ssh/known_hosts"), "known_hosts", where, base)
        kw["python"] = _device_path(raw, "python", where, "python3", absolute=False)
        if kw["python"].startswith("-") or "=" in kw["python"]:  # `env` would read it as an option or a variable
            raise ConfigError(f"{where}.python is {kw['python']!r}; give the device's python as a path or a command name "
                              "without '=' and not starting with '-' (e.g. /home/pi/venv/bin/python).")
        kw["connect_timeout_s"] = _number(raw, "connect_timeout_s", where, 10.0, low=0.1, high=600.0)
        retries = raw.get("retries", 3)
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
            raise ConfigError(f"{where}.retries is {retries!r}; give a whole number of connection retries in 0..10.")
        kw["retries"] = retries
    elif transport == "adb":
        kw["serial"] = _text(raw, "serial", where, required=False, example="3A071FDH2003XY")
        kw["benchmark_model"] = _device_path(raw, "benchmark_model", where, "/data/local/tmp/benchmark_model")
        kw["adb"] = _text(raw, "adb", where, required=False, example="adb") or "adb"
    return DeviceEntry(**kw)


def _text(raw: dict[str, Any], key: str, where: str, *, required: bool, example: str) -> str | None:
    v = raw.get(key)
    if v is None and not required:
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool) and key == "serial":
        v = str(v)
    if not isinstance(v, str) or not v.strip() or not v.isprintable() or v != v.strip():
        what = "missing" if v is None else f"{v!r:.80}"
        raise ConfigError(f"{where}.{key} is {what}; give one line of text (e.g. {example}).")
    if key in ("host", "user") and v.startswith("-"):
        raise ConfigError(f"{where}.{key} is {v!r}; it may not start with '-' (e.g. {example}).")
    return v


def _number(raw: dict[str, Any], key: str, where: str, default: float, *, low: float, high: float) -> float:
    v = raw.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high:
        raise ConfigError(f"{where}.{key} is {v!r}; give a number of seconds in [{low:g}, {high:g}].")
    return float(v)


def _device_path(raw: dict[str, Any], key: str, where: str, default: str, *, absolute: bool = True) -> str:
    v = raw.get(key, default)
    if not isinstance(v, str) or not v or not v.isprintable() or "\x00" in v:
        raise ConfigError(f"{where}.{key} is {v!r:.80}; give a path on the device, one line (e.g. {default}).")
    if absolute and not v.startswith("/"):
        raise ConfigError(f"{where}.{key} is {v!r}; a folder or file on the device is given by its absolute path "
                          f"(e.g. {default}).")
    if absolute and ".." in v.split("/"):
        raise ConfigError(f"{where}.{key} is {v!r}; write it without '..' (e.g. {default}).")
    return v.rstrip("/") or "/"


def _local_path(v: Any, key: str, where: str, base: Path | None) -> Path:
    if not isinstance(v, str) or not v.strip() or "\x00" in v:
        raise ConfigError(f"{where}.{key} is {v!r:.80}; give a file path on this machine (e.g. ~/.ssh/id_ed25519).")
    p = Path(v).expanduser()
    if not p.is_absolute() and base is not None:
        p = base / p
    return p


# --- safe YAML --------------------------------------------------------------------------------------------------------
def safe_yaml(text: str, *, where: str) -> Any:
    """Safe-load one YAML document: no python tags, no duplicate keys, at most :data:`MAX_VALUES` values with aliases
    expanded (no alias inside itself), at most :data:`MAX_DEPTH` levels.

    Raises:
        ConfigError: the text is not YAML, or breaks one of the rules (the line is named where known).
    """
    import yaml

    class _Loader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                self.flatten_mapping(node)
                seen: set[Any] = set()
                for key_node, _ in node.value:
                    key = self.construct_object(key_node, deep=True)
                    try:
                        dup = key in seen
                    except TypeError:
                        raise ConfigError(f"{where}: line {key_node.start_mark.line + 1}: a mapping key must be text, "
                                          f"got {type(key).__name__}.") from None
                    if dup:
                        raise ConfigError(f"{where}: line {key_node.start_mark.line + 1}: duplicate key {key!r}; each "
                                          "key may appear once in a mapping (the later one would silently win).")
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise ConfigError(f"{where} is empty; an inventory starts with 'schema: {SCHEMA}'.")
            _count_values(node, where)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {str(exc).splitlines()[0] if str(exc) else exc} "
                          f"({_mark(exc)}).") from None
    except RecursionError:
        raise ConfigError(f"{where} nests too deeply to be an inventory.") from None


def _mark(exc: Any) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "position unknown"


def _count_values(root: Any, where: str) -> None:
    """Walk the node graph as it would be expanded; refuse more than MAX_VALUES values, MAX_DEPTH levels or a cycle."""
    import yaml

    count = 0
    stack: list[tuple[Any, int, frozenset[int]]] = [(root, 0, frozenset())]
    while stack:
        node, depth, parents = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(f"{where} expands to more than {MAX_VALUES:,} values once its aliases are resolved; an "
                              "inventory has a few per device. Remove the aliases that repeat large parts.")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{where}: line {node.start_mark.line + 1} nests more than {MAX_DEPTH} levels deep.")
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            if id(node) in parents:
                raise ConfigError(f"{where}: line {node.start_mark.line + 1}: a value contains itself (an alias of a "
                                  "value it is part of). Remove that alias.")
            inner = parents | {id(node)}
            children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else node.value
            stack.extend((c, depth + 1, inner) for c in children)
