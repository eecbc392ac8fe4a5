"""A recipe's bench stage on several devices: ``host``, a device of an inventory file (measured through its
transport, the eval data sent along so accuracy is measured there), and a profile to estimate on (``kind:
estimated``, never shown as measured)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.commands.test_distill_cli import edgestill, write_recipe
from tests.commands.test_run_cli import run_doc


def _inventory(tmp_path: Path) -> Path:
    inv = tmp_path / "devices.yaml"
    inv.write_text(yaml.safe_dump({"schema": "edgestill-inventory", "schema_version": 1, "devices": [
        {"name": "bench-box", "profile": "x86-i7-12700k", "transport": "local"}]}))
    return inv


@pytest.mark.slow
def test_a_recipe_measures_on_an_inventory_device_and_estimates_on_a_profile(tmp_path: Path) -> None:
    out = tmp_path / "out"
    doc = run_doc(tmp_path, export={"formats": ["onnx"], "precisions": ["fp32"]},
                  bench={"threads": [1], "min_runs": 5, "min_seconds": 0.05, "devices": ["host", "bench-box"],
                         "inventory": "devices.yaml", "estimate": ["raspberry-pi-5"]})
    _inventory(tmp_path)
    r = edgestill("run", str(write_recipe(tmp_path / "r.yaml", doc)), "--out", str(out), "--db",
                  str(tmp_path / "r.db"), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    (art,) = report["artifacts"]
    cells = art["measurements"]
    assert [c["kind"] for c in cells] == ["measured", "measured", "estimated"]
    host, box, est = cells
    assert host["provenance"]["device"] == "host"
    assert box["provenance"]["device"]["id"] == "bench-box" and box["provenance"]["device"]["transport"] == "local"
    # measured on the device itself, from the eval data that travelled with the job: the same runtime here, so the
    # same figures the evaluate stage found on the host
    assert box["accuracy"]["value"] == pytest.approx(art["test_accuracy"])
    assert box["teacher_top1_agreement"] == pytest.approx(art["teacher_top1_agreement"])
    assert est["low_ms"] < est["high_ms"] and est.get("p50_ms") is None or est["kind"] == "estimated"
    assert "raspberry-pi-5" in json.dumps(est["provenance"])
    assert (out / "checkpoints" / "device-eval.npz").is_file()
    md = (out / "report.md").read_text()
    assert "estimated" in md.lower()


@pytest.mark.parametrize(("bench", "phrase"), [
    ({"devices": ["pi5"]}, "bench.devices: unknown device 'pi5'"),
    ({"devices": ["host", "bench-bx"], "inventory": "devices.yaml"}, "did you mean 'bench-box'"),
    ({"estimate": ["raspbery-pi-5"]}, "raspberry-pi-5"),
    ({"devices": ["host"], "inventory": "missing.yaml"}, "bench.inventory"),
], ids=["remote device without an inventory", "misspelt inventory device", "misspelt profile", "missing inventory"])
def test_bad_bench_devices_exit_2_naming_the_key_before_anything_runs(tmp_path: Path, bench: dict, phrase: str) -> None:
    _inventory(tmp_path)
    doc = run_doc(tmp_path)
    doc["bench"].update(bench)
    out = tmp_path / "out"
    r = edgestill("run", str(write_recipe(tmp_path / "r.yaml", doc)), "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert phrase.lower() in r.stderr.lower() and "Traceback" not in r.stderr
    assert not out.exists()
