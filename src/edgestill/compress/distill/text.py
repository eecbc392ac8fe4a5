"""Distillation for Hugging Face text models: a sequence classifier by response KD, a sentence embedder by matching the
teacher's pooled embeddings; students made from the teacher (DistilBERT's every-other-layer recipe) or configured
smaller; plain fine-tuning with labels for the teacher and the no-KD baseline.

Every model is a local Hugging Face folder read by :func:`edgestill.models.hf.load_hf_model` (eager attention, the
same module every exporter traces), and every student is written as one: config.json, model.safetensors and the
teacher's tokenizer files, so ``load_hf_model(student_dir)`` and ``edgestill export --model student_dir`` take it. A
folder is written into a staging folder inside ``out_dir`` and renamed into place at the end: it is whole or absent.

Training runs the module ``load_hf_model`` returns, the one every exporter traces, so a student learns exactly the
output its exported files give: logits for task "classify"; for task "embed" the folder's sentence embedding (the
attention-mask-weighted mean of the last hidden state, or what its sentence-transformers ``modules.json`` declares:
pooling, a Dense projection, normalisation; see :func:`edgestill.models.hf.read_head`). A student narrower than its
teacher's embedding carries a linear projection to the teacher's width, written with
:func:`edgestill.models.hf.write_head` in the sentence-transformers layout (sentence-transformers reads the folder
unchanged)::

    modules.json                 [Transformer "", Pooling "1_Pooling", Dense "2_Dense"]
    1_Pooling/config.json        {"word_embedding_dimension": h, "pooling_mode_mean_tokens": true, ...}
    2_Dense/config.json          {"in_features": h, "out_features": H, "bias": true,
                                  "activation_function": "torch.nn.modules.linear.Identity"}
    2_Dense/model.safetensors    linear.weight (H, h) float32, linear.bias (H,) float32

so the folder's embedding, as ``load_hf_model`` and export compute it, is ``linear.weight @ mean_pool(last_hidden_state)
+ linear.bias``, of the teacher's width.

Training: AdamW (no weight decay on biases and LayerNorm weights), linear warm-up over ``warmup_fraction`` of the
steps then linear decay to zero (BERT's schedule), gradients clipped to norm 1, each batch padded only to its longest
text. Deterministic for a seed and thread count: torch's RNG is seeded inside a forked RNG state (dropout) and the data
order comes from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgestill.errors import ConfigError, InputError

TASKS: tuple[str, ...] = ("classify", "embed")
TextProgress = Callable[[int, int, int, float], None]
"""``progress(epoch, step, total_steps, loss)`` after every optimizer step: 1-based epoch and step (counted over the
whole run), the epoch's running mean loss."""
LAYER_KEY = re.compile(r"\.layer\.(\d+)\.")
"""Where the encoder layer index sits in a state-dict key (BERT/RoBERTa ``encoder.layer.N.``, DistilBERT
``transformer.layer.N.``, and the other families :mod:`edgestill.models.hf` takes)."""
EVERY_OTHER = "every-other"
RETRIEVAL_K = 5
CLIP_NORM = 1.0
_INTERMEDIATE_KEY = {"distilbert": "hidden_dim"}  # config key of the feed-forward width; the others: intermediate_size
_MAX_LENGTH = 8192


