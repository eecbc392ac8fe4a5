"""Greedy decoding of a TFLite LLM artifact on LiteRT: the prefill/decode signatures with the KV cache carried in numpy.

Torch-free (numpy and ai-edge-litert only), like the rest of the runner's closure. The file
(:mod:`edgestill.export.llm_tflite`) has signatures ``prefill_<P>`` (one per prefill length P) and ``decode``; each
takes ``tokens`` int32 [1, T], ``input_pos`` int32 [T] and the cache tensors ``kv_cache_{k,v}_<layer>``, and returns
``logits`` float32 [1, T, vocab] with the updated cache, which the next call takes back.

A prompt is prefilled by the shortest signature that holds it, right-padded (the pads sit after every real position,
so the file's causal mask hides them and decoding overwrites them); a longer one in chunks of the longest signature,
the last chunk moved back so it ends inside the cache (its overlap re-writes the same keys and values).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgestill.artifact import Artifact
from edgestill.errors import InputError, RuntimeFailure
from edgestill.runtimes.generate import Generation, LLMInfo, check_prompt, llm_info
from edgestill.runtimes.litert import interpreter_module

RUNTIME = "litert"
PREFILL_PREFIX = "prefill_"
DECODE = "decode"
CACHE_PREFIX = "kv_cache_"


class LiteRTGenerator:
    """A loaded TFLite LLM: the interpreter, its prefill runners by length, the decode runner and a fresh cache."""

    runtime = RUNTIME

    def __init__(self, interp: Any, info: LLMInfo, version: str, name: str):
        self.info = info
        self.runtime_version = version
        self._interp = interp
        signatures = interp.get_signature_list()
        prefill = sorted(int(s[len(PREFILL_PREFIX):]) for s in signatures
                         if s.startswith(PREFILL_PREFIX) and s[len(PREFILL_PREFIX):].isdigit())
        if not prefill or DECODE not in signatures:
            raise InputError(f"{name} has the signatures {sorted(signatures)}, not prefill_<length> and decode: it is not "
                             "a TFLite LLM written by edgestill's export (re-export it with the tflite format).")
        self._prefill = {p: interp.get_signature_runner(f"{PREFILL_PREFIX}{p}") for p in prefill}
        self._decode = interp.get_signature_runner(DECODE)
        self._cache_specs = {k: (tuple(int(n) for n in d["shape"]), d["dtype"])
                             for k, d in self._decode.get_input_details().items() if k.startswith(CACHE_PREFIX)}

    def _fresh_cache(self) -> dict[str, np.ndarray]:
        return {k: np.zeros(shape, dtype) for k, (shape, dtype) in self._cache_specs.items()}

    def _run(self, runner: Any, tokens: np.ndarray, start: int, cache: dict[str, np.ndarray]) -> np.ndarray:
        """One signature call at positions ``start..``; ``cache`` is replaced by the updated one; returns the logits."""
        out = runner(tokens=tokens.reshape(1, -1), input_pos=np.arange(start, start + tokens.size, dtype=np.int32),
                     **cache)
        cache.update({k: out[k] for k in cache})
        return out["logits"][0]

    def _prefill_prompt(self, ids: np.ndarray, cache: dict[str, np.ndarray]) -> np.ndarray:
        """Run the prompt through the cache in signature-sized chunks; the logits after its last token."""
        n, context = ids.size, self.info.context_length
        done = 0
        while done < n:
            length = next((p for p in self._prefill if p >= n - done), max(self._prefill))
            start = min(done, context - length)
            chunk = np.zeros(length, np.int32)
            real = ids[start:start + length]
            chunk[:real.size] = real
            logits = self._run(self._prefill[length], chunk, start, cache)
            done = start + length
        return logits[n - 1 - start]

    def _decode_step(self, token: int, position: int, cache: dict[str, np.ndarray]) -> np.ndarray:
        return self._run(self._decode, np.array([token], np.int32), position, cache)[0]

    def _prompt(self, prompt_ids: Sequence[int], new_tokens: int) -> np.ndarray:
        ids = np.asarray(prompt_ids, dtype=np.int64).reshape(-1)
        check_prompt(self.info, int(ids.size), new_tokens)
        if ids.min() < 0 or ids.max() >= self.info.vocab_size:
            raise InputError(f"prompt ids must lie in 0..{self.info.vocab_size - 1} (the model's vocabulary); got "
                             f"{int(ids.min())}..{int(ids.max())}. Tokenize with the artifact's own tokenizer.")
        return ids.astype(np.int32)

    def logits(self, prompt_ids: Sequence[int], steps: int) -> np.ndarray:
        """The greedy trace's logits, float32 [steps + 1, vocab] (see the Generator protocol)."""
        ids = self._prompt(prompt_ids, steps)
        cache = self._fresh_cache()
        rows = [self._prefill_prompt(ids, cache)]
        for i in range(steps):
            rows.append(self._decode_step(int(np.argmax(rows[-1])), ids.size + i, cache))
        return np.stack(rows).astype(np.float32)

    def generate(self, prompt_ids: Sequence[int], max_new_tokens: int, *, stop_on_eos: bool = True) -> Generation:
        """Greedy decoding, timed per token with perf_counter_ns (see the Generator protocol)."""
        ids = self._prompt(prompt_ids, max_new_tokens)
        result = Generation(prompt_len=int(ids.size))
        if max_new_tokens < 1:
            return result
        cache = self._fresh_cache()
        eos = self.info.eos_token_id if stop_on_eos else None
        t0 = time.perf_counter_ns()
        token = int(np.argmax(self._prefill_prompt(ids, cache)))
        result.ttft_ms = (time.perf_counter_ns() - t0) / 1e6
        result.tokens.append(token)
        while token != eos and len(result.tokens) < max_new_tokens:
            t0 = time.perf_counter_ns()
            token = int(np.argmax(self._decode_step(token, ids.size + len(result.tokens) - 1, cache)))
            result.step_ms.append((time.perf_counter_ns() - t0) / 1e6)
            result.tokens.append(token)
        result.stopped = "eos" if token == eos else "length"
        return result

    def close(self) -> None:
        self._prefill, self._decode, self._interp = {}, None, None


def load(artifact: Artifact, *, threads: int | None = None, runtime: str | None = None) -> LiteRTGenerator:
    """Check the artifact's files, open its model with LiteRT (``threads`` CPU threads) and return the generator.

    Raises:
        InputError: not a generative artifact, another runtime asked for, a file changed since export, or a file
            without the prefill/decode signatures.
        RuntimeFailure: LiteRT could not load the file.
    """
    if runtime not in (None, RUNTIME):
        raise InputError(f"runtime {runtime!r} does not run TFLite LLM files; the one that does is {RUNTIME!r}.")
    info = llm_info(artifact)
    if info is None:
        raise InputError(f"{artifact.manifest_path} has no source.llm block: it is not a generative model.")
    artifact.verify_files()
    mod, version, _ = interpreter_module()
    kwargs: dict[str, Any] = {"model_path": str(artifact.model_path)}
    if threads is not None:
        kwargs["num_threads"] = int(threads)
    try:
        interp = mod.Interpreter(**kwargs)
    except (ValueError, RuntimeError) as exc:
        raise RuntimeFailure(f"LiteRT could not load {artifact.model_path}: {exc}") from exc
    return LiteRTGenerator(interp, info, version, str(artifact.model_path))
