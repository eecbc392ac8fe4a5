"""Built-in image classifiers for small (8×8 to 32×32) inputs, written with export-friendly ops only.

Only Conv2d, BatchNorm2d, ReLU/ReLU6, add, AdaptiveAvgPool2d(1), flatten and Linear are used, so every model
converts with torch.onnx (dynamo), litert_torch and openvino.convert_model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from edgestill.errors import ConfigError
from edgestill.registry import Registry

ModelFactory = Callable[..., Any]
MODELS: Registry[ModelFactory] = Registry("model")


def create_model(name: str, *, num_classes: int, in_channels: int = 3, seed: int | None = None, **kwargs: Any):
    """Build a registered model with freshly initialised weights.

    Args:
        name: a registered model name (see :func:`model_names`).
        num_classes: size of the classifier output.
        in_channels: image channels (3 for RGB, 1 for grey).
        seed: when given, the weights are initialised from this seed without touching the global RNG.
        **kwargs: architecture options of that model (e.g. ``width`` for resnet-teacher, ``width_mult`` for
            mobilenetv2-student).

    Raises:
        UnknownNameError: ``name`` is not registered.
        ConfigError: an architecture option is unknown or out of range.
    """
    import torch

    factory = MODELS.get(name)
    for key, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"model {name!r}: {key} must be a positive integer, got {value!r}.")
    if seed is None:
        return factory(num_classes=num_classes, in_channels=in_channels, **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory(num_classes=num_classes, in_channels=in_channels, **kwargs)


def model_names() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return MODELS.names()


def count_parameters(model) -> int:
    """Number of parameters (trainable or not) in a torch module; buffers such as BN statistics excluded."""
    return int(sum(p.numel() for p in model.parameters()))


def _check_kwargs(model: str, given: dict[str, Any], valid: Sequence[str]) -> None:
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ConfigError(f"model {model!r} got unknown option(s) {', '.join(unknown)}. "
                          f"Valid options: {', '.join(valid)}. Remove or rename the option.")


def _positive_ints(model: str, key: str, value: Any, length: int | None = None) -> tuple[int, ...]:
    items = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if (not items or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in items)
            or (length is not None and len(items) != length)):
        size = f"{length} " if length else ""
        raise ConfigError(f"model {model!r}: {key} must be {size}positive integer(s), got {value!r}.")
    return items


def _conv_bn(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1, act=None):
    import torch.nn as nn

    layers = [nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(out_ch)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


def _init_weights(model) -> None:
    import torch.nn as nn

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


@MODELS.register("resnet-teacher")
def resnet_teacher(*, num_classes: int, in_channels: int = 3, **kwargs: Any):
    """ResNet with basic blocks for small images: a 3×3 stem, then stages at widths w, 2w, 4w (…).

    Options:
        width: channels of the first stage (default 32).
        blocks: basic blocks per stage, one int per stage (default (1, 1, 1)); stage i>0 halves the resolution.
    """
    import torch.nn as nn

    _check_kwargs("resnet-teacher", kwargs, ("width", "blocks"))
    (width,) = _positive_ints("resnet-teacher", "width", kwargs.get("width", 32), 1)
    blocks = _positive_ints("resnet-teacher", "blocks", kwargs.get("blocks", (1, 1, 1)))

    class BasicBlock(nn.Module):
        def __init__(self, in_ch: int, out_ch: int, stride: int):
            super().__init__()
            self.body = nn.Sequential(_conv_bn(in_ch, out_ch, 3, stride, act=nn.ReLU), _conv_bn(out_ch, out_ch, 3))
            self.shortcut = _conv_bn(in_ch, out_ch, 1, stride) if (stride != 1 or in_ch != out_ch) else nn.Identity()
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(self.body(x) + self.shortcut(x))

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            layers = [_conv_bn(in_channels, width, 3, 1, act=nn.ReLU)]
            in_ch = width
            for i, n in enumerate(blocks):
                out_ch = width * 2 ** i
                for j in range(n):
                    layers.append(BasicBlock(in_ch, out_ch, 2 if (i > 0 and j == 0) else 1))
                    in_ch = out_ch
            self.features = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(in_ch, num_classes)

        def forward(self, x):
            return self.classifier(self.pool(self.features(x)).flatten(1))

    model = ResNet()
    _init_weights(model)
    return model


def _make_divisible(value: float, divisor: int = 8) -> int:
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


# (expansion t, output channels c, repeats n, first stride s), for 32×32 inputs: 32 → 16 → 8 → 4.
_MOBILENET_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 2), (6, 96, 1, 1))


@MODELS.register("mobilenetv2-student")
def mobilenetv2_student(*, num_classes: int, in_channels: int = 3, **kwargs: Any):
    """MobileNetV2 for small images: inverted residual blocks, depthwise convs, ReLU6, linear bottlenecks.

    Options:
        width_mult: scales every layer's channels (default 1.0), rounded to multiples of 8.
        last_channels: width of the final 1×1 conv before pooling (default 256; scaled when width_mult > 1).
        blocks: list of (expansion, channels, repeats, stride) rows (default: 5 rows reaching 1/8 resolution).
        stem_stride: stride of the first 3×3 conv, 1 or 2 (default 1; 2 quarters the compute).
    """
    import torch.nn as nn

    _check_kwargs("mobilenetv2-student", kwargs, ("width_mult", "last_channels", "blocks", "stem_stride"))
    width_mult = kwargs.get("width_mult", 1.0)
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not 0.05 <= width_mult <= 4:
        raise ConfigError(f"model 'mobilenetv2-student': width_mult must be a number in [0.05, 4], got {width_mult!r}.")
    (last_channels,) = _positive_ints("mobilenetv2-student", "last_channels", kwargs.get("last_channels", 256), 1)
    stem_stride = kwargs.get("stem_stride", 1)
    if stem_stride not in (1, 2) or isinstance(stem_stride, bool):
        raise ConfigError(f"model 'mobilenetv2-student': stem_stride must be 1 or 2, got {stem_stride!r}.")
    rows = kwargs.get("blocks", _MOBILENET_BLOCKS)
    rows = tuple(_positive_ints("mobilenetv2-student", "blocks row", row, 4) for row in rows)
    if not rows:
        raise ConfigError("model 'mobilenetv2-student': blocks must have at least one (t, c, n, s) row.")

    class InvertedResidual(nn.Module):
        def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int):
            super().__init__()
            hidden = in_ch * expand
            layers = [_conv_bn(in_ch, hidden, 1, act=nn.ReLU6)] if expand != 1 else []
            layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6), _conv_bn(hidden, out_ch, 1)]
            self.body = nn.Sequential(*layers)
            self.residual = stride == 1 and in_ch == out_ch

        def forward(self, x):
            return x + self.body(x) if self.residual else self.body(x)

    class MobileNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            in_ch = _make_divisible(32 * width_mult)
            layers = [_conv_bn(in_channels, in_ch, 3, stem_stride, act=nn.ReLU6)]
            for t, c, n, s in rows:
                out_ch = _make_divisible(c * width_mult)
                for i in range(n):
                    layers.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t))
                    in_ch = out_ch
            last = _make_divisible(last_channels * max(1.0, width_mult))
            layers.append(_conv_bn(in_ch, last, 1, act=nn.ReLU6))
            self.features = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(last, num_classes)

        def forward(self, x):
            return self.classifier(self.pool(self.features(x)).flatten(1))

    model = MobileNetV2()
    _init_weights(model)
    return model
