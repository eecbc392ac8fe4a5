"""Data-free quantization in torch (Nagel et al. 2019): BatchNorm folding, cross-layer equalisation, bias correction.

Format-independent: :func:`prepare_for_int8` works on a deep copy of the float model (never the user's) before a
format's quantizer sees it, and returns ``(model, report)``; the report goes into the artifact's manifest.

- **Folding**: a BatchNorm2d whose only input is a Conv2d (with no other reader) is folded into it (eval-mode
  statistics) and replaced by Identity; the backends fold it the same way, so the weights they quantize are the
  folded ones this module equalises and corrects.
- **Equalisation**: for each pair conv A → [ReLU | ReLU6 | nothing] → conv B found in the traced graph
  (torch.fx), where each tensor between them has one reader and B is a plain or depthwise conv, A's output
  channel i is divided by s_i = sqrt(r1_i · r2_i) / r2_i and B's input channel i multiplied by it (r1: A's
  per-output-channel weight range, r2: B's per-input-channel range), so both become sqrt(r1_i · r2_i); sweeps
  repeat so chains such as 1×1 → depthwise → 1×1 settle. ReLU commutes with a positive scale; ReLU6 does not, so
  it is replaced by :class:`ChannelClamp` with per-channel upper bounds 6 / s_i, which is exact. The equalised
  float model must give the original's outputs (max abs difference within ``EQUALIZE_TOLERANCE`` of the output
  scale) on the example input and VERIFY_SAMPLES calibration samples, or the transform is refused and the model
  is left as it was.
- **Bias correction**: with per-output-channel symmetric int8 weights (scale max|W| / 127, as onnxruntime with
  WeightSymmetric, NNCF and litert-torch's PT2E quantizer make them), the expected output shift of each layer is
  E[(W_q − W) · x] per output channel; it is computed with the layer's own forward on the mean calibration
  input and subtracted from its bias.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

EQUALIZE_SWEEPS = 20  # sweeps over all pairs; the scales converge in a few on MobileNet-style chains
EQUALIZE_TOLERANCE = 1e-4  # max |equalised − original| output, relative to max(1, max |original output|)
VERIFY_SAMPLES = 8  # calibration samples (besides the example input) the equalised model is checked on
BIAS_CORRECTION_SAMPLES = 128  # calibration samples whose mean input each layer's correction uses
WEIGHT_QMAX = 127  # symmetric narrow-range int8 weights: q in [-127, 127]


def _channel_clamp_class():
    import torch
    from torch import nn

    class ChannelClamp(nn.Module):
        """min(max(x, 0), upper[c]) per channel: a ReLU6 whose channels were rescaled by cross-layer equalisation."""

        def __init__(self, upper: torch.Tensor) -> None:
            super().__init__()
            self.register_buffer("upper", upper.detach().clone().reshape(1, -1, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.minimum(torch.relu(x), self.upper)

    return ChannelClamp


def fake_quant_weight(weight: torch.Tensor, qmax: int = WEIGHT_QMAX) -> torch.Tensor:
    """``weight`` rounded to symmetric per-output-channel (axis 0) int8 and back to float."""
    import torch

    flat = weight.detach().reshape(weight.shape[0], -1)
    scale = flat.abs().amax(dim=1).clamp_min(1e-12) / qmax
    q = torch.clamp(torch.round(flat / scale[:, None]), -qmax, qmax)
    return (q * scale[:, None]).reshape(weight.shape)


def prepare_for_int8(
    model: torch.nn.Module, args: tuple, *, equalize: bool, bias_correction: bool,
    calibration: np.ndarray | None = None, skip: Sequence[str] = (),
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Fold BatchNorm and equalise (``equalize``), then correct biases (``bias_correction``) on a copy of ``model``.

    Args:
        model: the float model (left unchanged).
        args: the example inputs (a tuple with one batch-1 tensor).
        equalize: fold BatchNorm and equalise consecutive conv pairs.
        bias_correction: fold BatchNorm and subtract each layer's expected int8 weight error from its bias.
        calibration: samples without the batch axis (bias correction uses up to BIAS_CORRECTION_SAMPLES of them).
        skip: module names kept in float (never corrected).

    Returns:
        ``(model, report)``: the model to quantize (``model`` itself when nothing applied) and what ran: the
        folded BatchNorms, each equalised pair with its weight-range spread before/after, the output difference of
        the equalised float model, and the bias corrections.
    """
    import torch

    report: dict[str, Any] = {}
    if not equalize and not bias_correction:
        return model, report
    work = copy.deepcopy(model).eval()
    try:
        graph = _trace(work)
    except Exception as exc:  # torch.fx raises many types for code it cannot trace
        reason = f"torch.fx could not trace {type(model).__name__} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); model left unchanged"
        return model, _not_applied(report, reason, equalize=equalize, bias_correction=bias_correction)
    probes = [args]
    if calibration is not None and len(calibration):  # a few real samples too: ReLU6 saturates on real data
        step = _batch_size(model, calibration, args[0].dtype)
        probes += [(torch.from_numpy(np.ascontiguousarray(calibration[i : i + step])).to(args[0].dtype),)
                   for i in range(0, min(VERIFY_SAMPLES, len(calibration)), step)]
    with torch.no_grad():
        reference = [_outputs(model.eval(), p) for p in probes]
        folded = _fold_batchnorm(work, graph)
        eq: dict[str, Any] = {}
        if equalize:
            eq = _equalize(work, graph)
            eq["folded_batchnorm"] = folded
        diff = max(_max_diff(ref, _outputs(work, p)) for ref, p in zip(reference, probes))
        scale = max(1.0, max(float(r.abs().max()) for ref in reference for r in ref))
        if diff > EQUALIZE_TOLERANCE * scale:
            reason = f"the transformed float model differs from the original by {diff:.3g} (tolerance {EQUALIZE_TOLERANCE * scale:.3g}); refused"
            return model, _not_applied(report, reason, equalize=equalize, bias_correction=bias_correction)
        if equalize:
            report["equalize"] = {"applied": bool(eq["pairs"]), **eq, "max_abs_diff": diff}
            if not eq["pairs"]:
                report["equalize"]["reason"] = "no conv → [ReLU | ReLU6 | nothing] → conv pairs with a single reader"
        if bias_correction:
            if calibration is None or len(calibration) == 0:
                report["bias_correction"] = {"applied": False, "reason": "no calibration data (needed for E[x])"}
            else:
                report["bias_correction"] = _correct_biases(work, calibration, args[0].dtype, skip)
                report["bias_correction"]["folded_batchnorm"] = folded
    return work, report


