"""Train a classifier on a DataSplits, optionally distilling from a teacher: loss terms, cached teacher outputs, a
checkpoint per epoch with resume, early stopping, seeds and data-parallel training. Seeded and print-free."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from edgestill.compress.distill.teacher_outputs import cached_teacher_outputs, default_cache_dir, teacher_fingerprint
from edgestill.data.datasets import DataSplits, Split
from edgestill.errors import ConfigError, InputError

Progress = Callable[[int, int, int, float, float], None]
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "none")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How to train: optimiser, schedule, and the KD terms (used only when a teacher is given).

    ``alpha`` weighs the teacher (KL) term against cross-entropy on the labels; ``temperature`` softens both
    distributions (they make the default ``kd`` term when no loss terms are given). ``momentum`` applies to SGD
    only. ``early_stopping_patience``: stop after that many epochs without a better validation accuracy.
    ``deterministic`` turns on ``torch.use_deterministic_algorithms`` (warn-only) for the run; on CPU it made
    training about 3× slower here without changing anything: runs with the same seed and thread count were
    already bit-identical, so it is off by default.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05
    weight_decay: float = 5e-4
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = 0.9
    schedule: Literal["cosine", "none"] = "cosine"
    warmup_epochs: int = 0
    seed: int = 0
    temperature: float = 4.0
    alpha: float = 0.9
    label_smoothing: float = 0.0
    early_stopping_patience: int | None = None
    deterministic: bool = False

    def __post_init__(self) -> None:
        def bad(key: str, value: Any, valid: str) -> ConfigError:
            return ConfigError(f"train config: {key}={value!r} is not valid; {key} must be {valid}.")

        for key in ("epochs", "batch_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(key, value, "a positive integer")
        for key in ("seed", "warmup_epochs"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise bad(key, value, "a non-negative integer")
        patience = self.early_stopping_patience
        if patience is not None and (not isinstance(patience, int) or isinstance(patience, bool) or patience < 1):
            raise bad("early_stopping_patience", patience, "a positive integer or None")
        if not isinstance(self.deterministic, bool):
            raise bad("deterministic", self.deterministic, "true or false")
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            raise bad("warmup_epochs", self.warmup_epochs, f"smaller than epochs ({self.epochs})")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", self.optimizer, f"one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", self.schedule, f"one of {', '.join(SCHEDULES)}")
        checks = {
            "lr": (lambda v: 0 < v <= 10, "a number in (0, 10]"),
            "weight_decay": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
            "momentum": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
            "temperature": (lambda v: 0 < v <= 100, "a number in (0, 100]"),
            "alpha": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
            "label_smoothing": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
        }
        for key, (ok, valid) in checks.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
                raise bad(key, value, valid)


@dataclass(frozen=True, kw_only=True)
class EpochRecord:
    """One epoch: mean training loss, training accuracy (on the fly), validation accuracy, wall seconds."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_accuracy: float
    lr: float
    wall_s: float
    loss_terms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, eq=False)
class TrainResult:
    """What :func:`train` returns; ``model`` has the best-validation weights loaded and is in eval mode.

    ``last_state`` is the state dict after the last epoch run (best and last are both reported);
    ``resumed_from_epoch`` is the checkpoint epoch the run continued from (0: a fresh run).
    """

    model: Any
    best_val_accuracy: float
    best_epoch: int
    final_val_accuracy: float
    history: list[EpochRecord] = field(default_factory=list)
    wall_s: float = 0.0
    teacher_logits_s: float = 0.0
    distilled: bool = False
    last_state: dict[str, Any] | None = None
    stopped_early: bool = False
    resumed_from_epoch: int = 0
    teacher_mode: Literal["none", "cached", "online", "precomputed"] = "none"
    cache: Literal["hit", "miss"] | None = None


def evaluate(model, split: Split, batch_size: int = 512) -> float:
    """Top-1 accuracy (0..1) of ``model`` on ``split``; the model's train/eval mode is restored afterwards."""
    logits = predict_logits(model, split.x, batch_size)
    return float((logits.argmax(1).numpy() == split.y).mean()) if len(split) else float("nan")


