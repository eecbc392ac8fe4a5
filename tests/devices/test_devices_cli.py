"""``edgestill devices list|show``: JSON a script can read, every number with its source, exit 2 on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import edgestill.commands.devices  # noqa: F401 - registers the devices sub-app
from edgestill.cli import app


def _run(*args: str, cwd: Path) -> tuple[int, str, str]:
    import os

    old = os.getcwd()
    os.chdir(cwd)  # .edgestill/profiles is relative to the working folder
    try:
        res = CliRunner().invoke(app, ["devices", *args], prog_name="edgestill")
    finally:
        os.chdir(old)
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(autouse=True)
def _no_env_profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGESTILL_PROFILES", raising=False)


def test_list_json_has_every_profile_with_its_peak(tmp_path: Path) -> None:
    code, out, _ = _run("list", "--json", cwd=tmp_path)
    assert code == 0
    doc = json.loads(out)
    rows = {r["id"]: r for r in doc["profiles"]}
    assert {"host", "raspberry-pi-5", "jetson-orin-nano-super", "pixel-8", "snapdragon-8-gen-2"} <= set(rows)
    pi5 = rows["raspberry-pi-5"]
    assert (pi5["cores"], pi5["peak_gmacs_fp32_all_cores"], pi5["bandwidth_gbs"]) == (4, 76.8, 17.1)
    assert pi5["calibrated"] is False and pi5["runtimes"]["onnxruntime"] == ["cpu"]
    code, out, _ = _run("list", cwd=tmp_path)
    assert code == 0 and "raspberry-pi-5" in out and "Cortex-A76" in out


def test_show_json_round_trips_into_a_user_profile(tmp_path: Path) -> None:
    code, out, _ = _run("show", "rpi5", "--json", cwd=tmp_path)
    assert code == 0
    shown = json.loads(out)
    assert shown["profile"]["id"] == "raspberry-pi-5" and shown["peak_gmacs_per_s"]["int8"]["all"] == 307.2
    assert shown["path"].endswith("raspberry-pi-5.yaml")
    # the printed profile is a valid profile file: copy it under a new id into .edgestill/profiles
    mine = dict(shown["profile"], id="our-pi5", name="Our Pi 5", aliases=[])
    folder = tmp_path / ".edgestill" / "profiles"
    folder.mkdir(parents=True)
    (folder / "our-pi5.yaml").write_text(yaml.safe_dump(mine))
    code, out, _ = _run("show", "our-pi5", "--json", cwd=tmp_path)
    assert code == 0 and json.loads(out)["profile"]["cpu"] == shown["profile"]["cpu"]


def test_show_text_gives_each_number_its_source(tmp_path: Path) -> None:
    code, out, _ = _run("show", "jetson-orin-nano-super", cwd=tmp_path)
    assert code == 0
    assert "1.7 GHz" in out and "102 GB/s" in out and "extends: jetson-orin-nano" in out
    assert out.count("source:") >= 4 and "Super mode" in out
    code, out, _ = _run("show", "host", cwd=tmp_path)
    assert code == 0 and "detected" in out and "assumed" in out


def test_show_prints_the_calibration(tmp_path: Path) -> None:
    from edgestill.devices.profiles import save_calibration

    save_calibration("pixel-8", [{"runtime": "litert", "precision": "int8", "threads": 4,
                                  "efficiency": {"conv": 0.25, "depthwise": 0.05}, "overhead_ms": 0.1,
                                  "error": {"median_abs_percent": 9.5, "within_25_percent": 0.9, "n": 12}}],
                     folder=tmp_path / ".edgestill" / "profiles")
    code, out, _ = _run("show", "pixel-8", cwd=tmp_path)
    assert code == 0 and "litert int8 4 thr: efficiency conv 0.25, depthwise 0.05; overhead ms 0.1" in out
    assert "error median 9.5%, 90% within 25% (n=12)" in out
    code, out, _ = _run("list", "--json", cwd=tmp_path)
    assert {r["id"]: r["calibrated"] for r in json.loads(out)["profiles"]}["pixel-8"] is True


def test_bad_input_exits_2_with_the_fix(tmp_path: Path) -> None:
    code, _, err = _run("show", "raspbery-pi-5", cwd=tmp_path)
    assert code == 2 and "Did you mean 'raspberry-pi-5'?" in err and "Traceback" not in err
    code, _, err = _run("list", "--profiles", str(tmp_path / "missing"), cwd=tmp_path)
    assert code == 2 and "--profiles" in err and "does not exist" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "board.yaml").write_text(yaml.safe_dump({
        "schema": "edgestill-device-profile", "schema_version": 1, "id": "board", "name": "B", "class": "x86",
        "soc": "S", "cpu": {"clusters": [{"core": "c", "count": 1, "ghz": 3, "macs_per_cycle": {"fp32": 16},
                                          "source": "s"}]},
        "memory": {"size_gb": 8, "source": "s"}, "runtimes": {}}))
    code, _, err = _run("show", "board", "--profiles", str(bad), cwd=tmp_path)
    assert code == 2 and "board.yaml: memory.bandwidth_gbs is missing" in err
