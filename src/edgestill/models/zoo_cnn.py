"""Standard ImageNet CNNs at 224×224, written from their papers' layer tables with export-friendly ops.

Ops used: Conv2d (grouped for depthwise), BatchNorm2d, ReLU, ReLU6, Hardswish, Hardsigmoid, MaxPool2d
(ceil_mode off), AdaptiveAvgPool2d(1), add, mul, flatten, Linear, concat. Squeeze-and-excitation is
AdaptiveAvgPool2d(1) → 1×1 conv → ReLU → 1×1 conv → Hardsigmoid → mul.

Class counts follow the reference each architecture's published MAC/parameter figures come from: the
TF-slim / TF-TPU models (MobileNets, EfficientNet-Lite0) have 1001 classes (background + 1000), the
torchvision ones (ResNets, SqueezeNet) 1000; see ``default_num_classes`` in :mod:`edgestill.models.zoo`.
"""

from __future__ import annotations

from typing import Any

from edgestill.errors import ConfigError
from edgestill.models.builtin import MODELS, _conv_bn, _make_divisible


def _init_weights(model, in_channels: int) -> None:
    """Variance-preserving init, then BatchNorm statistics from one forward pass on noise.

    Convs use He init over their fan-in (for a depthwise conv that is k×k, not C·k×k, which would shrink
    activations ~sqrt(C) per layer), linear layers a unit-gain normal init (logits of order one). The BN
    running statistics are then measured on a batch of 2 standard-normal 224×224 images (drawn from torch's
    global RNG, which create_model seeds), so an untrained model in eval mode gives outputs of order one: with
    the default statistics (mean 0, variance 1) deep stacks drift to vanishing or huge activations, and a
    parity check on those compares nothing. The model is left in train mode, as nn.Module starts.
    """
    import torch
    import torch.nn as nn

    norms = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one batch sets the statistics exactly
            norms.append(m)
        elif isinstance(m, nn.Linear):  # unit gain: logits of order one, so parity bounds mean something
            nn.init.normal_(m.weight, 0, m.in_features ** -0.5)
            nn.init.zeros_(m.bias)
    if norms:
        model.train()
        with torch.no_grad():
            model(torch.randn(2, in_channels, 224, 224))
        for m in norms:
            m.momentum = 0.1


def _no_options(model: str, kwargs: dict[str, Any]) -> None:
    if kwargs:
        raise ConfigError(f"model {model!r} takes no architecture options, got {', '.join(sorted(kwargs))}. "
                          "Zoo models are built at their published configuration; remove the option(s).")


def _pool_linear(in_ch: int, num_classes: int):
    import torch.nn as nn

    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(in_ch, num_classes))


# --- MobileNetV1 (Howard et al. 2017, table 1) -------------------------------------------------------
# (output channels, stride) of each depthwise-separable block after the 32-channel stride-2 stem.
_V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
              (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


@MODELS.register("mobilenet_v1")
def mobilenet_v1(*, num_classes: int, in_channels: int = 3, **kwargs: Any):
    """MobileNetV1 1.0-224: a 3×3 stem then 13 depthwise-separable blocks (dw 3×3 + pw 1×1, BN, ReLU6)."""
    import torch.nn as nn

    _no_options("mobilenet_v1", kwargs)
    layers = [_conv_bn(in_channels, 32, 3, 2, act=nn.ReLU6)]
    in_ch = 32
    for out_ch, stride in _V1_BLOCKS:
        layers += [_conv_bn(in_ch, in_ch, 3, stride, groups=in_ch, act=nn.ReLU6),
                   _conv_bn(in_ch, out_ch, 1, act=nn.ReLU6)]
        in_ch = out_ch
    model = nn.Sequential(nn.Sequential(*layers), _pool_linear(in_ch, num_classes))
    _init_weights(model, in_channels)
    return model


# --- MobileNetV2 (Sandler et al. 2018, table 2) ------------------------------------------------------
def _inverted_residual(in_ch: int, out_ch: int, *, kernel: int, stride: int, hidden: int, act, se: bool):
    """Expand 1×1 (skipped when hidden == in_ch), depthwise k×k, optional squeeze-excite, project 1×1."""
    import torch.nn as nn

    class InvertedResidual(nn.Module):
        def __init__(self):
            super().__init__()
            layers = [_conv_bn(in_ch, hidden, 1, act=act)] if hidden != in_ch else []
            layers.append(_conv_bn(hidden, hidden, kernel, stride, groups=hidden, act=act))
            if se:
                layers.append(_squeeze_excite(hidden, _make_divisible(hidden / 4)))
            layers.append(_conv_bn(hidden, out_ch, 1))
            self.body = nn.Sequential(*layers)
            self.residual = stride == 1 and in_ch == out_ch

        def forward(self, x):
            return x + self.body(x) if self.residual else self.body(x)

    return InvertedResidual()


def _squeeze_excite(channels: int, squeeze: int):
    """x * hardsigmoid(conv(relu(conv(mean over H, W of x)))): the MobileNetV3 squeeze-and-excitation gate."""
    import torch.nn as nn

    class SqueezeExcite(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, squeeze, 1), nn.ReLU(),
                                      nn.Conv2d(squeeze, channels, 1), nn.Hardsigmoid())

        def forward(self, x):
            return x * self.gate(x)

    return SqueezeExcite()