def predict_logits(model, x: np.ndarray, batch_size: int = 512):
    """Logits of ``model`` on ``x`` (float32 NCHW array) in eval mode, as a CPU float32 tensor."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            outs = [model(torch.from_numpy(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(outs).float() if outs else torch.empty(0)


class Augment(Protocol):
    """A training-batch augmentation (:class:`edgestill.data.Augment` has this shape): ``name`` is its stable
    description (part of the teacher-cache key), ``active`` is False for the identity, and ``apply`` draws from
    ``rng`` (so an active augmentation changes every epoch and teacher outputs cannot be cached)."""

    @property
    def name(self) -> str: ...

    @property
    def active(self) -> bool: ...

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...


TeacherMode = Literal["auto", "cached", "online"]
TEACHER_MODES = ("auto", "cached", "online")
CHECKPOINT = "last.pt"
_CKPT_FORMAT = 1


def _lr_at(config: TrainConfig, step: int, total: int, steps_per_epoch: int) -> float:
    warmup = config.warmup_epochs * steps_per_epoch
    if step < warmup:
        return config.lr * (step + 1) / warmup
    if config.schedule == "none":
        return config.lr
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * config.lr * (1.0 + math.cos(math.pi * progress))


def default_terms(config: TrainConfig, *, has_teacher: bool):
    """The objective when none is given: ``kd`` (config's temperature and alpha) with a teacher, else ``ce``."""
    from edgestill.compress.distill.losses import LossTerm

    if has_teacher:
        return (LossTerm(name="kd", options={"temperature": config.temperature, "alpha": config.alpha,
                                             "label_smoothing": config.label_smoothing}),)
    return (LossTerm(name="ce", options={"label_smoothing": config.label_smoothing}),)


def _dist_info() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _atomic_save(obj: Any, path: Path) -> None:
    import torch

    from edgestill.outdir import replacing

    with replacing(path) as tmp:
        torch.save(obj, tmp)


def _fingerprint(config: TrainConfig, terms, data: DataSplits, model, teacher_id: str, augment, world: int) -> str:
    payload = {"config": asdict(config), "terms": [t.to_dict() for t in terms], "data": data.sha256,
               "model": [(k, list(v.shape)) for k, v in model.state_dict().items()], "teacher": teacher_id,
               "augment": None if augment is None else str(augment.name), "world": world}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def train(model, data: DataSplits, config: TrainConfig, *, teacher=None, teacher_logits: np.ndarray | None = None,
          terms: Sequence[Any] | None = None, teacher_mode: TeacherMode = "auto", cache_dir: Path | None = None,
          augment: Augment | None = None, checkpoint_dir: Path | None = None, resume: bool = True,
          progress: Progress | None = None, log: Callable[[str], None] | None = None,
          on_epoch_end: Callable[[EpochRecord], None] | None = None) -> TrainResult:
    """Train ``model`` on ``data.train`` with a weighted sum of loss terms; keep the best ``data.val`` weights.

    Teacher sources: a torch ``teacher`` (its outputs cached on disk and memory-mapped, or computed online when a
    random augmentation makes caching wrong), precomputed ``teacher_logits`` (a black-box teacher; row i belongs
    to ``data.train`` sample i), or none (``ce``, ``tfkd``).

    Determinism: the torch RNG is seeded with ``config.seed``; the batch order of epoch e is a permutation drawn
    from ``(seed, e)`` and the augmentation generator is seeded from ``(seed, e)``, so a resumed run sees the
    same batches as an uninterrupted one; with ``config.deterministic`` torch's deterministic algorithms are on.

    Under ``torch.distributed`` (torchrun) the model is wrapped in DistributedDataParallel, rank r takes every
    world-th sample of each epoch's permutation with a per-rank batch of ``batch_size // world``, and only rank 0
    writes checkpoints.

    Args:
        model: a torch classifier taking ``data.input_shape`` images and returning ``data.num_classes`` logits.
        data: the splits from :func:`edgestill.data.load_dataset`.
        config: optimiser, schedule, seed, early stopping and the default KD settings.
        teacher: an optional trained torch model, used only in eval mode.
        teacher_logits: optional N×K teacher logits aligned with ``data.train`` (instead of ``teacher``).
        terms: :class:`~edgestill.compress.distill.losses.LossTerm` list; None means :func:`default_terms`.
        teacher_mode: ``auto`` (cached unless ``augment.active``), ``cached`` or ``online``.
        cache_dir: root of the teacher-output cache (default ``$EDGESTILL_CACHE/teacher-outputs``).
        augment: an optional batch augmentation (see :class:`Augment`) applied to the inputs of the student and
            of the online teacher; batch order and augmentation draw from ``(seed, epoch)``.
        checkpoint_dir: write ``last.pt`` there after every epoch; with ``resume`` a rerun continues from it.
        progress: called after every step as ``progress(epoch, step, total_steps, loss, acc)``, 1-based ``epoch``,
            ``step`` counted over the whole run, running loss and accuracy of the epoch.
        log: receives one-line messages (teacher mode and why, cache hit/miss, resume, early stop).
        on_epoch_end: called with each epoch's record after its checkpoint is written.

    Returns:
        A :class:`TrainResult` whose model holds the best-validation weights.

    Raises:
        InputError: an empty training split; teacher outputs whose shape does not match the student's; a loss or
            gradient that is not finite (NaN or Inf: bad data or too large a learning rate), raised before the
            optimizer step, so neither the weights nor the last checkpoint take it in.
        ConfigError: a loss that needs a teacher without one, an unknown layer name (available names and the
            closest listed), a random augmentation with ``teacher_mode="cached"``, a checkpoint from another config.
    """
    import torch

    n = len(data.train)
    if n == 0:
        raise InputError(f"dataset {data.name!r} has an empty training split; nothing to train on.")
    if teacher_mode not in TEACHER_MODES:
        raise ConfigError(f"teacher_mode={teacher_mode!r} is not valid; use one of {', '.join(TEACHER_MODES)}.")
    if teacher is not None and teacher_logits is not None:
        raise ConfigError("give either a teacher model or precomputed teacher_logits, not both.")
    say = log or (lambda message: None)
    terms = _check_terms(terms, config, model, teacher, teacher_logits)
    if not any(t.spec.needs_teacher or t.pairs for t in terms):  # teacher-free objective: do not run the teacher
        teacher = teacher_logits = None
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        return _train(model, data, config, teacher=teacher, teacher_logits=teacher_logits, terms=terms,
                      teacher_mode=teacher_mode, cache_dir=cache_dir, augment=augment, checkpoint_dir=checkpoint_dir,
                      resume=resume, progress=progress, say=say, on_epoch_end=on_epoch_end)
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)


