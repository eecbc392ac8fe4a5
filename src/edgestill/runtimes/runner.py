"""The process that times one model: ``python -m edgestill.runtimes.runner JOB.json``.

It needs numpy and the one runtime the job names, never torch (the output says ``torch_imported``).
It pins threads and CPU affinity, loads the artifact (timing init), runs the harness, scores accuracy
when eval data is given, reads peak RSS, and prints ONE JSON document on stdout: the Measurement dict
with its raw samples. Anything a library prints on stdout is sent to stderr so the JSON stays parseable.

Job file (JSON)::

    {"artifact": "out/student-onnx-fp32.manifest.json",   # required
     "runtime": null,                                      # default: the format's own runtime
     "options": {"threads": 1},                            # RuntimeOptions fields
     "bench": {"min_runs": 50, "min_seconds": 1.0},        # BenchOptions fields
     "inputs": "random", "seed": 0,                        # or a path to an .npy / .npz
     "eval_data": null, "metric": "top1", "eval_batch_size": 1,  # .npz with x, and y and/or teacher_logits
     "affinity": null,                                     # CPU ids, e.g. [0]
     "llm": {"prompt_tokens": 128, "gen_tokens": 128,      # a generative model's timing lengths and
             "repeats": 3, "warmup": 1}}                   # generations (see "Generative models" below)

Eval data scores the artifact on its own runtime: ``y`` (labels) gives ``accuracy``; ``teacher_logits`` (the
teacher's outputs on the same ``x``) gives ``teacher_top1_agreement`` and ``teacher_kl``, which need no labels;
``teacher_embeddings`` (an embedder teacher's) gives ``teacher_cosine`` and ``teacher_retrieval_agreement``. A
multi-input model (a text model) takes one array per input instead of ``x``, named like it (``input_ids``,
``attention_mask``, ``token_type_ids``).

Generative models (an artifact whose manifest has ``source.llm``) take another path: the artifact loads through
``edgestill.runtimes.generate.load_generator`` (init timed around it); greedy generation at fixed lengths (``llm``:
a seeded synthetic prompt of ``prompt_tokens`` ids, ``gen_tokens`` new ones without stopping at eos, after
``warmup`` generations, ``repeats`` timed ones at least and more until ``bench.min_seconds``, capped by
``bench.max_seconds``; lengths the context cannot hold shrink to the largest that fit, with the same ratio, and the
record says which were used) gives ``ttft_ms``, ``prefill_tokens_per_s``, ``decode_tokens_per_s``, and the latency
summary of every decode step (ms per token). Eval data is then the LLM eval NPZ (``prompt_ids``, ``prompt_len``,
``answer_ids``, ``marker_ids``, ``strip_ids``, ``max_new_tokens``, optionally ``teacher_answer_ids``), checked before
anything is loaded or timed; each prompt is decoded greedily and scored by ids: ``accuracy`` is ``exact_match`` of
final answers, ``teacher_top1_agreement`` the share of answers equal to the teacher's (over the prompts it answered).

Runtimes of your own: ``EDGESTILL_RUNTIME_PLUGINS=pkg.mod1,pkg.mod2`` names modules the runner imports before it
looks up the runtime; each registers its runtime with ``edgestill.runtimes.base.RUNTIMES``.

A bare ``.onnx``, ``.tflite`` or OpenVINO ``.xml`` without a manifest is benchmarked too: its I/O contract is read from
the file (``edgestill.runtimes.inspect.artifact_for``; symbolic dims, a dynamic batch included, get 1 in random
inputs), and the record says ``settings["manifest_present"] = False`` with the contract read as ``settings["manifest"]``.

Artifacts are untrusted: the manifest is validated by ``Artifact.load`` (types, enums, sizes, files confined to its
folder), and every file a runtime reads (the model file, an IR's ``.bin``, ONNX external data) is checked against the
manifest's sha256 before it is parsed and outside the timed init. There is no switch to skip the check: it costs one
read of each file, small next to loading and timing it; an artifact edited on purpose is re-exported (or its manifest
rewritten with ``Artifact.hash_files``).

Eval data and timing inputs are untrusted as well: each .npy header is read (``runtimes.base.npz_headers``) and its
declared size checked against the machine's memory and the bytes the file holds, pickled arrays refused, and the
shapes checked against the model before anything is timed; NaN/Inf, values the model's input dtype cannot hold and
labels outside the model's classes are refused before a score is computed, and an artifact that gives NaN/Inf
outputs fails its cell: no accuracy is ever computed from numbers that mean nothing.

On failure it prints ``{"kind": "failed", "error": ..., ...}`` and exits 2 (bad input: a malformed manifest, a file
missing or changed since export, a file its runtime cannot parse or whose shapes disagree with the manifest, bad
data; one paragraph, no traceback) or 3 (anything else; the traceback goes to stderr).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

JOB_KEYS = ("artifact", "runtime", "options", "bench", "inputs", "seed", "eval_data", "metric", "eval_batch_size", "affinity",
            "llm")
LLM_KEYS = ("prompt_tokens", "gen_tokens", "repeats", "warmup")
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _fail_input(message: str) -> None:
    from edgestill.errors import InputError

    raise InputError(message)


def read_job(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a job file; return it with defaults filled in.

    Raises:
        InputError: the file is missing, not JSON, lacks ``artifact`` or holds an unknown key.
    """
    p = Path(path)
    try:
        job = json.loads(p.read_text())
    except FileNotFoundError:
        _fail_input(f"job file {p} does not exist; pass the path of a JSON job (see 'python -m edgestill.runtimes.runner --help').")
    except (OSError, json.JSONDecodeError) as exc:
        _fail_input(f"job file {p} is not readable JSON ({exc}); write it with edgestill.benchmarks.bench.")
    if not isinstance(job, dict) or "artifact" not in job:
        _fail_input(f"job file {p} must be a JSON object with at least an 'artifact' manifest path.")
    unknown = sorted(set(job) - set(JOB_KEYS))
    if unknown:
        _fail_input(f"job file {p} has unknown key(s) {unknown}; valid keys: {', '.join(JOB_KEYS)}.")
    defaults = {"runtime": None, "options": {}, "bench": {}, "inputs": "random", "seed": 0, "eval_data": None,
                "metric": "top1", "eval_batch_size": 1, "affinity": None, "llm": {}}  # fmt: skip
    return {**defaults, **job}


