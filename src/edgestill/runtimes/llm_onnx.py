"""ONNX KV-cache decoders on onnxruntime-genai (the default) or plain onnxruntime: the ONNX :class:`Generator`.

Torch-free (numpy and one runtime). The artifact's folder is what :mod:`edgestill.export.llm_onnx` builds: a decoder
with ``past_key_values.N.key/value`` inputs and ``present.N.key/value`` outputs, described by its
``genai_config.json`` (input and output names, layers, key-value heads, head size).

* ``onnxruntime-genai``: ``og.Model`` with the thread count set through a ``og.Config`` overlay of the decoder's
  session options; generation is its own greedy search (``append_tokens``, then ``generate_next_token`` per token),
  timed around each call.
* ``onnxruntime``: one ``InferenceSession``; the prompt runs once with an empty cache, then each token runs alone with
  the returned ``present`` tensors fed back as ``past``; greedy is a numpy argmax. A device without
  onnxruntime-genai runs the same file this way.

With ``stop_on_eos=False`` both suppress the eos token until ``max_new_tokens`` are made (genai's ``min_length``;
an eos logit of -inf here), so a timed generation always has the requested length.
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
        rows = [self._prefill(prompt, steps)]
        for _ in range(steps):
            rows.append(self._feed(int(np.argmax(rows[-1]))))
        return np.stack(rows).astype(np.float32, copy=False)

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
        """Start a fresh cache with ``prompt`` (room for ``steps`` more tokens); the last position's logits, ``[vocab]``."""

    @abstractmethod
    def _feed(self, token: int) -> np.ndarray:
        """Append one token through the cache; its logits, ``[vocab]``."""

    @abstractmethod
    def generate(self, prompt_ids: Sequence[int], max_new_tokens: int, *, stop_on_eos: bool = True) -> Generation:
        """Greedy decoding, timed (see :class:`~edgestill.runtimes.generate.Generator`)."""

    @abstractmethod
    def close(self) -> None:
        """Release the runtime's model and cache."""


class _GenaiGenerator(_OnnxGenerator):
    """onnxruntime-genai's model and greedy search."""

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

    def _new_generator(self, max_length: int, min_length: int = 0) -> Any:
        params = self._og.GeneratorParams(self._model)
        params.set_search_options(do_sample=False, max_length=max_length, min_length=min_length)
        return self._og.Generator(self._model, params)

    def _last_logits(self) -> np.ndarray:
        return np.asarray(self._generator.get_logits(), dtype=np.float32).reshape(-1, self.info.vocab_size)[-1].copy()

    def _prefill(self, prompt: list[int], steps: int) -> np.ndarray:
        self._generator = self._new_generator(len(prompt) + steps)
        self._generator.append_tokens(prompt)
        return self._last_logits()

    def _feed(self, token: int) -> np.ndarray:
        self._generator.append_tokens([token])
        return self._last_logits()

    def generate(self, prompt_ids: Sequence[int], max_new_tokens: int, *, stop_on_eos: bool = True) -> Generation:
        """Greedy decoding by genai's search: ttft = append_tokens + the first generate_next_token, then one timed
        generate_next_token per token."""
        prompt = self._check(prompt_ids, max_new_tokens)
        total = len(prompt) + max_new_tokens
        g = self._new_generator(total, 0 if stop_on_eos else total)
        out = Generation(prompt_len=len(prompt))
        start = time.perf_counter_ns()
        g.append_tokens(prompt)
        g.generate_next_token()
        out.ttft_ms = (time.perf_counter_ns() - start) / 1e6
        out.tokens.append(int(g.get_next_tokens()[0]))
        while not g.is_done():
            start = time.perf_counter_ns()
            g.generate_next_token()
            out.step_ms.append((time.perf_counter_ns() - start) / 1e6)
            out.tokens.append(int(g.get_next_tokens()[0]))
        out.stopped = "eos" if stop_on_eos and out.tokens[-1] == self.info.eos_token_id else "length"
        return out

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
        past_type = {i.name: i.type for i in self._session.get_inputs()}.get(self._past[0], "tensor(float)")
        self._cache_dtype = np.float16 if "float16" in past_type else np.float32
        self._empty = np.zeros((1, int(decoder["num_key_value_heads"]), 0, int(decoder["head_size"])), self._cache_dtype)
        self._cache: list[np.ndarray] = []
        self._length = 0

    def _run(self, tokens: list[int]) -> np.ndarray:
        self._length += len(tokens)
        feed = {self._ids_name: np.asarray([tokens], dtype=np.int64),
                self._mask_name: np.ones((1, self._length), dtype=np.int64), **dict(zip(self._past, self._cache))}
        results = self._session.run([self._logits_name, *self._present], feed)
        self._cache = results[1:]
        return np.asarray(results[0], dtype=np.float32)[0, -1]

    def _prefill(self, prompt: list[int], steps: int) -> np.ndarray:
        self._cache = [self._empty] * len(self._past)
        self._length = 0
        return self._run(prompt)

    def _feed(self, token: int) -> np.ndarray:
        return self._run([token])

    def _next(self, logits: np.ndarray, suppress_eos: bool) -> int:
        eos = self.info.eos_token_id
        if suppress_eos and eos is not None:
            logits = logits.copy()
            logits[eos] = -np.inf
        return int(np.argmax(logits))

    def generate(self, prompt_ids: Sequence[int], max_new_tokens: int, *, stop_on_eos: bool = True) -> Generation:
        """Greedy decoding: ttft = the prompt's run + its argmax, then one timed run + argmax per token."""
        prompt = self._check(prompt_ids, max_new_tokens)
        out = Generation(prompt_len=len(prompt))
        start = time.perf_counter_ns()
        token = self._next(self._prefill(prompt, max_new_tokens), not stop_on_eos)
        out.ttft_ms = (time.perf_counter_ns() - start) / 1e6
        out.tokens.append(token)
        while len(out.tokens) < max_new_tokens and not (stop_on_eos and token == self.info.eos_token_id):
            start = time.perf_counter_ns()
            token = self._next(self._feed(token), not stop_on_eos)
            out.step_ms.append((time.perf_counter_ns() - start) / 1e6)
            out.tokens.append(token)
        out.stopped = "eos" if stop_on_eos and token == self.info.eos_token_id else "length"
        return out

    def close(self) -> None:
        self._session = None
        self._cache = []
