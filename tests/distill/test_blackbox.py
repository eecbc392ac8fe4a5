"""Black-box teachers: predictions files keyed by sample id, and exported models run on their runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgestill.compress.distill.blackbox import (
    HARD_LABEL_EPS,
    read_predictions,
    teacher_logits_from_artifact,
    teacher_logits_from_predictions,
)
from edgestill.data import DataConfig, load_data
from edgestill.errors import InputError


@pytest.fixture()
def data(tmp_path: Path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3, 8, 8)).astype(np.float32)
    y = np.arange(30) % 3
    ids = np.array([f"img{i:02d}" for i in range(30)])
    np.savez(tmp_path / "d.npz", x=x, y=y, ids=ids)
    return load_data(DataConfig(npz=tmp_path / "d.npz"))


def _all_ids(data) -> np.ndarray:
    return np.concatenate([s.ids for s in (data.train, data.val, data.test)])


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_probabilities_become_log_probs_aligned_with_the_split_order(data, tmp_path: Path) -> None:
    ids = _all_ids(data)
    probs = _softmax(np.random.default_rng(1).normal(size=(len(ids), 3)))
    order = np.random.default_rng(2).permutation(len(ids))  # the file's rows in another order than the data
    np.savez(tmp_path / "p.npz", ids=ids[order], probabilities=probs[order])
    logits = teacher_logits_from_predictions(tmp_path / "p.npz", data)
    assert logits.shape == (len(data.train), 3) and logits.dtype == np.float32
    by_id = dict(zip(ids.tolist(), probs))
    expected = np.stack([by_id[i] for i in data.train.ids.tolist()])
    np.testing.assert_allclose(_softmax(logits.astype(np.float64)), expected, atol=1e-5)


def test_hard_labels_become_near_one_hot_targets(data, tmp_path: Path) -> None:
    ids = _all_ids(data)
    answers = (np.arange(len(ids)) * 7) % 3
    rows = ["id,label"] + [f"{i},{a}" for i, a in zip(ids, answers)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    logits = teacher_logits_from_predictions(tmp_path / "labels.csv", data)
    p = _softmax(logits.astype(np.float64))
    want = dict(zip(ids.tolist(), answers.tolist()))
    assert (logits.argmax(1) == [want[i] for i in data.train.ids.tolist()]).all()
    np.testing.assert_allclose(p.max(1), 1 - HARD_LABEL_EPS, rtol=1e-4)


def test_csv_logits_are_used_as_given(data, tmp_path: Path) -> None:
    ids = _all_ids(data)
    z = np.random.default_rng(3).normal(size=(len(ids), 3)) * 3
    rows = ["id,c0,c1,c2"] + [f"{i},{a},{b},{c}" for i, (a, b, c) in zip(ids, z)]
    (tmp_path / "z.csv").write_text("\n".join(rows))
    _, _, kind = read_predictions(tmp_path / "z.csv")
    assert kind == "logits"
    logits = teacher_logits_from_predictions(tmp_path / "z.csv", data, split_name="val")
    by_id = dict(zip(ids.tolist(), z))
    np.testing.assert_allclose(logits, np.stack([by_id[i] for i in data.val.ids.tolist()]), rtol=1e-5)


def test_missing_ids_are_an_error_that_says_how_many_and_which(data, tmp_path: Path) -> None:
    ids = _all_ids(data)
    keep = [i for i in ids.tolist() if i not in set(data.train.ids[:2].tolist())]
    np.savez(tmp_path / "p.npz", ids=np.array(keep), logits=np.zeros((len(keep), 3)))
    with pytest.raises(InputError) as exc:
        teacher_logits_from_predictions(tmp_path / "p.npz", data)
    msg = str(exc.value)
    assert f"2 of {len(data.train)} sample ids of the train split have no teacher prediction" in msg
    assert repr(str(data.train.ids[0])) in msg and repr(str(data.train.ids[1])) in msg


def test_ids_matching_no_sample_are_an_error_that_says_how_many_and_which(data, tmp_path: Path) -> None:
    ids = np.concatenate([_all_ids(data), ["ghost1", "ghost2", "ghost3"]])
    np.savez(tmp_path / "p.npz", ids=ids, logits=np.zeros((len(ids), 3)))
    with pytest.raises(InputError, match=r"3 of 33 sample ids match no sample of the data: 'ghost1', 'ghost2', 'ghost3'"):
        teacher_logits_from_predictions(tmp_path / "p.npz", data)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"logits": np.zeros((30, 5))}, "have 5 classes per sample (shape [30, 5]) but the data and the student have 3"),
        ({"labels": np.full(30, 4)}, "outside the class range [0, 3)"),
        ({"scores": np.zeros((30, 3))}, "needs 'ids' plus exactly one of"),
        ({"probabilities": np.full((30, 3), 0.5)}, "not non-negative and summing to 1"),
    ],
    ids=["class-count", "label-range", "keys", "not-probs"],
)
def test_bad_predictions_are_input_errors(data, tmp_path: Path, arrays, message: str) -> None:
    np.savez(tmp_path / "p.npz", ids=_all_ids(data), **arrays)
    with pytest.raises(InputError) as exc:
        teacher_logits_from_predictions(tmp_path / "p.npz", data)
    assert message in str(exc.value)


def test_duplicate_ids_in_predictions_are_refused(data, tmp_path: Path) -> None:
    ids = _all_ids(data)
    ids[1] = ids[0]
    np.savez(tmp_path / "p.npz", ids=ids, logits=np.zeros((len(ids), 3)))
    with pytest.raises(InputError, match="1 sample id\\(s\\) appear more than once: 'img00'"):
        teacher_logits_from_predictions(tmp_path / "p.npz", data)


@pytest.mark.slow
def test_exported_onnx_teacher_runs_on_its_runtime_with_or_without_a_manifest(tmp_path: Path) -> None:
    import shutil

    import torch

    from edgestill.export import ExportConfig, export
    from tests.conftest import build_tiny_cnn

    torch.set_num_threads(1)
    teacher = build_tiny_cnn(seed=3)  # 10 classes, 3×32×32 inputs
    x = np.random.default_rng(0).normal(size=(40, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(40) % 10)
    data = load_data(DataConfig(npz=tmp_path / "d.npz"))
    [res] = export(teacher, (torch.from_numpy(x[:1]),), ExportConfig(formats=("onnx",), name="teacher"),
                   tmp_path / "art", validation_inputs=x[:8])
    with torch.no_grad():
        expected = teacher(torch.from_numpy(data.train.x)).numpy()
    got = teacher_logits_from_artifact(res.artifact.manifest_path, data.train, num_classes=10)
    np.testing.assert_allclose(got, expected, atol=1e-4)

    bare = tmp_path / "bare" / "teacher.onnx"  # a file exported elsewhere: no edgestill manifest beside it
    bare.parent.mkdir()
    shutil.copy(res.artifact.model_path, bare)
    np.testing.assert_allclose(teacher_logits_from_artifact(bare, data.train, num_classes=10), expected, atol=1e-4)

    with pytest.raises(InputError, match=r"outputs shape \[\d+, 10\] per batch but the data and the student have 7"):
        teacher_logits_from_artifact(bare, data.train, num_classes=7)
    with pytest.raises(InputError, match="takes input"):
        small = load_data(DataConfig(npz=_tiny_npz(tmp_path)))
        teacher_logits_from_artifact(bare, small.train, num_classes=10)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not onnx")
    with pytest.raises(InputError, match="could not be read as onnx"):
        teacher_logits_from_artifact(junk, data.train, num_classes=10)


def _tiny_npz(tmp_path: Path) -> Path:
    p = tmp_path / "small.npz"
    np.savez(p, x=np.zeros((12, 3, 16, 16), np.float32), y=np.arange(12) % 2)
    return p


def test_a_teacher_artifact_changed_since_export_is_refused_before_it_is_run(data, tmp_path: Path) -> None:
    """Untrusted artifacts: the manifest's sha256 is checked (as the runner checks it) before a runtime parses the
    teacher; an untouched one gets past that check (and is then refused for its input shape, which is not the data's)."""
    from tests.benchmarks.conftest import write_tiny_onnx

    manifest = write_tiny_onnx(tmp_path / "teacher", name="teacher")
    with pytest.raises(InputError, match="takes input"):  # the control: the sha256 check passes
        teacher_logits_from_artifact(manifest, data.train, num_classes=3)
    with open(manifest.with_name("teacher.onnx"), "ab") as f:
        f.write(b"\0")
    with pytest.raises(InputError, match="teacher.onnx changed since it was exported"):
        teacher_logits_from_artifact(manifest, data.train, num_classes=3)
    with pytest.raises(InputError, match="changed since it was exported"):  # the model file given, its manifest beside
        teacher_logits_from_artifact(manifest.with_name("teacher.onnx"), data.train, num_classes=3)