def _runtime_options(d: dict[str, Any]) -> Any:
    from edgestill.runtimes.base import RuntimeOptions

    valid = [f.name for f in fields(RuntimeOptions)]
    unknown = sorted(set(d) - set(valid))
    if unknown:
        _fail_input(f"unknown runtime option(s) {unknown}; valid options: {', '.join(valid)}.")
    return RuntimeOptions(**d)


def _pin(affinity: list[int] | None) -> list[int] | None:
    """Pin this process to ``affinity`` (when given) and return the cores it may run on."""
    if not hasattr(os, "sched_setaffinity"):
        if affinity:
            _fail_input(f"CPU affinity {affinity} was asked for but this OS has no sched_setaffinity; drop 'affinity'.")
        return None
    if affinity:
        try:
            os.sched_setaffinity(0, {int(c) for c in affinity})
        except (OSError, ValueError, TypeError) as exc:
            usable = sorted(os.sched_getaffinity(0))
            _fail_input(f"cannot pin to CPUs {affinity} ({exc}); this process may use CPUs {usable}.")
    return sorted(os.sched_getaffinity(0))


def _fit(arr: Any, spec: Any) -> Any:
    """Take the first ``k`` samples of ``arr`` when the model's batch dim is fixed at ``k`` and ``arr`` has more."""
    first = spec.shape[0] if spec.shape else None
    if isinstance(first, int) and first > 0 and arr.ndim == len(spec.shape) and arr.shape[0] > first:
        return arr[:first]
    return arr


def text_seq_len(art: Any) -> int | None:
    """The sequence length a text artifact is timed at (its manifest's ``source.text.max_length``); None otherwise."""
    text = art.source.get("text") if isinstance(art.source, dict) else None
    length = text.get("max_length") if isinstance(text, dict) else None
    return length if isinstance(length, int) and not isinstance(length, bool) and length > 0 else None


