"""Text recipes: the configs of a ``task: text-classify`` or ``task: text-embed`` recipe, and its data.

A text recipe runs through the same engine (:func:`edgestill.chain.run.run_recipe`) and the same export, evaluate,
bench, checks and report as an image recipe; only its data, teacher, student and distill sections take text forms::

    task: text-classify                      # or text-embed
    data: {text: builtin, samples: 2000, classes: 4}   # or {text: intents.csv, column: text, label_column: label}
    teacher: {hf: models/teacher}            # or {hf_config: {layers: 4, hidden: 128, heads: 4}, train: {epochs: 3}}
    student: {from_teacher: every-other}     # or {hf: models/student} or {layers: 2, hidden: 64, heads: 4}
    distill: {epochs: 3, temperature: 2.0, alpha: 0.5, max_length: 32}   # alpha: the labels' share (KD: 1 - alpha)
    export: {formats: [onnx, openvino, tflite], precisions: [fp32, int8-dynamic], max_length: 32}

An embedder learns from unlabelled text (a .txt file, one text per line, or a CSV column; ``builtin`` gives the
generated sentences without their labels). Paths are relative to the recipe's folder; they are checked (the teacher
folder's config, weights and tokenizer, the sequence length against the model's maximum, the text file's kind) when
the recipe is read, before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgestill.errors import ConfigError, InputError, did_you_mean

if TYPE_CHECKING:
    from edgestill.compress.distill.text import TextDistillConfig

TEXT_TASKS = ("text-classify", "text-embed")
IMAGE_TASK = "image-classify"
GENERATE_TASK = "generate"  # a small causal language model (edgestill.chain.llm)
TASKS = (IMAGE_TASK, *TEXT_TASKS, GENERATE_TASK)
BUILTIN_TEXT = "builtin"
STUDENT_INITS = ("every-other",)
HF_FAMILIES = ("bert", "distilbert", "roberta")
TEXT_FILE_SUFFIXES = (".txt", ".csv", ".tsv")


def hf_task(task: str) -> str:
    """The model task (``classify`` / ``embed``) of a recipe task (``text-classify`` / ``text-embed``)."""
    return task.removeprefix("text-")


def _int(where: str, value: Any, low: int, high: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        span = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ConfigError(f"{where} must be a whole number {span}, got {value!r}.")


def _float(where: str, value: Any, low: float, high: float | None = None, *, open_low: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if open_low else value >= low) and (high is None or value <= high)
    if not ok:
        span = f"{'>' if open_low else '>='} {low}" + (f" and <= {high}" if high is not None else "")
        raise ConfigError(f"{where} must be a number {span}, got {value!r}.")


@dataclass(frozen=True, kw_only=True)
class TextDataConfig:
    """Where the texts come from: ``text: builtin`` (generated intent sentences, labelled) or a file.

    A file is a .txt (one text per line: unlabelled, for text-embed) or a CSV/TSV ``column`` (with ``label_column``
    for text-classify: class names or integer ids). ``samples``/``classes`` size the built-in set. The held-out
    ``val_fraction`` and ``test_fraction`` are split off by ``seed``; the test texts score every artifact.
    """

    text: str | Path = BUILTIN_TEXT
    samples: int = 2000
    classes: int = 4
    seed: int = 0
    column: str | None = None
    label_column: str | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        if isinstance(self.text, str) and self.text != BUILTIN_TEXT:
            object.__setattr__(self, "text", Path(self.text))
        if not isinstance(self.text, (str, Path)):
            raise ConfigError(f"data.text must be 'builtin' or a path to a .txt or .csv file, got {self.text!r}.")
        _int("data.samples", self.samples, 10, 1_000_000)
        _int("data.classes", self.classes, 2, 8)
        _int("data.seed", self.seed, 0)
        _float("data.val_fraction", self.val_fraction, 0.0, 0.5)
        _float("data.test_fraction", self.test_fraction, 0.0, 0.5, open_low=True)
        for key in ("column", "label_column"):
            v = getattr(self, key)
            if v is not None and (not isinstance(v, str) or not v):
                raise ConfigError(f"data.{key} must be a CSV column name, got {v!r}.")
        if self.builtin:
            given = [k for k in ("column", "label_column") if getattr(self, k) is not None]
            if given:
                raise ConfigError(f"data.{given[0]} names a CSV column, but data.text is 'builtin'; give data.text a CSV "
                                  "file, or drop the column keys.")
            return
        suffix = self.path.suffix.lower()
        if suffix not in TEXT_FILE_SUFFIXES:
            raise ConfigError(f"data.text {self.path} is not a .txt or .csv/.tsv file (one text per line, or a CSV with a "
                              "text column); give one of those, or 'builtin' for the generated sentences.")
        if suffix == ".txt" and (self.column or self.label_column):
            raise ConfigError(f"data.column/label_column name CSV columns, but data.text {self.path} is a .txt file "
                              "(one text per line, no labels). Give a CSV, or drop the column keys.")

    @property
    def builtin(self) -> bool:
        return self.text == BUILTIN_TEXT

    @property
    def path(self) -> Path:
        return Path(self.text)

    def to_dict(self) -> dict[str, Any]:
        return {"text": str(self.text), "samples": self.samples, "classes": self.classes, "seed": self.seed,
                "column": self.column, "label_column": self.label_column, "val_fraction": self.val_fraction,
                "test_fraction": self.test_fraction}


@dataclass(frozen=True, kw_only=True)
class HFArchConfig:
    """A BERT-like model built from a config (random weights, a tokenizer trained on the recipe's texts)."""

    family: str = "bert"
    layers: int = 4
    hidden: int = 128
    heads: int = 4
    intermediate: int | None = None  # default 2 x hidden
    max_position: int = 128

    def __post_init__(self) -> None:
        if self.family not in HF_FAMILIES:
            raise ConfigError(f"teacher.hf_config.family {self.family!r} is not valid."
                              f"{did_you_mean(str(self.family), HF_FAMILIES)} Valid: {', '.join(HF_FAMILIES)}.")
        _int("hf_config.layers", self.layers, 1, 48)
        _int("hf_config.hidden", self.hidden, 8, 4096)
        _int("hf_config.heads", self.heads, 1, 64)
        _int("hf_config.max_position", self.max_position, 8, 8192)
        if self.intermediate is not None:
            _int("hf_config.intermediate", self.intermediate, 1, 16384)
        if self.hidden % self.heads:
            raise ConfigError(f"hf_config.hidden {self.hidden} must be divisible by hf_config.heads {self.heads}.")

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "layers": self.layers, "hidden": self.hidden, "heads": self.heads,
                "intermediate": self.intermediate or 2 * self.hidden, "max_position": self.max_position}


