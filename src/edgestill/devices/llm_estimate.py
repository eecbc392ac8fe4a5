"""Decode tokens/s of a generative model on a device profile: memory-bound, fitted on published throughputs.

Model. Generating one token reads every weight once and the KV cache up to the current position, and on the small
models edge devices run that traffic, not arithmetic, sets the pace::

    bytes/token  = weight_bytes + kv_bytes_per_position · position
    tokens/s     = efficiency · bandwidth / bytes/token

``bandwidth`` is the profile's memory bandwidth (``memory.bandwidth_gbs``). The SoCs in the table share one memory
between CPU and GPU (phones, the Raspberry Pi, Jetson), so a GPU row and a CPU row of one device read the same
figure; what differs is how much of it each engine reaches, which is the efficiency.

Fit. ``efficiency`` is fitted on ``published_llm_throughput.csv`` by least squares on log tokens/s (the geometric
mean of ``observed / (bandwidth / bytes)``), either one for all rows or one per runtime class (``xnnpack``:
ExecuTorch and LiteRT(-LM) on the CPU; ``llama.cpp``: Ollama and llamafile; ``gpu``), the per-class one used only
when its leave-one-out error is lower and for a class with at least :data:`MIN_CLASS_ROWS` rows (else the global
figure). Each row is normalised first:

- quantization names become effective bits per weight, scales included (:data:`QUANT_BITS`: ``Q4_K_M`` 4.85,
  ``q8_0`` 8.5, 4-bit with group-128 fp16 scales 4.125, ExecuTorch's SpinQuant/QAT+LoRA 4-bit group-32 4.5, BF16 16);
  weight bytes = ``params_billions · 1e9 · bits / 8`` (the table gives no architecture, so the published rows'
  KV-cache traffic is left out: a few % of the weights at their prompt lengths);
- devices map to profiles by id or alias, else by their SoC (:data:`DEVICE_PROFILES`); a row whose device has no
  profile (Jetson AGX Orin, Galaxy S22) or an unknown quantization is dropped and listed in ``dropped``.

Error. Leave-one-out: each row predicted by the fit on the others; the median absolute % error and the share within
±25% are reported (``perf/llm_estimate.py`` prints them) and the 10th/90th percentiles of the log residuals give
every estimate its low/high band. An estimate is ``kind = "estimated"`` and is never shown as a measurement.
"""

from __future__ import annotations

import csv
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from edgestill.errors import ConfigError, InputError, UnknownNameError
from edgestill.record import LatencyStats, Measurement

DATA_FILE = "published_llm_throughput.csv"
WITHIN_PERCENT = 25.0
BAND_QUANTILES = (10.0, 90.0)
MIN_BAND_LOG = 0.05  # never narrower than ±5%: the residuals of about ten rows say nothing finer
MIN_CLASS_ROWS = 3  # a runtime class with fewer rows uses the global efficiency
DEFAULT_PROMPT_TOKENS = 128
DEFAULT_NEW_TOKENS = 128

# effective bits read per weight (scales included) of each quantization named in the table
QUANT_BITS: dict[str, float] = {
    "BF16": 16.0, "FP16": 16.0, "FP32": 32.0,
    "INT4 AWQ": 4.125,  # 4-bit, group 128, fp16 scale per group
    "SpinQuant": 4.5,  # ExecuTorch: 4-bit weights in groups of 32 with fp16 scales, 8-bit dynamic activations
    "QAT+LoRA": 4.5,  # the same scheme as SpinQuant
    "4-bit g128": 4.125,
    "4-bit per-channel": 4.0,
    "Ollama default (Q4_K_M)": 4.85,  # llama.cpp: Q4_K with some Q6_K tensors, 4.85 bits per weight on average
    "q8_0": 8.5,  # blocks of 32 int8 weights with an fp16 scale
}
# published device name -> profile id, where the name is a product built on a profiled SoC
DEVICE_PROFILES: dict[str, str] = {
    "oneplus-12": "snapdragon-8-gen-3",  # OnePlus 12: Snapdragon 8 Gen 3
    "galaxy-s24": "snapdragon-8-gen-3",  # the Snapdragon Galaxy S24 (the profile's alias names it)
    "galaxy-s24-ultra": "snapdragon-8-gen-3",  # Snapdragon 8 Gen 3 for Galaxy in every market
    "raspberry-pi-5-8gb": "raspberry-pi-5",
    "raspberry-pi-5-16gb": "raspberry-pi-5",
}
# published runtime -> runtime class; edgestill's runtimes -> the class whose kernels they share (None: global figure)
RUNTIME_CLASSES: dict[str, str] = {
    "TensorRT Edge-LLM": "gpu", "LiteRT-LM GPU": "gpu",
    "ExecuTorch XNNPACK+KleidiAI": "xnnpack", "ExecuTorch": "xnnpack", "LiteRT-LM CPU": "xnnpack",
    "Ollama (llama.cpp) CPU": "llama.cpp", "llamafile 0.7": "llama.cpp",
    "litert": "xnnpack",
}
# precision of an artifact -> bytes per KV-cache value (the CPU runtimes keep the cache in the activations' float)
_KV_BYTES = {"fp16": 2}
_WEIGHT_SUFFIXES = (".onnx", ".data", ".bin", ".tflite", ".litertlm", ".task", ".safetensors")


