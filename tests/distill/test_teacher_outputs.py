"""The offline teacher-output cache: computed once per (teacher, data, augmentation, layers), memory-mapped,
written atomically, and reused across runs and seeds."""

import dataclasses

import numpy as np
import pytest
import torch

from edgestill.compress.distill.losses import LossTerm
from edgestill.compress.distill.teacher_cache import cached_teacher_outputs, teacher_fingerprint
from edgestill.compress.distill.trainer import TrainConfig, predict_logits, train
from edgestill.errors import ConfigError
from tests.distill.conftest import make_student, make_teacher


def test_outputs_are_memory_mapped_and_match_the_teacher(digits, digits_teacher, tmp_path):
    out = cached_teacher_outputs(digits_teacher, digits, cache_dir=tmp_path, features=["features.1"])
    assert not out.hit and isinstance(out.logits, np.memmap) and isinstance(out.features["features.1"], np.memmap)
    assert out.logits.shape == (len(digits.train), 10) and out.logits.dtype == np.float32
    expected = predict_logits(digits_teacher, digits.train.x).numpy()
    np.testing.assert_allclose(out.logits, expected, rtol=1e-5, atol=1e-5)
    assert out.features["features.1"].shape[0] == len(digits.train) and out.features["features.1"].ndim == 4
    assert sorted(p.name for p in out.path.iterdir()) == ["feat-features.1.npy", "logits.npy", "meta.json"]
    assert [p.name for p in tmp_path.iterdir()] == [out.path.name]  # no temporary folder left behind
    again = cached_teacher_outputs(digits_teacher, digits, cache_dir=tmp_path, features=["features.1"])
    assert again.hit and again.key == out.key
    np.testing.assert_array_equal(again.logits, out.logits)


def test_key_changes_with_teacher_data_and_layers(digits, digits_teacher, tmp_path):
    base = cached_teacher_outputs(digits_teacher, digits, cache_dir=tmp_path)
    other_teacher = cached_teacher_outputs(make_teacher(digits, seed=3), digits, cache_dir=tmp_path)
    other_data = cached_teacher_outputs(digits_teacher, dataclasses.replace(digits, sha256="0" * 64), cache_dir=tmp_path)
    with_layer = cached_teacher_outputs(digits_teacher, digits, cache_dir=tmp_path, features=["features.0"])
    assert len({base.key, other_teacher.key, other_data.key, with_layer.key}) == 4
    assert not any(o.hit for o in (other_teacher, other_data, with_layer))
    assert teacher_fingerprint(digits_teacher) == teacher_fingerprint(digits_teacher)


def test_active_augmentation_cannot_be_cached(digits, digits_teacher, tmp_path):
    with pytest.raises(ConfigError, match="cannot be cached under the random augmentation 'flip'"):
        cached_teacher_outputs(digits_teacher, digits, cache_dir=tmp_path, augment_policy="flip")
    assert not list(tmp_path.iterdir())


def test_training_reuses_the_cache_across_runs_and_seeds(digits, digits_teacher, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=64, lr=0.01)
    terms = [LossTerm(name="kd"), LossTerm(name="at", options={"pairs": [["features.1", "features.1"]]})]
    first = train(make_student(digits), digits, cfg, teacher=digits_teacher, terms=terms, cache_dir=tmp_path)
    second = train(make_student(digits, seed=1), digits, dataclasses.replace(cfg, seed=1), teacher=digits_teacher,
                   terms=terms, cache_dir=tmp_path)
    assert (first.cache, second.cache) == ("miss", "hit")
    # cached and online teachers give the same losses (no augmentation: the teacher sees the same inputs)
    online = train(make_student(digits), digits, cfg, teacher=digits_teacher, terms=terms, teacher_mode="online")
    assert online.teacher_mode == "online"
    assert online.history[0].train_loss == pytest.approx(first.history[0].train_loss, rel=1e-4)
    assert torch.allclose(next(iter(online.model.state_dict().values())),
                          next(iter(first.model.state_dict().values())), atol=1e-4)
