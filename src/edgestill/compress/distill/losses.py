"""Distillation losses behind a registry: response (KD, DKD), feature (FitNets, AT), relation (RKD, SP, PKT)
and teacher-free (Tf-KD) terms, combined as a weighted sum of :class:`LossTerm`.

Every loss here is a pure function of tensors. :class:`~edgestill.compress.distill.features.Objective` hooks the
named layers, builds the learned adapters and calls these functions.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from edgestill.errors import ConfigError, InputError, did_you_mean
from edgestill.registry import Registry

LossFn = Callable[..., Any]
Family = Literal["response", "feature", "relation", "self"]
ADAPTERS = ("conv1x1", "linear", "none")


@dataclass(frozen=True, kw_only=True)
class LossSpec:
    """A registered loss: its function, family, options with defaults, and what it needs.

    ``kind`` says how :class:`Objective` calls ``fn``: ``logits`` as ``fn(s_logits, t_logits, labels, **opts)``;
    ``pairs`` as ``fn(s_feature, t_feature, **opts)`` once per (student layer, teacher layer) pair, averaged.
    """

    name: str
    family: Family
    fn: LossFn
    defaults: Mapping[str, Any]
    needs_teacher: bool = True
    kind: Literal["logits", "pairs"] = "logits"
    pairs_required: bool = False
    doc: str = ""


LOSSES: Registry[LossSpec] = Registry("loss term")


def loss_names() -> list[str]:
    """Names accepted in :class:`LossTerm`."""
    return LOSSES.names()


def _register(name: str, family: Family, defaults: dict[str, Any], **kw: Any) -> Callable[[LossFn], LossFn]:
    def add(fn: LossFn) -> LossFn:
        LOSSES.register(name, LossSpec(name=name, family=family, fn=fn, defaults=MappingProxyType(defaults),
                                       doc=(fn.__doc__ or "").strip().splitlines()[0], **kw))
        return fn

    return add


# ----------------------------------------------------------------------------------------------- response
def _check_temperature(loss: str, temperature: float) -> None:
    """Raise ConfigError unless ``temperature`` is a finite number in (0, 100] (what :class:`LossTerm` accepts).

    The logits are divided by it: 0 gives NaN, a negative value reverses the ranking, inf flattens everything.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not 0 < temperature <= 100:
        raise ConfigError(f"{loss} temperature must be a number in (0, 100], got {temperature!r}. Typical values "
                          "are 1 to 8 (4 is the usual choice).")


@_register("ce", "response", {"label_smoothing": 0.0}, needs_teacher=False)
def ce_loss(student_logits, teacher_logits, labels, *, temperature: float = 1.0, alpha: float = 0.0,
            label_smoothing: float = 0.0):
    """Cross-entropy on the labels only; the teacher arguments are accepted and ignored."""
    import torch.nn.functional as F

    return F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)


@_register("kd", "response", {"temperature": 4.0, "alpha": 0.9, "label_smoothing": 0.0})
def kd_loss(student_logits, teacher_logits, labels, *, temperature: float, alpha: float,
            label_smoothing: float = 0.0):
    """Response KD: ``alpha * T² * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, labels)``.

    The KL term is averaged over the batch (``batchmean``); the T² factor keeps its gradient scale independent
    of the temperature. With ``teacher_logits=None`` this is plain cross-entropy.

    Raises:
        ConfigError: temperature is not in (0, 100] or alpha is outside [0, 1].
    """
    import torch.nn.functional as F

    _check_temperature("kd", temperature)
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"kd alpha (weight of the teacher term) must be in [0, 1], got {alpha!r}.")
    ce = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    if teacher_logits is None:
        return ce
    kl = F.kl_div(F.log_softmax(student_logits / temperature, dim=1), F.log_softmax(teacher_logits / temperature, dim=1),
                  reduction="batchmean", log_target=True)
    return alpha * temperature * temperature * kl + (1.0 - alpha) * ce


