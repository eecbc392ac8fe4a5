"""Token-level KD for causal LMs: forward KL, reverse KL and generalized JSD on the teacher's next-token
distributions, from full teacher logits (a loaded teacher) or from an offline top-k cache
(:mod:`edgestill.compress.distill.llm_cache`), optionally on-policy (GKD), and the error truncation to top-k costs.

Conventions (all divergences per token, averaged over the completion tokens, times T²):

- p = softmax(teacher / T), q = softmax(student / T); forward KL = KL(p‖q), reverse KL = KL(q‖p).
- Generalized JSD as in GKD (Agarwal et al. 2024, "On-Policy Distillation of Language Models", eq. 1):
  ``JSD(β) = β KL(p‖m) + (1 - β) KL(q‖m)`` with ``m = β p + (1 - β) q``. For small β it is ≈ β·KL(p‖q) (forward
  KL), near 1 ≈ (1 - β)·KL(q‖p) (reverse KL); β = 0 and β = 1 are defined as exactly forward and reverse KL (the
  limits of JSD/β and JSD/(1 - β); TRL's GKDTrainer does the same).
- Top-k teacher (values + indices, the rest of the vocabulary unknown), two rules for the mass outside the top-k:
  ``rest`` (default): one extra outcome "any other token"; the teacher's rest mass comes from the cache's logsumexp
  of the other logits (exact at T = 1; at T ≠ 1 the tail is taken as flat: its lse at T is ``log n + (lse₁ - log
  n) / T`` for n tail tokens), the student's from its own logits outside those k ids. KL over k + 1 outcomes: a
  student that puts mass outside the teacher's top-k is penalised. ``renorm``: both distributions renormalised over
  the teacher's k ids (the student's mass elsewhere is not seen). truncation_report measures both; see its numbers.
  At k = vocab both equal the full-logit loss.
- Everything is computed in float32 log space; -inf log-probs are floored at -1e30 so a zero-probability outcome
  contributes 0 (never 0·inf = NaN) and a gradient exists at extreme logits.
"""

from __future__ import annotations

import math
import numbers
import os
import random
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from edgestill.compress.distill.llm_cache import TopKCache, check_sequences, run_teacher, topk_split, vocab_of
from edgestill.compress.distill.losses import _check_temperature
from edgestill.errors import ConfigError, InputError

Kind = Literal["fkl", "rkl", "jsd"]
Rule = Literal["rest", "renorm"]
KINDS = ("fkl", "rkl", "jsd")
RULES = ("rest", "renorm")
IGNORE = -100
_FLOOR = -1e30


def check_kd_options(*, kind: str, beta: float, temperature: float, rule: str = "rest") -> None:
    """Raise ConfigError unless kind, β, temperature and the top-k rule are valid."""
    if kind not in KINDS:
        raise ConfigError(f"token KD kind must be one of {', '.join(KINDS)} (forward KL, reverse KL, generalized "
                          f"JSD), got {kind!r}.")
    if rule not in RULES:
        raise ConfigError(f"top-k rule must be one of {', '.join(RULES)} (rest: one bucket for the teacher's mass "
                          f"outside the top-k; renorm: renormalise over the top-k), got {rule!r}.")
    _check_temperature(f"token KD ({kind})", temperature)
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not 0 <= beta <= 1:
        raise ConfigError(f"jsd beta must be a number in [0, 1] (0: forward KL, 1: reverse KL; GKD uses 0.1 to "
                          f"0.9), got {beta!r}.")


def _kl(log_a: Any, log_b: Any) -> Any:
    """KL(a‖b) per row from log-probabilities (already floored), summed over the last dim."""
    return (log_a.exp() * (log_a - log_b)).sum(-1)


