"""Bad input to the device commands through the real CLI: ``devices list/show/calibrate``, ``estimate``, ``lab run``,
``demo`` and ``recipes show``.

The bad inputs tried: an unknown profile id; a profile file with a missing key, one that is not YAML, one that does
not exist; a ``--profiles`` folder that does not exist or is a file; calibrating an unknown runtime, an unknown
precision, 0 or non-numeric threads, a device that is not 'host' without an inventory, an inventory device whose
profile does not exist; estimating on an unknown device, for an unknown zoo model, from a corrupt .onnx, a manifest
missing its keys, a missing file, with neither artifact nor model, a negative or NaN ``--params-billions``, zero
``--weight-bits``, ``--params-billions`` alone or together with ``--model``, a runtime or an accelerator the device
does not list, an unknown precision, 0 threads; ``lab run`` with a missing inventory, one that is not YAML, an
unknown transport, an unknown profile, a repeated device name, no devices, an unknown ``--devices`` name, a corrupt
model file, a missing model file, a manifest missing its keys, 0 threads, a 0 prompt length, a negative generation
length, an unknown runtime; ``demo --out`` a file or another program's folder, ``demo --threads`` 0 or text; an
unknown built-in recipe. Each must exit 2 with one paragraph naming the value, create no results store, no
calibration file and no artifact, and leave the folders it was given as they were.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.badinput.conftest import assert_bad_input, edgestill, no_artifacts, tree

_INVENTORY_HEAD = "schema: edgestill-inventory\nschema_version: 1\n"
_LOCAL = "  - name: a\n    profile: host\n    transport: local\n"

# Per case id: its working folder, the CLI's result, the folder's files before the run.
Results = dict[str, tuple[Path, subprocess.CompletedProcess[str], dict[str, bytes]]]

# Input files each case may name (relative to the case's working folder).
_FILES: dict[str, str] = {
    "partial.yaml": "schema: edgestill-device-profile\nschema_version: 1\nid: partial\n",
    "broken.yaml": "a: [1\n",
    "fake.onnx": "not an onnx model\n",
    "keyless.manifest.json": '{"x": 1}\n',
    "good-inv.yaml": _INVENTORY_HEAD + "devices:\n" + _LOCAL,
    "badprofile-inv.yaml": _INVENTORY_HEAD + "devices:\n  - name: a\n    profile: nope\n    transport: local\n",
    "telnet-inv.yaml": _INVENTORY_HEAD + "devices:\n  - name: a\n    profile: host\n    transport: telnet\n",
    "dup-inv.yaml": _INVENTORY_HEAD + "devices:\n" + _LOCAL + _LOCAL,
    "empty-inv.yaml": _INVENTORY_HEAD + "devices: []\n",
}

_LAB = ("lab", "run", "--db", "db/r.db", "-i")
_LLM_SIZE = ("--device", "raspberry-pi-5", "--weight-bits", "4.5", "--params-billions")
_ZOO = ("estimate", "--model", "mobilenet_v2", "--device", "raspberry-pi-5", "--db", "db/r.db")

# (id, CLI arguments, phrases the one-paragraph message must contain)
CASES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("show-unknown-profile", ("devices", "show", "nope"), ("'nope'", "raspberry-pi-5")),
    ("show-profile-missing-key", ("devices", "show", "partial.yaml"), ("partial.yaml", "name is missing")),
    ("show-profile-not-yaml", ("devices", "show", "broken.yaml"), ("broken.yaml", "not valid YAML", "line 2")),
    ("show-profile-missing-file", ("devices", "show", "missing.yaml"), ("missing.yaml", "does not exist")),
    ("list-profiles-missing", ("devices", "list", "--profiles", "nodir"), ("--profiles", "nodir", "does not exist")),
    ("list-profiles-is-file", ("devices", "list", "--profiles", "fake.onnx"), ("fake.onnx", "not a folder")),
    ("calibrate-unknown-runtime", ("devices", "calibrate", "host", "--runtime", "tensorflow", "--db", "db/r.db"),
     ("--runtime", "tensorflow", "onnxruntime")),
    ("calibrate-unknown-precision", ("devices", "calibrate", "host", "--precision", "int3", "--db", "db/r.db"),
     ("--precision", "int3", "int8")),
    ("calibrate-threads-0", ("devices", "calibrate", "host", "--threads", "0", "--db", "db/r.db"),
     ("--threads", "'0'")),
    ("calibrate-threads-text", ("devices", "calibrate", "host", "--threads", "a", "--db", "db/r.db"),
     ("--threads", "'a'")),
    ("calibrate-no-inventory", ("devices", "calibrate", "pi9", "--db", "db/r.db"), ("'pi9'", "--inventory")),
    ("calibrate-inventory-bad-profile", ("devices", "calibrate", "a", "--inventory", "badprofile-inv.yaml",
                                         "--db", "db/r.db"), ("badprofile-inv.yaml", "profile 'nope'")),
    ("estimate-unknown-device", ("estimate", "--model", "mobilenet_v2", "--device", "nope", "--db", "db/r.db"),
     ("unknown device profile 'nope'",)),
    ("estimate-unknown-model", ("estimate", "--model", "nomodel", "--device", "raspberry-pi-5", "--db", "db/r.db"),
     ("'nomodel'", "mobilenet_v2")),
    ("estimate-corrupt-onnx", ("estimate", "fake.onnx", "--device", "host", "--db", "db/r.db"),
     ("fake.onnx", "not an ONNX model")),
    ("estimate-keyless-manifest", ("estimate", "keyless.manifest.json", "--device", "host", "--db", "db/r.db"),
     ("keyless.manifest.json", "model_file missing")),
    ("estimate-missing-file", ("estimate", "missing.onnx", "--device", "host", "--db", "db/r.db"),
     ("missing.onnx", "does not exist")),
    ("estimate-nothing-to-estimate", ("estimate", "--device", "raspberry-pi-5", "--db", "db/r.db"),
     ("ARTIFACT", "--model")),
    ("estimate-params-negative", ("estimate", *_LLM_SIZE, "-1", "--db", "db/r.db"), ("--params-billions", "-1")),
    ("estimate-params-nan", ("estimate", *_LLM_SIZE, "nan", "--db", "db/r.db"), ("--params-billions", "nan")),
    ("estimate-weight-bits-0", ("estimate", "--params-billions", "1", "--weight-bits", "0", "--device",
                                "raspberry-pi-5", "--db", "db/r.db"), ("--weight-bits", "positive")),
    ("estimate-params-without-bits", ("estimate", "--params-billions", "1", "--device", "raspberry-pi-5",
                                      "--db", "db/r.db"), ("--params-billions", "--weight-bits", "together")),
    ("estimate-params-and-model", ("estimate", *_LLM_SIZE, "1", "--model", "mobilenet_v2", "--db", "db/r.db"),
     ("--params-billions", "--model")),
    ("estimate-unlisted-runtime", (*_ZOO, "--runtime", "tensorrt"), ("'tensorrt'", "litert")),
    ("estimate-unknown-precision", (*_ZOO, "--precision", "int2"), ("'int2'", "int8")),
    ("estimate-threads-0", (*_ZOO, "--threads", "0"), ("threads", "0")),
    ("estimate-unlisted-accelerator", (*_ZOO, "--accelerator", "npu"), ("'npu'", "cpu")),
    ("lab-missing-inventory", (*_LAB, "missing.yaml", "fake.onnx"), ("missing.yaml", "does not exist")),
    ("lab-inventory-not-yaml", (*_LAB, "broken.yaml", "fake.onnx"), ("broken.yaml", "not valid YAML")),
    ("lab-unknown-transport", (*_LAB, "telnet-inv.yaml", "fake.onnx"), ("'telnet'", "ssh, adb, local")),
    ("lab-unknown-profile", (*_LAB, "badprofile-inv.yaml", "fake.onnx"), ("profile 'nope'",)),
    ("lab-repeated-device", (*_LAB, "dup-inv.yaml", "fake.onnx"), ("devices[1]", "'a'", "unique")),
    ("lab-no-devices", (*_LAB, "empty-inv.yaml", "fake.onnx"), ("devices", "non-empty")),
    ("lab-unknown-device-name", (*_LAB, "good-inv.yaml", "fake.onnx", "--devices", "zz"), ("'zz'", "Devices there: a")),
    ("lab-corrupt-model", (*_LAB, "good-inv.yaml", "fake.onnx"), ("fake.onnx", "not a readable ONNX model")),
    ("lab-missing-model", (*_LAB, "good-inv.yaml", "missing.onnx"), ("missing.onnx", "does not exist")),
    ("lab-keyless-manifest", (*_LAB, "good-inv.yaml", "keyless.manifest.json"), ("keyless.manifest.json", "missing")),
    ("lab-threads-0", (*_LAB, "good-inv.yaml", "fake.onnx", "--threads", "0"), ("--threads", "'0'")),
    ("lab-prompt-tokens-0", (*_LAB, "good-inv.yaml", "fake.onnx", "--prompt-tokens", "0"), ("prompt", "got 0")),
    ("lab-gen-tokens-negative", (*_LAB, "good-inv.yaml", "fake.onnx", "--gen-tokens", "-3"), ("gen", "got -3")),
    ("lab-unknown-runtime", (*_LAB, "good-inv.yaml", "fake.onnx", "--runtime", "tensorrt"), ("'tensorrt'", "litert")),
    ("demo-out-is-file", ("demo", "--out", "fake.onnx", "--db", "db/r.db"), ("fake.onnx", "is a file")),
    ("demo-out-foreign-folder", ("demo", "--out", "other", "--db", "db/r.db"), ("other", "not written by edgestill")),
    ("demo-threads-0", ("demo", "--out", "d1", "--threads", "0", "--db", "db/r.db"), ("--threads", "'0'")),
    ("demo-threads-text", ("demo", "--out", "d1", "--threads", "x", "--db", "db/r.db"), ("--threads", "'x'")),
    ("recipes-unknown", ("recipes", "show", "nope"), ("'nope'", "demo-quick")),
]


def _run_case(folder: Path, args: tuple[str, ...]) -> tuple[subprocess.CompletedProcess[str], dict[str, bytes]]:
    """Write the input files into ``folder``, run the CLI there; the result and the folder's files before the run."""
    for name, text in _FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "other").mkdir()
    (folder / "other" / "keep.txt").write_text("a user's file\n")
    before = tree(folder)
    return edgestill(*args, cwd=folder, timeout=120, env={"EDGESTILL_PROFILES": "", "HOME": str(folder)}), before


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    """Every case run once, four CLI processes at a time (each is mostly interpreter start-up)."""
    folders = {case_id: tmp_path_factory.mktemp(case_id) for case_id, _, _ in CASES}
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {case_id: pool.submit(_run_case, folders[case_id], args) for case_id, args, _ in CASES}
    return {case_id: (folders[case_id], *f.result()) for case_id, f in futures.items()}


@pytest.mark.parametrize(("case_id", "phrases"), [(c[0], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_device_commands_refuse_bad_input(results: Results,
                                          case_id: str, phrases: tuple[str, ...]) -> None:
    folder, r, before = results[case_id]
    assert_bad_input(r, *phrases)
    assert tree(folder) == before, "a refused command changed or added files"
    assert not (folder / "db").exists() and not (folder / "d1").exists()
    assert not (folder / ".edgestill").exists(), "a refused calibration wrote a profile or a store"
    assert no_artifacts(folder, ("*.tflite", "*.xml", "*.bin", "*.calibration.yaml"))
