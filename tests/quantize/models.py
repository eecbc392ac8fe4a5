"""Small trained models for the accuracy-aware quantization tests (seeded; trained in seconds on the digits set)."""

from __future__ import annotations

OUTLIER_LAYER = "features.2"  # the conv whose output carries the huge channels
CONSUMER_LAYER = "features.4"  # the conv that reads them (its matching input weights are scaled down)
OUTLIER_CHANNELS = (0, 1)


def digits_cnn():
    """Three 3×3 convs, global pooling, a linear classifier; 1×8×8 inputs, 10 classes."""
    from torch import nn

    class DigitsCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            )
            self.classifier = nn.Linear(32, 10)

        def forward(self, x):
            return self.classifier(self.features(x))

    return DigitsCNN()


def train_digits_cnn(data, *, seed: int = 0, epochs: int = 12):
    """A DigitsCNN trained on ``data.train`` with Adam (a few seconds on one core)."""
    import torch

    torch.manual_seed(seed)
    return fit_on_digits(digits_cnn(), data, epochs=epochs)


def fit_on_digits(model, data, *, epochs: int, shuffle: bool = True):
    """``model`` trained on ``data.train`` with Adam (lr 0.01, batch 64) for ``epochs``; returned in eval mode."""
    import torch

    x, y = torch.from_numpy(data.train.x), torch.from_numpy(data.train.y)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x)) if shuffle else torch.arange(len(x))
        for i in range(0, len(x), 64):
            idx = order[i : i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def add_outliers(model, factor: float = 400.0):
    """Scale a few output channels of OUTLIER_LAYER by ``factor`` and CONSUMER_LAYER's matching inputs by 1/factor.

    ReLU and zero padding commute with a positive scale, so the float function is unchanged; but those channels
    now dominate the per-tensor int8 range of the activation between the two convs and every other channel
    rounds to about zero.
    """
    import copy

    import torch

    model = copy.deepcopy(model)
    conv, consumer = model.features[2], model.features[4]
    with torch.no_grad():
        for c in OUTLIER_CHANNELS:
            conv.weight[c] *= factor
            conv.bias[c] *= factor
            consumer.weight[:, c] /= factor
    return model.eval()
