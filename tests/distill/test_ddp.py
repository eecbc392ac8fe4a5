"""Data-parallel training through torchrun: 2 CPU processes on gloo finish and match one process within noise."""

import json

import pytest
from safetensors.torch import save_file

from edgestill.compress.distill.ddp import DDPJob, launch_ddp, load_splits, run_job, save_splits
from edgestill.errors import ConfigError
from tests.distill.conftest import TEACHER_KWARGS


def test_splits_round_trip_through_npz(digits, tmp_path):
    back = load_splits(save_splits(digits, tmp_path / "d.npz"))
    assert back.sha256 == digits.sha256 and back.input_shape == digits.input_shape
    assert (back.train.x == digits.train.x).all() and (back.test.ids == digits.test.ids).all()


def test_job_with_unknown_key_or_two_data_sources_is_config_error():
    with pytest.raises(ConfigError, match=r"unknown key 'studnet'. Did you mean 'student'"):
        DDPJob.from_dict({"out": "x", "studnet": "a", "student": "b", "dataset": "digits"})
    with pytest.raises(ConfigError, match="exactly one of 'dataset'"):
        DDPJob(out="x", student="a", dataset="digits", data_npz="d.npz")


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(digits, digits_teacher, tmp_path):
    save_file({k: v.contiguous() for k, v in digits_teacher.state_dict().items()}, str(tmp_path / "teacher.safetensors"))
    job = {"student": "resnet-teacher", "student_kwargs": {"width": 4, "blocks": [1, 1]},
           "train": {"epochs": 8, "batch_size": 16, "lr": 0.1, "optimizer": "sgd"},
           "terms": [{"name": "kd", "options": {"temperature": 4.0, "alpha": 0.5}}],
           "teacher": "resnet-teacher", "teacher_kwargs": TEACHER_KWARGS,
           "teacher_weights": str(tmp_path / "teacher.safetensors"),
           "data_npz": str(save_splits(digits, tmp_path / "digits.npz")), "cache_dir": str(tmp_path / "cache")}
    single = run_job(DDPJob(out=str(tmp_path / "one"), **job))
    two = launch_ddp(DDPJob(out=str(tmp_path / "two"), checkpoint_dir=str(tmp_path / "ckpt"), **job), 2, timeout_s=180)
    assert single["world_size"] == 1 and two["world_size"] == 2
    assert two["teacher_mode"] == "cached" and len(two["history"]) == 8
    assert (tmp_path / "two" / "student.safetensors").is_file() and (tmp_path / "ckpt" / "last.pt").is_file()
    assert single["test_accuracy"] > 0.6 and two["test_accuracy"] > 0.6
    # 200 test samples: one binomial standard error is about 3 points; allow 3 of them
    assert abs(single["test_accuracy"] - two["test_accuracy"]) <= 0.09, (single["test_accuracy"], two["test_accuracy"])
    assert json.loads((tmp_path / "two" / "result.json").read_text())["test_accuracy"] == two["test_accuracy"]
