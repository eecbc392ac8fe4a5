"""The ``quantize`` verb: int8 per format within an accuracy budget, measured on each artifact's own runtime.

Per format: export the fp32 baseline (or take the one the caller already exported), quantize naively, and
measure both on the eval data on the runtime the file ships on. With labels the metric is top-1 accuracy; without
labels it is top-1 agreement with the fp32 file on the same runtime (the drop is 100 × (1 − agreement)). Either way
every attempt also reports its top-1 agreement and mean KL(fp32 ‖ int8) against the fp32 file, and ``max_kl`` can
make KL a second budget. When int8 misses the budget: rank the layers by simulated int8 sensitivity
(sensitivity.py) and keep the most sensitive in float (a "mixed" artifact), growing that set until the budget is
met or the time budget ends, always keeping the best artifact found. Optionally repair (repair.py:
quantization-aware fine-tuning with the KD loss, the teacher or the fp32 model itself as the oracle) and quantize
the repaired model. The final file is validated against torch (parity, like every exported file). A result within
budget that passes parity is published under its name; anything else (the best effort over budget, or a parity
failure) is kept as ``*.rejected``.

The naive int8 result is never lost: a step after it that raises (sensitivity, a fallback attempt, repair, the
parity check of a fallback file, latency timing) is recorded in ``FormatResult.failures`` and the best file found
before it is still published or kept. Only the fp32 baseline or the naive attempt failing ends a format (its
``error`` says so); the other formats go on.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgestill.artifact import Artifact, Precision, publish, reject
from edgestill.compress.quantize.base import QUANTIZERS, quant_precisions
from edgestill.compress.quantize.calibration import (
    DEFAULT_CALIBRATION_SAMPLES,
    calibration_manifest,
    calibration_warnings,
    check_calibration,
)
from edgestill.compress.quantize.samples import Samples, arrays_of, n_samples, take, torch_batch
from edgestill.compress.quantize.options import AUTO_PRECISION, QuantOptions, check_choice, default_precision
from edgestill.errors import ConfigError, EdgestillError, InputError, RuntimeFailure, UnsupportedError
from edgestill.record import Measurement
from edgestill.export.base import as_tuple, formats_of

if TYPE_CHECKING:
    import torch

    from edgestill.compress.quantize.repair import RepairConfig
    from edgestill.compress.quantize.sensitivity import LayerSensitivity
    from edgestill.export.validate import ParityReport, Tolerances

Progress = Callable[[str], None]
_log = logging.getLogger(__name__)
FEW_EVAL_SAMPLES = 100  # below this, top-1 accuracy or agreement moves in steps of more than one point
_SENSITIVITY_SAMPLES = 128  # samples the simulated per-layer sensitivity runs on (one forward pass per layer)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
METRIC_ACCURACY = "top1_accuracy"
METRIC_AGREEMENT = "top1_agreement_with_fp32"
METRIC_COSINE = "mean_cosine_to_fp32"  # embeddings: the budget is a floor on the mean per-sample cosine (min_cosine)
DEFAULT_MIN_COSINE = 0.99
TASKS = ("classify", "embed")
CHANCE_LEVEL_CHOICES = ("refuse", "flag")
CHANCE_Z = 2.33  # one-sided 1% level: guessing scores above chance + 2.33 standard errors once in a hundred tries


@dataclass(frozen=True, kw_only=True)
class QuantizeConfig:
    """What ``quantize`` does: formats, precision, the accuracy budget and how long to search for it.

    The one quantize config of the API, the CLI and recipes; it validates on construction (ConfigError).

    formats: formats to quantize (each needs a registered quantizer).
    precision: int8-static (calibrated activations), int8-dynamic (see QUANTIZERS for what each format makes), or
        "int8": each format's default for the model (options.default_precision: int8-static for image models; a text
        model's per-format route, options.TEXT_DEFAULTS).
    max_accuracy_drop: allowed top-1 loss in absolute percentage points vs the fp32 artifact on the same runtime
        (without labels: allowed top-1 disagreement with the fp32 artifact, in percent).
    time_budget_s: wall time for the float-fallback search per format (the naive attempt always runs).
    max_float_layers: at most this many layers kept in float (None: any number; 0: all-int8 only).
    options: calibration method, TFLite recipe, OpenVINO preset, layers forced to float.
    calibration_samples: at most this many samples are drawn for static int8 calibration.
    name: artifact name stem.
    bench_latency: time fp32, naive int8 and the final artifact at 1 thread (runner subprocesses, interleaved).
    bench_rounds: interleaved rounds of that timing.
    report: run the sensitivity analysis even when the naive artifact meets the budget.
    max_kl: a second, optional budget: at most this mean KL(fp32 ‖ int8) in nats between the softmaxed outputs of the
        fp32 and int8 files on the eval inputs (None: not checked). It needs no labels.
    min_cosine: the budget for an embedding model (``quantize(task="embed")``): the int8 file's outputs must keep a
        mean per-sample cosine similarity of at least this to the fp32 file's on the same runtime and eval inputs
        (max_accuracy_drop and max_kl do not apply there: an embedding has no classes).
    chance_level: what to do when the float model is at chance level on the labelled eval data, where a broken int8
        file would "meet" any budget (0% → 0%; see :func:`check_reference_accuracy`): "refuse" raises InputError
        before anything is written (what ``edgestill quantize`` and ``edgestill export`` do); "flag" goes on and
        says so in the result's warnings and in the artifact's ``quantization["reference_at_chance"]`` (the library
        default, so a recipe run records the flag instead of stopping after training).
    """

    formats: tuple[str, ...] = ("onnx",)
    precision: str = Precision.INT8_STATIC.value
    max_accuracy_drop: float = 1.0
    time_budget_s: float = 300.0
    max_float_layers: int | None = None
    options: QuantOptions = field(default_factory=QuantOptions)
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES
    name: str = "model"
    bench_latency: bool = True
    bench_rounds: int = 3
    report: bool = False
    chance_level: str = "flag"
    max_kl: float | None = None
    min_cosine: float = DEFAULT_MIN_COSINE

    def __post_init__(self) -> None:
        formats = (self.formats,) if isinstance(self.formats, str) else tuple(self.formats)
        valid = tuple(f.value for f in formats_of(QUANTIZERS))
        if not formats:
            raise ConfigError(f"quantize.formats is empty; choose one or more of {', '.join(valid)}.")
        for f in formats:
            check_choice("quantize.formats", f, valid)
        if len(set(formats)) != len(formats):
            raise ConfigError(f"quantize.formats lists a format twice: {list(formats)}; list each once.")
        object.__setattr__(self, "formats", formats)
        check_choice("quantize.precision", self.precision, (*quant_precisions(), AUTO_PRECISION))
        auto = self.precision == AUTO_PRECISION  # resolved per format and model in quantize(); checked there
        for f in formats:
            if not auto:
                QUANTIZERS.get(f).check_precision(self.precision, "quantizer")
        drop = self.max_accuracy_drop
        if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not math.isfinite(drop) or drop < 0:
            raise ConfigError(
                f"--max-accuracy-drop must be a number of accuracy points >= 0 (e.g. 1.0 allows 1 point of top-1 loss), "
                f"got {drop!r}."
            )
        if isinstance(self.time_budget_s, bool) or not isinstance(self.time_budget_s, (int, float)) or not self.time_budget_s >= 0:
            raise ConfigError(f"--time-budget must be seconds >= 0, got {self.time_budget_s!r}.")
        if self.max_float_layers is not None and (
            isinstance(self.max_float_layers, bool) or not isinstance(self.max_float_layers, int) or self.max_float_layers < 0
        ):
            raise ConfigError(f"max_float_layers must be an integer >= 0 or None, got {self.max_float_layers!r}.")
        if not isinstance(self.options, QuantOptions):
            raise ConfigError(f"quantize.options must be a QuantOptions, got {type(self.options).__name__}.")
        if "tflite" in formats and not auto:
            self.options.recipe_for(self.precision)
        if self.options.integer_io and self.precision not in (Precision.INT8_STATIC, AUTO_PRECISION):
            raise ConfigError(f"--integer-io (int8 input/output tensors) applies to int8-static files; {self.precision} "
                              "files keep float activations at their edges. Drop --integer-io or use --precision int8-static.")
        if self.options.integer_io and set(formats) - {"tflite"}:
            others = ", ".join(f for f in formats if f != "tflite")
            raise ConfigError(f"--integer-io (int8 input/output tensors) is made for TFLite files only; {others} int8 files "
                              "take and give float tensors and quantize inside. Run --integer-io with --format tflite alone.")
        n = self.calibration_samples
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"quantize.calibration_samples must be a whole number >= 1 (a few hundred is typical), got {n!r}.")
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(f"quantize.name {self.name!r} is not a usable file name stem; use letters, digits, '.', '_' "
                              "or '-', starting with a letter or digit (e.g. 'student').")
        if isinstance(self.bench_rounds, bool) or not isinstance(self.bench_rounds, int) or self.bench_rounds < 1:
            raise ConfigError(f"bench_rounds must be an integer >= 1, got {self.bench_rounds!r}.")
        for key in ("bench_latency", "report"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"quantize.{key} must be true or false, got {getattr(self, key)!r}.")
        check_choice("quantize.chance_level", self.chance_level, CHANCE_LEVEL_CHOICES)
        kl = self.max_kl
        if kl is not None and (isinstance(kl, bool) or not isinstance(kl, (int, float)) or not math.isfinite(kl) or kl < 0):
            raise ConfigError(f"--max-kl must be a mean KL divergence in nats >= 0 (e.g. 0.05), or unset; got {kl!r}.")
        cos = self.min_cosine
        if isinstance(cos, bool) or not isinstance(cos, (int, float)) or not math.isfinite(cos) or not -1.0 <= cos <= 1.0:
            raise ConfigError(f"--min-cosine must be a cosine similarity in [-1, 1] (e.g. {DEFAULT_MIN_COSINE}: int8 embeddings "
                              f"point the way the fp32 ones do), got {cos!r}.")

    def precision_for(self, fmt: str, *, text: bool) -> str:
        """The precision ``fmt`` is quantized in: ``precision``, or for "int8" the format's default for the model.

        Raises:
            ConfigError: the format's quantizer does not make it, or (TFLite) the recipe does not make it.
        """
        precision = default_precision(fmt, text=text) if self.precision == AUTO_PRECISION else self.precision
        QUANTIZERS.get(fmt).check_precision(precision, "quantizer")
        if fmt == "tflite":
            self.options.recipe_for(precision)
        return precision


@dataclass(kw_only=True)
class Attempt:
    """One quantized candidate: which layers stayed float and its accuracy on the runtime.

    ``top1_agreement`` (0..1) and ``kl`` (mean KL(fp32 ‖ int8) of the softmaxed outputs, nats) compare its outputs
    with the fp32 file's on the same runtime and eval inputs; they need no labels.
    """

    label: str
    float_layers: tuple[str, ...]
    accuracy: float
    drop_points: float
    seconds: float
    sqnr_db: float | None = None
    top1_agreement: float | None = None
    kl: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "float_layers": list(self.float_layers), "accuracy": self.accuracy,
                "drop_points": self.drop_points, "top1_agreement": self.top1_agreement, "kl": self.kl,
                "seconds": round(self.seconds, 2), "sqnr_db": self.sqnr_db}


@dataclass(kw_only=True)
class FormatResult:
    """The outcome for one format.

    ``fp32_accuracy`` and the attempts' ``accuracy`` are in ``metric``: top-1 accuracy with labels, or top-1
    agreement with the fp32 file on the same runtime without (then ``fp32_accuracy`` is 1.0). ``passed``: within
    budget and the final file passed parity with torch (``report``); only then is ``artifact`` published.
    ``naive`` and ``final`` are None only when the fp32 baseline or the naive int8 attempt itself failed (``error``
    says which; ``exit_code`` is that failure's). A later step that failed (sensitivity, a fallback attempt, KD
    repair, parity, latency) is listed in ``failures`` and the best file found before it is still kept.
    """

    format: str
    runtime: str
    name: str  # the final file's name (``<name>-<format>-<precision or mixed>``)
    precision: str  # the final file's precision ("mixed" when layers were kept in float)
    metric: str
    fp32_accuracy: float | None
    fp32_artifact: Artifact | None
    naive: Attempt | None
    final: Attempt | None
    artifact: Artifact | None  # published (within budget and parity passed)
    budget_met: bool
    budget: float
    max_kl: float | None = None
    report: ParityReport | None = None  # the final file against torch
    error: str | None = None  # why the final file was rejected (budget missed by how much, or parity)
    seconds: float = 0.0
    rejected_files: list[Path] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    sensitivity: list[LayerSensitivity] = field(default_factory=list)
    repair: dict[str, Any] | None = None
    latency: dict[str, Any] | None = None
    measurements: list[Measurement] = field(default_factory=list)  # the latency cells, raw samples kept (the store's)
    stopped_by: str | None = None  # "budget met", "time budget", "no more layers", "repair", "... failed"
    failures: list[str] = field(default_factory=list)  # steps that raised, each "<step> failed: <message>"
    exit_code: int | None = None  # set when the format ended without an int8 file (its failure's exit code)

    @property
    def passed(self) -> bool:
        return self.budget_met and self.report is not None and self.report.passed

    @property
    def top1_agreement(self) -> float | None:
        """The final file's top-1 agreement with the fp32 file on the same runtime (0..1)."""
        return self.final.top1_agreement if self.final else None

    @property
    def kl(self) -> float | None:
        """The final file's mean KL(fp32 ‖ int8) in nats."""
        return self.final.kl if self.final else None

    def budget_facts(self) -> dict[str, Any]:
        """The budget's verdict in a few fields (what an ExportResult carries as ``quantization``); empty when the
        format ended without an int8 file (``error`` says why)."""
        final = self.final
        if final is None:
            return {}
        return {"metric": self.metric, "fp32_accuracy": self.fp32_accuracy, "accuracy": final.accuracy,
                "drop_points": final.drop_points, "budget": self.budget, "budget_met": self.budget_met,
                "top1_agreement": self.top1_agreement, "kl": self.kl, "max_kl": self.max_kl,
                "float_layers": list(final.float_layers), "failures": list(self.failures)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format, "runtime": self.runtime, "name": self.name, "passed": self.passed,
            "budget_met": self.budget_met, "stopped_by": self.stopped_by, "metric": self.metric,
            "fp32_accuracy": self.fp32_accuracy,
            "fp32_artifact": str(self.fp32_artifact.manifest_path) if self.fp32_artifact else None,
            "naive": self.naive.to_dict() if self.naive else None, "final": self.final.to_dict() if self.final else None,
            "top1_agreement": self.top1_agreement, "kl": self.kl, "max_kl": self.max_kl,
            "artifact": str(self.artifact.manifest_path) if self.artifact else None,
            "precision": self.precision, "parity": self.report.to_dict() if self.report else None, "error": self.error,
            "failures": list(self.failures), "exit_code": self.exit_code,
            "float_layers": list(self.final.float_layers) if self.final else [],
            "rejected_files": [str(p) for p in self.rejected_files],
            "attempts": [a.to_dict() for a in self.attempts],
            "sensitivity": [s.to_dict() for s in self.sensitivity],
            "repair": self.repair, "latency": self.latency,
        }


