"""Text students made from a teacher (every-other-layer copy, configured smaller), the embedding metrics and loss, and
the text distillation config's checks. Tiny random BERT/DistilBERT folders; no training here."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from edgestill.compress.distill.losses import embedding_loss
from edgestill.compress.distill.text import TextDistillConfig, embedding_metrics, smaller_student, student_from_teacher
from edgestill.errors import ConfigError, InputError
from edgestill.models.hf import Head, load_hf_model, make_tiny_hf, write_head


@pytest.fixture(scope="module")
def bert4(tmp_path_factory):
    return make_tiny_hf(tmp_path_factory.mktemp("bert4") / "m", task="classify", family="bert", layers=4, hidden=32,
                        heads=2, intermediate=64)


@pytest.fixture(scope="module")
def distilbert4(tmp_path_factory):
    return make_tiny_hf(tmp_path_factory.mktemp("distilbert4") / "m", task="classify", family="distilbert", layers=4,
                        hidden=32, heads=2, intermediate=64)


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    return make_tiny_hf(tmp_path_factory.mktemp("embed") / "m", task="embed", family="bert", layers=2, hidden=32,
                        heads=2, intermediate=64)


def _config(folder):
    return json.loads((folder / "config.json").read_text())


def _assert_layers_copied(teacher, student, pairs, prefix):
    """Student layer i holds teacher layer j for each (i, j); every tensor outside the encoder layers is the teacher's."""
    t, s = load_file(teacher / "model.safetensors"), load_file(student / "model.safetensors")
    copied = set()
    for i, j in pairs:
        t_keys = [k for k in t if k.startswith(f"{prefix}.layer.{j}.")]
        assert t_keys
        for key in t_keys:
            s_key = key.replace(f"{prefix}.layer.{j}.", f"{prefix}.layer.{i}.")
            assert torch.equal(s[s_key], t[key]), s_key
            copied.add(s_key)
    outside = {k for k in s if ".layer." not in k}
    assert outside == {k for k in t if ".layer." not in k}
    assert any("word_embeddings" in k for k in outside) and any("classifier" in k for k in outside)
    for key in outside:
        assert torch.equal(s[key], t[key]), key
    assert copied | outside == set(s)  # no student tensor was left at its random init


def test_every_other_layer_student_copies_the_teachers_layers_0_and_2(bert4, tmp_path):
    student = student_from_teacher(bert4, tmp_path)
    assert student == (tmp_path / "student_init").resolve()
    assert _config(student)["num_hidden_layers"] == 2
    assert _config(student)["architectures"] == ["BertForSequenceClassification"]
    _assert_layers_copied(bert4, student, [(0, 0), (1, 2)], "bert.encoder")
    assert (student / "tokenizer.json").read_bytes() == (bert4 / "tokenizer.json").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student_init"]  # no staging folder left behind


def test_listed_layers_of_a_distilbert_teacher(distilbert4, tmp_path):
    student = student_from_teacher(distilbert4, tmp_path, layers=[1, 3])
    assert _config(student)["n_layers"] == 2
    _assert_layers_copied(distilbert4, student, [(0, 1), (1, 3)], "distilbert.transformer")


def test_a_layer_count_spreads_from_first_to_last_and_all_layers_reproduce_the_teacher(bert4, tmp_path):
    _assert_layers_copied(bert4, student_from_teacher(bert4, tmp_path / "three", layers=3), [(0, 0), (1, 2), (2, 3)],
                          "bert.encoder")
    full = student_from_teacher(bert4, tmp_path / "all", layers=4)
    teacher, copy = load_hf_model(bert4, seq_len=16), load_hf_model(full, seq_len=16)
    with torch.no_grad():
        torch.testing.assert_close(copy.model(*teacher.example_inputs), teacher.model(*teacher.example_inputs),
                                   rtol=0, atol=0)


@pytest.mark.parametrize("layers", [5, 0, [0, 4], [-1, 2], [2, 1], [1, 1], [], "every-third", True, 2.0])
def test_student_layers_out_of_range_or_malformed_are_refused(bert4, tmp_path, layers):
    """Bad inputs: a count above the teacher's 4 layers or 0, an index past the end or negative, indices not
    increasing or repeated, an empty list, an unknown keyword, a bool, a float."""
    with pytest.raises(InputError, match="teacher has 4 layers"):
        student_from_teacher(bert4, tmp_path, layers=layers)
    assert not (tmp_path / "student_init").exists()


