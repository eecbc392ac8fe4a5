"""Recipes: one YAML file describing the whole chain, loaded with ``yaml.safe_load`` into typed, frozen configs.

One config type per stage, the same one the Python API and the CLI use: ``DataConfig`` (data), ``TeacherConfig``,
``StudentConfig``, ``DistillConfig`` (with the trainer's ``TrainConfig``), ``ExportConfig`` (export; its
``tolerances`` are the ``validate`` section), ``QuantizeConfig`` (the accuracy budget of every int8 precision),
``BenchConfig`` and ``GateConfig``. An unknown key or a bad value is a :class:`~edgestill.errors.ConfigError`
(exit 2) naming the key path (``distill.temprature``), the closest valid key and the valid choices. Paths are
relative to the recipe's folder.

Sections: ``data`` (required), ``teacher``, ``student`` (required), ``distill`` (required), ``export``, ``quantize``,
``validate``, ``bench``, ``gate``; plus an optional ``name`` and ``task``: ``image-classify`` (the default),
``text-classify`` or ``text-embed``, which give the data, teacher, student and distill sections their text forms
(:mod:`edgestill.chain.text`), or ``generate`` (a small causal language model: :mod:`edgestill.chain.llm`). See ``examples/*.yaml``; the demo is the built-in recipe ``demo`` (``edgestill
recipes show demo``).

A recipe may come from anyone, so it is read defensively: safe-loaded (no python tags), at most
:data:`MAX_RECIPE_BYTES`, at most :data:`MAX_ALIASES` aliases expanding to at most :data:`MAX_VALUES` values (a small
alias bomb would otherwise expand to gigabytes), nested at most :data:`MAX_DEPTH` levels, no duplicate keys (YAML
would keep the last one silently), keys that are text, and only finite numbers. Each refusal is a ConfigError or
InputError (exit 2) naming the key or line and the limit.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgestill.benchmarks.bench import BenchConfig
from edgestill.chain.checks import GateConfig
from edgestill.chain.text import (
    GENERATE_TASK,
    IMAGE_TASK,
    TASKS,
    TEXT_TASKS,
    TextDataConfig,
    TextExportConfig,
    TextStudentConfig,
    TextTeacherConfig,
)
from edgestill.compress.distill.losses import LossTerm
from edgestill.compress.distill.trainer import TrainConfig
from edgestill.compress.quantize.budget import QuantizeConfig
from edgestill.compress.quantize.options import QuantOptions
from edgestill.data.loaders import Augment, DataConfig
from edgestill.errors import ConfigError, InputError, did_you_mean
from edgestill.export.api import ExportConfig
from edgestill.export.validate import Tolerances
from edgestill.limits import read_small_text
from edgestill.runtimes.harness import BenchOptions

TEACHER_SOURCES = ("model", "program", "predictions", "artifact")
TEACHER_MODES = ("auto", "cached", "online")
BUILTIN_RECIPES = ("demo", "demo-quick")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

MAX_RECIPE_BYTES = 1024 * 1024
"""A recipe is a few KB; a file past 1 MiB is the wrong file or an attack, refused before it is read."""
MAX_ALIASES = 100
"""Aliases (``*name``) in one recipe; real recipes use a handful to share a block."""
MAX_VALUES = 100_000
"""Values (mappings, lists and scalars) a recipe may expand to with its aliases resolved; the examples have ~100."""
MAX_DEPTH = 32
"""Nesting levels; the deepest real key (``distill.losses[0].options.pairs[0][0]``) is 6 levels down."""
MAX_INT = 2**64 - 1
"""The largest whole number a recipe may hold (a seed fits; a 400-digit number would overflow float checks)."""


def _is_int(v: Any, low: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _model_spec(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a built-in model name or a factory 'package.module:function', got {value!r}.")
    if ":" in value and not _FACTORY.match(value):
        raise ConfigError(f"{key} {value!r} is not a factory 'package.module:function' (e.g. mypkg.nets:build_student).")
    return value


@dataclass(frozen=True, kw_only=True)
class TeacherConfig:
    """Where the teacher's answers come from; exactly one of ``model``, ``program``, ``predictions``, ``artifact``.

    - ``model``: a built-in name or ``pkg.module:function`` factory, with ``checkpoint`` weights, or trained here
      when ``train`` is given (built-in teachers are cached by config and data);
    - ``program``: a TorchScript (.pt) or ``torch.export`` (.pt2) file, used for inference only;
    - ``predictions``: an NPZ/CSV of per-sample logits, probabilities or labels keyed by sample id (``kind``);
    - ``artifact``: an exported ONNX/TFLite/OpenVINO model run on its runtime (``runtime``).
    """

    model: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: Path | None = None
    trust_checkpoint: bool = False
    train: TrainConfig | None = None
    program: Path | None = None
    predictions: Path | None = None
    kind: str = "auto"
    artifact: Path | None = None
    runtime: str | None = None

    def __post_init__(self) -> None:
        given = [k for k in TEACHER_SOURCES if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError(f"teacher: give exactly one of {', '.join(TEACHER_SOURCES)}; got "
                              f"{', '.join(given) if given else 'none'}. Leave the teacher section out for teacher-free "
                              "losses (ce, tfkd) or born-again generations from labels.")
        source = given[0]
        if self.model is not None:
            _model_spec("teacher.model", self.model)
            if self.checkpoint is not None and self.train is not None:
                raise ConfigError("teacher: give teacher.checkpoint (trained weights) or teacher.train (train it here), "
                                  "not both.")
            if self.checkpoint is None and self.train is None:
                raise ConfigError("teacher.model needs trained weights: give teacher.checkpoint, or teacher.train "
                                  "(e.g. {epochs: 10}) to train it here first.")
        if not isinstance(self.kwargs, Mapping):
            raise ConfigError(f"teacher.kwargs must be a mapping of model options, got {self.kwargs!r}.")
        owners = {"kwargs": "model", "checkpoint": "model", "train": "model", "trust_checkpoint": "model",
                  "kind": "predictions", "runtime": "artifact"}
        for key, owner in owners.items():
            default = {"kwargs": {}, "trust_checkpoint": False, "kind": "auto"}.get(key)
            if getattr(self, key) not in (None, default) and owner != source:
                raise ConfigError(f"teacher.{key} applies to a teacher given by teacher.{owner}, not by teacher.{source}.")
        from edgestill.compress.distill.blackbox import KINDS

        if self.kind not in KINDS:
            raise ConfigError(f"teacher.kind {self.kind!r} is not valid.{did_you_mean(str(self.kind), KINDS)} "
                              f"Valid: {', '.join(KINDS)}.")
        if self.program is not None and self.program.suffix.lower() not in (".pt", ".pt2", ".ts"):
            raise ConfigError(f"teacher.program {self.program} must be a TorchScript (.pt) or torch.export (.pt2) file.")
        object.__setattr__(self, "kwargs", dict(self.kwargs))

    @property
    def source(self) -> str:
        return next(k for k in TEACHER_SOURCES if getattr(self, k) is not None)

    @property
    def black_box(self) -> bool:
        """Only the teacher's answers are known: no layers, no online outputs."""
        return self.source in ("predictions", "artifact")


