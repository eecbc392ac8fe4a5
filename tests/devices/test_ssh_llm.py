"""Generative artifacts on inventory devices at the lengths asked for: ``bench --device``, ``lab run`` and a recipe's
``bench: {devices, prompt_tokens, gen_tokens}`` time them over a real loopback OpenSSH server (the runner bundle, no
torch there) and the record says what was timed; bad lengths are refused before any device is contacted, and an ADB
phone (LiteRT's benchmark_model) refuses a generative .tflite naming why."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgestill.artifact import Artifact
from edgestill.errors import ConfigError, InputError
from tests.devices.conftest import start_sshd, write_inventory

os.environ.setdefault("HF_HUB_OFFLINE", "1")
CONTEXT = 64


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer seeded Llama (context 64) exported to a stateful OpenVINO IR, with its manifest."""
    pytest.importorskip("openvino")
    from edgestill.export.llm_openvino import export_llm_openvino
    from edgestill.models.llm import make_tiny_llama

    root = tmp_path_factory.mktemp("llm")
    hf = make_tiny_llama(root / "hf", layers=1, hidden=32, heads=2, kv_heads=1, intermediate=64, context_length=CONTEXT)
    return export_llm_openvino(hf, root / "out", "tiny-llm", "fp32").write_manifest()


def edgestill(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgestill", *args], capture_output=True, text=True, timeout=180)


def assert_timed_at(m: dict, asked: tuple[int, int], timed: tuple[int, int]) -> None:
    """The record was measured on the ssh device (no torch there) at ``timed`` lengths for ``asked`` ones."""
    assert m["kind"] == "measured" and m["provenance"]["device"]["transport"] == "ssh"
    assert m["provenance"]["torch_imported"] is False
    assert (m["prompt_tokens"], m["generated_tokens"]) == timed
    llm = m["settings"]["llm"]
    assert (llm["prompt_tokens"], llm["gen_tokens"]) == asked
    assert (llm["prompt_tokens_used"], llm["gen_tokens_used"]) == timed
    assert len(m["samples_ms"]) == llm["repeats_made"] * (timed[1] - 1)  # one sample per decode step
    assert m["ttft_ms"] > 0 and m["decode_tokens_per_s"] > 0


@pytest.mark.ssh
def test_bench_device_and_lab_time_a_generative_artifact_at_the_asked_lengths(tmp_path: Path, manifest: Path) -> None:
    server = start_sshd(tmp_path / "sshd")
    try:
        inventory = write_inventory(tmp_path / "devices.yaml", [server.entry("loop")])
        bench = edgestill("bench", str(manifest), "--device", "loop", "--inventory", str(inventory), "--prompt-tokens",
                          "10", "--gen-tokens", "6", "--min-seconds", "0", "--db", str(tmp_path / "b.db"), "--json")
        lab = edgestill("lab", "run", str(manifest), "-i", str(inventory), "--prompt-tokens", "40", "--gen-tokens",
                        "40", "--min-seconds", "0", "--db", str(tmp_path / "l.db"), "--json")
    finally:
        server.stop()
    assert bench.returncode == 0, bench.stderr[-2000:]
    (m,) = json.loads(bench.stdout)["measurements"]
    assert_timed_at(m, asked=(10, 6), timed=(10, 6))
    assert lab.returncode == 0, lab.stderr[-2000:]
    (m,) = json.loads(lab.stdout)["measurements"]
    assert_timed_at(m, asked=(40, 40), timed=(32, 32))  # 80 tokens do not fit the 64-token context: same ratio


@pytest.mark.ssh
def test_a_recipes_bench_devices_time_at_the_recipes_lengths(tmp_path: Path, manifest: Path) -> None:
    from edgestill.benchmarks.bench import BenchConfig
    from edgestill.chain.stages import _bench_remote
    from edgestill.runtimes.harness import BenchOptions

    server = start_sshd(tmp_path / "sshd")
    try:
        inventory = write_inventory(tmp_path / "devices.yaml", [server.entry("loop")])
        spec = BenchConfig(devices=("loop",), inventory=str(inventory), threads=(1,), rounds=1, prompt_tokens=12,
                           gen_tokens=4, timing=BenchOptions(min_seconds=0.0))
        (m,) = _bench_remote(spec, "loop", [manifest], tmp_path, None, None, lambda *_: None, 1)
    finally:
        server.stop()
    assert_timed_at(m.to_dict(with_samples=True), asked=(12, 4), timed=(12, 4))


def test_bad_lengths_are_refused_before_any_device_is_contacted(tmp_path: Path, manifest: Path) -> None:
    from edgestill.devices.inventory import load_inventory
    from edgestill.devices.lab import run_lab
    from edgestill.devices.remote import bench_on_device

    closed = {"name": "loop", "profile": "host", "transport": "ssh", "host": "127.0.0.1", "port": 9, "user": "nobody",
              "key_file": str(tmp_path / "none"), "known_hosts": str(tmp_path / "none"), "retries": 0}
    inventory = write_inventory(tmp_path / "devices.yaml", [closed])  # contacting it would fail as exit 3, not 2
    for command, message in ((["bench", str(manifest), "--device", "loop", "--inventory", str(inventory),
                               "--gen-tokens", "1"], "--gen_tokens must be a whole number >= 2"),
                             (["lab", "run", str(manifest), "-i", str(inventory), "--prompt-tokens", "0"],
                              "--prompt_tokens must be a whole number >= 1")):
        r = edgestill(*command, "--db", str(tmp_path / "r.db"))
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "r.db").exists()
    entry = load_inventory(inventory).get("loop")
    with pytest.raises(ConfigError, match="gen_tokens must be a whole number >= 2"):
        bench_on_device(entry, [manifest], [1], gen_tokens=1)
    with pytest.raises(ConfigError, match=r"prompt_tokens must be a whole number >= 1 .*got True"):
        run_lab(load_inventory(inventory), [manifest], [1], db=tmp_path / "lab.db", prompt_tokens=True)
    assert not (tmp_path / "lab.db").exists()


