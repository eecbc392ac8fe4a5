"""ONNX KV-cache decoders on onnxruntime-genai (the default) or plain onnxruntime: the ONNX :class:`Generator`.

Torch-free (numpy and one runtime). The artifact's folder is what :mod:`edgestill.export.llm_onnx` builds: a decoder
with ``past_key_values.N.key/value`` inputs and ``present.N.key/value`` outputs, described by its
``genai_config.json`` (input and output names, layers, key-value heads, head size).

* ``onnxruntime-genai``: ``og.Model`` with the thread count set through a ``og.Config`` overlay of the decoder's
  session options; ``append_tokens`` runs the prompt, then each token, through its KV cache, and ``get_logits`` gives
  the last position's logits.
* ``onnxruntime``: one ``InferenceSession``; the prompt runs once with an empty cache, then each token runs alone with
  the returned ``present`` tensors fed back as ``past``. A device without onnxruntime-genai runs the same file this way.

Both decode greedily by a numpy argmax over the last position's logits, one loop for both: ``stop_on_eos=False``
goes on past an eos (exactly ``max_new_tokens`` tokens, the same tokens as torch's cache-free greedy trace, which
validation compares). genai's own search (``generate_next_token``) cannot: it stops at eos, and its ``min_length``
suppresses eos instead, which changes the tokens. Measured on a 15M-parameter int4 file at 1 thread, the loop's
decode steps took about 5% longer than ``generate_next_token``'s (one noisy A/B run on a shared 2-core machine).
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgestill.errors import InputError
from edgestill.runtimes.generate import Generation, LLMInfo, check_prompt, llm_info

GENAI = "onnxruntime-genai"
ORT = "onnxruntime"
RUNTIMES = (GENAI, ORT)
GENAI_CONFIG = "genai_config.json"
MAX_GENAI_CONFIG_BYTES = 1 << 20
_DECODER_KEYS = ("filename", "num_hidden_layers", "num_key_value_heads", "head_size", "inputs", "outputs")


def load(artifact: Any, *, threads: int | None = None, runtime: str | None = None) -> _OnnxGenerator:
    """Load an ONNX KV-cache artifact on ``runtime`` (onnxruntime-genai when None) with ``threads`` intra-op threads.

    The files are checked against the manifest's sha256 first (:meth:`Artifact.verify_files`).

    Raises:
        InputError: not a generative artifact, an unknown runtime, a bad thread count, a file missing or changed
            since export, a missing or invalid genai_config.json, or a model file the runtime cannot load.
    """
    info = llm_info(artifact)
    if info is None:
        raise InputError(f"{artifact.manifest_path} is not a generative model (no source.llm block); it cannot be "
                         "loaded as a KV-cache decoder.")
    chosen = runtime or GENAI
    if chosen not in RUNTIMES:
        raise InputError(f"runtime {chosen!r} does not run ONNX KV-cache decoders; runtimes: {', '.join(RUNTIMES)}.")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InputError(f"threads must be a whole number >= 1 (or unset for the runtime's default), got {threads!r}.")
    artifact.verify_files()
    folder = artifact.model_path.parent
    config = _read_genai_config(folder)
    cls = _GenaiGenerator if chosen == GENAI else _OrtGenerator
    try:
        return cls(info, folder, config, threads)
    except Exception as exc:  # noqa: BLE001 - the runtimes raise many types (onnxruntime's InvalidProtobuf, genai's
        # RuntimeError, ...) for a file they cannot load
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise InputError(f"{chosen} cannot load {artifact.model_path} ({first}): the file is corrupt, truncated or was "
                         "not made by the ONNX KV-cache export. Export it again, or copy the artifact folder again."
                         ) from None


def _read_genai_config(folder: Path) -> dict[str, Any]:
    """The decoder's genai_config.json, refusing one that is missing or lacks what both runtimes read."""
    path = folder / GENAI_CONFIG
    if not path.is_file():
        raise InputError(f"{folder} has no {GENAI_CONFIG}: an ONNX KV-cache decoder needs it beside model.onnx (its "
                         "inputs, outputs and cache shape). Copy the whole artifact folder, or export it again.")
    try:
        with open(path, "rb") as f:
            config = json.loads(f.read(MAX_GENAI_CONFIG_BYTES + 1).decode("utf-8"))
        decoder = config["model"]["decoder"]
        missing = [k for k in _DECODER_KEYS if k not in decoder]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{path} is not a valid {GENAI_CONFIG} ({type(exc).__name__}: {exc}); export the artifact "
                         "again.") from None
    if missing:
        raise InputError(f"{path} lacks model.decoder.{', '.join(missing)}; export the artifact again.")
    return config