# (expansion t, output channels c, repeats n, first stride s)
_V2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


@MODELS.register("mobilenet_v2")
def mobilenet_v2(*, num_classes: int, in_channels: int = 3, **kwargs: Any):
    """MobileNetV2 1.0-224: 17 inverted-residual blocks (ReLU6, linear bottlenecks), a 1280-wide 1×1 head."""
    import torch.nn as nn

    _no_options("mobilenet_v2", kwargs)
    layers = [_conv_bn(in_channels, 32, 3, 2, act=nn.ReLU6)]
    in_ch = 32
    for t, c, n, s in _V2_BLOCKS:
        for i in range(n):
            layers.append(_inverted_residual(in_ch, c, kernel=3, stride=s if i == 0 else 1, hidden=in_ch * t,
                                                  act=nn.ReLU6, se=False))
            in_ch = c
    layers.append(_conv_bn(in_ch, 1280, 1, act=nn.ReLU6))
    model = nn.Sequential(nn.Sequential(*layers), _pool_linear(1280, num_classes))
    _init_weights(model, in_channels)
    return model


# --- MobileNetV3 (Howard et al. 2019, tables 1 and 2) ------------------------------------------------
# (kernel, expanded size, output channels, squeeze-excite, hard-swish, stride)
_V3_LARGE = (
    (3, 16, 16, False, False, 1), (3, 64, 24, False, False, 2), (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2), (5, 120, 40, True, False, 1), (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2), (3, 200, 80, False, True, 1), (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1), (3, 480, 112, True, True, 1), (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2), (5, 960, 160, True, True, 1), (5, 960, 160, True, True, 1),
)
_V3_SMALL = (
    (3, 16, 16, True, False, 2), (3, 72, 24, False, False, 2), (3, 88, 24, False, False, 1),
    (5, 96, 40, True, True, 2), (5, 240, 40, True, True, 1), (5, 240, 40, True, True, 1),
    (5, 120, 48, True, True, 1), (5, 144, 48, True, True, 1), (5, 288, 96, True, True, 2),
    (5, 576, 96, True, True, 1), (5, 576, 96, True, True, 1),
)


def _mobilenet_v3(rows, last_conv: int, head: int, num_classes: int, in_channels: int):
    import torch.nn as nn

    layers = [_conv_bn(in_channels, 16, 3, 2, act=nn.Hardswish)]
    in_ch = 16
    for k, exp, out, se, hs, s in rows:
        layers.append(_inverted_residual(in_ch, out, kernel=k, stride=s, hidden=exp,
                                              act=nn.Hardswish if hs else nn.ReLU, se=se))
        in_ch = out
    layers.append(_conv_bn(in_ch, last_conv, 1, act=nn.Hardswish))
    classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(last_conv, head), nn.Hardswish(),
                               nn.Linear(head, num_classes))
    model = nn.Sequential(nn.Sequential(*layers), classifier)
    _init_weights(model, in_channels)
    return model


@MODELS.register("mobilenet_v3_large")
def mobilenet_v3_large(*, num_classes: int, in_channels: int = 3, **kwargs: Any):
    """MobileNetV3-Large 1.0-224: 15 bneck blocks (SE, hard-swish), 960-wide last conv, 1280-wide head."""
    _no_options("mobilenet_v3_large", kwargs)
    return _mobilenet_v3(_V3_LARGE, 960, 1280, num_classes, in_channels)


@MODELS.register("mobilenet_v3_small")
def mobilenet_v3_small(*, num_classes: int, in_channels: int = 3, **kwargs: Any):
    """MobileNetV3-Small 1.0-224: 11 bneck blocks (SE, hard-swish), 576-wide last conv, 1024-wide head.

    This is the TF-slim V3_SMALL definition: 56.9 M MACs and 2.54 M parameters (1001 classes), as in the
    revised paper (56 M, 2.5 M). The slim README's 66 M / 2.9 M are the first paper version's figures.
    """
    _no_options("mobilenet_v3_small", kwargs)
    return _mobilenet_v3(_V3_SMALL, 576, 1024, num_classes, in_channels)


# --- EfficientNet-Lite0 (Tan & Le 2019; Lite: no SE, ReLU6, fixed stem and head) --------------------
# (kernel, expansion, output channels, repeats, first stride): the EfficientNet-B0 stages.
_B0_STAGES = ((3, 1, 16, 1, 1), (3, 6, 24, 2, 2), (5, 6, 40, 2, 2), (3, 6, 80, 3, 2), (5, 6, 112, 3, 1),
              (5, 6, 192, 4, 2), (3, 6, 320, 1, 1))