@dataclass(frozen=True, kw_only=True)
class StudentConfig:
    """The model to train: a built-in name or ``pkg.module:function`` factory, optionally from a checkpoint."""

    model: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: Path | None = None
    trust_checkpoint: bool = False

    def __post_init__(self) -> None:
        _model_spec("student.model", self.model)
        if not isinstance(self.kwargs, Mapping):
            raise ConfigError(f"student.kwargs must be a mapping of model options, got {self.kwargs!r}.")
        object.__setattr__(self, "kwargs", dict(self.kwargs))


@dataclass(frozen=True, kw_only=True)
class DistillConfig:
    """Loss terms and the training schedule. ``train`` holds the TrainConfig fields written flat in the YAML.

    ``temperature`` and ``alpha``, when written, are the default of every loss term that has that option and does
    not set it itself. ``generations`` > 1 is born-again training (each generation learns from the previous one).
    ``baseline: true`` also trains the student without a teacher, same seed and schedule, to measure the KD gain.
    """

    losses: tuple[LossTerm, ...]
    train: TrainConfig
    generations: int = 1
    teacher_mode: str = "auto"
    baseline: bool = False

    def __post_init__(self) -> None:
        if not _is_int(self.generations, 1) or self.generations > 10:
            raise ConfigError(f"distill.generations must be a whole number in [1, 10], got {self.generations!r}.")
        if self.teacher_mode not in TEACHER_MODES:
            raise ConfigError(f"distill.teacher_mode {self.teacher_mode!r} is not valid."
                              f"{did_you_mean(str(self.teacher_mode), TEACHER_MODES)} Valid: {', '.join(TEACHER_MODES)}.")
        if not isinstance(self.baseline, bool):
            raise ConfigError(f"distill.baseline must be true or false, got {self.baseline!r}.")

    @property
    def needs_teacher(self) -> bool:
        return any(t.spec.needs_teacher for t in self.losses)

    @property
    def uses_layers(self) -> bool:
        return any(t.pairs for t in self.losses)


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """A whole chain: data → teacher → distill → export (+ int8) → bench → gate."""

    name: str
    data: DataConfig | TextDataConfig
    teacher: TeacherConfig | TextTeacherConfig | None
    student: StudentConfig | TextStudentConfig
    distill: DistillConfig | Any  # a text recipe's: edgestill.compress.distill.text.TextDistillConfig
    export: ExportConfig | None = None  # its tolerances are the recipe's validate section
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)  # the budget of every int8 precision
    bench: BenchConfig | None = None
    gate: GateConfig = field(default_factory=GateConfig)
    source: Path | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)  # the YAML as read, paths resolved: hashed for resumes
    task: str = IMAGE_TASK
    text_export: TextExportConfig | None = None  # a text recipe's export.max_length / dynamic_length
    llm_export: Any = None  # a generate recipe's export section (edgestill.chain.llm.LLMExportConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(f"name {self.name!r} is not a usable name; use letters, digits, '.', '_' or '-'.")
        if self.task not in TASKS:
            raise ConfigError(f"task {self.task!r} is not valid.{did_you_mean(str(self.task), TASKS)} Valid: "
                              f"{', '.join(TASKS)}.")
        if self.is_llm:
            return  # its sections checked each other when read (edgestill.chain.llm.check_llm_recipe)
        if self.is_text:
            if self.teacher is None:
                raise ConfigError(f"task {self.task} distils from a teacher: add a teacher section (teacher: {{hf: DIR}} "
                                  "or teacher: {hf_config: {layers: 4, hidden: 128, heads: 4}, train: {epochs: 3}}).")
            return
        if self.distill.needs_teacher and self.teacher is None and self.distill.generations == 1:
            names = sorted({t.name for t in self.distill.losses if t.spec.needs_teacher})
            raise ConfigError(f"distill.losses use {', '.join(names)}, which learn from a teacher, but the recipe has no "
                              "teacher section. Add one, or use teacher-free losses (ce, tfkd).")
        if self.teacher is not None and self.teacher.black_box:
            feature = [t.name for t in self.distill.losses if t.pairs]
            if feature:
                raise ConfigError(f"distill.losses {', '.join(feature)} match layers of the teacher, but teacher."
                                  f"{self.teacher.source} gives only its answers (a black-box teacher). Use response "
                                  "losses (kd, dkd, ce) with it, or give the teacher as teacher.model / teacher.program.")
            if self.distill.teacher_mode == "online":
                raise ConfigError("distill.teacher_mode: online needs a teacher that can run on augmented batches; a "
                                  "black-box teacher's answers are fixed. Remove teacher_mode or data.augment.")
            if self.distill.generations > 1:
                raise ConfigError("distill.generations > 1 (born-again) learns from torch students; it starts from a "
                                  "torch teacher or from labels, not from a black-box teacher.")
        if self.teacher is not None and self.teacher.source == "program" and self.distill.uses_layers:
            names = [t.name for t in self.distill.losses if t.pairs]
            raise ConfigError(f"distill.losses {', '.join(names)} hook layers of the teacher, but teacher.program is "
                              "an inference-only TorchScript/torch.export file whose layers cannot be hooked. Give the "
                              "teacher as teacher.model + teacher.checkpoint, or use response losses (kd, dkd).")
        if self.teacher is not None and self.teacher.black_box and self.data.augment.active:
            raise ConfigError(f"data.augment {self.data.augment.name!r} changes the training images every epoch, but a "
                              f"black-box teacher (teacher.{self.teacher.source}) answered for the original images only. "
                              "Remove data.augment for black-box distillation.")

    @property
    def is_text(self) -> bool:
        return self.task in TEXT_TASKS

    @property
    def is_llm(self) -> bool:
        return self.task == GENERATE_TASK

    def fingerprint(self, *sections: str) -> str:
        """sha256 of the named raw sections (what a stage depends on in the recipe); all of them when none named."""
        payload = {s: self.raw.get(s) for s in (sections or _SECTIONS)
                   if s != "task" or self.raw.get(s) is not None}  # an image recipe's hash predates the task key
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


