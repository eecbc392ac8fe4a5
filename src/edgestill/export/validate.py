"""Parity of an exported artifact with its torch model, on the artifact's own runtime.

Thresholds per precision (defaults, and why):
- fp32: |artifact - torch| <= 1e-3 + 1e-3 * max|torch| per output, and top-1 agreement 1.0. Runtimes
  reorder float sums, so exact equality is wrong; measured differences here were 1e-7..1e-5, two orders
  below the bound, while a wrong layer or weight gives differences of order 1e-1 and more.
- fp16: 1e-2 + 1e-2 * max|torch|, cosine >= 0.999, top-1 >= 0.99 (fp16 keeps ~3 decimal digits).
- int8 (static, dynamic, mixed): SQNR >= 20 dB (error energy below 1% of the signal), cosine >= 0.99 and
  top-1 agreement >= 0.90. Per-channel int8 PTQ of small CNNs measured 35-50 dB here; a wrong scale,
  a dropped bias or calibration on the wrong data falls below 20 dB. No max_abs bound: int8 error is
  proportional to the activation range, which SQNR normalises. Top-1 agreement depends on the model's
  margins as much as on the file: the demo student (59% accurate, 10 classes) flipped 5.05% of 2,000 argmaxes
  at 34.6 dB SQNR and cosine 0.9998 with no accuracy loss, so 0.95 rejected a sound file. Whether int8 costs
  too much accuracy is the accuracy budget's question (quantize's --max-accuracy-drop), not parity's.
Top-1 agreement is computed for outputs shaped (N, C) with C > 1; for fp32/fp16 a sample whose torch top-2
scores lie within the max_abs bound counts as agreeing (a tie, not an error).
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edgestill.record import OutputParity
from edgestill.errors import ConfigError, InputError, did_you_mean
from edgestill.artifact import Artifact

if TYPE_CHECKING:
    import torch

    from edgestill.runtimes.base import RuntimeOptions

EMBEDDING_CRITERION = "embedding cosine"  # ParityReport.criterion of embedding outputs (else "top-1")
EMBEDDING_FP32_MIN_COSINE = 0.9999  # worst sample's cosine to torch of an fp32 embedding (see Tolerances)
EMBEDDING_FP16_MIN_COSINE = 0.999  # the same for fp16 weights
_SQNR_CAP_DB = 300.0  # identical outputs: report a large finite number (JSON has no Infinity)
_TORCH_BATCH = 64


@dataclass(frozen=True, kw_only=True)
class Threshold:
    """Pass criteria for one precision; ``None`` switches a criterion off."""

    atol: float | None = None
    rtol: float = 0.0  # times max|torch| of the output, added to atol
    min_cosine: float | None = None
    min_sqnr_db: float | None = None
    min_top1_agreement: float | None = None
    # embedding outputs (a text embedder's pooled vector, where top-1 means nothing): the worst sample's cosine to
    # torch must reach this; it replaces the top-1 criterion for them and is ignored for other outputs
    min_embedding_cosine: float | None = None

    def __post_init__(self) -> None:
        # NaN compares false with everything, so a NaN bound fails every file (and Inf passes or fails every one):
        # a bound must be a finite number, or None to switch the criterion off.
        for key in ("atol", "rtol", "min_sqnr_db"):
            v = getattr(self, key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0):
                raise ConfigError(f"tolerance {key} must be a finite number >= 0 (or none to switch it off), got {v!r}.")
        for key in ("min_cosine", "min_top1_agreement", "min_embedding_cosine"):
            v = getattr(self, key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not -1.0 <= v <= 1.0):
                raise ConfigError(f"tolerance {key} must be a number in [-1, 1] (1 = identical; none switches it off), got {v!r}.")


def _threshold(value: Any, key: str) -> Threshold:
    if isinstance(value, Threshold):
        return value
    if isinstance(value, dict):
        valid = set(Threshold.__dataclass_fields__)
        unknown = sorted(set(value) - valid)
        if unknown:
            raise ConfigError(f"tolerances.{key}: unknown key(s) {unknown}; valid keys: {sorted(valid)}.")
        return Threshold(**value)
    raise ConfigError(f"tolerances.{key} must be a mapping of thresholds, got {type(value).__name__}.")


@dataclass(frozen=True, kw_only=True)
class Tolerances:
    """Parity thresholds per precision (int8 covers int8-static, int8-dynamic and mixed).

    ``min_embedding_cosine`` (embedding outputs only, instead of top-1): fp32 0.9999 per sample, since float reordering
    leaves ~1e-7 (a 6-layer MiniLM exported to all three formats kept >= 0.9999998 on real sentences) while a wrong
    layer or pooling falls far below; fp16 0.999, fp16 keeping ~3 decimal digits. int8 cells are judged by the
    quantize budget's cosine to fp32 (edgestill.compress.quantize), so int8 sets none here.
    """

    fp32: Threshold = field(default_factory=lambda: Threshold(atol=1e-3, rtol=1e-3, min_top1_agreement=1.0,
                                                              min_embedding_cosine=EMBEDDING_FP32_MIN_COSINE))
    fp16: Threshold = field(default_factory=lambda: Threshold(atol=1e-2, rtol=1e-2, min_cosine=0.999, min_top1_agreement=0.99,
                                                              min_embedding_cosine=EMBEDDING_FP16_MIN_COSINE))
    int8: Threshold = field(default_factory=lambda: Threshold(min_sqnr_db=20.0, min_cosine=0.99, min_top1_agreement=0.90))

    def __post_init__(self) -> None:
        for key in ("fp32", "fp16", "int8"):
            object.__setattr__(self, key, _threshold(getattr(self, key), key))

    @classmethod
    def parse(cls, items: Sequence[str], base: Tolerances | None = None) -> Tolerances:
        """``["fp32.atol=1e-4", "int8.min_sqnr_db=25,int8.min_top1_agreement=0.97"]`` → ``base`` with those thresholds replaced.

        Each item holds one or more comma-separated ``PRECISION.KEY=VALUE`` overrides; VALUE is a number or
        ``none`` (switches the criterion off).

        Raises:
            ConfigError: an item not of the form PRECISION.KEY=VALUE, an unknown precision or key, a bad value.
        """
        base = base or cls()
        groups = [f.name for f in dataclasses.fields(cls)]
        keys = [f.name for f in dataclasses.fields(Threshold)]
        changes: dict[str, dict[str, float | None]] = {}
        for item in items:
            for part in (p.strip() for p in item.split(",") if p.strip()):
                m = re.fullmatch(r"(\w+)\.(\w+)=(.+)", part)
                if not m:
                    raise ConfigError(f"tolerance {part!r} is not PRECISION.KEY=VALUE (e.g. fp32.atol=1e-4); "
                                      f"PRECISION one of {', '.join(groups)}, KEY one of {', '.join(keys)}.")
                prec, key, value = m.groups()
                if prec not in groups:
                    raise ConfigError(f"tolerance {part!r}: precision {prec!r} is not one of {', '.join(groups)}."
                                      f"{did_you_mean(prec, groups)} (int8 covers int8-static, int8-dynamic and mixed.)")
                if key not in keys:
                    raise ConfigError(f"tolerance {part!r}: unknown key {key!r}.{did_you_mean(key, keys)} Valid keys: {', '.join(keys)}.")
                if value.strip().lower() == "none":
                    parsed = None
                else:
                    try:
                        parsed = float(value)
                    except ValueError:
                        raise ConfigError(f"tolerance {part!r}: {value!r} is not a number (or 'none' to switch the criterion off).") from None
                    if not math.isfinite(parsed):
                        raise ConfigError(f"tolerance {part!r}: {value!r} is not a finite number, so the check would fail or "
                                          "pass every file whatever its numbers; give a finite bound, or 'none' to switch "
                                          f"{prec}.{key} off.")
                changes.setdefault(prec, {})[key] = parsed
        try:
            return dataclasses.replace(base, **{p: dataclasses.replace(getattr(base, p), **kv) for p, kv in changes.items()})
        except ConfigError as exc:  # name the --tolerance items the bad bound came from
            given = ", ".join(items)
            raise ConfigError(f"--tolerance {given}: {exc}") from None

    def for_precision(self, precision: str) -> Threshold:
        """The threshold that applies to an artifact of ``precision``."""
        return {"fp32": self.fp32, "fp16": self.fp16}.get(precision, self.int8)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(kw_only=True)
class ParityReport:
    """Per-output agreement of an artifact with torch and the verdict against the thresholds."""

    artifact: str
    format: str
    precision: str
    runtime: str
    n_samples: int
    outputs: list[OutputParity]
    threshold: Threshold
    failures: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    criterion: str = "top-1"  # what judges agreement beyond max_abs: "top-1", or "embedding cosine" for embeddings

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        """One line per failing output: which metric, its value and the bound."""
        return "; ".join(f"{f['output']}: {f['metric']} {f['value']:.4g} (bound {f['bound']:.4g})" for f in self.failures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "artifact": self.artifact,
            "format": self.format,
            "precision": self.precision,
            "runtime": self.runtime,
            "n_samples": self.n_samples,
            "threshold": asdict(self.threshold),
            "outputs": [asdict(o) for o in self.outputs],
            "failures": list(self.failures),
            "settings": dict(self.settings),
            "criterion": self.criterion,
            "seconds": round(self.seconds, 3),
        }


def compare_output(name: str, got: np.ndarray, ref: np.ndarray, *, tie_atol: float = 0.0) -> OutputParity:
    """Agreement of one output (all samples stacked on axis 0) with the torch reference.

    ``max_rel`` is max_abs divided by max|ref| (relative to the output's range, not per element, which
    explodes near zero). ``tie_atol``: a top-1 mismatch whose torch scores differ by at most this counts as agreeing.
    """
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        raise InputError(f"output {name!r}: artifact gave shape {list(got.shape)}, torch gave {list(ref.shape)}.")
    err = got - ref
    max_abs = float(np.abs(err).max()) if err.size else 0.0
    ref_max = float(np.abs(ref).max()) if ref.size else 0.0
    max_rel = max_abs / ref_max if ref_max > 0 else (0.0 if max_abs == 0 else float("inf"))
    g, r = got.reshape(-1), ref.reshape(-1)
    denom = float(np.linalg.norm(g) * np.linalg.norm(r))
    cosine = float(g @ r / denom) if denom > 0 else (1.0 if max_abs == 0 else 0.0)
    signal, noise = float((r**2).sum()), float((err**2).sum())
    sqnr_db = _SQNR_CAP_DB if noise == 0 else min(_SQNR_CAP_DB, 10.0 * np.log10(max(signal, 1e-300) / noise))
    cos_mean = cos_min = None
    if ref.ndim >= 2 and len(ref):
        gs, rs = got.reshape(len(got), -1), ref.reshape(len(ref), -1)
        norms = np.linalg.norm(gs, axis=1) * np.linalg.norm(rs, axis=1)
        same = np.all(gs == rs, axis=1)
        per = np.where(norms > 0, (gs * rs).sum(axis=1) / np.where(norms > 0, norms, 1.0), np.where(same, 1.0, 0.0))
        cos_mean, cos_min = float(per.mean()), float(per.min())
    top1 = top1_ties = None
    if ref.ndim == 2 and ref.shape[1] > 1:
        a_top, r_top = got.argmax(1), ref.argmax(1)
        rows = np.arange(len(ref))
        same = a_top == r_top
        top1 = float(same.mean())  # strict: the reported figure
        top1_ties = float((same | (ref[rows, r_top] - ref[rows, a_top] <= tie_atol)).mean())  # for the verdict
    return OutputParity(name=name, max_abs=max_abs, max_rel=max_rel, cosine=cosine, sqnr_db=float(sqnr_db),
                        top1_agreement=top1, top1_agreement_with_ties=top1_ties, cosine_mean=cos_mean, cosine_min=cos_min)


def check_parity(p: OutputParity, ref_max_abs: float, t: Threshold, *, embedding: bool = False) -> list[dict[str, Any]]:
    """Every criterion of ``t`` that output ``p`` misses, with its value and bound.

    ``embedding``: the output is an embedding, judged by its worst sample's cosine (``t.min_embedding_cosine``)
    instead of top-1 agreement.
    """
    fails = []

    def fail(metric: str, value: float, bound: float) -> None:
        fails.append({"output": p.name, "metric": metric, "value": value, "bound": bound,
                      "max_abs": p.max_abs, "cosine": p.cosine, "sqnr_db": p.sqnr_db, "top1_agreement": p.top1_agreement})

    if t.atol is not None:
        bound = t.atol + t.rtol * ref_max_abs
        if not p.max_abs <= bound:
            fail("max_abs", p.max_abs, bound)
    if t.min_cosine is not None and not p.cosine >= t.min_cosine:
        fail("cosine", p.cosine, t.min_cosine)
    if t.min_sqnr_db is not None and not p.sqnr_db >= t.min_sqnr_db:
        fail("sqnr_db", p.sqnr_db, t.min_sqnr_db)
    if embedding:
        if t.min_embedding_cosine is not None and p.cosine_min is not None and not p.cosine_min >= t.min_embedding_cosine:
            fail("embedding_cosine_min", p.cosine_min, t.min_embedding_cosine)
        return fails
    top1 = p.top1_agreement_with_ties if p.top1_agreement_with_ties is not None else p.top1_agreement
    if t.min_top1_agreement is not None and top1 is not None and not top1 >= t.min_top1_agreement:
        fail("top1_agreement", top1, t.min_top1_agreement)
    return fails


def is_embedding(artifact: Artifact) -> bool:
    """Whether the artifact's outputs are embeddings (a text embedder: ``source["text"]["task"] == "embed"``)."""
    text = artifact.source.get("text") if isinstance(artifact.source, dict) else None
    return isinstance(text, dict) and text.get("task") == "embed"


