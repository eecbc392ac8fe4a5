"""Sensitivity on modules beyond plain Conv2d + ReLU: a Conv2d subclass that pads in ``forward`` (TF-"SAME", as
EfficientNet and MobileNet ports do), grouped and depthwise convolutions, Hardswish/SiLU/GELU, a Linear head.

Bad inputs tried: a stride-2 TF-SAME convolution on an even-sized input (its padding is asymmetric, so a reference
rebuilt from ``_conv_forward`` has another shape and crashed ``edgestill quantize`` with exit 3); every layer with its
fake quantization disabled (the layer's own SQNR must then be the cap: the reference is the module's own output).
"""

from __future__ import annotations

import math

import pytest

from edgestill.compress.quantize import sensitivity as sens_mod
from edgestill.compress.quantize.sensitivity import layer_sensitivity


def same_padding_cnn():
    """1×8×8 → 10 classes through TF-SAME, grouped and depthwise convolutions and non-ReLU activations."""
    import torch.nn.functional as F
    from torch import nn

    class SameConv2d(nn.Conv2d):
        """A Conv2d that pads in forward like TensorFlow's "SAME" (asymmetric for stride 2 on even sizes)."""

        def forward(self, x):
            ih, iw = x.shape[-2:]
            kh, kw = self.weight.shape[-2:]
            sh, sw = self.stride
            ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
            pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
            return super().forward(F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2]))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = SameConv2d(1, 16, 3, stride=2)
            self.grouped = nn.Conv2d(16, 32, 3, padding=1, groups=4)
            self.depthwise = SameConv2d(32, 32, 3, groups=32)
            self.project = nn.Conv2d(32, 32, 1)
            self.head = nn.Linear(32, 10)

        def forward(self, x):
            x = F.hardswish(self.stem(x))
            x = F.silu(self.grouped(x))
            x = F.gelu(self.depthwise(x))
            x = self.project(x).mean((2, 3))
            return self.head(x)

    return Net()


@pytest.fixture(scope="module")
def trained(digits):
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    from tests.quantize.models import fit_on_digits

    return fit_on_digits(same_padding_cnn(), digits, epochs=2, shuffle=False)


def _example(digits):
    import torch

    return (torch.from_numpy(digits.test.x[:1]),)


def test_every_layer_is_ranked_with_a_finite_sqnr(trained, digits) -> None:
    rows = layer_sensitivity(trained, _example(digits), digits.train.x[:128], digits.test.x[:128])
    assert sorted(r.layer for r in rows) == ["depthwise", "grouped", "head", "project", "stem"]
    assert [r.rank for r in rows] == [1, 2, 3, 4, 5]
    assert {r.kind for r in rows} == {"SameConv2d", "Conv2d", "Linear"}
    for r in rows:  # int8 costs something on every layer, but a layer alone does not wreck the output
        assert 10.0 < r.layer_sqnr_db < sens_mod._SQNR_CAP_DB, r
        assert 10.0 < r.model_sqnr_db < sens_mod._SQNR_CAP_DB, r
    assert [r.model_sqnr_db for r in rows] == sorted(r.model_sqnr_db for r in rows)  # most sensitive first


def test_the_float_reference_is_the_modules_own_output(trained, digits, monkeypatch) -> None:
    """With fake quantization switched off, the 'quantized' layer is the float layer: its SQNR against the reference
    must be the cap for every layer, the padding subclasses included (a reference that skipped their padding differs)."""
    monkeypatch.setattr(sens_mod, "_fq_weight", lambda w: w.clone())
    monkeypatch.setattr(sens_mod, "_fq_tensor", lambda t, lo, hi: t)
    rows = layer_sensitivity(trained, _example(digits), digits.train.x[:64], digits.test.x[:64])
    assert len(rows) == 5
    for r in rows:
        assert r.layer_sqnr_db == sens_mod._SQNR_CAP_DB and r.model_sqnr_db == sens_mod._SQNR_CAP_DB, r
        assert r.top1_agreement == 1.0


def test_quantize_ranks_and_completes_on_the_model(trained, digits, tmp_path) -> None:
    from edgestill.compress.quantize import QuantizeConfig, quantize

    config = QuantizeConfig(formats=("onnx",), name="same", bench_latency=False, report=True, max_accuracy_drop=100.0)
    result = quantize(trained, _example(digits), config, tmp_path, calibration=digits.train.x[:128],
                      eval_x=digits.test.x, eval_y=digits.test.y)
    (f,) = result.formats
    assert f.failures == [] and f.error is None, (f.failures, f.error)
    assert len(f.sensitivity) == 5 and f.passed
    assert f.naive.top1_agreement is not None and f.naive.kl is not None
    assert (tmp_path / "same-onnx-int8-static.onnx").exists()