# DKD defaults for short schedules (a few epochs). The paper's beta = 8 was tuned for CIFAR-100 over 240 epochs with
# a 20-epoch warm-up. Measured here at initialisation (built-in synthetic-shapes data, the demo teacher at 64.6 %
# test accuracy, fresh demo students at widths 0.25, 0.5 and 1.25 with 3 seeds each, T = 4, 4 batches of 128):
#   beta 8: beta * NCKD is 91 % of ce + dkd, its gradient 13-18x that of CE; the objective's gradient is 11x that
#           of the default kd term (15.5 vs 1.38), so at a learning rate tuned for KD a DKD step is 11x larger;
#   beta 1: 56 % of the loss, 1.7-2.3x the CE gradient, the objective's gradient 1.9x KD's.
# KD weighs NCKD by the teacher's non-target mass (1 - 0.28 = 0.72 here at T = 4), so beta = 1 still stresses the
# non-target classes more than KD does, which is DKD's point. The warm-up ramps the term in over the first epoch
# (12 % of an 8-epoch run; the paper: 20 of 240 epochs, 8 %; its ImageNet setting: 1 of 100).
DKD_DEFAULTS = MappingProxyType({"alpha": 1.0, "beta": 1.0, "temperature": 4.0, "warmup_epochs": 1.0})


@_register("dkd", "response", dict(DKD_DEFAULTS))
def dkd_loss(student_logits, teacher_logits, labels, *, alpha: float, beta: float, temperature: float,
             warmup_epochs: float = 0.0, epoch: float = 0.0):
    """Decoupled KD (Zhao et al. 2022): ``alpha * TCKD + beta * NCKD``, each scaled by T²; no CE (add a ``ce`` term).

    TCKD is the KL between the binary (target, non-target) distributions; NCKD the KL between the distributions
    over the non-target classes only. Both are computed from log-softmaxes (the binary split as a log-softmax
    over [target logit, logsumexp of the others]), so a confidently wrong student (logits of ±1e4) still gets a
    finite gradient pointing towards the teacher, where clamping the probabilities would give none.

    The term ramps up linearly over the first ``warmup_epochs`` epochs: ``min(1, epoch / warmup_epochs)``, where
    ``epoch`` is the fractional epoch the trainer passes (0 at the first step). As a :class:`LossTerm` the defaults
    are ``DKD_DEFAULTS`` (beta 1, warm-up 1 epoch: chosen for schedules of a few epochs, see the comment above it);
    for the paper's long schedules use beta 8 and a warm-up of about 8 % of the epochs. Called directly, there is
    no warm-up unless ``warmup_epochs`` is given.

    Raises:
        ConfigError: temperature is not in (0, 100].
        InputError: fewer than two classes (there is no non-target class to decouple).
    """
    import torch
    import torch.nn.functional as F

    _check_temperature("dkd", temperature)
    n, k = student_logits.shape
    if k < 2:
        raise InputError(f"dkd needs at least 2 classes, got logits of shape {list(student_logits.shape)}; with one "
                         "class there is no non-target part. Use ce or kd.")
    T = temperature
    target = F.one_hot(labels, k).bool()

    def binary_log_probs(z):  # log [p(target), p(non-target)], exact however large the logits
        z_target = z.gather(1, labels[:, None])
        z_rest = z.masked_fill(target, float("-inf")).logsumexp(1, keepdim=True)
        return F.log_softmax(torch.cat([z_target, z_rest], dim=1), dim=1)

    def non_target_log_probs(z):  # log-softmax over the k - 1 non-target classes only
        return F.log_softmax(z[~target].reshape(n, k - 1), dim=1)

    zs, zt = student_logits / T, teacher_logits / T
    tckd = F.kl_div(binary_log_probs(zs), binary_log_probs(zt), reduction="batchmean", log_target=True) * T * T
    nckd = F.kl_div(non_target_log_probs(zs), non_target_log_probs(zt), reduction="batchmean", log_target=True) * T * T
    ramp = min(1.0, epoch / warmup_epochs) if warmup_epochs > 0 else 1.0
    return ramp * (alpha * tckd + beta * nckd)


