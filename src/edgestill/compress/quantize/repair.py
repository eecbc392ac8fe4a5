"""KD repair: quantization-aware fine-tuning of the student with the distillation loss, the teacher as the oracle.

The student is traced with torch.export and prepared for QAT with PT2E (litert-torch's symmetric per-channel
int8 quantizer, ``is_qat=True``): weights and activations are fake-quantized in the forward pass, so training
with ``kd_loss(student, teacher, labels)`` moves the weights to values that survive int8. The fine-tuned weights
are copied back into a float copy of the student, which every format then quantizes with its own calibrated
post-training flow (the ranges are re-measured on the calibration data).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgestill.errors import ConfigError, InputError, RuntimeFailure

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, kw_only=True, eq=False)
class RepairConfig:
    """The teacher, the data to fine-tune on and the schedule."""

    teacher: Any  # torch.nn.Module
    train_x: np.ndarray
    train_y: np.ndarray
    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-3
    temperature: float = 4.0
    alpha: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"repair.{key} must be an integer >= 1, got {v!r}.")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ConfigError(f"repair.lr must be > 0, got {self.lr!r}.")
        if len(self.train_x) != len(self.train_y) or len(self.train_x) < self.batch_size:
            raise InputError(
                f"KD repair needs at least one batch ({self.batch_size}) of training samples with one label each; got "
                f"{len(self.train_x)} samples and {len(self.train_y)} labels."
            )


def teacher_repair_config(
    teacher_model: str, checkpoint: str | Path, *, student: torch.nn.Module, example_inputs: tuple,
    train_x: np.ndarray, train_y: np.ndarray, teacher_kwargs: Mapping[str, Any] | None = None, epochs: int = 3,
    trust_checkpoint: bool = False,
) -> RepairConfig:
    """Build the teacher (a built-in architecture sized to the student's input and classes), load its weights, and
    return the RepairConfig for KD repair.

    Args:
        teacher_model: the teacher's built-in architecture name (e.g. "resnet-teacher").
        checkpoint: the teacher's weights (.safetensors, or .pt/.pth loaded weights-only).
        student: the student (its output width sets the teacher's classes).
        example_inputs: the student's batch-1 example inputs (their channels set the teacher's input channels).
        train_x, train_y: the data to fine-tune on.
        teacher_kwargs: architecture options (e.g. {"width": 16}).
        epochs: QAT fine-tuning epochs.
        trust_checkpoint: allow a checkpoint holding pickled objects.

    Raises:
        InputError: teacher_kwargs not a mapping; UnknownNameError for an unknown architecture; a checkpoint that
            does not load into it (the message says why).
        ConfigError: a bad schedule (see RepairConfig).
    """
    import torch

    from edgestill.models import create_model
    from edgestill.models.loading import load_checkpoint

    if teacher_kwargs is not None and not isinstance(teacher_kwargs, Mapping):
        raise InputError(f"teacher options must be a mapping such as {{'width': 16}}, got {teacher_kwargs!r}.")
    in_channels = int(example_inputs[0].shape[1])
    with torch.no_grad():
        n_out = int(student.eval()(*example_inputs).shape[-1])
    teacher = create_model(teacher_model, num_classes=n_out, in_channels=in_channels, **dict(teacher_kwargs or {}))
    load_checkpoint(teacher, checkpoint, trust=trust_checkpoint)
    return RepairConfig(teacher=teacher.eval(), train_x=train_x, train_y=train_y, epochs=epochs)


def repair_with_teacher(
    student: torch.nn.Module, example_inputs: tuple, config: RepairConfig, *, calibration: np.ndarray | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Fine-tune ``student`` under int8 fake quantization with the KD loss; return a float copy with the new weights.

    Args:
        student: the float student (left unchanged).
        example_inputs: batch-1 example inputs (the traced batch size is the training batch size).
        config: teacher, training data and schedule.
        calibration: samples that initialise the fake-quant ranges before training (optional).

    Returns:
        (the repaired float model, a summary: epochs, seconds, final loss, weights copied).

    Raises:
        RuntimeFailure: the model could not be traced or prepared for QAT.
    """
    import torch
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    from edgestill.compress.distill.losses import kd_loss
    from edgestill.compress.quantize.tflite import pt2e_quantizer

    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    bs = config.batch_size
    x_all = torch.from_numpy(np.ascontiguousarray(config.train_x)).float()
    y_all = torch.from_numpy(np.asarray(config.train_y)).long()
    teacher = config.teacher.eval()
    work = copy.deepcopy(student).train()
    try:
        graph = torch.export.export(work, (x_all[:bs],)).module()
        prepared = prepare_qat_pt2e(graph, pt2e_quantizer(is_qat=True))
    except Exception as exc:  # torch.export / PT2E raise many types
        raise RuntimeFailure(f"KD repair could not prepare {type(student).__name__} for QAT: {exc}") from exc
    if calibration is not None and len(calibration) >= bs:  # start the fake-quant ranges from calibration data
        move_exported_model_to_eval(prepared)
        with torch.no_grad():
            for s in range(0, len(calibration) - bs + 1, bs):
                prepared(torch.from_numpy(np.ascontiguousarray(calibration[s : s + bs])))
    move_exported_model_to_train(prepared)
    opt = torch.optim.Adam([p for p in prepared.parameters() if p.requires_grad], lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    last = float("nan")
    for _ in range(config.epochs):
        perm = torch.randperm(len(x_all), generator=gen)
        for s in range(0, len(perm) - bs + 1, bs):  # the traced batch size is fixed: drop the last partial batch
            idx = perm[s : s + bs]
            xb, yb = x_all[idx], y_all[idx]
            with torch.no_grad():
                t_logits = teacher(xb)
            loss = kd_loss(prepared(xb), t_logits, yb, temperature=config.temperature, alpha=config.alpha)
            opt.zero_grad()
            loss.backward()
            opt.step()
            last = float(loss.detach())
    repaired = copy.deepcopy(student).eval()
    tuned = prepared.state_dict()
    target = repaired.state_dict()
    copied = [k for k in target if k in tuned and tuned[k].shape == target[k].shape]
    if len(copied) < len([k for k in target if not k.endswith("num_batches_tracked")]):
        missing = sorted(set(target) - set(copied))[:5]
        raise RuntimeFailure(f"KD repair could not map the QAT weights back to the model (missing e.g. {missing}).")
    repaired.load_state_dict({**target, **{k: tuned[k].detach().clone() for k in copied}})
    info = {"method": "PT2E QAT (litert-torch PT2EQuantizer, is_qat) + kd_loss, then per-format PTQ of the tuned weights",
            "epochs": config.epochs, "batch_size": bs, "lr": config.lr, "temperature": config.temperature, "alpha": config.alpha,
            "train_samples": int(len(x_all)), "final_loss": round(last, 5), "seconds": round(time.perf_counter() - t0, 2)}
    return repaired.eval(), info
