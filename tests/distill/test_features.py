"""Named-layer hooks, adapters and the Objective: names resolve (or fail with the list and the closest),
adapters map student features to the teacher's shape, and the weighted sum is what the terms say."""

import pytest
import torch
from torch import nn

from edgestill.compress.distill.features import (FeatureTap, build_adapter, build_objective, module_names,
                                                 resolve_module)
from edgestill.compress.distill.losses import LossTerm, fitnets_loss, kd_loss
from edgestill.errors import ConfigError


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))


def test_unknown_module_name_lists_available_and_closest():
    with pytest.raises(ConfigError) as err:
        resolve_module(_net(), "22", role="student", loss="loss 'fitnets'")
    msg = str(err.value)
    assert "loss 'fitnets': the student has no module named '22'" in msg
    assert "Did you mean '2'?" in msg and "0, 1, 2, 3, 4, 5" in msg


def test_feature_tap_captures_named_outputs_and_removes_its_hooks():
    net = _net()
    x = torch.randn(2, 3, 8, 8)
    with FeatureTap(net, ["0", "2"]) as tap:
        net(x)
        assert tap.outputs["0"].shape == (2, 4, 8, 8) and tap.outputs["2"].shape == (2, 6, 4, 4)
    assert module_names(net) == ["0", "1", "2", "3", "4", "5"]
    assert all(not m._forward_hooks for m in net.modules())


@pytest.mark.parametrize("kind,s,t", [("conv1x1", (4, 8, 8), (6, 4, 4)), ("linear", (4, 8, 8), (10,)),
                                      ("conv1x1", (4,), (6,)), ("none", (6, 8, 8), (6, 4, 4))])
def test_adapters_map_student_channels_to_teacher_channels(kind, s, t):
    adapter = build_adapter(kind, s, t, where="fitnets pair")
    out = adapter(torch.randn(2, *s))
    assert out.shape[1] == t[0] and out.ndim == len(t) + 1


def test_adapter_none_with_different_channels_is_a_config_error():
    with pytest.raises(ConfigError, match=r"adapter 'none' needs equal channels.*\[4, 8, 8\].*\[6, 8, 8\]"):
        build_adapter("none", (4, 8, 8), (6, 8, 8), where="fitnets pair ['0', '0']")


def test_objective_is_the_weighted_sum_of_its_terms():
    s_logits, t_logits, y = torch.randn(4, 5), torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    s_feat, t_feat = torch.randn(4, 4, 8, 8), torch.randn(4, 6, 4, 4)
    terms = [LossTerm(name="kd", weight=2.0, options={"temperature": 3.0, "alpha": 0.5}),
             LossTerm(name="fitnets", weight=0.5, options={"pairs": [["s.f", "t.f"]]})]
    objective = build_objective(terms, {"logits": (5,), "s.f": (4, 8, 8)}, {"logits": (5,), "t.f": (6, 4, 4)})
    assert sum(p.numel() for p in objective.parameters()) == 4 * 6 + 2 * 6  # 1x1 conv + BN affine
    total, parts = objective(s_logits, t_logits, y, {"s.f": s_feat}, {"t.f": t_feat})
    adapter = objective.adapters["t1p0"]
    expected = 2.0 * kd_loss(s_logits, t_logits, y, temperature=3.0, alpha=0.5) + 0.5 * fitnets_loss(adapter(s_feat), t_feat)
    assert torch.isclose(total, expected) and set(parts) == {"0:kd", "1:fitnets"}
    total.backward()
    assert all(p.grad is not None for p in objective.parameters())  # the adapter learns with the student


def test_attention_transfer_on_vectors_is_a_config_error():
    with pytest.raises(ConfigError, match="attention transfer needs two feature maps"):
        build_objective([LossTerm(name="at", options={"pairs": [["a", "b"]]})], {"logits": (5,), "a": (8,)},
                        {"logits": (5,), "b": (4, 2, 2)})