# --- parsing ---------------------------------------------------------------------------------------------------

_SECTIONS = ("name", "task", "data", "teacher", "student", "distill", "export", "quantize", "validate", "bench", "gate")
_REQUIRED = ("data", "student", "distill")


def _key_path(where: str, key: Any) -> str:
    name = str(key) if len(str(key)) <= 40 else str(key)[:37] + "..."
    return f"{where}.{name}" if where else name


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: a message never quotes a whole 100,000-value list."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_document(doc: Any) -> str | None:
    """Refuse what no config can use: a cycle, too many values, too deep, a key that is not text, binary data,
    a date or a set. Returns the key path of the first NaN/Inf number (refused once the configs had their say).

    Raises:
        ConfigError: naming the key path and the limit or the fix.
    """
    count = 0
    non_finite: list[str] = []
    active: set[int] = set()

    def walk(path: str, value: Any, depth: int) -> None:
        nonlocal count
        count += 1
        shown = path or "(top level)"
        if count > MAX_VALUES:
            raise ConfigError(f"recipe holds more than {MAX_VALUES:,} values (aliases expanded); a recipe has a few "
                              "hundred. Shorten it, or check that it is the right file.")
        if depth > MAX_DEPTH:
            raise ConfigError(f"recipe key '{shown}' is nested more than {MAX_DEPTH} levels deep; no recipe setting is "
                              "that deep. Check the brackets and indentation there.")
        if isinstance(value, float) and not math.isfinite(value):
            non_finite.append(path)
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            try:
                digits = f"{len(str(abs(value)))} digits"
            except ValueError:  # past Python's int-to-text limit
                digits = "thousands of digits"
            raise ConfigError(f"recipe key '{shown}' is too large ({digits}); numbers in a recipe fit in 64 bits "
                              f"(at most {MAX_INT:,}).")
        elif isinstance(value, (bytes, bytearray)):
            raise ConfigError(f"recipe key '{shown}' is binary data (!!binary); give text or a number instead.")
        elif isinstance(value, (datetime.date, datetime.datetime)):
            raise ConfigError(f"recipe key '{shown}' was read as a date ({value}); quote it if you mean text.")
        elif isinstance(value, (set, frozenset)):
            raise ConfigError(f"recipe key '{shown}' is a set (!!set); write a list [a, b] instead.")
        elif isinstance(value, (Mapping, list, tuple)):
            if id(value) in active:
                raise ConfigError(f"recipe key '{shown}' contains itself (an alias of a value it is part of); a recipe "
                                  "value cannot repeat itself forever. Remove that alias.")
            active.add(id(value))
            if isinstance(value, Mapping):
                for key, item in value.items():
                    if not isinstance(key, str):
                        kind = "a date" if isinstance(key, datetime.date) else type(key).__name__
                        raise ConfigError(f"recipe key '{_key_path(path, key)}' is not text (YAML read it as {kind}); "
                                          "keys are names: quote it, e.g. \"" + _key_path("", key) + "\": ...")
                    walk(_key_path(path, key), item, depth + 1)
            else:
                for i, item in enumerate(value):
                    walk(f"{shown}[{i}]", item, depth + 1)
            active.discard(id(value))

    walk("", doc, 0)
    return non_finite[0] if non_finite else None


_SCALAR_TYPES = {"int": "a whole number", "float": "a number", "bool": "true or false"}