@dataclass(kw_only=True)
class QuantizeResult:
    """Every format's outcome plus the calibration record and warnings."""

    config: QuantizeConfig
    max_accuracy_drop: float
    formats: list[FormatResult]
    calibration: dict[str, Any]
    warnings: list[str]
    seconds: float
    eval_samples: int = 0
    labelled: bool = True

    @property
    def budget_met(self) -> bool:
        return all(f.budget_met for f in self.formats)

    @property
    def passed(self) -> bool:
        """Every format within budget with a file that passed parity (the CLI's exit 0)."""
        return all(f.passed for f in self.formats)

    @property
    def metric(self) -> str:
        return self.formats[0].metric if self.formats else METRIC_ACCURACY

    @property
    def exit_code(self) -> int:
        """0 all passed; a format's own failure code (2 bad input, 3 a library failure) when one ended without an
        int8 file; else 1 (a budget or parity miss)."""
        if self.passed:
            return 0
        return max([f.exit_code for f in self.formats if f.exit_code is not None], default=1)

    def to_dict(self) -> dict[str, Any]:
        cal = {k: v for k, v in self.calibration.items() if k != "sample_ids"}
        made = sorted({f.precision for f in self.formats if f.precision != Precision.MIXED})
        precision = made[0] if self.config.precision == AUTO_PRECISION and len(made) == 1 else self.config.precision
        return {"kind": "quantize", "precision": precision, "precisions": {f.format: f.precision for f in self.formats},
                "min_cosine": self.config.min_cosine if self.metric == METRIC_COSINE else None,
                "max_accuracy_drop": self.max_accuracy_drop,
                "max_kl": self.config.max_kl, "metric": self.metric, "budget_met": self.budget_met, "passed": self.passed,
                "calibration": cal, "eval": {"n": self.eval_samples, "labelled": self.labelled}, "warnings": list(self.warnings),
                "formats": [f.to_dict() for f in self.formats], "seconds": round(self.seconds, 2)}

    def markdown(self) -> str:
        from edgestill.compress.quantize.sensitivity import sensitivity_markdown

        kl = "" if self.config.max_kl is None else f" and at most {self.config.max_kl:g} nats of mean KL(fp32 ‖ int8)"
        budget = (f"budget: mean cosine to the fp32 embeddings >= {self.config.min_cosine:g}" if self.metric == METRIC_COSINE
                  else f"budget {self.max_accuracy_drop:g} points of {self.metric}{kl}")
        lines = ["# edgestill quantize report", "",
                 f"Precision {self.config.precision}, {budget} vs the fp32 "
                 f"artifact on the same runtime; calibration {self.calibration.get('n')} samples (sha256 "
                 f"{str(self.calibration.get('sha256', ''))[:12]}); eval {self.eval_samples} "
                 f"{'labelled' if self.labelled else 'unlabelled'} samples.", ""]
        lines += [f"- warning: {w}" for w in self.warnings]
        cosine = self.metric == METRIC_COSINE  # an embedder: mean cosine to fp32, shown as such (not as a percentage)
        head = "fp32 cosine | naive int8 cosine | final cosine | 100 x (1 - cosine)" if cosine else (
            "fp32 acc | naive int8 acc | final acc | drop (pts)")
        lines += ["", f"| format | runtime | {head} | top-1 agreement | KL (nats) | "
                  "within budget | float layers | final/fp32 p50 |", "|---|---|---:|---:|---:|---:|---:|---:|---|---|---:|"]

        def pct(v: float | None) -> str:
            return "—" if v is None else f"{100 * v:.2f}%"

        score = (lambda v: "—" if v is None else f"{v:.5f}") if cosine else pct
        for f in self.formats:
            ratio = (f.latency or {}).get("final_vs_fp32_p50")
            final, naive = f.final, f.naive
            lines.append(
                f"| {f.format} | {f.runtime} | {score(f.fp32_accuracy)} | {score(naive.accuracy if naive else None)} | "
                f"{score(final.accuracy if final else None)} | {'—' if final is None else f'{final.drop_points:.3f}' if cosine else f'{final.drop_points:.2f}'} | "
                f"{pct(f.top1_agreement)} | {'—' if f.kl is None else f'{f.kl:.4f}'} | {'yes' if f.budget_met else 'NO'} | "
                f"{', '.join(f'`{n}`' for n in (final.float_layers if final else ())) or '—'} | "
                f"{'' if ratio is None else f'{ratio:.2f}'} |"
            )
        lines += [f"- {f.format}: {f.error}" for f in self.formats if f.error]
        lines += [f"- {f.format}: {msg}" for f in self.formats if f.final is not None for msg in f.failures]
        for f in self.formats:
            if f.sensitivity:
                floats = f.final.float_layers if f.final else ()
                lines += ["", f"## Layer sensitivity ({f.format})", "", sensitivity_markdown(f.sensitivity, float_layers=floats)]
            if f.attempts:
                lines += ["", f"## Attempts ({f.format})", "", "| attempt | float layers | accuracy | drop (pts) | top-1 agreement | KL (nats) |",
                          "|---|---|---:|---:|---:|---:|"]
                lines += [f"| {a.label} | {len(a.float_layers)} | {score(a.accuracy)} | {a.drop_points:.2f} | "
                          f"{pct(a.top1_agreement)} | {'—' if a.kl is None else f'{a.kl:.4f}'} |" for a in f.attempts]
            if f.repair:
                lines += ["", f"## KD repair ({f.format})", "", "```", str(f.repair), "```"]
        return "\n".join(lines) + "\n"