def make_inputs(specs: list[Any], source: str, seed: int, *, seq_len: int | None = None) -> dict[str, Any]:
    """Inputs for timing: seeded random data of each input's shape, or from a file.

    Random inputs respect each spec's ``kind``: ids uniform in [0, high) (high = the vocabulary), an attention mask
    of ones then a zero tail (at least one 1), token types zeros, floats standard normal. A spec without a kind
    (a manifest from before kinds) keeps the old rule: floats standard normal, integers 0 or 1 (valid for any
    vocabulary). A symbolic batch dim is 1; a symbolic sequence dim (dim 1 of a token input) is ``seq_len`` when
    given (a text artifact's max_length), else 1.

    Raises:
        InputError: the file is missing or unreadable, or does not name every model input.
    """
    import numpy as np

    if source == "random":
        rng = np.random.default_rng(seed)
        out = {}
        for s in specs:
            shape, dtype = s.concrete_shape(1), np.dtype(s.user_dtype)
            if seq_len and len(s.shape) > 1 and not isinstance(s.shape[1], int):
                shape = (shape[0], seq_len, *shape[2:])
            kind = getattr(s, "kind", None)
            if kind == "ids":
                out[s.name] = rng.integers(0, s.high or 2, size=shape).astype(dtype)
            elif kind == "mask":
                steps = shape[1] if len(shape) > 1 else 1
                keep = np.arange(steps)[None, :] < rng.integers(1, steps + 1, size=shape[0])[:, None]
                out[s.name] = np.broadcast_to(keep.reshape(shape[:2] + (1,) * (len(shape) - 2)), shape).astype(dtype)
            elif kind == "type_ids":
                out[s.name] = np.zeros(shape, dtype)
            elif dtype.kind == "f":
                out[s.name] = rng.standard_normal(shape).astype(dtype)
            elif dtype.kind == "b":
                out[s.name] = rng.random(shape) < 0.5
            else:
                out[s.name] = rng.integers(0, 2, size=shape).astype(dtype)
        return out
    p = Path(source)
    if p.suffix not in (".npy", ".npz") or not p.exists():
        _fail_input(f"inputs must be 'random' or an existing .npy/.npz file; got {source!r}.")
    from edgestill.runtimes.base import read_npy, read_npz

    if p.suffix == ".npy":
        arrays = {specs[0].name: read_npy(p, what=f"cannot read inputs {p}")}
    else:
        arrays = read_npz(p, what=f"cannot read inputs {p}")
    names = [s.name for s in specs]
    odd = {k: str(a.dtype) for k, a in arrays.items() if a.dtype.kind not in "biuf"}
    if odd:
        _fail_input(f"inputs {p} hold arrays of non-numeric dtype {odd}; a model takes numbers. Save numeric arrays.")
    if p.suffix == ".npy":
        if len(specs) != 1:
            _fail_input(f"{p} holds one array but the model takes {names}; use an .npz keyed by input name.")
        return {specs[0].name: _fit(arrays[specs[0].name], specs[0])}
    if len(specs) == 1 and len(arrays) == 1:
        arrays = {specs[0].name: next(iter(arrays.values()))}
    missing = [n for n in names if n not in arrays]
    if missing:
        _fail_input(f"{p} has arrays {sorted(arrays)} but the model takes {names} (missing {missing}); key them by input name.")
    return {s.name: _fit(arrays[s.name], s) for s in specs}


# what eval data can score against: labels, the teacher's outputs (a classifier's logits, an embedder's embeddings)
EVAL_ARRAYS = ("y", "teacher_logits", "teacher_embeddings")


def eval_input_keys(heads: Any) -> list[str]:
    """The arrays of eval data that are model inputs: ``x`` (a single-input model), else every array not in
    :data:`EVAL_ARRAYS`, one per input of a multi-input model, named like it (``input_ids``, ``attention_mask``)."""
    return ["x"] if "x" in heads else [k for k in heads if k not in EVAL_ARRAYS]


def _load_eval(path: str, *, check_only: bool = False) -> dict[str, Any]:
    """Read ``x`` and whichever of ``y``/``teacher_logits`` are there, each checked (size, dtype, shape, NaN/Inf).

    With ``check_only`` only the headers are read and checked (nothing is allocated) and name → (shape, dtype) is
    returned, so bad eval data fails before anything is timed without adding to the runner's peak memory.

    Raises:
        InputError: the file is missing, not an .npz, holds pickles, declares sizes it cannot hold or the machine cannot
            allocate, lacks ``x`` or both of ``y``/``teacher_logits``, or its arrays cannot score a model (see
            :func:`_check_eval`).
    """
    from edgestill.runtimes.base import npz_headers, read_npz

    p = Path(path)
    if p.suffix != ".npz" and p.exists():
        _fail_input(f"eval data {p} is not an .npz; pass an .npz with arrays 'x' (inputs) and 'y' (labels) "
                    "and/or 'teacher_logits' (the teacher's outputs on x).")
    what = f"cannot read eval data {p}"
    heads = npz_headers(p, what=what)
    if not eval_input_keys(heads) or not any(k in heads for k in EVAL_ARRAYS):
        lacks = ("no array 'x' (the inputs; a multi-input model: one array per input, named like it)"
                 if not eval_input_keys(heads)
                 else "neither 'y' (labels) nor 'teacher_logits' nor 'teacher_embeddings'")
        _fail_input(f"eval data {p} has {lacks}; eval data needs 'x' (inputs) and 'y' (labels) and/or 'teacher_logits' "
                    "or 'teacher_embeddings' (the teacher's outputs on the same samples); a multi-input model takes one "
                    "array per input instead of 'x', named like it. Write it with numpy.savez(path, x=..., y=...).")
    heads = {k: heads[k] for k in (*eval_input_keys(heads), *EVAL_ARRAYS) if k in heads}
    _check_eval(p, heads)
    if check_only:
        return heads
    arrays = read_npz(p, what=what, keys=heads)
    _check_eval_values(p, arrays)
    return arrays