def check_samples(data: Any, sample_shape: Sequence[int], *, what: str = "validation",
                  why: str = "parity figures would be meaningless") -> np.ndarray:
    """Return ``data`` as a contiguous array of N samples of ``sample_shape`` (the input shape without batch).

    Args:
        data: the samples (user input), N along the first axis.
        sample_shape: the model input's shape without its batch dim.
        what: the data's role, named in messages ("validation", "calibration", "eval").
        why: what NaN/Inf would break, named in the message.

    Raises:
        InputError: not numeric, empty, the wrong shape, or holding NaN/Inf.
    """
    arr = np.asarray(data)
    expected = tuple(int(d) for d in sample_shape)
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{what} data has dtype {arr.dtype}; it must be numeric (float32 images, like the model's input).")
    if arr.ndim == 0 or arr.shape[0] == 0 or arr.size == 0:
        raise InputError(
            f"{what} data is empty (shape {list(arr.shape)}); pass samples of shape "
            f"(N, {', '.join(map(str, expected))}), a few hundred representative inputs."
        )
    if tuple(arr.shape[1:]) != expected:
        raise InputError(
            f"{what} data has shape {list(arr.shape)} but the model's input is (N, {', '.join(map(str, expected))}) "
            "with N samples along the first axis. Pass samples shaped like the model's input, one per row."
        )
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).reshape(len(arr), -1).any(axis=1).sum())
        raise InputError(f"{what} data holds NaN or Inf in {bad} of {len(arr)} samples; {why}. Remove or fix those samples.")
    return np.ascontiguousarray(arr)