def _check_terms(terms, config: TrainConfig, model, teacher, teacher_logits) -> tuple[Any, ...]:
    from edgestill.compress.distill.features import LOGITS, resolve_module
    from edgestill.compress.distill.losses import LossTerm

    has_teacher = teacher is not None or teacher_logits is not None
    terms = default_terms(config, has_teacher=has_teacher) if terms is None else tuple(terms)
    if not terms or any(not isinstance(t, LossTerm) for t in terms):
        raise ConfigError(f"terms must be a non-empty list of LossTerm (see parse_terms), got {terms!r}.")
    needs = [t.name for t in terms if t.spec.needs_teacher]
    if needs and not has_teacher:
        raise ConfigError(f"loss term(s) {', '.join(needs)} need a teacher, but none was given. Give a teacher model "
                          "or teacher logits, or use only 'ce' / 'tfkd' (teacher-free).")
    for term in terms:
        for s_name, t_name in term.pairs:
            if s_name != LOGITS:
                resolve_module(model, s_name, role="student", loss=f"loss {term.name!r}")
            if t_name != LOGITS:
                if teacher is None:
                    raise ConfigError(f"loss {term.name!r} pairs with the teacher layer {t_name!r}, but the teacher is "
                                      "given as precomputed logits (a black-box teacher has no layers). Use response "
                                      "losses (kd, dkd) or pair 'logits'.")
                resolve_module(teacher, t_name, role="teacher", loss=f"loss {term.name!r}")
    return terms