@dataclass(frozen=True, kw_only=True)
class TextDistillConfig:
    """How to fine-tune or distil a text model.

    ``task`` "classify": ``alpha * CE(labels) + (1 - alpha) * T² * KL(teacher || student)`` on the logits, both
    softened by ``temperature`` (alpha 1: no KD; alpha 0: the teacher only, no labels needed). ``task`` "embed":
    ``mse_weight * MSE + cosine_weight * (1 - cos)`` between the student's and the teacher's pooled embeddings.
    ``max_length``: tokens per text, special tokens included; a longer text is refused unless ``truncate``.
    ``lr`` is AdamW's peak learning rate, reached after ``warmup_fraction`` of the steps. ``train_threads``: torch's
    intra-op threads while training (restored afterwards).
    """

    task: str
    epochs: int = 3
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    temperature: float = 2.0
    alpha: float = 0.5
    mse_weight: float = 1.0
    cosine_weight: float = 1.0
    max_length: int = 64
    truncate: bool = False
    seed: int = 0
    train_threads: int = 2

    def __post_init__(self) -> None:
        def bad(key: str, valid: str) -> ConfigError:
            return ConfigError(f"text distill config: {key}={getattr(self, key)!r} is not valid; {key} must be {valid}.")

        if self.task not in TASKS:
            raise bad("task", f"one of {', '.join(TASKS)} (classify: logits with labels and KD; embed: pooled "
                              "sentence embeddings)")
        for key, low, high in (("epochs", 1, 10_000), ("batch_size", 1, 65_536), ("max_length", 2, _MAX_LENGTH),
                               ("seed", 0, 2**32 - 1), ("train_threads", 1, 1024)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise bad(key, f"an integer in {low}..{high}")
        if not isinstance(self.truncate, bool):
            raise bad("truncate", "true or false")
        checks = {
            "lr": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
            "weight_decay": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
            "warmup_fraction": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
            "temperature": (lambda v: 0 < v <= 100, "a number in (0, 100]"),
            "alpha": (lambda v: 0 <= v <= 1, "a number in [0, 1] (1: labels only, 0: the teacher only)"),
            "mse_weight": (lambda v: v >= 0, "a number >= 0"),
            "cosine_weight": (lambda v: v >= 0, "a number >= 0"),
        }
        for key, (ok, valid) in checks.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
                raise bad(key, valid)
        if self.task == "embed" and self.mse_weight == 0 and self.cosine_weight == 0:
            raise ConfigError("text distill config: mse_weight and cosine_weight are both 0, so the embedding loss is "
                              "always 0 and nothing would be learnt; give at least one a positive weight (default 1 each).")


@dataclass(frozen=True, kw_only=True)
class TextTrainResult:
    """What :func:`train_text` returns: the saved folder, the mean loss of each epoch, and (with eval texts)
    ``metrics = {"accuracy": ...}``."""

    model_dir: Path
    task: str
    epochs: int
    history: list[float] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"model_dir": str(self.model_dir), "task": self.task, "epochs": self.epochs,
                "history": list(self.history), "metrics": dict(self.metrics)}


@dataclass(frozen=True, kw_only=True)
class TextDistillResult:
    """What :func:`distill_text` returns: the saved student folder, the mean loss of each epoch, and the metrics on
    the eval texts after training (``metrics``) and of the student as given, before training (``metrics_before``).

    classify: ``accuracy``, ``teacher_accuracy`` (with eval labels) and ``teacher_agreement`` (top-1 agreement with
    the teacher); embed: ``mean_cosine_to_teacher`` and ``retrieval_agreement_at_5`` (see :func:`embedding_metrics`).
    Both are empty without eval texts.
    """

    student_dir: Path
    task: str
    epochs: int
    history: list[float] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_before: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"student_dir": str(self.student_dir), "task": self.task, "epochs": self.epochs,
                "history": list(self.history), "metrics": dict(self.metrics), "metrics_before": dict(self.metrics_before)}


