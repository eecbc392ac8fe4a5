"""Text distillation end to end on tiny random BERT folders and the generated intent texts: a fine-tuned teacher, a
classifier distilled from its every-other-layer copy, alpha=1 equal to plain fine-tuning, an embedder distilled into
a narrower student with a projection, and each bad input refused before anything is written."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from edgestill.compress.distill.text import (TextDistillConfig, distill_text, embedding_metrics, smaller_student,
                                             student_from_teacher, train_text)
from edgestill.data.text import encode_texts, generated_texts
from edgestill.errors import ConfigError, InputError
from edgestill.models.hf import load_hf_model, make_tiny_hf

# One thread: on a loaded 2-core machine two OpenMP threads made these tiny steps ~15x slower.
FAST = {"batch_size": 8, "lr": 2e-3, "max_length": 32, "train_threads": 1}


@pytest.fixture(scope="module")
def data():
    return generated_texts(400, seed=0), generated_texts(120, seed=1)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, data):
    """A 4-layer classifier fine-tuned with train_text (and its result)."""
    train, test = data
    root = tmp_path_factory.mktemp("teacher")
    init = make_tiny_hf(root / "init", task="classify", layers=4, hidden=64, heads=4, intermediate=128)
    result = train_text(init, train.texts, train.labels, TextDistillConfig(task="classify", epochs=4, **FAST),
                        root / "trained", eval_texts=test.texts, eval_labels=test.labels)
    return result


@pytest.fixture(scope="module")
def student_init(tmp_path_factory, teacher):
    return student_from_teacher(teacher.model_dir, tmp_path_factory.mktemp("student"))


def _predict(folder, texts, seq=32):
    loaded = load_hf_model(folder, seq_len=seq)
    feed = encode_texts(loaded.source["text"]["tokenizer_path"], texts, max_length=seq,
                        input_names=[s.name for s in loaded.input_shapes])
    with torch.no_grad():
        return loaded.model(*(torch.from_numpy(feed[s.name]) for s in loaded.input_shapes)).numpy()


def test_fine_tuned_teacher_learns_the_generated_intents(teacher, data):
    assert teacher.model_dir.name == "model"
    assert len(teacher.history) == 4 and teacher.history[-1] < 0.5 * teacher.history[0]
    assert teacher.metrics["accuracy"] >= 0.9  # 4 classes: chance is 0.25
    assert teacher.metrics["accuracy"] == pytest.approx(
        float((_predict(teacher.model_dir, data[1].texts).argmax(1) == data[1].labels).mean()))


def test_distilled_classifier_beats_chance_and_its_folder_reloads_with_the_same_outputs(teacher, student_init, data,
                                                                                        tmp_path):
    train, test = data
    seen, threads = [], []
    torch.set_num_threads(2)
    result = distill_text(teacher.model_dir, student_init, train.texts,
                          TextDistillConfig(task="classify", epochs=2, **FAST), tmp_path, labels=train.labels,
                          eval_texts=test.texts, eval_labels=test.labels,
                          progress=lambda *a: (seen.append(a), threads.append(torch.get_num_threads())))
    assert set(threads) == {1} and torch.get_num_threads() == 2  # train_threads while training, restored after
    assert result.student_dir == (tmp_path / "student").resolve()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student"]  # the staging folder was renamed, not left
    assert result.metrics["accuracy"] > 0.5
    assert result.metrics["teacher_accuracy"] == pytest.approx(teacher.metrics["accuracy"])
    assert len(seen) == 2 * 50 and seen[-1][:3] == (2, 100, 100) and seen[-1][3] == pytest.approx(result.history[-1])
    logits = _predict(result.student_dir, test.texts)
    teacher_logits = _predict(teacher.model_dir, test.texts)
    assert result.metrics["accuracy"] == pytest.approx(float((logits.argmax(1) == test.labels).mean()))
    assert result.metrics["teacher_agreement"] == pytest.approx(float((logits.argmax(1) == teacher_logits.argmax(1)).mean()))
    assert json.loads((result.student_dir / "config.json").read_text())["num_hidden_layers"] == 2
    again = distill_text(teacher.model_dir, student_init, train.texts,
                         TextDistillConfig(task="classify", epochs=2, **FAST), tmp_path, labels=train.labels)
    assert again.history == result.history  # same seed, same run; the rerun replaced the folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student"]


def test_alpha_one_is_plain_fine_tuning(teacher, student_init, data, tmp_path):
    """With alpha=1 the KD term has weight 0: the same weights, bit for bit, as train_text from the same start."""
    train, _ = data
    cfg = TextDistillConfig(task="classify", epochs=1, alpha=1.0, **FAST)
    kd = distill_text(teacher.model_dir, student_init, train.texts, cfg, tmp_path / "kd", labels=train.labels)
    ce = train_text(student_init, train.texts, train.labels, cfg, tmp_path / "ce")
    assert kd.history == ce.history
    a, b = load_file(kd.student_dir / "model.safetensors"), load_file(ce.model_dir / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    before = load_file(student_init / "model.safetensors")
    assert not torch.equal(a["classifier.weight"], before["classifier.weight"])  # it did train
    soft = distill_text(teacher.model_dir, student_init, train.texts, TextDistillConfig(task="classify", epochs=1,
                        alpha=0.5, **FAST), tmp_path / "soft", labels=train.labels)
    assert soft.history != kd.history  # and the teacher term, when weighted, changes the run


def test_embedding_distillation_brings_a_narrower_student_towards_the_teacher(data, tmp_path):
    train, test = data
    teacher = make_tiny_hf(tmp_path / "teacher", task="embed", layers=2, hidden=32, heads=2, intermediate=64)
    init = smaller_student(teacher, tmp_path / "init", layers=1, hidden=16, heads=2)
    result = distill_text(teacher, init, train.texts, TextDistillConfig(task="embed", epochs=2, **FAST),
                          tmp_path / "out", eval_texts=test.texts)
    assert result.metrics_before["mean_cosine_to_teacher"] < 0.3
    assert result.metrics["mean_cosine_to_teacher"] > result.metrics_before["mean_cosine_to_teacher"] + 0.4
    assert result.history[-1] < result.history[0]
    # The saved folder, loaded as export loads it, embeds at the teacher's width through its projection (2_Dense)
    # and gives the metrics distill_text reported.
    folder = result.student_dir
    assert json.loads((folder / "2_Dense" / "config.json").read_text())["out_features"] == 32
    student_emb = _predict(folder, test.texts)
    assert student_emb.shape == (len(test.texts), 32)
    again = embedding_metrics(student_emb, _predict(teacher, test.texts))
    assert again["mean_cosine_to_teacher"] == pytest.approx(result.metrics["mean_cosine_to_teacher"], abs=1e-4)
    assert again["retrieval_agreement_at_5"] == pytest.approx(result.metrics["retrieval_agreement_at_5"], abs=0.02)


# --------------------------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    small = dict(layers=1, hidden=32, heads=2, intermediate=64)
    return {
        "classifier": make_tiny_hf(root / "classifier", task="classify", **small),
        "embedder": make_tiny_hf(root / "embedder", task="embed", **small),
        "narrow": make_tiny_hf(root / "narrow", task="embed", layers=1, hidden=16, heads=2, intermediate=32),
        "other_vocab": make_tiny_hf(root / "other_vocab", task="classify", texts=["a few other words", "and more"] * 20,
                                    **small),
        "three_classes": make_tiny_hf(root / "three", task="classify", num_labels=3, **small),
        "distilbert": make_tiny_hf(root / "distilbert", task="embed", family="distilbert", **small),
    }


def test_a_distilbert_student_learns_from_a_bert_teacher(folders, data, tmp_path):
    """The teacher takes token_type_ids, the student does not: each gets the inputs it takes from one encoding."""
    train, test = data
    teacher, student = folders["embedder"], folders["distilbert"]
    assert [s.name for s in load_hf_model(teacher, seq_len=16).input_shapes] == [
        "input_ids", "attention_mask", "token_type_ids"]
    result = distill_text(teacher, student, train.texts[:160], TextDistillConfig(task="embed", epochs=1, **FAST),
                          tmp_path, eval_texts=test.texts[:40])
    assert result.metrics["mean_cosine_to_teacher"] > result.metrics_before["mean_cosine_to_teacher"] + 0.1
    loaded = load_hf_model(result.student_dir, seq_len=16)
    assert [s.name for s in loaded.input_shapes] == ["input_ids", "attention_mask"]
    assert loaded.source["family"] == "distilbert"


LONG = " ".join(["weather"] * 60)


@pytest.mark.parametrize("case, match", [
    ("no texts", "no training texts"),
    ("labels of another length", "3 given for 4 texts"),
    ("label outside the classes", "label 7 .*outside the model's 4 classes"),
    ("float labels", "integer class indices"),
    ("no labels with alpha > 0", "no labels were given"),
    ("classify with an embedder teacher", "teacher: .*classif"),
    ("student with other class count", "3 classes, the teacher into 4"),
    ("student with another vocabulary", r"student's vocabulary \(\d+ ids.*teacher's \(\d+ ids"),
    ("embed with labels", "unlabelled"),
    ("embed with mismatched widths", "16 wide and the teacher's 32"),
    ("embed with 5 eval texts", "more than 5"),
    ("text longer than max_length", "truncat"),
    ("max_length above the model's maximum", "at most 128"),
    ("eval labels without eval texts", "without eval texts"),
])
def test_bad_distillation_inputs_are_refused_before_anything_is_written(folders, tmp_path, case, match):
    """Bad inputs: each case's name says what is wrong."""
    texts, labels = ["what is the weather", "play some jazz", "set an alarm", "turn on the lights"], [0, 2, 1, 3]
    kw = {"labels": labels}
    teacher, student, task, cfg = folders["classifier"], folders["classifier"], "classify", {}
    if case == "no texts":
        texts, kw = [], {"labels": []}
    elif case == "labels of another length":
        kw = {"labels": [0, 1, 2]}
    elif case == "label outside the classes":
        kw = {"labels": [0, 1, 7, 2]}
    elif case == "float labels":
        kw = {"labels": [0.0, 1.0, 2.0, 3.0]}
    elif case == "no labels with alpha > 0":
        kw = {}
    elif case == "classify with an embedder teacher":
        teacher = folders["embedder"]
    elif case == "student with other class count":
        student = folders["three_classes"]
    elif case == "student with another vocabulary":
        student = folders["other_vocab"]
    elif case.startswith("embed"):
        task, teacher, student, kw = "embed", folders["embedder"], folders["embedder"], {}
        if case == "embed with labels":
            kw = {"labels": labels}
        elif case == "embed with mismatched widths":
            student = folders["narrow"]
        else:
            kw = {"eval_texts": texts + ["one more"]}
    elif case == "text longer than max_length":
        texts = [*texts[:3], LONG]
    elif case == "max_length above the model's maximum":
        cfg = {"max_length": 200}
    elif case == "eval labels without eval texts":
        kw = {**kw, "eval_labels": labels}
    config = TextDistillConfig(task=task, epochs=1, **{**FAST, "max_length": 16, **cfg})
    with pytest.raises(InputError, match=match):
        distill_text(teacher, student, texts, config, tmp_path / "out", **kw)
    assert not (tmp_path / "out").exists()


