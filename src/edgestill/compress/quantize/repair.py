"""KD repair: quantization-aware fine-tuning of the student with the distillation loss, the teacher as the oracle.

The student is traced with torch.export and prepared for QAT with PT2E (litert-torch's symmetric per-channel
int8 quantizer, ``is_qat=True``): weights and activations are fake-quantized in the forward pass, so training
with ``kd_loss(student, teacher, labels)`` moves the weights to values that survive int8. The fine-tuned weights
are copied back into a float copy of the student, which every format then quantizes with its own calibrated
post-training flow (the ranges are re-measured on the calibration data).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgestill.errors import ConfigError, InputError, RuntimeFailure

if TYPE_CHECKING:
    import torch


ORACLE_FP32 = "fp32 model"
ORACLE_TEACHER = "teacher"
# Adam learning rate of oracle repair on a trained network. Measured (perf/quant_repair.py's setting, 2 epochs of
# 1,000 unlabelled samples, mobilenet_v3_small trained to 83 % on digits at 32×32): 1e-4 lowered the fake-quant
# SQNR vs fp32 (18.8 → 17.4 dB after one epoch), 1e-5 raised it (18.8 → 19.5 → 19.7 dB).
ORACLE_LR = 1e-5


@dataclass(frozen=True, kw_only=True, eq=False)
class RepairConfig:
    """The oracle (a teacher, or the fp32 model itself), the data to fine-tune on and the schedule.

    ``train_y`` is optional: without labels the loss is the oracle term only (``T² · KL(oracle ‖ student)`` at
    ``temperature``, plus ``logit_mse`` times the mean squared logit error); with labels it is
    ``kd_loss(alpha)`` plus the same MSE term.

    ``fold_bn`` (default): every BatchNorm that directly follows a Conv2d is folded into it before the QAT trace,
    so the fake quantization sees the folded weights and the conv+bias output the int8 files see (per-channel
    weights, one activation range after the fold); BatchNorm statistics stay frozen and dropout is off, so at
    step 0 the student computes the oracle's function exactly except for the int8 rounding. After training the
    folded weights are unfolded into the original conv and BatchNorm (weight / scale, BN shift), so the repaired
    model has the student's architecture. Without folding, PT2E fake-quantizes the conv output before its
    BatchNorm too (a per-tensor range over unnormalised channels, noise the int8 files do not have);
    ``freeze_bn_epochs`` epochs then run BatchNorm on batch statistics, the rest on its running statistics.
    """

    teacher: Any  # torch.nn.Module
    train_x: np.ndarray
    train_y: np.ndarray | None = None
    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-3
    temperature: float = 4.0
    alpha: float = 0.9
    logit_mse: float = 0.0
    fold_bn: bool = True
    freeze_bn_epochs: int = 1
    oracle: str = ORACLE_TEACHER
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"repair.{key} must be an integer >= 1, got {v!r}.")
        if not isinstance(self.fold_bn, bool):
            raise ConfigError(f"repair.fold_bn must be true or false, got {self.fold_bn!r}.")
        v = self.freeze_bn_epochs
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError(f"repair.freeze_bn_epochs must be an integer >= 0 (0: BatchNorm frozen from the start), got {v!r}.")
        for key, low in (("lr", 0.0), ("temperature", 0.0)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > low or not np.isfinite(v):
                raise ConfigError(f"repair.{key} must be a finite number > 0, got {v!r}.")
        if isinstance(self.logit_mse, bool) or not isinstance(self.logit_mse, (int, float)) or not 0 <= self.logit_mse < float("inf"):
            raise ConfigError(f"repair.logit_mse (weight of the logit MSE term) must be a finite number >= 0, got {self.logit_mse!r}.")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0 <= self.alpha <= 1:
            raise ConfigError(f"repair.alpha (weight of the oracle term when labels are given) must be in [0, 1], got {self.alpha!r}.")
        if not hasattr(self.train_x, "shape") or getattr(self.train_x, "ndim", 0) < 2:
            raise InputError(f"KD repair needs train_x as an array of samples [N, ...], got {type(self.train_x).__name__}"
                             f"{getattr(self.train_x, 'shape', '')}.")
        n = len(self.train_x)
        if n < self.batch_size:
            raise InputError(
                f"KD repair needs at least one batch ({self.batch_size}) of training samples; got {n}. Give more "
                f"unlabelled samples (a few hundred to a few thousand) or a smaller batch size."
            )
        if self.train_y is not None:
            y = np.asarray(self.train_y)
            if y.ndim != 1 or len(y) != n:
                raise InputError(f"KD repair labels must be one integer per training sample: {n} samples, got labels of "
                                 f"shape {tuple(y.shape)}. Pass train_y=None to repair without labels (the oracle's "
                                 "outputs are the target).")
            if not np.issubdtype(y.dtype, np.integer):
                raise InputError(f"KD repair labels must be integer class ids, got dtype {y.dtype}.")

    @property
    def labelled(self) -> bool:
        """Whether the loss uses labels."""
        return self.train_y is not None


def teacher_repair_config(
    teacher_model: str, checkpoint: str | Path, *, student: torch.nn.Module, example_inputs: tuple,
    train_x: np.ndarray, train_y: np.ndarray, teacher_kwargs: Mapping[str, Any] | None = None, epochs: int = 3,
    trust_checkpoint: bool = False,
) -> RepairConfig:
    """Build the teacher (a built-in architecture sized to the student's input and classes), load its weights, and
    return the RepairConfig for KD repair.

    Args:
        teacher_model: the teacher's built-in architecture name (e.g. "resnet-teacher").
        checkpoint: the teacher's weights (.safetensors, or .pt/.pth loaded weights-only).
        student: the student (its output width sets the teacher's classes).
        example_inputs: the student's batch-1 example inputs (their channels set the teacher's input channels).
        train_x, train_y: the data to fine-tune on.
        teacher_kwargs: architecture options (e.g. {"width": 16}).
        epochs: QAT fine-tuning epochs.
        trust_checkpoint: allow a checkpoint holding pickled objects.

    Raises:
        InputError: teacher_kwargs not a mapping; UnknownNameError for an unknown architecture; a checkpoint that
            does not load into it (the message says why).
        ConfigError: a bad schedule (see RepairConfig).
    """
    import torch

    from edgestill.models import create_model
    from edgestill.models.loading import load_checkpoint

    if teacher_kwargs is not None and not isinstance(teacher_kwargs, Mapping):
        raise InputError(f"teacher options must be a mapping such as {{'width': 16}}, got {teacher_kwargs!r}.")
    in_channels = int(example_inputs[0].shape[1])
    with torch.no_grad():
        n_out = int(student.eval()(*example_inputs).shape[-1])
    teacher = create_model(teacher_model, num_classes=n_out, in_channels=in_channels, **dict(teacher_kwargs or {}))
    load_checkpoint(teacher, checkpoint, trust=trust_checkpoint)
    return RepairConfig(teacher=teacher.eval(), train_x=train_x, train_y=train_y, epochs=epochs)


def oracle_repair_config(
    student: torch.nn.Module, example_inputs: tuple, *, train_x: np.ndarray, train_y: np.ndarray | None = None,
    teacher: torch.nn.Module | None = None, epochs: int = 3, **schedule: Any,
) -> RepairConfig:
    """The RepairConfig for label-free (or labelled) repair with an oracle: the teacher, or the fp32 model itself.

    Args:
        student: the float model to repair (with ``teacher=None`` a frozen deep copy of it is the oracle: the
            repair distils the int8-simulated student toward the float model's own outputs).
        example_inputs: the student's batch-1 example inputs (checked against ``train_x``'s sample shape).
        train_x: the user's samples to fine-tune on (labels not needed).
        train_y: labels, optional; with them the loss adds cross-entropy (``alpha`` weighs the oracle term).
        teacher: a teacher model as the oracle (its output width must match the student's).
        epochs: QAT fine-tuning epochs.
        **schedule: other RepairConfig fields (batch_size, lr, temperature, alpha, logit_mse, fold_bn,
            freeze_bn_epochs, seed); lr defaults to ORACLE_LR (1e-5), not RepairConfig's 1e-3.

    Raises:
        InputError: samples shaped unlike the example input; a teacher whose outputs differ in width; too few
            samples or labels of the wrong length (see RepairConfig).
        ConfigError: an unknown schedule field or a bad value.
    """
    import torch

    schedule.setdefault("lr", ORACLE_LR)
    allowed = {"batch_size", "lr", "temperature", "alpha", "logit_mse", "fold_bn", "freeze_bn_epochs", "seed"}
    unknown = sorted(set(schedule) - allowed)
    if unknown:
        raise ConfigError(f"unknown repair option(s) {', '.join(unknown)}; valid: {', '.join(sorted(allowed))}.")
    args = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    sample_shape = tuple(args[0].shape[1:])
    x = np.asarray(train_x)
    if x.ndim < 2 or tuple(x.shape[1:]) != sample_shape:
        raise InputError(f"KD repair samples must be shaped like the model input {list(sample_shape)} (with a leading "
                         f"sample axis); got {list(x.shape)}.")
    if teacher is None:
        oracle, oracle_name = copy.deepcopy(student).eval(), ORACLE_FP32
        for p in oracle.parameters():
            p.requires_grad_(False)
    else:
        oracle, oracle_name = teacher.eval(), ORACLE_TEACHER
        with torch.no_grad():
            n_s, n_t = int(student.eval()(*args).shape[-1]), int(oracle(*args).shape[-1])
        if n_s != n_t:
            raise InputError(f"the teacher gives {n_t} outputs and the student {n_s}: KD repair needs the same classes "
                             "in both. Use a teacher trained on the same classes, or teacher=None (the fp32 model).")
    return RepairConfig(teacher=oracle, train_x=x, train_y=train_y, epochs=epochs, oracle=oracle_name, **schedule)


def repair_with_teacher(
    student: torch.nn.Module, example_inputs: tuple, config: RepairConfig, *, calibration: np.ndarray | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Fine-tune ``student`` under int8 fake quantization toward the oracle; return a float copy with the new weights.

    The fake-quant ranges start from a post-training calibration pass (``calibration``, else the first 256 training
    samples: the global min/max of each activation, what the formats' MinMax calibration measures). The
    int8-simulated model is scored against the oracle (logits SQNR) before training and after each epoch on those
    samples, with observers off, and the best state by that score is kept (``best_epoch`` 0: no epoch beat the
    student's own simulation, and its weights come back unchanged). The score is a simulation on the calibration
    samples: each format's own file, measured on held-out data, can still come out slightly different
    (perf/quant_repair.py measures both), so callers compare the repaired file with the naive one.

    Args:
        student: the float student (left unchanged).
        example_inputs: batch-1 example inputs (the traced batch size is the training batch size).
        config: oracle, training data (labels optional) and schedule.
        calibration: samples that initialise the fake-quant ranges and score each epoch (optional).

    Returns:
        (the repaired float model, a summary: oracle, labels "yes"/"no", epochs, best epoch, fake-quant SQNR per
        epoch, seconds, final loss, schedule).

    Raises:
        RuntimeFailure: the model could not be traced or prepared for QAT, or the weights could not be copied back.
    """
    import torch
    import torch.nn.functional as F
    from torchao.quantization.pt2e import disable_observer, move_exported_model_to_eval, move_exported_model_to_train
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    from edgestill.compress.distill.losses import kd_loss
    from edgestill.compress.quantize.tflite import pt2e_quantizer

    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    bs = config.batch_size
    x_all = torch.from_numpy(np.ascontiguousarray(config.train_x)).float()
    y_all = torch.from_numpy(np.asarray(config.train_y)).long() if config.labelled else None
    teacher = config.teacher.eval()
    pairs = _conv_bn_pairs(student) if config.fold_bn else []
    work = copy.deepcopy(student)
    if pairs:
        _fold(work.eval(), pairs)
    else:
        work.train()
    try:
        graph = torch.export.export(work, (x_all[:bs],)).module()
        prepared = prepare_qat_pt2e(graph, pt2e_quantizer(is_qat=True))
    except Exception as exc:  # torch.export / PT2E raise many types
        raise RuntimeFailure(f"KD repair could not prepare {type(student).__name__} for QAT: {exc}") from exc
    score_x = _batches(np.asarray(calibration) if calibration is not None and len(calibration) >= bs else config.train_x[:256], bs)
    move_exported_model_to_eval(prepared)
    _calibrate(prepared, score_x)
    with torch.no_grad():
        oracle_out = [teacher(xb) for xb in score_x]

    weight_fqs = _fake_quants(prepared)[0]

    def score() -> float:
        prepared.apply(disable_observer)
        move_exported_model_to_eval(prepared)
        with torch.no_grad():
            got = torch.cat([prepared(xb) for xb in score_x]).double()
        for m in weight_fqs:
            m.enable_observer()
        ref = torch.cat(oracle_out).double()
        noise = float(((got - ref) ** 2).sum())
        return 300.0 if noise == 0 else float(10 * np.log10(max(float((ref ** 2).sum()), 1e-300) / noise))

    history = [round(score(), 2)]
    best_epoch, best_state = 0, None
    opt = torch.optim.Adam([p for p in prepared.parameters() if p.requires_grad], lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    last = float("nan")
    t2 = config.temperature ** 2
    for epoch in range(config.epochs):
        if not pairs and epoch < config.freeze_bn_epochs:
            move_exported_model_to_train(prepared)  # BatchNorm on batch statistics (and dropout on)
        else:
            move_exported_model_to_eval(prepared)  # BatchNorm on its running statistics, as the oracle and int8 file
        perm = torch.randperm(len(x_all), generator=gen)
        for s in range(0, len(perm) - bs + 1, bs):  # the traced batch size is fixed: drop the last partial batch
            idx = perm[s : s + bs]
            xb = x_all[idx]
            with torch.no_grad():
                t_logits = teacher(xb)
            s_logits = prepared(xb)
            if y_all is not None:
                loss = kd_loss(s_logits, t_logits, y_all[idx], temperature=config.temperature, alpha=config.alpha)
            else:
                loss = t2 * F.kl_div(F.log_softmax(s_logits / config.temperature, dim=1),
                                     F.log_softmax(t_logits / config.temperature, dim=1), reduction="batchmean", log_target=True)
            if config.logit_mse:
                loss = loss + config.logit_mse * F.mse_loss(s_logits, t_logits)
            opt.zero_grad()
            loss.backward()
            opt.step()
            last = float(loss.detach())
        history.append(round(score(), 2))
        if history[-1] > history[best_epoch]:
            best_epoch = epoch + 1
            best_state = {k: v.detach().clone() for k, v in prepared.state_dict().items()}
    repaired = copy.deepcopy(student).eval()
    if best_state is None:  # no epoch beat the student's own int8 simulation: keep its weights
        tuned = repaired.state_dict()
    elif pairs:
        tuned = _unfold(repaired, best_state, pairs)
    else:
        tuned = best_state
    target = repaired.state_dict()
    copied = [k for k in target if k in tuned and tuned[k].shape == target[k].shape]
    if len(copied) < len([k for k in target if not k.endswith("num_batches_tracked")]):
        missing = sorted(set(target) - set(copied))[:5]
        raise RuntimeFailure(f"KD repair could not map the QAT weights back to the model (missing e.g. {missing}).")
    repaired.load_state_dict({**target, **{k: tuned[k].detach().clone() for k in copied}})
    info = {"method": "PT2E QAT (litert-torch PT2EQuantizer, is_qat) + kd_loss, then per-format PTQ of the tuned weights",
            "oracle": config.oracle, "labels": "yes" if config.labelled else "no",
            "loss": ("kd_loss(alpha) with labels" if config.labelled else "T²·KL(oracle‖student)")
            + (f" + {config.logit_mse}·MSE(logits)" if config.logit_mse else ""),
            "epochs": config.epochs, "best_epoch": best_epoch, "fake_quant_sqnr_db_per_epoch": history,
            "scored_on": int(sum(len(xb) for xb in score_x)), "batch_size": bs, "lr": config.lr,
            "temperature": config.temperature, "alpha": config.alpha if config.labelled else None,
            "bn": f"folded into {len(pairs)} convs (statistics frozen)" if pairs else
            f"batch statistics for {min(config.freeze_bn_epochs, config.epochs)} epoch(s), then frozen", "train_samples": int(len(x_all)), "final_loss": round(last, 5),
            "seconds": round(time.perf_counter() - t0, 2)}
    return repaired.eval(), info


def _batches(x: np.ndarray, bs: int) -> list[torch.Tensor]:
    """Whole batches of ``bs`` (the traced batch size) from ``x``; the remainder is dropped."""
    import torch

    return [torch.from_numpy(np.ascontiguousarray(x[s : s + bs])).float() for s in range(0, len(x) - bs + 1, bs)]


def _fake_quants(prepared: Any) -> tuple[list[Any], list[Any]]:
    """The prepared model's fake-quant modules: (per-channel ones = weights, per-tensor ones = activations)."""
    fqs = [m for m in prepared.modules() if hasattr(m, "activation_post_process")
           and hasattr(m.activation_post_process, "averaging_constant")]
    return [m for m in fqs if getattr(m, "is_per_channel", False)], [m for m in fqs if not getattr(m, "is_per_channel", False)]


def _calibrate(prepared: Any, batches: list[torch.Tensor]) -> None:
    """Post-training MinMax state for the fake quantization, as the formats' PTQ measures it: the float model runs
    the calibration batches and each activation range is the global min/max of every tensor its fake-quant sees
    (one module can serve several tensors that share quantization parameters, e.g. a pooling's input and output),
    then frozen. The QAT observers' own update would keep a 1 % moving average near the first batch's range, and
    with shared modules the last tensor seen. Weight observers track the current weights exactly (averaging
    constant 1), so the simulated weight scale is always max|w| per channel, what PTQ of the tuned weights uses."""
    import torch

    weights, acts = _fake_quants(prepared)
    for m in weights + acts:
        m.disable_fake_quant()
        m.disable_observer()
    lo: dict[int, Any] = {}
    hi: dict[int, Any] = {}

    def seen(i: int):
        def hook(_module: Any, inputs: tuple) -> None:
            x = inputs[0].detach()
            lo[i] = torch.minimum(lo[i], x.min()) if i in lo else x.min()
            hi[i] = torch.maximum(hi[i], x.max()) if i in hi else x.max()
        return hook

    handles = [m.register_forward_pre_hook(seen(i)) for i, m in enumerate(acts)]
    try:
        with torch.no_grad():
            for xb in batches:
                prepared(xb)
    finally:
        for h in handles:
            h.remove()
    for i, m in enumerate(acts):
        o = m.activation_post_process
        if i in lo:
            o.min_val.resize_(lo[i].shape).copy_(lo[i])
            o.max_val.resize_(hi[i].shape).copy_(hi[i])
        o.averaging_constant = 0.0  # the next pass computes scale and zero point from these ranges, unchanged
    for m in weights:
        m.activation_post_process.averaging_constant = 1.0
    for m in weights + acts:
        m.enable_fake_quant()
        m.enable_observer()
    if batches:
        with torch.no_grad():
            prepared(batches[0])
    for m in acts:
        m.disable_observer()


def _conv_bn_pairs(model: torch.nn.Module) -> list[tuple[str, str]]:
    """(conv, batchnorm) module names where an affine BatchNorm2d with running statistics is the only reader of a
    Conv2d's output, each module called once; [] where torch.fx cannot trace the model (then nothing is folded)."""
    from torch import fx, nn

    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:  # data-dependent control flow and the like: repair without folding
        return []
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        bn = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(bn, nn.BatchNorm2d) or bn.running_var is None or bn.bias is None or not node.args:
            continue
        src = node.args[0]
        if not (isinstance(src, fx.Node) and src.op == "call_module" and isinstance(modules.get(src.target), nn.Conv2d)):
            continue
        if len(src.users) == 1 and calls[src.target] == 1 and calls[node.target] == 1:
            pairs.append((str(src.target), str(node.target)))
    return pairs


def _bn_scale_shift(bn: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) of an eval-mode BatchNorm: ``bn(z) = scale · z + shift``."""
    import torch

    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale.detach(), (bn.bias - scale * bn.running_mean).detach()


def _fold(model: torch.nn.Module, pairs: list[tuple[str, str]]) -> None:
    """Fold each BatchNorm into its conv (weight · scale, bias · scale + shift) and replace it by Identity."""
    import torch
    from torch import nn

    modules = dict(model.named_modules())
    with torch.no_grad():
        for conv_name, bn_name in pairs:
            conv, bn = modules[conv_name], modules[bn_name]
            scale, shift = _bn_scale_shift(bn)
            bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(scale)
            conv.weight = nn.Parameter(conv.weight.detach() * scale.reshape(-1, *[1] * (conv.weight.dim() - 1)))
            conv.bias = nn.Parameter(bias * scale + shift)
            parent, _, attr = bn_name.rpartition(".")
            setattr(modules[parent] if parent else model, attr, nn.Identity())


def _unfold(model: torch.nn.Module, tuned: dict[str, Any], pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """The state dict of ``model`` (the original architecture) that computes what the tuned folded model computes:
    conv weight = folded weight / scale (kept where a channel's scale is 0), the BN shift absorbs the folded bias;
    the conv bias, BN scale and statistics are unchanged. Other tensors are taken from ``tuned`` by name."""
    import torch

    modules = dict(model.named_modules())
    out = dict(tuned)
    with torch.no_grad():
        for conv_name, bn_name in pairs:
            conv, bn = modules[conv_name], modules[bn_name]
            scale, _ = _bn_scale_shift(bn)
            w, b = tuned[f"{conv_name}.weight"], tuned[f"{conv_name}.bias"]
            shape = (-1, *[1] * (w.dim() - 1))
            safe = torch.where(scale == 0, torch.ones_like(scale), scale)
            out[f"{conv_name}.weight"] = torch.where((scale == 0).reshape(shape), conv.weight.detach(), w / safe.reshape(shape))
            conv_bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(scale)
            if conv.bias is not None:
                out[f"{conv_name}.bias"] = conv_bias.clone()
            else:
                out.pop(f"{conv_name}.bias", None)
            for key, value in bn.state_dict().items():
                out[f"{bn_name}.{key}"] = value.detach().clone()
            out[f"{bn_name}.bias"] = b - scale * conv_bias + scale * bn.running_mean
    return out
