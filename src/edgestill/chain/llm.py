"""Generative recipes: the configs of a ``task: generate`` recipe (a small causal language model, distilled and
deployed with a KV cache).

A generate recipe runs through the same engine (:func:`edgestill.chain.run.run_recipe`), store, checks and report as
the other tasks; its sections take these forms::

    task: generate
    data: {corpus: builtin, problems: 3000, seed: 0}          # or {corpus: data/train.jsonl} (prompt/completion rows)
    teacher: {llama: {layers: 4, hidden: 128, heads: 4}, train: {steps: 1500}}   # or {hf: DIR}
                                                               # or {generations: teacher.jsonl}: a black-box teacher
    student: {llama: {layers: 2, hidden: 64, heads: 4}}        # or {hf: DIR}
    distill: {method: seq-kd, steps: 600, samples_per_prompt: 4}   # ground-truth | seq-kd | token-kd | seq+token | socratic
    export: {formats: [onnx, openvino, tflite], precisions: [fp32, int4-weight]}
    bench: {threads: [1, 2], prompt_tokens: 64, gen_tokens: 64}

Paths are relative to the recipe's folder and checked when the recipe is read, before anything is written.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgestill.chain.text import _float, _int
from edgestill.errors import ConfigError, InputError, did_you_mean

BUILTIN_CORPUS = "builtin"
METHODS = ("ground-truth", "seq-kd", "token-kd", "seq+token", "socratic")
KD_KINDS = ("fkl", "rkl", "jsd")
LLM_FORMATS = ("onnx", "openvino", "tflite")
LLM_PRECISIONS = ("fp32", "fp16", "int8-weight", "int4-weight")


def _choice(where: str, value: Any, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"{where} {value!r} is not valid.{did_you_mean(str(value), valid)} Valid: {', '.join(valid)}.")


@dataclass(frozen=True, kw_only=True)
class LLMDataConfig:
    """The corpus: ``builtin`` (generated multi-step arithmetic with worked answers, deterministic by ``seed``) or a
    JSONL file of ``{"prompt": ..., "completion": ...}`` rows (ground truth). ``val`` and ``test`` problems are held
    out: validation prompts check every exported file against torch, test problems score exact-match."""

    corpus: str | Path = BUILTIN_CORPUS
    problems: int = 3000
    val: int = 64
    test: int = 200
    seed: int = 0
    max_new_tokens: int = 64

    def __post_init__(self) -> None:
        if isinstance(self.corpus, str) and self.corpus != BUILTIN_CORPUS:
            object.__setattr__(self, "corpus", Path(self.corpus))
        if not isinstance(self.corpus, (str, Path)):
            raise ConfigError(f"data.corpus must be 'builtin' or a path to a .jsonl file, got {self.corpus!r}.")
        _int("data.problems", self.problems, 10, 10_000_000)
        _int("data.val", self.val, 1, 100_000)
        _int("data.test", self.test, 1, 100_000)
        _int("data.seed", self.seed, 0)
        _int("data.max_new_tokens", self.max_new_tokens, 1, 8192)
        if not self.builtin and self.path.suffix.lower() != ".jsonl":
            raise ConfigError(f"data.corpus {self.path} is not a .jsonl file of prompt/completion rows; give one, or "
                              "'builtin' for the generated problems.")

    @property
    def builtin(self) -> bool:
        return self.corpus == BUILTIN_CORPUS

    @property
    def path(self) -> Path:
        return Path(self.corpus)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "corpus": str(self.corpus)}


@dataclass(frozen=True, kw_only=True)
class LlamaArchConfig:
    """A Llama-style model built from a Hugging Face config (random weights; the built-in character tokenizer)."""

    layers: int = 2
    hidden: int = 64
    heads: int = 4
    kv_heads: int | None = None  # default: heads (no grouped-query attention)
    intermediate: int | None = None  # default 2 x hidden
    context_length: int = 256

    def __post_init__(self) -> None:
        _int("llama.layers", self.layers, 1, 64)
        _int("llama.hidden", self.hidden, 8, 8192)
        _int("llama.heads", self.heads, 1, 128)
        _int("llama.context_length", self.context_length, 16, 32768)
        if self.kv_heads is not None:
            _int("llama.kv_heads", self.kv_heads, 1, 128)
            if self.heads % self.kv_heads:
                raise ConfigError(f"llama.heads {self.heads} must be a multiple of llama.kv_heads {self.kv_heads}.")
        if self.intermediate is not None:
            _int("llama.intermediate", self.intermediate, 1, 65536)
        if self.hidden % self.heads or (self.hidden // self.heads) % 2:
            raise ConfigError(f"llama.hidden {self.hidden} must be divisible by llama.heads {self.heads} into an even "
                              "head size (rotary embeddings rotate pairs), e.g. hidden 64 with 4 heads.")

    def to_dict(self) -> dict[str, Any]:
        return {"layers": self.layers, "hidden": self.hidden, "heads": self.heads,
                "kv_heads": self.kv_heads or self.heads, "intermediate": self.intermediate or 2 * self.hidden,
                "context_length": self.context_length}


@dataclass(frozen=True, kw_only=True)
class LMTrainSection:
    """Training steps of a model the tool trains (the teacher on the ground truth, or the student)."""

    steps: int = 1000
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0

    def __post_init__(self) -> None:
        _int("train.steps", self.steps, 1, 10_000_000)
        _int("train.batch_size", self.batch_size, 1, 65536)
        _float("train.lr", self.lr, 0.0, 1.0, open_low=True)
        _int("train.seed", self.seed, 0)


@dataclass(frozen=True, kw_only=True)
class LLMTeacherConfig:
    """The teacher: built from ``llama`` and trained here on the corpus (``train``; cached), a local Hugging Face
    causal-LM folder (``hf``), or only its answers: a JSONL of a black-box teacher's ``generations`` (the "Socratic"
    route, no teacher weights: sequence-level KD only)."""

    llama: LlamaArchConfig | None = None
    train: LMTrainSection | None = None
    hf: Path | None = None
    generations: Path | None = None
    trust_checkpoint: bool = False

    def __post_init__(self) -> None:
        given = [k for k in ("llama", "hf", "generations") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError(f"teacher: give exactly one of llama (a model built and trained here), hf (a local causal-LM "
                              f"folder) or generations (a black-box teacher's JSONL); got {', '.join(given) or 'none'}.")
        if self.train is not None and self.llama is None:
            raise ConfigError("teacher.train trains a teacher built from teacher.llama; drop it, or use llama.")
        if self.llama is not None and self.train is None:
            object.__setattr__(self, "train", LMTrainSection())
        if not isinstance(self.trust_checkpoint, bool):
            raise ConfigError(f"teacher.trust_checkpoint must be true or false, got {self.trust_checkpoint!r}.")

    @property
    def black_box(self) -> bool:
        return self.generations is not None


@dataclass(frozen=True, kw_only=True)
class LLMStudentConfig:
    """The student: built from ``llama`` (with the teacher's tokenizer) or a local causal-LM folder (``hf``)."""

    llama: LlamaArchConfig | None = None
    hf: Path | None = None
    trust_checkpoint: bool = False

    def __post_init__(self) -> None:
        given = [k for k in ("llama", "hf") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError(f"student: give exactly one of llama (e.g. {{layers: 2, hidden: 64, heads: 4}}) or hf (a "
                              f"local causal-LM folder); got {', '.join(given) or 'none'}.")


@dataclass(frozen=True, kw_only=True)
class LLMDistillConfig:
    """How the student learns.

    ``method``: ``ground-truth`` (the corpus only, the baseline), ``seq-kd`` (the teacher's sampled answers, kept when
    the final answer verifies), ``token-kd`` (the teacher's per-token distributions from an offline top-``top_k`` cache,
    ``kind`` fkl/rkl/jsd with ``beta`` and ``temperature``), ``seq+token`` (both), ``socratic`` (a black-box
    teacher's generations file). ``alpha`` is the KD term's share of the token-level loss (the rest is cross-entropy
    on the training tokens). ``on_policy`` is the share of token-kd batches sampled from the student and scored by
    the loaded teacher (then the teacher stays in memory)."""

    method: str = "seq-kd"
    steps: int = 600
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0
    samples_per_prompt: int = 4
    sample_temperature: float = 0.8
    kind: str = "fkl"
    beta: float = 0.5
    temperature: float = 1.0
    alpha: float = 0.5
    top_k: int = 16
    on_policy: float = 0.0

    def __post_init__(self) -> None:
        _choice("distill.method", self.method, METHODS)
        _choice("distill.kind", self.kind, KD_KINDS)
        _int("distill.steps", self.steps, 1, 10_000_000)
        _int("distill.batch_size", self.batch_size, 1, 65536)
        _float("distill.lr", self.lr, 0.0, 1.0, open_low=True)
        _int("distill.seed", self.seed, 0)
        _int("distill.samples_per_prompt", self.samples_per_prompt, 1, 64)
        _float("distill.sample_temperature", self.sample_temperature, 0.0, 10.0, open_low=True)
        _float("distill.beta", self.beta, 0.0, 1.0)
        _float("distill.temperature", self.temperature, 0.0, 100.0, open_low=True)
        _float("distill.alpha", self.alpha, 0.0, 1.0)
        _int("distill.top_k", self.top_k, 1, 1024)
        _float("distill.on_policy", self.on_policy, 0.0, 1.0)

    @property
    def uses_cache(self) -> bool:
        return self.method in ("token-kd", "seq+token")

    @property
    def samples_teacher(self) -> bool:
        return self.method in ("seq-kd", "seq+token")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class LLMExportConfig:
    """Formats and precisions of the exported decoders (each with a KV cache), validated against torch on the
    validation prompts (``validate_tokens`` greedy tokens each)."""

    formats: tuple[str, ...] = ("onnx",)
    precisions: tuple[str, ...] = ("fp32",)
    validate_tokens: int = 32

    def __post_init__(self) -> None:
        for key, valid in (("formats", LLM_FORMATS), ("precisions", LLM_PRECISIONS)):
            value = getattr(self, key)
            if isinstance(value, str):
                value = (value,)
            if not isinstance(value, (list, tuple)) or not value:
                raise ConfigError(f"export.{key} must be a non-empty list of {', '.join(valid)}, got {value!r}.")
            for v in value:
                _choice(f"export.{key}", v, valid)
            if len(set(value)) != len(value):
                raise ConfigError(f"export.{key} names {value!r}: each at most once.")
            object.__setattr__(self, key, tuple(value))
        _int("export.validate_tokens", self.validate_tokens, 1, 4096)


LLM_DATA_KEYS = tuple(LLMDataConfig.__dataclass_fields__)
LLAMA_KEYS = tuple(LlamaArchConfig.__dataclass_fields__)
LLM_TRAIN_KEYS = tuple(LMTrainSection.__dataclass_fields__)
LLM_TEACHER_KEYS = tuple(LLMTeacherConfig.__dataclass_fields__)
LLM_STUDENT_KEYS = tuple(LLMStudentConfig.__dataclass_fields__)
LLM_DISTILL_KEYS = tuple(LLMDistillConfig.__dataclass_fields__)
LLM_EXPORT_KEYS = tuple(LLMExportConfig.__dataclass_fields__)


@dataclass(frozen=True, kw_only=True)
class LLMSections:
    """The generate-specific sections of a recipe (the chain's quantize/bench/gate sections are shared)."""

    data: LLMDataConfig
    teacher: LLMTeacherConfig
    student: LLMStudentConfig
    distill: LLMDistillConfig
    export: LLMExportConfig | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def check_llm_recipe(data: LLMDataConfig, teacher: LLMTeacherConfig, student: LLMStudentConfig,
                     distill: LLMDistillConfig) -> None:
    """What one section cannot see alone; reads only small files (config.json, tokenizer.json), never weights.

    Raises:
        ConfigError: a method the teacher cannot give (token-level KD from a black-box teacher's text; the Socratic
            route without a generations file), different tokenizers for token-level KD.
        InputError: a missing corpus or generations file, a folder that is not a local causal LM.
    """
    for key, p in (("data.corpus", None if data.builtin else data.path), ("teacher.generations", teacher.generations)):
        if p is not None and not Path(p).is_file():
            raise InputError(f"{key} {p} {'is not a file' if Path(p).exists() else 'does not exist'}. Give a .jsonl file "
                             "with one {\"prompt\": ..., \"completion\": ...} object per line.")
    if distill.method == "socratic" and not teacher.black_box:
        raise ConfigError("distill.method socratic learns from a black-box teacher's answers: give teacher.generations "
                          "(a JSONL of prompt/completion rows), or use method seq-kd with a teacher model.")
    if teacher.black_box and distill.method != "socratic":
        raise ConfigError(f"teacher.generations gives only a black-box teacher's text, so distill.method "
                          f"{distill.method} cannot run (it needs the teacher model). Use method socratic.")
    if distill.on_policy > 0 and not distill.uses_cache:
        raise ConfigError("distill.on_policy samples the student for token-level KD: use method token-kd or seq+token.")
    if teacher.hf is None and student.hf is None:
        return
    from edgestill.models.llm import check_causal_lm_folder, check_same_tokenizer

    for key, folder, trust in (("teacher.hf", teacher.hf, teacher.trust_checkpoint),
                               ("student.hf", student.hf, student.trust_checkpoint)):
        if folder is not None:
            try:
                check_causal_lm_folder(folder, trust_checkpoint=trust)
            except InputError as exc:
                raise InputError(f"{key}: {exc}") from None
    if teacher.hf is not None and student.hf is not None and distill.uses_cache:
        check_same_tokenizer(teacher.hf, student.hf)