def _check_scalars(where: str, cls: Any, d: Mapping[str, Any]) -> None:
    """Refuse a value of the wrong type for a config field typed int, float or bool (``min_runs: 1.5``, ``"5"``,
    ``trust_checkpoint: "yes"``) before the config compares it with anything."""
    for f in dataclasses.fields(cls):
        if f.name not in d or not isinstance(f.type, str):
            continue
        optional = f.type.endswith(" | None")
        kind = f.type.removesuffix(" | None")
        if kind not in _SCALAR_TYPES:
            continue
        v = d[f.name]
        if v is None and optional:
            continue
        ok = (isinstance(v, bool) if kind == "bool" else
              isinstance(v, int) and not isinstance(v, bool) if kind == "int" else
              isinstance(v, (int, float)) and not isinstance(v, bool))
        if not ok:
            raise ConfigError(f"recipe key '{_key_path(where, f.name)}' must be {_SCALAR_TYPES[kind]}"
                              f"{' (or null for none)' if optional else ''}, got {_short(v)}.")


def _check_keys(where: str, d: Any, valid: tuple[str, ...] | list[str]) -> dict[str, Any]:
    if d is None:
        return {}
    if not isinstance(d, Mapping):
        raise ConfigError(f"recipe key '{where}' must be a mapping of keys to values, got {_short(d)}.")
    for key in d:
        if key not in valid:
            path = f"{where}.{key}" if where else str(key)
            raise ConfigError(f"recipe key '{path}' is not valid.{did_you_mean(str(key), valid)} Valid keys"
                              f"{' under ' + repr(where) if where else ''}: {', '.join(valid)}.")
    return dict(d)


def _fields(cls: Any, exclude: tuple[str, ...] = ()) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name not in exclude]


def _paths(d: dict[str, Any], keys: tuple[str, ...], base: Path, where: str) -> None:
    for k in keys:
        if d.get(k) is not None:
            if not isinstance(d[k], str) or not d[k] or "\x00" in d[k]:
                raise ConfigError(f"recipe key '{where}.{k}' must be a path, got {_short(d[k])}.")
            p = Path(d[k]).expanduser()
            d[k] = p if p.is_absolute() else (base / p)


def _build(where: str, cls: Any, d: dict[str, Any]) -> Any:
    _check_scalars(where, cls, d)
    try:
        return cls(**d)
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(where.split(".")[0]) else f"{where}: {msg}") from None
    except TypeError as exc:  # a value of a type the config cannot take at all
        raise ConfigError(f"{where}: {exc}") from None


def _train_config(where: str, d: dict[str, Any]) -> TrainConfig:
    return _build(where, TrainConfig, d)


def recipe_from_dict(doc: Any, *, base_dir: Path = Path("."), name: str = "recipe", source: Path | None = None) -> Recipe:
    """Build a :class:`Recipe` from parsed YAML.

    Raises:
        ConfigError: an unknown key (closest suggested, valid keys listed) or a bad value (valid choices named).
        UnknownNameError: an unknown loss, dataset or model name.
    """
    from edgestill.compress.distill.losses import parse_terms

    non_finite = _check_document(doc)
    doc = _check_keys("", doc, _SECTIONS)
    missing = [s for s in _REQUIRED if doc.get(s) is None]
    if missing:
        raise ConfigError(f"recipe is missing section(s) {', '.join(missing)}. A recipe needs data, student and distill "
                          "(see examples/*.yaml).")
    base_dir = Path(base_dir)
    task = doc.get("task", IMAGE_TASK)
    if task not in TASKS:
        raise ConfigError(f"recipe key 'task' {_short(task)} is not valid.{did_you_mean(str(task), TASKS)} Valid: "
                          f"{', '.join(TASKS)}.")
    if task in TEXT_TASKS:
        return _text_recipe(doc, task, base_dir=base_dir, name=name, source=source, non_finite=non_finite)
    if task == GENERATE_TASK:
        return _llm_recipe(doc, base_dir=base_dir, name=name, source=source, non_finite=non_finite)

    data = _check_keys("data", doc["data"], _fields(DataConfig))
    if "augment" in data:
        data["augment"] = _build("data.augment", Augment, _check_keys("data.augment", data["augment"], _fields(Augment)))
    _paths(data, ("folder", "npz", "csv"), base_dir, "data")
    data_cfg = _build("data", DataConfig, data)

    teacher_cfg = None
    if doc.get("teacher") is not None:
        t = _check_keys("teacher", doc["teacher"], _fields(TeacherConfig))
        _paths(t, ("checkpoint", "program", "predictions", "artifact"), base_dir, "teacher")
        if t.get("train") is not None:
            t["train"] = _train_config("teacher.train", _check_keys("teacher.train", t["train"], _fields(TrainConfig)))
        teacher_cfg = _build("teacher", TeacherConfig, t)

    s = _check_keys("student", doc["student"], _fields(StudentConfig))
    _paths(s, ("checkpoint",), base_dir, "student")
    student_cfg = _build("student", StudentConfig, s)

    train_keys = _fields(TrainConfig)
    dist = _check_keys("distill", doc["distill"], ["losses", *train_keys, "generations", "teacher_mode", "baseline"])
    if "losses" not in dist:
        raise ConfigError("distill.losses is missing: list the loss terms, e.g. losses: [{name: kd, weight: 1.0}]. "
                          "Valid losses: " + ", ".join(_loss_names()) + ".")
    terms = _terms("distill.losses", dist.pop("losses"), parse_terms)
    shared = {k: dist[k] for k in ("temperature", "alpha") if k in dist}
    if shared:
        terms = tuple(LossTerm(name=t.name, weight=t.weight,
                               options={**{k: v for k, v in shared.items() if k in t.spec.defaults}, **t.options})
                      for t in terms)
    extra = {k: dist.pop(k) for k in ("generations", "teacher_mode", "baseline") if k in dist}
    distill_cfg = _build("distill", DistillConfig, {"losses": terms, "train": _train_config("distill", dist), **extra})

    export_cfg = _export_config(doc, ())
    quantize_cfg, bench_cfg, gate_cfg = _later_sections(doc, export_cfg, base_dir, non_finite)
    raw = json.loads(json.dumps(doc, default=str))
    for section, cfg in (("data", data_cfg),):
        raw[section] = cfg.to_dict()
    for section, keys in (("teacher", ("checkpoint", "program", "predictions", "artifact")), ("student", ("checkpoint",))):
        if isinstance(raw.get(section), dict):
            for k in keys:
                if raw[section].get(k) is not None:
                    raw[section][k] = str(getattr(teacher_cfg if section == "teacher" else student_cfg, k))
    return Recipe(name=doc.get("name", name), data=data_cfg, teacher=teacher_cfg, student=student_cfg,
                  distill=distill_cfg, export=export_cfg, quantize=quantize_cfg, bench=bench_cfg, gate=gate_cfg,
                  source=source, raw=raw)


