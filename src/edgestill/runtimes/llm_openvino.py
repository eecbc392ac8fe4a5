"""Greedy generation from a stateful OpenVINO LLM IR (:mod:`edgestill.export.llm_openvino`), torch-free.

Two runtimes over the same folder:

- ``openvino`` (default): the IR compiled on the CPU plugin and a greedy loop in Python over one infer request. The
  KV cache is the request's state: ``reset_state()`` starts each prompt, the prefill feeds the whole prompt, each
  decode step one token with ``attention_mask`` of every position so far, ``position_ids`` of the new one and
  ``beam_idx = [0]`` (the state's batch order, identity for one sequence).
- ``openvino-genai``: ``openvino_genai.LLMPipeline`` over the folder, fed token ids (an ``ov.Tensor``), greedy, with
  ``ignore_eos`` and ``min_new_tokens`` when exact lengths are asked. Times come from the pipeline's own per-token
  clock (``perf_metrics.raw_metrics``: time to first token, then each token's duration): a streamer callback runs on
  a thread of its own and got the tokens in bursts on a busy machine (median 0.03 ms between tokens that took 0.8 ms
  of CPU each), so Python-side stamps would time the streamer, not the model.
  The pipeline exposes no logits, so :meth:`GenAIGenerator.logits` runs the plain IR (compiled on first use).
  Prefix caching is turned off (an explicit ``SchedulerConfig``): the pipeline's default on the CPU keeps the KV
  blocks of earlier prompts, so a repeated prompt (the timing protocol repeats one) skipped its prefill: 3.7 ms TTFT
  against 48 ms for a new 128-token prompt, measured here on a 4-layer hidden-512 model.

Both compile with ``INFERENCE_PRECISION_HINT f32`` for every file precision: the CPU plugin's default on CPUs with
bf16 units is bf16, which changes greedy tokens of fp32 files, and for weight-compressed files it would change the
activations' precision too, mixing two effects into what is reported as int8/int4. (On this machine's AMX CPU the
default bf16 with ``INFERENCE_NUM_THREADS 1`` even killed the process with SIGFPE while compiling an fp32 LLM IR,
OpenVINO 2026.4.1; the f32 hint compiles.)

Two more CPU-plugin defaults change numbers and are overridden:

- ``KV_CACHE_PRECISION f32`` (default u8): with the u8 cache an fp32 file's logits drifted from torch by up to 0.013
  over 32 decode steps (trained 2-layer hidden-128 Llama, 10 prompts; greedy tokens still equal), 3e-5 with f32.
- ``DYNAMIC_QUANTIZATION_GROUP_SIZE 0`` (default 32, which quantizes the activations of weight-compressed MatMuls to
  int8 per group of 32 at run time): weight-only precisions keep float activations, as their name says. Measured
  here (4-layer hidden-512 model, 1 thread, CPU ms per decoded token): int4 0.81 with it against 1.05 without, int8
  1.02 against 1.15, fp32 2.13 either way; token agreement with torch was the same (0.927 int8, 0.621 int4).

``PERFORMANCE_HINT LATENCY`` (one stream) and ``INFERENCE_NUM_THREADS`` as asked (the runtime's default when
``threads`` is None: all cores) complete the settings, recorded in :attr:`OpenVINOGenerator.settings`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgestill.artifact import Artifact
from edgestill.errors import InputError, RuntimeFailure
from edgestill.runtimes.generate import Generation, Generator, LLMInfo, check_prompt, llm_info
from edgestill.runtimes.openvino import no_telemetry

RUNTIMES: tuple[str, ...] = ("openvino", "openvino-genai")
INFERENCE_PRECISION_HINT = "f32"
PERFORMANCE_HINT = "LATENCY"
KV_CACHE_PRECISION = "f32"  # the CPU plugin's default is u8
DYNAMIC_QUANTIZATION_GROUP_SIZE = 0  # off; the CPU plugin's default (32) quantizes activations of compressed MatMuls


def load(artifact: Artifact, *, threads: int | None = None, runtime: str | None = None) -> Generator:
    """Load a stateful OpenVINO LLM artifact on ``runtime`` (``openvino`` by default, or ``openvino-genai``).

    Raises:
        InputError: not a generative artifact, an unknown runtime, bad ``threads``, a file missing or changed since
            export (``verify_files``), or an IR OpenVINO cannot read.
        RuntimeFailure: the CPU plugin could not compile a valid IR.
    """
    info = llm_info(artifact)
    if info is None:
        raise InputError(f"{artifact.manifest_path} has no source.llm block: it is not a generative model.")
    chosen = runtime or RUNTIMES[0]
    if chosen not in RUNTIMES:
        raise InputError(f"runtime {chosen!r} does not run OpenVINO LLM files; choose {' or '.join(RUNTIMES)}.")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InputError(f"threads must be a positive integer (or None for the runtime's default), got {threads!r}.")
    artifact.verify_files()
    if chosen == "openvino-genai":
        return GenAIGenerator(artifact, info, threads)
    return OpenVINOGenerator(artifact, info, threads)


def compile_config(threads: int | None) -> dict[str, Any]:
    """The CPU plugin settings, every one that changes numbers or speed set explicitly (see the module docstring)."""
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": INFERENCE_PRECISION_HINT, "PERFORMANCE_HINT": PERFORMANCE_HINT,
                              "KV_CACHE_PRECISION": KV_CACHE_PRECISION,
                              "DYNAMIC_QUANTIZATION_GROUP_SIZE": DYNAMIC_QUANTIZATION_GROUP_SIZE}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    return config


def _settings(runtime: str, threads: int | None) -> dict[str, Any]:
    """What a measurement records about how the file was run."""
    return {"runtime": runtime, "threads": threads, "device": "CPU", "inference_precision": INFERENCE_PRECISION_HINT,
            "performance_hint": PERFORMANCE_HINT, "kv_cache_precision": KV_CACHE_PRECISION,
            "dynamic_quantization_group_size": DYNAMIC_QUANTIZATION_GROUP_SIZE, "config": compile_config(threads)}


class OpenVINOGenerator:
    """The stateful IR on the CPU plugin, greedy decoding in Python (see the module docstring); compiled at load, so
    the runner's init time includes the compilation."""

    runtime = "openvino"

    def __init__(self, artifact: Artifact, info: LLMInfo, threads: int | None):
        with no_telemetry():
            import openvino as ov

        self.info = info
        self.threads = threads
        self.runtime_version = ov.get_version()
        self.settings = _settings(self.runtime, threads)
        self._request = compile_stateful(artifact.model_path, self.settings["config"]).create_infer_request()

    def _run(self, ids: np.ndarray, past: int) -> np.ndarray:
        """Feed ``ids`` (int64 [1, T]) after ``past`` cached tokens; return the last position's logits (a view)."""
        import openvino as ov

        request = self._request
        t = ids.shape[1]
        request.set_tensor("input_ids", ov.Tensor(ids))
        request.set_tensor("attention_mask", ov.Tensor(np.ones((1, past + t), dtype=np.int64)))
        request.set_tensor("position_ids", ov.Tensor(np.arange(past, past + t, dtype=np.int64)[None]))
        request.set_tensor("beam_idx", ov.Tensor(np.zeros(1, dtype=np.int32)))
        request.infer()
        return request.get_tensor("logits").data[0, -1]

    def _start(self, prompt_ids: Sequence[int], new_tokens: int) -> np.ndarray:
        """Check the prompt against the context, reset the KV state and return the prompt as int64 [1, L]."""
        ids = _prompt_array(prompt_ids, self.info)
        check_prompt(self.info, ids.shape[1], new_tokens)
        self._request.reset_state()
        return ids

    def logits(self, prompt_ids: Sequence[int], steps: int) -> np.ndarray:
        ids = self._start(prompt_ids, steps)
        rows = np.empty((steps + 1, self.info.vocab_size), dtype=np.float32)
        past = 0
        for i in range(steps + 1):
            rows[i] = self._run(ids, past)
            past += ids.shape[1]
            ids = np.array([[int(rows[i].argmax())]], dtype=np.int64)
        return rows

    def generate(self, prompt_ids: Sequence[int], max_new_tokens: int, *, stop_on_eos: bool = True) -> Generation:
        ids = self._start(prompt_ids, max_new_tokens)
        out = Generation(prompt_len=ids.shape[1])
        eos = self.info.eos_token_id if stop_on_eos else None
        past = 0
        for i in range(max_new_tokens):
            t0 = time.perf_counter_ns()
            token = int(self._run(ids, past).argmax())
            ms = (time.perf_counter_ns() - t0) / 1e6
            if i == 0:
                out.ttft_ms = ms
            else:
                out.step_ms.append(ms)
            out.tokens.append(token)
            if token == eos:
                out.stopped = "eos"
                break
            past += ids.shape[1]
            ids = np.array([[token]], dtype=np.int64)
        return out

    def close(self) -> None:
        self._request = None


