"""The demo's settings for the perf scripts, read from the built-in recipe the demo runs (``edgestill recipes show
demo``), so a script measures the demo as it is, not a copy of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgestill.compress.distill.trainer import TrainConfig


@dataclass(frozen=True, kw_only=True)
class DemoSettings:
    """What the demo's distillation stage uses: data, teacher, student and their training configs."""

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


def demo_settings(quick: bool = False) -> DemoSettings:
    """The settings of the built-in recipe ``demo`` (or ``demo-quick``)."""
    from edgestill.chain.recipe import builtin_recipe

    r = builtin_recipe("demo-quick" if quick else "demo")
    kd = next(t for t in r.distill.losses if t.name == "kd").resolved()
    train = r.distill.train
    return DemoSettings(
        dataset=r.data.builtin, dataset_size=r.data.size, seed=r.data.seed,
        teacher_model=r.teacher.model, teacher_kwargs=dict(r.teacher.kwargs), teacher_train=r.teacher.train,
        student_model=r.student.model, student_kwargs=dict(r.student.kwargs),
        student_train_kd=TrainConfig(**{**train.__dict__, "temperature": kd["temperature"], "alpha": kd["alpha"]}),
        student_train_baseline=train,
    )


DEMO = demo_settings()
QUICK = demo_settings(quick=True)
