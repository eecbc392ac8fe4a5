"""The built-in zoo: every model builds and runs at its standard input, and its MACs and parameters match the
published figures (src/edgestill/models/reference_costs.csv) within 5%."""

import numpy as np
import pytest
import torch

from edgestill.errors import ConfigError, InputError, UnknownNameError
from edgestill.models import (
    ZOO,
    create_model,
    default_num_classes,
    example_input,
    model_names,
    reference_costs,
    sample_inputs,
    standard_input,
)
from edgestill.models.costs import model_costs

# Counted by edgestill.models.costs at the standard input (no published figure to compare with); pinned so an
# accidental architecture change shows up here.
OWN_COSTS = {
    "squeezenet1_1": {"macs": 349_151_936, "params": 1_235_496},
    "vit_small": {"macs": 437_289_984, "params": 2_158_504},
    "text_transformer": {"macs": 58_720_512, "params": 1_437_442},
}


def test_zoo_is_registered_with_standard_inputs():
    assert set(ZOO) <= set(model_names())
    assert len(ZOO) == 10
    for name in ZOO:
        spec = standard_input(name)
        assert spec.shape == ((1, 128) if name == "text_transformer" else (1, 3, 224, 224))
    assert standard_input("resnet-teacher").shape == standard_input("mobilenetv2-student").shape == (1, 3, 32, 32)


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_builds_runs_and_matches_published_costs(name):
    torch.set_num_threads(1)
    num_classes = default_num_classes(name)
    model = create_model(name, num_classes=num_classes, seed=0).eval()
    x = example_input(name)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, num_classes) and torch.isfinite(out).all()
    costs = model_costs(model, x)
    reference = reference_costs().get(name) or OWN_COSTS[name]
    for key in ("macs", "params"):
        assert costs[key] == pytest.approx(reference[key], rel=0.05), (name, key, costs[key], reference[key])


def test_reference_rows_name_zoo_models_and_sources():
    rows = reference_costs()
    assert set(rows) == set(ZOO) - set(OWN_COSTS)
    for name, row in rows.items():
        assert row["source"] and row["input"] == "x".join(map(str, standard_input(name).shape))


def test_macs_count_depthwise_grouped_linear_and_matmul():
    dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
    assert model_costs(dw, torch.randn(1, 8, 10, 10)) == {"macs": 8 * 9 * 100, "params": 72}
    grouped = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4)
    assert model_costs(grouped, torch.randn(1, 8, 10, 10))["macs"] == 16 * (8 // 4) * 9 * 25

    class Attention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(4, 6)
            self.norm = torch.nn.BatchNorm1d(5)  # buffers (running stats) are not parameters

        def forward(self, x):
            y = self.proj(x)
            return self.norm(y.matmul(y.transpose(-2, -1)))

    costs = model_costs(Attention(), torch.randn(2, 5, 4))
    assert costs["macs"] == 2 * (5 * 4 * 6 + 5 * 6 * 5)  # batch 2 × (linear 5×4→6, then (5×6)·(6×5))
    assert costs["params"] == 4 * 6 + 6 + 2 * 5


def test_other_class_and_channel_counts():
    torch.set_num_threads(1)
    model = create_model("mobilenet_v3_small", num_classes=7, in_channels=1, seed=0).eval()
    x = example_input("mobilenet_v3_small", batch=2, in_channels=1)
    assert x.shape == (2, 1, 224, 224)
    with torch.no_grad():
        assert model(x).shape == (2, 7)


def test_text_inputs_are_token_ids_in_range_and_seeded():
    spec = standard_input("text_transformer")
    ids = sample_inputs("text_transformer", 64, seed=3)
    assert ids.dtype == np.int64 and ids.shape == (64, 128)
    assert ids.min() >= spec.low and ids.max() < spec.high and spec.dtype == "int64"
    assert np.array_equal(ids, sample_inputs("text_transformer", 64, seed=3))
    assert not np.array_equal(ids, sample_inputs("text_transformer", 64, seed=4))
    x = example_input("text_transformer", batch=2)
    assert x.dtype == torch.int64 and x.shape == (2, 128)
    model = create_model("text_transformer", num_classes=3, seed=0).eval()
    with torch.no_grad():
        assert model(x).shape == (2, 3)


def test_image_example_matches_samples():
    x = example_input("resnet-teacher", batch=3, seed=5)
    assert x.dtype == torch.float32 and x.shape == (3, 3, 32, 32)
    assert np.array_equal(x.numpy(), sample_inputs("resnet-teacher", 3, seed=5))


def test_same_seed_same_weights():
    a = create_model("squeezenet1_1", num_classes=10, seed=1)
    b = create_model("squeezenet1_1", num_classes=10, seed=1)
    c = create_model("squeezenet1_1", num_classes=10, seed=2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_unknown_model_names_valid_ones():
    with pytest.raises(UnknownNameError) as err:
        standard_input("mobilenet_v4")
    assert "mobilenet_v3_small" in str(err.value)
    with pytest.raises(UnknownNameError):
        default_num_classes("resnet34")


def test_zoo_models_reject_architecture_options():
    with pytest.raises(ConfigError, match="takes no architecture options, got width_mult"):
        create_model("mobilenet_v2", num_classes=10, width_mult=0.5)
    with pytest.raises(ConfigError, match="depth"):
        create_model("vit_small", num_classes=10, depth=12)


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"n": 2, "in_channels": 0}, {"n": "4"}])
def test_sample_inputs_rejects_bad_counts(kwargs):
    with pytest.raises(InputError, match="positive integer"):
        sample_inputs("resnet18", **kwargs)