# ------------------------------------------------------------------------------------------------- metrics
def embedding_metrics(student_emb: Any, teacher_emb: Any, *, k: int = RETRIEVAL_K) -> dict[str, float]:
    """How well student embeddings stand in for the teacher's on the same texts (numpy only).

    ``mean_cosine_to_teacher``: the mean over texts of cos(student_i, teacher_i). ``retrieval_agreement_at_{k}``: for
    each text, its ``k`` nearest neighbours (by cosine, itself excluded) among the others by the teacher's embeddings
    and by the student's; the share of the teacher's neighbours the student also finds, averaged over texts (1.0: the
    same neighbours everywhere; a random ordering gives about k / (n - 1)).

    Raises:
        InputError: not two 2-D arrays of the same shape, non-finite values, ``k`` not an integer >= 1, or no more
            than ``k`` texts (a text needs ``k`` others to have ``k`` neighbours).
    """
    from edgestill.runtimes.accuracy import embedding_agreement

    s, t = np.asarray(student_emb, dtype=np.float64), np.asarray(teacher_emb, dtype=np.float64)
    if s.ndim != 2 or s.shape != t.shape:
        raise InputError(f"embedding metrics compare two (texts, width) arrays of one shape; got student "
                         f"{list(s.shape)} and teacher {list(t.shape)}. Embed the same texts with both models "
                         "(a narrower student needs its projection to the teacher's width).")
    if isinstance(k, int) and not isinstance(k, bool) and k >= 1 and len(s) <= k:
        raise InputError(f"retrieval agreement at {k} needs more than {k} texts (each needs {k} others as "
                         f"neighbours); got {len(s)}. Pass more eval texts.")
    agreement = embedding_agreement(s, t, k=k)  # the one implementation the artifacts' scores use too
    return {"mean_cosine_to_teacher": agreement.mean_cosine, f"retrieval_agreement_at_{k}": agreement.retrieval_agreement}


def _classify_metrics(logits: np.ndarray, teacher_logits: np.ndarray, labels: np.ndarray | None) -> dict[str, float]:
    pred, teacher_pred = logits.argmax(1), teacher_logits.argmax(1)
    out = {"teacher_agreement": float((pred == teacher_pred).mean())}
    if labels is not None:
        out = {"accuracy": float((pred == labels).mean()), "teacher_accuracy": float((teacher_pred == labels).mean()),
               **out}
    return out


# --------------------------------------------------------------------------------------------- students
def student_from_teacher(teacher_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                         layers: str | int | Sequence[int] = EVERY_OTHER) -> Path:
    """A student initialised from the teacher, DistilBERT's way: the same family and widths, the teacher's embeddings,
    the chosen encoder layers (copied in order), and its pooler and classifier head, or its embedder head
    (pooling, projection, normalisation: see the module docstring), where it has them.

    Args:
        layers: "every-other" (teacher layers 0, 2, 4, ...), a number of layers (spread evenly from the first to the
            last teacher layer), or the teacher layer indices to keep, increasing.

    Returns:
        ``out_dir / "student_init"``, a Hugging Face folder with the teacher's tokenizer files (replaced if present).

    Raises:
        InputError: the teacher folder cannot be loaded (see ``load_hf_model``), or ``layers`` is not one of the
            forms above or names a layer the teacher does not have (the message gives the valid range).
    """
    import torch

    teacher = _load(teacher_dir, task=None, max_length=None, role="teacher")
    n = int(teacher.hf.config.num_hidden_layers)
    chosen = _pick_layers(layers, n)
    config = copy.deepcopy(teacher.hf.config)
    config.num_hidden_layers = len(chosen)
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the random init is overwritten below; seeded only so nothing depends on the caller's RNG
        student = type(teacher.hf)(config)
    source = teacher.hf.state_dict()
    state = {}
    for key in student.state_dict():
        m = LAYER_KEY.search(key)
        src = key if m is None else f"{key[:m.start()]}.layer.{chosen[int(m.group(1))]}.{key[m.end():]}"
        state[key] = source[src].clone()
    student.load_state_dict(state, strict=True)
    head = teacher.head
    if head is not None and head.linear is not None:
        head = dataclasses.replace(head, linear=copy.deepcopy(head.linear))
    return _publish(student, head, teacher.tokenizer_dir, Path(out_dir), "student_init")


