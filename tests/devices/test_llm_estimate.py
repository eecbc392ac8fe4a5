"""Decode tokens/s estimates: the memory-bound fit on the published table, its leave-one-out error, artifacts and
sizes through the API and ``edgestill estimate``, always kind 'estimated'."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

import edgestill.commands.estimate  # noqa: F401  (registers the command on the app)
from edgestill.artifact import Artifact, TensorSpec
from edgestill.cli import app
from edgestill.devices.llm_estimate import (
    DATA_FILE,
    QUANT_BITS,
    estimate_llm_artifact,
    estimate_llm_size,
    published_decode_fit,
)
from edgestill.devices.profiles import load_profile
from edgestill.errors import ConfigError, InputError
from edgestill.runtimes.generate import LLMInfo

CSV = Path(__file__).resolve().parents[2] / "src" / "edgestill" / "devices" / DATA_FILE


def test_the_fit_reports_leave_one_out_error_over_the_usable_rows() -> None:
    fit = published_decode_fit()
    rows = list(csv.DictReader(CSV.read_text(encoding="utf-8").splitlines()))
    assert fit["error"]["n"] + len(fit["dropped"]) == len(rows)
    assert fit["error"]["n"] >= 3
    assert 0 <= fit["error"]["within_25_percent"] <= 1 and fit["error"]["median_abs_percent"] >= 0
    # the chosen efficiency model is the one with the lower held-out error
    chosen = fit["alternatives"][fit["model"]]["median_abs_percent"]
    assert chosen == min(a["median_abs_percent"] for a in fit["alternatives"].values())
    assert all(0 < e <= 1.5 for e in fit["efficiency"].values())
    # devices without a profile are dropped with their reason, not guessed
    reasons = {d["device"]: d["reason"] for d in fit["dropped"]}
    assert "jetson-agx-orin-64gb" in reasons and "no device profile" in reasons["jetson-agx-orin-64gb"]


def test_a_held_out_prediction_uses_only_the_other_rows() -> None:
    """Recompute one global leave-one-out prediction from the CSV: efficiency = geometric mean of observed/roofline."""
    fit = published_decode_fit()
    if fit["model"] != "global":
        pytest.skip("the per-class model won; this check recomputes the global one")
    rows = fit["rows"]
    key = ("model", "device", "runtime", "quantization")
    table = {tuple(r[k] for k in key): r for r in csv.DictReader(CSV.read_text().splitlines())}

    def roofline(r: dict) -> float:
        src = table[tuple(r[k] for k in key)]
        bw = load_profile(r["profile"]).bandwidth_gbs * 1e9
        return bw / (float(src["params_billions"]) * 1e9 * QUANT_BITS[src["quantization"]] / 8)

    held, others = rows[2], rows[:2] + rows[3:]
    log_eff = sum(math.log(o["published_tokens_per_s"] / roofline(o)) for o in others) / len(others)
    assert held["predicted_tokens_per_s"] == pytest.approx(roofline(held) * math.exp(log_eff), rel=1e-3)


def test_decode_is_memory_bound_and_stays_an_estimate() -> None:
    pi5 = load_profile("raspberry-pi-5")
    q4 = estimate_llm_size(pi5, params_billions=1.0, weight_bits=4)
    q8 = estimate_llm_size(pi5, params_billions=1.0, weight_bits=8)
    assert q4.kind == "estimated" and "estimated, not measured" in q4.warnings[0]
    assert q4.decode_tokens_per_s == pytest.approx(2 * q8.decode_tokens_per_s, rel=1e-3)
    assert q4.settings["low_tokens_per_s"] < q4.decode_tokens_per_s < q4.settings["high_tokens_per_s"]
    assert q4.low_ms < q4.latency.p50_ms < q4.high_ms
    assert q4.latency.p50_ms == pytest.approx(1000 / q4.decode_tokens_per_s, rel=1e-3)
    phone = estimate_llm_size(load_profile("snapdragon-8-gen-3"), params_billions=1.0, weight_bits=4)
    ratio = load_profile("snapdragon-8-gen-3").bandwidth_gbs / pi5.bandwidth_gbs
    assert phone.decode_tokens_per_s == pytest.approx(ratio * q4.decode_tokens_per_s, rel=1e-3)


def _llm_artifact(folder: Path, *, weight_bytes: int, layers: int = 2, kv_heads: int = 2, head_dim: int = 16) -> Path:
    sub = folder / "tiny"
    sub.mkdir(parents=True)
    (sub / "model.onnx").write_bytes(b"\0" * weight_bytes)
    (sub / "tokenizer.json").write_text("{}")  # not a weight: left out of the bytes read per token
    info = LLMInfo(vocab_size=64, context_length=512, eos_token_id=2, num_layers=layers, num_kv_heads=kv_heads,
                   head_dim=head_dim, weight_bits=32, runtime="onnxruntime-genai")
    art = Artifact(name="tiny", format="onnx", precision="fp32", directory=folder, model_file="tiny/model.onnx",
                   files={"tiny/model.onnx": "", "tiny/tokenizer.json": ""},
                   inputs=[TensorSpec(name="input_ids", shape=("batch", "sequence"), dtype="int64", kind="ids", high=64)],
                   outputs=[TensorSpec(name="logits", shape=("batch", "sequence", 64), dtype="float32")],
                   source={"model": "tiny", "llm": info.to_dict()})
    art.hash_files()
    return art.write_manifest()


def test_an_artifact_reads_its_weights_and_kv_cache(tmp_path: Path) -> None:
    manifest = _llm_artifact(tmp_path, weight_bytes=1_000_000)
    pi5 = load_profile("raspberry-pi-5")
    est = estimate_llm_artifact(manifest, pi5, prompt_tokens=100, new_tokens=50)
    basis = est.provenance["estimator"]["basis"]
    assert basis["weight_bytes"] == 1_000_000
    assert basis["kv_bytes_per_position"] == 2 * 2 * 2 * 16 * 4 and basis["position"] == 125
    assert basis["kv_bytes"] == 2 * 2 * 2 * 16 * 4 * 125
    eff = est.provenance["estimator"]["efficiency"]
    expected = eff * pi5.bandwidth_gbs * 1e9 / (1_000_000 + basis["kv_bytes"])
    assert est.decode_tokens_per_s == pytest.approx(expected, rel=1e-3)
    longer = estimate_llm_artifact(manifest, pi5, prompt_tokens=400, new_tokens=50)
    assert longer.decode_tokens_per_s < est.decode_tokens_per_s  # a longer context reads more cache per token


def test_bad_inputs_are_refused(tmp_path: Path) -> None:
    pi5 = load_profile("raspberry-pi-5")
    with pytest.raises(ConfigError, match="--weight-bits"):
        estimate_llm_size(pi5, params_billions=1.0, weight_bits=64)
    with pytest.raises(ConfigError, match="--params-billions"):
        estimate_llm_size(pi5, params_billions=float("nan"), weight_bits=4)
    manifest = _llm_artifact(tmp_path, weight_bytes=1000)
    with pytest.raises(InputError, match="prompt tokens"):
        estimate_llm_artifact(manifest, pi5, prompt_tokens=0)


def _invoke(*args: str):
    return CliRunner().invoke(app, ["estimate", *args], prog_name="edgestill")


def test_cli_routes_an_llm_artifact_and_a_size(tmp_path: Path) -> None:
    manifest = _llm_artifact(tmp_path, weight_bytes=2_000_000)
    r = _invoke(str(manifest), "--device", "raspberry-pi-5", "--json")
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)["measurements"][0]
    assert m["kind"] == "estimated" and m["decode_tokens_per_s"] > 0 and m["low_ms"] < m["p50_ms"] < m["high_ms"]
    assert m["provenance"]["estimator"]["fit"] == "published-decode"
    text = _invoke(str(manifest), "--device", "raspberry-pi-5")
    assert text.exit_code == 0 and "tokens/s" in text.stdout and "estimated, not measured" in text.stdout
    size = _invoke("--params-billions", "1.1", "--weight-bits", "8.5", "--device", "rpi5", "--json")
    assert size.exit_code == 0, size.output
    assert json.loads(size.stdout)["measurements"][0]["kind"] == "estimated"


def test_cli_bad_inputs_exit_2(tmp_path: Path) -> None:
    manifest = _llm_artifact(tmp_path, weight_bytes=1000)
    for args in (["--params-billions", "1", "--device", "rpi5"],
                 ["--params-billions", "1", "--weight-bits", "4", str(manifest), "--device", "rpi5"],
                 ["--params-billions", "0", "--weight-bits", "4", "--device", "rpi5"],
                 [str(manifest), "--device", "no-such-device"]):
        r = _invoke(*args)
        assert r.exit_code == 2, (args, r.output)
        assert "Traceback" not in r.output
