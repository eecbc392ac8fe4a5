"""Token-level KD for causal LMs: the divergences against a plain reference, top-k rules, numerics at extreme
logits, the objective from a cache (teacher never loaded), on-policy, and the truncation report."""

import gc
import weakref

import numpy as np
import pytest
import torch

from edgestill.compress.distill.llm_cache import build_topk_cache, topk_split
from edgestill.compress.distill.llm_kd import (TokenKDObjective, divergence, full_kd_loss, topk_kd_loss,
                                               truncation_report)
from edgestill.errors import ConfigError, InputError
from tests.distill.test_llm_cache import VOCAB, sequences, tiny_llama

KINDS = [("fkl", 0.5), ("rkl", 0.5), ("jsd", 0.1), ("jsd", 0.5), ("jsd", 0.9)]


def reference(p: np.ndarray, q: np.ndarray, kind: str, beta: float) -> float:
    """Mean over rows of the divergence between probability rows p (teacher) and q (student), in float64 loops."""
    def kl(a, b):
        return sum(x * np.log(x / y) for x, y in zip(a, b) if x > 0)

    out = []
    for a, b in zip(p, q):
        if kind == "fkl":
            out.append(kl(a, b))
        elif kind == "rkl":
            out.append(kl(b, a))
        else:
            m = beta * a + (1 - beta) * b
            out.append(beta * kl(a, m) + (1 - beta) * kl(b, m))
    return float(np.mean(out))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(12, VOCAB, generator=g, dtype=torch.float64) * 3, \
        torch.randn(12, VOCAB, generator=g, dtype=torch.float64) * 3


@pytest.mark.parametrize("temperature", [1.0, 2.5])
@pytest.mark.parametrize(("kind", "beta"), KINDS)
def test_full_logit_losses_match_a_plain_reference(logits, kind, beta, temperature):
    s, t = logits
    got = float(full_kd_loss(s, t, kind=kind, beta=beta, temperature=temperature))
    want = reference(softmax(t.numpy() / temperature), softmax(s.numpy() / temperature), kind, beta) * temperature ** 2
    assert got == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize(("kind", "beta"), KINDS)
def test_top_k_rules_match_a_plain_reference(logits, kind, beta):
    s, t = logits
    k = 6
    idx = t.topk(k, -1).indices.numpy()
    p, q = softmax(t.numpy()), softmax(s.numpy())
    p_top, q_top = np.take_along_axis(p, idx, -1), np.take_along_axis(q, idx, -1)
    renorm = reference(p_top / p_top.sum(-1, keepdims=True), q_top / q_top.sum(-1, keepdims=True), kind, beta)
    rest = reference(np.c_[p_top, 1 - p_top.sum(-1)], np.c_[q_top, 1 - q_top.sum(-1)], kind, beta)
    values, indices, rest_lse = topk_split(t, k)
    for rule, want in (("renorm", renorm), ("rest", rest)):
        got = float(topk_kd_loss(s, values, indices, rest_lse, kind=kind, beta=beta, rule=rule))
        assert got == pytest.approx(want, rel=1e-5), rule


def test_rest_bucket_at_another_temperature_is_exact_for_a_flat_tail(logits):
    s, _ = logits
    t = torch.full((12, VOCAB), -1.0, dtype=torch.float64)
    t[:, :5] = torch.arange(5.0) + 2  # top 5 distinct, tail flat
    p, q = softmax(t.numpy() / 3.0), softmax(s.numpy() / 3.0)
    q_top = q[:, :5]
    want = reference(np.c_[p[:, :5], p[:, 5:].sum(-1)], np.c_[q_top, 1 - q_top.sum(-1)], "fkl", 0.5) * 9.0
    got = topk_kd_loss(s, *topk_split(t, 5), kind="fkl", temperature=3.0, rule="rest")
    assert float(got) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize(("kind", "beta"), KINDS)
@pytest.mark.parametrize("rule", ["rest", "renorm"])
def test_k_equal_to_vocab_is_the_full_logit_loss(logits, kind, beta, rule):
    s, t = logits
    full = full_kd_loss(s, t, kind=kind, beta=beta, temperature=2.0)
    topk = topk_kd_loss(s, *topk_split(t, VOCAB), kind=kind, beta=beta, temperature=2.0, rule=rule)
    assert float(topk) == pytest.approx(float(full), rel=1e-5, abs=1e-7)


def test_jsd_tends_to_forward_kl_at_small_beta_and_reverse_kl_near_one(logits):
    s, t = logits
    lp, lq = torch.log_softmax(t / 3, -1), torch.log_softmax(s / 3, -1)
    fkl, rkl = divergence(lp, lq, kind="fkl"), divergence(lp, lq, kind="rkl")
    to_fkl = [float((divergence(lp, lq, kind="jsd", beta=b) / b / fkl - 1).abs().max()) for b in (1e-2, 1e-3, 1e-4)]
    to_rkl = [float((divergence(lp, lq, kind="jsd", beta=1 - b) / b / rkl - 1).abs().max()) for b in (1e-2, 1e-3, 1e-4)]
    for errors in (to_fkl, to_rkl):
        assert errors == sorted(errors, reverse=True) and errors[-1] < 5e-3, errors
    assert torch.equal(divergence(lp, lq, kind="jsd", beta=0.0), fkl)
    assert torch.equal(divergence(lp, lq, kind="jsd", beta=1.0), rkl)


