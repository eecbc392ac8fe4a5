"""The measurement record: one per artifact × device × runtime × threads. Torch-free, pure data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

# The JSON documents that carry measurement records (``edgestill bench --json``, a chain run's report.json) say which
# schema they follow; ``edgestill gate`` refuses a version it does not know rather than misreading it.
RESULTS_SCHEMA = "edgestill.results"
RESULTS_SCHEMA_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class LatencyStats:
    """Steady-state summary built from raw samples by :func:`edgestill.stats.summarize`."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    cv_percent: float
    min_ms: float
    max_ms: float
    n: int


@dataclass(frozen=True, kw_only=True)
class Accuracy:
    metric: str
    value: float
    n: int


@dataclass(frozen=True, kw_only=True)
class OutputParity:
    """Agreement of one output with the torch reference.

    ``top1_agreement`` is the strict share of samples whose argmax matches torch;
    ``top1_agreement_with_ties`` also counts a mismatch whose torch scores are within the float tolerance
    (a tie, not an error) and is what a pass/fail verdict uses.
    """

    name: str
    max_abs: float
    max_rel: float
    cosine: float
    sqnr_db: float
    top1_agreement: float | None = None
    top1_agreement_with_ties: float | None = None
    # per-sample cosine to torch (each row of an (N, ...) output against its torch row): the mean and the worst sample.
    # ``cosine`` above is over the whole output at once; an embedding's verdict uses the worst sample's.
    cosine_mean: float | None = None
    cosine_min: float | None = None


@dataclass(kw_only=True)
class Measurement:
    """What the harness measured (or the estimator estimated) for one artifact on one device."""

    artifact: str
    format: str
    precision: str
    runtime: str
    threads: int
    kind: Literal["measured", "estimated", "failed"] = "measured"
    init_ms: float | None = None
    first_ms: float | None = None
    warmup_ms_mean: float | None = None
    latency: LatencyStats | None = None
    clock: str = "wall"  # what latency was read from: the wall clock, or the runtime's own (e.g. OpenVINO's)
    wall_latency: LatencyStats | None = None  # the same calls on the wall clock, when clock is the runtime's
    low_ms: float | None = None  # estimates only
    high_ms: float | None = None  # estimates only
    peak_rss_mb: float | None = None
    model_bytes: int | None = None
    accuracy: Accuracy | None = None
    # Agreement with the teacher's outputs on the same eval samples (no labels needed): the share of samples whose
    # top-1 class is the teacher's (a generative model: whose final answer is), and the mean KL(teacher || artifact)
    # of their softmax distributions (nats).
    teacher_top1_agreement: float | None = None
    teacher_kl: float | None = None
    # An embedder's agreement with the teacher's embeddings on the same held-out texts (a classifier's are None): the
    # mean cosine similarity, and the mean share of each text's ``retrieval_k`` nearest neighbours both agree on.
    teacher_cosine: float | None = None
    teacher_retrieval_agreement: float | None = None
    retrieval_k: int | None = None
    # A generative model (an artifact with ``source.llm``; None for every other model), timed at fixed lengths with
    # greedy decoding that does not stop at eos: ``prompt_tokens`` prompt ids, ``generated_tokens`` new ones.
    # ``ttft_ms``: median time to first token (prefill plus the first token); ``prefill_tokens_per_s`` =
    # prompt_tokens / ttft; ``decode_tokens_per_s``: decode steps over their time, median over the generations. For
    # such a record ``latency`` and ``samples_ms`` are the per-token DECODE latency (p50_ms is ms per generated
    # token, so the gate and history compare decode speed), ``accuracy`` is ``exact_match`` of final answers and
    # ``teacher_top1_agreement`` the share of prompts whose final answer is the teacher's.
    ttft_ms: float | None = None
    prefill_tokens_per_s: float | None = None
    decode_tokens_per_s: float | None = None
    prompt_tokens: int | None = None
    generated_tokens: int | None = None
    parity: list[OutputParity] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    samples_ms: list[float] = field(default_factory=list)  # raw steady-state samples, kept in the store
    warnings: list[str] = field(default_factory=list)
    error: str | None = None  # why a failed cell failed (with the tail of stderr)
    # Whether the steady state was stable (see edgestill.stats.stability): ``{"stable": bool, "reasons": [...], ...}``.
    # None for a record from before stability was checked, an estimate, or a failed cell. A gate gives no verdict on an
    # unstable cell.
    stability: dict[str, Any] | None = None

    @property
    def unstable(self) -> bool:
        """True when the harness flagged the steady state as unstable (drift, spread or outliers past its bounds)."""
        return bool(self.stability) and not self.stability.get("stable", True)

    def to_dict(self, with_samples: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if d["latency"]:
            d.update(d.pop("latency"))  # flatten p50_ms ... n into the record
        else:
            d.pop("latency")
        if not with_samples:
            d.pop("samples_ms")
        return d


def device_label(provenance: dict[str, Any] | None) -> str | None:
    """The named device a record was taken on, or None for an unnamed one.

    ``provenance["device"]`` is a name (``"host"``, an inventory device, a profile id for an estimate) or, from the
    devices layer, ``{"id": name, "profile": ..., "transport": ...}``; both give the name.
    """
    named = (provenance or {}).get("device")
    if isinstance(named, dict):
        named = named.get("id") or named.get("name")
    return None if named in (None, "") else str(named)


def device_key(provenance: dict[str, Any] | None) -> str | None:
    """The device a report groups a record under: a named device other than the host, else the machine id
    (``device_id``: the host's records from several machines stay apart), else the name."""
    prov = provenance or {}
    label = device_label(prov)
    if label and label != "host":
        return label
    return str(prov["device_id"]) if prov.get("device_id") else label


_LATENCY_KEYS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "cv_percent", "min_ms", "max_ms", "n")


def measurement_from_dict(d: dict[str, Any]) -> Measurement:
    """Rebuild a Measurement from ``to_dict`` output (flat latency keys or a nested ``latency``).

    Keys that are not record fields (a newer runner's extras) are ignored.
    """
    d = dict(d)
    latency = d.pop("latency", None)
    if latency is None and all(d.get(k) is not None for k in _LATENCY_KEYS):
        latency = {k: d[k] for k in _LATENCY_KEYS}
    for k in _LATENCY_KEYS:
        d.pop(k, None)
    known = set(Measurement.__dataclass_fields__)
    kwargs = {k: v for k, v in d.items() if k in known}
    if latency is not None:
        kwargs["latency"] = latency if isinstance(latency, LatencyStats) else LatencyStats(**latency)
    if isinstance(kwargs.get("wall_latency"), dict):
        kwargs["wall_latency"] = LatencyStats(**kwargs["wall_latency"])
    if kwargs.get("clock") is None:  # a record from before the clock was recorded: it was the wall clock
        kwargs.pop("clock", None)
    if isinstance(kwargs.get("accuracy"), dict):
        kwargs["accuracy"] = Accuracy(**kwargs["accuracy"])
    kwargs["parity"] = [p if isinstance(p, OutputParity) else OutputParity(**p) for p in kwargs.get("parity") or []]
    return Measurement(**kwargs)
