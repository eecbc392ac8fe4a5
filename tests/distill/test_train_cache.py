"""The trained-model cache (a built-in teacher, the no-KD baseline): a repeat is a hit with identical weights, and
anything that changes the result (config fields, seeds, data, architecture, torch version) is a miss."""

import dataclasses
import typing

import pytest
import torch

from edgestill.compress.distill.teacher_cache import train_cache_key, train_or_load, train_or_load_teacher
from edgestill.compress.distill.trainer import TrainConfig, predict_logits
from edgestill.errors import ConfigError, RuntimeFailure
from tests.distill.conftest import STUDENT_KWARGS, make_student

CFG = TrainConfig(epochs=1, batch_size=32, lr=0.05)


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_baseline_second_call_is_a_hit_with_identical_weights(digits, tmp_path):
    model, info = train_or_load("mobilenetv2-student", STUDENT_KWARGS, digits, CFG, cache_dir=tmp_path, role="baseline",
                                seed=0)
    assert info.cache == "miss" and info.role == "baseline" and info.path.is_file()
    assert info.path.name.startswith("baseline-") and info.load_s == 0.0
    assert len(info.history) == 1 and 0 <= info.test_accuracy <= 1
    assert not _same_weights(model, make_student(digits, seed=0))  # it trained

    steps = []
    again, hit = train_or_load("mobilenetv2-student", STUDENT_KWARGS, digits, CFG, cache_dir=tmp_path,
                               role="baseline", seed=0, progress=lambda *a: steps.append(a))
    assert not steps, "a hit must not train"
    assert hit.cache == "hit" and hit.key == info.key and hit.path == info.path and not again.training
    assert _same_weights(model, again)
    assert (hit.val_accuracy, hit.test_accuracy, hit.history) == (info.val_accuracy, info.test_accuracy, info.history)
    torch.testing.assert_close(predict_logits(again, digits.test.x), predict_logits(model, digits.test.x),
                               rtol=0, atol=0)

    for changed in ({"config": dataclasses.replace(CFG, epochs=2)}, {"seed": 1},
                    {"config": dataclasses.replace(CFG, seed=1)}):
        _, other = train_or_load("mobilenetv2-student", STUDENT_KWARGS, digits, changed.get("config", CFG),
                                 cache_dir=tmp_path, role="baseline", seed=changed.get("seed", 0))
        assert other.cache == "miss" and other.key != info.key, changed
    assert len(list(tmp_path.glob("baseline-*.safetensors"))) == 4


def test_a_damaged_entry_names_the_files_to_delete(digits, tmp_path):
    _, info = train_or_load("mobilenetv2-student", STUDENT_KWARGS, digits, CFG, cache_dir=tmp_path, role="baseline")
    info.path.write_bytes(b"not safetensors")
    with pytest.raises(RuntimeFailure, match=f"{info.path}.*Delete"):
        train_or_load("mobilenetv2-student", STUDENT_KWARGS, digits, CFG, cache_dir=tmp_path, role="baseline")


def _other_value(config: TrainConfig, f: dataclasses.Field):
    value = getattr(config, f.name)
    if typing.get_origin(f.type) is typing.Literal or "Literal" in str(f.type):
        choices = typing.get_args(typing.get_type_hints(TrainConfig)[f.name])
        return next(c for c in choices if c != value)
    if isinstance(value, bool):
        return not value
    if value is None:
        return 3
    if isinstance(value, int):
        return value + 1
    return value / 2 if value else 0.1


def test_the_key_covers_every_train_config_field_the_seeds_data_model_and_torch(digits, monkeypatch):
    cfg = dataclasses.replace(CFG, epochs=3)  # room for warmup_epochs + 1

    def key(config=cfg, *, role="baseline", seed=0, data=digits, kwargs=STUDENT_KWARGS, model="mobilenetv2-student"):
        return train_cache_key(model, kwargs, data, config, role=role, seed=seed)

    base = key()
    assert key() == base
    for f in dataclasses.fields(TrainConfig):
        changed = dataclasses.replace(cfg, **{f.name: _other_value(cfg, f)})
        assert key(changed) != base, f"changing {f.name} keeps the key"
    assert key(seed=1) != base and key(role="teacher") != base and key(model="resnet-teacher") != base
    assert key(kwargs={**STUDENT_KWARGS, "last_channels": 16}) != base
    assert key(data=dataclasses.replace(digits, sha256="0" * 64)) != base
    monkeypatch.setattr(torch, "__version__", "0.0.0-other")
    assert key() != base


def test_bad_role_and_seed_are_refused(digits, tmp_path):
    with pytest.raises(ConfigError, match="role='student' is not valid; use one of teacher, baseline"):
        train_or_load("mobilenetv2-student", STUDENT_KWARGS, digits, CFG, cache_dir=tmp_path, role="student")
    with pytest.raises(ConfigError, match="seed must be a non-negative integer"):
        train_or_load("mobilenetv2-student", STUDENT_KWARGS, digits, CFG, cache_dir=tmp_path, seed=-1)
    assert not list(tmp_path.iterdir())


def test_train_or_load_teacher_is_the_teacher_role_with_a_dict(digits, tmp_path):
    kwargs = {"width": 8, "blocks": [1, 1]}
    model, info = train_or_load_teacher("resnet-teacher", kwargs, digits, CFG, tmp_path)
    assert info["cache"] == "miss" and info["role"] == "teacher" and info["path"].endswith(".safetensors")
    again, info2 = train_or_load("resnet-teacher", kwargs, digits, CFG, cache_dir=tmp_path, role="teacher")
    assert info2.cache == "hit" and info2.key == info["key"] and _same_weights(model, again)
