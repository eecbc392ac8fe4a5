"""Tuned settings for the built-in demo: teacher, KD student and no-KD baseline on the built-in data.

``DEMO`` is tuned so that on a 2-core CPU with ``torch.set_num_threads(2)`` the three trainings take about
250 s together (teacher 75 s, then cached), the teacher is clearly ahead of the baseline student, and the
student is big enough for int8 to beat fp32 on all three runtimes. The student (``width_mult`` 1.25,
4.7 M MACs at 3×32×32) costs 2.7× less compute than the teacher (12.5 M MACs) though it holds more parameters
(305k vs 78k, in depthwise-separable layers); at ``width_mult`` 0.5 (1.0 M MACs) per-op overhead made int8
slower than fp32 everywhere (``perf/int8_student_search.py``). ``QUICK`` runs the same chain in
seconds for tests; its accuracies mean nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgestill.compress.distill.trainer import TrainConfig
from edgestill.data.datasets import SIZES
from edgestill.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class DemoSettings:
    """Everything the demo's distillation stage needs: data, teacher, student and their training configs."""

    dataset: str
    dataset_size: str
    teacher_model: str
    teacher_kwargs: dict[str, Any] = field(default_factory=dict)
    teacher_train: TrainConfig
    student_model: str
    student_kwargs: dict[str, Any] = field(default_factory=dict)
    student_train_kd: TrainConfig
    student_train_baseline: TrainConfig
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dataset_size not in SIZES:
            raise ConfigError(f"demo settings: dataset_size={self.dataset_size!r} is not valid; "
                              f"use one of {', '.join(SIZES)}.")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"demo settings: seed must be a non-negative integer, got {self.seed!r}.")


DEMO = DemoSettings(
    dataset="synthetic-shapes",
    dataset_size="default",
    teacher_model="resnet-teacher",
    teacher_kwargs={"width": 16, "blocks": [1, 1, 1]},
    teacher_train=TrainConfig(epochs=11, batch_size=128, lr=0.1, weight_decay=5e-4, warmup_epochs=1),
    student_model="mobilenetv2-student",
    student_kwargs={"width_mult": 1.25, "last_channels": 128, "stem_stride": 2},
    student_train_kd=TrainConfig(epochs=8, batch_size=128, lr=0.1, weight_decay=5e-4, warmup_epochs=1,
                                 temperature=4.0, alpha=0.9),
    student_train_baseline=TrainConfig(epochs=8, batch_size=128, lr=0.1, weight_decay=5e-4, warmup_epochs=1),
)

QUICK = DemoSettings(
    dataset="synthetic-shapes",
    dataset_size="quick",
    teacher_model="resnet-teacher",
    teacher_kwargs={"width": 8, "blocks": [1, 1, 1]},
    teacher_train=TrainConfig(epochs=2, batch_size=64, lr=0.05),
    student_model="mobilenetv2-student",
    student_kwargs={"width_mult": 0.25, "last_channels": 64, "stem_stride": 2},
    student_train_kd=TrainConfig(epochs=2, batch_size=64, lr=0.05),
    student_train_baseline=TrainConfig(epochs=2, batch_size=64, lr=0.05),
)