def divergence(teacher_log_probs: Any, student_log_probs: Any, *, kind: Kind, beta: float = 0.5) -> Any:
    """Per-row divergence [N] between the teacher's and the student's log-probabilities [N, S] on one support.

    See the module docstring for the conventions (forward KL(p‖q), reverse KL(q‖p), GKD's JSD(β)).
    """
    import torch

    lp = teacher_log_probs.float().clamp_min(_FLOOR)
    lq = student_log_probs.float().clamp_min(_FLOOR)
    if kind == "fkl" or (kind == "jsd" and beta == 0):
        return _kl(lp, lq)
    if kind == "rkl" or (kind == "jsd" and beta == 1):
        return _kl(lq, lp)
    lm = torch.logaddexp(lp + math.log(beta), lq + math.log1p(-beta))
    return beta * _kl(lp, lm) + (1 - beta) * _kl(lq, lm)


def full_kd_loss(student_logits: Any, teacher_logits: Any, *, kind: Kind = "fkl", beta: float = 0.5,
                 temperature: float = 1.0) -> Any:
    """Token KD on full logits [N, V] (N selected tokens): mean divergence × T².

    Raises:
        ConfigError: bad kind, beta or temperature.
        InputError: the two vocabularies differ.
    """
    import torch.nn.functional as F

    check_kd_options(kind=kind, beta=beta, temperature=temperature)
    _same_vocab(student_logits.shape[-1], teacher_logits.shape[-1], "teacher")
    lq = F.log_softmax(student_logits.float() / temperature, -1)
    lp = F.log_softmax(teacher_logits.float() / temperature, -1)
    return _mean(divergence(lp, lq, kind=kind, beta=beta), student_logits) * temperature ** 2


def topk_kd_loss(student_logits: Any, top_values: Any, top_indices: Any, rest_lse: Any | None = None, *,
                 kind: Kind = "fkl", beta: float = 0.5, temperature: float = 1.0, rule: Rule = "rest") -> Any:
    """Token KD against a top-k teacher: student logits [N, V], the teacher's top-k raw logits and ids [N, k] and
    (rule ``rest``) the logsumexp of its other raw logits [N]; mean divergence × T².

    Only [N, k] teacher tensors are used; the student's [N, V] logits are read once more for the rest bucket.

    Raises:
        ConfigError: bad kind, beta, temperature or rule, or rule ``rest`` without ``rest_lse``.
    """
    import torch
    import torch.nn.functional as F

    check_kd_options(kind=kind, beta=beta, temperature=temperature, rule=rule)
    s = student_logits.float()
    s = s / temperature if temperature != 1 else s
    idx = top_indices.long()
    tv = top_values.float() / temperature
    s_top = s.gather(-1, idx)
    if rule == "renorm":
        lp, lq = F.log_softmax(tv, -1), F.log_softmax(s_top, -1)
    else:
        if rest_lse is None:
            raise ConfigError("top-k rule 'rest' needs the teacher's logsumexp outside the top-k (rest_lse); a "
                              "TopKCache provides it. Use rule='renorm' without it.")
        t_rest = rest_at_temperature(rest_lse.float(), s.shape[-1] - idx.shape[-1], temperature)
        lp = F.log_softmax(torch.cat([tv, t_rest[..., None]], -1), -1)
        lq = F.log_softmax(torch.cat([s_top, _rest_logsumexp(s, s_top, idx)[..., None]], -1), -1)
    return _mean(divergence(lp, lq, kind=kind, beta=beta), student_logits) * temperature ** 2


_DIRECT_REST = -1e-2
"""log of the top-k's share of the student's mass above which its rest is summed directly (see _rest_logsumexp)."""


def _rest_logsumexp(s: Any, s_top: Any, idx: Any) -> Any:
    """logsumexp of each row of ``s`` [N, V] outside the columns ``idx``, with one pass over ``s`` for most rows.

    ``lse_all + log(1 - exp(lse_top - lse_all))`` is exact to ~1e-4 relative while the rest holds more than 1 % of
    the mass (the float32 error of ``lse_top - lse_all``, ~1e-6, against ``1 - exp`` >= 1e-2); rows where the top-k
    holds more are summed directly over the other columns (no cancellation), so a confident student's tiny rest is
    exact too. Measured: the cache path's step at vocab 8192 (perf/llm_cache_step.py) instead of a masked copy of
    every row.
    """
    import torch

    lse_all = s.logsumexp(-1)
    share = (s_top.logsumexp(-1) - lse_all).clamp_max(0.0)
    rest = lse_all + torch.log(-torch.expm1(share.clamp_max(_DIRECT_REST)))
    close = share > _DIRECT_REST
    if close.any():
        rows = close.nonzero().squeeze(-1)
        direct = s[rows].scatter(-1, idx[rows], float("-inf")).logsumexp(-1)
        rest = rest.index_put((rows,), direct)
    return rest