def _train(model, data: DataSplits, config: TrainConfig, *, teacher, teacher_logits, terms, teacher_mode, cache_dir,
           augment, checkpoint_dir, resume, progress, say, on_epoch_end) -> TrainResult:
    import torch
    import torch.nn as nn

    from edgestill.compress.distill.features import LOGITS, FeatureTap, build_objective, student_layers, teacher_layers

    started = time.perf_counter()
    world, rank = _dist_info()
    n = len(data.train)
    torch.manual_seed(config.seed)
    s_layers, t_layers = student_layers(terms), teacher_layers(terms)

    # --- shapes and shape checks, on two samples, before anything is computed or written
    x_probe = torch.from_numpy(np.ascontiguousarray(data.train.x[:2]))
    s_shapes = _probe_shapes(model, s_layers, x_probe, role="student")
    t_shapes = {LOGITS: s_shapes[LOGITS]}
    if teacher_logits is not None:
        teacher_logits = np.asarray(teacher_logits, dtype=np.float32)
        if teacher_logits.ndim != 2 or teacher_logits.shape[0] != n:
            raise InputError(f"teacher_logits has shape {list(teacher_logits.shape)}, but the training split has {n} "
                             f"samples: expected [{n}, num_classes], one row per training sample in split order.")
        t_shapes = {LOGITS: tuple(teacher_logits.shape[1:])}
    elif teacher is not None:
        t_shapes = _probe_shapes(teacher, t_layers, x_probe, role="teacher")
    if (teacher is not None or teacher_logits is not None) and t_shapes[LOGITS] != s_shapes[LOGITS]:
        raise InputError(f"the teacher gives outputs of shape {list(t_shapes[LOGITS])} per sample but the student "
                         f"{list(s_shapes[LOGITS])}: both must score the same {data.num_classes} classes of dataset "
                         f"{data.name!r} in the same order. Use a teacher trained on these classes.")

    # --- teacher source
    mode, cache, teacher_s, teacher_id = "none", None, 0.0, "none"
    t_logits_all, t_feats_all = None, {}
    if teacher_logits is not None:
        t_logits_all = teacher_logits
        mode, teacher_id = "precomputed", hashlib.sha256(t_logits_all.tobytes()).hexdigest()
        say(f"teacher: precomputed logits {list(t_logits_all.shape)}")
    elif teacher is not None:
        teacher.eval()
        teacher_id = teacher_fingerprint(teacher)
        random_aug = augment is not None and bool(augment.active)
        if teacher_mode == "cached" and random_aug:
            raise ConfigError(f"teacher_mode 'cached' is wrong under the random augmentation {augment.name!r}: the "
                              "student sees new inputs every epoch. Use teacher_mode 'online' or 'auto'.")
        if teacher_mode == "online" or random_aug:
            mode = "online"
            say("teacher: online (" + (f"augmentation {augment.name!r} is random, so cached outputs would not "
                                       "match the student's inputs)" if random_aug else "asked for)"))
        else:
            mode = "cached"
            root = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "teacher-outputs"
            t0 = time.perf_counter()
            if world > 1 and rank != 0:
                torch.distributed.barrier()  # rank 0 fills the cache first
            outs = cached_teacher_outputs(teacher, data, cache_dir=root, features=t_layers)
            if world > 1 and rank == 0:
                torch.distributed.barrier()
            teacher_s = time.perf_counter() - t0
            t_logits_all, t_feats_all, cache = outs.logits, outs.features, ("hit" if outs.hit else "miss")
            say(f"teacher: cached outputs ({cache}, {outs.path}, {teacher_s:.2f} s)")
    objective = build_objective(terms, s_shapes, t_shapes)

    class Trainable(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.student, self.objective = model, objective

        def forward(self, x):
            return self.student(x)

    trainable = Trainable()
    net = trainable
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(trainable)
    params = list(trainable.parameters())
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)
    else:
        optimizer = torch.optim.AdamW(groups, lr=config.lr)

    per_rank = n // world
    batch = min(config.batch_size // world if world > 1 else config.batch_size, per_rank)
    if batch < 1:
        raise ConfigError(f"batch_size {config.batch_size} is smaller than the {world} processes; use at least {world}.")
    steps_per_epoch = per_rank // batch  # drop the ragged last batch: BatchNorm misbehaves on tiny batches
    total_steps = steps_per_epoch * config.epochs

    # --- resume
    fingerprint = _fingerprint(config, terms, data, model, teacher_id, augment, world)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    history: list[EpochRecord] = []
    best_acc, best_epoch, best_state, stale, start_epoch, finished = -1.0, 0, None, 0, 1, False
    resumed_from = 0
    if ckpt_path is not None and resume and ckpt_path.is_file():
        ckpt = _load_checkpoint(ckpt_path, fingerprint)
        trainable.load_state_dict(ckpt["trainable"])
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["torch_rng"])
        history = [EpochRecord(**h) for h in ckpt["history"]]
        best_acc, best_epoch, best_state, stale = ckpt["best_acc"], ckpt["best_epoch"], ckpt["best_state"], ckpt["stale"]
        resumed_from, finished = ckpt["epoch"], ckpt["finished"]
        start_epoch = resumed_from + 1
        say(f"resuming from the epoch {resumed_from} checkpoint {ckpt_path}" + (" (already finished)" if finished else ""))
    elif ckpt_path is not None:
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)

    x_np, y_np = data.train.x, data.train.y
    stopped_early = finished and history and len(history) < config.epochs
    s_tap = FeatureTap(model, s_layers, role="student")
    t_tap = FeatureTap(teacher, t_layers, role="teacher", detach=True) if mode == "online" else None
    lr = history[-1].lr if history else config.lr
    try:
        for epoch in range(start_epoch, config.epochs + 1):
            if finished:
                break
            epoch_start = time.perf_counter()
            trainable.train()
            order = np.random.default_rng([config.seed, epoch]).permutation(n)[:per_rank * world][rank::world]
            aug_rng = np.random.default_rng([config.seed, epoch, 1])
            loss_sum, correct, seen = 0.0, 0, 0
            part_sums: dict[str, float] = {}
            step = (epoch - 1) * steps_per_epoch
            for i in range(steps_per_epoch):
                idx = np.sort(order[i * batch:(i + 1) * batch])  # sorted: sequential reads of memory-mapped arrays
                lr = _lr_at(config, step, total_steps, steps_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                xb_np = x_np[idx]
                if augment is not None and augment.active:
                    xb_np = np.ascontiguousarray(augment.apply(xb_np, aug_rng), dtype=np.float32)
                xb, yb = torch.from_numpy(xb_np), torch.from_numpy(y_np[idx])
                logits = net(xb)
                t_feats: dict[str, Any] = {}
                if mode == "online":
                    with torch.no_grad():
                        t_logits = teacher(xb)
                    t_feats = t_tap.outputs
                elif t_logits_all is not None:
                    t_logits = torch.from_numpy(t_logits_all[idx])
                    t_feats = {k: torch.from_numpy(v[idx]) for k, v in t_feats_all.items()}
                else:
                    t_logits = None
                loss, parts = objective(logits, t_logits, yb, s_tap.outputs, t_feats, epoch=epoch - 1 + i / steps_per_epoch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                loss_value = loss.item()
                _stop_if_diverged(loss_value, parts, params, world=world, epoch=epoch, batch=i + 1,
                                  batches=steps_per_epoch, step=step + 1, total_steps=total_steps, lr=lr,
                                  config=config, ckpt_path=ckpt_path, last_saved=history[-1].epoch if history else 0)
                optimizer.step()
                step += 1
                loss_sum += loss_value * len(idx)
                correct += int((logits.detach().argmax(1) == yb).sum())
                seen += len(idx)
                for k, v in parts.items():
                    part_sums[k] = part_sums.get(k, 0.0) + v * len(idx)
                if progress is not None:
                    progress(epoch, step, total_steps, loss_sum / seen, correct / seen)
            val_acc = evaluate(model, data.val)
            if world > 1:
                box = [val_acc]
                torch.distributed.broadcast_object_list(box, src=0)
                val_acc = box[0]
            record = EpochRecord(epoch=epoch, train_loss=loss_sum / max(seen, 1), train_accuracy=correct / max(seen, 1),
                                 val_accuracy=val_acc, lr=lr, wall_s=time.perf_counter() - epoch_start,
                                 loss_terms={k: v / max(seen, 1) for k, v in part_sums.items()})
            history.append(record)
            if val_acc > best_acc:
                best_acc, best_epoch, best_state, stale = val_acc, epoch, copy.deepcopy(model.state_dict()), 0
            else:
                stale += 1
            patience = config.early_stopping_patience
            stopped_early = patience is not None and stale >= patience and epoch < config.epochs
            finished = stopped_early or epoch == config.epochs
            if ckpt_path is not None and rank == 0:
                _atomic_save({"format": _CKPT_FORMAT, "fingerprint": fingerprint, "epoch": epoch, "finished": finished,
                              "trainable": trainable.state_dict(), "optimizer": optimizer.state_dict(),
                              "torch_rng": torch.get_rng_state(), "history": [asdict(h) for h in history],
                              "best_acc": best_acc, "best_epoch": best_epoch, "best_state": best_state,
                              "stale": stale}, ckpt_path)
            if on_epoch_end is not None:
                on_epoch_end(record)
            if stopped_early:
                say(f"early stop after epoch {epoch}: no better validation accuracy for {stale} epochs "
                    f"(best {best_acc:.4f} at epoch {best_epoch})")
                break
    finally:
        s_tap.close()
        if t_tap is not None:
            t_tap.close()
    if not history:
        raise ConfigError(f"checkpoint {ckpt_path} holds no finished epoch; delete it and rerun.")
    last_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model=model, best_val_accuracy=best_acc, best_epoch=best_epoch,
                       final_val_accuracy=history[-1].val_accuracy, history=history,
                       wall_s=time.perf_counter() - started, teacher_logits_s=teacher_s, distilled=mode != "none",
                       last_state=last_state, stopped_early=bool(stopped_early), resumed_from_epoch=resumed_from,
                       teacher_mode=mode, cache=cache)


def _stop_if_diverged(loss_value: float, parts: dict[str, float], params, *, world: int, epoch: int, batch: int,
                      batches: int, step: int, total_steps: int, lr: float, config: TrainConfig,
                      ckpt_path: Path | None, last_saved: int) -> None:
    """Raise before the optimizer step when the loss or the gradient is not finite (NaN or Inf).

    A step on such a gradient writes NaN into every weight and the optimizer state, and the next checkpoint would
    carry them; stopping first leaves the parameters, the optimizer state and the last checkpoint as they were after
    the last good step (the BatchNorm running statistics of the model in memory may already hold the bad batch).
    Under DDP every rank takes the same decision (the gradients are already averaged; the loss flag is reduced).

    Raises:
        InputError: the loss or the gradient norm is not finite; the message names the epoch, the step, each term's
            value and what to change. It is the data or the settings (NaN/Inf inputs, a learning rate or loss
            weight too large for this model), so it is an input error (exit 2), not an internal one.
    """
    import torch

    grads = [p.grad for p in params if p.grad is not None]
    grad_norm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
    bad = not (math.isfinite(loss_value) and math.isfinite(grad_norm))
    if world > 1:
        flag = torch.tensor([float(bad)])
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        bad = bool(flag.item())
    if not bad:
        return
    terms = ", ".join(f"{k}={v:.6g}" for k, v in parts.items())
    if ckpt_path is None:
        kept = "No checkpoint folder was given."
    elif last_saved:
        kept = (f"The checkpoint {ckpt_path} still holds epoch {last_saved}: a rerun with the same settings resumes "
                "from it (and diverges again); to change the settings use another checkpoint folder or delete it.")
    else:
        kept = "No epoch had finished, so no checkpoint was written."
    raise InputError(
        f"training diverged at epoch {epoch} (batch {batch} of {batches}, step {step} of {total_steps}): the loss is "
        f"{loss_value:.6g} (terms: {terms}) and the gradient norm {grad_norm:.6g}, at learning rate {lr:.4g}. "
        f"The optimizer step was not taken, so the weights are those of the last good step. {kept} Check the "
        f"training data for NaN or Inf values, or lower the learning rate (lr={config.lr:g}), the loss weights or "
        "the temperature.")


def _probe_shapes(model, layers: Sequence[str], x, *, role: str) -> dict[str, tuple[int, ...]]:
    """Output shapes (without batch) of ``model`` and of its named layers on the probe batch ``x``, in eval mode."""
    import torch

    from edgestill.compress.distill.features import LOGITS, FeatureTap

    was_training = model.training
    model.eval()
    try:
        with FeatureTap(model, layers, role=role, detach=True) as tap, torch.no_grad():
            out = model(x)
            return {LOGITS: tuple(out.shape[1:]), **{k: tuple(v.shape[1:]) for k, v in tap.outputs.items()}}
    finally:
        model.train(was_training)


def _load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any]:
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign: the atomic write makes this a file we did not write
        raise InputError(f"checkpoint {path} could not be read ({exc}). Delete it to start over, or pass another "
                         "checkpoint folder.") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != _CKPT_FORMAT:
        raise InputError(f"{path} is not an edgestill training checkpoint. Delete it or pass another checkpoint folder.")
    if ckpt["fingerprint"] != fingerprint:
        raise ConfigError(f"checkpoint {path} belongs to a different run (model, data, teacher, loss terms, augmentation "
                          "or training config differ), so it cannot be resumed. Rerun with the same settings, use "
                          "another checkpoint folder, or delete it to start over.")
    return ckpt