def _check_eval(p: Path, heads: dict[str, Any]) -> None:
    """Refuse eval arrays a model cannot be scored on, from their (shape, dtype): non-numeric or empty x, labels that
    are not whole numbers, lengths that differ."""
    keys = eval_input_keys(heads)
    x_shape, x_dtype = heads[keys[0]]
    n = x_shape[0] if x_shape else 0
    for key in keys:
        shape, dtype = heads[key]
        if dtype.kind not in "biuf" or len(shape) < 1 or shape[0] == 0 or shape[0] != n:
            _fail_input(f"eval data {p}: {key} has dtype {dtype} and shape {list(shape)}; every input array must be "
                        f"numeric [n, ...] with the same n > 0 samples ({keys[0]} has {n}), as the model's input. Save "
                        "it with numpy.savez(path, x=..., y=...).")
    if "y" in heads:
        y_shape, y_dtype = heads["y"]
        if y_dtype.kind not in "iu" or len(y_shape) != 1 or y_shape[0] != n:
            _fail_input(f"eval data {p}: y has dtype {y_dtype} and shape {list(y_shape)} for {n} samples of x; "
                        "labels are whole-number class indices [n], one per sample (e.g. y.astype(numpy.int64)).")
    for key in ("teacher_logits", "teacher_embeddings"):
        if key in heads:
            t_shape, t_dtype = heads[key]
            if t_dtype.kind != "f" or len(t_shape) != 2 or t_shape[0] != n:
                _fail_input(f"eval data {p}: {key} has dtype {t_dtype} and shape {list(t_shape)} for {n} samples of "
                            f"{keys[0]}; they are the teacher's float outputs [n, {'classes' if key == 'teacher_logits' else 'dim'}] "
                            "on the same samples.")


def _check_eval_values(p: Path, arrays: dict[str, Any]) -> None:
    """Refuse values no score can be trusted on: NaN/Inf in x or teacher_logits, negative labels."""
    import numpy as np

    for key in (*eval_input_keys(arrays), "teacher_logits", "teacher_embeddings"):
        a = arrays.get(key)
        if a is not None and a.dtype.kind == "f":
            bad = int(a.size - np.count_nonzero(np.isfinite(a)))
            if bad:
                rows = int((~np.isfinite(a.reshape(len(a), -1))).any(axis=1).sum())
                _fail_input(f"eval data {p}: {key} holds {bad} NaN or infinite value(s) in {rows} of its {len(a)} "
                            "samples; an accuracy on them would be meaningless. Remove or fix those samples.")
    y = arrays.get("y")
    if y is not None and y.size and int(y.min()) < 0:
        bad = np.flatnonzero(y < 0)
        _fail_input(f"eval data {p}: {bad.size} label(s) in y are negative (sample {int(bad[0])} has {int(y[bad[0]])}); "
                    "labels are class indices 0..classes-1. Fix the labels.")


def _check_eval_fits(p: Path, heads: dict[str, Any], specs: list[Any]) -> None:
    """Refuse eval samples whose shape the model does not take, or named arrays that are not its inputs (checked
    before timing, from the file's headers)."""
    if "x" not in heads:
        names, given = [s.name for s in specs], eval_input_keys(heads)
        if sorted(names) != sorted(given):
            _fail_input(f"eval data {p} holds input arrays {given} but the model takes {names}; save one array per "
                        "model input, named like it (e.g. numpy.savez(path, input_ids=..., attention_mask=..., y=...)).")
        for spec in specs:
            shape = heads[spec.name][0]
            if len(shape) != len(spec.shape) or any(isinstance(d, int) and d >= 0 and d != a
                                                    for d, a in zip(spec.shape[1:], shape[1:])):
                _fail_input(f"eval data {p}: {spec.name} has shape {list(shape)}, but the model's input takes "
                            f"{list(spec.shape)} (n samples first). Encode the texts at the model's sequence length.")
        return
    if len(specs) != 1:
        _fail_input(f"eval data {p} holds one array 'x' but the model takes {[s.name for s in specs]}; save one array "
                    "per model input, named like it (e.g. numpy.savez(path, input_ids=..., attention_mask=..., y=...)).")
    x_shape = heads["x"][0]
    spec = specs[0]
    sample = list(x_shape[1:])
    fits = len(x_shape) == len(spec.shape) and all(
        not isinstance(d, int) or d < 0 or d == a for d, a in zip(spec.shape[1:], sample))
    if not fits:
        _fail_input(f"eval data {p}: x has shape {list(x_shape)}, samples of shape {sample}, but the model's input "
                    f"{spec.name!r} takes {list(spec.shape)}. Pass samples shaped like the model's input, one per row "
                    "of x (the same preprocessing as in training).")


