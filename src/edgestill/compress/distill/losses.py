"""Distillation losses behind a registry: response-based KD (Hinton et al.) and plain cross-entropy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgestill.errors import ConfigError
from edgestill.registry import Registry

LossFn = Callable[..., Any]
LOSSES: Registry[LossFn] = Registry("loss")


@LOSSES.register("ce")
def ce_loss(student_logits, teacher_logits, labels, *, temperature: float = 1.0, alpha: float = 0.0,
            label_smoothing: float = 0.0):
    """Cross-entropy on the labels only; the teacher arguments are accepted and ignored."""
    import torch.nn.functional as F

    return F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)


@LOSSES.register("kd")
def kd_loss(student_logits, teacher_logits, labels, *, temperature: float, alpha: float,
            label_smoothing: float = 0.0):
    """Response KD: ``alpha * T² * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, labels)``.

    The KL term is averaged over the batch (``batchmean``); the T² factor keeps its gradient scale independent
    of the temperature. With ``teacher_logits=None`` this is plain cross-entropy.

    Raises:
        ConfigError: temperature is not positive or alpha is outside [0, 1].
    """
    import torch.nn.functional as F

    if not temperature > 0:
        raise ConfigError(f"kd temperature must be > 0, got {temperature!r}. Typical values are 2 to 8.")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"kd alpha (weight of the teacher term) must be in [0, 1], got {alpha!r}.")
    ce = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    if teacher_logits is None:
        return ce
    kl = F.kl_div(F.log_softmax(student_logits / temperature, dim=1), F.log_softmax(teacher_logits / temperature, dim=1),
                  reduction="batchmean", log_target=True)
    return alpha * temperature * temperature * kl + (1.0 - alpha) * ce