@_register("tfkd", "self", {"temperature": 4.0, "alpha": 0.5, "correct_prob": 0.9}, needs_teacher=False)
def tfkd_loss(student_logits, teacher_logits, labels, *, temperature: float, alpha: float, correct_prob: float):
    """Teacher-free KD (Yuan et al. 2020, Tf-KD-reg): KD from a virtual teacher that puts ``correct_prob`` on the label.

    ``(1 - alpha) * CE + alpha * T² * KL(softmax(log q / T) || softmax(s / T))`` where q is ``correct_prob`` on the
    true class and the rest spread evenly; the teacher arguments are ignored.

    This is the paper's formula (KD from the virtual teacher's distribution softened by T, with KD's T² scale), not
    the released code (``loss_kd_regularization`` in yuanli2333/Teacher-free-Knowledge-Distillation), which differs
    in five ways: its virtual teacher is ``softmax(q / T)``, a softmax of the probabilities themselves (almost
    uniform at its T = 20); the student's logits are not divided by T; the KL is averaged over batch and classes
    (``nn.KLDivLoss()``'s ``mean``, 1/K of ``batchmean``); it is scaled by a tuned ``multiplier`` (1 to 1000 in its
    configs) instead of T²; and ``correct_prob`` is fixed at 0.99. Hyperparameters tuned for that code do not carry
    over to this term.

    Raises:
        ConfigError: temperature is not in (0, 100].
    """
    import torch
    import torch.nn.functional as F

    _check_temperature("tfkd", temperature)
    k = student_logits.shape[1]
    q = torch.full_like(student_logits, (1.0 - correct_prob) / max(k - 1, 1))
    q = q.scatter(1, labels[:, None], correct_prob)
    virtual = q.clamp_min(1e-8).log()
    kl = F.kl_div(F.log_softmax(student_logits / temperature, dim=1), F.log_softmax(virtual / temperature, dim=1),
                  reduction="batchmean", log_target=True)
    return (1.0 - alpha) * F.cross_entropy(student_logits, labels) + alpha * temperature ** 2 * kl


def embedding_loss(student_emb, teacher_emb, *, mse_weight: float = 1.0, cosine_weight: float = 1.0):
    """Embedding distillation: ``mse_weight * MSE + cosine_weight * mean(1 - cos)`` between (N, D) embeddings.

    MSE matches the scale of each feature, the cosine term the direction (what retrieval by cosine uses). Not a
    registered term: :mod:`edgestill.compress.distill.text` calls it on pooled sentence embeddings.

    Raises:
        InputError: the two embeddings differ in shape (a narrower student needs a projection to the teacher's width).
    """
    import torch.nn.functional as F

    if student_emb.shape != teacher_emb.shape:
        raise InputError(f"embedding loss: student embeddings {list(student_emb.shape)} and teacher embeddings "
                         f"{list(teacher_emb.shape)} differ in shape; project the student to the teacher's width.")
    mse = F.mse_loss(student_emb, teacher_emb)
    cos = F.cosine_similarity(student_emb, teacher_emb, dim=1, eps=1e-8)
    return mse_weight * mse + cosine_weight * (1.0 - cos).mean()


# ------------------------------------------------------------------------------------------------ feature
def _match_spatial(s, t):
    """Average-pool the larger of two N×C×H×W maps to the other's H×W; other ranks pass through."""
    import torch.nn.functional as F

    if s.ndim == 4 and t.ndim == 4 and s.shape[2:] != t.shape[2:]:
        if s.shape[2] * s.shape[3] > t.shape[2] * t.shape[3]:
            s = F.adaptive_avg_pool2d(s, t.shape[2:])
        else:
            t = F.adaptive_avg_pool2d(t, s.shape[2:])
    return s, t


@_register("fitnets", "feature", {"pairs": None, "adapter": "conv1x1"}, kind="pairs", pairs_required=True)
def fitnets_loss(student_feature, teacher_feature):
    """FitNets hints (Romero et al. 2015): MSE between the adapted student feature and the teacher's."""
    import torch.nn.functional as F

    s, t = _match_spatial(student_feature, teacher_feature)
    return F.mse_loss(s, t)


@_register("at", "feature", {"pairs": None, "p": 2.0}, kind="pairs", pairs_required=True)
def at_loss(student_feature, teacher_feature, *, p: float = 2.0):
    """Attention transfer (Zagoruyko & Komodakis 2017): distance of normalised ``mean_c |f|^p`` spatial maps.

    Raises:
        ConfigError: ``p`` < 1 (the paper uses 2): below 1, ``|f|^p`` has an infinite slope at 0, so the exact
            zeros a ReLU produces give NaN gradients.
    """
    import torch.nn.functional as F

    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 1 <= p < math.inf:
        raise ConfigError(f"at p (the exponent of |feature|) must be a finite number >= 1, got {p!r}: below 1 the "
                          "gradient at zero activations is infinite (NaN). The paper uses 2.")
    s, t = _match_spatial(student_feature, teacher_feature)

    def attention(f):
        return F.normalize(f.abs().pow(p).mean(1).flatten(1), dim=1)

    return (attention(s) - attention(t)).pow(2).mean()


