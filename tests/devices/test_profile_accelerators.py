"""A profile's ``runtimes`` block is what ``bench --device`` accepts as --accelerator there: every name in it must be
one its runtime can be asked for, and a name it lacks is refused before anything reaches the device."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgestill.devices.inventory import parse_inventory
from edgestill.devices.profiles import list_profiles
from edgestill.devices.remote import bench_on_device
from edgestill.errors import InputError
from edgestill.runtimes.base import RUNTIME_ACCELERATORS


def test_every_built_in_profile_lists_only_accelerators_its_runtimes_offer() -> None:
    for profile in list_profiles():
        for runtime, accelerators in (profile.runtimes or {}).items():
            assert runtime in RUNTIME_ACCELERATORS, (profile.id, runtime)
            unknown = set(accelerators) - set(RUNTIME_ACCELERATORS[runtime])
            assert not unknown, f"{profile.id}: {runtime} lists {sorted(unknown)}, which {runtime} cannot be asked for"


def test_an_accelerator_the_device_profile_lacks_is_refused_before_anything_runs(tmp_path: Path) -> None:
    inv = parse_inventory({"schema": "edgestill-inventory", "schema_version": 1, "devices": [
        {"name": "pi", "profile": "raspberry-pi-5", "transport": "local"}]})
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not read: the check comes first")
    with pytest.raises(InputError, match=r"does not offer --accelerator cuda on onnxruntime.*onnxruntime: cpu"):
        bench_on_device(inv.get("pi"), [model], [1], accelerator="cuda")
