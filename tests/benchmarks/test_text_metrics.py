"""Text metrics on numpy arrays: embedding agreement with the teacher, and named multi-input sessions."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from edgestill.errors import InputError
from edgestill.runtimes.accuracy import embedding_agreement, session_outputs, top_k_neighbours


def test_embedding_agreement_is_one_for_the_teacher_itself_and_falls_for_a_noisy_copy() -> None:
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(40, 16)).astype(np.float32)
    same = embedding_agreement(teacher * 3.0, teacher)  # cosine ignores scale
    assert same.mean_cosine == pytest.approx(1.0) and same.retrieval_agreement == 1.0 and (same.k, same.n) == (5, 40)
    noisy = embedding_agreement(teacher + rng.normal(scale=1.0, size=teacher.shape), teacher)
    assert 0.5 < noisy.mean_cosine < 0.95 and noisy.retrieval_agreement < 0.9
    unrelated = embedding_agreement(rng.normal(size=teacher.shape), teacher)
    assert abs(unrelated.mean_cosine) < 0.2 and unrelated.retrieval_agreement < noisy.retrieval_agreement


def test_retrieval_agreement_counts_shared_neighbours_out_of_k() -> None:
    """Hand-made: two clusters; the artifact swaps which member of a cluster is nearest, k=1 and k=2."""
    teacher = np.array([[1, 0], [0.99, 0.1], [0.95, 0.3], [0, 1], [0.1, 0.99], [0.3, 0.95]], dtype=np.float64)
    assert top_k_neighbours(teacher, 1)[:, 0].tolist() == [1, 0, 1, 4, 3, 4]
    student = teacher[[0, 2, 1, 3, 5, 4]]  # rows 1,2 and 4,5 swapped: each text's vector is its neighbour's
    k1 = embedding_agreement(student, teacher, k=1)
    k2 = embedding_agreement(student, teacher, k=2)
    assert k1.k == 1 and k2.k == 2
    assert k2.retrieval_agreement == 1.0  # within each 3-text cluster the 2 others are the 2 nearest either way
    assert k1.retrieval_agreement < 1.0


def test_embedding_agreement_refuses_bad_inputs() -> None:
    """Bad inputs: shapes that differ, one text, NaN, k = 0; k past n - 1 is capped."""
    a = np.ones((4, 8))
    with pytest.raises(InputError, match="same dim"):
        embedding_agreement(a, np.ones((4, 9)))
    with pytest.raises(InputError, match="at least 2"):
        embedding_agreement(a[:1], a[:1])
    with pytest.raises(InputError, match="NaN"):
        embedding_agreement(np.full((4, 8), np.nan), a)
    with pytest.raises(InputError, match="k must be"):
        embedding_agreement(a, a, k=0)
    assert embedding_agreement(np.eye(4), np.eye(4), k=10).k == 3


class _FixedBatchTwoInputs:
    """A session over two named int inputs with batch fixed to 2; output = ids * mask summed over the sequence."""

    def __init__(self, batch: int | str = 2) -> None:
        spec = lambda name: SimpleNamespace(name=name, shape=(batch, 4), user_dtype="int64")  # noqa: E731
        self.input_specs = [spec("input_ids"), spec("attention_mask")]
        self.output_specs = [SimpleNamespace(name="out")]
        self.batches: list[int] = []

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.batches.append(len(feed["input_ids"]))
        assert feed["input_ids"].dtype == np.int64
        return {"out": (feed["input_ids"] * feed["attention_mask"]).sum(axis=1, keepdims=True).astype(np.float32)}


def test_session_outputs_feeds_named_arrays_in_fixed_batches_and_drops_the_padding() -> None:
    ids = np.arange(20, dtype=np.int32).reshape(5, 4)
    mask = np.array([[1, 1, 0, 0]] * 5, dtype=np.int64)
    s = _FixedBatchTwoInputs()
    out = session_outputs(s, {"input_ids": ids, "attention_mask": mask})
    assert out[:, 0].tolist() == [(r[0] + r[1]) for r in ids.tolist()] and s.batches == [2, 2, 2]
    dyn = _FixedBatchTwoInputs(batch="batch")
    assert session_outputs(dyn, {"input_ids": ids, "attention_mask": mask}, batch_size=4).shape == (5, 1)
    assert dyn.batches == [4, 1]


def test_session_outputs_refuses_arrays_that_do_not_match_the_inputs() -> None:
    """Bad inputs: a missing input array, an extra array, arrays of different lengths."""
    ids = np.zeros((3, 4), dtype=np.int64)
    with pytest.raises(InputError, match="missing attention_mask"):
        session_outputs(_FixedBatchTwoInputs(), {"input_ids": ids})
    with pytest.raises(InputError, match="not inputs of the model: x"):
        session_outputs(_FixedBatchTwoInputs(), {"input_ids": ids, "attention_mask": ids, "x": ids})
    with pytest.raises(InputError, match="same number"):
        session_outputs(_FixedBatchTwoInputs(), {"input_ids": ids, "attention_mask": ids[:2]})
