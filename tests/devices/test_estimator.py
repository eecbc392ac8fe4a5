"""The roofline estimator: monotone in work and threads, an estimate is never a measurement, calibration wins."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from edgestill.devices.estimator import (
    cross_validate_published,
    estimate,
    estimate_artifact,
    estimate_zoo_model,
    zoo_cost,
)
from edgestill.devices.profiles import load_profile
from edgestill.errors import InputError, UnknownNameError
from edgestill.record import measurement_from_dict
from tests.devices.test_costmodel import tiny_tflite_pair  # noqa: F401 - the fixture, built once per session


def _summary(macs: float, nbytes: float, op_class: str = "conv", nodes: int = 1) -> dict:
    return {"layers": [[op_class, macs / nodes, nbytes / nodes, "fp32"]] * nodes}


def test_cross_validation_reports_its_documented_figures():
    cv = cross_validate_published()
    assert {"n", "within_25_percent", "median_abs_percent", "rows", "dropped", "parameters"} <= set(cv)
    assert cv["n"] == len(cv["rows"]) >= 10
    assert 0.0 <= cv["within_25_percent"] <= 1.0 and cv["median_abs_percent"] >= 0
    row = cv["rows"][0]
    assert {"model", "device", "runtime", "published_ms", "predicted_ms", "error_percent"} <= set(row)
    share = sum(abs(r["error_percent"]) <= 25 for r in cv["rows"]) / len(cv["rows"])
    assert math.isclose(share, cv["within_25_percent"], abs_tol=1e-3)
    # every dropped row says why (e.g. the opencv-dnn rows that include pre/post-processing)
    assert cv["dropped"] and all(d["reason"] for d in cv["dropped"])
    assert any("pre/post-processing" in d["reason"] for d in cv["dropped"])


def test_an_estimate_is_kind_estimated_with_a_band_around_the_point():
    pi5 = load_profile("raspberry-pi-5")
    m = estimate_zoo_model("mobilenet_v2", pi5, runtime="litert", precision="fp32", threads=4)
    point = m.settings["estimate_ms"]
    assert m.kind == "estimated" and m.latency.n == 0 and m.latency.p50_ms == point  # no sample taken
    assert m.low_ms < point < m.high_ms
    assert m.provenance["device"]["id"] == "raspberry-pi-5"
    assert m.provenance["estimator"]["fit"] == "published"
    assert m.provenance["estimator"]["error"]["method"] == "leave-one-model-out"
    back = measurement_from_dict(m.to_dict())
    assert back.kind == "estimated" and back.latency.n == 0


def test_the_results_store_keeps_an_estimate_apart_from_measurements(tmp_path: Path):
    from edgestill.benchmarks.store import ResultsStore

    m = estimate_zoo_model("mobilenet_v3_small", load_profile("raspberry-pi-5"), runtime="litert", precision="fp32",
                           threads=1)
    with ResultsStore(tmp_path / "r.db") as store:
        run_id = store.add_run("estimate", measurements=[m])
        assert store.measurements(run_id) == []  # never read back as a measurement
        (back,) = store.estimates(run_id)
    assert back["kind"] == "estimated" and back["p50_ms"] == m.settings["estimate_ms"]
    assert (back["low_ms"], back["high_ms"]) == (m.low_ms, m.high_ms)


def test_estimate_grows_with_work_and_shrinks_with_threads():
    pi5 = load_profile("raspberry-pi-5")
    small = estimate(_summary(1e8, 1e6, nodes=10), pi5, runtime="litert", precision="fp32", threads=1)
    big = estimate(_summary(4e8, 1e6, nodes=10), pi5, runtime="litert", precision="fp32", threads=1)
    assert big.settings["estimate_ms"] > 3 * small.settings["estimate_ms"]
    by_threads = [estimate_zoo_model("resnet18", pi5, runtime="litert", precision="fp32", threads=t)
                  .settings["estimate_ms"] for t in (1, 2, 4)]
    assert by_threads[0] > by_threads[1] > by_threads[2]
    int8 = estimate_zoo_model("resnet18", pi5, runtime="litert", precision="int8", threads=1).settings["estimate_ms"]
    assert int8 < by_threads[0]  # the int8 peak (SDOT) is higher than fp32's on a Cortex-A76


def test_calibration_entry_replaces_the_published_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    entry = {
        "runtime": "onnxruntime", "precision": "fp32", "threads": 1,
        "efficiency": {"conv": 0.5, "conv1x1": 0.5, "depthwise": 0.1, "matmul": 0.5, "elementwise": 0.3,
                       "attention": 0.3, "pool": 0.3, "other": 0.3},
        "bandwidth_efficiency": 0.5, "overhead_ms": 0.2, "per_node_ms": 0.01,
        "error": {"median_abs_percent": 10.0, "within_25_percent": 0.9, "n": 12, "method": "leave-one-shape-out"},
        "fitted_on": "microbenchmarks",
    }
    doc = {"schema": "edgestill-device-calibration", "schema_version": 1, "profile": "raspberry-pi-5",
           "created": "2026-12-02T14:00:00Z", "entries": [entry]}
    (tmp_path / "raspberry-pi-5.calibration.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("EDGESTILL_PROFILES", str(tmp_path))
    pi5 = load_profile("raspberry-pi-5")
    macs, nbytes = 2e8, 4e6
    m = estimate(_summary(macs, nbytes), pi5, runtime="onnxruntime", precision="fp32", threads=1)
    peak = pi5.peak_macs_per_s("fp32", 1)
    expected = max(macs / (peak * 0.5), nbytes / (pi5.bandwidth_gbs * 1e9 * 0.5)) * 1e3 + 0.01 + 0.2
    assert m.provenance["estimator"]["fit"] == "calibration"
    assert math.isclose(m.settings["estimate_ms"], expected, rel_tol=1e-3)
    assert math.isclose(m.high_ms / m.settings["estimate_ms"], 1 + 1.9 * 0.10, rel_tol=1e-3)
    # another thread count has no entry: the published fit answers
    other = estimate(_summary(macs, nbytes), pi5, runtime="onnxruntime", precision="fp32", threads=2)
    assert other.provenance["estimator"]["fit"] == "published"
    # the stacked elementwise micro's bandwidth prices the nodes without MACs; compute nodes keep the copies'
    doc["entries"] = [{**entry, "elementwise_bandwidth_efficiency": 2.0}]
    (tmp_path / "raspberry-pi-5.calibration.yaml").write_text(yaml.safe_dump(doc))
    pi5 = load_profile("raspberry-pi-5")
    elt = estimate(_summary(0, nbytes, "elementwise"), pi5, runtime="onnxruntime", precision="fp32", threads=1)
    assert math.isclose(elt.settings["estimate_ms"], nbytes / (pi5.bandwidth_gbs * 1e9 * 2.0) * 1e3 + 0.01 + 0.2,
                        rel_tol=1e-3)
    conv = estimate(_summary(macs, nbytes), pi5, runtime="onnxruntime", precision="fp32", threads=1)
    assert math.isclose(conv.settings["estimate_ms"], expected, rel_tol=1e-3)


def test_int8_scales_an_fp32_graph_but_not_the_fp32_nodes_of_a_quantized_one():
    from edgestill.devices.estimator import _byte_scales, _Layers

    fp32_graph = _Layers.from_summary({"layers": [["conv", 1, 100, "fp32"], ["elementwise", 0, 100, "fp32"]]})
    assert list(_byte_scales(fp32_graph, "int8")) == [0.25, 0.25]
    qdq_graph = _Layers.from_summary({"layers": [["conv", 1, 100, "int8"], ["elementwise", 0, 100, "fp32"]]})
    assert list(_byte_scales(qdq_graph, "int8")) == [1.0, 1.0]  # the LayerNorm onnxruntime runs in fp32 stays fp32


def test_bad_choices_are_input_errors():
    pi5 = load_profile("raspberry-pi-5")
    work = _summary(1e8, 1e6)
    with pytest.raises(InputError, match="does not list runtime 'tensorrt'"):
        estimate(work, pi5, runtime="tensorrt", precision="fp32", threads=1)
    with pytest.raises(InputError, match="cannot use accelerator 'gpu'"):
        estimate(work, pi5, runtime="onnxruntime", precision="fp32", threads=1, accelerator="gpu")
    with pytest.raises(InputError, match="precision"):
        estimate(work, pi5, runtime="litert", precision="int4", threads=1)
    with pytest.raises(InputError, match="CPU cores"):
        estimate(work, pi5, runtime="litert", precision="fp32", threads=64)
    with pytest.raises(UnknownNameError, match="mobilenet_v2"):
        zoo_cost("mobilenet_v9")


def test_a_quantized_graph_prices_each_node_at_its_own_dtype_calibration(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    def entry(precision: str, eff: float, elt: float, per_node: float) -> dict:
        return {"runtime": "litert", "precision": precision, "threads": 1,
                "efficiency": {c: eff for c in ("conv", "conv1x1", "depthwise", "matmul", "attention", "elementwise",
                                                "pool", "other")},
                "bandwidth_efficiency": 0.5, "elementwise_bandwidth_efficiency": elt, "overhead_ms": 0.2,
                "per_node_ms": per_node, "error": {"median_abs_percent": 10.0}}

    doc = {"schema": "edgestill-device-calibration", "schema_version": 1, "profile": "raspberry-pi-5",
           "created": "2026-12-02T14:00:00Z", "entries": [entry("fp32", 0.5, 2.0, 0.01), entry("int8", 0.8, 0.4, 0.02)]}
    (tmp_path / "raspberry-pi-5.calibration.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("EDGESTILL_PROFILES", str(tmp_path))
    pi5 = load_profile("raspberry-pi-5")
    bw = pi5.bandwidth_gbs * 1e9
    # an int8 file's int8 conv, and the fp32 island it keeps: an attention matmul and a LayerNorm-like pass
    summary = {"layers": [["conv", 2e8, 1e5, "int8"], ["attention", 5e7, 1e5, "fp32"],
                          ["elementwise", 0, 4e6, "fp32"]]}
    m = estimate(summary, pi5, runtime="litert", precision="int8", threads=1)
    int8_part = max(2e8 / (pi5.peak_macs_per_s("int8", 1) * 0.8), 1e5 / (bw * 0.5)) * 1e3 + 0.02
    fp32_part = (max(5e7 / (pi5.peak_macs_per_s("fp32", 1) * 0.5), 1e5 / (bw * 0.5)) * 1e3
                 + 4e6 / (bw * 2.0) * 1e3 + 2 * 0.01)
    assert math.isclose(m.settings["estimate_ms"], int8_part + fp32_part + 0.2, rel_tol=1e-3)
    # a stem takes the conv's efficiency when the entry has none of its own (a calibration from before stems)
    stem = estimate({"layers": [["stem", 2e8, 1e5, "int8"]]}, pi5, runtime="litert", precision="int8", threads=1)
    conv = estimate({"layers": [["conv", 2e8, 1e5, "int8"]]}, pi5, runtime="litert", precision="int8", threads=1)
    assert stem.settings["estimate_ms"] == conv.settings["estimate_ms"]
    # an int8 op outside the delegate (LiteRT's builtin HARD_SWISH) costs its bytes at the entry's builtin rate,
    # in place of the roofline, once the entry has one
    builtin = {"layers": [["conv", 2e8, 1e5, "int8"], ["elementwise", 0, 3e5, "int8", True]]}
    before = estimate(builtin, pi5, runtime="litert", precision="int8", threads=1).settings["estimate_ms"]
    doc["entries"][1] = {**entry("int8", 0.8, 0.4, 0.02), "builtin_ns_per_byte": 2.0,
                         "efficiency": {**entry("int8", 0.8, 0.4, 0.02)["efficiency"], "stem": 0.1}}
    (tmp_path / "raspberry-pi-5.calibration.yaml").write_text(yaml.safe_dump(doc))
    pi5 = load_profile("raspberry-pi-5")
    after = estimate(builtin, pi5, runtime="litert", precision="int8", threads=1).settings["estimate_ms"]
    assert math.isclose(after, int8_part + 0.2 + 3e5 * 2.0 * 1e-6 + 0.02, rel_tol=1e-3)
    assert after > before
    # a table-lookup kernel (int8 GELU, LOGISTIC, ...: the row's fifth element "lut") at the lut micro's rate; an entry
    # from before the lut micro prices it at the HARD_SWISH rate
    lut = {"layers": [["conv", 2e8, 1e5, "int8"], ["elementwise", 0, 3e5, "int8", "lut"]]}
    assert estimate(lut, pi5, runtime="litert", precision="int8", threads=1).settings["estimate_ms"] == after
    doc["entries"][1]["builtin_lut_ns_per_byte"] = 0.1
    (tmp_path / "raspberry-pi-5.calibration.yaml").write_text(yaml.safe_dump(doc))
    pi5 = load_profile("raspberry-pi-5")
    assert math.isclose(estimate(lut, pi5, runtime="litert", precision="int8", threads=1).settings["estimate_ms"],
                        int8_part + 0.2 + 3e5 * 0.1 * 1e-6 + 0.02, rel_tol=1e-3)
    assert estimate(builtin, pi5, runtime="litert", precision="int8", threads=1).settings["estimate_ms"] == after
    stem = estimate({"layers": [["stem", 2e8, 1e5, "int8"]]}, pi5, runtime="litert", precision="int8", threads=1)
    assert math.isclose(stem.settings["estimate_ms"],
                        2e8 / (pi5.peak_macs_per_s("int8", 1) * 0.1) * 1e3 + 0.02 + 0.2, rel_tol=1e-3)
    # with the stem micros' curve, a stem's efficiency is interpolated in log MACs between them, the nearest beyond
    doc["entries"][1]["stem_curve"] = [[1e7, 0.04], [1e8, 0.16]]
    (tmp_path / "raspberry-pi-5.calibration.yaml").write_text(yaml.safe_dump(doc))
    pi5 = load_profile("raspberry-pi-5")
    peak = pi5.peak_macs_per_s("int8", 1)
    for macs, eff in ((1e6, 0.04), (math.sqrt(1e7 * 1e8), 0.08), (2e8, 0.16)):
        stem = estimate({"layers": [["stem", macs, 1.0, "int8"]]}, pi5, runtime="litert", precision="int8", threads=1)
        assert math.isclose(stem.settings["estimate_ms"], macs / (peak * eff) * 1e3 + 0.02 + 0.2, rel_tol=1e-3)


def test_an_efficiency_curve_prices_a_layer_by_its_arithmetic_intensity(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    """With an entry's ``efficiency_curve`` a class's efficiency is interpolated in log MACs-per-byte between the
    micros' points, the nearest beyond them (few-channel 1×1 convs run far below wide ones); a class without a curve
    keeps its one efficiency."""
    entry = {"runtime": "litert", "precision": "fp32", "threads": 1,
             "efficiency": {c: 0.5 for c in ("conv", "conv1x1", "depthwise", "matmul", "attention", "elementwise",
                                             "pool", "other")},
             "efficiency_curve": {"conv1x1": [[10.0, 0.2], [1000.0, 0.8]]},
             "bandwidth_efficiency": 1000.0, "elementwise_bandwidth_efficiency": 1000.0, "overhead_ms": 0.0,
             "per_node_ms": 0.0, "error": {"median_abs_percent": 10.0}}
    doc = {"schema": "edgestill-device-calibration", "schema_version": 1, "profile": "raspberry-pi-5",
           "created": "2026-12-02T14:00:00Z", "entries": [entry]}
    (tmp_path / "raspberry-pi-5.calibration.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("EDGESTILL_PROFILES", str(tmp_path))
    pi5 = load_profile("raspberry-pi-5")
    peak = pi5.peak_macs_per_s("fp32", 1)

    def ms(op_class: str, macs: float, nbytes: float) -> float:
        return estimate({"layers": [[op_class, macs, nbytes, "fp32"]]}, pi5, runtime="litert", precision="fp32",
                        threads=1).settings["estimate_ms"]

    for intensity, eff in ((1.0, 0.2), (10.0, 0.2), (100.0, 0.4), (1000.0, 0.8), (1e5, 0.8)):  # log-log between
        assert math.isclose(ms("conv1x1", 1e8, 1e8 / intensity), 1e8 / (peak * eff) * 1e3, rel_tol=2e-3), intensity
    assert math.isclose(ms("conv", 1e8, 1e6), 1e8 / (peak * 0.5) * 1e3, rel_tol=2e-3)
    # a Softmax's bytes at the entry's softmax rate once it has one, else at the elementwise rate
    bw = pi5.bandwidth_gbs * 1e9
    assert math.isclose(ms("softmax", 0, 1e10), 1e10 / (bw * 1000.0) * 1e3, rel_tol=2e-3)
    doc["entries"][0]["softmax_bandwidth_efficiency"] = 0.5
    (tmp_path / "raspberry-pi-5.calibration.yaml").write_text(yaml.safe_dump(doc))
    pi5 = load_profile("raspberry-pi-5")
    assert math.isclose(ms("softmax", 0, 1e10), 1e10 / (bw * 0.5) * 1e3, rel_tol=2e-3)
    assert math.isclose(ms("elementwise", 0, 1e10), 1e10 / (bw * 1000.0) * 1e3, rel_tol=2e-3)


def test_a_tflite_artifact_is_costed_from_its_own_graph(tiny_tflite_pair: dict[str, Path]):
    from edgestill.devices.tflite_cost import tflite_cost

    pi5 = load_profile("raspberry-pi-5")
    for path in (tiny_tflite_pair["manifest"], tiny_tflite_pair["tflite"]):
        m = estimate_artifact(path, pi5, threads=1)
        graph = m.provenance["estimator"]["graph"]
        assert (m.format, m.runtime, m.precision, m.kind) == ("tflite", "litert", "int8", "estimated")
        assert graph["basis"] == "tflite file" and graph["file"].endswith(".tflite")
        assert graph["macs"] == tflite_cost(tiny_tflite_pair["tflite"]).total_macs