def rest_at_temperature(rest_lse: Any, n_tail: int, temperature: float) -> Any:
    """The tail's logsumexp at ``temperature`` from its logsumexp at 1, taking the ``n_tail`` tail logits as equal
    (exact at T = 1, or when they are); -inf when there is no tail."""
    import torch

    if n_tail == 0:
        return torch.full_like(rest_lse, float("-inf"))
    log_n = math.log(n_tail)
    return log_n + (rest_lse - log_n) / temperature


def _mean(per_token: Any, like: Any) -> Any:
    """Mean over tokens; 0 on the student's graph when there are none (a batch without completion tokens)."""
    return per_token.mean() if per_token.numel() else like.sum() * 0.0


def _same_vocab(student: int, other: int, what: str) -> None:
    if student != other:
        raise InputError(f"the student's vocabulary has {student} tokens, the {what}'s {other}: token KD needs the "
                         "same tokenizer on both sides. Build the student with the teacher's tokenizer.")


def completion_mask(labels: Any) -> Any:
    """[B, T-1] bool: logits at position t predict token t + 1; True where that token is a completion token."""
    return labels[:, 1:] != IGNORE


class TokenKDObjective:
    """The objective ``train_causal_lm`` calls: ``objective(student_logits [B, T, V], batch) -> loss``.

    ``loss = alpha * KD + (1 - alpha) * CE`` on the completion tokens (``batch["labels"] != -100``, the labels being
    the ground-truth or the teacher's tokens). The teacher is either a loaded causal LM (full logits, run on each
    batch) or a top-k cache (a :class:`TopKCache` or its folder: the teacher is never loaded; rows found by
    ``batch["index"]`` and checked against ``batch["input_ids"]``).

    On-policy (GKD): with probability ``on_policy`` a batch's prompts are completed by the student itself (sampled,
    ``max_new_tokens``), and the loss is the KD term alone on those tokens, scored by the loaded teacher; it needs
    ``student`` and a loaded teacher.

    Raises:
        ConfigError: bad kind, beta, temperature, rule, alpha, on_policy or max_new_tokens; no teacher or cache;
            on-policy without a loaded teacher or without ``student``.
        InputError: a cache that does not open (see :meth:`TopKCache.open`).
    """

    def __init__(self, teacher_or_cache: Any, *, kind: Kind = "fkl", beta: float = 0.5, temperature: float = 1.0,
                 alpha: float = 0.9, rule: Rule = "rest", on_policy: float = 0.0, student: Any = None,
                 max_new_tokens: int = 64, seed: int = 0, expect: Mapping[str, Any] | None = None) -> None:
        check_kd_options(kind=kind, beta=beta, temperature=temperature, rule=rule)
        for name, value in (("alpha", alpha), ("on_policy", on_policy)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
                raise ConfigError(f"token KD {name} must be a number in [0, 1], got {value!r}.")
        if isinstance(teacher_or_cache, (str, os.PathLike)):
            teacher_or_cache = TopKCache.open(teacher_or_cache, expect=expect)
        self.cache: TopKCache | None = teacher_or_cache if isinstance(teacher_or_cache, TopKCache) else None
        if self.cache is None and not callable(getattr(teacher_or_cache, "eval", None)):
            raise ConfigError(f"token KD needs a teacher: a loaded causal LM, a TopKCache or a cache folder's path; "
                              f"got {type(teacher_or_cache).__name__}.")
        self.teacher = None if self.cache is not None else teacher_or_cache.eval()
        if on_policy > 0:
            if self.teacher is None:
                raise ConfigError("on-policy token KD scores the student's own samples with the teacher, so it needs "
                                  "a loaded teacher; a top-k cache only covers the fixed training sequences. Pass the "
                                  "teacher model, or set on_policy=0.")
            if student is None:
                raise ConfigError("on-policy token KD samples from the student: pass student=<the model being "
                                  "trained>.")
            if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
                raise ConfigError(f"on-policy max_new_tokens must be a positive integer, got {max_new_tokens!r}.")
        self.kind, self.beta, self.temperature, self.alpha, self.rule = kind, beta, temperature, alpha, rule
        self.on_policy, self.student, self.max_new_tokens = on_policy, student, max_new_tokens
        self._rng = random.Random(seed)

    def __call__(self, student_logits: Any, batch: Mapping[str, Any]) -> Any:
        import torch.nn.functional as F

        if self.on_policy and self._rng.random() < self.on_policy:
            return self._on_policy_loss(batch)
        mask = completion_mask(batch["labels"])
        s = student_logits[:, :-1][mask]
        kd = self._kd(s, batch, mask)
        if self.alpha == 1:
            return kd
        target = batch["labels"][:, 1:][mask]
        ce = F.cross_entropy(s.float(), target) if len(target) else s.sum() * 0.0
        return self.alpha * kd + (1 - self.alpha) * ce

    def _kd(self, s: Any, batch: Mapping[str, Any], mask: Any) -> Any:
        opts = {"kind": self.kind, "beta": self.beta, "temperature": self.temperature}
        if self.cache is None:
            t = self._teacher_logits(batch["input_ids"], batch.get("attention_mask"))[:, :-1][mask]
            return full_kd_loss(s, t, **opts)
        _same_vocab(s.shape[-1], self.cache.vocab, "top-k cache")
        values, indices, rest = (x.to(s.device) for x in cached_rows(self.cache, batch, mask))
        return topk_kd_loss(s, values, indices, rest, rule=self.rule, **opts)

    def _teacher_logits(self, input_ids: Any, attention_mask: Any, position_ids: Any = None) -> Any:
        import torch

        with torch.no_grad():
            return self.teacher(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                use_cache=False).logits

    def _on_policy_loss(self, batch: Mapping[str, Any]) -> Any:
        ids, attention, labels = sample_completions(self.student, batch, self.max_new_tokens)
        positions = (attention.cumsum(-1) - 1).clamp_min(0)
        mask = completion_mask(labels)
        s = self.student(input_ids=ids, attention_mask=attention, position_ids=positions,
                         use_cache=False).logits[:, :-1][mask]
        t = self._teacher_logits(ids, attention, positions)[:, :-1][mask]
        return full_kd_loss(s, t, kind=self.kind, beta=self.beta, temperature=self.temperature)


def cached_rows(cache: TopKCache, batch: Mapping[str, Any], mask: Any) -> tuple[Any, Any, Any]:
    """The cache's (values, indices, rest) for the selected positions ``mask`` [B, T-1] of ``batch``, in the order
    ``student_logits[:, :-1][mask]`` gives: [N, k], [N, k], [N].

    Each example's rows are one contiguous slice of the memory-mapped files; its real tokens (``attention_mask``,
    right or left padding) must be a prefix of the cached sequence ``batch["index"][b]``.

    Raises:
        InputError: an index outside the cache, tokens other than the cached ones, or a selected position outside
            the example's tokens.
    """
    import torch

    ids = batch["input_ids"].detach().cpu().numpy()
    attn = batch.get("attention_mask")
    attn = np.ones_like(ids) if attn is None else attn.detach().cpu().numpy()
    sel = mask.detach().cpu().numpy()
    parts = []
    for b, index in enumerate(np.asarray(batch["index"]).reshape(-1).tolist()):
        if not 0 <= index < cache.n_sequences:
            raise InputError(f"batch example index {index} is outside the top-k cache's {cache.n_sequences} "
                             "sequences: the cache was built on another corpus. Rebuild it on the training sequences.")
        real = np.flatnonzero(attn[b])
        start, n = (int(real[0]), len(real)) if len(real) else (0, 0)
        if n < 2 and not sel[b].any():
            continue
        cached = cache.sequence(index)
        if n > len(cached) or not np.array_equal(ids[b, start:start + n], cached[:n]):
            raise InputError(f"training example {index} is not the sequence the top-k cache {cache.path} holds for "
                             "it: the cache was built on other sequences (or another tokenizer). Rebuild it with "
                             "build_topk_cache on the training sequences, in the trainer's order.")
        if n < 2 or sel[b, :start].any() or sel[b, start + n - 1:].any():
            raise InputError(f"training example {index}: a completion label falls on padding; labels must be -100 "
                             "outside the example's tokens.")
        rows = sel[b, start:start + n - 1]
        values, indices, rest = cache.rows(index, n - 1)
        parts.append((values[rows], indices[rows], rest[rows]))
    if not parts:
        return torch.zeros((0, cache.k)), torch.zeros((0, cache.k), dtype=torch.long), torch.zeros(0)
    values, indices, rest = (np.concatenate(p) for p in zip(*parts, strict=True))
    return (torch.from_numpy(values.astype(np.float32)), torch.from_numpy(indices.astype(np.int64)),
            torch.from_numpy(np.ascontiguousarray(rest)))


def sample_completions(student: Any, batch: Mapping[str, Any], max_new_tokens: int) -> tuple[Any, Any, Any]:
    """The student's sampled completions of the batch's prompts: (ids, attention_mask, labels), left-padded.

    A prompt is an example's tokens before its first completion label. Labels are -100 except on the generated
    tokens up to and including the first eos.
    """
    import torch

    pad = _token_id(student, "pad_token_id", fallback=_token_id(student, "eos_token_id", fallback=0))
    eos = _token_id(student, "eos_token_id", fallback=None)
    prompts = _prompts(batch)
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    attention = torch.zeros_like(ids)
    for b, p in enumerate(prompts):
        ids[b, width - len(p):], attention[b, width - len(p):] = p, 1
    was_training = student.training
    student.eval()
    try:
        with torch.no_grad():
            out = student.generate(input_ids=ids, attention_mask=attention, do_sample=True, top_k=0, top_p=1.0,
                                   temperature=1.0, max_new_tokens=max_new_tokens, pad_token_id=pad,
                                   eos_token_id=eos)
    finally:
        student.train(was_training)
    new = out[:, width:]
    keep = torch.ones_like(new, dtype=torch.bool)
    if eos is not None:
        after_eos = (new == eos).long().cumsum(-1) - (new == eos).long()  # eos itself is kept
        keep = after_eos == 0
    attention = torch.cat([attention, keep.long()], -1)
    labels = torch.cat([torch.full_like(ids, IGNORE), torch.where(keep, new, IGNORE)], -1)
    return out, attention, labels


def _prompts(batch: Mapping[str, Any]) -> list[Any]:
    ids, labels = batch["input_ids"], batch["labels"]
    attn = batch.get("attention_mask")
    prompts = []
    for b in range(len(ids)):
        real = ids[b][attn[b].bool()] if attn is not None else ids[b]
        lab = labels[b][attn[b].bool()] if attn is not None else labels[b]
        answer = (lab != IGNORE).nonzero()
        prompts.append(real[:int(answer[0])] if len(answer) and int(answer[0]) > 0 else real)
    return prompts


def _token_id(model: Any, name: str, *, fallback: int | None) -> int | None:
    for source in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        value = getattr(source, name, None)
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if isinstance(value, int):
            return value
    return fallback


def truncation_report(teacher: Any, student: Any, sequences: Sequence[Sequence[int]], *,
                      k_values: Sequence[int] = (1, 4, 8, 16, 32), kind: Kind = "fkl", beta: float = 0.5,
                      temperature: float = 1.0, rules: Sequence[Rule] = RULES,
                      prompt_lens: Sequence[int] | None = None, batch_size: int = 16) -> list[dict[str, Any]]:
    """What truncating the teacher to its top-k logits costs: per (k, rule), the KD loss from top-k vs from full
    logits on ``sequences`` (on the completion tokens when ``prompt_lens`` is given, else every next token), and the
    cosine between the two gradients with respect to the student's parameters.

    Returns:
        One dict per (k, rule): ``k``, ``rule``, ``loss_full``, ``loss_topk``, ``abs_error``, ``rel_error``
        (|topk - full| / full), ``grad_cosine`` and ``teacher_mass`` (the teacher's mean probability in its top-k at
        this temperature); k values above the vocabulary are skipped.

    Raises:
        ConfigError: bad kind, beta, temperature or rule; no k in [1, vocab].
        InputError: empty sequences, ids outside the vocabulary, different vocabularies.
    """
    import torch
    import torch.nn.functional as F

    for rule in rules:
        check_kd_options(kind=kind, beta=beta, temperature=temperature, rule=rule)
    vocab = vocab_of(teacher)
    _same_vocab(vocab_of(student), vocab, "teacher")
    ks = [k for k in k_values if isinstance(k, int) and 1 <= k <= vocab]
    if not ks:
        raise ConfigError(f"truncation_report: no k in [1, {vocab}] among {list(k_values)}.")
    seqs = check_sequences(sequences, vocab, what="truncation_report")
    starts = list(prompt_lens) if prompt_lens is not None else [1] * len(seqs)
    params = [p for p in student.parameters() if p.requires_grad]
    opts = {"kind": kind, "beta": beta, "temperature": temperature}
    configs = [(None, "full")] + [(k, r) for k in ks for r in rules]
    loss_sum = dict.fromkeys(configs, 0.0)
    grads: dict[Any, Any] = dict.fromkeys(configs)
    mass = dict.fromkeys(ks, 0.0)
    n_total = 0
    for start in range(0, len(seqs), batch_size):
        batch = seqs[start:start + batch_size]
        with torch.no_grad():
            t_all = run_teacher(teacher, batch)
        ids = torch.zeros(t_all.shape[:2], dtype=torch.long)
        mask = torch.zeros((len(batch), ids.shape[1] - 1), dtype=torch.bool)
        for b, seq in enumerate(batch):
            ids[b, :len(seq)] = torch.from_numpy(seq)
            mask[b, max(starts[start + b] - 1, 0):len(seq) - 1] = True
        lengths = torch.tensor([len(q) for q in batch])
        s = student(input_ids=ids, attention_mask=(torch.arange(ids.shape[1]) < lengths[:, None]).long()
                    ).logits[:, :-1][mask]
        t = t_all[:, :-1][mask]
        n = len(t)
        n_total += n
        for k in ks:
            mass[k] += float(F.softmax(t / temperature, -1).topk(k, -1).values.sum(-1).sum())
        for cfg in configs:
            k, rule = cfg
            if k is None:
                loss = full_kd_loss(s, t, **opts)
            else:
                values, indices, rest = topk_split(t, k)
                loss = topk_kd_loss(s, values.half().float(), indices, rest, rule=rule, **opts)
            g = torch.cat([x.reshape(-1) for x in torch.autograd.grad(loss * n, params, retain_graph=True)])
            loss_sum[cfg] += float(loss.detach()) * n
            grads[cfg] = g if grads[cfg] is None else grads[cfg] + g
    full = loss_sum[(None, "full")] / n_total
    report = []
    for cfg in configs[1:]:
        k, rule = cfg
        value = loss_sum[cfg] / n_total
        cos = float(F.cosine_similarity(grads[cfg], grads[(None, "full")], dim=0))
        report.append({"k": k, "rule": rule, "loss_full": full, "loss_topk": value, "abs_error": abs(value - full),
                       "rel_error": abs(value - full) / full if full > 0 else float("nan"), "grad_cosine": cos,
                       "teacher_mass": mass[k] / n_total, "tokens": n_total})
    return report