# ------------------------------------------------------------------------------------------------- seeds
@dataclass(frozen=True, kw_only=True)
class SeedStats:
    """A metric over seeds: the values, their mean and sample standard deviation (0 for one seed)."""

    values: tuple[float, ...]
    mean: float
    std: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "n": self.n, "values": list(self.values)}

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.std:.2g} (n={self.n})"


def seed_list(n: int, base_seed: int = 0) -> list[int]:
    """``n`` consecutive seeds from ``base_seed``.

    Raises:
        ConfigError: ``n`` < 1 or ``base_seed`` < 0.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"seeds must be a positive integer, got {n!r}.")
    if not isinstance(base_seed, int) or isinstance(base_seed, bool) or base_seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {base_seed!r}.")
    return list(range(base_seed, base_seed + n))


def summarize_seeds(values: Sequence[float]) -> SeedStats:
    """Mean ± sample standard deviation (ddof=1) of one metric measured with several seeds."""
    vals = tuple(float(v) for v in values)
    if not vals:
        raise ConfigError("no values to summarise: run at least one seed.")
    return SeedStats(values=vals, mean=statistics.fmean(vals), std=statistics.stdev(vals) if len(vals) > 1 else 0.0,
                     n=len(vals))


# --------------------------------------------------------------------------------------- born-again (self)
def train_generations(make_student: Callable[[], Any], data: DataSplits, config: TrainConfig, *, generations: int,
                      teacher=None, terms: Sequence[Any] | None = None, checkpoint_dir: Path | None = None,
                      **train_kwargs: Any) -> list[TrainResult]:
    """Born-again networks: generation 1 learns from ``teacher`` (or the labels alone), generation k+1 from the
    best model of generation k, each a fresh ``make_student()`` trained with ``terms`` and ``config``.

    Args:
        make_student: builds a new, freshly initialised student.
        generations: number of students to train (>= 1).
        terms: the loss terms of generations 2.. (and of generation 1 when a teacher is given); None = default KD.
        checkpoint_dir: when given, generation k checkpoints into ``checkpoint_dir/gen-k``.
        **train_kwargs: passed to :func:`train` (progress, log, cache_dir, ...).

    Returns:
        One :class:`TrainResult` per generation.

    Raises:
        ConfigError: ``generations`` < 1.
    """
    if not isinstance(generations, int) or isinstance(generations, bool) or generations < 1:
        raise ConfigError(f"generations must be a positive integer, got {generations!r}.")
    results: list[TrainResult] = []
    current = teacher
    for gen in range(1, generations + 1):
        gen_terms = terms if current is not None else None
        ckpt = Path(checkpoint_dir) / f"gen-{gen}" if checkpoint_dir is not None else None
        result = train(make_student(), data, config, teacher=current, terms=gen_terms, checkpoint_dir=ckpt,
                       **train_kwargs)
        results.append(result)
        current = result.model
    return results