# ----------------------------------------------------------------------------------------------- relation
def _embedding(f):
    """A 2-D (N, D) view: 4-D maps are global-average-pooled, anything else flattened."""
    return f.mean((2, 3)) if f.ndim == 4 else f.flatten(1)


def _pdist(e):
    import torch

    sq = e.pow(2).sum(1)
    d = (sq[:, None] + sq[None, :] - 2 * e @ e.t()).clamp_min(1e-12).sqrt()
    return d * (1 - torch.eye(len(e), dtype=e.dtype, device=e.device))


@_register("rkd", "relation", {"pairs": None, "distance": 1.0, "angle": 2.0}, kind="pairs")
def rkd_loss(student_feature, teacher_feature, *, distance: float = 1.0, angle: float = 2.0):
    """Relational KD (Park et al. 2019): Huber loss on normalised pairwise distances plus triplet angles.

    A batch of one sample has no pair and one of two no triplet of distinct samples: the distance (angle) part is
    then 0, with a zero gradient, so a short last batch does not turn the loss into NaN.
    """
    import torch.nn.functional as F

    s, t = _embedding(student_feature), _embedding(teacher_feature)
    loss = s.flatten()[:0].sum()  # 0, on the student's graph: backward works even when no part applies
    if distance and len(s) >= 2:
        td, sd = _pdist(t), _pdist(s)
        td = td / td[td > 0].mean().clamp_min(1e-12)
        sd = sd / sd[sd > 0].mean().clamp_min(1e-12)
        loss = loss + distance * F.smooth_l1_loss(sd, td)
    if angle and len(s) >= 3:
        def angles(e):
            v = F.normalize(e[None, :, :] - e[:, None, :], p=2, dim=2)
            return (v @ v.transpose(1, 2)).flatten()

        loss = loss + angle * F.smooth_l1_loss(angles(s), angles(t))
    return loss


@_register("sp", "relation", {"pairs": None}, kind="pairs")
def sp_loss(student_feature, teacher_feature):
    """Similarity-preserving KD (Tung & Mori 2019): squared distance of row-normalised batch Gram matrices."""
    import torch.nn.functional as F

    s, t = student_feature.flatten(1), teacher_feature.flatten(1)
    gs, gt = F.normalize(s @ s.t(), dim=1), F.normalize(t @ t.t(), dim=1)
    return (gs - gt).pow(2).sum() / (len(s) ** 2)


@_register("pkt", "relation", {"pairs": None}, kind="pairs")
def pkt_loss(student_feature, teacher_feature, eps: float = 1e-7):
    """Probabilistic KT (Passalis & Tefas 2018): KL between cosine-similarity conditional distributions."""
    import torch.nn.functional as F

    s, t = F.normalize(_embedding(student_feature), dim=1), F.normalize(_embedding(teacher_feature), dim=1)
    ps, pt = (s @ s.t() + 1) / 2, (t @ t.t() + 1) / 2
    ps, pt = ps / ps.sum(1, keepdim=True), pt / pt.sum(1, keepdim=True)
    return (pt * ((pt + eps) / (ps + eps)).log()).mean()


# ------------------------------------------------------------------------------------------------- terms
_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "temperature": (lambda v: 0 < v <= 100, "a number in (0, 100]"),
    "alpha": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "label_smoothing": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "correct_prob": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "beta": (lambda v: v >= 0, "a number >= 0"),
    "warmup_epochs": (lambda v: v >= 0, "a number >= 0"),
    "p": (lambda v: v >= 1, "a number >= 1 (below 1 zero activations get NaN gradients; the paper uses 2)"),
    "distance": (lambda v: v >= 0, "a number >= 0"),
    "angle": (lambda v: v >= 0, "a number >= 0"),
}