def smaller_student(teacher_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, layers: int,
                    hidden: int | None = None, heads: int | None = None, intermediate: int | None = None,
                    seed: int = 0) -> Path:
    """A randomly initialised student of the teacher's family and head (classifier or encoder), configured smaller.

    Unset sizes keep the teacher's: ``heads`` the teacher's count, ``intermediate`` the teacher's feed-forward width
    scaled by ``hidden / teacher hidden``. An embedder student keeps the teacher's pooling and normalisation; where
    its width differs from the teacher's embedding width, it gets a linear projection (random, seeded) from its pooled
    embedding to the teacher's width, saved in its folder as a sentence-transformers Dense module (see the module
    docstring): the embedding loss is computed on the projected embedding, the projection is trained with the
    student, and the folder's embedding (what ``load_hf_model`` and export give) is the projected one.

    Returns:
        ``out_dir / "student_init"``, a Hugging Face folder with the teacher's tokenizer files (replaced if present).

    Raises:
        InputError: the teacher folder cannot be loaded, or a size is not a positive integer or ``hidden`` is not
            divisible by ``heads``.
    """
    import torch

    teacher = _load(teacher_dir, task=None, max_length=None, role="teacher")
    config = copy.deepcopy(teacher.hf.config)
    family = config.model_type
    inter_key = _INTERMEDIATE_KEY.get(family, "intermediate_size")
    t_hidden, t_heads = int(config.hidden_size), int(config.num_attention_heads)
    hidden = t_hidden if hidden is None else hidden
    heads = t_heads if heads is None else heads
    for key, value in (("layers", layers), ("hidden", hidden), ("heads", heads), ("intermediate", intermediate),
                       ("seed", seed)):
        if value is None and key == "intermediate":
            continue
        low = 0 if key == "seed" else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise InputError(f"smaller student: {key}={value!r} is not valid; it must be an integer >= {low}.")
    if hidden % heads:
        raise InputError(f"smaller student: hidden {hidden} is not divisible by heads {heads}; each attention head "
                         f"gets hidden / heads features. Pick heads dividing {hidden} (e.g. "
                         f"{', '.join(str(h) for h in range(1, 17) if hidden % h == 0)}).")
    if intermediate is None:
        intermediate = max(1, round(int(getattr(config, inter_key)) * hidden / t_hidden))
    config.num_hidden_layers, config.hidden_size, config.num_attention_heads = layers, hidden, heads
    setattr(config, inter_key, intermediate)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        student = type(teacher.hf)(config)
        head = teacher.head
        if head is not None:
            width = teacher.width
            head = dataclasses.replace(head, linear=torch.nn.Linear(hidden, width) if hidden != width else None,
                                       activation="identity")
    return _publish(student, head, teacher.tokenizer_dir, Path(out_dir), "student_init")


def _pick_layers(layers: Any, n: int) -> list[int]:
    valid = (f'"{EVERY_OTHER}", a number of layers in 1..{n}, or increasing teacher layer indices in 0..{n - 1} '
             f"(the teacher has {n} layers)")
    if layers == EVERY_OTHER:
        return list(range(0, n, 2))
    if isinstance(layers, int) and not isinstance(layers, bool):
        if not 1 <= layers <= n:
            raise InputError(f"student layers {layers} is out of range: pass {valid}.")
        return sorted({round(i * (n - 1) / (layers - 1)) for i in range(layers)}) if layers > 1 else [0]
    if isinstance(layers, Sequence) and not isinstance(layers, str) and layers:
        chosen = list(layers)
        if all(isinstance(i, int) and not isinstance(i, bool) for i in chosen):
            out = [i for i in chosen if not 0 <= i < n]
            if out:
                raise InputError(f"student layers {chosen}: {out} out of range; pass {valid}.")
            if all(a < b for a, b in zip(chosen, chosen[1:])):
                return chosen
    raise InputError(f"student layers {layers!r} is not valid: pass {valid}.")