def _check_eval_ids(p: Path, arrays: dict[str, Any], specs: list[Any]) -> None:
    """Refuse named eval arrays a text model cannot take: token ids outside its vocabulary (0..high-1), a mask that is
    not 0/1, or floats for an integer input (a runtime would crash on them or silently read another token)."""
    import numpy as np

    for spec in specs:
        a, kind = arrays[spec.name], getattr(spec, "kind", None)
        if np.dtype(spec.user_dtype).kind in "iu" and a.dtype.kind not in "biu":
            _fail_input(f"eval data {p}: {spec.name} has dtype {a.dtype}, but the model's input takes integers "
                        f"({spec.user_dtype}); save the token arrays as integers.")
        high = getattr(spec, "high", None)
        if kind == "ids" and high and a.size and (int(a.min()) < 0 or int(a.max()) >= high):
            _fail_input(f"eval data {p}: {spec.name} holds ids from {int(a.min())} to {int(a.max())}, outside the model's "
                        f"vocabulary 0..{high - 1}; encode the texts with the artifact's own tokenizer.")
        if kind == "mask" and a.size and not np.isin(a, (0, 1)).all():
            _fail_input(f"eval data {p}: {spec.name} holds values other than 0 and 1; an attention mask is 1 for a "
                        "token and 0 for padding.")


def _check_eval_range(p: Path, x: Any, specs: list[Any]) -> None:
    """Refuse finite values that become infinite in the model's input dtype (1e39 is finite in float64, not in float32)."""
    import numpy as np

    target = np.dtype(specs[0].user_dtype) if len(specs) == 1 else None
    if target is None or target.kind != "f" or x.dtype.kind != "f" or x.dtype.itemsize <= target.itemsize:
        return
    limit = float(np.finfo(target).max)
    over = int(np.count_nonzero(np.abs(x) > limit))
    if over:
        _fail_input(f"eval data {p}: x holds {over} value(s) beyond ±{limit:.3g}, the largest the model's {target} input "
                    f"can hold (largest |x| {float(np.abs(x).max()):.3g}); they would become infinite. Scale the data "
                    "as in training.")


def _check_logits(artifact: str, logits: Any) -> None:
    """No accuracy from outputs that are not numbers: an artifact giving NaN/Inf on finite data failed, it did not score."""
    import numpy as np

    bad = ~np.isfinite(logits).all(axis=1)
    if bad.any():
        from edgestill.errors import RuntimeFailure

        raise RuntimeFailure(f"{artifact} gave NaN or infinite outputs on {int(bad.sum())} of {len(logits)} eval samples "
                             f"(the first is sample {int(np.flatnonzero(bad)[0])}), so no accuracy is recorded. The data "
                             "is finite: the artifact overflows (an fp16 or int8 range?) or is broken; validate it "
                             "against torch with `edgestill validate`.")


def _check_label_range(p: Path, y: Any, num_classes: int) -> None:
    """Refuse labels the model cannot predict (>= its number of outputs): its accuracy would count them as misses."""
    import numpy as np

    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if bad.size:
        _fail_input(f"eval data {p}: {bad.size} label(s) in y are outside the model's class range [0, {num_classes}) "
                    f"(sample {int(bad[0])} has {int(y[bad[0]])}; largest {int(y.max())}). The labels do not belong to "
                    "this model: fix them, or evaluate on data labelled for its classes.")


# Substrings of the runtimes' own messages for a file they could not parse (not for a valid file they cannot run).
_PARSE_ERRORS = ("protobuf parsing failed", "invalid_protobuf", "not a valid flatbuffer", "model provided has model identifier",
                 "could not open", "failed to parse", "xml parse", "pugixml", "incorrect ir", "unable to read the model",
                 "external data path")  # fmt: skip  (onnxruntime: external data missing, or a path leading out)


