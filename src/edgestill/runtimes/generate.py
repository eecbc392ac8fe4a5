"""Generative (causal) language models on a runtime: one protocol for every format's KV-cache decoder.

Torch-free, like the rest of the runner's closure: a device needs numpy and the artifact's runtime (onnxruntime-genai
or onnxruntime for ONNX, openvino(-genai) for OpenVINO, ai-edge-litert for TFLite), never ``tokenizers`` or torch.
Prompts arrive as token ids (the host tokenizes); what comes back is token ids and timings.

An LLM artifact is an :class:`~edgestill.artifact.Artifact` whose ``source["llm"]`` block (:class:`LLMInfo`) says
so. Its runtime files live in a sub-folder named like the artifact, beside the manifest; ``files`` lists every one of
them with its sha256 and ``model_file`` is the file the runtime opens (``NAME/model.onnx``, ``NAME/openvino_model.xml``,
``NAME/model.tflite``).

Each format's module registers a loader in :data:`GENERATOR_LOADERS` (``edgestill.runtimes.llm_onnx`` for
``onnx``, ``llm_openvino``, ``llm_litert``); :func:`load_generator` imports the one the artifact needs.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from edgestill.errors import InputError

LLM_SOURCE_KEY = "llm"  # Artifact.source[LLM_SOURCE_KEY] marks a generative model

# format -> module that defines ``load(artifact, *, threads, runtime=None) -> Generator``
GENERATOR_MODULES: dict[str, str] = {
    "onnx": "edgestill.runtimes.llm_onnx",
    "openvino": "edgestill.runtimes.llm_openvino",
    "tflite": "edgestill.runtimes.llm_litert",
}


@dataclass(frozen=True, kw_only=True)
class LLMInfo:
    """What a runtime and a scorer need to know about a generative artifact (``Artifact.source["llm"]``)."""

    vocab_size: int
    context_length: int  # the most tokens (prompt + generated) the file's KV cache holds
    eos_token_id: int | None
    bos_token_id: int | None = None
    pad_token_id: int | None = None
    tokenizer: str | None = None  # path of tokenizer.json relative to the artifact folder (for the host's scoring)
    route: str = ""  # how the file was made: "onnxruntime-genai builder", "optimum-intel stateful", "litert-torch", ...
    runtime: str = ""  # what runs it: "onnxruntime-genai", "onnxruntime", "openvino-genai", "openvino", "litert"
    num_layers: int | None = None
    num_kv_heads: int | None = None
    head_dim: int | None = None
    weight_bits: int | None = None  # 32, 16, 8 or 4: what the decode estimate reads per weight

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LLMInfo:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def llm_info(artifact: Any) -> LLMInfo | None:
    """The artifact's :class:`LLMInfo`, or None when it is not a generative model."""
    block = (getattr(artifact, "source", None) or {}).get(LLM_SOURCE_KEY)
    return LLMInfo.from_dict(block) if isinstance(block, dict) else None


@dataclass(kw_only=True)
class Generation:
    """One greedy generation: the new tokens and how long each took.

    ``ttft_ms`` is from the call to the first new token (prefill of the whole prompt plus the first sampling);
    ``step_ms[i]`` is the time of new token ``i + 1`` (one decode step each). ``stopped`` is ``"eos"`` or ``"length"``.
    """

    prompt_len: int
    tokens: list[int] = field(default_factory=list)
    ttft_ms: float = 0.0
    step_ms: list[float] = field(default_factory=list)
    stopped: str = "length"


class Generator(Protocol):
    """A loaded generative artifact. Greedy decoding only (what validation, scoring and timing need)."""

    info: LLMInfo
    runtime: str  # "onnxruntime-genai", "openvino", ... (recorded with every measurement)
    runtime_version: str

    def logits(self, prompt_ids: Sequence[int], steps: int) -> Any:
        """The greedy trace's logits, float32 ``[steps + 1, vocab]``: row 0 after the prefill of ``prompt_ids``
        (its last position), row ``i`` after feeding the ``i``-th greedy token (the argmax of row ``i - 1``) through
        the KV cache. Validation compares it with torch."""
        ...

    def generate(self, prompt_ids: Sequence[int], max_new_tokens: int, *, stop_on_eos: bool = True) -> Generation:
        """Greedy decoding from ``prompt_ids``; with ``stop_on_eos=False`` exactly ``max_new_tokens`` are made (the
        timing protocol's fixed lengths). Raises InputError when the prompt plus ``max_new_tokens`` exceeds
        ``info.context_length``."""
        ...

    def close(self) -> None: ...


def check_prompt(info: LLMInfo, prompt_len: int, max_new_tokens: int) -> None:
    """Refuse a prompt that does not fit the file's context (bad input, exit 2), before anything is run."""
    if prompt_len < 1:
        raise InputError("an empty prompt cannot be generated from: pass at least one token.")
    if prompt_len + max_new_tokens > info.context_length:
        raise InputError(f"a prompt of {prompt_len} tokens plus {max_new_tokens} new tokens exceeds the model's context "
                         f"of {info.context_length} tokens; shorten the prompt or ask for fewer new tokens.")


def load_generator(artifact: Any, *, threads: int | None = None, runtime: str | None = None) -> Generator:
    """Load a generative artifact on its format's runtime (``runtime`` picks one where a format has two)."""
    info = llm_info(artifact)
    if info is None:
        raise InputError(f"{getattr(artifact, 'manifest_path', artifact)} is not a generative model (its manifest has "
                         f"no source.{LLM_SOURCE_KEY} block); bench it as a plain model.")
    module = GENERATOR_MODULES.get(str(artifact.format))
    if module is None:
        raise InputError(f"no generative runtime for format {artifact.format!r}; formats: {', '.join(GENERATOR_MODULES)}.")
    return importlib.import_module(module).load(artifact, threads=threads, runtime=runtime)