@MODELS.register("efficientnet_lite0")
def efficientnet_lite0(*, num_classes: int, in_channels: int = 3, **kwargs: Any):
    """EfficientNet-Lite0: B0's MBConv stages without squeeze-excite, ReLU6 activations, 1280-wide head."""
    import torch.nn as nn

    _no_options("efficientnet_lite0", kwargs)
    layers = [_conv_bn(in_channels, 32, 3, 2, act=nn.ReLU6)]
    in_ch = 32
    for k, e, c, n, s in _B0_STAGES:
        for i in range(n):
            layers.append(_inverted_residual(in_ch, c, kernel=k, stride=s if i == 0 else 1, hidden=in_ch * e,
                                                  act=nn.ReLU6, se=False))
            in_ch = c
    layers.append(_conv_bn(in_ch, 1280, 1, act=nn.ReLU6))
    model = nn.Sequential(nn.Sequential(*layers), _pool_linear(1280, num_classes))
    _init_weights(model, in_channels)
    return model


# --- ResNet (He et al. 2015; torchvision v1.5: the stride sits on the bottleneck's 3×3) --------------
def _resnet(block: str, depths: tuple[int, ...], num_classes: int, in_channels: int):
    import torch.nn as nn

    expansion = 4 if block == "bottleneck" else 1

    class Residual(nn.Module):
        def __init__(self, in_ch: int, width: int, stride: int):
            super().__init__()
            out_ch = width * expansion
            if block == "bottleneck":
                self.body = nn.Sequential(_conv_bn(in_ch, width, 1, act=nn.ReLU),
                                          _conv_bn(width, width, 3, stride, act=nn.ReLU), _conv_bn(width, out_ch, 1))
            else:
                self.body = nn.Sequential(_conv_bn(in_ch, width, 3, stride, act=nn.ReLU), _conv_bn(width, width, 3))
            self.shortcut = _conv_bn(in_ch, out_ch, 1, stride) if (stride != 1 or in_ch != out_ch) else nn.Identity()
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(self.body(x) + self.shortcut(x))

    layers = [_conv_bn(in_channels, 64, 7, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1)]
    in_ch = 64
    for i, n in enumerate(depths):
        width = 64 * 2 ** i
        for j in range(n):
            layers.append(Residual(in_ch, width, 2 if (i > 0 and j == 0) else 1))
            in_ch = width * expansion
    model = nn.Sequential(nn.Sequential(*layers), _pool_linear(in_ch, num_classes))
    _init_weights(model, in_channels)
    return model


@MODELS.register("resnet18")
def resnet18(*, num_classes: int, in_channels: int = 3, **kwargs: Any):
    """ResNet-18: 7×7 stem, max-pool, four stages of two basic blocks (64-512 channels)."""
    _no_options("resnet18", kwargs)
    return _resnet("basic", (2, 2, 2, 2), num_classes, in_channels)


@MODELS.register("resnet50")
def resnet50(*, num_classes: int, in_channels: int = 3, **kwargs: Any):
    """ResNet-50 (v1.5): 7×7 stem, max-pool, stages of 3/4/6/3 bottleneck blocks (256-2048 channels)."""
    _no_options("resnet50", kwargs)
    return _resnet("bottleneck", (3, 4, 6, 3), num_classes, in_channels)


# --- SqueezeNet 1.1 (Iandola et al. 2016; v1.1 from the authors' repository) -------------------------
# Fire modules: (squeeze, expand 1×1, expand 3×3); "M" is a 3×3 stride-2 max-pool.
_FIRE_1_1 = ("M", (16, 64, 64), (16, 64, 64), "M", (32, 128, 128), (32, 128, 128), "M",
             (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256))


@MODELS.register("squeezenet1_1")
def squeezenet1_1(*, num_classes: int, in_channels: int = 3, **kwargs: Any):
    """SqueezeNet 1.1: 3×3/2 stem (64), eight Fire modules between three max-pools, a 1×1 conv classifier.

    Max-pools use floor rounding (the original uses ceil); at 224×224 every pool divides evenly, so the
    shapes are the same, and floor mode converts to all three formats without padding tricks.
    """
    import torch
    import torch.nn as nn

    _no_options("squeezenet1_1", kwargs)

    class Fire(nn.Module):
        def __init__(self, in_ch: int, squeeze: int, e1: int, e3: int):
            super().__init__()
            self.squeeze = nn.Sequential(nn.Conv2d(in_ch, squeeze, 1), nn.ReLU())
            self.expand1 = nn.Sequential(nn.Conv2d(squeeze, e1, 1), nn.ReLU())
            self.expand3 = nn.Sequential(nn.Conv2d(squeeze, e3, 3, padding=1), nn.ReLU())

        def forward(self, x):
            x = self.squeeze(x)
            return torch.cat([self.expand1(x), self.expand3(x)], 1)

    layers: list[nn.Module] = [nn.Conv2d(in_channels, 64, 3, 2), nn.ReLU()]
    in_ch = 64
    for item in _FIRE_1_1:
        if item == "M":
            layers.append(nn.MaxPool2d(3, 2))
        else:
            layers.append(Fire(in_ch, *item))
            in_ch = item[1] + item[2]
    classifier = nn.Sequential(nn.Conv2d(in_ch, num_classes, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    model = nn.Sequential(nn.Sequential(*layers), classifier)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    nn.init.normal_(classifier[0].weight, 0.0, 0.01)
    return model
