"""devices.yaml: what a user writes is read safely, and every mistake names the file, the device and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgestill.devices.inventory import MAX_INVENTORY_BYTES, load_inventory
from edgestill.errors import ConfigError, InputError

GOOD = """\
schema: edgestill-inventory
schema_version: 1
devices:
  - name: pi5-lab-1
    profile: raspberry-pi-5
    transport: ssh
    host: 192.168.1.20
    user: pi
    key_file: keys/id_ed25519
    known_hosts: ~/.ssh/known_hosts
    python: /home/pi/venv/bin/python
    cooldown_s: 5
  - name: pixel-8
    profile: pixel-8
    transport: adb
    serial: 3A071FDH2003XY
    benchmark_model: /data/local/tmp/benchmark_model
  - name: this-box
    profile: host
    transport: local
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "devices.yaml"
    p.write_text(text)
    return p


def test_a_valid_inventory_loads_with_defaults_and_paths_resolved(tmp_path: Path) -> None:
    inv = load_inventory(_write(tmp_path, GOOD))
    assert inv.names == ["pi5-lab-1", "pixel-8", "this-box"]
    pi = inv.get("pi5-lab-1")
    assert pi.key_file == tmp_path / "keys" / "id_ed25519"  # relative to the inventory file
    assert pi.known_hosts == Path.home() / ".ssh" / "known_hosts"  # ~ expanded
    assert (pi.port, pi.workdir, pi.cooldown_s, pi.retries) == (22, "/tmp/edgestill-jobs", 5.0, 3)
    assert inv.get("pixel-8").workdir == "/data/local/tmp/edgestill"
    assert inv.get("this-box").transport == "local"


def test_an_unknown_device_name_suggests_the_closest(tmp_path: Path) -> None:
    inv = load_inventory(_write(tmp_path, GOOD))
    with pytest.raises(InputError, match=r"no device 'pi5-lab1'.*Did you mean 'pi5-lab-1'"):
        inv.get("pi5-lab1")
    with pytest.raises(InputError, match="pixel-9"):
        inv.select(["this-box", "pixel-9"])


@pytest.mark.parametrize(("old", "new", "message"), [
    ("    host: 192.168.1.20\n", "", r"devices\[0\] \(pi5-lab-1\)\.host is missing"),
    ("    host: 192.168.1.20\n", "    hots: 192.168.1.20\n", r"unknown field 'hots'.*Did you mean 'host'"),
    ("    transport: ssh\n", "    transport: shh\n", r"transport is 'shh'\. Did you mean 'ssh'"),
    ("    key_file: keys/id_ed25519\n", "", r"key_file is missing; ssh devices use key authentication only"),
    ("    cooldown_s: 5\n", "    cooldown_s: -1\n", r"cooldown_s is -1"),
    ("    python: /home/pi/venv/bin/python\n", "    port: 70000\n", r"port is 70000"),
    ("    python: /home/pi/venv/bin/python\n", "    python: PYTHONPATH=/x\n", r"python is 'PYTHONPATH=/x'"),
    ("  - name: pixel-8\n", "  - name: pi5-lab-1\n", r"repeats the device name 'pi5-lab-1'"),
    ("schema_version: 1\n", "schema_version: 2\n", r"'schema_version' is 2"),
    ("    serial: 3A071FDH2003XY\n", "    serial: 3A071FDH2003XY\n    workdir: tmp/rel\n", r"workdir is 'tmp/rel'.*absolute"),
])
def test_schema_mistakes_name_the_file_device_and_field(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in GOOD
    p = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError, match=message) as info:
        load_inventory(p)
    assert str(p) in str(info.value)


def test_an_unknown_profile_is_refused_with_the_device_named(tmp_path: Path) -> None:
    p = _write(tmp_path, GOOD.replace("profile: raspberry-pi-5", "profile: raspbery-pi-5"))
    with pytest.raises(ConfigError, match=r"device 'pi5-lab-1' has profile 'raspbery-pi-5'.*Did you mean 'raspberry-pi-5'"):
        load_inventory(p)


def test_duplicate_keys_are_refused_with_their_line(tmp_path: Path) -> None:
    p = _write(tmp_path, GOOD.replace("    user: pi\n", "    user: pi\n    user: root\n"))
    with pytest.raises(ConfigError, match=r"line 9: duplicate key 'user'"):
        load_inventory(p)


def test_an_alias_bomb_and_an_oversized_file_are_refused(tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdef", "bcdefg"))
    with pytest.raises(ConfigError, match="expands to more than"):
        load_inventory(_write(tmp_path, bomb))
    big = tmp_path / "big.yaml"
    big.write_text("#" * (MAX_INVENTORY_BYTES + 1))
    with pytest.raises(InputError, match="larger than the .* limit for an inventory file"):
        load_inventory(big)


def test_python_tags_are_not_executed(tmp_path: Path) -> None:
    p = _write(tmp_path, "!!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_inventory(p)
    assert not (tmp_path / "pwned").exists()


def test_a_missing_inventory_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"does not exist.*--inventory"):
        load_inventory(tmp_path / "nope.yaml")


def test_bench_on_device_dispatches_on_the_transport(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edgestill.devices.adb as adb
    from edgestill.devices.remote import bench_on_device
    from edgestill.record import Measurement

    calls = []

    def fake_adb(entry, artifacts, thread_counts, **kw):  # the ADB transport's own tests run its command sequence
        calls.append((entry.name, [Path(a).name for a in artifacts], thread_counts, kw["eval_data"]))
        return [Measurement(artifact="m", format="tflite", precision="fp32", runtime="litert", threads=1, kind="failed")]

    monkeypatch.setattr(adb, "bench_on_adb_device", fake_adb)
    inv = load_inventory(_write(tmp_path, GOOD))
    (tmp_path / "m.tflite").write_bytes(b"x")
    [m] = bench_on_device(inv.get("pixel-8"), [tmp_path / "m.tflite"], [4])
    assert calls == [("pixel-8", ["m.tflite"], [4], None)]
    assert m.provenance["device"] == {"id": "pixel-8", "profile": "pixel-8", "transport": "adb"}
    with pytest.raises(InputError, match="thread counts"):
        bench_on_device(inv.get("pixel-8"), [tmp_path / "m.tflite"], [0])



def test_the_example_inventory_loads_with_its_profiles() -> None:
    from edgestill.devices.inventory import load_inventory

    inv = load_inventory(Path(__file__).resolve().parents[2] / "examples" / "inventory" / "devices.yaml")
    assert inv.names == ["pi5-lab-1", "pixel-8", "ci-box"]
    assert [d.transport for d in inv] == ["ssh", "adb", "local"]
    assert inv.get("pi5-lab-1").key_file is not None and "~" not in str(inv.get("pi5-lab-1").key_file)
