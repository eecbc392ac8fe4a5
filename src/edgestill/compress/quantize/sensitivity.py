"""Per-layer int8 sensitivity, one layer at a time, simulated in torch.

(An Embedding layer's table is fake-quantized per row and nothing else: its ids are not quantized, nor, in the
dynamic-range files that quantize tables, its output.)

For each Conv/Linear layer alone: its weight is fake-quantized per output channel (symmetric int8), its input
and output per tensor (asymmetric 8-bit, min/max from the calibration data), the rest of the model stays float.
Two figures per layer: the SQNR of the layer's own output against float (how much int8 hurts the tensor) and
the SQNR of the model's output and its top-1 agreement with float (how much that reaches the prediction).
The float reference of a layer's own output is the module's own ``forward`` with its float weights on the float
input, so a Conv2d subclass that pads in ``forward`` (the TF-"SAME" convolutions of EfficientNet and MobileNet
ports), grouped and depthwise convolutions and any activation around them are measured as they run.
The ranking (worst model-output SQNR first) orders the accuracy-aware fallback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgestill.compress.quantize.layers import EMBEDDING, Layer, quantizable_layers
from edgestill.compress.quantize.samples import Samples, n_samples, torch_batch

if TYPE_CHECKING:
    import torch

_SQNR_CAP_DB = 300.0
_BATCH = 128


@dataclass(frozen=True, kw_only=True)
class LayerSensitivity:
    """One layer quantized alone: its own output SQNR, the model output's SQNR and top-1 agreement with float."""

    rank: int  # 1 = most sensitive
    layer: str
    kind: str
    macs: int
    input_range: tuple[float, float]
    output_range: tuple[float, float]
    layer_sqnr_db: float
    model_sqnr_db: float
    top1_agreement: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sqnr_db(ref: torch.Tensor, got: torch.Tensor) -> float:
    noise = float(((got - ref).double() ** 2).sum())
    signal = float((ref.double() ** 2).sum())
    if noise == 0:
        return _SQNR_CAP_DB
    return float(min(_SQNR_CAP_DB, 10.0 * np.log10(max(signal, 1e-300) / noise)))