def _confident_pair(scale: float):
    """Teacher sure of token 7 and student sure of token 3, with logits of +-scale."""
    t = torch.full((3, VOCAB), -scale)
    t[:, 7] = scale
    s = torch.full((3, VOCAB), -scale)
    s[:, 3] = scale
    return s.requires_grad_(True), t


def _losses(s, t, kind, beta):
    values, indices, rest = topk_split(t, 4)
    values = values.half().float()  # as the cache stores them
    return [full_kd_loss(s, t, kind=kind, beta=beta),
            topk_kd_loss(s, values, indices, rest, kind=kind, beta=beta, rule="rest"),
            topk_kd_loss(s, values, indices, rest, kind=kind, beta=beta, rule="renorm")]


@pytest.mark.parametrize(("kind", "beta"), KINDS)
@pytest.mark.parametrize("scale", [30.0, 1e4])
def test_confidently_wrong_students_get_finite_losses_and_gradients(kind, beta, scale):
    s, t = _confident_pair(scale)
    for loss in _losses(s, t, kind, beta):
        (grad,) = torch.autograd.grad(loss, s)
        assert torch.isfinite(loss) and loss.item() > 0 and torch.isfinite(grad).all()
        # towards the teacher's token. At +-1e4 the student's probabilities off token 3 are exp(-2e4): reverse KL's
        # and JSD's gradients are q-weighted, so they are truly 0 there (the mode-seeking losses saturate);
        # forward KL's is p-weighted and stays -1 per token.
        if kind == "fkl" or scale == 30.0:
            assert (grad[:, 7] < 0).all()


def test_bad_options_are_refused(logits):
    s, t = logits
    for temperature in (0, -1, float("inf"), "2", True):
        with pytest.raises(ConfigError, match="temperature"):
            full_kd_loss(s, t, temperature=temperature)
    for beta in (-0.1, 1.5, float("nan"), "0.5"):
        with pytest.raises(ConfigError, match="beta"):
            full_kd_loss(s, t, kind="jsd", beta=beta)
    with pytest.raises(ConfigError, match="kind"):
        full_kd_loss(s, t, kind="kl")
    with pytest.raises(ConfigError, match="rule"):
        topk_kd_loss(s, *topk_split(t, 3), rule="drop")
    with pytest.raises(ConfigError, match="rest_lse"):
        topk_kd_loss(s, *topk_split(t, 3)[:2])
    with pytest.raises(InputError, match="same tokenizer"):
        full_kd_loss(s, t[:, :-1])
    with pytest.raises(ConfigError, match="alpha"):
        TokenKDObjective(tiny_llama(0), alpha=1.5)
    with pytest.raises(ConfigError, match="needs a teacher"):
        TokenKDObjective(None)
    with pytest.raises(InputError, match="no header.json"):
        TokenKDObjective("/nonexistent/cache")


def make_batches(seqs, prompt_len=4, batch_size=4):
    """Right-padded batches in the shape train_causal_lm gives the objective."""
    out = []
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start:start + batch_size]
        width = max(map(len, chunk))
        ids = torch.zeros((len(chunk), width), dtype=torch.long)
        attn, labels = torch.zeros_like(ids), torch.full_like(ids, -100)
        for b, seq in enumerate(chunk):
            ids[b, :len(seq)] = torch.tensor(seq)
            attn[b, :len(seq)] = 1
            labels[b, prompt_len:len(seq)] = torch.tensor(seq[prompt_len:])
        out.append({"input_ids": ids, "attention_mask": attn, "labels": labels,
                    "index": torch.arange(start, start + len(chunk))})
    return out


