"""Loss terms: response KD on hand-computable values, the other families' defining properties, and LossTerm
validation (unknown loss, unknown option, bad value)."""

import math

import pytest
import torch
import torch.nn.functional as F

from edgestill.compress.distill.losses import (LOSSES, LossTerm, at_loss, ce_loss, dkd_loss, fitnets_loss, kd_loss,
                                              parse_terms, pkt_loss, rkd_loss, sp_loss, tfkd_loss)
from edgestill.errors import ConfigError, InputError, UnknownNameError


def test_registry_names():
    assert {"ce", "kd", "dkd", "fitnets", "at", "rkd", "sp", "pkt", "tfkd"} <= set(LOSSES.names())
    assert LOSSES.get("kd").fn is kd_loss
    with pytest.raises(UnknownNameError):
        LOSSES.get("kld")


def test_equal_logits_leave_only_the_ce_term():
    s = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    y = torch.tensor([0, 2])
    ce = F.cross_entropy(s, y)
    got = kd_loss(s, s.clone(), y, temperature=4.0, alpha=0.7)
    assert torch.isclose(got, 0.3 * ce, atol=1e-6)


def test_kl_term_matches_hand_computation_and_scales_with_t_squared():
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0]])  # softmax(t) = [3/4, 1/4] at T=1
    y = torch.tensor([0])
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert kd_loss(s, t, y, temperature=1.0, alpha=1.0).item() == pytest.approx(kl, rel=1e-5)
    # at temperature T the logits are divided by T, then the KL is multiplied by T²
    T = 2.0
    p = torch.softmax(t / T, dim=1)[0]
    kl_t = sum(float(p[i]) * math.log(float(p[i]) / 0.5) for i in range(2))
    assert kd_loss(s, t, y, temperature=T, alpha=1.0).item() == pytest.approx(T * T * kl_t, rel=1e-5)


def test_batchmean_averages_over_samples():
    s = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])  # second row: zero KL
    y = torch.tensor([0, 0])
    one = kd_loss(s[:1], t[:1], y[:1], temperature=1.0, alpha=1.0).item()
    assert kd_loss(s, t, y, temperature=1.0, alpha=1.0).item() == pytest.approx(one / 2, rel=1e-5)


def test_no_teacher_is_plain_cross_entropy():
    s = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    ce = F.cross_entropy(s, y)
    assert torch.isclose(kd_loss(s, None, y, temperature=4.0, alpha=0.9), ce)
    assert torch.isclose(ce_loss(s, torch.zeros_like(s), y), ce)


def test_gradient_flows_to_student_only():
    s = torch.randn(3, 4, requires_grad=True)
    t = torch.randn(3, 4, requires_grad=True)
    kd_loss(s, t.detach(), torch.tensor([0, 1, 2]), temperature=3.0, alpha=0.5).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


