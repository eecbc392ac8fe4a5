"""Trainer, TrainConfig validation and the teacher cache, on the quick dataset with tiny models."""

import dataclasses

import numpy as np
import pytest
import torch

from edgestill.compress.distill.teacher_cache import train_or_load_teacher
from edgestill.compress.distill.trainer import TrainConfig, evaluate, train
from edgestill.errors import ConfigError
from edgestill.models import create_model


@pytest.fixture(scope="module")
def data(digits):
    return digits


def _student(data, seed=0):
    return create_model("mobilenetv2-student", num_classes=data.num_classes, in_channels=data.input_shape[0], seed=seed,
                        width_mult=0.25, last_channels=32, blocks=[[1, 8, 1, 1], [4, 16, 1, 2]])


def _teacher(data, seed=0):
    return create_model("resnet-teacher", num_classes=data.num_classes, in_channels=data.input_shape[0], seed=seed,
                        width=8, blocks=[1, 1])


CFG = TrainConfig(epochs=1, batch_size=32, lr=0.05)
LEARN = TrainConfig(epochs=5, batch_size=32, lr=0.01, optimizer="adamw", weight_decay=0.01)


@pytest.fixture(scope="module")
def trained(digits_trained):
    """One short training run shared by the tests below: (result, progress calls)."""
    return digits_trained


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


# --- loss terms, teacher sources and bad input -------------------------------------------------------------
from edgestill.compress.distill.losses import LossTerm  # noqa: E402
from edgestill.compress.distill.trainer import predict_logits, seed_list, summarize_seeds, train_generations  # noqa: E402
from edgestill.errors import InputError  # noqa: E402
from tests.distill.conftest import make_teacher  # noqa: E402

FIT = LossTerm(name="fitnets", weight=0.5, options={"pairs": [["features.1", "features.1"]]})


def test_teacher_with_other_classes_is_input_error_naming_both_shapes(data, tmp_path):
    wrong = make_teacher(data, num_classes=7)
    with pytest.raises(InputError, match=r"teacher gives outputs of shape \[7\].*student \[10\]"):
        train(_student(data), data, CFG, teacher=wrong, cache_dir=tmp_path / "cache", checkpoint_dir=tmp_path / "ck")
    assert not (tmp_path / "ck").exists() and not (tmp_path / "cache").exists()  # checked before anything is written


@pytest.mark.parametrize("shape", [(10, 10), (400, 7), (400,)])
def test_teacher_logits_of_wrong_shape_are_input_error(data, shape):
    with pytest.raises(InputError, match=r"teacher_logits has shape|teacher gives outputs of shape"):
        train(_student(data), data, CFG, teacher_logits=np.zeros(shape, np.float32))


def test_unknown_layer_name_lists_available_and_closest_before_training(data, trained, tmp_path):
    bad = LossTerm(name="fitnets", options={"pairs": [["features.11", "features.1"]]})
    with pytest.raises(ConfigError, match=r"loss 'fitnets': the student has no module named 'features.11'\. "
                                          r"Did you mean 'features.1'\?.*Available student modules"):
        train(_student(data), data, CFG, teacher=trained[0].model, terms=[bad], checkpoint_dir=tmp_path)
    bad_t = LossTerm(name="at", options={"pairs": [["features.1", "feature.1"]]})
    with pytest.raises(ConfigError, match=r"the teacher has no module named 'feature.1'\. Did you mean 'features.1'"):
        train(_student(data), data, CFG, teacher=trained[0].model, terms=[bad_t])
    assert not list(tmp_path.iterdir())


def test_teacher_terms_without_teacher_and_features_from_blackbox_are_config_errors(data):
    with pytest.raises(ConfigError, match=r"kd need a teacher"):
        train(_student(data), data, CFG, terms=[LossTerm(name="kd")])
    with pytest.raises(ConfigError, match="black-box teacher has no layers"):
        train(_student(data), data, CFG, teacher_logits=np.zeros((len(data.train), 10), np.float32), terms=[FIT])


def test_precomputed_logits_train_like_the_cached_teacher(data, digits_teacher, tmp_path):
    logs = []
    cached = train(_student(data), data, CFG, teacher=digits_teacher, cache_dir=tmp_path, log=logs.append)
    logits = predict_logits(digits_teacher, data.train.x).numpy()
    pre = train(_student(data), data, CFG, teacher_logits=logits)
    assert cached.teacher_mode == "cached" and pre.teacher_mode == "precomputed"
    assert any("teacher: cached outputs (miss" in m for m in logs)
    assert pre.history[0].train_loss == pytest.approx(cached.history[0].train_loss, rel=1e-4)
    assert pre.best_val_accuracy == pytest.approx(cached.best_val_accuracy, abs=0.011)


class _Flip:
    """A random horizontal flip with the shape of edgestill.data.Augment."""

    name, active = "flip", True

    def apply(self, x, rng):
        flip = rng.random(len(x)) < 0.5
        out = x.copy()
        out[flip] = out[flip][..., ::-1]
        return out