class _OnnxGenerator(ABC):
    """What both runtimes share: the greedy logits trace and the checks on a prompt."""

    runtime: str
    runtime_version: str

    def __init__(self, info: LLMInfo, threads: int | None):
        self.info = info
        self.threads = threads

    def logits(self, prompt_ids: Sequence[int], steps: int) -> np.ndarray:
        """The greedy trace's logits, float32 ``[steps + 1, vocab]`` (see :class:`~edgestill.runtimes.generate.Generator`)."""
        prompt = self._check(prompt_ids, steps)
        rows = [np.array(self._prefill(prompt, steps), dtype=np.float32)]
        for _ in range(steps):
            rows.append(np.array(self._feed(int(np.argmax(rows[-1]))), dtype=np.float32))
        return np.stack(rows)

    def _check(self, prompt_ids: Sequence[int], new_tokens: int) -> list[int]:
        """The prompt as a list of ints, refused when it holds ids outside the vocabulary or does not fit the context."""
        prompt = [int(t) for t in prompt_ids]
        if isinstance(new_tokens, bool) or not isinstance(new_tokens, int) or new_tokens < 0:
            raise InputError(f"the number of new tokens must be a whole number >= 0, got {new_tokens!r}.")
        check_prompt(self.info, len(prompt), new_tokens)
        bad = [t for t in prompt if not 0 <= t < self.info.vocab_size]
        if bad:
            raise InputError(f"prompt token id {bad[0]} is outside the model's vocabulary of {self.info.vocab_size} "
                             "ids; tokenize the prompt with the artifact's own tokenizer.")
        return prompt

    @abstractmethod
    def _prefill(self, prompt: list[int], steps: int) -> np.ndarray:
        """Start a fresh cache with ``prompt`` (room for ``steps`` more tokens); the last position's logits, ``[vocab]``
        (possibly a view into the runtime's buffer, valid until the next call)."""

    @abstractmethod
    def _feed(self, token: int) -> np.ndarray:
        """Append one token through the cache; its logits, ``[vocab]``."""

    def generate(self, prompt_ids: Sequence[int], max_new_tokens: int, *, stop_on_eos: bool = True) -> Generation:
        """Greedy decoding, timed: ttft = the prompt's run + its argmax, then one run + argmax per new token (see
        :class:`~edgestill.runtimes.generate.Generator`)."""
        prompt = self._check(prompt_ids, max_new_tokens)
        if max_new_tokens < 1:
            raise InputError(f"max_new_tokens is {max_new_tokens}; generation makes at least 1 token.")
        eos = self.info.eos_token_id if stop_on_eos else None
        out = Generation(prompt_len=len(prompt))
        start = time.perf_counter_ns()
        token = int(np.argmax(self._prefill(prompt, max_new_tokens)))
        out.ttft_ms = (time.perf_counter_ns() - start) / 1e6
        out.tokens.append(token)
        while len(out.tokens) < max_new_tokens and token != eos:
            start = time.perf_counter_ns()
            token = int(np.argmax(self._feed(token)))
            out.step_ms.append((time.perf_counter_ns() - start) / 1e6)
            out.tokens.append(token)
        out.stopped = "eos" if eos is not None and token == eos else "length"
        return out

    @abstractmethod
    def close(self) -> None:
        """Release the runtime's model and cache."""


class _GenaiGenerator(_OnnxGenerator):
    """onnxruntime-genai's model; a ``og.Generator`` per prompt holds the KV cache (room for the prompt and the asked
    tokens)."""

    runtime = GENAI

    def __init__(self, info: LLMInfo, folder: Path, config: dict[str, Any], threads: int | None):
        super().__init__(info, threads)
        import onnxruntime_genai as og

        self._og = og
        self.runtime_version = og.__version__
        cfg = og.Config(str(folder))
        if threads is not None:
            options = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
            cfg.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
        self._model = og.Model(cfg)
        self._generator: Any = None

    def _last_logits(self) -> np.ndarray:
        return np.asarray(self._generator.get_logits()).reshape(-1, self.info.vocab_size)[-1]

    def _prefill(self, prompt: list[int], steps: int) -> np.ndarray:
        params = self._og.GeneratorParams(self._model)
        params.set_search_options(max_length=len(prompt) + steps)
        self._generator = self._og.Generator(self._model, params)
        self._generator.append_tokens(prompt)
        return self._last_logits()

    def _feed(self, token: int) -> np.ndarray:
        self._generator.append_tokens([token])
        return self._last_logits()

    def close(self) -> None:
        self._generator = None
        self._model = None


class _OrtGenerator(_OnnxGenerator):
    """One onnxruntime session; the cache is the ``present`` outputs fed back as ``past`` inputs."""

    runtime = ORT

    def __init__(self, info: LLMInfo, folder: Path, config: dict[str, Any], threads: int | None):
        super().__init__(info, threads)
        import onnxruntime as ort

        self.runtime_version = ort.__version__
        decoder = config["model"]["decoder"]
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(folder / decoder["filename"]), options,
                                             providers=["CPUExecutionProvider"])
        names, layers = decoder["inputs"], int(decoder["num_hidden_layers"])
        outs = decoder["outputs"]
        self._ids_name, self._mask_name, self._logits_name = names["input_ids"], names["attention_mask"], outs["logits"]
        self._past = [names[k] % i for i in range(layers) for k in ("past_key_names", "past_value_names")]
        self._present = [outs[k] % i for i in range(layers) for k in ("present_key_names", "present_value_names")]
        self._empty = np.zeros((1, int(decoder["num_key_value_heads"]), 0, int(decoder["head_size"])), np.float32)
        self._cache: list[np.ndarray] = []
        self._length = 0

    def _run(self, tokens: list[int]) -> np.ndarray:
        """Run ``tokens`` after the cached ones; keep their keys and values; the last position's logits."""
        self._length += len(tokens)
        feed = {self._ids_name: np.asarray([tokens], dtype=np.int64),
                self._mask_name: np.ones((1, self._length), dtype=np.int64), **dict(zip(self._past, self._cache))}
        results = self._session.run([self._logits_name, *self._present], feed)
        self._cache = results[1:]
        return results[0][0, -1]

    def _prefill(self, prompt: list[int], steps: int) -> np.ndarray:
        self._cache = [self._empty] * len(self._past)
        self._length = 0
        return self._run(prompt)

    def _feed(self, token: int) -> np.ndarray:
        return self._run([token])

    def close(self) -> None:
        self._session = None
        self._cache = []