# the export keys the chain sets itself for a text recipe (from the student it loads and the task)
_TEXT_EXPORT_SET = ("inputs", "embedding")


def _export_config(doc: Mapping[str, Any], text_keys: tuple[str, ...]) -> ExportConfig | None:
    """The export section (with the validate section as its tolerances); ``text_keys`` are the text facts that the
    section may also hold (returned apart by the caller)."""
    tolerances = _build("validate", Tolerances, _check_keys("validate", doc.get("validate"), _fields(Tolerances)))
    if doc.get("export") is None:
        return None
    exclude = ("tolerances", "strict", *(_TEXT_EXPORT_SET if text_keys else ()))
    e = _check_keys("export", doc["export"], [*_fields(ExportConfig, exclude=exclude), *text_keys])
    for k in text_keys:
        e.pop(k, None)
    return _build("export", ExportConfig, {"name": "student", **e, "tolerances": tolerances})


def _later_sections(doc: Mapping[str, Any], export_cfg: ExportConfig | None, base_dir: Path,
                    non_finite: str | None, *, exported: bool | None = None,
                    ) -> tuple[QuantizeConfig, BenchConfig | None, GateConfig]:
    """The quantize, bench and gate sections (the same for every task); ``exported`` says whether the recipe exports
    anything (default: it has an image/text export section)."""
    q = _check_keys("quantize", doc.get("quantize"), _fields(QuantizeConfig, exclude=("formats", "precision", "name")))
    if "options" in q:
        q["options"] = _build("quantize.options", QuantOptions,
                              _check_keys("quantize.options", q["options"], _fields(QuantOptions)))
    int8 = [p for p in (export_cfg.precisions if export_cfg else ()) if p not in ("fp32", "fp16")]
    if export_cfg is not None:
        q.update(formats=export_cfg.formats, name=export_cfg.name, **({"precision": int8[0]} if int8 else {}))
    quantize_cfg = _build("quantize", QuantizeConfig, q)
    bench_cfg = None
    if doc.get("bench") is not None:
        b = _check_keys("bench", doc["bench"], _fields(BenchConfig, exclude=("timing",)) + _fields(BenchOptions))
        timing = _build("bench", BenchOptions, {k: b.pop(k) for k in list(b) if k in _fields(BenchOptions)})
        if b.get("inventory") is not None:
            _paths(b, ("inventory",), base_dir, "bench")
            b["inventory"] = str(b["inventory"])
        bench_cfg = _build("bench", BenchConfig, {**b, "timing": timing})
        _check_bench_devices(bench_cfg)
    gate_cfg = _build("gate", GateConfig, _check_keys("gate", doc.get("gate"), _fields(GateConfig)))
    if bench_cfg is not None and not (export_cfg is not None if exported is None else exported):
        raise ConfigError("bench needs exported artifacts: add an export section (e.g. export: {formats: [onnx]}).")
    if non_finite is not None:  # every config took what it checks itself; the rest may not be NaN/Inf either
        raise ConfigError(f"recipe key '{non_finite}' is not a finite number (NaN or Inf); give a finite value.")
    return quantize_cfg, bench_cfg, gate_cfg


