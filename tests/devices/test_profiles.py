"""Device profiles: the built-in files, user folders on the search path, extends, calibration overlays, the host."""

from __future__ import annotations

import csv
import os
import platform
import shutil
from pathlib import Path

import pytest
import yaml

import edgestill.devices
from edgestill.devices import profiles as prof
from edgestill.devices.hostdetect import detect_host
from edgestill.devices.profiles import (BUILTIN_DIR, Profile, host_profile, list_profiles, load_profile,
                                        profile_search_path, save_calibration)
from edgestill.errors import ConfigError, InputError, UnknownNameError
from edgestill.host import device_state

BUILTIN = [BUILTIN_DIR]
EXPECTED = {"raspberry-pi-4", "raspberry-pi-4-oc1950", "raspberry-pi-5", "jetson-nano", "jetson-orin-nano",
            "jetson-orin-nano-super", "pixel-3", "pixel-4", "pixel-7", "pixel-8", "snapdragon-8-gen-2",
            "snapdragon-8-gen-3", "x86-i7-12700k"}  # fmt: skip


def _write(folder: Path, name: str, doc: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _board(pid: str = "my-board", **over: object) -> dict:
    """A complete, valid profile document to vary in a test."""
    doc = {"schema": "edgestill-device-profile", "schema_version": 1, "id": pid, "name": "My board",
           "class": "raspberry-pi", "aliases": [], "extends": None, "soc": "Test SoC",
           "cpu": {"clusters": [{"core": "Cortex-A76", "count": 4, "ghz": 2.0, "isa": ["neon"],
                                 "macs_per_cycle": {"fp32": 8}, "source": "test sheet"}]},
           "memory": {"size_gb": 4, "bandwidth_gbs": 10.0, "source": "test sheet"},
           "accelerators": [], "runtimes": {"onnxruntime": ["cpu"]}}
    doc.update(over)
    return doc


def test_every_builtin_profile_loads_validates_and_cites_its_numbers() -> None:
    found = {p.id: p for p in list_profiles(BUILTIN)}
    assert EXPECTED <= set(found) and "host" in found and len(set(found.values())) == len(found)
    for pid in EXPECTED:
        p = found[pid]
        assert p.path is not None and p.path.stem == pid
        assert p.device_class in ("phone", "jetson", "raspberry-pi", "x86")
        assert p.peak_macs_per_s("fp32", p.cpu_cores) > 1e9 and p.bandwidth_gbs > 1 and p.memory_gb > 0
        assert all(c.source.strip() for c in p.clusters) and p.sources["memory"].strip()
        assert all(a["source"].strip() for a in p.accelerators)
        assert p.to_dict()["id"] == pid and not p.calibrated


def test_published_device_ids_resolve() -> None:
    table = Path(edgestill.devices.__file__).parent / "published_latencies.csv"
    with table.open(newline="") as f:
        devices = {row["device"] for row in csv.DictReader(f)}
    assert len(devices) >= 10
    for device in devices:
        assert isinstance(load_profile(device, search_path=BUILTIN), Profile), device
    assert load_profile("snapdragon-8-gen-2-qcs8550", search_path=BUILTIN).id == "snapdragon-8-gen-2"
    assert load_profile("snapdragon-8-gen-3-galaxy-s24", search_path=BUILTIN).id == "snapdragon-8-gen-3"


def test_published_figures_are_in_the_profiles() -> None:
    pi5 = load_profile("raspberry-pi-5", search_path=BUILTIN)
    assert pi5.peak_macs_per_s("fp32", 4) == pytest.approx(153.6e9 / 2)  # 153.6 GFLOPS in device_specs.md
    assert pi5.peak_macs_per_s("int8", 4) == pytest.approx(614.4e9 / 2, rel=0.01)
    super_ = load_profile("jetson-orin-nano-super", search_path=BUILTIN)
    base = load_profile("jetson-orin-nano", search_path=BUILTIN)
    assert (super_.extends, super_.bandwidth_gbs, base.bandwidth_gbs) == ("jetson-orin-nano", 102, 68)
    assert super_.clusters[0].ghz == 1.7 and super_.caches == base.caches  # inherited block kept its own source
    oc = load_profile("raspberry-pi-4-oc1950", search_path=BUILTIN)
    assert oc.clusters[0].ghz == 1.95 and oc.memory_gb == 4 and "1950" in oc.clusters[0].source


def test_peak_fills_the_fastest_cluster_first_and_falls_back_per_precision() -> None:
    p4 = load_profile("pixel-4", search_path=BUILTIN)  # 1x A76 2.84 + 3x A76 2.42 + 4x A55 1.78
    assert p4.peak_macs_per_s("fp32", 1) == pytest.approx(2.84e9 * 8)
    assert p4.peak_macs_per_s("fp32", 2) == pytest.approx((2.84 + 2.42) * 1e9 * 8)
    all8 = (2.84 * 8 + 3 * 2.42 * 8 + 4 * 1.78 * 4) * 1e9
    assert p4.peak_macs_per_s("fp32", 8) == pytest.approx(all8) == p4.peak_macs_per_s("fp32", 64)
    pi4 = load_profile("raspberry-pi-4", search_path=BUILTIN)  # A72: no fp16 figure, int8 given
    assert pi4.peak_macs_per_s("fp16", 1) == pi4.peak_macs_per_s("fp32", 1)
    assert pi4.peak_macs_per_s("int8-static", 1) == 2 * pi4.peak_macs_per_s("fp32", 1)
    with pytest.raises(ConfigError, match="threads"):
        pi4.peak_macs_per_s("fp32", 0)
    with pytest.raises(ConfigError, match="mixed"):
        pi4.peak_macs_per_s("mixed", 1)


def test_a_user_folder_overrides_a_builtin_and_adds_a_profile(tmp_path: Path) -> None:
    user = tmp_path / "mine"
    # the user's raspberry-pi-5 extends the built-in it replaces, with a measured bandwidth of its own
    _write(user, "raspberry-pi-5.yaml", {"schema": "edgestill-device-profile", "schema_version": 1,
                                         "id": "raspberry-pi-5", "name": "Our Pi 5", "extends": "raspberry-pi-5",
                                         "memory": {"bandwidth_gbs": 9.5, "source": "our STREAM copy, 2026-12"}})
    _write(user, "my-board.yaml", _board(aliases=["lab-board"]))
    folders = [user, *BUILTIN]
    pi5 = load_profile("raspberry-pi-5", search_path=folders)
    assert (pi5.name, pi5.bandwidth_gbs, pi5.path) == ("Our Pi 5", 9.5, user / "raspberry-pi-5.yaml")
    assert pi5.clusters[0].core == "Cortex-A76" and pi5.memory_gb == 8  # the rest from the built-in
    assert load_profile("lab-board", search_path=folders).id == "my-board"
    ids = [p.id for p in list_profiles(folders)]
    assert ids[0] == "host" and ids.count("raspberry-pi-5") == 1 and "my-board" in ids
    assert load_profile("raspberry-pi-5", search_path=BUILTIN).bandwidth_gbs == 17.1
    # a path works too, with extends resolved on the search path
    assert load_profile(str(user / "raspberry-pi-5.yaml"), search_path=BUILTIN).bandwidth_gbs == 9.5


def test_the_search_path_reads_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, "one.yaml", _board("one"))
    _write(b, "two.yaml", _board("two"))
    monkeypatch.setenv("EDGESTILL_PROFILES", f"{a}{os.pathsep}{b}")
    monkeypatch.chdir(tmp_path)
    path = profile_search_path()
    assert path[:2] == [a, b] and path[-1] == BUILTIN_DIR
    assert load_profile("two").id == "two"
    monkeypatch.setenv("EDGESTILL_PROFILES", str(tmp_path / "typo"))
    with pytest.raises(InputError, match="typo.*not a folder"):
        profile_search_path()