class GenAIGenerator:
    """openvino-genai's LLMPipeline for :meth:`generate`; the plain IR for :meth:`logits` (the pipeline gives none),
    compiled on the first call so timing runs hold one copy of the weights."""

    runtime = "openvino-genai"

    def __init__(self, artifact: Artifact, info: LLMInfo, threads: int | None):
        with no_telemetry():
            import openvino_genai

        self.info = info
        self.threads = threads
        self.runtime_version = openvino_genai.get_version()
        self.settings = _settings(self.runtime, threads)
        self._artifact = artifact
        self._plain: OpenVINOGenerator | None = None
        scheduler = openvino_genai.SchedulerConfig()
        scheduler.enable_prefix_caching = False
        self.settings.update(enable_prefix_caching=False,
                             clock_source="openvino-genai raw_metrics (m_times_to_first_token, m_durations)")
        try:
            self._pipe = openvino_genai.LLMPipeline(str(artifact.model_path.parent), "CPU", scheduler_config=scheduler,
                                                    **self.settings["config"])
        except Exception as exc:  # the pipeline raises RuntimeError for files it cannot use
            raise RuntimeFailure(f"openvino-genai could not load {artifact.model_path.parent}: {exc}") from exc

    def logits(self, prompt_ids: Sequence[int], steps: int) -> np.ndarray:
        if self._plain is None:
            self._plain = OpenVINOGenerator(self._artifact, self.info, self.threads)
        return self._plain.logits(prompt_ids, steps)

    def generate(self, prompt_ids: Sequence[int], max_new_tokens: int, *, stop_on_eos: bool = True) -> Generation:
        import openvino as ov
        import openvino_genai

        ids = _prompt_array(prompt_ids, self.info)
        check_prompt(self.info, ids.shape[1], max_new_tokens)
        config = openvino_genai.GenerationConfig()
        config.do_sample = False
        config.max_new_tokens = max_new_tokens
        if self.info.eos_token_id is not None:
            config.eos_token_id = self.info.eos_token_id
        if not stop_on_eos:
            config.ignore_eos = True
            config.min_new_tokens = max_new_tokens
        result = self._pipe.generate(ov.Tensor(ids), config)
        made = [int(t) for t in result.tokens[0]]
        raw = result.perf_metrics.raw_metrics  # microseconds, timed inside the pipeline's C++ loop
        first = list(raw.m_times_to_first_token)
        out = Generation(prompt_len=ids.shape[1], tokens=made, ttft_ms=first[0] / 1e3 if first else 0.0,
                         step_ms=[float(us) / 1e3 for us in raw.m_durations])
        out.stopped = "eos" if stop_on_eos and made and made[-1] == self.info.eos_token_id else "length"
        return out

    def close(self) -> None:
        if self._plain is not None:
            self._plain.close()
        self._pipe = None


