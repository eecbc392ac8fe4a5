"""Trainer, TrainConfig validation, teacher cache and presets, on the quick dataset with tiny models."""

import dataclasses

import numpy as np
import pytest
import torch

from edgestill.compress.distill.presets import DEMO, QUICK, DemoSettings
from edgestill.compress.distill.teacher_cache import train_or_load_teacher
from edgestill.compress.distill.trainer import TrainConfig, evaluate, train
from edgestill.data import load_dataset
from edgestill.errors import ConfigError
from edgestill.models import create_model


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(2)
    return load_dataset("digits", seed=0, size="quick")


def _student(data, seed=0):
    return create_model("mobilenetv2-student", num_classes=data.num_classes, in_channels=data.input_shape[0], seed=seed,
                        width_mult=0.25, last_channels=32, blocks=[[1, 8, 1, 1], [4, 16, 1, 2]])


def _teacher(data, seed=0):
    return create_model("resnet-teacher", num_classes=data.num_classes, in_channels=data.input_shape[0], seed=seed,
                        width=8, blocks=[1, 1])


CFG = TrainConfig(epochs=1, batch_size=32, lr=0.05)
LEARN = TrainConfig(epochs=5, batch_size=32, lr=0.01, optimizer="adamw", weight_decay=0.01)


@pytest.fixture(scope="module")
def trained(data):
    """One short training run shared by the tests below: (result, progress calls)."""
    calls = []
    result = train(_teacher(data), data, LEARN, progress=lambda *a: calls.append(a))
    return result, calls


@pytest.mark.parametrize("kwargs", [
    {"epochs": 0}, {"batch_size": -1}, {"lr": 0}, {"lr": float("nan")}, {"optimizer": "adam"},
    {"schedule": "step"}, {"alpha": 1.2}, {"temperature": 0}, {"label_smoothing": 1.0}, {"seed": -2},
    {"epochs": 2, "warmup_epochs": 2}, {"epochs": True},
])
def test_bad_config_raises_config_error_naming_the_key(kwargs):
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        TrainConfig(**kwargs)


def test_config_is_frozen_and_keyword_only():
    with pytest.raises(dataclasses.FrozenInstanceError):
        CFG.epochs = 3
    with pytest.raises(TypeError):
        TrainConfig(3)


def test_training_learns_and_reports_history(data, trained):
    result, calls = trained
    assert len(result.history) == 5 and 1 <= result.best_epoch <= 5
    assert result.best_val_accuracy == max(h.val_accuracy for h in result.history)
    assert result.final_val_accuracy == result.history[-1].val_accuracy
    assert result.best_val_accuracy > 0.4  # 10 classes: chance is 0.1
    assert evaluate(result.model, data.val) == pytest.approx(result.best_val_accuracy)  # best weights loaded
    assert not result.model.training
    steps = len(data.train) // 32
    assert len(calls) == 5 * steps
    assert calls[-1][:3] == (5, 5 * steps, 5 * steps)
    assert all(0.0 <= c[4] <= 1.0 and c[3] > 0 for c in calls)
    assert all(h.wall_s > 0 for h in result.history)
    assert result.history[-1].train_loss < result.history[0].train_loss


def test_same_seed_same_weights(data):
    a = train(_student(data), data, CFG)
    b = train(_student(data), data, CFG)
    for pa, pb in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(pa, pb)
    c = train(_student(data), data, dataclasses.replace(CFG, seed=1))
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.model.state_dict().values(), c.model.state_dict().values()))


def test_distillation_uses_teacher_logits(data, trained):
    teacher = trained[0].model
    kd = train(_student(data), data, dataclasses.replace(CFG, alpha=1.0), teacher=teacher)
    ce = train(_student(data), data, dataclasses.replace(CFG, alpha=1.0))
    assert kd.distilled and not ce.distilled
    # with alpha=1 the student only sees the teacher, so the weights must differ from a CE-only run
    assert any(not torch.equal(a, b) for a, b in zip(kd.model.state_dict().values(), ce.model.state_dict().values()))
    assert kd.history[0].train_loss != pytest.approx(ce.history[0].train_loss)


def test_adamw_without_schedule_keeps_lr_constant(data):
    result = train(_student(data), data, dataclasses.replace(CFG, epochs=2, optimizer="adamw", lr=3e-3,
                                                             schedule="none", label_smoothing=0.1))
    assert {h.lr for h in result.history} == {3e-3}
    assert np.isfinite(result.history[-1].train_loss)


def test_teacher_cache_miss_then_hit(data, tmp_path):
    cfg = CFG
    kwargs = {"width": 8, "blocks": [1, 1]}
    model, info = train_or_load_teacher("resnet-teacher", kwargs, data, cfg, tmp_path)
    assert info["cache"] == "miss" and 0 <= info["test_accuracy"] <= 1
    again, info2 = train_or_load_teacher("resnet-teacher", kwargs, data, cfg, tmp_path)
    assert info2["cache"] == "hit" and info2["key"] == info["key"]
    x = torch.from_numpy(data.test.x[:8])
    with torch.no_grad():
        torch.testing.assert_close(model(x), again(x))
    _, info3 = train_or_load_teacher("resnet-teacher", kwargs, data, dataclasses.replace(cfg, seed=1), tmp_path)
    assert info3["cache"] == "miss" and info3["key"] != info["key"]


def test_presets_are_consistent():
    for preset in (DEMO, QUICK):
        data_name = preset.dataset
        assert preset.teacher_train.epochs >= 1 and preset.student_train_kd.epochs >= 1
        create_model(preset.teacher_model, num_classes=10, **preset.teacher_kwargs)
        create_model(preset.student_model, num_classes=10, **preset.student_kwargs)
        assert data_name == "synthetic-shapes"
    with pytest.raises(ConfigError):
        dataclasses.replace(QUICK, dataset_size="tiny")


@pytest.mark.slow
def test_quick_preset_runs_end_to_end():
    data = load_dataset(QUICK.dataset, size=QUICK.dataset_size)
    build = lambda name, kw: create_model(name, num_classes=data.num_classes, seed=0, **kw)  # noqa: E731
    teacher = train(build(QUICK.teacher_model, QUICK.teacher_kwargs), data, QUICK.teacher_train)
    kd = train(build(QUICK.student_model, QUICK.student_kwargs), data, QUICK.student_train_kd, teacher=teacher.model)
    base = train(build(QUICK.student_model, QUICK.student_kwargs), data, QUICK.student_train_baseline)
    assert sum(r.wall_s for r in (teacher, kd, base)) < 60
    assert all(np.isfinite(h.train_loss) for r in (teacher, kd, base) for h in r.history)