# ---------------------------------------------------------------------------------------------- training
def train_text(model_dir: str | os.PathLike[str], texts: Sequence[str], labels: Any, config: TextDistillConfig,
               out_dir: str | os.PathLike[str], *, eval_texts: Sequence[str] | None = None, eval_labels: Any = None,
               progress: TextProgress | None = None) -> TextTrainResult:
    """Fine-tune a sequence classifier on labelled texts (cross-entropy; the teacher, or the student without KD).

    Returns:
        the result; the model is saved to ``out_dir / "model"`` (replaced if present) with its tokenizer files.

    Raises:
        ConfigError: ``config.task`` is not "classify" (an embedder has no labels to learn from here).
        InputError: the folder cannot be loaded or is not a sequence classifier; no texts; labels of another length,
            not integers or outside the model's classes; a text longer than ``max_length`` without ``truncate``;
            ``max_length`` above the model's maximum; the loss became NaN or Inf.
    """
    if config.task != "classify":
        raise ConfigError(f"train_text fine-tunes classifiers on labels (task 'classify'); got task {config.task!r}. "
                          "Distil an embedder from a teacher with distill_text instead.")
    _check_texts(texts, "training texts")
    model = _load(model_dir, task="classify", max_length=config.max_length, role="model")
    classes = model.num_labels
    y = _check_labels(labels, len(texts), classes, "labels")
    eval_feeds, eval_y = _eval_inputs(model, eval_texts, eval_labels, config, classes, model.input_names)
    feeds = model.encode(texts, config, "training text", model.input_names)
    with _threads(config.train_threads):
        history = _fit(model, feeds, config, labels=y, teacher_out=None, progress=progress)
        metrics = {}
        if eval_feeds is not None and eval_y is not None:
            metrics = {"accuracy": float((_predict(model, eval_feeds).argmax(1) == eval_y).mean())}
    out = _publish(model.hf, model.head, model.tokenizer_dir, Path(out_dir), "model")
    return TextTrainResult(model_dir=out, task="classify", epochs=config.epochs, history=history, metrics=metrics)


def distill_text(teacher_dir: str | os.PathLike[str], student_dir: str | os.PathLike[str], texts: Sequence[str],
                 config: TextDistillConfig, out_dir: str | os.PathLike[str], *, labels: Any = None,
                 eval_texts: Sequence[str] | None = None, eval_labels: Any = None,
                 progress: TextProgress | None = None) -> TextDistillResult:
    """Train the student in ``student_dir`` to match the teacher on ``texts`` (see :class:`TextDistillConfig`).

    The teacher's outputs on the training and eval texts are computed once, batched and without gradients, before
    training; the teacher is then released. The texts are tokenised with the teacher's tokenizer, which the student
    must share. classify: ``labels`` (one class index per text) are needed unless ``alpha`` is 0. embed: texts only
    (unlabelled: :func:`edgestill.data.text.read_texts`, or ``generated_texts(n).texts``).

    Returns:
        the result; the student is saved to ``out_dir / "student"`` (replaced if present), with the teacher's
        tokenizer files and, for an embedder, its head (projection included, see the module docstring).

    Raises:
        InputError: a folder cannot be loaded; no texts; classify: a teacher or student without a classification
            head, different class counts, labels missing (alpha > 0), of another length or outside the classes;
            embed: labels given, a student whose embedding width differs from the teacher's with no projection,
            2..5 eval texts (retrieval at 5 needs 6); a student with another vocabulary than the teacher's; a text
            longer than ``max_length`` without ``truncate``, or ``max_length`` above a model's maximum; the loss
            became NaN or Inf.
    """
    task = config.task
    _check_texts(texts, "training texts")
    teacher = _load(teacher_dir, task=task, max_length=config.max_length, role="teacher")
    student = _load(student_dir, task=task, max_length=config.max_length, role="student")
    _check_same_tokenizer(teacher, student)
    y = None
    if task == "classify":
        if student.num_labels != teacher.num_labels:
            raise InputError(f"the student classifies into {student.num_labels} classes, the teacher into "
                             f"{teacher.num_labels}: response KD matches the two distributions class by class. Make "
                             "the student from this teacher (student_from_teacher or smaller_student).")
        if labels is None and config.alpha > 0:
            raise InputError(f"alpha={config.alpha:g} weighs cross-entropy on labels, but no labels were given. Pass "
                             "one class index per training text, or set alpha to 0 to learn from the teacher alone.")
        if labels is not None:
            y = _check_labels(labels, len(texts), teacher.num_labels, "labels")
    else:
        if labels is not None or eval_labels is not None:
            raise InputError("task 'embed' learns the teacher's embeddings from unlabelled texts; labels were given. "
                             "Leave labels out (or use task 'classify' to distil a classifier).")
        if student.width != teacher.width:
            raise InputError(f"the student's embedding is {student.width} wide and the teacher's {teacher.width}: the "
                             "loss compares them feature by feature. Make the student with smaller_student (it adds a "
                             "projection to the teacher's width when the widths differ) or give it the teacher's hidden "
                             "size.")
        if eval_texts is not None and len(eval_texts) <= RETRIEVAL_K:
            raise InputError(f"{len(eval_texts)} eval texts: retrieval agreement at {RETRIEVAL_K} needs more than "
                             f"{RETRIEVAL_K}. Pass more eval texts, or none.")
    names = list(dict.fromkeys([*teacher.input_names, *student.input_names]))  # e.g. BERT teacher, DistilBERT student
    eval_feeds, eval_y = _eval_inputs(teacher, eval_texts, eval_labels, config, teacher.num_labels, names)
    feeds = teacher.encode(texts, config, "training text", names)
    with _threads(config.train_threads):
        needs_train = task == "embed" or config.alpha < 1
        teacher_out = _predict(teacher, feeds) if needs_train else None
        teacher_eval = _predict(teacher, eval_feeds) if eval_feeds is not None else None
        del teacher
        gc.collect()

        def measure() -> dict[str, float]:
            if eval_feeds is None:
                return {}
            out = _predict(student, eval_feeds)
            if task == "embed":
                return embedding_metrics(out, teacher_eval)
            return _classify_metrics(out, teacher_eval, eval_y)

        before = measure()
        history = _fit(student, feeds, config, labels=y, teacher_out=teacher_out, progress=progress)
        after = measure()
    out = _publish(student.hf, student.head, student.tokenizer_dir, Path(out_dir), "student")
    return TextDistillResult(student_dir=out, task=task, epochs=config.epochs, history=history, metrics=after,
                             metrics_before=before)