def artifact_accuracy(artifact: Artifact, x: Samples, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Top-1 accuracy of an artifact on its own runtime (1 thread) and its raw first output ``[n, classes]``.

    The same functions score artifacts everywhere (the chain's evaluate stage, the runner on a device).
    ``x`` is one array, or one array per input for a model with several (samples.Samples).
    """
    from edgestill.runtimes.accuracy import accuracy_of

    out = artifact_outputs(artifact, x)
    return accuracy_of(out, y).value, out


def artifact_outputs(artifact: Artifact, x: Samples) -> np.ndarray:
    """An artifact's first output on every sample of ``x``, run on its own runtime at 1 thread.

    Single-input files go through runtimes.accuracy.session_logits (the scorer devices use); a file with several
    inputs through export.validate.run_artifact, which feeds each input by name (batched where the batch is symbolic).
    """
    from edgestill.runtimes import RuntimeOptions, load

    session = load(artifact, RuntimeOptions(threads=1))
    if isinstance(x, np.ndarray):
        from edgestill.runtimes.accuracy import session_logits

        return session_logits(session, x, batch_size=64)  # 64 a call where the batch dim is symbolic
    from edgestill.export.validate import run_artifact

    return run_artifact(session, artifact, arrays_of(x))[0]


def mean_cosine(got: np.ndarray, ref: np.ndarray) -> float:
    """Mean over samples of the cosine similarity between each row of ``got`` and of ``ref`` (flattened per sample).

    A sample whose two vectors are both zero counts as 1 (identical); one zero vector against a non-zero one as 0.
    """
    g = np.asarray(got, np.float64).reshape(len(got), -1)
    r = np.asarray(ref, np.float64).reshape(len(ref), -1)
    norms = np.linalg.norm(g, axis=1) * np.linalg.norm(r, axis=1)
    dots = (g * r).sum(axis=1)
    both_zero = (np.linalg.norm(g, axis=1) == 0) & (np.linalg.norm(r, axis=1) == 0)
    cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), np.where(both_zero, 1.0, 0.0))
    return float(cos.mean())


def check_eval_data(eval_x: Any, eval_y: Any, sample_shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray | None]:
    """Eval inputs (checked like calibration data) and, when given, integer labels of the same length.

    Raises:
        InputError: bad inputs; labels of another length or not integers.
    """
    x = check_calibration(eval_x, sample_shape, what="eval")
    if eval_y is None:
        return x, None
    y = np.asarray(eval_y)
    if y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in "iu":
        raise InputError(
            f"eval labels must be one integer class id per eval sample; got shape {list(y.shape)} dtype {y.dtype} "
            f"for {len(x)} samples. Pass y as an (N,) integer array, or no labels (the budget then measures top-1 "
            "agreement with the fp32 file)."
        )
    return x, y




def chance_bound(n: int, classes: int) -> float:
    """Most correct answers out of ``n`` that guessing among ``classes`` reaches at the one-sided 1% level."""
    p = 1.0 / classes
    return n * p + CHANCE_Z * math.sqrt(n * p * (1 - p))


def check_reference_accuracy(model: torch.nn.Module, x: Samples, y: np.ndarray, *, refuse: bool = True,
                             batch_size: int = 256, other_labels: np.ndarray | None = None) -> str | None:
    """Refuse labels the float model cannot be scored on, and (``refuse``) a float model at chance level on them.

    Returns None when the model beats chance (or is not a classifier); with ``refuse=False``, the chance-level
    message instead of raising it.

    The budget compares int8 with fp32 in points, so with an fp32 reference at chance (an untrained or wrong
    checkpoint, labels of another dataset or order) a broken int8 file "meets" any budget (0% → 0%). The float
    model's top-1 is measured here with torch, before anything is written (the fp32 file matches torch within its
    parity tolerances). It must beat guessing: more correct than ``n/C + CHANCE_Z·sqrt(n·(1/C)·(1 − 1/C))`` of the
    ``n`` labelled samples for ``C`` classes (the model's output width), i.e. above what random guessing reaches at the
    1% level. A model whose first output is not ``[n, classes]`` logits is not checked.

    Raises:
        InputError: a label outside ``[0, C)``; or (``refuse``) the float model's accuracy at or below that chance bound
            (the message gives its accuracy, the number of classes and what to fix). This is a refusal (exit 2), not a
            budget miss: no int8 result would mean anything.
    """
    import torch

    preds = []
    classes = None
    with torch.no_grad():
        for i in range(0, n_samples(x), batch_size):
            try:
                out = model(*torch_batch(x, i, i + batch_size))
            except Exception:  # e.g. a .pt2 program fixed to another batch size: the runtime's own scoring decides
                return None
            out = out[0] if isinstance(out, (tuple, list)) and out else out
            if not isinstance(out, torch.Tensor) or out.ndim != 2:
                return None  # not classifier logits: nothing to compare labels with
            classes = int(out.shape[1])
            preds.append(out.argmax(1).cpu().numpy())
    if not preds or classes is None or classes < 2:
        return None
    if other_labels is not None and len(other_labels):  # the rest of the data's labels (the calibration part)
        other = np.asarray(other_labels)
        wrong = (other < 0) | (other >= classes)
        if wrong.any():
            raise InputError(f"the data's labels y hold {int(wrong.sum())} value(s) outside the model's {classes} classes "
                             f"[0, {classes}) in the part drawn for calibration (e.g. {int(other[np.flatnonzero(wrong)[0]])}): "
                             "the labels belong to another dataset or --num-classes is wrong. Pass labels of this model's classes.")
    bad = (y < 0) | (y >= classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"eval labels y hold {int(bad.sum())} value(s) outside the model's {classes} classes [0, {classes}) "
                         f"(e.g. y[{i}] = {int(y[i])}): the labels belong to another dataset or --num-classes is wrong. "
                         "Pass labels of this model's classes.")
    n = len(y)
    correct = int((np.concatenate(preds) == y).sum())
    p = 1.0 / classes
    bound = chance_bound(n, classes)
    if correct <= bound:
        message = (
            f"the float model scores {100 * correct / n:.2f}% top-1 ({correct} of {n}) on the labelled eval data, which is "
            f"chance level for {classes} classes (guessing gets {100 * p:.2f}%, and up to {math.floor(bound)} of {n} correct "
            "one time in a hundred): an int8 file would 'meet' any accuracy budget against it, so the budget cannot be "
            "checked. Pass the trained weights (--checkpoint), eval data whose labels y match this model's classes, or "
            "more labelled samples."
        )
        if refuse:
            raise InputError(message)
        return message
    return None


def check_inputs(
    model: torch.nn.Module, example_inputs: Any, config: QuantizeConfig, *, calibration: Any, calibration_ids: Sequence[Any] | None,
    eval_x: Any, eval_y: Any = None, other_labels: Any = None, input_specs: Sequence[Any] | None = None,
    task: str | None = None,
) -> tuple[tuple, Samples | None, dict[str, Any], Samples, np.ndarray | None, list[str]]:
    """Check everything ``quantize`` takes before anything is written.

    Data for a model with several inputs (a text model's input_ids, attention_mask[, token_type_ids]) is one array
    per input in model order, or a dict named like the inputs (samples.check_model_data); ``input_specs`` (the
    model's InputShapes or TensorSpecs: name, kind, low/high) name the inputs and bound token ids by the vocabulary.

    Returns:
        (example args, calibration (None for int8-dynamic without one), its manifest ({} without), eval x, eval y
        (None without labels), calibration warnings). Calibration and eval x are one array for a single-input model,
        else a tuple of one array per input.

    Raises:
        InputError: static int8 without calibration; calibration or eval data empty, of the wrong shape, with
            NaN/Inf, missing an input, with inputs of different N, token ids outside the vocabulary, a mask that is
            not 0/1; ids or labels of the wrong length; labels outside the model's classes, or a float model at
            chance level on them (see :func:`check_reference_accuracy`); an unknown task.
        ConfigError: a forced float layer that is not a layer of the model.
    """
    from edgestill.compress.quantize.samples import check_model_data, input_names_of, is_integer_input

    if task is not None and task not in TASKS:
        raise InputError(f"task {task!r} is not one of {', '.join(TASKS)} (classify: scores per class; embed: an embedding "
                         "vector whose budget is cosine similarity to fp32).")
    args = as_tuple(example_inputs)
    shapes = [tuple(a.shape[1:]) for a in args]
    names = input_names_of(model, len(args), input_specs)
    dtypes = [a.detach().cpu().numpy().dtype for a in args]
    text = is_integer_input(args)
    static = any(config.precision_for(f, text=text) == Precision.INT8_STATIC for f in config.formats)
    if calibration is None and static:
        raise InputError("static int8 needs calibration data and none was given; pass calibration= (N samples shaped like "
                         "the model input, a few hundred drawn from the training data) or use precision 'int8-dynamic'.")
    why = "quantization ranges would be meaningless"
    calib, manifest = None, {}
    if calibration is not None:
        calib = check_model_data(calibration, shapes, what="calibration", names=names, dtypes=dtypes, specs=input_specs, why=why)
        manifest = calibration_manifest(calib, calibration_ids)
    x = check_model_data(eval_x, shapes, what="eval", names=names, dtypes=dtypes, specs=input_specs, why=why)
    n = n_samples(x)
    y = None
    warnings: list[str] = []
    if eval_y is not None and task == "embed":
        warnings.append("the model is an embedder (task 'embed'): its labels y are ignored and the budget is the mean cosine "
                        "similarity of the int8 embeddings to the fp32 ones (--min-cosine).")
    elif eval_y is not None:
        y = np.asarray(eval_y)
        if y.ndim != 1 or len(y) != n or y.dtype.kind not in "iu":
            raise InputError(
                f"eval labels must be one integer class id per eval sample; got shape {list(y.shape)} dtype {y.dtype} "
                f"for {n} samples. Pass y as an (N,) integer array, or no labels (the budget then measures top-1 "
                "agreement with the fp32 file)."
            )
    at_chance = None
    if y is not None:
        at_chance = check_reference_accuracy(model, x, y, refuse=config.chance_level == "refuse",
                                             other_labels=None if other_labels is None else np.asarray(other_labels))
    if static:
        warnings += calibration_warnings(calib, x)
    if n < FEW_EVAL_SAMPLES:
        what = "cosine" if task == "embed" else ("top-1 accuracy" if y is not None else "top-1 agreement")
        warnings.append(f"only {n} eval samples (fewer than {FEW_EVAL_SAMPLES}): {what} "
                        + (f"moves in steps of {100 / n:.2f} points, coarse against a budget of {config.max_accuracy_drop:g}; "
                           if task != "embed" else "rests on few samples; ")
                        + "pass more eval data (or a larger --eval-fraction).")
    if at_chance:
        warnings.append(f"accuracy budget not meaningful: {at_chance}")
    if config.options.float_layers:
        from edgestill.compress.quantize.layers import check_layer_names, quantizable_layers

        check_layer_names(config.options.float_layers, quantizable_layers(model, args))
    return args, calib, manifest, x, y, warnings


def quantize(
    model: torch.nn.Module,
    example_inputs: Any,
    config: QuantizeConfig,
    out_dir: str | Path,
    *,
    calibration: Any,
    eval_x: Any,
    eval_y: np.ndarray | None = None,
    calibration_ids: Sequence[Any] | None = None,
    repair: RepairConfig | None = None,
    progress: Progress | None = None,
    claimed: bool = False,
    fp32_artifacts: Mapping[str, Artifact] | None = None,
    validation_inputs: Any = None,
    tolerances: Tolerances | None = None,
    input_specs: Sequence[Any] | None = None,
    task: str | None = None,
    source: dict[str, Any] | None = None,
) -> QuantizeResult:
    """Quantize ``model`` for every format of ``config`` within the accuracy budget; write artifacts to ``out_dir``.

    Args:
        model: the float torch model (left unchanged).
        example_inputs: batch-1 tensor or tuple (the shape the files take).
        config: formats, precision, budget, time budget, options.
        out_dir: output folder (made ready with :func:`claim_output_dir` unless ``claimed``).
        calibration: N samples for static int8 ranges (see calibration.select_calibration); may be None for int8-dynamic.
            For a model with several inputs: one array per input (model order) or a dict named like the inputs.
        eval_x: the inputs the budget is measured on (one array, or one per input like ``calibration``).
        eval_y: their integer labels; None measures top-1 agreement with the fp32 file on the same runtime instead
            (metric ``top1_agreement_with_fp32``: drop = 100 × (1 − agreement)); agreement and KL are reported either way.
        calibration_ids: one id per calibration sample for the manifest.
        repair: opt-in KD repair (teacher or fp32 oracle, training data, schedule) used when the budget is still missed.
        progress: called with a one-line status.
        claimed: ``out_dir`` is already made ready by the caller.
        fp32_artifacts: format -> an fp32 artifact of ``model`` already exported and validated (the baseline is then
            not exported again); formats missing from it are exported here.
        validation_inputs: samples the final file's parity with torch is checked on (default: the first 128 eval inputs).
        tolerances: parity thresholds (default :class:`~edgestill.export.validate.Tolerances`; int8 applies).
        input_specs: the model's input specs (TensorSpec: name, shape with a symbolic sequence, kind, high), which
            name the inputs of named data, bound token ids by the vocabulary (see :func:`check_inputs`), and are kept
            by every file written here (the fp32 baseline and each int8 attempt).
        task: "embed" for a model whose output is an embedding (a text model's ``source["text"]["task"]``): the
            budget is then the mean cosine to the fp32 file on the same runtime (``config.min_cosine``, metric
            ``mean_cosine_to_fp32``) instead of top-1; "classify" or None: top-1 as above.
        source: provenance for every manifest written here; a text model's ``source["text"]`` (with
            ``tokenizer_path``) puts the tokenizer beside each file, int8 ones included
            (:func:`edgestill.export.base.attach_text_files`), so parity judges an embedder by cosine.

    Returns:
        The QuantizeResult; ``passed`` False means at least one format stayed over budget, failed parity, or ended
        without an int8 file (``exit_code`` says which).

    Raises:
        InputError / ConfigError: bad data or settings (checked before anything is written). A library failure
            inside one format is reported in its FormatResult, not raised.
    """
    from edgestill.compress.quantize.samples import check_model_data, input_names_of
    from edgestill.export.validate import Tolerances
    from edgestill.outdir import claim_output_dir

    t_start = time.perf_counter()
    say = progress or (lambda _msg: None)
    args, calib, manifest, x, y, warnings = check_inputs(
        model, example_inputs, config, calibration=calibration, calibration_ids=calibration_ids, eval_x=eval_x, eval_y=eval_y,
        input_specs=input_specs, task=task,
    )
    if validation_inputs is None:
        val = take(x, slice(0, _SENSITIVITY_SAMPLES))
    else:
        val = check_model_data(validation_inputs, [tuple(a.shape[1:]) for a in args], what="validation",
                               names=input_names_of(model, len(args), input_specs),
                               dtypes=[a.detach().cpu().numpy().dtype for a in args], specs=input_specs,
                               why="parity figures would be meaningless")
    baselines = dict(fp32_artifacts or {})
    for fmt, art in baselines.items():
        if fmt in config.formats and (art.format != fmt or art.precision != Precision.FP32):
            raise InputError(f"fp32_artifacts[{fmt!r}] is {art.name} ({art.format}, {art.precision}); pass the fp32 "
                             f"{fmt} artifact of this model, or leave {fmt!r} out to export it here.")
    out = Path(out_dir) if claimed else claim_output_dir(Path(out_dir), kind="quantize")
    model.eval()
    results = []
    repaired: dict[str, Any] = {}  # the KD-repaired model is trained once and shared by every format
    for fmt in config.formats:
        results.append(_quantize_format(model, args, fmt, config, out, calib, calibration_ids, x, y, repair, say, repaired,
                                        fp32_art=baselines.get(fmt), val=val, tolerances=tolerances or Tolerances(),
                                        embed=task == "embed", input_specs=input_specs, source=source))
    return QuantizeResult(config=config, max_accuracy_drop=float(config.max_accuracy_drop), formats=results,
                          calibration=manifest, warnings=warnings, seconds=time.perf_counter() - t_start,
                          eval_samples=n_samples(x), labelled=y is not None)


def _quantize_format(
    model: torch.nn.Module, args: tuple, fmt: str, config: QuantizeConfig, out: Path, calib: Samples | None,
    calibration_ids: Sequence[Any] | None, x: Samples, y: np.ndarray | None, repair: RepairConfig | None, say: Progress,
    repaired_cache: dict[str, Any], *, fp32_art: Artifact | None, val: Samples, tolerances: Tolerances, embed: bool = False,
    input_specs: Sequence[Any] | None = None, source: dict[str, Any] | None = None,
) -> FormatResult:
    """One format: the fp32 baseline and the naive int8 file, then (each step guarded) sensitivity, float fallback,
    KD repair, parity and latency. Only the baseline or the naive attempt failing ends the format; any later step
    failing is recorded in ``failures`` and the best file found so far (at least the naive one) is still kept."""
    from edgestill.compress.quantize.api import quantize_export
    from edgestill.compress.quantize.layers import quantizable_layers
    from edgestill.export.api import ExportConfig, export
    from edgestill.export.base import attach_text_files
    from edgestill.outdir import fresh_work_dir
    from edgestill.runtimes.accuracy import teacher_agreement
    from edgestill.runtimes.base import DEFAULT_RUNTIME

    from edgestill.compress.quantize.samples import is_integer_input

    t_format = time.perf_counter()
    text = is_integer_input(args)
    config = replace(config, precision=config.precision_for(fmt, text=text))  # "int8": this format's default
    metric = METRIC_COSINE if embed else (METRIC_ACCURACY if y is not None else METRIC_AGREEMENT)
    budget = float(config.min_cosine if embed else config.max_accuracy_drop)
    n_eval = n_samples(x)
    forced = tuple(config.options.float_layers)
    work = fresh_work_dir(out, f".search-{fmt}")
    attempts: list[Attempt] = []
    arts: dict[str, tuple[Artifact, torch.nn.Module]] = {}
    failures: list[str] = []
    ref: dict[str, Any] = {}

    specs = tuple(input_specs or ()) or None

    def attempt(label: str, float_layers: tuple[str, ...], model_in: torch.nn.Module) -> Attempt:
        t0 = time.perf_counter()
        opts = replace(config.options, float_layers=float_layers)
        art = quantize_export(model_in, args, format=fmt, precision=config.precision, calibration=calib,
                              calibration_ids=calibration_ids, staging_dir=work / label, name=_final_name(config, fmt, float_layers),
                              options=opts, inputs=specs)
        art.source.update({k: v for k, v in (source or {}).items() if k != "text"})
        attach_text_files(art, work / label, source)
        if embed:
            got = artifact_outputs(art, x)
            acc = mean_cosine(got, ref["out"]) if got.shape == ref["out"].shape else 0.0
            agree, kl = None, None
        else:
            acc, got = artifact_accuracy(art, x, ref["y"])
            agree, kl = teacher_agreement(got, ref["out"]) if got.shape == ref["out"].shape else (None, None)
        a = Attempt(label=label, float_layers=float_layers, accuracy=acc, drop_points=round(100 * (ref["acc"] - acc), 3),
                    seconds=time.perf_counter() - t0, sqnr_db=_sqnr_db(ref["out"], got),
                    top1_agreement=agree, kl=None if kl is None else round(kl, 6))
        attempts.append(a)
        arts[label] = (art, model_in)
        say(f"{fmt}: {label}: {metric} {acc:.5f}" if embed else
            f"{fmt}: {label}: {metric} {100 * acc:.2f}% (drop {a.drop_points:.2f} pts, KL {a.kl})")
        return a

    def within(a: Attempt) -> bool:
        if embed:
            return a.accuracy >= budget
        return a.drop_points <= budget and (config.max_kl is None or (a.kl is not None and a.kl <= config.max_kl))

    def better(a: Attempt, b: Attempt) -> bool:  # a beats b: within budget first, then accuracy, then lower KL
        return (within(a), a.accuracy, -(a.kl or 0.0)) > (within(b), b.accuracy, -(b.kl or 0.0))

    try:
        if fp32_art is None:
            say(f"{fmt}: fp32 baseline")
            (fp32_res,) = export(model, args, ExportConfig(formats=(fmt,), precisions=("fp32",), name=config.name,
                                                           tolerances=tolerances, inputs=specs or ()), out,
                                 validation_inputs=arrays_of(val) if len(args) > 1 else val, source=source)
            if fp32_res.artifact is None:
                raise RuntimeFailure(f"the fp32 baseline {fp32_res.name} failed: {fp32_res.error}")
            fp32_art = fp32_res.artifact
        if embed:  # the fp32 file's embeddings are the reference: its own cosine is 1.0
            fp32_out, fp32_acc = artifact_outputs(fp32_art, x), 1.0
        else:
            fp32_acc, fp32_out = artifact_accuracy(fp32_art, x, y if y is not None else np.zeros(n_eval, np.int64))
        if y is None and not embed:  # no labels: the fp32 file's own top-1 is the reference, so its "accuracy" is 1.0
            y, fp32_acc = fp32_out.argmax(1), 1.0
        ref.update(acc=fp32_acc, out=fp32_out, y=y)
        naive = attempt("naive", forced, model)
    except Exception as exc:  # noqa: BLE001 - reported in the result; the other formats go on
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(exc, InputError) and not isinstance(exc, (ConfigError, UnsupportedError)):
            raise  # bad input is the user's to fix in every format (exit 2), as before
        step = "naive int8" if ref else "fp32 baseline"
        _log.warning("%s: %s failed", fmt, step, exc_info=exc)
        return FormatResult(
            format=fmt, runtime=DEFAULT_RUNTIME[fmt], name=_final_name(config, fmt, forced), precision=config.precision,
            metric=metric, fp32_accuracy=ref.get("acc"), fp32_artifact=fp32_art, naive=None, final=None, artifact=None,
            budget_met=False, budget=budget, max_kl=None if embed else config.max_kl, error=f"{step} failed, so {fmt} has no int8 file: {_said(exc)}",
            seconds=time.perf_counter() - t_format, stopped_by=f"{step} failed", failures=[f"{step} failed: {_said(exc)}"],
            exit_code=exc.exit_code if isinstance(exc, EdgestillError) else 3,
        )

    def guarded(step: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - a later step failing never loses the naive result
            _log.warning("%s: %s failed", fmt, step, exc_info=exc)
            failures.append(f"{step} failed: {_said(exc)}")
            say(f"{fmt}: {step} failed: {_said(exc)}")
            return _FAILED

    best, stopped, sens = naive, "budget met" if within(naive) else None, []
    t_search = time.perf_counter()
    # float fallback where the precision can keep layers float: static int8, and a text model's dynamic int8 (its
    # Linear layers are excluded by name; an image model's dynamic int8 keeps its activations float already)
    fallback = config.precision == Precision.INT8_STATIC or text
    search = stopped is None and fallback and config.max_float_layers != 0
    if search or (config.report and fallback):
        from edgestill.compress.quantize.sensitivity import layer_sensitivity

        say(f"{fmt}: ranking layers by int8 sensitivity")
        got = guarded("sensitivity", lambda: layer_sensitivity(model, args, calib if calib is not None else x,
                                                               take(x, slice(0, _SENSITIVITY_SAMPLES)),
                                                               layers=quantizable_layers(model, args)))
        if got is _FAILED:
            stopped, search = stopped or "sensitivity failed", False
        else:
            sens = got
    if search:
        limit = len(sens) if config.max_float_layers is None else min(config.max_float_layers, len(sens))
        for k in _fallback_sizes(limit):
            if time.perf_counter() - t_search > config.time_budget_s:
                stopped = "time budget"
                break
            label = f"float-top{k}"
            a = guarded(f"float fallback {label}", lambda k=k, label=label: attempt(
                label, tuple(dict.fromkeys((*forced, *(s.layer for s in sens[:k])))), model))
            if a is _FAILED:
                stopped = "float fallback failed"
                break
            if better(a, best):
                best = a
            if within(a):
                stopped = "budget met"
                break
        else:
            stopped = stopped or "no more layers"
    repair_info = None
    if not within(best) and repair is not None:
        from edgestill.compress.quantize.repair import repair_with_teacher

        say(f"{fmt}: still over budget ({best.drop_points:.2f} pts, KL {best.kl}): KD repair (quantization-aware fine-tuning)")
        if "model" not in repaired_cache and "error" not in repaired_cache:
            got = guarded("KD repair", lambda: repair_with_teacher(model, args, repair, calibration=calib))
            if got is _FAILED:
                repaired_cache["error"] = failures[-1]
            else:
                repaired_cache["model"], repaired_cache["info"] = got
        elif "error" in repaired_cache:
            failures.append(repaired_cache["error"])
        if "model" in repaired_cache:
            repair_info = dict(repaired_cache["info"])
            a = guarded("KD repair's int8 file", lambda: attempt("kd-repair", forced, repaired_cache["model"]))
            if a is not _FAILED:
                repair_info.update(accuracy=a.accuracy, drop_points=a.drop_points, top1_agreement=a.top1_agreement, kl=a.kl)
                if better(a, best):
                    best = a
                if within(a):
                    stopped = "repair"
    if stopped is None:
        stopped = "no float fallback allowed" if config.max_float_layers == 0 else "precision has no fallback"
    report, best = _validate_final(arts, best, naive, val, tolerances, guarded)
    final_art, _ = arts[best.label]
    met = within(best)
    if report is not None:
        final_art.validation = report.to_dict()
    final_art.quantization.update({
        "accuracy": best.accuracy, "fp32_accuracy": ref["acc"], "accuracy_drop_points": best.drop_points, "metric": metric,
        "top1_agreement": best.top1_agreement, "kl": best.kl, "max_kl": config.max_kl,
        "max_accuracy_drop": None if embed else budget, "min_cosine": budget if embed else None, "budget_met": met,
        "eval_samples": n_eval, "runtime": DEFAULT_RUNTIME[fmt],
        "fp32_artifact": fp32_art.name, "search": {"stopped_by": stopped, "attempts": [a.to_dict() for a in attempts],
                                                   "failures": list(failures)},
    })
    if metric == METRIC_ACCURACY and fp32_out.ndim == 2 and fp32_out.shape[1] > 1:
        final_art.quantization["reference_at_chance"] = fp32_acc * n_eval <= chance_bound(n_eval, fp32_out.shape[1])
    if best.label == "kd-repair":
        final_art.quantization["kd_repair"] = repair_info
    latency, measurements = None, []
    if config.bench_latency:
        got = guarded("latency timing", lambda: _latency(fp32_art, arts["naive"][0], final_art, config))
        if got is _FAILED:
            latency = {"failed": [failures[-1]]}
        else:
            latency, measurements = got
    error = None
    also = f" Also: {'; '.join(failures)}." if failures else ""
    if not met and embed:
        error = (f"{final_art.name} missed the cosine budget: its embeddings' mean cosine to the fp32 file's is "
                 f"{best.accuracy:.5f}, below the {budget:g} allowed (search stopped: {stopped}).{also} Allow a lower "
                 "--min-cosine, more float layers or time (--max-float-layers, --time-budget), or another --precision.")
    elif not met:
        kl_part = "" if config.max_kl is None else f", KL {best.kl} nats (at most {config.max_kl:g} allowed)"
        repaired = "more --repair-epochs" if repair_info else "repair (--repair: the fp32 model as the oracle, no labels needed)"
        error = (f"{final_art.name} missed the accuracy budget: {metric} {100 * best.accuracy:.2f}% vs {100 * ref['acc']:.2f}% "
                 f"for fp32 (drop {best.drop_points:.2f} pts, {budget:g} allowed{kl_part}; search stopped: {stopped}).{also} "
                 "Allow a larger --max-accuracy-drop, more float layers or time (--max-float-layers, --time-budget), try "
                 f"another --calibration-method, or {repaired}.")
    elif report is None:
        error = f"{final_art.name} is within the accuracy budget but its parity with torch could not be checked.{also}"
    elif not report.passed:
        from edgestill.export.api import parity_lines

        error = (f"{final_art.name} is within the accuracy budget but failed parity with torch: {parity_lines(report)}. "
                 f"Check the calibration data, or loosen the int8 tolerances only if the difference is expected.{also}")
    _remove_stale(out, final_art.name)
    published, rejected = None, []
    if error is None:
        publish(final_art.directory, out, list(final_art.files))
        final_art.directory = out
        final_art.write_manifest()
        published = final_art
    else:
        final_art.write_manifest()
        rejected = reject(final_art.directory, out, [*final_art.files, final_art.manifest_path.name])
    shutil.rmtree(work, ignore_errors=True)
    return FormatResult(
        format=fmt, runtime=DEFAULT_RUNTIME[fmt], name=final_art.name, precision=final_art.precision, metric=metric,
        fp32_accuracy=ref["acc"], fp32_artifact=fp32_art, naive=naive, final=best, artifact=published, budget_met=met,
        budget=budget, max_kl=None if embed else config.max_kl, report=report, error=error, seconds=time.perf_counter() - t_format,
        rejected_files=rejected, attempts=attempts, sensitivity=sens, repair=repair_info, latency=latency,
        measurements=measurements, stopped_by=stopped, failures=failures,
    )


_FAILED = object()  # what a guarded step returns when it raised


def _said(exc: BaseException) -> str:
    """An exception as one line: its message, or its type when the message is empty."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _validate_final(
    arts: dict[str, tuple[Artifact, Any]], best: Attempt, naive: Attempt, val: np.ndarray, tolerances: Tolerances,
    guarded: Callable[[str, Callable[[], Any]], Any],
) -> tuple[ParityReport | None, Attempt]:
    """Parity of the chosen file with torch; when checking a fallback file raises, the naive file is checked instead."""
    from edgestill.export.validate import validate

    for candidate in [best] if best is naive else [best, naive]:
        art, source = arts[candidate.label]
        report = guarded(f"parity check of {candidate.label}", lambda art=art, source=source: validate(art, source, val, tolerances))
        if report is not _FAILED:
            return report, candidate
    return None, naive


def _remove_stale(out: Path, name: str) -> None:
    """Remove an earlier file of this name and its rejected files: the folder shows the latest run only."""
    escaped = re.sub(r"([*?\[])", r"[\1]", name)
    for stale in out.glob(escaped + ".*"):
        if stale.is_file():
            stale.unlink()


def _final_name(config: QuantizeConfig, fmt: str, float_layers: Sequence[str]) -> str:
    return f"{config.name}-{fmt}-{'mixed' if float_layers else config.precision}"


def _fallback_sizes(limit: int) -> list[int]:
    """How many top-ranked layers to keep in float, attempt by attempt: 1, 2, 3, 4, then growing by half."""
    sizes, k = [], 1
    while k <= limit:
        sizes.append(k)
        k = k + 1 if k < 4 else max(k + 1, int(k * 1.5))
    if limit and sizes[-1] != limit:
        sizes.append(limit)
    return sizes


def _sqnr_db(ref: np.ndarray, got: np.ndarray) -> float | None:
    if ref.shape != got.shape:
        return None
    noise = float(((got.astype(np.float64) - ref) ** 2).sum())
    signal = float((ref.astype(np.float64) ** 2).sum())
    return 300.0 if noise == 0 else round(float(min(300.0, 10 * np.log10(max(signal, 1e-300) / noise))), 2)


def _latency(fp32: Artifact, naive: Artifact, final: Artifact, config: QuantizeConfig) -> tuple[dict[str, Any], list[Measurement]]:
    """p50 at 1 thread of fp32, naive int8 and final, in interleaved rounds (runner subprocesses); medians of rounds.

    Returns:
        (the summary, every round's Measurement with its raw samples).
    """
    from edgestill.benchmarks.bench import benchmark_matrix
    from edgestill.runtimes.harness import BenchOptions

    for art in (naive, final):
        art.write_manifest()  # staged candidates need a manifest on disk for the runner
    paths = {"fp32": fp32.manifest_path, "naive": naive.manifest_path}
    if final is not naive:
        paths["final"] = final.manifest_path
    ms = benchmark_matrix([str(p) for p in paths.values()], (1,), bench=BenchOptions(min_runs=50, min_seconds=0.3),
                          rounds=config.bench_rounds)
    p50: dict[str, list[float]] = {k: [] for k in paths}
    keys = list(paths)
    for i, m in enumerate(ms):
        if m.kind == "measured" and m.latency is not None:
            p50[keys[i % len(keys)]].append(m.latency.p50_ms)
    med = {k: (float(np.median(v)) if v else None) for k, v in p50.items()}
    med.setdefault("final", med["naive"])
    out: dict[str, Any] = {"threads": 1, "rounds": config.bench_rounds, "p50_ms": med,
                           "p50_ms_each": {k: [round(v, 4) for v in vs] for k, vs in p50.items()}}
    if med["fp32"] and med["final"]:
        out["final_vs_fp32_p50"] = round(med["final"] / med["fp32"], 3)
    if med["naive"] and med["final"]:
        out["float_layers_cost_vs_naive_int8"] = round(med["final"] / med["naive"], 3)
    if any(not v for v in p50.values()):
        out["failed"] = [m.error for m in ms if m.kind != "measured"][:3]
    return out, ms
