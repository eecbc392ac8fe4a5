"""A checkpoint every epoch, and resume: an interrupted run continues from its last checkpoint and ends with
exactly the weights and metrics of an uninterrupted run with the same seed (CPU, same thread count)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from edgestill.compress.distill.losses import LossTerm
from edgestill.compress.distill.trainer import TrainConfig, train
from edgestill.data import load_dataset
from edgestill.errors import ConfigError
from tests.distill.conftest import make_student

CFG = TrainConfig(epochs=3, batch_size=64, lr=0.01, optimizer="adamw", warmup_epochs=1)
TERMS = [LossTerm(name="kd", options={"temperature": 4.0, "alpha": 0.7}),
         LossTerm(name="fitnets", weight=0.5, options={"pairs": [["features.1", "features.1"]]})]


class _Stop(Exception):
    pass


def _same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.values(), b.values(), strict=True))


def test_interrupted_run_resumes_and_matches_uninterrupted(digits, digits_teacher, tmp_path):
    kw = {"teacher": digits_teacher, "terms": TERMS, "cache_dir": tmp_path / "cache"}
    full = train(make_student(digits), digits, CFG, checkpoint_dir=tmp_path / "full", **kw)

    def stop_after_epoch_2(record):
        if record.epoch == 2:
            raise _Stop

    with pytest.raises(_Stop):
        train(make_student(digits), digits, CFG, checkpoint_dir=tmp_path / "cut", on_epoch_end=stop_after_epoch_2, **kw)
    logs = []
    resumed = train(make_student(digits), digits, CFG, checkpoint_dir=tmp_path / "cut", log=logs.append, **kw)
    assert resumed.resumed_from_epoch == 2 and full.resumed_from_epoch == 0
    assert any("resuming from the epoch 2 checkpoint" in m for m in logs)
    assert [h.val_accuracy for h in resumed.history] == [h.val_accuracy for h in full.history]
    assert [h.train_loss for h in resumed.history] == [h.train_loss for h in full.history]
    assert _same_weights(resumed.model.state_dict(), full.model.state_dict())
    assert _same_weights(resumed.last_state, full.last_state)

    # a finished run reruns as a no-op with the same result
    again = train(make_student(digits), digits, CFG, checkpoint_dir=tmp_path / "full", **kw)
    assert again.resumed_from_epoch == 3 and len(again.history) == 3
    assert _same_weights(again.model.state_dict(), full.model.state_dict())


def test_checkpoint_of_another_config_is_a_config_error(digits, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=64, lr=0.01)
    train(make_student(digits), digits, cfg, checkpoint_dir=tmp_path)
    with pytest.raises(ConfigError, match="belongs to a different run"):
        train(make_student(digits), digits, TrainConfig(epochs=1, batch_size=64, lr=0.02), checkpoint_dir=tmp_path)
    fresh = train(make_student(digits), digits, TrainConfig(epochs=1, batch_size=64, lr=0.02), checkpoint_dir=tmp_path,
                  resume=False)
    assert fresh.resumed_from_epoch == 0


_SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    import torch
    torch.set_num_threads(1)
    from edgestill.compress.distill.trainer import TrainConfig, train
    from edgestill.data import load_dataset
    from edgestill.models import create_model
    ckpt, kill_epoch = sys.argv[1], int(sys.argv[2])
    data = load_dataset("digits", seed=0, size="quick")
    student = create_model("mobilenetv2-student", num_classes=10, in_channels=1, seed=0, width_mult=0.25,
                           last_channels=32, blocks=[[1, 8, 1, 1], [4, 16, 1, 2]])
    cfg = TrainConfig(epochs=3, batch_size=64, lr=0.01, optimizer="adamw", label_smoothing=0.1)
    def progress(epoch, step, total, loss, acc):
        if epoch == kill_epoch and step == (epoch - 1) * (total // 3) + 3:
            os.kill(os.getpid(), signal.SIGKILL)   # in the middle of epoch kill_epoch
    r = train(student, data, cfg, checkpoint_dir=ckpt, progress=progress)
    print(json.dumps({"resumed": r.resumed_from_epoch, "val": [h.val_accuracy for h in r.history],
                      "loss": [h.train_loss for h in r.history],
                      "sum": float(sum(p.double().sum() for p in r.model.state_dict().values()))}))
""")


@pytest.mark.slow
def test_killed_process_reruns_from_its_checkpoint_to_the_same_end(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(ckpt, kill_epoch):
        return subprocess.run([sys.executable, str(script), str(tmp_path / ckpt), str(kill_epoch)], capture_output=True,
                              text=True, env=env, timeout=240)

    killed = run("cut", 2)
    assert killed.returncode == -9  # SIGKILL in the middle of epoch 2: epoch 1 is checkpointed
    assert (tmp_path / "cut" / "last.pt").is_file() and not list((tmp_path / "cut").glob("*.tmp"))
    resumed = run("cut", 0)
    assert resumed.returncode == 0, resumed.stderr
    r = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert r["resumed"] == 1

    # the same job uninterrupted, in this process with the same thread count
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = load_dataset("digits", seed=0, size="quick")
        full = train(make_student(data), data, TrainConfig(epochs=3, batch_size=64, lr=0.01, optimizer="adamw",
                                                           label_smoothing=0.1))
    finally:
        torch.set_num_threads(threads)
    assert r["val"] == [h.val_accuracy for h in full.history] and r["loss"] == [h.train_loss for h in full.history]
    assert r["sum"] == float(sum(p.double().sum() for p in full.model.state_dict().values()))