def test_random_augmentation_runs_the_teacher_online_and_says_why(data, digits_teacher, tmp_path):
    logs = []
    result = train(_student(data), data, CFG, teacher=digits_teacher, augment=_Flip(), cache_dir=tmp_path,
                   log=logs.append)
    assert result.teacher_mode == "online" and result.cache is None
    assert any("online" in m and "'flip' is random" in m for m in logs)
    assert not list(tmp_path.iterdir())  # nothing cached
    with pytest.raises(ConfigError, match="cached' is wrong under the random augmentation 'flip'"):
        train(_student(data), data, CFG, teacher=digits_teacher, augment=_Flip(), teacher_mode="cached")


def test_every_loss_family_trains_with_finite_terms(data, digits_teacher, tmp_path):
    pairs = {"pairs": [["features.1", "features.1"]]}
    for terms in ([LossTerm(name="ce"), LossTerm(name="dkd")], [LossTerm(name="kd"), FIT],
                  [LossTerm(name="kd"), LossTerm(name="at", options=pairs)], [LossTerm(name="kd"), LossTerm(name="rkd")],
                  [LossTerm(name="kd"), LossTerm(name="sp", options=pairs)], [LossTerm(name="kd"), LossTerm(name="pkt")],
                  [LossTerm(name="tfkd")]):
        result = train(_student(data), data, CFG, teacher=digits_teacher, terms=terms, cache_dir=tmp_path)
        parts = result.history[0].loss_terms
        assert list(parts) == [f"{i}:{t.name}" for i, t in enumerate(terms)]
        assert all(np.isfinite(v) and v >= 0 for v in parts.values())
        assert result.teacher_mode == ("none" if terms[0].name == "tfkd" else "cached")


def test_early_stopping_reports_best_and_last(data):
    cfg = TrainConfig(epochs=6, batch_size=32, lr=1e-9, schedule="none", momentum=0.0, early_stopping_patience=2)
    logs = []
    result = train(_student(data), data, cfg, log=logs.append)
    assert result.stopped_early and len(result.history) == 3 and result.best_epoch == 1
    assert any("early stop after epoch 3" in m for m in logs)
    assert result.last_state is not None and set(result.last_state) == set(result.model.state_dict())
    with pytest.raises(ConfigError, match="early_stopping_patience"):
        TrainConfig(early_stopping_patience=0)


def test_seed_helpers():
    assert seed_list(3, 5) == [5, 6, 7]
    stats = summarize_seeds([0.5, 0.6, 0.7])
    assert stats.mean == pytest.approx(0.6) and stats.std == pytest.approx(0.1) and stats.n == 3
    assert summarize_seeds([0.4]).std == 0.0
    with pytest.raises(ConfigError):
        seed_list(0)


def test_born_again_generations_teach_each_other(data, tmp_path):
    results = train_generations(lambda: _student(data), data, CFG, generations=2, cache_dir=tmp_path)
    assert [r.teacher_mode for r in results] == ["none", "cached"]
    assert results[0].model is not results[1].model


# --- a loss that stops being finite --------------------------------------------------------------------------
class _NaNFrom:
    """Inputs pass through until the ``first_bad``-th batch (1-based, counted over the run), which gets a NaN pixel:
    training data that goes bad part-way, the way a corrupt sample or an overflowing augmentation does."""

    active = True

    def __init__(self, first_bad: int):
        self.first_bad, self.calls = first_bad, 0
        self.name = f"nan-from-batch-{first_bad}"

    def apply(self, x, rng):
        self.calls += 1
        if self.calls >= self.first_bad:
            x = x.copy()
            x[0, 0, 0, 0] = np.nan
        return x


def _finite_parameters(model):
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_non_finite_loss_stops_before_the_step_and_keeps_the_last_checkpoint(data, tmp_path):
    steps = len(data.train) // CFG.batch_size
    saved = {}

    def after_epoch(record):  # called after the epoch's checkpoint is written
        saved[record.epoch] = (tmp_path / "last.pt").read_bytes()

    model = _student(data)
    with pytest.raises(InputError) as err:
        train(model, data, dataclasses.replace(CFG, epochs=3), augment=_NaNFrom(steps + 4), checkpoint_dir=tmp_path,
              on_epoch_end=after_epoch)
    message = str(err.value)
    assert err.value.exit_code == 2
    assert f"training diverged at epoch 2 (batch 4 of {steps}, step {steps + 4} of {3 * steps})" in message
    assert "the loss is nan (terms: 0:ce=nan)" in message and "NaN or Inf" in message
    assert "lower the learning rate (lr=0.05)" in message
    assert f"{tmp_path / 'last.pt'} still holds epoch 1" in message
    # the epoch-1 checkpoint is the last one written and is untouched; the NaN step was never taken
    assert list(saved) == [1] and (tmp_path / "last.pt").read_bytes() == saved[1]
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and all(bool(torch.isfinite(v).all()) for v in ckpt["trainable"].values()
                                      if v.is_floating_point())
    assert _finite_parameters(model)


def test_non_finite_loss_on_the_first_step_says_no_checkpoint_was_written(data, tmp_path):
    model = _student(data)
    with pytest.raises(InputError, match=r"epoch 1 \(batch 1 of \d+, step 1 of \d+\).*No epoch had finished"):
        train(model, data, CFG, augment=_NaNFrom(1), checkpoint_dir=tmp_path / "ck")
    assert not (tmp_path / "ck" / "last.pt").exists() and _finite_parameters(model)
    with pytest.raises(InputError, match="No checkpoint folder was given"):
        train(_student(data), data, CFG, augment=_NaNFrom(1))