# ----------------------------------------------------------------------------------------------- helpers
@dataclass(kw_only=True, eq=False)
class _TextModel:
    """A loaded folder: ``load_hf_model``'s module (the transformers model and, for an embedder, its head), the input
    names it takes in order, its tokenizer file."""

    module: Any
    task: str
    input_names: list[str]
    tokenizer_file: Path
    folder: Path

    @property
    def hf(self) -> Any:
        return self.module.hf

    @property
    def head(self) -> Any:
        """The embedder head (edgestill.models.hf.Head), None for a classifier."""
        return self.module.head if self.task == "embed" else None

    @property
    def tokenizer_dir(self) -> Path:
        return self.tokenizer_file.parent

    @property
    def num_labels(self) -> int:
        return int(self.hf.config.num_labels)

    @property
    def width(self) -> int:
        """The embedding width: the projection's output, else the hidden size."""
        linear = self.head.linear if self.head is not None else None
        return int(linear.out_features) if linear is not None else int(self.hf.config.hidden_size)

    def encode(self, texts: Sequence[str], config: TextDistillConfig, what: str,
               names: Sequence[str]) -> dict[str, np.ndarray]:
        """``texts`` as int64 arrays for the inputs ``names``, padded to the longest text (batches cut them shorter)."""
        from edgestill.runtimes.text import KIND_BY_NAME, load_tokenizer, tokenize

        tokens = tokenize(load_tokenizer(self.tokenizer_file, what=f"tokenizer of {self.folder.name}:"), texts,
                          max_length=config.max_length, truncate=config.truncate, what=what)
        return {name: tokens.by_kind(KIND_BY_NAME[name]) for name in names}

    def forward(self, batch: dict[str, Any]) -> Any:
        return self.module(*(batch[name] for name in self.input_names))

    def train(self, mode: bool) -> None:
        self.module.train(mode)


def _load(folder: str | os.PathLike[str], *, task: str | None, max_length: int | None, role: str) -> _TextModel:
    from edgestill.models.hf import load_hf_model

    try:
        loaded = load_hf_model(folder, seq_len=max_length, task=task)
    except InputError as exc:
        raise InputError(f"{role}: {exc}") from None
    text = loaded.source["text"]
    return _TextModel(module=loaded.model, task=text["task"], input_names=[s.name for s in loaded.input_shapes],
                      tokenizer_file=Path(text["tokenizer_path"]), folder=Path(loaded.source["path"]))


