"""Train a classifier on a DataSplits, optionally distilling from a teacher; seeded and print-free."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from edgestill.data.datasets import DataSplits, Split
from edgestill.errors import ConfigError

Progress = Callable[[int, int, int, float, float], None]
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "none")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How to train: optimiser, schedule, and the KD terms (used only when a teacher is given).

    ``alpha`` weighs the teacher (KL) term against cross-entropy on the labels; ``temperature`` softens both
    distributions. ``momentum`` applies to SGD only.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05
    weight_decay: float = 5e-4
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = 0.9
    schedule: Literal["cosine", "none"] = "cosine"
    warmup_epochs: int = 0
    seed: int = 0
    temperature: float = 4.0
    alpha: float = 0.9
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        def bad(key: str, value: Any, valid: str) -> ConfigError:
            return ConfigError(f"train config: {key}={value!r} is not valid; {key} must be {valid}.")

        for key in ("epochs", "batch_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(key, value, "a positive integer")
        for key in ("seed", "warmup_epochs"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise bad(key, value, "a non-negative integer")
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            raise bad("warmup_epochs", self.warmup_epochs, f"smaller than epochs ({self.epochs})")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", self.optimizer, f"one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", self.schedule, f"one of {', '.join(SCHEDULES)}")
        checks = {
            "lr": (lambda v: 0 < v <= 10, "a number in (0, 10]"),
            "weight_decay": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
            "momentum": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
            "temperature": (lambda v: 0 < v <= 100, "a number in (0, 100]"),
            "alpha": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
            "label_smoothing": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
        }
        for key, (ok, valid) in checks.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
                raise bad(key, value, valid)


@dataclass(frozen=True, kw_only=True)
class EpochRecord:
    """One epoch: mean training loss, training accuracy (on the fly), validation accuracy, wall seconds."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_accuracy: float
    lr: float
    wall_s: float


@dataclass(frozen=True, kw_only=True, eq=False)
class TrainResult:
    """What :func:`train` returns; ``model`` has the best-validation weights loaded and is in eval mode."""

    model: Any
    best_val_accuracy: float
    best_epoch: int
    final_val_accuracy: float
    history: list[EpochRecord] = field(default_factory=list)
    wall_s: float = 0.0
    teacher_logits_s: float = 0.0
    distilled: bool = False


def evaluate(model, split: Split, batch_size: int = 512) -> float:
    """Top-1 accuracy (0..1) of ``model`` on ``split``; the model's train/eval mode is restored afterwards."""
    logits = predict_logits(model, split.x, batch_size)
    return float((logits.argmax(1).numpy() == split.y).mean()) if len(split) else float("nan")


def predict_logits(model, x: np.ndarray, batch_size: int = 512):
    """Logits of ``model`` on ``x`` (float32 NCHW array) in eval mode, as a CPU float32 tensor."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            outs = [model(torch.from_numpy(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(outs).float() if outs else torch.empty(0)


def _lr_at(config: TrainConfig, step: int, total: int, steps_per_epoch: int) -> float:
    warmup = config.warmup_epochs * steps_per_epoch
    if step < warmup:
        return config.lr * (step + 1) / warmup
    if config.schedule == "none":
        return config.lr
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * config.lr * (1.0 + math.cos(math.pi * progress))


def train(model, data: DataSplits, config: TrainConfig, *, teacher=None, progress: Progress | None = None) -> TrainResult:
    """Train ``model`` on ``data.train``, keep the weights with the best ``data.val`` accuracy.

    With a ``teacher``, the loss is response KD (see :func:`~edgestill.compress.distill.losses.kd_loss`) against
    the teacher's logits, computed once over the training set before the first step; otherwise cross-entropy.
    Determinism: weights updates are seeded by ``config.seed`` (torch) and batch order by a numpy generator;
    the number of torch threads is left to the caller.

    Args:
        model: a torch classifier taking ``data.input_shape`` images and returning ``data.num_classes`` logits.
        data: the splits from :func:`edgestill.data.load_dataset`.
        config: optimiser, schedule and KD settings.
        teacher: an optional trained torch model used only in eval mode.
        progress: called after every step as ``progress(epoch, step, total_steps, loss, acc)``, with 1-based
            ``epoch``, ``step`` counted over the whole run, and the running loss and accuracy of the epoch.

    Returns:
        A :class:`TrainResult` whose model holds the best-validation weights.

    Raises:
        InputError: the training split is empty.
    """
    import torch

    from edgestill.compress.distill.losses import kd_loss
    from edgestill.errors import InputError

    n = len(data.train)
    if n == 0:
        raise InputError(f"dataset {data.name!r} has an empty training split; nothing to train on.")
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    x_all = torch.from_numpy(data.train.x)
    y_all = torch.from_numpy(data.train.y)

    teacher_logits, teacher_s = None, 0.0
    if teacher is not None:
        t0 = time.perf_counter()
        teacher_logits = predict_logits(teacher, data.train.x)
        teacher_s = time.perf_counter() - t0

    params_decay = [p for p in model.parameters() if p.ndim > 1]
    params_no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": params_decay, "weight_decay": config.weight_decay},
              {"params": params_no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)
    else:
        optimizer = torch.optim.AdamW(groups, lr=config.lr)

    batch = min(config.batch_size, n)
    steps_per_epoch = n // batch  # drop the ragged last batch: BatchNorm misbehaves on tiny batches
    total_steps = steps_per_epoch * config.epochs
    history: list[EpochRecord] = []
    best_acc, best_epoch, best_state = -1.0, 0, None
    step = 0
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        order = torch.from_numpy(rng.permutation(n))
        loss_sum, correct, seen = 0.0, 0, 0
        for i in range(steps_per_epoch):
            idx = order[i * batch:(i + 1) * batch]
            lr = _lr_at(config, step, total_steps, steps_per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            xb, yb = x_all[idx], y_all[idx]
            logits = model(xb)
            loss = kd_loss(logits, None if teacher_logits is None else teacher_logits[idx], yb,
                           temperature=config.temperature, alpha=config.alpha, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
            if progress is not None:
                progress(epoch, step, total_steps, loss_sum / seen, correct / seen)
        val_acc = evaluate(model, data.val)
        history.append(EpochRecord(epoch=epoch, train_loss=loss_sum / max(seen, 1), train_accuracy=correct / max(seen, 1),
                                   val_accuracy=val_acc, lr=lr, wall_s=time.perf_counter() - epoch_start))
        if val_acc > best_acc:
            best_acc, best_epoch, best_state = val_acc, epoch, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model=model, best_val_accuracy=best_acc, best_epoch=best_epoch,
                       final_val_accuracy=history[-1].val_accuracy, history=history,
                       wall_s=time.perf_counter() - started, teacher_logits_s=teacher_s, distilled=teacher is not None)