def test_smaller_embedder_gets_a_projection_to_the_teachers_width(embedder, tmp_path):
    student = smaller_student(embedder, tmp_path, layers=1, hidden=16, heads=2)
    cfg = _config(student)
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"], cfg["intermediate_size"]) == (
        1, 16, 2, 32)  # the teacher's feed-forward width 64 scaled by 16/32
    assert cfg["vocab_size"] == _config(embedder)["vocab_size"]
    dense = json.loads((student / "2_Dense" / "config.json").read_text())
    assert (dense["in_features"], dense["out_features"]) == (16, 32)
    weights = load_file(student / "2_Dense" / "model.safetensors")
    assert weights["linear.weight"].shape == (32, 16) and weights["linear.bias"].shape == (32,)
    modules = json.loads((student / "modules.json").read_text())
    assert [m["path"] for m in modules] == ["", "1_Pooling", "2_Dense"]
    assert load_hf_model(student, seq_len=16).source["text"]["task"] == "embed"
    again = smaller_student(embedder, tmp_path / "again", layers=1, hidden=16, heads=2)
    other = smaller_student(embedder, tmp_path / "other", layers=1, hidden=16, heads=2, seed=1)
    assert (again / "model.safetensors").read_bytes() == (student / "model.safetensors").read_bytes()
    assert (other / "model.safetensors").read_bytes() != (student / "model.safetensors").read_bytes()


@pytest.fixture(scope="module")
def st_embedder(tmp_path_factory):
    """An embedder with a sentence-transformers head: CLS pooling, a tanh Dense 32 -> 24, L2 normalisation."""
    folder = make_tiny_hf(tmp_path_factory.mktemp("st") / "m", task="embed", layers=2, hidden=32, heads=2,
                          intermediate=64)
    torch.manual_seed(0)
    write_head(folder, Head(pooling="cls", linear=torch.nn.Linear(32, 24), activation="tanh", normalize=True), 32)
    return folder


def test_students_of_a_sentence_transformers_teacher_keep_its_head(st_embedder, tmp_path):
    copy = student_from_teacher(st_embedder, tmp_path / "copy", layers=2)
    assert (copy / "modules.json").read_text() == (st_embedder / "modules.json").read_text()
    assert (copy / "2_Dense" / "model.safetensors").read_bytes() == (
        st_embedder / "2_Dense" / "model.safetensors").read_bytes()
    teacher, student = load_hf_model(st_embedder, seq_len=16), load_hf_model(copy, seq_len=16)
    with torch.no_grad():
        out = student.model(*teacher.example_inputs)
        torch.testing.assert_close(out, teacher.model(*teacher.example_inputs), rtol=0, atol=0)
    assert out.shape == (1, 24) and float(out.norm()) == pytest.approx(1.0)
    small = load_hf_model(smaller_student(st_embedder, tmp_path / "small", layers=1, hidden=16, heads=2), seq_len=16)
    assert small.source["text"]["head"] == {"pooling": "cls", "dense": [16, 24], "activation": "identity",
                                            "normalize": True}


def test_smaller_classifier_keeps_the_head_and_needs_no_projection(bert4, tmp_path):
    student = smaller_student(bert4, tmp_path, layers=1)
    cfg, teacher = _config(student), _config(bert4)
    assert cfg["architectures"] == ["BertForSequenceClassification"]
    assert (cfg["num_hidden_layers"], cfg["hidden_size"]) == (1, 32)
    assert cfg["id2label"] == teacher["id2label"]
    assert not (student / "modules.json").exists()
    assert load_hf_model(student, seq_len=16).model(*load_hf_model(bert4, seq_len=16).example_inputs).shape == (1, 4)


@pytest.mark.parametrize("kwargs, match", [
    ({"layers": 1, "hidden": 30, "heads": 4}, "not divisible by heads"),
    ({"layers": 0}, "layers=0"),
    ({"layers": 1, "hidden": -8}, "hidden=-8"),
    ({"layers": 1, "intermediate": 1.5}, "intermediate=1.5"),
])
def test_smaller_student_sizes_that_do_not_fit_are_refused(embedder, tmp_path, kwargs, match):
    """Bad inputs: hidden not divisible by heads, zero layers, a negative width, a float feed-forward width."""
    with pytest.raises(InputError, match=match):
        smaller_student(embedder, tmp_path, **kwargs)
    assert not (tmp_path / "student_init").exists()


def test_a_teacher_folder_without_its_tokenizer_is_refused(bert4, tmp_path):
    """Bad input: a teacher folder missing tokenizer.json; the message says it is the teacher's."""
    broken = tmp_path / "teacher"
    broken.mkdir()
    for name in ("config.json", "model.safetensors"):
        (broken / name).write_bytes((bert4 / name).read_bytes())
    with pytest.raises(InputError, match="^teacher: .*tokenizer.json"):
        student_from_teacher(broken, tmp_path / "out")