def _publish(hf: Any, head: Any, tokenizer_dir: Path, out_dir: Path, name: str) -> Path:
    """Save ``hf`` (+ its embedder head where it is not plain mean pooling, + the tokenizer files) into a staging
    folder inside ``out_dir``, then rename it to ``out_dir / name``, replacing an existing one: never half-written."""
    from edgestill.models.hf import TOKENIZER_FILES, Head, write_head

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.staging-", dir=out_dir))
    except OSError as exc:
        raise InputError(f"cannot write into {out_dir}: {exc.strerror}. Pass a folder you can write to.") from None
    final, old = out_dir / name, None
    try:
        hf.save_pretrained(staging, safe_serialization=True)
        for file in TOKENIZER_FILES:
            if (tokenizer_dir / file).is_file():
                shutil.copyfile(tokenizer_dir / file, staging / file)
        if head is not None and head != Head():
            write_head(staging, head, int(hf.config.hidden_size))
        if final.exists() or final.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=out_dir))
            os.replace(final, old / name)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None and not final.exists():
            os.replace(old / name, final)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return final.resolve()


def _check_texts(texts: Any, what: str) -> None:
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise InputError(f"{what} must be a list of strings, got {type(texts).__name__}.")
    if len(texts) == 0:
        raise InputError(f"no {what}: pass at least one text (edgestill.data.text.read_texts reads a .txt file, one "
                         "text per line, or a CSV column; generated_texts(n) makes a built-in set).")


def _check_labels(labels: Any, n: int, classes: int, what: str) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise InputError(f"{what}: {len(y) if y.ndim == 1 else list(y.shape)} given for {n} texts; pass one class "
                         "index per text.")
    if y.dtype.kind not in "iu":
        raise InputError(f"{what} must be integer class indices, got dtype {y.dtype}.")
    bad = np.flatnonzero((y < 0) | (y >= classes))
    if len(bad):
        raise InputError(f"{what}: label {int(y[bad[0]])} (text {int(bad[0])}) is outside the model's {classes} classes "
                         f"0..{classes - 1}{f'; {len(bad)} labels are' if len(bad) > 1 else ''}. Use a model with "
                         "as many classes as the data, or map the labels to 0..classes-1.")
    return y.astype(np.int64)


def _eval_inputs(model: _TextModel, eval_texts: Any, eval_labels: Any, config: TextDistillConfig, classes: int,
                 names: Sequence[str]) -> tuple[dict[str, np.ndarray] | None, np.ndarray | None]:
    if eval_texts is None:
        if eval_labels is not None:
            raise InputError("eval labels were given without eval texts; pass both, or neither.")
        return None, None
    _check_texts(eval_texts, "eval texts")
    y = _check_labels(eval_labels, len(eval_texts), classes, "eval labels") if eval_labels is not None else None
    return model.encode(eval_texts, config, "eval text", names), y


def _check_same_tokenizer(teacher: _TextModel, student: _TextModel) -> None:
    from edgestill.runtimes.text import load_tokenizer

    t_vocab, s_vocab = int(teacher.hf.config.vocab_size), int(student.hf.config.vocab_size)
    same = t_vocab == s_vocab
    if same and teacher.tokenizer_file.read_bytes() != student.tokenizer_file.read_bytes():
        t_tok, s_tok = load_tokenizer(teacher.tokenizer_file), load_tokenizer(student.tokenizer_file)
        same = t_tok.get_vocab(with_added_tokens=True) == s_tok.get_vocab(with_added_tokens=True)
    if not same:
        raise InputError(f"the student's vocabulary ({s_vocab} ids, tokenizer {student.tokenizer_file}) differs from "
                         f"the teacher's ({t_vocab} ids, tokenizer {teacher.tokenizer_file}): distillation feeds both "
                         "models the same token ids, so they must share one tokenizer. Make the student with "
                         "student_from_teacher or smaller_student, which copy the teacher's tokenizer.")