def train_steps(student, objective, batches, steps):
    opt = torch.optim.Adam(student.parameters(), lr=3e-3)
    losses = []
    for step in range(steps):
        batch = batches[step % len(batches)]
        loss = objective(student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_objective_from_a_cache_path_trains_without_the_teacher(tmp_path):
    seqs = sequences(8)
    teacher = tiny_llama(0, layers=2)
    build_topk_cache(teacher, seqs, k=8, path=tmp_path / "cache")
    gone = weakref.ref(teacher)
    del teacher
    gc.collect()
    objective = TokenKDObjective(tmp_path / "cache", kind="jsd", beta=0.5, temperature=2.0, alpha=0.5)
    assert gone() is None and objective.teacher is None  # nothing holds a teacher while training
    torch.manual_seed(0)
    student = tiny_llama(5).train()
    batches = make_batches(seqs)
    losses = train_steps(student, objective, batches, 30)
    assert np.isfinite(losses).all()
    assert np.mean(losses[-4:]) < 0.7 * np.mean(losses[:4])


def test_cache_and_live_teacher_give_the_same_loss_at_k_equal_to_vocab(tmp_path):
    seqs, teacher, student = sequences(8), tiny_llama(0), tiny_llama(3)
    build_topk_cache(teacher, seqs, k=VOCAB, path=tmp_path / "cache")
    batch = make_batches(seqs)[1]
    s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    for kind, beta in KINDS:
        live = TokenKDObjective(teacher, kind=kind, beta=beta, alpha=0.7)(s, batch)
        cached = TokenKDObjective(tmp_path / "cache", kind=kind, beta=beta, alpha=0.7)(s, batch)
        # fp16 cache values: a relative error of ~1e-3 on each logit
        assert cached.item() == pytest.approx(live.item(), rel=2e-3)


def test_a_cache_of_other_sequences_or_vocabulary_is_refused_at_the_first_batch(tmp_path):
    build_topk_cache(tiny_llama(0), sequences(8), k=4, path=tmp_path / "cache")
    objective = TokenKDObjective(tmp_path / "cache")
    batch = make_batches(sequences(8, seed=1))[0]
    s = torch.zeros(*batch["input_ids"].shape, VOCAB)
    with pytest.raises(InputError, match="not the sequence"):
        objective(s, batch)
    with pytest.raises(InputError, match="outside the top-k cache"):
        objective(s, {**make_batches(sequences(8))[0], "index": torch.tensor([0, 1, 2, 99])})
    with pytest.raises(InputError, match="same tokenizer"):
        objective(torch.zeros(*batch["input_ids"].shape, VOCAB + 1), make_batches(sequences(8))[0])


def test_on_policy_needs_a_loaded_teacher_and_the_student(tmp_path):
    build_topk_cache(tiny_llama(0), sequences(4), k=4, path=tmp_path / "cache")
    with pytest.raises(ConfigError, match="loaded teacher"):
        TokenKDObjective(tmp_path / "cache", on_policy=0.5, student=tiny_llama(1))
    with pytest.raises(ConfigError, match="student="):
        TokenKDObjective(tiny_llama(0), on_policy=0.5)
    for value in (-0.1, 2):
        with pytest.raises(ConfigError, match="on_policy"):
            TokenKDObjective(tiny_llama(0), on_policy=value)


def test_on_policy_batches_score_the_students_own_samples(tmp_path):
    teacher, student = tiny_llama(0), tiny_llama(4).train()
    objective = TokenKDObjective(teacher, kind="rkl", on_policy=1.0, student=student, max_new_tokens=6)
    batch = make_batches(sequences(4))[0]
    torch.manual_seed(0)
    loss = objective(student(input_ids=batch["input_ids"]).logits, batch)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_truncation_report_is_exact_at_full_vocabulary_and_names_each_k():
    teacher, student = tiny_llama(0), tiny_llama(2)
    report = truncation_report(teacher, student, sequences(6), k_values=(1, 4, VOCAB, VOCAB + 5), kind="fkl",
                               temperature=2.0, prompt_lens=[4] * 6)
    assert [(r["k"], r["rule"]) for r in report] == [(k, rule) for k in (1, 4, VOCAB) for rule in ("rest", "renorm")]
    for r in report:
        assert all(np.isfinite(r[key]) for key in ("loss_full", "loss_topk", "abs_error", "grad_cosine"))
        if r["k"] == VOCAB:
            assert r["rel_error"] < 1e-3 and r["grad_cosine"] > 0.999 and r["teacher_mass"] == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="no k"):
        truncation_report(teacher, student, sequences(2), k_values=(0, VOCAB + 1))
    with pytest.raises(InputError, match="same tokenizer"):
        truncation_report(teacher, tiny_llama(0, vocab=VOCAB + 1), sequences(2))


def test_the_students_rest_is_exact_whether_its_top_k_holds_little_or_nearly_all_its_mass():
    from edgestill.compress.distill.llm_kd import _rest_logsumexp

    g = torch.Generator().manual_seed(1)
    s = torch.randn(8, VOCAB, generator=g) * 2
    idx = torch.randn(8, VOCAB, generator=g).topk(5, -1).indices
    s[4:] = s[4:].scatter_add(-1, idx[4:], torch.full((4, 5), 25.0))  # rows 4-7: top-k mass 1 - 1e-9
    for k_idx in (idx, torch.arange(VOCAB).expand(8, VOCAB)):  # and k = vocab: no rest at all
        x = s.clone().requires_grad_(True)
        got = _rest_logsumexp(x, x.gather(-1, k_idx), k_idx)
        want = s.double().scatter(-1, k_idx, float("-inf")).logsumexp(-1)
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=0)
        (grad,) = torch.autograd.grad(got[torch.isfinite(got)].sum() + got.sum() * 0, x)
        assert torch.isfinite(grad).all()