# ---------------------------------------------------------------------------------------------- metrics
def test_embedding_metrics_on_identical_scaled_and_permuted_embeddings():
    t = np.random.default_rng(0).normal(size=(60, 8))
    same = embedding_metrics(t, t)
    assert same == {"mean_cosine_to_teacher": pytest.approx(1.0), "retrieval_agreement_at_5": 1.0}
    assert embedding_metrics(3.0 * t, t)["retrieval_agreement_at_5"] == 1.0  # cosine neighbours ignore the scale
    shuffled = embedding_metrics(t[np.random.default_rng(1).permutation(60)], t)
    assert shuffled["retrieval_agreement_at_5"] < 0.3 and shuffled["mean_cosine_to_teacher"] < 0.3


def test_embedding_metrics_by_hand():
    t = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])  # neighbours: 0-1, 2-3
    s = t[[0, 2, 1, 3]]  # neighbours now 0-2, 1-3: none of the teacher's
    m = embedding_metrics(s, t, k=1)
    assert m["retrieval_agreement_at_1"] == 0.0
    cos = 0.1 / np.hypot(0.9, 0.1)
    assert m["mean_cosine_to_teacher"] == pytest.approx((1 + cos + cos + 1) / 4)
    half = t[[0, 1, 3, 2]]  # 0-1 kept; 2 and 3 swap places, so their nearest neighbours are still each other
    assert embedding_metrics(half, t, k=1)["retrieval_agreement_at_1"] == 1.0


@pytest.mark.parametrize("s, t, k, match", [
    (np.zeros((10, 4)), np.zeros((10, 3)), 5, "same shape|one shape"),
    (np.zeros(10), np.zeros(10), 5, "one shape"),
    (np.ones((5, 4)), np.ones((5, 4)), 5, "more than 5 texts"),
    (np.full((10, 4), np.nan), np.ones((10, 4)), 5, "NaN"),
    (np.ones((10, 4)), np.ones((10, 4)), 0, "k must be"),
])
def test_embedding_metrics_refuse_what_cannot_be_compared(s, t, k, match):
    """Bad inputs: different widths, 1-D arrays, no more texts than k, NaN embeddings, k = 0."""
    with pytest.raises(InputError, match=match):
        embedding_metrics(s, t, k=k)


def test_embedding_loss_weighs_mse_and_cosine():
    t = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    assert float(embedding_loss(t, t)) == pytest.approx(0.0, abs=1e-6)
    # twice the teacher: same direction (cosine term 0), MSE = mean(t²)
    assert float(embedding_loss(2 * t, t)) == pytest.approx(float(t.pow(2).mean()), rel=1e-6)
    e = torch.eye(2)
    assert float(embedding_loss(e, e.flip(0), mse_weight=0.0)) == pytest.approx(1.0)  # orthogonal: 1 - cos = 1
    assert float(embedding_loss(e, e.flip(0), cosine_weight=0.0)) == pytest.approx(1.0)  # MSE of unit swaps
    with pytest.raises(InputError, match="differ in shape"):
        embedding_loss(torch.zeros(2, 3), torch.zeros(2, 4))


# ----------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize("kwargs, key", [
    ({"task": "regress"}, "task"), ({"task": "classify", "epochs": 0}, "epochs"),
    ({"task": "classify", "batch_size": 2.5}, "batch_size"), ({"task": "classify", "lr": 0}, "lr"),
    ({"task": "classify", "lr": float("nan")}, "lr"), ({"task": "classify", "alpha": 1.5}, "alpha"),
    ({"task": "classify", "temperature": 0}, "temperature"), ({"task": "classify", "max_length": 1}, "max_length"),
    ({"task": "classify", "warmup_fraction": 1.0}, "warmup_fraction"),
    ({"task": "classify", "truncate": "yes"}, "truncate"), ({"task": "classify", "train_threads": 0}, "train_threads"),
    ({"task": "embed", "mse_weight": 0, "cosine_weight": 0}, "mse_weight"),
    ({"task": "embed", "cosine_weight": -1}, "cosine_weight"),
])
def test_config_refuses_bad_values_naming_the_field(kwargs, key):
    """Bad inputs: an unknown task, zero epochs, a float batch size, lr 0 or NaN, alpha above 1, temperature 0, a
    sequence of one token, a warm-up of all steps, a string for a bool, zero threads, an embedding loss weighted 0."""
    with pytest.raises(ConfigError, match=key):
        TextDistillConfig(**kwargs)
