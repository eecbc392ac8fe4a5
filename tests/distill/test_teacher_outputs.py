"""The offline teacher-output caches: computed once per (teacher, data, augmentation, layers) or per (teacher,
array, labels), memory-mapped, written atomically, and reused across runs and seeds."""

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch

from edgestill.compress.distill.losses import LossTerm
from edgestill.compress.distill.teacher_outputs import (cached_teacher_outputs, teacher_fingerprint,
                                                        teacher_logits_for)
from edgestill.compress.distill.trainer import TrainConfig, predict_logits, train
from edgestill.errors import ConfigError, InputError
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


def test_fingerprint_follows_the_weights_not_the_object(digits, digits_teacher):
    same = make_teacher(digits, seed=5)  # other initial weights, then the trained ones loaded
    assert teacher_fingerprint(same) != teacher_fingerprint(digits_teacher)
    same.load_state_dict(digits_teacher.state_dict())
    assert teacher_fingerprint(same) == teacher_fingerprint(digits_teacher)
    one_weight = copy.deepcopy(digits_teacher)
    with torch.no_grad():
        next(one_weight.parameters()).view(-1)[0] += 1e-3
    one_buffer = copy.deepcopy(digits_teacher)
    next(b for b in one_buffer.buffers() if b.is_floating_point()).view(-1)[0] += 1e-3  # a BatchNorm running stat
    assert len({teacher_fingerprint(m) for m in (digits_teacher, one_weight, one_buffer)}) == 3


def test_logits_for_any_split_are_cached_and_equal_a_fresh_forward_pass(digits, digits_teacher, tmp_path):
    calls = []
    hook = digits_teacher.register_forward_hook(lambda *a: calls.append(1))
    try:
        test = {"data": digits.sha256, "split": "test"}
        first = teacher_logits_for(digits_teacher, digits.test.x, cache_dir=tmp_path, key_parts=test)
        assert not first.hit and calls and isinstance(first.logits, np.memmap) and first.features == {}
        assert first.logits.shape == (len(digits.test), digits.num_classes) and first.logits.dtype == np.float32
        calls.clear()
        again = teacher_logits_for(digits_teacher, digits.test.x, cache_dir=tmp_path, key_parts=test)
        assert again.hit and not calls and (again.key, again.path) == (first.key, first.path)
    finally:
        hook.remove()
    fresh = predict_logits(digits_teacher, digits.test.x).numpy()
    np.testing.assert_allclose(again.logits, fresh, rtol=1e-5, atol=1e-5)
    assert json.loads((first.path / "meta.json").read_text())["key_parts"] == test
    assert [p.name for p in tmp_path.iterdir()] == [first.path.name]  # no temporary folder left behind

    val = teacher_logits_for(digits_teacher, digits.val.x, cache_dir=tmp_path, key_parts={**test, "split": "val"})
    assert not val.hit and val.key != first.key
    np.testing.assert_allclose(val.logits, predict_logits(digits_teacher, digits.val.x).numpy(), rtol=1e-5, atol=1e-5)
    edited = digits.test.x.copy()
    edited[0, 0, 0, 0] += 1.0  # same labels, other content: the array's own hash keeps them apart
    assert not teacher_logits_for(digits_teacher, edited, cache_dir=tmp_path, key_parts=test).hit
    assert not teacher_logits_for(make_teacher(digits, seed=3), digits.test.x, cache_dir=tmp_path, key_parts=test).hit
    with pytest.raises(InputError, match="non-empty float32 batch"):
        teacher_logits_for(digits_teacher, digits.test.x.astype(np.float64), cache_dir=tmp_path)


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