def test_train_text_refuses_an_embed_config_and_bad_labels(folders, tmp_path):
    """Bad inputs: task 'embed' for fine-tuning on labels; a label past the model's classes; an embedder folder."""
    with pytest.raises(ConfigError, match="classify"):
        train_text(folders["classifier"], ["a", "b"], [0, 1], TextDistillConfig(task="embed"), tmp_path)
    with pytest.raises(InputError, match="label 4"):
        train_text(folders["classifier"], ["a", "b"], [0, 4], TextDistillConfig(task="classify"), tmp_path)
    with pytest.raises(InputError, match="classif"):
        train_text(folders["embedder"], ["a", "b"], [0, 1], TextDistillConfig(task="classify"), tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_teacher_giving_nan_stops_training_with_a_clear_error(folders, tmp_path):
    """Bad input: a teacher folder whose weights hold NaN; the loss is NaN at the first step and nothing is saved."""
    broken = tmp_path / "nan_teacher"
    broken.mkdir()
    for f in folders["classifier"].iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    weights = load_file(broken / "model.safetensors")
    weights["classifier.bias"] = torch.full_like(weights["classifier.bias"], float("nan"))
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    texts = generated_texts(16).texts
    with pytest.raises(InputError, match="diverged at epoch 1, step 1 .*loss is nan"):
        distill_text(broken, folders["classifier"], texts, TextDistillConfig(task="classify", alpha=0.0, epochs=1, **FAST),
                     tmp_path / "out")
    assert not (tmp_path / "out" / "student").exists()
    assert not np.isnan(load_file(folders["classifier"] / "model.safetensors")["classifier.bias"].numpy()).any()