@pytest.mark.parametrize("kwargs", [{"temperature": 0.0, "alpha": 0.5}, {"temperature": 2.0, "alpha": 1.5}])
def test_bad_hyperparameters_raise_config_error(kwargs):
    s = torch.zeros(1, 2)
    with pytest.raises(ConfigError):
        kd_loss(s, s, torch.tensor([0]), **kwargs)


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_dkd_is_zero_for_identical_logits_and_positive_otherwise():
    s, y = _rand(6, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    assert dkd_loss(s, s.clone(), y, alpha=1.0, beta=8.0, temperature=4.0).item() == pytest.approx(0.0, abs=1e-4)
    t = _rand(6, 5, seed=1)
    full = dkd_loss(s, t, y, alpha=1.0, beta=8.0, temperature=4.0)
    tckd = dkd_loss(s, t, y, alpha=1.0, beta=0.0, temperature=4.0)
    nckd = dkd_loss(s, t, y, alpha=0.0, beta=1.0, temperature=4.0)
    assert full.item() > 0 and full.item() == pytest.approx(tckd.item() + 8 * nckd.item(), rel=1e-5)
    # warm-up ramps the whole term linearly
    half = dkd_loss(s, t, y, alpha=1.0, beta=8.0, temperature=4.0, warmup_epochs=2, epoch=1.0)
    assert half.item() == pytest.approx(full.item() / 2, rel=1e-5)


def test_dkd_tckd_matches_binary_kl_by_hand():
    s, t, y = torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([[math.log(2.0), 0.0, 0.0]]), torch.tensor([0])
    # teacher: p_target = 2/4, student: 1/3; T=1, binary KL(t || s)
    kl = 0.5 * math.log(0.5 / (1 / 3)) + 0.5 * math.log(0.5 / (2 / 3))
    assert dkd_loss(s, t, y, alpha=1.0, beta=0.0, temperature=1.0).item() == pytest.approx(kl, rel=1e-4)
    # non-target classes are equal in both: NCKD is zero
    assert dkd_loss(s, t, y, alpha=0.0, beta=1.0, temperature=1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_tfkd_needs_no_teacher_and_reduces_to_ce_at_alpha_zero():
    s, y = _rand(4, 5), torch.tensor([0, 1, 2, 3])
    assert tfkd_loss(s, None, y, temperature=4.0, alpha=0.0, correct_prob=0.9).item() == pytest.approx(
        F.cross_entropy(s, y).item(), rel=1e-6)
    # a student already matching the virtual teacher has zero KL: only (1 - alpha) * CE is left
    q = torch.full((4, 5), 0.1 / 4).scatter(1, y[:, None], 0.9).log()
    got = tfkd_loss(q, None, y, temperature=4.0, alpha=0.5, correct_prob=0.9).item()
    assert got == pytest.approx(0.5 * F.cross_entropy(q, y).item(), rel=1e-5)


def test_feature_losses_vanish_on_equal_inputs_and_handle_spatial_mismatch():
    f = _rand(4, 8, 8, 8)
    assert fitnets_loss(f, f.clone()).item() == 0.0
    assert at_loss(f, f.clone()).item() == pytest.approx(0.0, abs=1e-10)
    big = F.interpolate(f, scale_factor=2, mode="nearest")  # 16×16 map pools back to the 8×8 one exactly
    assert fitnets_loss(big, f).item() == pytest.approx(0.0, abs=1e-10)
    assert at_loss(f, _rand(4, 16, 4, 4, seed=2)).item() > 0  # channels may differ; the larger map is pooled


def test_relation_losses_are_invariant_to_what_they_should_be():
    e = _rand(8, 6)
    assert rkd_loss(e, 3.0 * e).item() == pytest.approx(0.0, abs=1e-6)   # distances are normalised: scale-free
    assert sp_loss(e, e.clone()).item() == pytest.approx(0.0, abs=1e-10)
    assert pkt_loss(e, 2.0 * e).item() == pytest.approx(0.0, abs=1e-7)  # cosine based: scale-free
    other = _rand(8, 6, seed=3)
    assert rkd_loss(e, other).item() > 0 and sp_loss(e, other).item() > 0 and pkt_loss(e, other).item() > 0
    # embeddings of different widths are fine for relation losses (only sample-to-sample relations compared)
    assert rkd_loss(e, _rand(8, 20, seed=4)).item() > 0


def test_unknown_loss_name_lists_names_and_closest():
    with pytest.raises(UnknownNameError, match=r"unknown loss term 'dkdd'.*Did you mean 'dkd'.*Valid loss terms: at, ce, dkd"):
        LossTerm(name="dkdd")


def test_unknown_option_names_the_closest():
    with pytest.raises(ConfigError, match=r"loss 'kd': unknown option 'temprature'. Did you mean 'temperature'"):
        LossTerm(name="kd", options={"temprature": 4})


@pytest.mark.parametrize("term", [
    {"name": "kd", "weight": -1.0}, {"name": "kd", "options": {"alpha": 2}}, {"name": "dkd", "options": {"beta": -1}},
    {"name": "fitnets"}, {"name": "fitnets", "options": {"pairs": [["a"]]}}, {"name": "at", "options": {"pairs": "a,b"}},
    {"name": "fitnets", "options": {"pairs": [["a", "b"]], "adapter": "mlp"}},
])
def test_bad_term_values_raise_config_error(term):
    with pytest.raises(ConfigError, match=term["name"]):
        LossTerm(**term)


def test_parse_terms_builds_terms_and_rejects_unknown_keys():
    terms = parse_terms([{"name": "kd", "weight": 1.0, "options": {"temperature": 2}},
                         {"name": "fitnets", "weight": 0.5, "options": {"pairs": [["features.3", "features.2"]]}}])
    assert [t.name for t in terms] == ["kd", "fitnets"] and terms[1].pairs == [("features.3", "features.2")]
    assert terms[0].resolved() == {"temperature": 2, "alpha": 0.9, "label_smoothing": 0.0}
    with pytest.raises(ConfigError, match=r"unknown key 'wieght'. Did you mean 'weight'"):
        parse_terms([{"name": "kd", "wieght": 1.0}])
    with pytest.raises(ConfigError, match="non-empty list"):
        parse_terms([])


# --- numerics at the edges: extreme logits, bad temperatures, p < 1, tiny batches --------------------------------
def _dkd_probability_space(s, t, y, alpha, beta, T):
    """The previous implementation (mdistiller's): probabilities clamped at 1e-8, the target masked by -1000."""
    gt = F.one_hot(y, s.shape[1]).to(s.dtype)
    p_s, p_t = F.softmax(s / T, dim=1), F.softmax(t / T, dim=1)
    bin_s = torch.stack([(p_s * gt).sum(1), (p_s * (1 - gt)).sum(1)], dim=1).clamp_min(1e-8)
    bin_t = torch.stack([(p_t * gt).sum(1), (p_t * (1 - gt)).sum(1)], dim=1).clamp_min(1e-8)
    tckd = F.kl_div(bin_s.log(), bin_t, reduction="batchmean") * T * T
    nckd = F.kl_div(F.log_softmax(s / T - 1000.0 * gt, dim=1), F.softmax(t / T - 1000.0 * gt, dim=1),
                    reduction="batchmean") * T * T
    return alpha * tckd + beta * nckd


@pytest.mark.parametrize("alpha,beta,T", [(1.0, 8.0, 4.0), (1.0, 0.0, 4.0), (0.0, 1.0, 1.0), (0.5, 2.0, 2.0)])
def test_dkd_matches_the_probability_space_formula_on_moderate_logits(alpha, beta, T):
    s, t = 3.0 * _rand(16, 10), 3.0 * _rand(16, 10, seed=1)
    y = torch.arange(16) % 10
    s1, s2 = s.clone().requires_grad_(), s.clone().requires_grad_()
    got = dkd_loss(s1, t, y, alpha=alpha, beta=beta, temperature=T)
    want = _dkd_probability_space(s2, t, y, alpha, beta, T)
    got.backward(), want.backward()
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(s1.grad, s2.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scale", [100.0, 1e4])
def test_dkd_gives_a_confidently_wrong_student_a_finite_gradient_towards_the_teacher(scale):
    T, n = 4.0, 2
    s = torch.tensor([[-scale, scale, 0.0], [0.0, -scale, scale]], requires_grad=True)  # sure of a wrong class
    t = torch.tensor([[scale, 0.0, 0.0], [0.0, scale, 0.0]])                            # sure of the label
    y = torch.tensor([0, 1])
    tckd = dkd_loss(s, t, y, alpha=1.0, beta=0.0, temperature=T)
    tckd.backward()
    # TCKD = T² · KL(b_t || b_s) per sample, b = (p_target, 1 - p_target); here -log b_s[target] = 2·scale/T +
    # log(1 + e^(-scale/T) + ...) and b_t is (1, ~0), so TCKD is 2·scale·T to float precision
    assert math.isfinite(tckd.item()) and tckd.item() == pytest.approx(2 * scale * T, rel=1e-5)
    # d TCKD / d z_target = T · (b_s[target] - b_t[target]) / n = -T / n: full strength, towards the label
    rows = torch.arange(n)
    torch.testing.assert_close(s.grad[rows, y], torch.full((n,), -T / n))
    s.grad = None
    full = dkd_loss(s, t, y, alpha=1.0, beta=8.0, temperature=T)
    full.backward()
    assert math.isfinite(full.item()) and bool(torch.isfinite(s.grad).all())
    assert (s.grad[rows, y] < 0).all()                           # raise the label
    assert s.grad[0, 1] > 0 and s.grad[1, 2] > 0                 # lower the wrongly favoured class


def test_dkd_as_a_loss_term_ramps_in_over_its_first_epoch_by_default():
    from edgestill.compress.distill.features import build_objective

    term = LossTerm(name="dkd")
    assert term.resolved()["warmup_epochs"] == 1.0 and term.resolved()["beta"] == 1.0
    objective = build_objective([term], {"logits": (5,)}, {"logits": (5,)})
    s, t, y = _rand(6, 5), _rand(6, 5, seed=1), torch.tensor([0, 1, 2, 3, 4, 0])
    full = dkd_loss(s, t, y, alpha=1.0, beta=1.0, temperature=4.0).item()
    at = {e: objective(s, t, y, {}, {}, epoch=e)[0].item() for e in (0.0, 0.25, 1.0, 3.0)}
    assert at[0.0] == 0.0 and at[0.25] == pytest.approx(full / 4, rel=1e-6)
    assert at[1.0] == pytest.approx(full, rel=1e-6) and at[3.0] == pytest.approx(full, rel=1e-6)


def test_dkd_needs_two_classes():
    with pytest.raises(InputError, match=r"dkd needs at least 2 classes.*\[3, 1\]"):
        dkd_loss(torch.zeros(3, 1), torch.zeros(3, 1), torch.zeros(3, dtype=torch.long), alpha=1.0, beta=1.0,
                 temperature=4.0)


BAD_TEMPERATURES = [0.0, -4.0, float("nan"), float("inf"), 101.0]


@pytest.mark.parametrize("temperature", BAD_TEMPERATURES)
@pytest.mark.parametrize("loss", ["kd", "dkd", "tfkd"])
def test_bad_temperature_is_a_config_error_naming_the_range(loss, temperature):
    s, y = _rand(4, 5), torch.tensor([0, 1, 2, 3])
    opts = {"dkd": {"alpha": 1.0, "beta": 1.0}, "kd": {"alpha": 0.9}, "tfkd": {"alpha": 0.5, "correct_prob": 0.9}}
    with pytest.raises(ConfigError, match=rf"{loss} temperature must be a number in \(0, 100\], got {temperature!r}"):
        LOSSES.get(loss).fn(s, _rand(4, 5, seed=1), y, temperature=temperature, **opts[loss])
    with pytest.raises(ConfigError, match=rf"loss '{loss}': temperature={temperature!r} is not valid.*\(0, 100\]"):
        parse_terms([{"name": loss, "options": {"temperature": temperature}}])


@pytest.mark.parametrize("p", [0.5, 0.0, -2.0, float("nan"), float("inf")])
def test_attention_transfer_rejects_p_below_one(p):
    f = torch.relu(_rand(2, 3, 4, 4))  # exact zeros, where |f|^p with p < 1 has an infinite slope
    with pytest.raises(ConfigError, match=rf"at p .* must be a finite number >= 1, got {p!r}"):
        at_loss(f, _rand(2, 3, 4, 4, seed=1), p=p)
    with pytest.raises(ConfigError, match=r"loss 'at': p=.* is not valid; p must be a number >= 1"):
        LossTerm(name="at", options={"pairs": [["a", "b"]], "p": p})


def test_attention_transfer_with_p_one_has_finite_gradients_at_zero_activations():
    f = torch.relu(_rand(2, 3, 4, 4)).requires_grad_()
    at_loss(f, _rand(2, 3, 4, 4, seed=1), p=1.0).backward()
    assert bool(torch.isfinite(f.grad).all()) and f.grad.abs().sum() > 0


@pytest.mark.parametrize("n", [1, 2])
def test_rkd_on_a_batch_without_pairs_or_triplets_is_zero_with_a_zero_gradient(n):
    s = _rand(n, 6).requires_grad_()
    loss = rkd_loss(s, _rand(n, 6, seed=1))
    loss.backward()  # also when it is the only term: the zero stays on the student's graph
    assert loss.item() == 0.0 and torch.equal(s.grad, torch.zeros_like(s))
    fmap = _rand(n, 4, 3, 3).requires_grad_()  # 4-D features are pooled first
    rkd_loss(fmap, _rand(n, 8, 3, 3, seed=2)).backward()
    assert torch.equal(fmap.grad, torch.zeros_like(fmap))