def _fq_tensor(t: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Asymmetric 8-bit fake quantization with range [lo, hi] (widened to hold 0, as the runtimes do)."""
    import torch

    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / 255.0, 1e-12)
    zp = round(-lo / scale)
    return (torch.clamp(torch.round(t / scale) + zp, 0, 255) - zp) * scale


def _fq_weight(w: torch.Tensor) -> torch.Tensor:
    """Symmetric per-output-channel int8 fake quantization."""
    import torch

    amax = w.detach().abs().reshape(w.shape[0], -1).amax(dim=1).clamp_min(1e-12)
    scale = (amax / 127.0).reshape(-1, *([1] * (w.dim() - 1)))
    return torch.clamp(torch.round(w / scale), -127, 127) * scale


def _batched(model: torch.nn.Module, x: Samples) -> torch.Tensor:
    """The model's first output over every sample (one array, or one array per input: samples.Samples)."""
    import torch

    from edgestill.export.base import flatten_outputs

    outs = []
    with torch.no_grad():
        for s in range(0, n_samples(x), _BATCH):
            outs.append(flatten_outputs(model(*torch_batch(x, s, s + _BATCH)))[0])
    return torch.cat(outs)


def _layer_input(inp: tuple, kwargs: dict) -> torch.Tensor:
    """The tensor a Conv/Linear module was called with (positionally, or as ``input=``)."""
    return inp[0] if inp else kwargs["input"]


def layer_ranges(model: torch.nn.Module, layers: Sequence[Layer], calibration: Samples) -> dict[str, tuple[float, float, float, float]]:
    """(input min, input max, output min, output max) of every layer over the calibration samples."""

    mods = dict(model.named_modules())
    ranges: dict[str, list[float]] = {layer.name: [np.inf, -np.inf, np.inf, -np.inf] for layer in layers}

    def make(name: str) -> Any:
        def hook(_m: Any, inp: tuple, kwargs: dict, out: torch.Tensor) -> None:
            r = ranges[name]
            x = _layer_input(inp, kwargs)
            r[0], r[1] = min(r[0], float(x.min())), max(r[1], float(x.max()))
            r[2], r[3] = min(r[2], float(out.min())), max(r[3], float(out.max()))

        return hook

    handles = [mods[layer.name].register_forward_hook(make(layer.name), with_kwargs=True) for layer in layers]
    try:
        _batched(model, calibration)
    finally:
        for h in handles:
            h.remove()
    return {k: (v[0], v[1], v[2], v[3]) for k, v in ranges.items()}


def layer_sensitivity(
    model: torch.nn.Module, example_inputs: tuple, calibration: Samples, inputs: Samples, *, layers: Sequence[Layer] | None = None,
) -> list[LayerSensitivity]:
    """Rank the model's Conv/Linear layers by how much int8 in that one layer changes the model's output.

    Args:
        model: the float torch model (restored unchanged).
        example_inputs: batch-1 example inputs (used to list the layers).
        calibration: samples that set the activation ranges (as the int8 export will); one array, or one per
            input for a model with several (samples.Samples).
        inputs: samples the SQNR and top-1 agreement are measured on (a few hundred are plenty), of the same form.
        layers: the layers to analyse (default: every Conv/Linear).

    Returns:
        One LayerSensitivity per layer, most sensitive first.
    """
    import torch

    model.eval()
    layers = list(layers) if layers is not None else quantizable_layers(model, example_inputs)
    mods = dict(model.named_modules())
    ranges = layer_ranges(model, layers, calibration)
    ref = _batched(model, inputs)
    rows = []
    for layer in layers:
        mod = mods[layer.name]
        lo_in, hi_in, lo_out, hi_out = ranges[layer.name]
        float_out: list[torch.Tensor] = []
        quant_out: list[torch.Tensor] = []
        saved = mod.weight.data.clone()
        float_in: list[tuple[tuple, dict]] = []
        table = layer.kind == EMBEDDING  # a lookup: its int8 table only (ids are not quantized, nor is its output)

        def pre(_m: Any, inp: tuple, kwargs: dict, table: bool = table) -> tuple[tuple, dict]:
            float_in.append((inp, kwargs))
            if table:
                return inp, kwargs
            if inp:
                return (_fq_tensor(inp[0], lo_in, hi_in), *inp[1:]), kwargs
            return inp, {**kwargs, "input": _fq_tensor(kwargs["input"], lo_in, hi_in)}

        def post(m: Any, _i: tuple, _kw: dict, out: torch.Tensor, _saved: torch.Tensor = saved, table: bool = table) -> torch.Tensor:
            # The reference for the layer's own SQNR: the module's own forward (hooks bypassed) with its float weights
            # on the float input, so whatever the module does there (the padding of a TF-"SAME" Conv2d subclass, a
            # weight transform) is in the reference too.
            f_args, f_kwargs = float_in[-1]
            fq_weight = m.weight.data
            with torch.no_grad():
                m.weight.data = _saved
                try:
                    float_out.append(m.forward(*f_args, **f_kwargs).detach())
                finally:
                    m.weight.data = fq_weight
            q = out if table else _fq_tensor(out, lo_out, hi_out)
            quant_out.append(q.detach())
            return q

        handles = [mod.register_forward_pre_hook(pre, with_kwargs=True), mod.register_forward_hook(post, with_kwargs=True)]
        try:
            mod.weight.data = _fq_weight(saved)
            got = _batched(model, inputs)
        finally:
            mod.weight.data = saved
            for hd in handles:
                hd.remove()
        top1 = float((got.argmax(1) == ref.argmax(1)).float().mean()) if ref.dim() == 2 and ref.shape[1] > 1 else None
        rows.append({
            "layer": layer.name, "kind": layer.kind, "macs": layer.macs,
            "input_range": (round(lo_in, 6), round(hi_in, 6)), "output_range": (round(lo_out, 6), round(hi_out, 6)),
            "layer_sqnr_db": round(_sqnr_db(torch.cat(float_out), torch.cat(quant_out)), 2),
            "model_sqnr_db": round(_sqnr_db(ref, got), 2), "top1_agreement": None if top1 is None else round(top1, 4),
        })
    rows.sort(key=lambda r: (r["model_sqnr_db"], r["layer_sqnr_db"]))
    return [LayerSensitivity(rank=i + 1, **r) for i, r in enumerate(rows)]


def sensitivity_markdown(rows: Sequence[LayerSensitivity], *, float_layers: Sequence[str] = ()) -> str:
    """The per-layer table as Markdown (most sensitive first; layers kept in float marked)."""
    kept = set(float_layers)
    lines = [
        "| rank | layer | type | MACs | input range | layer SQNR dB | model SQNR dB | top-1 vs float | kept float |",
        "|---:|---|---|---:|---|---:|---:|---:|---|",
    ]
    for r in rows:
        top1 = "" if r.top1_agreement is None else f"{100 * r.top1_agreement:.1f}%"
        lines.append(
            f"| {r.rank} | `{r.layer}` | {r.kind} | {r.macs:,} | [{r.input_range[0]:.3g}, {r.input_range[1]:.3g}] | "
            f"{r.layer_sqnr_db:.1f} | {r.model_sqnr_db:.1f} | {top1} | {'yes' if r.layer in kept else ''} |"
        )
    return "\n".join(lines) + "\n"
