"""Accuracy of a real onnxruntime session on a tiny model whose correct answers are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.benchmarks.conftest import labelled_data, write_tiny_onnx

from edgestill.runtimes.accuracy import METRICS, evaluate_session
from edgestill.errors import InputError, UnknownNameError
from edgestill.runtimes import load


@pytest.mark.parametrize("batch", [1, "batch"])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_top1_counts_known_correct_samples(tmp_path: Path, batch: int | str, batch_size: int) -> None:
    session = load(write_tiny_onnx(tmp_path, batch=batch))
    x, y, correct = labelled_data(n=20)
    acc = evaluate_session(session, x, y, metric="top1", batch_size=batch_size)
    assert (acc.metric, acc.n) == ("top1", 20)
    assert acc.value == pytest.approx(correct.mean())  # 15 / 20


def test_top5_misses_only_labels_ranked_last(tmp_path: Path) -> None:
    session = load(write_tiny_onnx(tmp_path))
    x, y, _ = labelled_data(n=20)  # the last 5 labels are the argmin of 6 scores: outside the top 5
    acc = evaluate_session(session, x, y, metric="top5")
    assert acc.value == pytest.approx(15 / 20)


def test_metric_registry_and_errors(tmp_path: Path) -> None:
    assert {"top1", "top5"} <= set(METRICS.names())
    session = load(write_tiny_onnx(tmp_path))
    x, y, _ = labelled_data(n=4)
    with pytest.raises(UnknownNameError, match="top1"):
        evaluate_session(session, x, y, metric="top-1")
    with pytest.raises(InputError, match="same n"):
        evaluate_session(session, x, y[:3])
    with pytest.raises(InputError, match="integers"):
        evaluate_session(session, x, y.astype(np.float32))


def test_teacher_agreement_counts_top1_matches_and_kl_is_zero_only_for_equal_distributions() -> None:
    from edgestill.runtimes.accuracy import teacher_agreement

    teacher = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.5, 0.0]])
    same = teacher + 5.0  # a constant shift leaves the softmax unchanged
    assert teacher_agreement(same, teacher) == (1.0, pytest.approx(0.0, abs=1e-12))
    flipped = teacher.copy()
    flipped[3] = [0.0, 0.5, 1.0]  # one of four samples now picks another class
    agree, kl = teacher_agreement(flipped, teacher)
    assert agree == 0.75
    p = np.exp(teacher[3]) / np.exp(teacher[3]).sum()
    q = np.exp(flipped[3]) / np.exp(flipped[3]).sum()
    assert kl == pytest.approx((p * np.log(p / q)).sum() / 4)  # KL(teacher || artifact), mean over samples
    with pytest.raises(InputError, match="same classes"):
        teacher_agreement(teacher[:, :2], teacher)
