"""Response-KD loss on hand-computable values."""

import math

import pytest
import torch
import torch.nn.functional as F

from edgestill.compress.distill.losses import LOSSES, ce_loss, kd_loss
from edgestill.errors import ConfigError, UnknownNameError


def test_registry_names():
    assert {"kd", "ce"} <= set(LOSSES.names())
    assert LOSSES.get("kd") is kd_loss
    with pytest.raises(UnknownNameError):
        LOSSES.get("kld")


def test_equal_logits_leave_only_the_ce_term():
    s = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    y = torch.tensor([0, 2])
    ce = F.cross_entropy(s, y)
    got = kd_loss(s, s.clone(), y, temperature=4.0, alpha=0.7)
    assert torch.isclose(got, 0.3 * ce, atol=1e-6)


def test_kl_term_matches_hand_computation_and_scales_with_t_squared():
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0]])  # softmax(t) = [3/4, 1/4] at T=1
    y = torch.tensor([0])
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert kd_loss(s, t, y, temperature=1.0, alpha=1.0).item() == pytest.approx(kl, rel=1e-5)
    # at temperature T the logits are divided by T, then the KL is multiplied by T²
    T = 2.0
    p = torch.softmax(t / T, dim=1)[0]
    kl_t = sum(float(p[i]) * math.log(float(p[i]) / 0.5) for i in range(2))
    assert kd_loss(s, t, y, temperature=T, alpha=1.0).item() == pytest.approx(T * T * kl_t, rel=1e-5)


def test_batchmean_averages_over_samples():
    s = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])  # second row: zero KL
    y = torch.tensor([0, 0])
    one = kd_loss(s[:1], t[:1], y[:1], temperature=1.0, alpha=1.0).item()
    assert kd_loss(s, t, y, temperature=1.0, alpha=1.0).item() == pytest.approx(one / 2, rel=1e-5)


def test_no_teacher_is_plain_cross_entropy():
    s = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    ce = F.cross_entropy(s, y)
    assert torch.isclose(kd_loss(s, None, y, temperature=4.0, alpha=0.9), ce)
    assert torch.isclose(ce_loss(s, torch.zeros_like(s), y), ce)


def test_gradient_flows_to_student_only():
    s = torch.randn(3, 4, requires_grad=True)
    t = torch.randn(3, 4, requires_grad=True)
    kd_loss(s, t.detach(), torch.tensor([0, 1, 2]), temperature=3.0, alpha=0.5).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


@pytest.mark.parametrize("kwargs", [{"temperature": 0.0, "alpha": 0.5}, {"temperature": 2.0, "alpha": 1.5}])
def test_bad_hyperparameters_raise_config_error(kwargs):
    s = torch.zeros(1, 2)
    with pytest.raises(ConfigError):
        kd_loss(s, s, torch.tensor([0]), **kwargs)