@contextmanager
def _threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _batch(feeds: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, Any]:
    """The rows ``idx`` as int64 tensors, cut to the longest text among them (padding beyond it changes nothing)."""
    import torch

    length = max(1, int(feeds["attention_mask"][idx].sum(1).max()))
    return {name: torch.from_numpy(np.ascontiguousarray(a[idx, :length])) for name, a in feeds.items()}


def _predict(model: _TextModel, feeds: dict[str, np.ndarray], batch_size: int = 64) -> np.ndarray:
    """The model's outputs (logits or embeddings) on every row, in eval mode, as float32; batches of similar length."""
    import torch

    lengths = feeds["attention_mask"].sum(1)
    order = np.argsort(lengths, kind="stable")
    outs = []
    model.train(False)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            outs.append(model.forward(_batch(feeds, order[start:start + batch_size])).float().numpy())
    result = np.empty((len(order), outs[0].shape[1]), dtype=np.float32)
    result[order] = np.concatenate(outs)
    return result


def _fit(model: _TextModel, feeds: dict[str, np.ndarray], config: TextDistillConfig, *, labels: np.ndarray | None,
         teacher_out: np.ndarray | None, progress: TextProgress | None) -> list[float]:
    """Train ``model`` in place; the mean loss of each epoch."""
    import torch
    import torch.nn.functional as F

    from edgestill.compress.distill.losses import embedding_loss, kd_loss

    n = len(feeds["input_ids"])
    steps_per_epoch = math.ceil(n / config.batch_size)
    total = config.epochs * steps_per_epoch
    warmup = round(config.warmup_fraction * total)
    named = list(model.module.named_parameters())
    no_decay = [p for k, p in named if p.ndim < 2 or "LayerNorm" in k or "layer_norm" in k]
    decay = [p for k, p in named if not (p.ndim < 2 or "LayerNorm" in k or "layer_norm" in k)]
    params = [p for _, p in named]

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    rng = np.random.default_rng(config.seed)
    history: list[float] = []
    T, alpha = config.temperature, config.alpha
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
        model.train(True)
        step = 0
        try:
            for epoch in range(1, config.epochs + 1):
                order = rng.permutation(n)
                loss_sum, seen = 0.0, 0
                for b in range(steps_per_epoch):
                    idx = order[b * config.batch_size:(b + 1) * config.batch_size]
                    out = model.forward(_batch(feeds, idx))
                    target = torch.from_numpy(teacher_out[idx]) if teacher_out is not None else None
                    if config.task == "embed":
                        loss = embedding_loss(out, target, mse_weight=config.mse_weight,
                                              cosine_weight=config.cosine_weight)
                    elif labels is None:  # alpha == 0: the teacher only
                        loss = T * T * F.kl_div(F.log_softmax(out / T, dim=1), F.log_softmax(target / T, dim=1),
                                                reduction="batchmean", log_target=True)
                    elif target is None:  # alpha == 1: labels only
                        loss = F.cross_entropy(out, torch.from_numpy(labels[idx]))
                    else:  # kd_loss's alpha weighs the teacher term
                        loss = kd_loss(out, target, torch.from_numpy(labels[idx]), temperature=T, alpha=1.0 - alpha)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, CLIP_NORM))
                    value = float(loss.detach())
                    if not (math.isfinite(value) and math.isfinite(grad_norm)):
                        raise InputError(
                            f"training diverged at epoch {epoch}, step {step + 1} of {total}: the loss is {value:.6g} "
                            f"and the gradient norm {grad_norm:.6g} at learning rate {schedule.get_last_lr()[0]:.4g}. "
                            f"Nothing was saved. Lower the learning rate (lr={config.lr:g}) or the loss weights, or "
                            "check the models' outputs for NaN (a broken teacher folder).")
                    optimizer.step()
                    schedule.step()
                    step += 1
                    loss_sum += value * len(idx)
                    seen += len(idx)
                    if progress is not None:
                        progress(epoch, step, total, loss_sum / seen)
                history.append(loss_sum / seen)
        finally:
            model.train(False)
    return history