def _batch_size(model: torch.nn.Module, samples: np.ndarray, dtype: Any) -> int:
    """16 when the model runs a batch of 2, else 1 (a model that fixes its batch, e.g. ``x.reshape(1, -1)``)."""
    import torch

    if len(samples) < 2:
        return 1
    try:
        with torch.no_grad():
            model(torch.from_numpy(np.ascontiguousarray(samples[:2])).to(dtype))
    except Exception:  # any failure on a batch of 2 means: feed one sample at a time
        return 1
    return 16


# --- tracing and the graph -----------------------------------------------------------------------------------
def _trace(model: torch.nn.Module) -> Any:
    import torch.fx

    return torch.fx.symbolic_trace(model).graph


def _outputs(model: torch.nn.Module, args: tuple) -> list[torch.Tensor]:
    import torch

    out = model(*args)
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [v for v in out.values() if isinstance(v, torch.Tensor)]
    return [v for v in out if isinstance(v, torch.Tensor)]


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def _module_calls(graph: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            counts[node.target] = counts.get(node.target, 0) + 1
    return counts


def _set_module(root: torch.nn.Module, name: str, new: torch.nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def _fold_batchnorm(model: torch.nn.Module, graph: Any) -> list[str]:
    """Fold each BatchNorm2d that reads only a Conv2d (called once, read only by it) into that conv."""
    import torch
    from torch import nn

    calls = _module_calls(graph)
    folded = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(model.get_submodule(node.target), nn.Conv2d) or len(node.users) != 1:
            continue
        (user,) = node.users
        if user.op != "call_module" or not isinstance(model.get_submodule(user.target), nn.BatchNorm2d):
            continue
        if calls[node.target] != 1 or calls[user.target] != 1:
            continue
        conv, bn = model.get_submodule(node.target), model.get_submodule(user.target)
        if bn.running_mean is None or not bn.affine and bn.running_var is None:
            continue
        factor = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1 / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.weight = nn.Parameter(conv.weight * factor.reshape(-1, 1, 1, 1))
        conv.bias = nn.Parameter((bias - bn.running_mean) * factor + shift)
        _set_module(model, user.target, nn.Identity())
        folded.append(user.target)
    return folded


def _pairs(model: torch.nn.Module, graph: Any) -> list[tuple[str, str, str | None]]:
    """(conv A, conv B, activation module between them or None) for every equalisable pair."""
    from torch import nn

    calls = _module_calls(graph)

    def module(node: Any) -> nn.Module | None:
        return model.get_submodule(node.target) if node.op == "call_module" else None

    out = []
    for node in graph.nodes:
        a = module(node)
        if not isinstance(a, nn.Conv2d) or calls[node.target] != 1:
            continue
        act, cur, ok = None, node, True
        while ok:
            if len(cur.users) != 1:
                ok = False
                break
            (cur,) = cur.users
            m = module(cur)
            if isinstance(m, nn.Identity):
                continue
            if isinstance(m, (nn.ReLU, nn.ReLU6)) and act is None and calls[cur.target] == 1:
                act = cur.target
                continue
            break
        b = module(cur) if ok else None
        if not isinstance(b, nn.Conv2d) or calls[cur.target] != 1 or b.in_channels != a.out_channels:
            continue
        if b.groups != 1 and not (b.groups == b.in_channels == b.out_channels):
            continue
        out.append((node.target, cur.target, act))
    return out


# --- equalisation ----------------------------------------------------------------------------------------------
def _in_ranges(conv: torch.nn.Module) -> torch.Tensor:
    """Per-input-channel weight range of a conv (for a depthwise conv, its channel's own range)."""
    w = conv.weight.detach()
    if conv.groups != 1:
        return w.abs().reshape(w.shape[0], -1).amax(dim=1)
    return w.abs().transpose(0, 1).reshape(w.shape[1], -1).amax(dim=1)


def _out_ranges(conv: torch.nn.Module) -> torch.Tensor:
    w = conv.weight.detach()
    return w.abs().reshape(w.shape[0], -1).amax(dim=1)


def _spread(r: torch.Tensor) -> float:
    """max / min of per-channel ranges (channels with an all-zero weight left out)."""
    r = r[r > 0]
    return float(r.max() / r.min()) if len(r) else 1.0


def _equalize(model: torch.nn.Module, graph: Any) -> dict[str, Any]:
    import torch
    from torch import nn

    pairs = _pairs(model, graph)
    before = {(a, b): (_spread(_out_ranges(model.get_submodule(a))), _spread(_in_ranges(model.get_submodule(b)))) for a, b, _ in pairs}
    clamp_cls = _channel_clamp_class()
    uppers: dict[str, torch.Tensor] = {}
    for _a, _b, act in pairs:
        if act is not None and isinstance(model.get_submodule(act), nn.ReLU6):
            uppers[act] = torch.full((model.get_submodule(_a).out_channels,), 6.0)
    sweeps = 0
    for sweeps in range(1, EQUALIZE_SWEEPS + 1):
        worst = 0.0
        for a_name, b_name, act in pairs:
            a, b = model.get_submodule(a_name), model.get_submodule(b_name)
            r1, r2 = _out_ranges(a), _in_ranges(b)
            s = torch.where((r1 > 0) & (r2 > 0), torch.sqrt(r1 * r2) / r2.clamp_min(1e-30), torch.ones_like(r1))
            worst = max(worst, float((s.log().abs()).max()))
            a.weight.data /= s.reshape(-1, 1, 1, 1)
            if a.bias is not None:
                a.bias.data /= s
            if b.groups != 1:
                b.weight.data *= s.reshape(-1, 1, 1, 1)
            else:
                b.weight.data *= s.reshape(1, -1, 1, 1)
            if act in uppers:
                uppers[act] /= s
        if worst < 1e-3:
            break
    for act, upper in uppers.items():
        _set_module(model, act, clamp_cls(upper))
    return {
        "pairs": [
            {"first": a, "second": b, "between": "none" if act is None else ("ReLU6 → per-channel clamp" if act in uppers else "ReLU"),
             "range_spread_before": [round(before[(a, b)][0], 3), round(before[(a, b)][1], 3)],
             "range_spread_after": [round(_spread(_out_ranges(model.get_submodule(a))), 3), round(_spread(_in_ranges(model.get_submodule(b))), 3)]}
            for a, b, act in pairs
        ],
        "sweeps": sweeps,
        "range_spread_note": "max/min of per-channel weight ranges: [first conv's output channels, second conv's input channels]",
    }


# --- bias correction -----------------------------------------------------------------------------------------
def _correct_biases(model: torch.nn.Module, calibration: np.ndarray, dtype: Any, skip: Sequence[str]) -> dict[str, Any]:
    """Subtract E[(W_q − W) x] per output channel from the bias of every Conv2d / Linear not in ``skip``."""
    import torch
    from torch import nn
    from torch.func import functional_call

    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and n not in set(skip)}
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook(name: str):
        def record(_mod: nn.Module, inputs: tuple) -> None:
            x = inputs[0].detach()
            sums[name] = sums.get(name, 0) + x.sum(dim=0)
            counts[name] = counts.get(name, 0) + x.shape[0]
        return record

    samples = calibration[: BIAS_CORRECTION_SAMPLES]
    step = _batch_size(model, samples, dtype)
    handles = [m.register_forward_pre_hook(hook(n)) for n, m in layers.items()]
    try:
        for i in range(0, len(samples), step):
            model(torch.from_numpy(np.ascontiguousarray(samples[i : i + step])).to(dtype))
    finally:
        for h in handles:
            h.remove()
    corrections = {}
    for name, mod in layers.items():
        if name not in sums:
            continue
        mean_x = (sums[name] / counts[name])[None]
        delta = fake_quant_weight(mod.weight) - mod.weight.detach()
        zero = torch.zeros(mod.weight.shape[0], dtype=mod.weight.dtype)
        shift = functional_call(mod, {"weight": delta, "bias": zero}, (mean_x,))
        # per output channel: dim 1 of a conv's (N, C, H, W); the last dim of a Linear's output, whatever its rank
        # (a transformer's Linear sees (N, T, C): averaging over dim 1 gave one value per token, not per channel)
        shift = (shift.reshape(shift.shape[0], shift.shape[1], -1).mean(dim=(0, 2)) if isinstance(mod, nn.Conv2d)
                 else shift.reshape(-1, shift.shape[-1]).mean(0))
        if mod.bias is None:
            mod.bias = nn.Parameter(torch.zeros_like(zero))
        mod.bias.data -= shift
        corrections[name] = round(float(shift.abs().mean()), 6)
    return {"applied": bool(corrections), "samples": int(len(samples)), "weights_simulated": "symmetric per-channel int8 [-127, 127]",
            "layers": len(corrections), "mean_abs_shift": corrections,
            "max_abs_shift": max(corrections.values(), default=0.0) if corrections else 0.0}


def weight_spread(conv: torch.nn.Module) -> float:
    """max / min of a conv's per-output-channel weight ranges (1.0 = perfectly balanced)."""
    return _spread(_out_ranges(conv))


__all__ = ["BIAS_CORRECTION_SAMPLES", "EQUALIZE_SWEEPS", "EQUALIZE_TOLERANCE", "fake_quant_weight", "prepare_for_int8", "weight_spread"]


def _not_applied(report: dict[str, Any], reason: str, *, equalize: bool, bias_correction: bool) -> dict[str, Any]:
    """``report`` saying, for each transform asked, that it was not applied and why (the model is left unchanged)."""
    for key, asked in (("equalize", equalize), ("bias_correction", bias_correction)):
        if asked:
            report[key] = {"applied": False, "reason": reason}
    return report