def compile_stateful(path: Any, config: dict[str, Any]) -> Any:
    """Read and compile the IR at ``path`` on the CPU plugin.

    Raises:
        InputError: the IR cannot be read (a corrupt or truncated .xml/.bin).
        RuntimeFailure: a readable IR the plugin could not compile.
    """
    with no_telemetry():
        import openvino as ov

    core = ov.Core()
    try:
        model = core.read_model(str(path))
    except Exception as exc:  # openvino raises RuntimeError subclasses for unreadable files
        raise InputError(f"{path} is not a readable OpenVINO IR ({str(exc).strip().splitlines()[0][:200]}); "
                         "re-export the artifact.") from None
    missing = {"input_ids", "attention_mask", "position_ids", "beam_idx"} - {n for p in model.inputs for n in p.get_names()}
    if missing:
        raise InputError(f"{path} is not a stateful LLM IR: it has no input {', '.join(sorted(missing))}. Export it with "
                         "edgestill's OpenVINO LLM export (optimum-intel, stateful).")
    try:
        return core.compile_model(model, "CPU", config)
    except Exception as exc:
        raise RuntimeFailure(f"OpenVINO could not compile {path} for CPU: {exc}") from exc


def _prompt_array(prompt_ids: Sequence[int], info: LLMInfo) -> np.ndarray:
    """The prompt as int64 [1, L], refusing ids outside the vocabulary (a runtime would read another row or crash)."""
    ids = np.asarray(list(prompt_ids), dtype=np.int64).reshape(1, -1)
    if ids.size and (ids.min() < 0 or ids.max() >= info.vocab_size):
        raise InputError(f"prompt token ids must be in 0..{info.vocab_size - 1} (the model's vocabulary); got "
                         f"{int(ids.min())}..{int(ids.max())}.")
    return ids