def not_a_model(path: Path, fmt: str, error: str = "") -> str | None:
    """Why the file at ``path`` is not a ``fmt`` model (its leading bytes, or a parse error of its runtime), else None.

    Used after a load failed, to tell bad input (exit 2) from a runtime that failed on a valid file (exit 3).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as exc:
        return f"cannot read it: {exc}"
    if not head:
        return "the file is empty"
    if fmt == "tflite" and head[4:8] != b"TFL3":
        return f"no TFL3 flatbuffer identifier at bytes 4..8 (found {head[4:8]!r})"
    if fmt == "openvino" and not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return f"an OpenVINO IR .xml starts with '<' (found {head[:16]!r})"
    for line in error.splitlines():
        line, lower = line.strip(), line.strip().lower()
        at = min((lower.find(m) for m in _PARSE_ERRORS if m in lower), default=-1)
        if at >= 0:  # the runtime's words: its opening and those around its marker (long paths come before it)
            start = max(150, at - 60)
            text = line if len(line) <= 450 else f"{line[:150]} ... {line[start:start + 300]}"
            return f"the runtime could not parse it: {text}"
    return None


def load_model(art: Any, options: Any, runtime_name: str) -> Any:
    """``runtimes.base.load``, with a file its runtime cannot parse reported as bad input.

    Raises:
        InputError: the file is not a model of its format (see :func:`not_a_model`), or the runtime's own check.
        Exception: the runtime failed on a valid file.
    """
    from edgestill.extras import missing_extra_error
    from edgestill.runtimes.base import load

    try:
        return load(art, options, runtime=runtime_name)
    except Exception as exc:
        missing = missing_extra_error(exc)  # the runtime's library is not installed: name the extra (exit 2)
        if missing is not None:
            raise missing from None
        why = not_a_model(art.model_path, art.format, str(exc))
        if why is None:
            raise
        fix = (f"Check that the manifest {art.manifest_path} points at the exported file and re-export it if the file "
               "was truncated or overwritten." if art.source.get("manifest") is not False else
               "Copy or export the file again: it is truncated, corrupt or not of that format.")
        _fail_input(f"{art.model_path} cannot be parsed as a {art.format} model by {runtime_name} ({why}). {fix}")


def _peak_rss_mb() -> float:
    """Peak resident memory of this process.

    On Linux this is VmHWM of /proc/self/status: ``ru_maxrss`` survives fork + exec, so a runner started by
    a 1 GB parent (torch loaded) would report the parent's size, not its own.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Execute a job (see the module docstring) in this process and return the Measurement dict with samples.

    Raises:
        InputError: a bad job value, artifact, input or eval file.
        EdgestillError, Exception: the runtime failed.
    """
    from edgestill.runtimes.harness import BenchOptions, time_session
    from edgestill.record import Measurement
    from edgestill.host import device_state, host_provenance
    from edgestill.runtimes.base import DEFAULT_RUNTIME, get_runtime
    from edgestill.runtimes.inspect import artifact_for

    options = _runtime_options(dict(job["options"] or {}))
    bench = BenchOptions.from_dict(dict(job["bench"] or {}))
    cores = _pin(job["affinity"])
    for var in THREAD_ENV:  # before the runtime library is imported (lazily, by load)
        os.environ[var] = str(options.threads)
    art = artifact_for(job["artifact"])  # a manifest, or a bare .onnx/.tflite/.xml whose contract is read from it
    art.verify_files()  # before a runtime parses them, and outside the init time
    from edgestill.runtimes.generate import llm_info

    info = llm_info(art)
    if info is not None:
        return run_llm_job(job, art, info, options, bench, cores)
    eval_heads: dict[str, Any] = {}
    if job["eval_data"]:  # bad eval data or metric fails before anything is timed
        from edgestill.runtimes.accuracy import METRICS

        METRICS.get(job["metric"])
        eval_heads = _load_eval(job["eval_data"], check_only=True)
    runtime_name = job["runtime"] or DEFAULT_RUNTIME[art.format]
    runtime = get_runtime(runtime_name)

    t0 = time.perf_counter_ns()
    session = load_model(art, options, runtime_name)
    init_ms = (time.perf_counter_ns() - t0) / 1e6
    if job["eval_data"]:
        _check_eval_fits(Path(job["eval_data"]), eval_heads, session.input_specs)

    inputs = make_inputs(session.input_specs, job["inputs"], int(job["seed"]), seq_len=text_seq_len(art))
    timing = time_session(session, inputs, bench)
    peak_rss_mb = _peak_rss_mb()  # before the eval data is read: the figure is the model's, not the data's
    accuracy = agreement = kl = embedding = None
    if job["eval_data"]:
        from edgestill.runtimes.accuracy import (
            accuracy_of,
            embedding_agreement,
            session_logits,
            session_outputs,
            teacher_agreement,
        )

        arrays = _load_eval(job["eval_data"])
        if "x" in arrays:
            _check_eval_range(Path(job["eval_data"]), arrays["x"], session.input_specs)
            logits = session_logits(session, arrays["x"], batch_size=int(job["eval_batch_size"]))
        else:  # one array per input (a text model's input_ids, attention_mask, ...)
            _check_eval_ids(Path(job["eval_data"]), arrays, session.input_specs)
            logits = session_outputs(session, {k: arrays[k] for k in eval_input_keys(arrays)},
                                     batch_size=int(job["eval_batch_size"]))
        _check_logits(art.name, logits)
        if "teacher_embeddings" in arrays:
            embedding = embedding_agreement(logits, arrays["teacher_embeddings"])
        if "y" in arrays:
            _check_label_range(Path(job["eval_data"]), arrays["y"], int(logits.shape[1]))
            accuracy = accuracy_of(logits, arrays["y"], metric=job["metric"])
        if "teacher_logits" in arrays:
            agreement, kl = teacher_agreement(logits, arrays["teacher_logits"])

    manifest_present = art.source.get("manifest") is not False
    provenance = host_provenance() | {"device_state": device_state()}  # governor, heat, throttling after the runs
    provenance.update(
        runtime=runtime_name,
        runtime_version=runtime.version(),
        threads=options.threads,
        affinity=cores,
        pinned=bool(job["affinity"]),
    )
    m = Measurement(
        artifact=art.name,
        format=art.format,
        precision=art.precision,
        runtime=runtime_name,
        threads=options.threads,
        init_ms=init_ms,
        first_ms=timing.first_ms,
        warmup_ms_mean=timing.warmup_ms_mean,
        latency=timing.latency,
        clock=timing.clock,
        wall_latency=timing.wall_latency if timing.clock != "wall" else None,
        peak_rss_mb=round(peak_rss_mb, 2),
        model_bytes=art.model_bytes or art.model_path.stat().st_size,
        accuracy=accuracy,
        teacher_top1_agreement=agreement,
        teacher_kl=kl,
        teacher_cosine=None if embedding is None else embedding.mean_cosine,
        teacher_retrieval_agreement=None if embedding is None else embedding.retrieval_agreement,
        retrieval_k=None if embedding is None else embedding.k,
        provenance=provenance,
        settings={
            "runtime_options": options.to_dict(),
            "session": dict(getattr(session, "settings", {}) or {}),
            # which accelerator ran, and whether it fell back to the CPU (a plugin runtime that does not say: None)
            "accelerator": (getattr(session, "settings", {}) or {}).get("accelerator"),
            "bench": bench.to_dict(),
            "stopped_by": timing.stopped_by,
            "steady_seconds": round(timing.steady_seconds, 4),
            "inputs": job["inputs"] if job["inputs"] != "random" else f"random (seed {job['seed']})",
            "thread_env": {v: os.environ[v] for v in THREAD_ENV},
            "manifest_present": manifest_present,
            # a bare file's contract as read from it (the store keeps it per artifact, like a manifest)
            **({} if manifest_present else {"manifest": art.to_dict()}),
        },
        samples_ms=timing.samples_ms,
        warnings=timing.warnings,
        stability=timing.stability,
    )
    return m.to_dict(with_samples=True)


def _llm_options(d: Any) -> dict[str, int]:
    """The job's ``llm`` block with defaults filled in.

    Raises:
        InputError: not an object, an unknown key, or a value that is not a whole number.
    """
    from edgestill.runtimes import generate as g

    if not isinstance(d, dict):
        _fail_input(f"job 'llm' must be an object with {', '.join(LLM_KEYS)}, got {d!r}.")
    unknown = sorted(set(d) - set(LLM_KEYS))
    if unknown:
        _fail_input(f"job 'llm' has unknown key(s) {unknown}; valid keys: {', '.join(LLM_KEYS)}.")
    out = {"prompt_tokens": g.DEFAULT_PROMPT_TOKENS, "gen_tokens": g.DEFAULT_GEN_TOKENS,
           "repeats": g.DEFAULT_GEN_REPEATS, "warmup": g.DEFAULT_GEN_WARMUP, **d}
    bad = {k: v for k, v in out.items() if isinstance(v, bool) or not isinstance(v, int)}
    if bad:
        _fail_input(f"job 'llm' values must be whole numbers, got {bad}.")
    return out


def run_llm_job(job: dict[str, Any], art: Any, info: Any, options: Any, bench: Any, cores: list[int] | None) -> dict[str, Any]:
    """:func:`run_job` for a generative artifact (see "Generative models" in the module docstring).

    Raises:
        InputError: a bad ``llm`` block, eval data or option (an accelerator other than the CPU, timing inputs from a
            file), a context too short to time, or a file its runtime cannot load.
        EdgestillError, Exception: the runtime failed.
    """
    from edgestill.extras import missing_extra_error
    from edgestill.host import device_state, host_provenance
    from edgestill.record import Accuracy, Measurement
    from edgestill.runtimes import generate as g
    from edgestill.stats import summarize

    llm = _llm_options(job["llm"])
    if options.accelerator != "cpu":
        _fail_input(f"a generative model runs on the CPU in this version; drop --accelerator {options.accelerator}.")
    if job["inputs"] != "random":
        _fail_input("a generative model is timed on a seeded synthetic prompt of llm.prompt_tokens ids; drop 'inputs' "
                    "(its eval data is the LLM eval NPZ given as eval_data).")
    eval_arrays = g.read_eval_arrays(job["eval_data"], info) if job["eval_data"] else None  # before anything is timed
    prompt_tokens, gen_tokens = g.timing_lengths(info, llm["prompt_tokens"], llm["gen_tokens"])
    prompt = g.synthetic_prompt(info, prompt_tokens, seed=int(job["seed"]))
    t0 = time.perf_counter_ns()
    try:
        gen = g.load_generator(art, threads=options.threads, runtime=job["runtime"])
    except Exception as exc:
        missing = missing_extra_error(exc)  # the runtime's library is not installed: name the extra (exit 2)
        if missing is not None:
            raise missing from None
        raise
    init_ms = (time.perf_counter_ns() - t0) / 1e6
    try:
        timing = g.time_generation(gen, prompt, gen_tokens=gen_tokens, warmup=llm["warmup"], repeats=llm["repeats"],
                                   min_seconds=bench.min_seconds, max_seconds=bench.max_seconds)
        scores = None
        if eval_arrays is not None:
            scores = g.score_generations(g.eval_generations(gen, eval_arrays), eval_arrays, eos_token_id=info.eos_token_id)
        peak_rss_mb = _peak_rss_mb()
    finally:
        gen.close()
    samples = timing["samples_ms"]
    stability = bench.check_stability(samples).to_dict()
    warnings = [] if stability.get("stable", True) else [
        "the per-token decode times were not stable (" + "; ".join(stability.get("reasons") or []) + "): the machine "
        "was busy or throttling; compare decode speeds only as interleaved ratios."]
    provenance = host_provenance() | {"device_state": device_state()}
    provenance.update(runtime=gen.runtime, runtime_version=gen.runtime_version, threads=options.threads,
                      affinity=cores, pinned=bool(job["affinity"]))
    m = Measurement(
        artifact=art.name, format=art.format, precision=art.precision, runtime=gen.runtime, threads=options.threads,
        init_ms=init_ms, first_ms=timing["first_ms"],
        warmup_ms_mean=sum(timing["warmup_ms"]) / len(timing["warmup_ms"]) if timing["warmup_ms"] else None,
        latency=summarize(samples), peak_rss_mb=round(peak_rss_mb, 2), model_bytes=art.model_bytes,
        ttft_ms=timing["ttft_ms"], prefill_tokens_per_s=timing["prefill_tokens_per_s"],
        decode_tokens_per_s=timing["decode_tokens_per_s"], prompt_tokens=prompt_tokens, generated_tokens=gen_tokens,
        accuracy=None if scores is None else Accuracy(metric="exact_match", value=scores["exact_match"], n=scores["n"]),
        teacher_top1_agreement=None if scores is None else scores["teacher_agreement"],
        provenance=provenance,
        settings={
            "runtime_options": options.to_dict(), "bench": bench.to_dict(), "accelerator": "cpu",
            "llm": {**llm, "prompt_tokens_used": prompt_tokens, "gen_tokens_used": gen_tokens,
                    "repeats_made": timing["repeats"], "context_length": info.context_length,
                    "teacher_answered": None if scores is None else scores["teacher_n"],
                    "ttft_samples_ms": timing["ttft_samples_ms"],
                    "decode_tokens_per_s_each": timing["decode_tokens_per_s_each"]},
            "steady_seconds": round(timing["timed_seconds"], 4),
            "inputs": f"synthetic prompt (seed {job['seed']})",
            "thread_env": {v: os.environ[v] for v in THREAD_ENV},
            "manifest_present": True,
            # what the generator set on its runtime that changes numbers (precision hint, KV-cache precision, ...)
            "generator": getattr(gen, "settings", None),
        },
        samples_ms=samples, warnings=warnings, stability=stability,
    )  # fmt: skip
    return m.to_dict(with_samples=True)


def serve_json(argv: list[str] | None, *, module: str, doc: str | None, work: Callable[[str, dict[str, Any]], dict[str, Any]]) -> int:
    """The body of a device-side entry point: run ``work(job_path, context)`` and print ONE JSON document on stdout.

    Anything a library prints on stdout goes to stderr so the JSON stays parseable. A failure becomes
    ``{"kind": "failed", "error": ..., "exit_code": ...}`` plus whatever ``work`` left in ``context`` (e.g. the job),
    with exit 2 for bad input and 3 otherwise (the traceback on stderr); every document says ``torch_imported``.
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        sys.stderr.write((doc or "") + f"\nusage: python -m {module} JOB.json\n")
        return 0 if args and args[0] in ("-h", "--help") else 2
    sys.stdout.flush()
    json_fd = os.dup(1)
    os.dup2(2, 1)  # libraries that print on stdout go to stderr; the JSON goes to the saved fd
    context: dict[str, Any] = {}
    try:
        out, code = work(args[0], context), 0
    except Exception as exc:  # noqa: BLE001 - every failure is reported as JSON
        from edgestill.errors import EdgestillError, InputError

        code = exc.exit_code if isinstance(exc, EdgestillError) else 3
        if not isinstance(exc, InputError):
            traceback.print_exc(file=sys.stderr)
        out = {"kind": "failed", "error": f"{type(exc).__name__}: {exc}", "exit_code": code, **context}
    out["torch_imported"] = "torch" in sys.modules
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(json_fd, (json.dumps(out) + "\n").encode())
    os.dup2(json_fd, 1)
    os.close(json_fd)
    return code


def _job(path: str, context: dict[str, Any]) -> dict[str, Any]:
    context["job"] = read_job(path)
    return run_job(context["job"])


def main(argv: list[str] | None = None) -> int:
    """Run the job file named on the command line; print one JSON document; return the exit code."""
    return serve_json(argv, module="edgestill.runtimes.runner", doc=__doc__, work=_job)


if __name__ == "__main__":
    sys.exit(main())
