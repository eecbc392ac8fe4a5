"""The label-free budget: data with inputs only reaches a verdict (top-1 agreement with the fp32 file and KL), with
the calibration/eval split stated.

Bad inputs tried: an .npz with no y at all; labels that are not integers (float y: ignored with a warning, never a
crash); integer labels of the wrong length (exit 2 message); --eval-fraction 1.5 and 0 (exit 2, nothing written);
--eval-fraction with a built-in dataset, which keeps its own split (exit 2).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgestill.compress.quantize.data import load_quant_data
from edgestill.errors import InputError
from tests.quantize.test_quantize_cli import edgestill


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, digits) -> Path:
    import torch
    from safetensors.torch import save_file

    from tests.quantize.models import add_outliers, train_digits_cnn

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("lf") / "digits_cnn.safetensors"
    # outlier channels: naive all-int8 loses about 10 points of agreement, so --repair has something to repair
    save_file(add_outliers(train_digits_cnn(digits, epochs=3), factor=100.0).state_dict(), str(path))
    return path


def _args(out: Path, data: Path, *extra: str) -> list[str]:
    return ["quantize", "--model", "tests.quantize.models:digits_cnn", "--input-shape", "1x1x8x8", "--data", str(data),
            "--format", "onnx", "--no-bench", "--out", str(out), *extra]


def test_unlabelled_data_reaches_a_verdict_through_the_cli(tmp_path: Path, checkpoint: Path, digits) -> None:
    """No labels: the verdict is agreement with fp32 (+ KL); --repair fine-tunes toward the fp32 model's own outputs."""
    data = tmp_path / "xonly.npz"
    np.savez(data, x=digits.test.x)  # inputs only: no labels anywhere
    out = tmp_path / "out"
    r = edgestill(*_args(out, data, "--checkpoint", str(checkpoint), "--eval-fraction", "0.25", "--max-float-layers", "0",
                         "--max-accuracy-drop", "1", "--repair", "--repair-epochs", "1", "--json"))
    assert r.returncode in (0, 1), r.stderr
    doc = json.loads(r.stdout)
    (f,) = doc["formats"]
    assert doc["metric"] == f["metric"] == "top1_agreement_with_fp32" and f["fp32_accuracy"] == 1.0
    assert 0.5 < f["top1_agreement"] <= 1.0 and 0.0 <= f["kl"] < 1.0
    assert f["final"]["accuracy"] == f["top1_agreement"] and f["naive"]["accuracy"] == f["naive"]["top1_agreement"]
    assert f["budget_met"] == (f["final"]["drop_points"] <= 1.0) and r.returncode == (0 if f["passed"] else 1)
    assert f["naive"]["drop_points"] > 1.0 and f["repair"]["oracle"] == "fp32 model"  # naive missed: repair ran, label-free
    assert [a["label"] for a in f["attempts"]] == ["naive", "kd-repair"] and f["attempts"][1]["kl"] is not None
    n = len(digits.test.x)
    split = doc["data"]
    assert split["labelled"] is False and doc["eval"] == {"n": split["eval_samples"], "labelled": False}
    assert split["eval_samples"] == round(0.25 * n) and split["calibration_samples"] == n - round(0.25 * n)
    assert doc["calibration"]["n"] == split["calibration_samples"] and str(split["eval_samples"]) in split["eval_on"]
    assert any("fewer than 100" in w for w in doc["warnings"])  # 87 eval samples: agreement moves in 1.15-point steps
    assert "| top-1 agreement | KL (nats) |" in (out / "quantize-report.md").read_text()


@pytest.mark.parametrize("fraction", ["1.5", "0"])
def test_an_eval_fraction_outside_0_1_exits_2_and_writes_nothing(tmp_path: Path, fraction: str, digits) -> None:
    data = tmp_path / "xonly.npz"
    np.savez(data, x=digits.test.x[:20])
    out = tmp_path / "out"
    r = edgestill(*_args(out, data, "--eval-fraction", fraction))
    assert r.returncode == 2, r.stderr
    assert "--eval-fraction must be a fraction > 0" in r.stderr and fraction in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_labels_that_are_not_integers_are_ignored_with_a_warning(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(40, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "f.npz", x=x, y=np.linspace(0, 1, 40))
    q = load_quant_data(str(tmp_path / "f.npz"), eval_fraction=0.3)
    assert q.eval_y is None and q.train_y is None and not q.labelled
    assert "not integer class ids, so it is ignored" in q.warnings[0]
    assert (len(q.eval_x), len(q.calibration), q.source["eval_samples"], q.source["calibration_samples"]) == (12, 28, 12, 28)
    np.savez(tmp_path / "i.npz", x=x, y=np.arange(39))
    with pytest.raises(InputError, match="y has shape \\[39\\] for 40 samples"):
        load_quant_data(str(tmp_path / "i.npz"))
    np.savez(tmp_path / "l.npz", x=x, y=np.arange(40) % 4)  # integer labels: stratified split, labels kept
    q = load_quant_data(str(tmp_path / "l.npz"))
    assert q.labelled and len(q.eval_y) == 20 and sorted(np.unique(q.eval_y)) == [0, 1, 2, 3]
    with pytest.raises(InputError, match="keeps its own train/test split"):
        load_quant_data("digits", eval_fraction=0.5)
    np.savez(tmp_path / "c.npz", x=x[:10])  # a calibration file: unlabelled repair trains on it and the non-eval data
    q = load_quant_data(str(tmp_path / "f.npz"), calibration_file=tmp_path / "c.npz", eval_fraction=1.0)
    assert (len(q.eval_x), len(q.calibration), len(q.repair_data()[0])) == (40, 10, 10)
    assert q.source["calibration_samples"] == 10 and str(tmp_path / "c.npz") in q.source["calibration_from"]