def _text_recipe(doc: Mapping[str, Any], task: str, *, base_dir: Path, name: str, source: Path | None,
                 non_finite: str | None) -> Recipe:
    """A ``text-classify`` / ``text-embed`` recipe (see :mod:`edgestill.chain.text` for its sections).

    Raises:
        ConfigError / InputError: as :func:`recipe_from_dict`, and the file checks of
            :func:`edgestill.chain.text.check_text_recipe` (before anything is written).
    """
    from edgestill.chain import text as tx

    data = _check_keys("data", doc["data"], tx.TEXT_DATA_KEYS)
    if isinstance(data.get("text"), str) and data["text"] != tx.BUILTIN_TEXT:
        _paths(data, ("text",), base_dir, "data")
    data_cfg = _build("data", TextDataConfig, data)
    if doc.get("teacher") is None:
        raise ConfigError(f"recipe is missing section teacher; task {task} distils from a teacher (teacher: {{hf: DIR}} "
                          "or teacher: {hf_config: {layers: 4, hidden: 128, heads: 4}, train: {epochs: 3}}).")
    t = _check_keys("teacher", doc["teacher"], tx.TEXT_TEACHER_KEYS)
    _paths(t, ("hf",), base_dir, "teacher")
    if t.get("hf_config") is not None:
        t["hf_config"] = _build("teacher.hf_config", tx.HFArchConfig,
                                _check_keys("teacher.hf_config", t["hf_config"], tx.HF_CONFIG_KEYS))
    if t.get("train") is not None:
        t["train"] = _build("teacher.train", tx.TextTrainConfig, _check_keys("teacher.train", t["train"], tx.TEXT_TRAIN_KEYS))
    teacher_cfg = _build("teacher", TextTeacherConfig, t)
    if task == "text-classify" and teacher_cfg.hf_config is not None and teacher_cfg.train is None:
        raise ConfigError("teacher.hf_config builds a classifier with random weights: add teacher.train (e.g. "
                          "{epochs: 3}) to train it on the labelled texts first, or give a trained teacher.hf folder.")
    s = _check_keys("student", doc["student"], tx.TEXT_STUDENT_KEYS)
    _paths(s, ("hf",), base_dir, "student")
    student_cfg = _build("student", TextStudentConfig, s)
    from edgestill.compress.distill.text import TextDistillConfig

    dist = _check_keys("distill", doc["distill"], tx.distill_keys(task))
    distill_cfg = _build("distill", TextDistillConfig, {**dist, "task": tx.hf_task(task)})
    export_cfg = _export_config(doc, tx.TEXT_EXPORT_KEYS)
    text_export = None
    if doc.get("export") is not None:
        text_export = _build("export", TextExportConfig, {k: doc["export"][k] for k in tx.TEXT_EXPORT_KEYS
                                                          if k in doc["export"]})
    quantize_cfg, bench_cfg, gate_cfg = _later_sections(doc, export_cfg, base_dir, non_finite)
    tx.check_text_recipe(task, data_cfg, teacher_cfg, student_cfg, distill_cfg, text_export)
    raw = json.loads(json.dumps(doc, default=str))
    raw["data"] = data_cfg.to_dict()
    for section, cfg in (("teacher", teacher_cfg), ("student", student_cfg)):
        if cfg.hf is not None:
            raw[section]["hf"] = str(cfg.hf)
    return Recipe(name=doc.get("name", name), task=task, data=data_cfg, teacher=teacher_cfg, student=student_cfg,
                  distill=distill_cfg, export=export_cfg, text_export=text_export, quantize=quantize_cfg,
                  bench=bench_cfg, gate=gate_cfg, source=source, raw=raw)


def _llm_recipe(doc: Mapping[str, Any], *, base_dir: Path, name: str, source: Path | None,
                non_finite: str | None) -> Recipe:
    """A ``generate`` recipe (see :mod:`edgestill.chain.llm` for its sections).

    Raises:
        ConfigError / InputError: as :func:`recipe_from_dict`, and the checks of
            :func:`edgestill.chain.llm.check_llm_recipe` (before anything is written).
    """
    from edgestill.chain import llm

    data = _check_keys("data", doc["data"], llm.LLM_DATA_KEYS)
    if isinstance(data.get("corpus"), str) and data["corpus"] != llm.BUILTIN_CORPUS:
        _paths(data, ("corpus",), base_dir, "data")
    data_cfg = _build("data", llm.LLMDataConfig, data)
    if doc.get("teacher") is None:
        raise ConfigError("recipe is missing section teacher; task generate distils from a teacher (teacher: {hf: DIR}, "
                          "teacher: {llama: {layers: 4, hidden: 128, heads: 4}} or teacher: {generations: FILE.jsonl}).")
    t = _check_keys("teacher", doc["teacher"], llm.LLM_TEACHER_KEYS)
    _paths(t, ("hf", "generations"), base_dir, "teacher")
    if t.get("llama") is not None:
        t["llama"] = _build("teacher.llama", llm.LlamaArchConfig, _check_keys("teacher.llama", t["llama"], llm.LLAMA_KEYS))
    if t.get("train") is not None:
        t["train"] = _build("teacher.train", llm.LMTrainSection,
                            _check_keys("teacher.train", t["train"], llm.LLM_TRAIN_KEYS))
    teacher_cfg = _build("teacher", llm.LLMTeacherConfig, t)
    s = _check_keys("student", doc["student"], llm.LLM_STUDENT_KEYS)
    _paths(s, ("hf",), base_dir, "student")
    if s.get("llama") is not None:
        s["llama"] = _build("student.llama", llm.LlamaArchConfig, _check_keys("student.llama", s["llama"], llm.LLAMA_KEYS))
    student_cfg = _build("student", llm.LLMStudentConfig, s)
    distill_cfg = _build("distill", llm.LLMDistillConfig, _check_keys("distill", doc["distill"], llm.LLM_DISTILL_KEYS))
    export_cfg = None
    if doc.get("export") is not None:
        export_cfg = _build("export", llm.LLMExportConfig, _check_keys("export", doc["export"], llm.LLM_EXPORT_KEYS))
    for section in ("quantize", "validate"):
        if doc.get(section) is not None:
            raise ConfigError(f"recipe section {section} is not used by task generate: weight-only precisions are asked "
                              "for in export.precisions (int8-weight, int4-weight) and every file is validated against "
                              f"torch by greedy tokens (export.validate_tokens). Remove the {section} section.")
    quantize_cfg, bench_cfg, gate_cfg = _later_sections(doc, None, base_dir, non_finite, exported=export_cfg is not None)
    llm.check_llm_recipe(data_cfg, teacher_cfg, student_cfg, distill_cfg)
    raw = json.loads(json.dumps(doc, default=str))
    raw["data"] = data_cfg.to_dict()
    for section, cfg, keys in (("teacher", teacher_cfg, ("hf", "generations")), ("student", student_cfg, ("hf",))):
        for k in keys:
            if getattr(cfg, k) is not None:
                raw[section][k] = str(getattr(cfg, k))
    return Recipe(name=doc.get("name", name), task=GENERATE_TASK, data=data_cfg, teacher=teacher_cfg,
                  student=student_cfg, distill=distill_cfg, llm_export=export_cfg, quantize=quantize_cfg,
                  bench=bench_cfg, gate=gate_cfg, source=source, raw=raw)