@dataclass(frozen=True, kw_only=True)
class LossTerm:
    """One weighted term of the objective: a registered loss ``name``, its ``weight`` and its ``options``.

    ``options`` override the loss's defaults (see ``LOSSES.get(name).defaults``). Layer pairs are given as
    ``options={"pairs": [["student.module", "teacher.module"], ...]}`` by module name
    (``dict(model.named_modules())`` keys); the relation losses default to the logits when no pairs are given.

    Raises:
        UnknownNameError: ``name`` is not a registered loss (the message lists them and the closest).
        ConfigError: an unknown option (closest suggested), a bad value, or a negative weight.
    """

    name: str
    weight: float = 1.0
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        spec = LOSSES.get(self.name)
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or not (
                math.isfinite(self.weight) and self.weight >= 0):
            raise ConfigError(f"loss {self.name!r}: weight must be a finite number >= 0, got {self.weight!r}.")
        if not isinstance(self.options, Mapping):
            raise ConfigError(f"loss {self.name!r}: options must be a mapping of option name to value, "
                              f"got {type(self.options).__name__}.")
        for key, value in self.options.items():
            if key not in spec.defaults:
                valid = ", ".join(spec.defaults) or "(none)"
                raise ConfigError(f"loss {self.name!r}: unknown option {key!r}.{did_you_mean(key, spec.defaults)} "
                                  f"Valid options of {self.name!r}: {valid}.")
            if key == "pairs":
                continue
            if key == "adapter":
                if value not in ADAPTERS:
                    raise ConfigError(f"loss {self.name!r}: adapter={value!r} is not valid; use one of "
                                      f"{', '.join(ADAPTERS)}.")
                continue
            ok, valid = _CHECKS[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
                raise ConfigError(f"loss {self.name!r}: {key}={value!r} is not valid; {key} must be {valid}.")
        pairs = self.options.get("pairs")
        if pairs is not None:
            if (not isinstance(pairs, Sequence) or isinstance(pairs, str) or not pairs or any(
                    isinstance(p, str) or not isinstance(p, Sequence) or len(p) != 2
                    or not all(isinstance(n, str) and n for n in p) for p in pairs)):
                raise ConfigError(f"loss {self.name!r}: pairs must be a non-empty list of [student_layer, "
                                  f"teacher_layer] module-name pairs, got {pairs!r}.")
        elif spec.pairs_required:
            raise ConfigError(f"loss {self.name!r} needs layer pairs: options={{'pairs': [['student.layer', "
                              f"'teacher.layer']]}} with module names of the two models.")
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    @property
    def spec(self) -> LossSpec:
        return LOSSES.get(self.name)

    def resolved(self) -> dict[str, Any]:
        """The loss's defaults overridden by ``options``."""
        return {**self.spec.defaults, **self.options}

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """(student layer, teacher layer) names; empty means the logits."""
        return [(a, b) for a, b in (self.options.get("pairs") or [])]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight,
                "options": {k: [list(p) for p in v] if k == "pairs" else v for k, v in self.options.items()}}


_TERM_KEYS = ("name", "weight", "options")


def parse_terms(spec: Sequence[Mapping[str, Any]]) -> tuple[LossTerm, ...]:
    """Build loss terms from plain data: ``[{"name": "kd", "weight": 1.0, "options": {"temperature": 4}}, ...]``.

    Raises:
        ConfigError: not a list of mappings, a missing ``name``, an unknown key (closest suggested), a bad value.
        UnknownNameError: an unknown loss name.
    """
    if isinstance(spec, (str, bytes)) or not isinstance(spec, Sequence) or not spec:
        raise ConfigError(f"loss terms must be a non-empty list like [{{'name': 'kd', 'weight': 1.0}}], got {spec!r}.")
    terms = []
    for i, item in enumerate(spec):
        if not isinstance(item, Mapping) or "name" not in item:
            raise ConfigError(f"loss term {i} must be a mapping with a 'name' key (and optional 'weight', 'options'), "
                              f"got {item!r}. Valid losses: {', '.join(loss_names())}.")
        for key in item:
            if key not in _TERM_KEYS:
                raise ConfigError(f"loss term {i} ({item['name']!r}): unknown key {key!r}.{did_you_mean(str(key), _TERM_KEYS)}"
                                  f" Valid keys: {', '.join(_TERM_KEYS)}; loss options go under 'options'.")
        terms.append(LossTerm(name=item["name"], weight=item.get("weight", 1.0), options=item.get("options") or {}))
    return tuple(terms)