def test_an_adb_phone_refuses_a_generative_tflite_naming_why(tmp_path: Path, manifest: Path) -> None:
    from edgestill.devices.adb import bench_on_adb_device

    ov = Artifact.load(manifest)
    (tmp_path / "llm").mkdir()
    (tmp_path / "llm" / "model.tflite").write_bytes(b"\0\0\0\0TFL3")
    art = dataclasses.replace(ov, format="tflite", directory=tmp_path, model_file="llm/model.tflite", files={})
    art.hash_files()
    with pytest.raises(InputError, match=r"generative model.*benchmark_model.*no TTFT or tokens/s.*ssh or local"):
        bench_on_adb_device({"name": "p", "serial": "X", "benchmark_model": "/b"}, [art.write_manifest()], [1],
                            adb=shutil.which("true") or "true")


def test_a_local_inventory_device_times_at_the_asked_lengths(tmp_path: Path, manifest: Path) -> None:
    from edgestill.devices.inventory import load_inventory
    from edgestill.devices.remote import bench_on_device
    from edgestill.runtimes.harness import BenchOptions

    inventory = write_inventory(tmp_path / "devices.yaml", [{"name": "here", "profile": "host", "transport": "local"}])
    (m,) = bench_on_device(load_inventory(inventory).get("here"), [manifest], [1], bench=BenchOptions(min_seconds=0.0),
                           prompt_tokens=5, gen_tokens=3)
    assert m.kind == "measured" and m.provenance["device"]["transport"] == "local", m.error
    assert (m.prompt_tokens, m.generated_tokens) == (5, 3)
    assert len(m.samples_ms) == m.settings["llm"]["repeats_made"] * 2