def _check_bench_devices(bench: BenchConfig) -> None:
    """Every ``bench.devices`` name other than ``host`` is a device of ``bench.inventory``; every ``bench.estimate``
    name a device profile (an id or alias, or a device of the inventory, which names its profile).

    Raises:
        ConfigError: an unreadable inventory, an unknown device or profile (the closest name suggested).
    """
    from edgestill.benchmarks.bench import HOST
    from edgestill.devices.inventory import load_inventory
    from edgestill.devices.profiles import load_profile
    from edgestill.errors import EdgestillError

    inventory = None
    if bench.inventory is not None:
        try:
            inventory = load_inventory(bench.inventory)
        except EdgestillError as exc:
            raise ConfigError(f"bench.inventory: {exc}") from None
    for name in bench.devices:
        if name != HOST and inventory is not None and name not in inventory.names:
            raise ConfigError(f"bench.devices: unknown device {name!r}: {bench.inventory} holds "
                              f"{', '.join(inventory.names) or 'no devices'}.{did_you_mean(name, inventory.names)}")
    for name in bench.estimate:
        if inventory is not None and name in inventory.names:
            continue
        try:
            load_profile(name)
        except EdgestillError as exc:
            raise ConfigError(f"bench.estimate: {exc}") from None


def _loss_names() -> list[str]:
    from edgestill.compress.distill.losses import loss_names

    return loss_names()


