"""Device self-calibration: the micro models compute what they claim, the fit recovers a known roofline, the file
follows the contract and the profiles loader merges it, and a real quick calibration of this host runs end to end."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgestill.devices.calibrate import (
    CALIBRATION_SCHEMA,
    OP_CLASSES,
    calibrate_device,
    calibration_path,
    fit_entry,
)
from edgestill.devices.microbench import COMPUTE_CLASSES, build_onnx, build_onnx_graph, micro_models, micros_for
from edgestill.errors import InputError, RuntimeFailure
from edgestill.record import LatencyStats, Measurement

PEAK = 50e9  # MAC/s of the synthetic device
BANDWIDTH_GBS = 20.0
TRUTH = {"conv": 0.6, "conv1x1": 0.45, "depthwise": 0.08, "matmul": 0.5, "stem": 0.12}
BUILTIN_NS_PER_BYTE = 1.5  # an activation the runtime leaves unfused after a conv (LiteRT's builtin HARD_SWISH)
BUILTIN_LUT_NS_PER_BYTE = 0.1  # the same for a table-lookup kernel (LiteRT's builtin int8 GELU)
BW_EFF = 0.7
OVERHEAD_MS, PER_NODE_MS = 0.03, 0.002


class RooflineProfile:
    """A device whose peak and bandwidth are known, for the fit to be checked against."""

    id = "synthetic"
    bandwidth_gbs = BANDWIDTH_GBS

    def peak_macs_per_s(self, precision: str, threads: int) -> float:
        return PEAK * threads * (2.0 if precision == "int8" else 1.0)


ELT_BW_EFF = 2.5  # activation-sized elementwise layers run from cache, faster than the copies' DRAM bandwidth
SOFTMAX_BW_EFF = 0.4  # a Softmax's bytes go slower (an exp per element)
BOUNDARY_MS = 0.05  # what a call pays once at its boundary (quantize/dequantize, layout reorders)


def roofline_ms(micro, threads: int = 1, precision: str = "fp32") -> float:
    """The latency a device with the TRUTH efficiencies takes for one micro (what the fit must recover): each layer
    of a stack at the roofline, plus the once-per-call overhead and boundary cost."""
    peak = RooflineProfile().peak_macs_per_s(precision, threads)
    fixed = OVERHEAD_MS + PER_NODE_MS * micro.nodes
    scale = 0.25 if precision == "int8" else 1.0
    per_layer_bytes = micro.bytes / micro.layers
    if micro.kind in (*COMPUTE_CLASSES, "stem", "unfused", "lut"):  # a roofline: the larger of compute and memory
        memory_ms = per_layer_bytes * scale / (BW_EFF * BANDWIDTH_GBS * 1e9) * 1e3
        layer = max(micro.macs / micro.layers / (TRUTH[micro.op_class] * peak) * 1e3, memory_ms)
        if micro.kind in ("unfused", "lut"):  # the conv's roofline (its own bytes), then the activation's builtin rate
            h, w, c = micro.shape
            conv_bytes = FP32_BYTES_PER_CONV1X1(h, w, c)
            layer = max(micro.macs / micro.layers / (TRUTH["conv1x1"] * peak) * 1e3,
                        conv_bytes * scale / (BW_EFF * BANDWIDTH_GBS * 1e9) * 1e3)
            rate = BUILTIN_NS_PER_BYTE if micro.kind == "unfused" else BUILTIN_LUT_NS_PER_BYTE
            layer += 2 * h * w * c * (1 if precision == "int8" else 4) * rate * 1e-6
        return fixed + BOUNDARY_MS + micro.layers * layer
    if micro.kind in ("eltwise", "softmax"):
        rate = ELT_BW_EFF if micro.kind == "eltwise" else SOFTMAX_BW_EFF
        return fixed + BOUNDARY_MS + micro.layers * per_layer_bytes * scale / (rate * BANDWIDTH_GBS * 1e9) * 1e3
    if micro.kind == "copy":
        return fixed + micro.bytes / (BW_EFF * BANDWIDTH_GBS * 1e9) * 1e3
    return fixed


def FP32_BYTES_PER_CONV1X1(h: int, w: int, c: int) -> int:  # noqa: N802 - the conv1x1 micro's bytes at this shape
    return 4 * (2 * h * w * c + c * c + c)


def _measured(name: str, threads: int, ms: float) -> Measurement:
    lat = LatencyStats(p50_ms=ms, p90_ms=ms, p99_ms=ms, mean_ms=ms, std_ms=0.0, cv_percent=0.0, min_ms=ms, max_ms=ms, n=10)
    return Measurement(artifact=name, format="onnx", precision="fp32", runtime="onnxruntime", threads=threads, latency=lat)


def roofline_measure(paths: list[Path], threads: list[int]) -> list[Measurement]:
    """Times each micro artifact as the synthetic device would, from what its manifest says it computes."""
    from edgestill.devices.microbench import MicroModel

    out = []
    for p in paths:
        doc = json.loads(Path(p).read_text())
        d = doc["source"]["micro"]
        micro = MicroModel(name=d["name"], kind=d["kind"], shape=tuple(d["shape"]), input_shape=tuple(d["input_shape"]),
                           macs=d["macs"], bytes=d["bytes"], nodes=d["nodes"])
        out += [_measured(doc["name"], t, roofline_ms(micro, t)) for t in threads]
    return out


@pytest.mark.parametrize("quick", [True])
def test_micro_models_compute_what_they_claim(quick: bool) -> None:
    """Each micro is valid ONNX that onnxruntime runs to the expected numbers, and its MACs are those of the formula
    and of the cost model the estimator uses."""
    import onnxruntime as ort
    from onnx import numpy_helper

    from edgestill.devices.costmodel import graph_cost

    rng = np.random.default_rng(0)
    for micro in micro_models(quick=quick):
        model = build_onnx_graph(micro)
        assert model.opset_import[0].version >= 17
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        x = rng.standard_normal(micro.input_shape).astype(np.float32)
        (y,) = sess.run(None, {"x": x})
        w = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        if micro.layers > 1:  # a stack: K layers of the single micro's shape, each its own weights
            assert micro.macs == micro.layers * next(m for m in micro_models(quick=quick) if m.name == micro.base).macs
            assert y.shape == tuple(sess.get_outputs()[0].shape)
        elif micro.kind in ("conv", "conv1x1", "depthwise"):
            h, wd, c = micro.shape
            k = w["w"].shape[-1]
            assert y.shape == (1, c, h, wd)
            assert micro.macs == h * wd * c * w["w"].shape[1] * k * k
            # the centre pixel, by hand
            pad = np.pad(x[0], ((0, 0), (k // 2, k // 2), (k // 2, k // 2)))
            i, j = h // 2, wd // 2
            patch = pad[:, i:i + k, j:j + k]
            if micro.kind == "depthwise":
                want = (patch * w["w"][:, 0]).sum(axis=(1, 2)) + w["b"]
            else:
                want = np.einsum("chw,ochw->o", patch, w["w"]) + w["b"]
            np.testing.assert_allclose(y[0, :, i, j], want, rtol=1e-4, atol=1e-4)
        elif micro.kind == "stem":  # a stride-2 conv on the 3-channel image
            h, cin, cout, k = micro.shape
            assert y.shape == (1, cout, h // 2, h // 2) and micro.macs == (h // 2) ** 2 * cout * cin * k * k
            pad = np.pad(x[0], ((0, 0), (k // 2, k // 2), (k // 2, k // 2)))
            want = np.einsum("chw,ochw->o", pad[:, 2:2 + k, 2:2 + k], w["w"]) + w["b"]  # output pixel (1, 1)
            np.testing.assert_allclose(y[0, :, 1, 1], want, rtol=1e-4, atol=1e-4)
        elif micro.kind == "unfused":  # a 1×1 conv, then HardSwish
            z = np.einsum("chw,oc->ohw", x[0], w["w"][:, :, 0, 0]) + w["b"][:, None, None]
            np.testing.assert_allclose(y[0], z * np.clip(z + 3, 0, 6) / 6, rtol=1e-4, atol=1e-4)
        elif micro.kind == "lut":  # a 1×1 conv, then GELU
            z = np.einsum("chw,oc->ohw", x[0], w["w"][:, :, 0, 0]) + w["b"][:, None, None]
            erf = np.vectorize(math.erf)
            np.testing.assert_allclose(y[0], 0.5 * z * (1 + erf(z / np.sqrt(2))), rtol=1e-4, atol=1e-4)
        elif micro.kind == "softmax":  # over the last axis
            e = np.exp(x - x.max(axis=-1, keepdims=True))
            np.testing.assert_allclose(y, e / e.sum(axis=-1, keepdims=True), rtol=1e-5, atol=1e-6)
        elif micro.kind == "matmul":
            m, k, n = micro.shape
            np.testing.assert_allclose(y, x @ w["w"] + w["b"], rtol=1e-4, atol=1e-4)
            assert micro.macs == m * k * n
        elif micro.kind == "eltwise":  # a residual Add of two activations
            np.testing.assert_allclose(y, 2 * x, rtol=1e-6)
            assert micro.bytes == 12 * x.size
        elif micro.kind in ("copy", "call"):
            np.testing.assert_allclose(y, x + w["c"], rtol=1e-6)
            assert micro.bytes == 8 * x.size
        else:
            assert len(model.graph.node) == micro.nodes
            np.testing.assert_allclose(y, x + sum(w[f"c{i}"] for i in range(micro.nodes)), rtol=1e-5, atol=1e-5)
        cost = graph_cost(model)
        computes = micro.kind in (*COMPUTE_CLASSES, "stem", "unfused", "lut")
        assert cost.total_macs == (micro.macs if computes else 0), micro.name
        assert len(cost.nodes) == micro.nodes, micro.name  # the bias Add of the matmul fuses, as runtimes fuse it
        assert cost.nodes[0].op_class == micro.op_class, micro.name


def test_int8_micro_is_a_quantized_artifact(tmp_path: Path) -> None:
    from edgestill.artifact import Artifact

    conv = next(m for m in micro_models(quick=True) if m.kind == "conv")
    art = Artifact.load(build_onnx(conv, tmp_path, "int8"))
    art.verify_files()
    assert art.precision == "int8-static" and art.quantization["format"] == "QDQ"
    import onnx

    ops = {n.op_type for n in onnx.load(str(art.model_path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    assert sorted(tmp_path.iterdir()) == sorted([art.model_path, art.manifest_path])  # the fp32 source is removed


def test_stacked_micros_have_k_times_the_work() -> None:
    """A stack of K is K layers of the single micro, each its own weights: K× its MACs, bytes and nodes, in the cost
    model the estimator reads too."""
    from edgestill.devices.costmodel import graph_cost
    from edgestill.devices.microbench import STACK, STACKED_KINDS

    micros = micro_models(quick=False)
    singles = {m.name: m for m in micros if m.layers == 1}
    stacks = [m for m in micros if m.layers > 1]
    kinds = {(r, p): {m.kind for m in micros_for(micros, r, p)} for r in ("onnxruntime", "openvino", "litert")
             for p in ("fp32", "int8")}
    assert [k for k, v in kinds.items() if "unfused" in v] == [("litert", "int8")]  # XNNPACK's builtin HARD_SWISH
    assert [k for k, v in kinds.items() if "lut" in v] == [("litert", "int8")]  # and its builtin int8 GELU
    assert [k[0] for k, v in kinds.items() if "stem" in v] == ["onnxruntime"] * 2 + ["litert"] * 2
    assert {m.kind for m in stacks} == {*STACKED_KINDS, "unfused", "lut", "softmax"}
    assert all(m.layers == STACK for m in stacks)
    assert len(stacks) == sum(1 for m in singles.values() if m.kind in (*STACKED_KINDS, "unfused", "lut", "softmax"))
    for m in stacks:
        one = singles[m.base]
        assert (m.macs, m.bytes, m.nodes) == (STACK * one.macs, STACK * one.bytes, STACK * one.nodes)
        if m.kind in ("conv1x1", "matmul", "eltwise"):  # the small graphs: build and cost them
            g, g1 = build_onnx_graph(m), build_onnx_graph(one)
            assert graph_cost(g).total_macs == STACK * graph_cost(g1).total_macs
            assert len(graph_cost(g).nodes) == STACK * len(graph_cost(g1).nodes)
            weights = [i for i in g.graph.initializer if i.name.startswith("w")]
            if m.kind != "eltwise":  # each layer its own seeded weights (the residual Adds have none)
                assert len({i.raw_data for i in weights}) == len(weights) == STACK


def test_layer_slope_cancels_the_per_call_terms() -> None:
    """(t_K - t_1) / (K - 1) is the per-layer time whatever a call pays once."""
    from edgestill.devices.calibrate import layer_slope

    for once in (0.0, 0.3, 5.0):
        assert layer_slope(once + 0.7, once + 4 * 0.7, 4) == pytest.approx(0.7)
    assert layer_slope(1.0, 0.9, 4) > 0  # noise never gives a layer a negative time


def test_fit_recovers_a_known_roofline() -> None:
    micros = micro_models(quick=False)
    points = [(m, roofline_ms(m)) for m in micros]
    entry, rows = fit_entry(points, peak_macs_per_s=PEAK, bandwidth_gbs=BANDWIDTH_GBS, runtime="onnxruntime",
                            precision="fp32", threads=1)
    for cls, eff in TRUTH.items():  # from the per-layer slopes: the boundary cost of each micro cancels
        assert entry["efficiency"][cls] == pytest.approx(eff, rel=1e-3), cls
    assert entry["bandwidth_efficiency"] == pytest.approx(BW_EFF, rel=1e-3)
    assert entry["elementwise_bandwidth_efficiency"] == pytest.approx(ELT_BW_EFF, rel=1e-3)
    assert entry["call_overhead_ms"] == pytest.approx(OVERHEAD_MS, rel=1e-3)
    assert entry["overhead_ms"] == pytest.approx(OVERHEAD_MS + BOUNDARY_MS, rel=1e-3)  # the intercept
    assert entry["per_node_ms"] == pytest.approx(PER_NODE_MS, rel=1e-3)
    assert entry["efficiency"]["attention"] == entry["efficiency"]["matmul"]
    assert set(entry["efficiency"]) == set(OP_CLASSES)
    assert "stem" not in entry["derived"]  # timed: not the conv's
    assert [e for _, e in entry["stem_curve"]] == pytest.approx([TRUTH["stem"]] * 2, rel=1e-3)
    assert entry["builtin_ns_per_byte"] == pytest.approx(BUILTIN_NS_PER_BYTE, rel=1e-3)
    assert entry["builtin_lut_ns_per_byte"] == pytest.approx(BUILTIN_LUT_NS_PER_BYTE, rel=1e-3)
    assert entry["softmax_bandwidth_efficiency"] == pytest.approx(SOFTMAX_BW_EFF, rel=1e-3)
    assert "softmax" not in entry["derived"]
    # each compute class's efficiency against its shapes' MACs per byte: flat on a device whose efficiency is
    for cls, curve in entry["efficiency_curve"].items():
        assert len(curve) >= 2 and [e for _, e in curve] == pytest.approx([TRUTH[cls]] * len(curve), rel=1e-3), cls
        assert [i for i, _ in curve] == sorted(i for i, _ in curve)
    assert set(entry["efficiency_curve"]) >= {"conv", "conv1x1", "depthwise"}
    n_loo = sum(1 for m in micros if (m.kind in (*COMPUTE_CLASSES, "eltwise") and m.layers == 1)
                or m.kind in ("copy", "stem"))
    assert entry["error"]["n"] == n_loo and entry["error"]["median_abs_percent"] < 0.5
    assert entry["error"]["within_25_percent"] == 1.0
    # the GEMV streams 4 MB of weights: memory-bound on this device, so it sets no efficiency and is predicted from
    # bandwidth (exactly, here)
    gemv = next(r for r in rows if r["name"] == "matmul-1x1024x1024")
    assert gemv["memory_bound"] is True and abs(gemv["error_percent"]) < 0.5
    # a device slower on one shape than the others: its left-out prediction is off by that much, and it shows
    slow = micros[0]
    points = [(m, roofline_ms(m) * (2.0 if m.base == slow.name else 1.0)) for m in micros]
    entry, rows = fit_entry(points, peak_macs_per_s=PEAK, bandwidth_gbs=BANDWIDTH_GBS, runtime="onnxruntime",
                            precision="fp32", threads=1)
    row = next(r for r in rows if r["name"] == slow.name)
    assert row["error_percent"] == pytest.approx(-50.0, abs=2.0)
    assert entry["error"]["within_25_percent"] < 1.0
    # timings saved before the stem and unfused micros existed: the stem takes the conv's efficiency, no builtin rate
    old = [(m, roofline_ms(m)) for m in micros if m.kind not in ("stem", "unfused", "lut", "softmax")]
    entry, _ = fit_entry(old, peak_macs_per_s=PEAK, bandwidth_gbs=BANDWIDTH_GBS, runtime="onnxruntime",
                         precision="fp32", threads=1)
    assert entry["derived"]["stem"] == "conv" and entry["efficiency"]["stem"] == entry["efficiency"]["conv"]
    assert "builtin_ns_per_byte" not in entry and "stem_curve" not in entry
    assert "builtin_lut_ns_per_byte" not in entry and "softmax_bandwidth_efficiency" not in entry
    assert entry["derived"]["softmax"] == "elementwise"


def test_fit_refuses_missing_micros() -> None:
    points = [(m, roofline_ms(m)) for m in micro_models(quick=True) if m.kind != "depthwise"]
    with pytest.raises(RuntimeFailure, match="depthwise"):
        fit_entry(points, peak_macs_per_s=PEAK, bandwidth_gbs=BANDWIDTH_GBS, runtime="onnxruntime", precision="fp32",
                  threads=1)


def test_calibrate_device_writes_the_contract_and_merges(tmp_path: Path) -> None:
    out = tmp_path / "profiles"
    res = calibrate_device("synthetic", runtimes=["onnxruntime"], precisions=["fp32"], threads=[1, 2],
                           measure=roofline_measure, out_folder=out, quick=True, profile=RooflineProfile())
    assert res.path == calibration_path(out, "synthetic") and sorted(os.listdir(tmp_path)) == ["profiles"]
    assert os.listdir(out) == ["synthetic.calibration.yaml"]  # the micro artifacts were built in a folder now removed
    doc = yaml.safe_load(res.path.read_text())
    assert doc["schema"] == CALIBRATION_SCHEMA and doc["schema_version"] == 1 and doc["profile"] == "synthetic"
    assert [(e["runtime"], e["precision"], e["threads"]) for e in doc["entries"]] == [("onnxruntime", "fp32", 1),
                                                                                      ("onnxruntime", "fp32", 2)]
    for e in doc["entries"]:
        assert e["efficiency"]["conv"] == pytest.approx(TRUTH["conv"], rel=1e-3)
        assert {"bandwidth_efficiency", "overhead_ms", "per_node_ms", "error", "fitted_on"} <= set(e)
        assert set(e["error"]) >= {"median_abs_percent", "within_25_percent", "n", "method"}
    # a second calibration at 1 thread replaces that entry and keeps the 2-thread one
    first_created = [e["threads"] for e in doc["entries"]]
    calibrate_device("synthetic", threads=[1], measure=roofline_measure, out_folder=out, quick=True,
                     profile=RooflineProfile())
    doc2 = yaml.safe_load(res.path.read_text())
    assert [e["threads"] for e in doc2["entries"]] == first_created
    # a file that is not a calibration is never overwritten
    res.path.write_text("hello: world\n")
    with pytest.raises(InputError, match="not an edgestill-device-calibration"):
        calibrate_device("synthetic", measure=roofline_measure, out_folder=out, quick=True, profile=RooflineProfile())
    assert res.path.read_text() == "hello: world\n"


def test_calibrate_device_writes_nothing_when_a_cell_fails(tmp_path: Path) -> None:
    def failing(paths: list[Path], threads: list[int]) -> list[Measurement]:
        out = roofline_measure(paths, threads)
        out[0] = Measurement(artifact=out[0].artifact, format="onnx", precision="fp32", runtime="onnxruntime",
                             threads=1, kind="failed", error="runner crashed (SIGSEGV)")
        return out

    with pytest.raises(RuntimeFailure, match="SIGSEGV"):
        calibrate_device("synthetic", measure=failing, out_folder=tmp_path / "p", quick=True, profile=RooflineProfile())
    assert os.listdir(tmp_path) == ["p"] and os.listdir(tmp_path / "p") == []


def test_load_profile_merges_the_calibration(tmp_path: Path) -> None:
    profiles = pytest.importorskip("edgestill.devices.profiles")
    if not hasattr(profiles, "load_profile"):
        pytest.skip("edgestill.devices.profiles has no load_profile yet")
    prof = profiles.load_profile("raspberry-pi-5")
    calibrate_device(prof.id, threads=[1], measure=roofline_measure, out_folder=tmp_path, quick=True, profile=prof)
    merged = profiles.load_profile("raspberry-pi-5", search_path=[tmp_path, *profiles.profile_search_path()])
    cal = merged.calibration_for("onnxruntime", "fp32", 1)
    assert cal is not None and cal["fitted_on"] == "microbenchmarks"
    # the synthetic device ran at TRUTH efficiency against this profile's own peak
    peak = prof.peak_macs_per_s("fp32", 1)
    conv = next(m for m in micro_models(quick=True) if m.kind == "conv")
    stack = next(m for m in micro_models(quick=True) if m.base == conv.name and m.layers > 1)
    slope = (roofline_ms(stack) - roofline_ms(conv)) / (stack.layers - 1)  # the per-layer time
    measured_eff = conv.macs / ((slope - PER_NODE_MS) / 1e3) / peak
    assert cal["efficiency"]["conv"] == pytest.approx(measured_eff, rel=1e-3)


def test_cli_quick_calibration_of_this_host(tmp_path: Path) -> None:
    """A real calibration: micro models built, timed by the runner on this machine, fitted, stored; only the
    calibration file and the results store are written."""
    work = tmp_path / "cwd"
    work.mkdir()
    out, db = tmp_path / "cal", tmp_path / "store" / "results.db"
    before = set(os.listdir(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "edgestill", "devices", "calibrate", "host", "--runtime", "onnxruntime",
         "--precision", "fp32", "--threads", "1", "--quick", "--out-folder", str(out), "--db", str(db), "--json"],
        cwd=work, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["profile"] == "host" and len(doc["entries"]) == 1
    entry = doc["entries"][0]
    assert (entry["runtime"], entry["precision"], entry["threads"]) == ("onnxruntime", "fp32", 1)
    assert all(v > 0 for v in entry["efficiency"].values()) and entry["overhead_ms"] > 0
    assert entry["error"]["n"] == 12  # per layer: 2 shapes of each of the 4 compute classes, the 2 stems, the 2 copies
    assert sorted(set(os.listdir(tmp_path)) - before) == ["cal", "store"] and os.listdir(work) == []
    assert os.listdir(out) == ["host.calibration.yaml"]
    assert {p.name for p in (tmp_path / "store").iterdir()} <= {"results.db", "results.db-wal", "results.db-shm"}
    from edgestill.benchmarks.store import ResultsStore

    with ResultsStore(db) as store:
        rows = store.measurements(doc["run_id"])
    assert len(rows) == len(micros_for(micro_models(quick=True), "onnxruntime", "fp32"))  # no unfused micro
    assert all(r["provenance"]["device"] == {"id": "host", "profile": "host", "transport": "local"} for r in rows)
    assert yaml.safe_load((out / "host.calibration.yaml").read_text())["device"] == {"name": "host", "transport": "local"}


def test_cli_calibrates_an_inventory_device_through_its_transport(tmp_path: Path) -> None:
    """A device named in an inventory is measured through its transport (here ``local``), and the calibration and
    its stored measurements say which device it was."""
    from typer.testing import CliRunner

    from edgestill.benchmarks.store import ResultsStore
    from edgestill.cli import _register_commands, app

    _register_commands()
    inv = tmp_path / "devices.yaml"
    inv.write_text("schema: edgestill-inventory\nschema_version: 1\ndevices:\n"
                   "  - {name: bench-box, profile: host, transport: local}\n"
                   "  - {name: phone, profile: pixel-8, transport: adb, serial: X1}\n")
    out, db = tmp_path / "cal", tmp_path / "r.db"
    common = ["--quick", "--out-folder", str(out), "--db", str(db), "--inventory", str(inv), "--json"]
    res = CliRunner().invoke(app, ["devices", "calibrate", "bench-box", *common])
    assert res.exit_code == 0, res.output[-3000:]
    doc = yaml.safe_load((out / "host.calibration.yaml").read_text())
    assert doc["device"] == {"name": "bench-box", "transport": "local"}
    with ResultsStore(db) as store:
        rows = store.measurements(doc["entries"][0]["results_run_id"])
    assert rows and all(r["provenance"]["device"]["id"] == "bench-box" for r in rows)
    # an unknown device names the closest; an adb device is refused before anything runs (micro sets are not .tflite
    # runs of benchmark_model); both are input errors
    res = CliRunner().invoke(app, ["devices", "calibrate", "bench-bx", *common])
    assert res.exit_code == 2 and "bench-box" in res.output
    res = CliRunner().invoke(app, ["devices", "calibrate", "phone", *common])
    assert res.exit_code == 2 and "adb" in res.output
    res = CliRunner().invoke(app, ["devices", "calibrate", "bench-box", "--runtime", "tensorrt", *common])
    assert res.exit_code == 2 and "onnxruntime" in res.output


@pytest.mark.ssh
def test_calibration_over_ssh_measures_on_the_device(sshd_factory, tmp_path: Path) -> None:
    """The micro cells travel to a real OpenSSH "device" on 127.0.0.1 and are timed there; a refused key fails the
    calibration as an input error and writes nothing."""
    from edgestill.devices.calibrate import device_measure
    from edgestill.devices.inventory import load_inventory

    from .conftest import write_inventory

    server = sshd_factory("cal")
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    inv = load_inventory(write_inventory(tmp_path / "devices.yaml", [
        server.entry("loop"), server.entry("locked", key_file=str(stranger))]))
    out = tmp_path / "cal"
    entry = inv.get("loop")
    res = calibrate_device("host", measure=device_measure(entry, quick=True), out_folder=out, quick=True,
                           device={"name": entry.name, "transport": entry.transport})
    assert {m.provenance["device"]["transport"] for m in res.measurements} == {"ssh"}
    assert all(m.kind == "measured" for m in res.measurements) and res.entries[0]["error"]["n"] == 12
    doc = yaml.safe_load(res.path.read_text())
    assert doc["device"] == {"name": "loop", "transport": "ssh"}
    locked = inv.get("locked")
    with pytest.raises(InputError):
        calibrate_device("host", measure=device_measure(locked, quick=True), out_folder=tmp_path / "cal2", quick=True)
    assert not (tmp_path / "cal2" / "host.calibration.yaml").exists()


def test_the_human_output_names_every_fitted_term(capsys: pytest.CaptureFixture[str]) -> None:
    """``devices calibrate`` without --json shows, besides the class efficiencies, the stem, Softmax and builtin-kernel
    rates a calibration fitted (what a user checks before trusting estimates of a MobileNet-v3 or a transformer)."""
    from types import SimpleNamespace

    from edgestill.commands.devices_calibrate import _render

    micros = micro_models(quick=False)
    entry, _ = fit_entry([(m, roofline_ms(m, precision="int8")) for m in micros], peak_macs_per_s=2 * PEAK,
                         bandwidth_gbs=BANDWIDTH_GBS, runtime="litert", precision="int8", threads=1)
    _render(SimpleNamespace(profile_id="synthetic", entries=[entry], warnings=[], run_id=None, db=None,
                            path=Path("synthetic.calibration.yaml")))
    out = " ".join(capsys.readouterr().out.split())
    assert "litert int8 ×1" in out and f"stem {TRUTH['stem']:.3f}" in out
    assert f"softmax {SOFTMAX_BW_EFF:.2f} of bandwidth" in out
    assert f"builtin kernels {BUILTIN_NS_PER_BYTE:.2f} ns/byte" in out
    assert f"table lookups {BUILTIN_LUT_NS_PER_BYTE:.2f} ns/byte" in out