def _as_input_list(inputs: Any, artifact: Artifact) -> list[np.ndarray]:
    arrays = [np.asarray(inputs)] if isinstance(inputs, np.ndarray) else [np.asarray(a) for a in inputs]
    if len(arrays) != len(artifact.inputs):
        raise InputError(
            f"validation inputs: got {len(arrays)} array(s), the model takes {len(artifact.inputs)} "
            f"({', '.join(s.name for s in artifact.inputs)}). Pass one (N, ...) array per input."
        )
    n = len(arrays[0]) if arrays[0].ndim else 0
    for arr, spec in zip(arrays, artifact.inputs):
        sample = tuple(spec.shape[1:])
        ok = arr.ndim == len(spec.shape) and all(not isinstance(d, int) or d == a for d, a in zip(sample, arr.shape[1:]))
        if not ok or len(arr) != n:
            raise InputError(
                f"validation input for {spec.name!r} has shape {list(arr.shape)}; expected (N, {', '.join(map(str, sample))}) "
                "with the same N for every input. Pass samples shaped like the model's input, one per row."
            )
    if n == 0:
        raise InputError("validation inputs are empty; pass at least one sample (a few hundred give a meaningful top-1 agreement).")
    return arrays


def torch_reference(model: torch.nn.Module, inputs: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """The torch model's outputs over N samples (batched, eval mode, no grad): one (N, ...) array per output."""
    import torch

    from edgestill.export.base import flatten_outputs

    arrays = [np.asarray(inputs)] if isinstance(inputs, np.ndarray) else [np.asarray(a) for a in inputs]
    model.eval()
    chunks: list[list[np.ndarray]] = []
    with torch.no_grad():
        for start in range(0, len(arrays[0]), _TORCH_BATCH):
            outs = flatten_outputs(model(*(torch.from_numpy(np.ascontiguousarray(a[start : start + _TORCH_BATCH])) for a in arrays)))
            chunks.append([o.detach().cpu().numpy() for o in outs])
    return [np.concatenate(parts) for parts in zip(*chunks)]


def run_artifact(session: Any, artifact: Artifact, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Run every sample through a session: batched when the file's batch dim is symbolic, else one at a time."""
    dynamic = all(s.shape and not isinstance(s.shape[0], int) for s in artifact.inputs)
    step = _TORCH_BATCH if dynamic else 1
    names = [s.name for s in artifact.inputs]
    out_names = [s.name for s in artifact.outputs]
    chunks = []
    for start in range(0, len(arrays[0]), step):
        res = session.run({n: a[start : start + step] for n, a in zip(names, arrays)})
        chunks.append([res[n] for n in out_names])
    return [np.concatenate(parts) for parts in zip(*chunks)]


def validate(
    artifact: Artifact,
    model: torch.nn.Module,
    inputs: np.ndarray | Sequence[np.ndarray],
    tolerances: Tolerances | None = None,
    *,
    runtime: str | None = None,
    options: RuntimeOptions | None = None,
    reference: Sequence[np.ndarray] | None = None,
    embedding: bool | None = None,
) -> ParityReport:
    """Compare ``artifact`` on its runtime with ``model`` in torch over N samples.

    Args:
        artifact: the exported artifact (staged or published).
        model: the torch model it was exported from.
        inputs: N samples, an (N, ...) array per model input (one array for single-input models).
        tolerances: thresholds per precision (default :class:`Tolerances`).
        runtime: runtime name (default: the format's own).
        options: runtime options (default 1 thread, OpenVINO f32).
        reference: the torch outputs for ``inputs`` when already computed (:func:`torch_reference`).
        embedding: the outputs are embeddings, judged by per-sample cosine instead of top-1 (None: from the
            artifact's text facts, see :func:`is_embedding`).

    Returns:
        The ParityReport; check ``.passed`` (this function does not raise on a parity miss).

    Raises:
        InputError: inputs of the wrong count or shape, or empty.
        RuntimeFailure: the runtime could not load or run the file.
    """
    from edgestill.runtimes import RuntimeOptions, load

    tolerances = tolerances or Tolerances()
    threshold = tolerances.for_precision(artifact.precision)
    arrays = _as_input_list(inputs, artifact)
    embedding = is_embedding(artifact) if embedding is None else embedding
    t0 = time.perf_counter()
    session = load(artifact, options or RuntimeOptions(threads=1), runtime=runtime)
    got = run_artifact(session, artifact, arrays)
    ref = list(reference) if reference is not None else torch_reference(model, arrays)
    if any(len(r) != len(arrays[0]) for r in ref):
        raise InputError(f"reference outputs hold {[len(r) for r in ref]} samples but the inputs hold {len(arrays[0])}.")
    if len(got) != len(ref):
        raise InputError(f"{artifact.name} gives {len(got)} output(s) but the torch model gives {len(ref)}; re-export it from this model.")
    parities, failures = [], []
    for spec, g, r in zip(artifact.outputs, got, ref):
        ref_max = float(np.abs(r).max()) if r.size else 0.0
        tie = 0.0 if threshold.atol is None else threshold.atol + threshold.rtol * ref_max
        p = compare_output(spec.name, g.reshape(r.shape) if g.size == r.size else g, r, tie_atol=tie)
        parities.append(p)
        failures.extend(check_parity(p, ref_max, threshold, embedding=embedding))
    return ParityReport(
        artifact=artifact.name, format=artifact.format, precision=artifact.precision, runtime=session.runtime,
        n_samples=len(arrays[0]), outputs=parities, threshold=threshold, failures=failures,
        settings=dict(session.settings), seconds=time.perf_counter() - t0,
        criterion=EMBEDDING_CRITERION if embedding else "top-1",
    )
