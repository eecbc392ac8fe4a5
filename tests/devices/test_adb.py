"""Android over ADB: benchmark_model's report parsed into the record, and the exact adb command sequence.

No phone is reachable here. The sample reports in ``data/benchmark_model_*.txt`` follow the lines the tool's source
prints: ``tensorflow/lite/tools/benchmark/benchmark_model.cc`` (``Initialized session in``, the ``count= first= curr=
min= max= avg= std=`` line of ``Stat::OutputToStream``, ``Inference timings in us: Init: .., First inference: ..,
Warmup (avg): .., Inference (avg): ..``, ``Memory footprint delta ...``, ``Overall peak memory footprint (MB) via
periodic monitoring``), ``benchmark_tflite_model.cc`` (``Explicitly applied GPU delegate, and the model graph will be
completely executed by the delegate.`` / ``Though GPU delegate is explicitly applied, the model graph will not be
executed by the delegate.``) and ``tensorflow/lite/core/subgraph.cc`` (``Replacing N out of M node(s) with delegate
(TfLiteGpuDelegateV2) node, yielding K partitions ...``); newer builds add ``p5= median= p95=`` to the stats line
(the CPU sample). ``fake_adb.py`` stands in for adb and for benchmark_model on the phone, running ``adb shell``
strings with a real ``/bin/sh`` so that quoting is tested as a phone's shell would parse it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from edgestill.devices.adb import (
    STATE_COMMAND,
    accelerator_outcome,
    bench_on_adb_device,
    benchmark_model_command,
    parse_benchmark_model,
    parse_phone_state,
    report_measurement,
)
from edgestill.errors import InputError
from edgestill.record import measurement_from_dict

DATA = Path(__file__).parent / "data"
SERIAL = "3A071FDH2003XY"
HOSTILE = "my model; touch PWNED $(touch PWNED2) 'q'.tflite"


def sample(name: str) -> str:
    return (DATA / f"benchmark_model_{name}.txt").read_text()


def test_cpu_report_phases_steady_state_and_memory() -> None:
    r = parse_benchmark_model(sample("cpu"))
    assert (r.init_ms, r.first_ms, r.warmup_ms_mean) == (11.274, 1.433, 0.420713)
    assert (r.count, r.mean_ms, r.std_ms, r.min_ms, r.max_ms) == (2411, 0.412384, 0.031, 0.383, 0.911)  # not the warm-up line
    assert (r.median_ms, r.p95_ms, r.peak_memory_mb) == (0.404, 0.461, 9.51953)
    assert r.memory_delta_mb == {"init": 3.125, "overall": 4.46875}
    m = report_measurement(r, ident={"artifact": "s", "format": "tflite", "precision": "fp32"}, threads=4,
                           accelerator="cpu", device={"id": "pixel-8", "profile": "pixel-8", "transport": "adb"})
    assert m.kind == "measured" and m.runtime == "litert" and m.peak_rss_mb == 9.51953
    assert (m.latency.p50_ms, m.latency.p90_ms, m.latency.p99_ms, m.latency.n) == (0.404, 0.461, 0.911, 2411)
    assert m.settings["latency_source"]["p50_ms"] == "median" and "upper bound" in m.settings["latency_source"]["p90_ms"]
    assert m.settings["accelerator"] == {"requested": "cpu", "ran": "cpu", "fell_back": False, "delegated_nodes": "31/31"}
    assert measurement_from_dict(m.to_dict()).latency == m.latency  # survives the store's flat round trip


def test_gpu_report_without_percentiles_says_what_stands_in_for_them() -> None:
    r = parse_benchmark_model(sample("gpu"))
    assert (r.init_ms, r.count, r.mean_ms, r.median_ms) == (842.225, 1694, 35.1349, None)
    m = report_measurement(r, ident={"artifact": "s", "format": "tflite", "precision": "fp32"}, threads=1,
                           accelerator="gpu", device={"id": "p", "profile": "pixel-8", "transport": "adb"})
    assert (m.latency.p50_ms, m.latency.p90_ms, m.latency.p99_ms) == (35.1349, 42.335, 42.335)
    assert m.settings["latency_source"]["p50_ms"].startswith("mean")
    assert any("no p90/p99" in w for w in m.warnings)
    acc = m.settings["accelerator"]
    assert (acc["ran"], acc["fell_back"], acc["delegated_nodes"], acc["partial"]) == ("gpu", False, "58/58", False)


def test_a_gpu_delegate_that_takes_nothing_is_recorded_as_a_fall_back() -> None:
    acc = accelerator_outcome(parse_benchmark_model(sample("gpu_fallback")), "gpu")
    assert (acc["requested"], acc["ran"], acc["fell_back"]) == ("gpu", "cpu", True)
    assert "will not be executed" in acc["reason"]
    # no line shows the delegate applied at all (e.g. a build without GPU support): also a fall back
    cpu_only = sample("cpu")
    acc = accelerator_outcome(parse_benchmark_model(cpu_only), "gpu")
    assert acc["fell_back"] and "no line" in acc["reason"]
    # NNAPI whose only device is its CPU reference implementation
    nnapi = cpu_only.replace("INFO: Loaded model", "INFO: NNAPI accelerators available: [nnapi-reference]\n"
                             "INFO: Explicitly applied NNAPI delegate, and the model graph will be completely executed "
                             "by the delegate.\nINFO: Loaded model")
    acc = accelerator_outcome(parse_benchmark_model(nnapi), "nnapi")
    assert acc["fell_back"] and "nnapi-reference" in acc["reason"]


def test_stats_line_variants_and_output_without_a_report() -> None:
    base = sample("gpu")
    same = base.replace("count=1694 first=35688 curr=33419 min=30394 max=42335 avg=35134.9 std=1733",
                        "count=50 curr=35000(all same)")
    r = parse_benchmark_model(same)
    assert (r.count, r.mean_ms, r.min_ms, r.max_ms, r.std_ms) == (50, 35.0, 35.0, 35.0, 0.0)
    sci = base.replace("avg=35134.9", "avg=3.51349e+04")
    assert parse_benchmark_model(sci).mean_ms == pytest.approx(35.1349)
    with pytest.raises(ValueError, match="no 'Inference timings"):
        parse_benchmark_model(sample("failed"))
    with pytest.raises(ValueError, match="steady-state"):
        parse_benchmark_model("INFO: Inference timings in us: Init: 1, First inference: 2, Warmup (avg): 3, Inference (avg): 4")


def test_the_remote_command_is_a_fixed_template_with_every_word_quoted() -> None:
    graph = f"/data/local/tmp/edgestill/{HOSTILE}"
    cmd = benchmark_model_command("/data/local/tmp/benchmark_model", graph, 4, accelerator="gpu", cpu_affinity="f0",
                                  min_runs=50, min_seconds=1.0, max_seconds=150.0, warmup_runs=10)
    assert shlex.split(cmd) == [
        "taskset", "f0", "/data/local/tmp/benchmark_model", f"--graph={graph}", "--num_threads=4", "--num_runs=50",
        "--min_secs=1", "--max_secs=150", "--warmup_runs=10", "--enable_op_profiling=false",
        "--report_peak_memory_footprint=true", "--use_gpu=true",
    ]  # fmt: skip
    assert shlex.split(benchmark_model_command("/b", "/g.tflite", 1, accelerator="nnapi"))[-1] == "--use_nnapi=true"
    assert shlex.split(benchmark_model_command("/b", "/g.tflite", 1))[-1] == "--use_xnnpack=true"


@pytest.fixture
def phone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """``adb`` on PATH and a 'phone' folder with benchmark_model, both the recording stand-in."""
    source = (Path(__file__).parent / "fake_adb.py").read_text()
    bin_dir, phone_dir = tmp_path / "bin", tmp_path / "phone"
    bin_dir.mkdir()
    phone_dir.mkdir()
    for path in (bin_dir / "adb", phone_dir / "benchmark_model"):
        path.write_text(f"#!{sys.executable}\n{source}")
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(tmp_path / "adb.jsonl"))
    monkeypatch.setenv("FAKE_BM_LOG", str(tmp_path / "bm.jsonl"))
    monkeypatch.setenv("FAKE_BM_REPORT", str(DATA / "benchmark_model_cpu.txt"))
    monkeypatch.setenv("FAKE_ADB_DEVICES", f"emulator-5554\tdevice\n{SERIAL}\tdevice")
    monkeypatch.chdir(tmp_path)  # where an injected `touch PWNED` would land
    entry = {"name": "pixel-8", "profile": "pixel-8", "transport": "adb", "serial": SERIAL,
             "benchmark_model": str(phone_dir / "benchmark_model"), "workdir": str(phone_dir / "edgestill")}
    models = tmp_path / "models"
    models.mkdir()
    return {"tmp": tmp_path, "entry": entry, "models": models, "workdir": phone_dir / "edgestill"}


def _tflite(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(24))  # a flatbuffer header: only the phone's tool reads further
    return path


def _calls(path: Path) -> list[list[str]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_adb_sequence_quotes_a_hostile_file_name_and_removes_what_it_pushed(phone: dict) -> None:
    model = _tflite(phone["models"], HOSTILE)
    remote = f"{phone['workdir']}/{HOSTILE}"
    results = bench_on_adb_device(phone["entry"], [model], [1, 4], accelerator="cpu", cpu_affinity="1",
                                  min_runs=50, min_seconds=1.0, warmup_runs=10)
    calls = _calls(phone["tmp"] / "adb.jsonl")
    bm = str(phone["entry"]["benchmark_model"])
    run = [benchmark_model_command(bm, remote, t, accelerator="cpu", cpu_affinity="1") for t in (1, 4)]
    assert calls == [
        ["devices"],
        ["-s", SERIAL, "push", str(model.resolve()), remote],
        ["-s", SERIAL, "shell", run[0]],
        ["-s", SERIAL, "shell", STATE_COMMAND],
        ["-s", SERIAL, "shell", run[1]],
        ["-s", SERIAL, "shell", STATE_COMMAND],
        ["-s", SERIAL, "shell", f"rm -f {shlex.quote(remote)}"],
    ]
    # what the phone's shell ran: the name arrived as one argument, nothing in it was executed, the file is gone
    ran = _calls(phone["tmp"] / "bm.jsonl")
    assert [a[:2] for a in ran] == [[f"--graph={remote}", "--num_threads=1"], [f"--graph={remote}", "--num_threads=4"]]
    assert not (phone["tmp"] / "PWNED").exists() and not (phone["tmp"] / "PWNED2").exists()
    assert not Path(remote).exists() and phone["workdir"].is_dir()
    assert [m.kind for m in results] == ["measured", "measured"] and [m.threads for m in results] == [1, 4]
    m = results[0]
    assert m.artifact == HOSTILE.removesuffix(".tflite") and m.latency.mean_ms == 0.412384 and m.init_ms == 11.274
    assert m.provenance["device"] == {"id": "pixel-8", "profile": "pixel-8", "transport": "adb"}
    assert m.provenance["affinity"] == "1" and m.settings["accelerator"]["ran"] == "cpu"
    assert m.settings["command"] == run[0] and m.model_bytes == model.stat().st_size
    assert set(m.provenance["device_state"]) >= {"governor", "temperature_c", "throttled"}


def test_the_phones_state_after_a_run() -> None:
    text = "schedutil\n@@\n1785600\n@@\n41300\n38000\n-274000\n@@\nThermal Status: 2\n"
    assert parse_phone_state(text) == {"governor": "schedutil", "temperature_c": 41.3, "throttled": True,
                                       "thermal_status": 2, "freq_mhz": 1785.6}
    assert parse_phone_state("@@\n@@\n@@\n") == {"governor": None, "temperature_c": None, "throttled": None,
                                                   "thermal_status": None, "freq_mhz": None}  # nothing readable


def test_a_gpu_fall_back_on_the_phone_is_in_the_record(phone: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_BM_REPORT", str(DATA / "benchmark_model_gpu_fallback.txt"))
    [m] = bench_on_adb_device(phone["entry"], [_tflite(phone["models"], "s.tflite")], [1], accelerator="gpu")
    assert m.kind == "measured"
    assert (m.settings["accelerator"]["ran"], m.settings["accelerator"]["fell_back"]) == ("cpu", True)
    assert any("fell back to the CPU" in w for w in m.warnings)
    assert _calls(phone["tmp"] / "bm.jsonl")[0][-1] == "--use_gpu=true"


def test_a_failed_run_is_a_failed_record_with_the_tools_last_lines(phone: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_BM_REPORT", str(DATA / "benchmark_model_failed.txt"))
    monkeypatch.setenv("FAKE_BM_RC", "1")
    [m] = bench_on_adb_device(phone["entry"], [_tflite(phone["models"], "s.tflite")], [1], accelerator="gpu")
    assert m.kind == "failed" and m.latency is None and m.settings["failure"] == "crash"
    assert "Failed to apply GPU delegate" in m.error and "Benchmarking failed." in m.error
    assert _calls(phone["tmp"] / "adb.jsonl")[-1][3].startswith("rm -f ")  # still cleaned up


def test_a_phone_not_listed_fails_every_cell_clearly_and_nothing_is_pushed(phone: dict,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_ADB_DEVICES", "emulator-5554\tdevice")
    results = bench_on_adb_device(phone["entry"], [_tflite(phone["models"], "s.tflite")], [1, 2])
    assert [m.kind for m in results] == ["failed", "failed"]
    assert {m.settings["failure"] for m in results} == {"unreachable"}
    assert f"{SERIAL!r} (device 'pixel-8') is not listed by `adb devices` (listed: emulator-5554 (device))" in results[0].error
    assert _calls(phone["tmp"] / "adb.jsonl") == [["devices"]]
    monkeypatch.setenv("FAKE_ADB_DEVICES", f"{SERIAL}\tunauthorized")
    [m] = bench_on_adb_device(phone["entry"], [_tflite(phone["models"], "s.tflite")], [1])
    assert m.settings["failure"] == "auth" and "accept the USB debugging prompt" in m.error


def test_a_missing_benchmark_model_on_the_phone_is_named(phone: dict) -> None:
    entry = {**phone["entry"], "benchmark_model": "/nonexistent/benchmark_model"}
    [m] = bench_on_adb_device(entry, [_tflite(phone["models"], "s.tflite")], [1])
    assert m.kind == "failed" and m.settings["failure"] == "missing_runtime"
    assert "'/nonexistent/benchmark_model'" in m.error and "chmod +x" in m.error


def test_bad_input_is_refused_before_adb_runs(phone: dict) -> None:
    onnx = phone["models"] / "m.onnx"
    onnx.write_bytes(b"\x08\x07")
    with pytest.raises(InputError, match=r"not a \.tflite model.*benchmark_model, which takes only \.tflite"):
        bench_on_adb_device(phone["entry"], [onnx], [1])
    fake = phone["models"] / "fake.tflite"
    fake.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(InputError, match="not a TFLite flatbuffer"):
        bench_on_adb_device(phone["entry"], [fake], [1])
    good = _tflite(phone["models"], "s.tflite")
    with pytest.raises(InputError, match="cannot use accelerator 'npu'"):
        bench_on_adb_device(phone["entry"], [good], [1], accelerator="npu")
    with pytest.raises(InputError, match="not a hex CPU mask"):
        bench_on_adb_device(phone["entry"], [good], [1], cpu_affinity="0-3; reboot")
    with pytest.raises(InputError, match="scores no accuracy"):
        bench_on_adb_device(phone["entry"], [good], [1], eval_data=good)
    with pytest.raises(InputError, match="is not on PATH"):
        bench_on_adb_device(phone["entry"], [good], [1], adb="no-such-adb-client")
    assert _calls(phone["tmp"] / "adb.jsonl") == []


def test_a_manifest_for_another_format_is_refused(tmp_path: Path) -> None:
    from edgestill.artifact import Artifact

    (tmp_path / "m.onnx").write_bytes(b"x")
    art = Artifact(name="m", format="onnx", precision="fp32", directory=tmp_path, model_file="m.onnx")
    art.hash_files()
    with pytest.raises(InputError, match="is a onnx artifact.*only .tflite"):
        bench_on_adb_device({"name": "p", "serial": "X", "benchmark_model": "/b"}, [art.write_manifest()], [1],
                            adb=shutil.which("true") or "true")