@dataclass(frozen=True, kw_only=True)
class _Row:
    model: str
    device: str
    profile: str
    runtime: str
    runtime_class: str
    quantization: str
    bits: float
    weight_bytes: float
    bandwidth_bps: float
    tokens_per_s: float

    @property
    def roofline(self) -> float:
        """tokens/s at full bandwidth: what efficiency 1 would give."""
        return self.bandwidth_bps / self.weight_bytes


def _resolve_device(name: str) -> tuple[Any | None, str]:
    """The profile for a published device name, or None with why."""
    from edgestill.devices.profiles import load_profile

    for candidate in (name, DEVICE_PROFILES.get(name)):
        if candidate is None:
            continue
        try:
            return load_profile(candidate), ""
        except UnknownNameError:
            continue
        except InputError as exc:
            return None, str(exc).split(". ")[0]
    return None, f"no device profile for {name!r} (neither an id, an alias nor a mapped product)"


def _published_rows() -> tuple[list[_Row], list[dict[str, Any]]]:
    text = resources.files("edgestill.devices").joinpath(DATA_FILE).read_text(encoding="utf-8")
    rows, dropped = [], []
    for r in csv.DictReader(text.splitlines()):
        why = ""
        bits = QUANT_BITS.get(r["quantization"])
        profile, missing = _resolve_device(r["device"])
        if bits is None:
            why = f"quantization {r['quantization']!r} has no bits-per-weight figure"
        elif profile is None:
            why = missing
        elif not profile.bandwidth_gbs:
            why = f"profile {profile.id!r} gives no memory bandwidth"
        elif not r["decode_tokens_per_s"].strip():
            why = "no decode tokens/s"
        if why:
            dropped.append({"model": r["model"], "device": r["device"], "runtime": r["runtime"], "reason": why})
            continue
        rows.append(_Row(model=r["model"], device=r["device"], profile=profile.id, runtime=r["runtime"],
                         runtime_class=RUNTIME_CLASSES.get(r["runtime"], "other"),
                         quantization=r["quantization"], bits=bits,
                         weight_bytes=float(r["params_billions"]) * 1e9 * bits / 8,
                         bandwidth_bps=float(profile.bandwidth_gbs) * 1e9,
                         tokens_per_s=float(r["decode_tokens_per_s"])))
    return rows, dropped


def _log_efficiency(rows: Sequence[_Row]) -> float:
    """Least squares on log tokens/s with one free term: the mean log of observed over roofline."""
    return float(np.mean([math.log(r.tokens_per_s / r.roofline) for r in rows]))


def _fit(rows: Sequence[_Row], per_class: bool) -> dict[str, float]:
    """log efficiency per class (``"*"``: every row), from ``rows``."""
    fitted = {"*": _log_efficiency(rows)}
    if per_class:
        for c in sorted({r.runtime_class for r in rows}):
            members = [r for r in rows if r.runtime_class == c]
            if len(members) >= MIN_CLASS_ROWS:
                fitted[c] = _log_efficiency(members)
    return fitted


def _leave_one_out(rows: Sequence[_Row], per_class: bool) -> list[dict[str, Any]]:
    out = []
    for i, r in enumerate(rows):
        fit = _fit([o for j, o in enumerate(rows) if j != i], per_class)
        predicted = r.roofline * math.exp(fit.get(r.runtime_class, fit["*"]))
        out.append({"model": r.model, "device": r.device, "profile": r.profile, "runtime": r.runtime,
                    "runtime_class": r.runtime_class, "quantization": r.quantization, "bits": r.bits, "published_tokens_per_s": r.tokens_per_s,
                    "predicted_tokens_per_s": round(predicted, 3),
                    "error_percent": round(100 * (predicted / r.tokens_per_s - 1), 2),
                    "log_residual": math.log(r.tokens_per_s / predicted)})
    return out