def test_a_missing_field_is_named_with_the_file(tmp_path: Path) -> None:
    doc = _board()
    del doc["cpu"]["clusters"][0]["ghz"]
    path = _write(tmp_path, "my-board.yaml", doc)
    with pytest.raises(ConfigError) as err:
        load_profile("my-board", search_path=[tmp_path, *BUILTIN])
    assert "my-board.yaml: cpu.clusters[0].ghz is missing" in str(err.value) and err.value.exit_code == 2
    for bad, field in ((_board(memory={"size_gb": 4, "bandwidth_gbs": -1, "source": "x"}), "memory.bandwidth_gbs"),
                       (_board(**{"class": "laptop"}), "class"),
                       (_board(runtimes={"tensorflow": ["cpu"]}), "runtimes.tensorflow"),
                       (_board(memroy={}), "memroy")):
        path.write_text(yaml.safe_dump(bad))
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            load_profile(str(path), search_path=BUILTIN)


def test_a_child_changing_numbers_must_cite_them(tmp_path: Path) -> None:
    _write(tmp_path, "fast-pi.yaml", {"schema": "edgestill-device-profile", "schema_version": 1, "id": "fast-pi",
                                      "name": "Fast Pi", "extends": "raspberry-pi-5", "memory": {"bandwidth_gbs": 30}})
    with pytest.raises(ConfigError, match=r"memory changes bandwidth_gbs but keeps the parent's source"):
        load_profile("fast-pi", search_path=[tmp_path, *BUILTIN])


