"""Data-free quantization in torch: BatchNorm folding, cross-layer equalisation (exact, ReLU6 included), bias correction.

Bad inputs tried: a model torch.fx cannot trace (data-dependent control flow), inputs that drive every ReLU6 into
saturation (the case a naive rescaling of ReLU6 gets wrong), a transform whose float outputs differ (refused),
bias correction without calibration data.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from edgestill.compress.quantize import equalize as eq  # noqa: E402
from edgestill.compress.quantize.equalize import fake_quant_weight, prepare_for_int8, weight_spread  # noqa: E402


def _mobile_block(seed: int = 0) -> nn.Module:
    """stem 3×3 → 1×1 expand → depthwise 3×3 → 1×1 project, BN after each conv, ReLU6 between; badly scaled BNs."""
    torch.manual_seed(seed)

    def cbr(cin, cout, k=1, groups=1, act=True):
        layers = [nn.Conv2d(cin, cout, k, 1, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        return nn.Sequential(*layers, *([nn.ReLU6()] if act else []))

    model = nn.Sequential(cbr(3, 8, 3), cbr(8, 24), cbr(24, 24, 3, groups=24), cbr(24, 8, act=False),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # per-channel gains spread over two decades, as after training
            m.weight.data = torch.exp(torch.empty(m.num_features).uniform_(-2.5, 2.5))
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.05, 3)
    return model.eval()


def _x(n: int, scale: float = 1.0, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 12, 12, generator=torch.Generator().manual_seed(seed)) * scale


def test_equalised_float_model_gives_the_original_outputs_and_balances_the_depthwise_ranges() -> None:
    model = _mobile_block()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out, report = prepare_for_int8(model, (_x(1),), equalize=True, bias_correction=False)
    assert out is not model and all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # user's model untouched
    rep = report["equalize"]
    assert rep["applied"] and rep["folded_batchnorm"] == ["0.1", "1.1", "2.1", "3.1"]
    assert [(p["first"], p["second"]) for p in rep["pairs"]] == [("0.0", "1.0"), ("1.0", "2.0"), ("2.0", "3.0")]
    assert all(p["between"] == "ReLU6 → per-channel clamp" for p in rep["pairs"])
    with torch.no_grad():
        for scale in (1.0, 20.0):  # 20×: most ReLU6 saturate, where a plain rescale of ReLU6 would be wrong
            x = _x(16, scale, seed=7)
            ref, got = model(x), out(x)
            assert (ref - got).abs().max() <= 1e-4 * max(1.0, float(ref.abs().max()))
    folded_dw = prepare_for_int8(model, (_x(1),), equalize=False, bias_correction=True, calibration=_x(4).numpy())[0][2][0]
    assert weight_spread(out[2][0]) < weight_spread(folded_dw) / 3  # the depthwise channel ranges are more balanced


def test_a_model_torch_fx_cannot_trace_is_returned_unchanged_with_the_reason() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 1)

        def forward(self, x):
            y = self.a(x)
            return self.b(y) if y.sum() > 0 else self.b(-y)  # data-dependent control flow

    model = Branchy().eval()
    out, report = prepare_for_int8(model, (_x(1),), equalize=True, bias_correction=True, calibration=_x(4).numpy())
    assert out is model
    assert not report["equalize"]["applied"] and "could not trace Branchy" in report["equalize"]["reason"]
    assert not report["bias_correction"]["applied"]


def test_a_transform_that_changes_the_float_outputs_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(eq, "EQUALIZE_TOLERANCE", -1.0)  # every difference, even 0, now counts as a change
    model = _mobile_block()
    out, report = prepare_for_int8(model, (_x(1),), equalize=True, bias_correction=False)
    assert out is model and not report["equalize"]["applied"] and "refused" in report["equalize"]["reason"]


def test_bias_correction_removes_most_of_the_mean_output_error_of_int8_weights() -> None:
    """Simulated int8 weights (the backends' symmetric per-channel rounding) shift the mean output; correction undoes it."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(64, 16, 1)).eval()
    calib, held = _x(128, seed=11) + 0.5, _x(128, seed=12) + 0.5  # non-zero mean inputs: the rounding error has a mean
    corrected, report = prepare_for_int8(model, (calib[:1],), equalize=False, bias_correction=True, calibration=calib.numpy())
    bc = report["bias_correction"]
    assert bc["applied"] and bc["layers"] == 3 and bc["samples"] == 128 and bc["max_abs_shift"] > 0

    def int8(m):
        q = __import__("copy").deepcopy(m)
        for mod in q.modules():
            if isinstance(mod, nn.Conv2d):
                mod.weight.data = fake_quant_weight(mod.weight)
        return q

    with torch.no_grad():
        ref = model(held)
        mean_err = lambda m: float((int8(m)(held) - ref).mean(dim=(0, 2, 3)).abs().mean())  # noqa: E731
        assert mean_err(corrected) < 0.5 * mean_err(model)
    assert prepare_for_int8(model, (calib[:1],), equalize=False, bias_correction=True)[1]["bias_correction"]["reason"].startswith("no calibration")
    assert np.isfinite(bc["max_abs_shift"])


def test_bias_correction_of_a_linear_over_tokens_corrects_per_output_channel() -> None:
    """A transformer's Linear sees (N, T, C): the correction is one value per output channel (the last dim), not one
    per token. (Averaging over dim 1 gave T values: vit_small's int8 export failed with '576 vs 197'.)"""

    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(8, 24)

        def forward(self, x):  # (N, 8, 5) image-like input -> 5 tokens of width 8 -> (N, 5, 24)
            return self.proj(x.transpose(1, 2))

    torch.manual_seed(5)
    model = Tokens().eval()
    calib = torch.randn(64, 8, 5) + 0.5
    corrected, report = prepare_for_int8(model, (calib[:1],), equalize=False, bias_correction=True,
                                         calibration=calib.numpy())
    bc = report["bias_correction"]
    assert bc["applied"] and bc["layers"] == 1 and corrected.proj.bias.shape == (24,)
    with torch.no_grad():
        q = __import__("copy").deepcopy(corrected)
        q.proj.weight.data = fake_quant_weight(q.proj.weight)
        base = __import__("copy").deepcopy(model)
        base.proj.weight.data = fake_quant_weight(base.proj.weight)
        ref = model(calib)
        err = lambda m: float((m(calib) - ref).mean(dim=(0, 1)).abs().mean())  # noqa: E731
        assert err(q) < 0.5 * err(base)