def _error(cv: Sequence[dict[str, Any]]) -> dict[str, Any]:
    abs_pct = np.array([abs(c["error_percent"]) for c in cv])
    lo, hi = np.percentile([c["log_residual"] for c in cv], BAND_QUANTILES)
    return {"n": len(cv), "method": "leave-one-out", "median_abs_percent": round(float(np.median(abs_pct)), 2),
            "within_25_percent": round(float(np.mean(abs_pct <= WITHIN_PERCENT)), 4),
            "log_residual_p10": round(float(min(lo, -MIN_BAND_LOG)), 4),
            "log_residual_p90": round(float(max(hi, MIN_BAND_LOG)), 4)}


@functools.lru_cache(maxsize=1)
def _published_fit() -> dict[str, Any]:
    rows, dropped = _published_rows()
    if len(rows) < 3:
        raise ConfigError(f"the decode fit has {len(rows)} usable rows of {DATA_FILE} (needs 3): the device profiles "
                          "for its devices are missing. Dropped: " + "; ".join(
                              f"{d['model']} on {d['device']}: {d['reason']}" for d in dropped[:5]))
    candidates = {}
    for name, per_class in (("global", False), ("per-class", True)):
        cv = _leave_one_out(rows, per_class)
        candidates[name] = {"cv": cv, "error": _error(cv), "log_efficiency": _fit(rows, per_class)}
    chosen = min(candidates, key=lambda k: (candidates[k]["error"]["median_abs_percent"], k != "global"))
    best = candidates[chosen]
    return {
        "model": chosen,
        "efficiency": {c: round(math.exp(v), 4) for c, v in best["log_efficiency"].items()},
        "error": best["error"],
        "alternatives": {k: v["error"] for k, v in candidates.items()},
        "rows": [{k: v for k, v in c.items() if k != "log_residual"} for c in best["cv"]],
        "dropped": dropped,
    }


def published_decode_fit() -> dict[str, Any]:
    """The decode-efficiency fit on the published table.

    Returns:
        ``model`` ("global" or "per-class", whichever has the lower leave-one-out median error), ``efficiency``
        (``"*"``: all rows; a class name: that class's), ``error`` (n, median_abs_percent, within_25_percent, the
        band's log-residual percentiles), ``alternatives`` (both models' errors), the leave-one-out ``rows`` and the
        ``dropped`` rows with their reason.

    Raises:
        ConfigError: fewer than 3 rows are usable.
    """
    return _published_fit()


def _record(profile: Any, *, weight_bytes: float, kv_bytes: float, runtime: str, artifact: str, format: str,
            precision: str, basis: dict[str, Any]) -> Measurement:
    """The estimate as a Measurement: per-token ms in the latency fields, tokens/s in ``decode_tokens_per_s``."""
    if not profile.bandwidth_gbs:
        raise InputError(f"device profile {profile.id!r} gives no memory bandwidth (memory.bandwidth_gbs); the decode "
                         "estimate needs it. Add it to the profile with its source.")
    fit = published_decode_fit()
    runtime_class = RUNTIME_CLASSES.get(runtime)
    key = runtime_class if runtime_class in fit["efficiency"] else "*"
    efficiency = fit["efficiency"][key]
    bytes_per_token = weight_bytes + kv_bytes
    tps = efficiency * float(profile.bandwidth_gbs) * 1e9 / bytes_per_token
    low_tps = tps * math.exp(fit["error"]["log_residual_p10"])
    high_tps = tps * math.exp(fit["error"]["log_residual_p90"])
    ms, low_ms, high_ms = 1000.0 / tps, 1000.0 / high_tps, 1000.0 / low_tps
    latency = LatencyStats(p50_ms=round(ms, 4), p90_ms=round(ms, 4), p99_ms=round(ms, 4), mean_ms=round(ms, 4),
                           std_ms=0.0, cv_percent=0.0, min_ms=round(low_ms, 4), max_ms=round(high_ms, 4), n=0)
    estimator = {
        "fit": "published-decode", "model": fit["model"], "error": fit["error"],
        "efficiency": efficiency, "efficiency_class": key if key != "*" else "all rows",
        "basis": {**basis, "bandwidth_gbs": float(profile.bandwidth_gbs), "weight_bytes": int(weight_bytes),
                  "kv_bytes": int(kv_bytes), "bytes_per_token": int(bytes_per_token)},
    }
    return Measurement(
        artifact=artifact, format=format, precision=precision, runtime=runtime, threads=profile.cpu_cores,
        kind="estimated", latency=latency, low_ms=round(low_ms, 4), high_ms=round(high_ms, 4),
        decode_tokens_per_s=round(tps, 3),
        settings={"estimate_ms": round(ms, 4), "accelerator": "cpu", "decode_tokens_per_s": round(tps, 3),
                  "low_tokens_per_s": round(low_tps, 3), "high_tokens_per_s": round(high_tps, 3)},
        provenance={"device": {"id": profile.id, "profile": profile.id, "transport": None}, "device_id": profile.id,
                    "estimator": estimator},
        warnings=["estimated, not measured (memory-bound decode at the runtime's default thread count, all cores, "
                  "as the published rows were taken)"],
    )


