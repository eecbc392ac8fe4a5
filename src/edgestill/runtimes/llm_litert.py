"""Greedy decoding of a TFLite LLM artifact on LiteRT: the prefill/decode signatures with the KV cache in their tensors.

Torch-free (numpy and ai-edge-litert only), like the rest of the runner's closure. The file
(:mod:`edgestill.export.llm_tflite`) has signatures ``prefill_<P>`` (one per prefill length P) and ``decode``; each
takes ``tokens`` int32 [1, T], ``input_pos`` int32 [T] and the cache tensors ``kv_cache_{k,v}_<layer>``
[1, context, kv_heads, head_dim], and returns ``logits`` float32 [1, T, vocab] with the updated cache.

Each signature's subgraph is allocated once and its tensors are read and written through numpy views (the
interpreter wrapper's ``tensor(base, index, subgraph)``), so the cache is never copied whole: the decode signature's
input cache is the running cache, and after each call only the rows the call wrote (its positions) are copied from
its output cache into it (for a prefill chunk, the rows before it are first copied into that signature's input cache).
Through the public ``SignatureRunner`` every call copied the whole cache in and out and re-allocated the subgraph:
2 ms a token on a 4-layer 512-wide model with a 256-token cache, half an int4 decode step.

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
POSITION_AXIS = 1  # of a cache tensor [1, context, kv_heads, head_dim]


class Subgraph:
    """One signature's subgraph, allocated once, with numpy views of its input and output tensors."""

    def __init__(self, interp: Any, key: str, context: int):
        wrapper = interp._interpreter  # the views need the wrapper; the public runner copies every tensor
        signature = interp._get_full_signature_list()[key]
        self._wrapper, self._index = wrapper, wrapper.GetSubgraphIndexFromSignature(key)
        wrapper.AllocateTensors(self._index)
        self.inputs = {n: wrapper.tensor(interp, i, self._index) for n, i in signature["inputs"].items()}
        self.outputs = {n: wrapper.tensor(interp, i, self._index) for n, i in signature["outputs"].items()}
        self.caches = sorted(n for n in self.inputs if n.startswith(CACHE_PREFIX))
        bad = [n for n in self.caches if self.inputs[n].shape[POSITION_AXIS] != context or n not in self.outputs]
        if not self.caches or bad or {"tokens", "input_pos", "logits"} - {*self.inputs, *self.outputs}:
            raise InputError(f"signature {key!r} does not take and return tokens, input_pos and a {context}-position "
                             f"cache (inputs {sorted(self.inputs)}, outputs {sorted(self.outputs)}); re-export the "
                             "file with edgestill's tflite LLM export.")
        for name in self.caches:  # fresh arena memory may hold any bits; masked rows must still be finite
            self.inputs[name].fill(0)
        self.length = int(self.inputs["tokens"].shape[1])

    def run(self, tokens: np.ndarray, start: int) -> np.ndarray:
        """Invoke at positions ``start..start + length``; the logits, copied out of the output tensor."""
        self.inputs["tokens"][0, :] = tokens
        self.inputs["input_pos"][:] = np.arange(start, start + self.length, dtype=np.int32)
        self._wrapper.Invoke(self._index)
        return np.array(self.outputs["logits"][0], dtype=np.float32)


def _rows(cache: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Positions ``lo..hi`` of a cache tensor (a view)."""
    return cache[(slice(None),) * POSITION_AXIS + (slice(lo, hi),)]


class LiteRTGenerator:
    """A loaded TFLite LLM: the prefill subgraphs by length and the decode subgraph, whose input cache is the cache."""

    runtime = RUNTIME

    def __init__(self, interp: Any, info: LLMInfo, version: str, name: str):
        self.info = info
        self.runtime_version = version
        self._interp = interp
        signatures = interp.get_signature_list()
        lengths = sorted(int(s[len(PREFILL_PREFIX):]) for s in signatures
                         if s.startswith(PREFILL_PREFIX) and s[len(PREFILL_PREFIX):].isdigit())
        if not lengths or DECODE not in signatures:
            raise InputError(f"{name} has the signatures {sorted(signatures)}, not prefill_<length> and decode: it is "
                             "not a TFLite LLM written by edgestill's export (re-export it with the tflite format).")
        context = info.context_length
        self._prefill = {p: Subgraph(interp, f"{PREFILL_PREFIX}{p}", context) for p in lengths}
        self._decode = Subgraph(interp, DECODE, context)

    def _prefill_chunk(self, sub: Subgraph, ids: np.ndarray, start: int) -> np.ndarray:
        """Run one chunk at ``start`` through ``sub`` (its cache brought up to ``start`` first); keep its rows."""
        cache = self._decode.inputs
        for name in sub.caches:
            _rows(sub.inputs[name], 0, start)[...] = _rows(cache[name], 0, start)
        chunk = np.zeros(sub.length, np.int32)
        real = ids[start:start + sub.length]
        chunk[:real.size] = real
        logits = sub.run(chunk, start)
        for name in sub.caches:
            _rows(cache[name], start, start + sub.length)[...] = _rows(sub.outputs[name], start, start + sub.length)
        return logits

    def _prefill_prompt(self, ids: np.ndarray) -> np.ndarray:
        """Run the prompt through the cache in signature-sized chunks; the logits after its last token."""
        n, context = ids.size, self.info.context_length
        done = start = 0
        while done < n:
            length = next((p for p in self._prefill if p >= n - done), max(self._prefill))
            start = min(done, context - length)
            logits = self._prefill_chunk(self._prefill[length], ids, start)
            done = start + length
        return logits[n - 1 - start]

    def _decode_step(self, token: int, position: int) -> np.ndarray:
        sub = self._decode
        logits = sub.run(np.array([token], np.int32), position)
        for name in sub.caches:
            _rows(sub.inputs[name], position, position + 1)[...] = _rows(sub.outputs[name], position, position + 1)
        return logits[0]

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
        rows = [self._prefill_prompt(ids)]
        for i in range(steps):
            rows.append(self._decode_step(int(np.argmax(rows[-1])), ids.size + i))
        return np.stack(rows).astype(np.float32)

    def generate(self, prompt_ids: Sequence[int], max_new_tokens: int, *, stop_on_eos: bool = True) -> Generation:
        """Greedy decoding, timed per token with perf_counter_ns (see the Generator protocol)."""
        ids = self._prompt(prompt_ids, max_new_tokens)
        result = Generation(prompt_len=int(ids.size))
        if max_new_tokens < 1:
            return result
        eos = self.info.eos_token_id if stop_on_eos else None
        t0 = time.perf_counter_ns()
        token = int(np.argmax(self._prefill_prompt(ids)))
        result.ttft_ms = (time.perf_counter_ns() - t0) / 1e6
        result.tokens.append(token)
        while token != eos and len(result.tokens) < max_new_tokens:
            t0 = time.perf_counter_ns()
            token = int(np.argmax(self._decode_step(token, ids.size + len(result.tokens) - 1)))
            result.step_ms.append((time.perf_counter_ns() - t0) / 1e6)
            result.tokens.append(token)
        result.stopped = "eos" if token == eos else "length"
        return result

    def close(self) -> None:
        """Drop the views before the interpreter that owns their memory."""
        self._prefill, self._decode = {}, None
        self._interp = None


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
