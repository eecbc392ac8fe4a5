"""Fixtures for quantization tests: the tiny seeded CNN of the export tests and seeded data."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_cnn():
    import torch
    from torch import nn

    torch.manual_seed(0)

    def block(cin: int, cout: int, stride: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6())

    model = nn.Sequential(block(3, 8, 2), block(8, 16, 2), block(16, 16, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="session")
def example_inputs():
    import torch

    return (torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)),)


@pytest.fixture(scope="session")
def validation_x() -> np.ndarray:
    return np.random.default_rng(10).standard_normal((64, 3, 32, 32)).astype(np.float32)


@pytest.fixture(scope="session")
def calibration_x() -> np.ndarray:
    return np.random.default_rng(20).standard_normal((32, 3, 32, 32)).astype(np.float32)