def estimate_llm_size(profile: Any, *, params_billions: float, weight_bits: float, runtime: str = "litert") -> Measurement:
    """Decode tokens/s of a model known by its size only (no KV-cache term: its architecture is not known).

    Raises:
        ConfigError: a size or bit width that is not a positive finite number.
    """
    for key, value in (("--params-billions", params_billions), ("--weight-bits", weight_bits)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{key} must be a positive number, got {value!r}; e.g. --params-billions 1.1 "
                              "--weight-bits 4.5 (4-bit weights with group-32 scales).")
    if weight_bits > 32:
        raise ConfigError(f"--weight-bits {weight_bits:g} is more than 32; pass the bits stored per weight (16 for "
                          "fp16/bf16, 8.5 for q8_0, 4.5 for 4-bit with group-32 scales).")
    weight_bytes = params_billions * 1e9 * weight_bits / 8
    return _record(profile, weight_bytes=weight_bytes, kv_bytes=0.0, runtime=runtime,
                   artifact=f"{params_billions:g}B@{weight_bits:g}bit", format="none", precision=f"{weight_bits:g}-bit",
                   basis={"params_billions": params_billions, "weight_bits": weight_bits})


def weight_file_bytes(artifact: Any) -> int:
    """Bytes of an LLM artifact's weight-bearing files (model graphs and weight data; tokenizers and configs left out)."""
    return sum((artifact.directory / f).stat().st_size for f in artifact.files
               if f.endswith(_WEIGHT_SUFFIXES) and "tokenizer" not in Path(f).name)


def kv_bytes_per_position(info: Any, precision: str) -> int:
    """KV-cache bytes one position adds: keys and values, every layer, every KV head (0 where the artifact does not
    record its layers, heads or head size)."""
    if not (info.num_layers and info.num_kv_heads and info.head_dim):
        return 0
    return 2 * info.num_layers * info.num_kv_heads * info.head_dim * _KV_BYTES.get(precision, 4)


def estimate_llm_artifact(path: str | Path, profile: Any, *, runtime: str | None = None,
                          prompt_tokens: int = DEFAULT_PROMPT_TOKENS,
                          new_tokens: int = DEFAULT_NEW_TOKENS) -> Measurement:
    """Decode tokens/s of a generative artifact on a profile, at the mean position of a ``prompt_tokens`` /
    ``new_tokens`` generation.

    Raises:
        InputError: not a generative artifact (see :func:`edgestill.artifact.Artifact.load`), or lengths below 1.
    """
    from edgestill.artifact import Artifact
    from edgestill.runtimes.generate import llm_info

    for key, value in (("prompt tokens", prompt_tokens), ("new tokens", new_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{key} must be a whole number of at least 1, got {value!r}.")
    art = Artifact.load(path)
    info = llm_info(art)
    if info is None:
        raise InputError(f"{path} is not a generative model (no source.llm block in its manifest); estimate it with "
                         "the graph roofline (edgestill estimate without --params-billions).")
    position = prompt_tokens + new_tokens / 2
    per_position = kv_bytes_per_position(info, art.precision)
    runtime = runtime or info.runtime or art.format
    return _record(profile, weight_bytes=float(weight_file_bytes(art)), kv_bytes=per_position * position,
                   runtime=runtime, artifact=art.name, format=art.format, precision=art.precision,
                   basis={"weight_bits": info.weight_bits, "position": position,
                          "kv_bytes_per_position": per_position, "prompt_tokens": prompt_tokens,
                          "new_tokens": new_tokens})


def is_llm_artifact(path: str | Path) -> bool:
    """Whether ``path`` is (or has beside it) the manifest of a generative artifact; False for anything else."""
    from edgestill.artifact import Artifact
    from edgestill.runtimes.generate import llm_info

    try:
        return llm_info(Artifact.load(path)) is not None
    except InputError:
        return False