def _terms(where: str, value: Any, parse_terms: Any) -> tuple[Any, ...]:
    for i, term in enumerate(value if isinstance(value, list) else ()):
        if isinstance(term, Mapping) and "name" in term and not isinstance(term["name"], str):
            raise ConfigError(f"{where}[{i}].name must be a loss name, got {_short(term['name'])}. Valid losses: "
                              f"{', '.join(_loss_names())}.")
    try:
        return parse_terms(value)
    except InputError as exc:  # UnknownNameError and ConfigError: say where in the recipe
        raise ConfigError(f"{where}: {exc}") from None


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe YAML file (safe-loaded, within the budgets above); relative paths in it are relative to its folder.

    Raises:
        InputError: the file is missing, a directory, unreadable, over :data:`MAX_RECIPE_BYTES`, not UTF-8 or not
            valid YAML (the line is named).
        ConfigError: an alias, nesting or duplicate-key problem (the line is named), an empty file or not a mapping,
            an unknown key or a bad value (see :func:`recipe_from_dict`).
    """
    p = Path(path)
    if p.is_dir():
        raise InputError(f"recipe {p} is a directory; pass one recipe YAML file in it (see examples/*.yaml).")
    if not p.is_file():
        if p.exists():
            raise InputError(f"recipe {p} is not a regular file (a device, a pipe or a socket); pass a recipe YAML file.")
        raise InputError(f"recipe {p} does not exist. Pass a recipe YAML file (see examples/*.yaml).")
    text = read_small_text(p, max_bytes=MAX_RECIPE_BYTES, what="recipe")
    doc = parse_recipe_yaml(text, f"recipe {p}")
    if doc is None:
        raise ConfigError(f"recipe {p} is empty; a recipe is a YAML mapping with sections data, student and distill "
                          "(see examples/*.yaml).")
    if not isinstance(doc, Mapping):
        raise ConfigError(f"recipe {p} must be a YAML mapping with sections data, student, distill, ...; got "
                          f"{type(doc).__name__}.")
    return recipe_from_dict(doc, base_dir=p.resolve().parent, name=_default_name(p), source=p)


def parse_recipe_yaml(text: str, where: str = "recipe") -> Any:
    """Safe-load one YAML document within the recipe budgets: no python tags, at most :data:`MAX_ALIASES` aliases
    expanding to at most :data:`MAX_VALUES` values, no alias inside itself, at most :data:`MAX_DEPTH` levels, no
    duplicate keys. ``where`` names the source in messages.

    Raises:
        InputError: not valid YAML (line and column named), e.g. a ``!!python/...`` tag.
        ConfigError: a budget exceeded or a duplicate key (the line named).
    """
    import yaml

    if len(text) > MAX_RECIPE_BYTES:
        raise InputError(f"{where} is larger than the 1 MiB limit for a recipe ({len(text):,} characters).")
    loader = None
    try:
        loader = _budget_loader(yaml)(text)  # the reader checks for forbidden characters (NUL) here
        loader.name_for_messages = where
        node = loader.get_single_node()
        if node is None:
            return None
        _check_aliases(loader, node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        if isinstance(exc, yaml.reader.ReaderError):  # a control character such as NUL
            at = f" at line {text[:exc.position].count(chr(10)) + 1}"
            problem = f"character #x{exc.character:04x} is not allowed in YAML"
        raise InputError(f"{where} is not valid YAML{at}: {' '.join(str(problem).split())}.") from None
    except RecursionError:
        raise ConfigError(f"{where} is nested too deep to read; no recipe setting is more than {MAX_DEPTH} levels "
                          "deep.") from None
    finally:
        if loader is not None:
            loader.dispose()


def _budget_loader(yaml: Any) -> Any:
    """A SafeLoader that counts aliases, limits nesting and refuses duplicate keys (built lazily: yaml is imported
    only when a recipe is read)."""

    class BudgetLoader(yaml.SafeLoader):
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.alias_count = 0
            self.first_alias: str | None = None
            self.anchor_names: dict[int, str] = {}  # the composer forgets its anchors once the document is read
            self.depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self.alias_count += 1
                self.first_alias = self.first_alias or self.peek_event().anchor
                return super().compose_node(parent, index)
            self.depth += 1
            try:
                event = self.peek_event()
                if self.depth > MAX_DEPTH:
                    raise ConfigError(f"{self.name_for_messages} is nested more than {MAX_DEPTH} levels deep at line "
                                      f"{event.start_mark.line + 1}; no recipe setting is that deep. Check the "
                                      "brackets and indentation there.")
                node = super().compose_node(parent, index)
                if getattr(event, "anchor", None):
                    self.anchor_names[id(node)] = event.anchor
                return node
            finally:
                self.depth -= 1

        def construct_object(self, node: Any, deep: bool = False) -> Any:
            try:
                return super().construct_object(node, deep=deep)
            except (ValueError, OverflowError) as exc:  # '2024-02-30', a 5,000-digit number: YAML's own line
                text = f" {_short(node.value, 40)}" if isinstance(node, yaml.ScalarNode) else ""
                why = "a number of thousands of digits" if "integer string conversion" in str(exc) else str(exc)
                raise yaml.constructor.ConstructorError(None, None, f"cannot read the value{text} ({why})",
                                                        node.start_mark) from None

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                first_line: dict[Any, int] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *base' keys may be overridden
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        seen = first_line.get(key)
                    except TypeError:  # an unhashable key: the base class says so with its line
                        continue
                    line = key_node.start_mark.line + 1
                    if seen is not None:
                        raise ConfigError(f"{self.name_for_messages} has the duplicate key {_short(key)} at line {line} "
                                          f"(first at line {seen}); YAML would silently keep the last one. Keep one.")
                    first_line[key] = line
            return super().construct_mapping(node, deep=deep)

    BudgetLoader.name_for_messages = "recipe"
    return BudgetLoader


def _check_aliases(loader: Any, root: Any, where: str) -> None:
    """Refuse too many aliases, an alias inside the value it names, and a document that expands past the budget.

    Counting on the composed graph (each alias shares its node) is linear in the file, never in the expansion.
    """
    import yaml

    if loader.alias_count > MAX_ALIASES:
        raise ConfigError(f"{where} uses {loader.alias_count} aliases (e.g. *{loader.first_alias}); the limit is "
                          f"{MAX_ALIASES} aliases per recipe. Write the values out, or share fewer blocks.")
    if not loader.alias_count:
        return
    sizes: dict[int, int] = {}
    active: set[int] = set()
    anchors = loader.anchor_names

    def size(node: Any) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in active:
            name = anchors.get(id(node), "?")
            raise ConfigError(f"{where}: the alias *{name} is used inside the value &{name} it names (line "
                              f"{node.start_mark.line + 1}), so that value would contain itself forever. Remove "
                              "that alias.")
        active.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_VALUES:
                raise ConfigError(f"{where}: its aliases (e.g. *{loader.first_alias}) expand to more than "
                                  f"{MAX_VALUES:,} values; a recipe has a few hundred. This looks like an alias bomb: "
                                  "write the values out instead of nesting aliases.")
        active.discard(id(node))
        sizes[id(node)] = total
        return total

    size(root)


def _default_name(p: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", p.stem).lstrip("-._") or "recipe"
    return stem


def builtin_recipe_text(name: str) -> str:
    """The YAML text of a built-in recipe (``demo``, ``demo-quick``): what ``edgestill recipes show`` prints.

    Raises:
        UnknownNameError: no built-in recipe of that name.
    """
    from importlib.resources import files

    from edgestill.errors import UnknownNameError

    if name not in BUILTIN_RECIPES:
        raise UnknownNameError("built-in recipe", name, BUILTIN_RECIPES)
    return files("edgestill.chain").joinpath("recipes", f"{name}.yaml").read_text(encoding="utf-8")


def builtin_recipe(name: str) -> Recipe:
    """A built-in recipe, parsed exactly as ``edgestill run`` parses the same YAML from a file.

    Raises:
        UnknownNameError: no built-in recipe of that name.
    """
    return recipe_from_dict(parse_recipe_yaml(builtin_recipe_text(name), f"built-in recipe {name}"), name=name)



def with_bench_threads(recipe: Recipe, threads: tuple[int, ...]) -> Recipe:
    """The recipe with its bench section measuring at ``threads`` (a bench section is added when it has none).

    The recipe hash follows: a run at other thread counts is another recipe in the results store.

    Raises:
        ConfigError: no export section (nothing to measure), or a bad thread count.
    """
    if recipe.export is None:
        raise ConfigError("--threads sets the bench stage's inference threads, but the recipe has no export section; "
                          "add one (e.g. export: {formats: [onnx]}) or leave --threads out.")
    bench = dataclasses.replace(recipe.bench or BenchConfig(), threads=tuple(threads))
    raw = {**recipe.raw, "bench": {**(recipe.raw.get("bench") or {}), "threads": list(bench.threads)}}
    return dataclasses.replace(recipe, bench=bench, raw=raw)