def test_an_unknown_id_suggests_the_closest() -> None:
    with pytest.raises(UnknownNameError) as err:
        load_profile("raspbery-pi-5", search_path=BUILTIN)
    assert "Did you mean 'raspberry-pi-5'?" in str(err.value) and "jetson-nano" in str(err.value)
    assert err.value.exit_code == 2


def test_an_extends_cycle_and_an_unknown_parent_are_refused(tmp_path: Path) -> None:
    base = {"schema": "edgestill-device-profile", "schema_version": 1, "name": "x"}
    _write(tmp_path, "a.yaml", {**base, "id": "a", "extends": "b"})
    _write(tmp_path, "b.yaml", {**base, "id": "b", "extends": "a"})
    _write(tmp_path, "c.yaml", {**base, "id": "c", "extends": "raspbery-pi-5"})
    with pytest.raises(ConfigError, match="cycle"):
        load_profile("a", search_path=[tmp_path, *BUILTIN])
    with pytest.raises(ConfigError, match="Did you mean 'raspberry-pi-5'"):
        load_profile("c", search_path=[tmp_path, *BUILTIN])


def test_files_are_read_defensively(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    _write(folder, "one.yaml", _board("same"))
    _write(folder, "two.yaml", _board("same"))
    with pytest.raises(ConfigError, match="both have id 'same'"):
        load_profile("same", search_path=[folder])
    shutil.rmtree(folder)
    folder.mkdir()
    (folder / "dup.yaml").write_text("id: dup\nname: a\nname: b\n")
    with pytest.raises(ConfigError, match="'name' twice"):
        load_profile("dup", search_path=[folder])
    bomb = "a: &a [x, x]\n" + "".join(f"{c}: &{c} [*{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    (folder / "dup.yaml").write_text(bomb)
    with pytest.raises(ConfigError, match="aliases"):
        load_profile(str(folder / "dup.yaml"))
    (folder / "dup.yaml").write_text("#" * (prof.MAX_FILE_BYTES + 10))
    with pytest.raises(InputError, match="larger than"):
        load_profile(str(folder / "dup.yaml"))
    (folder / "dup.yaml").write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_profile(str(folder / "dup.yaml"))


def test_a_calibration_file_is_merged_and_validated(tmp_path: Path) -> None:
    entry = {"runtime": "onnxruntime", "precision": "fp32", "threads": 1,
             "efficiency": {"conv": 0.4, "depthwise": 0.08, "matmul": 0.5, "other": 0.3},
             "bandwidth_efficiency": 0.5, "overhead_ms": 0.03, "per_node_ms": 0.002,
             "error": {"median_abs_percent": 8.1, "within_25_percent": 0.95, "n": 24, "method": "leave-one-shape-out"},
             "fitted_on": "microbenchmarks"}
    path = save_calibration("raspberry-pi-5", [entry], folder=tmp_path)
    assert path == tmp_path / "raspberry-pi-5.calibration.yaml"
    save_calibration("raspberry-pi-5", [{**entry, "threads": 4, "efficiency": {"conv": 0.3}}], folder=tmp_path)
    p = load_profile("raspberry-pi-5", search_path=[tmp_path, *BUILTIN])
    assert p.calibrated and p.calibration_path == path and len(p.calibration) == 2
    assert p.calibration_for("onnxruntime", "fp32", 1)["efficiency"]["conv"] == 0.4
    assert p.calibration_for("onnxruntime", "fp32", 4)["efficiency"] == {"conv": 0.3}
    assert p.calibration_for("onnxruntime", "int8", 1) is None and p.calibration_for("litert", "fp32", 1) is None
    assert p.to_dict()["calibration"] == list(p.calibration)
    assert not load_profile("raspberry-pi-5", search_path=BUILTIN).calibrated
    # what `edgestill devices calibrate` writes: a device block, a copy class at 0 MAC/s, no bandwidth or error yet
    doc = yaml.safe_load(path.read_text())
    doc["device"] = {"name": "pi5-lab-1", "transport": "ssh"}
    doc["entries"][0].update(bandwidth_efficiency=None, error={"median_abs_percent": None, "n": 0},
                             efficiency={"conv": 0.4, "elementwise": 0.0}, peak_macs_per_s=1e9)
    path.write_text(yaml.safe_dump(doc))
    entry1 = load_profile("raspberry-pi-5", search_path=[tmp_path, *BUILTIN]).calibration_for("onnxruntime", "fp32", 1)
    assert entry1["efficiency"]["elementwise"] == 0.0 and entry1["peak_macs_per_s"] == 1e9
    doc = yaml.safe_load(path.read_text())
    doc["entries"][0]["efficiency"]["convv"] = 0.1
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"entries\[0\]\.efficiency\.convv.*Did you mean 'conv'"):
        load_profile("raspberry-pi-5", search_path=[tmp_path, *BUILTIN])
    with pytest.raises(ConfigError, match="threads"):
        save_calibration("pixel-8", [{**entry, "threads": 0}], folder=tmp_path)
    assert not (tmp_path / "pixel-8.calibration.yaml").exists()


def test_the_host_is_detected_with_sane_values(tmp_path: Path) -> None:
    h = host_profile(search_path=[tmp_path])
    assert h.id == "host" and h.path is None and h.detected is not None
    assert 1 <= h.cpu_cores <= (os.cpu_count() or 1)
    assert h.detected["logical_cores"] == os.cpu_count()
    assert all(0.2 < c.ghz < 7 and c.macs_per_cycle["fp32"] >= 1 for c in h.clusters)
    assert all(c.source.startswith("detected:") for c in h.clusters)
    assert "assumed" in h.sources["memory"] and h.bandwidth_gbs > 0
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kb = int(next(line for line in meminfo.read_text().splitlines() if line.startswith("MemTotal")).split()[1])
        assert h.memory_gb == pytest.approx(kb / 2**20, abs=0.1)
    if platform.machine() == "x86_64":
        assert h.device_class == "x86"
        if "avx2" in h.detected["flags"] and "fma" in h.detected["flags"]:
            assert h.clusters[0].macs_per_cycle["fp32"] >= 16
    assert load_profile("host", search_path=[tmp_path]).to_dict()["id"] == "host"
    save_calibration("host", [{"runtime": "onnxruntime", "precision": "int8", "threads": 2,
                               "efficiency": {"conv": 0.2}}], folder=tmp_path)
    assert host_profile(search_path=[tmp_path]).calibration_for("onnxruntime", "int8-static", 2) is not None


def test_an_arm_board_is_detected_from_its_sysfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Raspberry Pi 5 laid out under a fake root: the core from 'CPU part', the clock from cpufreq."""
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    cpuinfo = "".join(f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd asimdhp asimddp\n"
                      f"CPU implementer\t: 0x41\nCPU part\t: 0xd0b\n\n" for i in range(4))
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/cpuinfo").write_text(cpuinfo)
    (tmp_path / "proc/meminfo").write_text("MemTotal:        8245416 kB\n")
    (tmp_path / "proc/device-tree/model").write_text("Raspberry Pi 5 Model B Rev 1.0\x00")
    for i in range(4):
        cpu = tmp_path / f"sys/devices/system/cpu/cpu{i}"
        (cpu / "topology").mkdir(parents=True)
        (cpu / "cpufreq").mkdir()
        (cpu / "topology/core_id").write_text(f"{i}\n")
        (cpu / "topology/physical_package_id").write_text("0\n")
        (cpu / "cpufreq/cpuinfo_max_freq").write_text("2400000\n")
    doc = {"schema": "edgestill-device-profile", "schema_version": 1, "id": "host", **detect_host(tmp_path)}
    prof._validate_profile(doc, "fake pi")
    (cluster,) = doc["cpu"]["clusters"]
    assert doc["class"] == "raspberry-pi" and doc["memory"]["size_gb"] == pytest.approx(7.9, abs=0.1)
    assert (cluster["core"], cluster["count"], cluster["ghz"]) == ("Cortex-A76", 4, 2.4)
    assert cluster["macs_per_cycle"] == {"fp32": 8, "int8": 32, "fp16": 16}


def test_device_state_keys_and_a_throttled_pi(tmp_path: Path) -> None:
    state = device_state()
    assert set(state) == {"governor", "temperature_c", "throttled", "throttle_flags", "freq_mhz"}
    (tmp_path / "sys/devices/system/cpu/cpu0/cpufreq").mkdir(parents=True)
    (tmp_path / "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").write_text("ondemand\n")
    for i, milli in enumerate(("45500", "61250", "-274000")):  # the last one is a disconnected sensor
        (tmp_path / f"sys/class/thermal/thermal_zone{i}").mkdir(parents=True)
        (tmp_path / f"sys/class/thermal/thermal_zone{i}/temp").write_text(milli + "\n")
    (tmp_path / "sys/devices/platform/soc/soc:firmware").mkdir(parents=True)
    (tmp_path / "sys/devices/platform/soc/soc:firmware/get_throttled").write_text("50004\n")
    state = device_state(root=tmp_path)
    assert (state["governor"], state["temperature_c"], state["throttled"]) == ("ondemand", 61.2, True)
    flags = state["throttle_flags"]
    assert flags["throttled"] and not flags["under_voltage"] and flags["under_voltage_since_boot"]
    assert device_state(root=tmp_path / "nothing")["throttled"] is None


def test_a_hybrid_intel_cpu_is_detected_as_two_clusters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Alder Lake under a fake root: P-cores (two SMT threads on one core) and E-cores from cpu_core/cpu_atom."""
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text("".join(
        f"processor\t: {i}\nmodel name\t: 12th Gen Intel(R) Core(TM) i7-12700K\nflags\t\t: fpu sse4_2 avx avx2 fma "
        "avx_vnni\n\n" for i in range(4)))
    for name, cpus in (("cpu_core", "0-1"), ("cpu_atom", "2-3")):
        (tmp_path / f"sys/devices/{name}").mkdir(parents=True)
        (tmp_path / f"sys/devices/{name}/cpus").write_text(cpus + "\n")
    for i, (core, khz) in enumerate(((0, 4900000), (0, 4900000), (8, 3800000), (9, 3800000))):
        cpu = tmp_path / f"sys/devices/system/cpu/cpu{i}"
        (cpu / "topology").mkdir(parents=True)
        (cpu / "cpufreq").mkdir()
        (cpu / "topology/core_id").write_text(f"{core}\n")
        (cpu / "topology/physical_package_id").write_text("0\n")
        (cpu / "cpufreq/cpuinfo_max_freq").write_text(f"{khz}\n")
    doc = detect_host(tmp_path)
    p_core, e_core = doc["cpu"]["clusters"]
    assert (p_core["count"], p_core["ghz"], p_core["macs_per_cycle"]) == (1, 4.9, {"fp32": 16, "int8": 64})
    assert (e_core["count"], e_core["ghz"], e_core["macs_per_cycle"]) == (2, 3.8, {"fp32": 8, "int8": 32})
    assert "P-core" in p_core["core"] and doc["class"] == "x86" and doc["detected"]["physical_cores"] == 3