@dataclass(frozen=True, kw_only=True)
class TextTrainConfig:
    """How the tool trains a teacher it built from ``hf_config`` (a classifier, on the labelled training texts)."""

    epochs: int = 3
    lr: float = 5e-4
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        _int("teacher.train.epochs", self.epochs, 1, 1000)
        _float("teacher.train.lr", self.lr, 0.0, 1.0, open_low=True)
        _int("teacher.train.batch_size", self.batch_size, 1, 65536)
        _int("teacher.train.seed", self.seed, 0)


@dataclass(frozen=True, kw_only=True)
class TextTeacherConfig:
    """The teacher: a local Hugging Face folder (``hf``), or one built from ``hf_config`` (trained here with
    ``train`` for text-classify; an embedder from a config is used as initialised, a stand-in for a real one)."""

    hf: Path | None = None
    hf_config: HFArchConfig | None = None
    train: TextTrainConfig | None = None
    trust_checkpoint: bool = False

    def __post_init__(self) -> None:
        given = [k for k in ("hf", "hf_config") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError(f"teacher: give exactly one of hf (a local Hugging Face folder) or hf_config (a model built "
                              f"from a config); got {', '.join(given) if given else 'none'}.")
        if self.train is not None and self.hf is not None:
            raise ConfigError("teacher.train trains a teacher built from teacher.hf_config; a teacher.hf folder is used "
                              "as it is. Drop teacher.train, or use hf_config.")
        if not isinstance(self.trust_checkpoint, bool):
            raise ConfigError(f"teacher.trust_checkpoint must be true or false, got {self.trust_checkpoint!r}.")


@dataclass(frozen=True, kw_only=True)
class TextStudentConfig:
    """The student: ``from_teacher: every-other`` (DistilBERT's initialisation: every other layer of the teacher),
    a local folder (``hf``), or a smaller model of the teacher's family (``layers``, ``hidden``, ``heads``)."""

    from_teacher: str | None = None
    hf: Path | None = None
    layers: int | None = None
    hidden: int | None = None
    heads: int | None = None
    intermediate: int | None = None
    trust_checkpoint: bool = False

    def __post_init__(self) -> None:
        sized = [k for k in ("layers", "hidden", "heads", "intermediate") if getattr(self, k) is not None]
        given = [k for k in ("from_teacher", "hf") if getattr(self, k) is not None] + (["layers..."] if sized else [])
        if len(given) != 1:
            raise ConfigError(f"student: give exactly one of from_teacher (every-other), hf (a local folder) or a size "
                              f"(layers, hidden, heads); got {', '.join(given) if given else 'none'}.")
        if self.from_teacher is not None and self.from_teacher not in STUDENT_INITS:
            raise ConfigError(f"student.from_teacher {self.from_teacher!r} is not valid."
                              f"{did_you_mean(str(self.from_teacher), STUDENT_INITS)} Valid: {', '.join(STUDENT_INITS)}.")
        if sized:
            missing = [k for k in ("layers", "hidden", "heads") if getattr(self, k) is None]
            if missing:
                raise ConfigError(f"student: a configured student needs layers, hidden and heads; {', '.join(missing)} "
                                  "missing (e.g. student: {layers: 2, hidden: 64, heads: 4}).")
            _int("student.layers", self.layers, 1, 48)
            _int("student.hidden", self.hidden, 8, 4096)
            _int("student.heads", self.heads, 1, 64)
            if self.intermediate is not None:
                _int("student.intermediate", self.intermediate, 1, 16384)
            if self.hidden % self.heads:
                raise ConfigError(f"student.hidden {self.hidden} must be divisible by student.heads {self.heads}.")

    @property
    def describe(self) -> str:
        if self.from_teacher:
            return f"from teacher ({self.from_teacher})"
        if self.hf is not None:
            return f"hf: {self.hf}"
        return f"{self.layers} layers, hidden {self.hidden}, {self.heads} heads"


@dataclass(frozen=True, kw_only=True)
class TextExportConfig:
    """The text facts of the export section: ``max_length`` tokens per exported input (default: distill.max_length),
    ``dynamic_length`` a symbolic sequence dim where the format allows (ONNX, OpenVINO)."""

    max_length: int | None = None
    dynamic_length: bool = False

    def __post_init__(self) -> None:
        if self.max_length is not None:
            _int("export.max_length", self.max_length, 2, 8192)
        if not isinstance(self.dynamic_length, bool):
            raise ConfigError(f"export.dynamic_length must be true or false, got {self.dynamic_length!r}.")


# --- parsing helpers (used by edgestill.chain.recipe) ------------------------------------------------------------

TEXT_DATA_KEYS = tuple(TextDataConfig.__dataclass_fields__)
TEXT_TEACHER_KEYS = tuple(TextTeacherConfig.__dataclass_fields__)
TEXT_STUDENT_KEYS = tuple(TextStudentConfig.__dataclass_fields__)
HF_CONFIG_KEYS = tuple(HFArchConfig.__dataclass_fields__)
TEXT_TRAIN_KEYS = tuple(TextTrainConfig.__dataclass_fields__)
TEXT_EXPORT_KEYS = tuple(TextExportConfig.__dataclass_fields__)


_TASK_ONLY = {"text-classify": ("mse_weight", "cosine_weight"), "text-embed": ("temperature", "alpha")}


def distill_keys(task: str) -> tuple[str, ...]:
    """The keys of a text recipe's distill section: :class:`~edgestill.compress.distill.text.TextDistillConfig`'s,
    less the task (the recipe's), the training threads (``--train-threads``) and the other task's loss settings."""
    from edgestill.compress.distill.text import TextDistillConfig

    return tuple(k for k in TextDistillConfig.__dataclass_fields__
                 if k not in ("task", "train_threads", *_TASK_ONLY[task]))


def check_text_recipe(task: str, data: TextDataConfig, teacher: TextTeacherConfig, student: TextStudentConfig,
                      distill: TextDistillConfig, export: TextExportConfig | None) -> None:
    """What one text section cannot see alone: labels for a classifier, the files named, the sequence lengths against
    the model's maximum. Reads only small files (config.json), never the texts or the weights.

    Raises:
        ConfigError: a classifier without labels, an embed recipe with a label column, a student folder with another
            task, a length past the model's maximum.
        InputError: a missing text file, a teacher or student folder without config.json, weights or tokenizer.json.
    """
    if task == "text-classify" and not data.builtin and data.label_column is None:
        raise ConfigError(f"task text-classify learns labelled texts, but data.text {data.path} names no label column. "
                          "Give a CSV with data.column and data.label_column, or use task text-embed for unlabelled text.")
    if task == "text-embed" and data.label_column is not None:
        raise ConfigError("task text-embed learns the teacher's embeddings from unlabelled text; data.label_column is "
                          "not used. Drop it, or use task text-classify.")
    if not data.builtin:
        if not data.path.exists():
            raise InputError(f"data.text {data.path} does not exist. Give a .txt file (one text per line) or a CSV with "
                             "a text column, or 'builtin'.")
        if not data.path.is_file():
            raise InputError(f"data.text {data.path} is not a file (a folder?). Give a .txt or .csv file.")
    lengths = [("distill.max_length", distill.max_length)]
    if export is not None and export.max_length is not None:
        lengths.append(("export.max_length", export.max_length))
    if teacher.hf is not None:
        limit = check_hf_folder(teacher.hf, "teacher.hf", task=task, trust=teacher.trust_checkpoint)
        what = f"the teacher {teacher.hf} takes ({limit} tokens, its max_position_embeddings)"
    else:
        limit = teacher.hf_config.max_position
        what = f"the teacher takes ({limit} tokens, teacher.hf_config.max_position)"
    if student.hf is not None:
        s_limit = check_hf_folder(student.hf, "student.hf", task=task, trust=student.trust_checkpoint)
        if s_limit < limit:
            limit, what = s_limit, f"the student {student.hf} takes ({s_limit} tokens, its max_position_embeddings)"
    for key, n in lengths:
        if n > limit:
            raise ConfigError(f"{key} {n} is longer than {what}. Give {key} <= {limit}.")


def check_hf_folder(path: Path, key: str, *, task: str, trust: bool = False) -> int:
    """A cheap check of a Hugging Face folder named in a recipe: config.json, weights, tokenizer.json, and the task
    its architecture fits. Returns the longest sequence it takes. (Loading it checks the rest.)

    Raises:
        InputError: missing folder, config.json, weights or tokenizer.json; config.json not JSON.
        ConfigError: a text-classify recipe whose folder holds no sequence classifier.
    """
    from edgestill.models.hf import check_hf_folder as check_folder
    from edgestill.models.hf import max_seq_len

    p = Path(path)
    if not p.is_dir():  # named by its recipe key; the folder's own faults are named by the loader's one check
        raise InputError(f"{key} {p} {'is not a folder' if p.exists() else 'does not exist'}. Give a local Hugging Face "
                         "model folder (config.json, model.safetensors, tokenizer.json); edgestill never downloads.")
    try:
        cfg, _, _ = check_folder(p, trust_checkpoint=trust)
    except InputError as exc:
        raise InputError(f"{key}: {exc}") from None
    classifier = any(str(a).endswith("ForSequenceClassification") for a in cfg.get("architectures") or ())
    if task == "text-classify" and not classifier:
        raise ConfigError(f"{key} {p} holds {cfg.get('architectures') or 'no architecture'}, not a sequence classifier "
                          "(*ForSequenceClassification), so task text-classify would train a random head. Give a "
                          "classifier folder, or use task text-embed.")
    return max_seq_len(cfg)


# --- data --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextSplit:
    texts: list[str]
    labels: np.ndarray | None  # (n,) int64; None for unlabelled text

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class TextData:
    """A text recipe's splits (train, val, test), class names (classify) and a content hash."""

    name: str
    train: TextSplit
    val: TextSplit
    test: TextSplit
    class_names: list[str]
    sha256: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def teacher_labels(folder: Path | None) -> list[str] | None:
    """The class names a teacher folder's config.json gives (id2label in id order), or None when it names none (no
    folder, no id2label, or the generic LABEL_0, LABEL_1, ...)."""
    if folder is None or not (Path(folder) / "config.json").is_file():
        return None
    try:
        id2label = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get("id2label") or {}
        names = [str(id2label[k]) for k in sorted(id2label, key=int)]
    except (ValueError, AttributeError, TypeError, KeyError):
        return None
    return None if not names or names == [f"LABEL_{i}" for i in range(len(names))] else names


def load_text_data(cfg: TextDataConfig, task: str, *, label_names: list[str] | None = None) -> TextData:
    """The recipe's texts (built-in or from a file), split into train, val and test by ``cfg.seed``.

    ``label_names``: the teacher's class names in id order (:func:`teacher_labels`); a CSV's label names are mapped to
    those ids, so a given classifier is scored against its own classes.

    Raises:
        InputError: the file is missing, empty, not UTF-8, a CSV without the named column or with empty labels, too
            few texts for the splits.
    """
    from edgestill.data.text import generated_texts, read_texts

    labels: np.ndarray | None
    if cfg.builtin:
        ts = generated_texts(cfg.samples, seed=cfg.seed, num_classes=cfg.classes)
        texts, labels, names, name = ts.texts, ts.labels, ts.class_names, f"builtin-intents-{cfg.classes}"
        if task == "text-embed":
            labels, names = None, []
    else:
        texts = read_texts(cfg.path, column=cfg.column)
        labels, names, name = None, [], cfg.path.name
        if cfg.label_column is not None:
            raw = read_texts(cfg.path, column=cfg.label_column)
            if len(raw) != len(texts):
                raise InputError(f"CSV file {cfg.path}: column {cfg.label_column!r} has {len(raw)} non-empty values but "
                                 f"the text column has {len(texts)}; every row needs a text and a label.")
            labels, names = _label_ids(raw, label_names, where=f"CSV file {cfg.path}: column {cfg.label_column!r}")
            if len(set(labels.tolist())) < 2:
                raise InputError(f"CSV file {cfg.path}: column {cfg.label_column!r} holds one class ({raw[0]!r}); a "
                                 "classifier needs at least 2.")
    n = len(texts)
    n_test = max(1, int(round(n * cfg.test_fraction)))
    n_val = int(round(n * cfg.val_fraction))
    if n - n_test - n_val < 2 or n_test < 2:
        raise InputError(f"data: {n} texts are too few to split into train, val ({cfg.val_fraction}) and test "
                         f"({cfg.test_fraction}); give at least 10 texts.")
    order = np.random.default_rng(cfg.seed).permutation(n)
    parts = np.split(order, [n - n_test - n_val, n - n_test])

    def split(idx: np.ndarray) -> TextSplit:
        return TextSplit([texts[i] for i in idx], None if labels is None else labels[idx])

    digest = hashlib.sha256(json.dumps([texts, None if labels is None else labels.tolist(), names,
                                        cfg.to_dict()]).encode()).hexdigest()
    return TextData(name=name, train=split(parts[0]), val=split(parts[1]), test=split(parts[2]), class_names=names,
                    sha256=digest)


def _label_ids(raw: list[str], known: list[str] | None, *, where: str) -> tuple[np.ndarray, list[str]]:
    """Integer labels from a label column: integer ids kept as they are; class names mapped to ``known`` (the
    teacher's names in id order) when given, else numbered in sorted order.

    Raises:
        InputError: a negative id, or a name the teacher does not have (its names listed).
    """
    if all(v.lstrip("-").isdigit() for v in raw):
        ids = np.array([int(v) for v in raw], dtype=np.int64)
        if ids.min() < 0:
            raise InputError(f"{where}: label ids must be >= 0, got {int(ids.min())}.")
        count = max(int(ids.max()) + 1, len(known or ()))
        return ids, list(known or ()) + [str(i) for i in range(len(known or ()), count)]
    if known:
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise InputError(f"{where} holds labels {unknown[:5]} that the teacher does not classify; its classes are "
                             f"{known} (config.json id2label). Use those names, or their ids 0..{len(known) - 1}.")
        index = {n: i for i, n in enumerate(known)}
        return np.array([index[v] for v in raw], dtype=np.int64), list(known)
    names = sorted(set(raw))
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[v] for v in raw], dtype=np.int64), names
