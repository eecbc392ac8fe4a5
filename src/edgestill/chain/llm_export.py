"""Export a causal LM with a KV cache to every asked format x precision, validate each file against torch, publish.

One call, :func:`export_llm`, for the CLI (``edgestill export --model HF_CAUSAL_LM_DIR``), recipes and scripts:

1. the folder is checked and loaded once (:mod:`edgestill.models.llm`), the validation prompts made (seeded ids from
   the vocabulary, or the caller's, e.g. the built-in corpus's validation prompts) and torch's greedy trace of each
   computed once (:func:`~edgestill.models.llm.torch_logits_trace`, without a KV cache: an independent reference);
2. per format, fp32 first: the format's exporter writes ``NAME/`` into a fresh staging folder under ``out_dir``
   (:func:`edgestill.outdir.fresh_work_dir`), the file is loaded on its own runtime
   (:func:`~edgestill.runtimes.generate.load_generator`) and judged (:func:`~edgestill.export.llm_validate.
   validate_generator`; a weight-only file against the fp32 file of its format when that passed, else torch);
3. a passing cell's folder and then its manifest are moved to their final names in ``out_dir``; a failing one is
   kept as ``NAME.rejected/`` and ``NAME.manifest.json.rejected`` with its reasons in the manifest, never under its
   final name; a format that cannot make a precision is reported as ``unsupported`` and the other cells go on.

``out_dir`` follows the other commands' rules (:mod:`edgestill.outdir`): new, empty, or an earlier export's folder
(its entries of the same names replaced); another command's only with ``overwrite``. Nothing is written before every
input has been checked.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgestill.artifact import REJECTED_SUFFIX, Artifact, Precision
from edgestill.errors import (
    CheckFailed,
    ConfigError,
    EdgestillError,
    InputError,
    RuntimeFailure,
    UnknownNameError,
    UnsupportedError,
)
from edgestill.export.llm_validate import LLMBudgets, TraceReference, generator_trace, validate_generator

# format -> "module:function" of its exporter, imported only when that format is asked for
LLM_EXPORTERS: dict[str, str] = {
    "onnx": "edgestill.export.llm_onnx:export_llm_onnx",
    "openvino": "edgestill.export.llm_openvino:export_llm_openvino",
    "tflite": "edgestill.export.llm_tflite:export_llm_tflite",
}
LLM_PRECISIONS: tuple[str, ...] = (Precision.FP32.value, Precision.FP16.value, Precision.INT8_WEIGHT.value,
                                   Precision.INT4_WEIGHT.value)
DEFAULT_STEPS = 32  # decode steps validated per prompt (33 logits rows with the prefill's)
DEFAULT_PROMPTS = 8
DEFAULT_PROMPT_LENGTHS = (4, 24)  # seeded prompts: lengths drawn in this range (inclusive)
EXPORT_KIND = "export"  # the output folder's marker: an LLM export shares the export command's folders
Progress = Callable[..., None]  # progress(done, total, label)


@dataclass(kw_only=True)
class LLMCell:
    """One format x precision: what happened to it and where its files are."""

    format: str
    precision: str
    name: str
    status: str  # "passed", "failed" (validation), "unsupported" (the format cannot make it), "error" (a library failed)
    route: str | None = None
    model_bytes: int | None = None
    manifest: str | None = None  # the published manifest, or the rejected one
    reasons: list[str] = field(default_factory=list)
    validation: dict[str, Any] | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


@dataclass(kw_only=True)
class LLMExportResult:
    """Every cell of one :func:`export_llm` call, with what they were validated on."""

    model: str
    out_dir: Path
    prompts: list[list[int]]
    steps: int
    budgets: LLMBudgets
    cells: list[LLMCell] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.cells) and all(c.passed for c in self.cells)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": EXPORT_KIND, "task": "generate", "model": self.model, "out_dir": str(self.out_dir),
                "passed": self.passed, "prompts": len(self.prompts), "steps": self.steps,
                "budgets": self.budgets.to_dict(), "cells": [c.to_dict() for c in self.cells]}

    def failure(self) -> EdgestillError | None:
        """The error a strict caller exits with: CheckFailed (exit 1) when a file failed validation, RuntimeFailure
        (3) when a library failed and none failed a check, UnsupportedError (2) when the only misses are cells a
        format cannot make; None when every cell passed."""
        failed = [c for c in self.cells if not c.passed]
        if not failed:
            return None
        summary = "; ".join(f"{c.name}: {c.status} ({c.reasons[0] if c.reasons else 'no reason recorded'})"
                            for c in failed)
        statuses = {c.status for c in failed}
        if "failed" in statuses:
            return CheckFailed(f"{len(failed)} of {len(self.cells)} cells did not pass: {summary}. Rejected files are "
                               f"kept as *{REJECTED_SUFFIX} in {self.out_dir}.")
        if "error" in statuses:
            return RuntimeFailure(f"{len(failed)} of {len(self.cells)} cells failed in a conversion library or runtime: "
                                  f"{summary}.")
        return UnsupportedError(f"{len(failed)} of {len(self.cells)} cells cannot be made: {summary}. Drop those "
                                "format x precision pairs.")


def is_causal_lm_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder whose config.json names a ``*ForCausalLM`` architecture (read, nothing loaded)."""
    import json

    from edgestill.limits import read_small_text

    config = Path(path).expanduser() / "config.json"
    if not config.is_file():
        return False
    try:
        doc = json.loads(read_small_text(config, max_bytes=1 << 20, what="config.json"))
    except (InputError, ValueError):
        return False
    architectures = doc.get("architectures") if isinstance(doc, dict) else None
    return isinstance(architectures, list) and any(str(a).endswith("ForCausalLM") for a in architectures)


def default_llm_name(hf_dir: str | os.PathLike[str]) -> str:
    """An artifact name stem from the folder's name (letters, digits, '.', '_', '-')."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(hf_dir).expanduser().resolve().name).strip("-._")
    return stem or "llm"


def seeded_prompts(vocab_size: int, special: Sequence[int | None], *, n: int = DEFAULT_PROMPTS, seed: int = 0,
                   lengths: tuple[int, int] = DEFAULT_PROMPT_LENGTHS) -> list[list[int]]:
    """``n`` prompts of seeded random ids from the vocabulary, special tokens left out, lengths in ``lengths``."""
    rng = np.random.default_rng(seed)
    pool = np.setdiff1d(np.arange(vocab_size), [s for s in special if s is not None])
    if pool.size == 0:
        raise InputError(f"the vocabulary of {vocab_size} tokens has only special tokens; no prompt can be made.")
    return [rng.choice(pool, size=int(rng.integers(lengths[0], lengths[1] + 1))).tolist() for _ in range(n)]


def eval_prompts(path: str | os.PathLike[str], *, vocab_size: int, context_length: int, n: int) -> list[list[int]]:
    """The first ``n`` prompts of an LLM eval .npz (checked by :func:`edgestill.runtimes.generate.read_eval_arrays`).

    Raises:
        InputError: the file is not a valid LLM eval .npz for this vocabulary and context.
    """
    from edgestill.runtimes.generate import LLMInfo, read_eval_arrays

    info = LLMInfo(vocab_size=vocab_size, context_length=context_length, eos_token_id=None)
    arrays = read_eval_arrays(path, info)
    return [arrays["prompt_ids"][i, : int(arrays["prompt_len"][i])].tolist()
            for i in range(min(n, len(arrays["prompt_len"])))]


def _check_request(formats: Sequence[str], precisions: Sequence[str], steps: int, threads: int, n_prompts: int) -> None:
    if not formats:
        raise InputError(f"no format asked for; pass one or more of {', '.join(LLM_EXPORTERS)}.")
    for fmt in formats:
        if fmt not in LLM_EXPORTERS:
            raise UnknownNameError("format", fmt, LLM_EXPORTERS)
    if not precisions:
        raise InputError(f"no precision asked for; pass one or more of {', '.join(LLM_PRECISIONS)}.")
    for p in precisions:
        if p not in LLM_PRECISIONS:
            raise InputError(f"precision {p!r} is not made for a causal LM: a generative model is exported in "
                             f"{', '.join(LLM_PRECISIONS)} (weight-only int8/int4 quantize the weights and keep the "
                             "activations float; int8-static/int8-dynamic are for image and text classifiers).")
    for key, value in (("steps", steps), ("threads", threads), ("n_prompts", n_prompts)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be a whole number of at least 1, got {value!r}.")


def _check_prompts(prompts: Sequence[Sequence[int]], vocab: int, context: int, steps: int) -> list[list[int]]:
    out = []
    for k, p in enumerate(prompts):
        ids = [int(i) for i in p]
        if not ids:
            raise InputError(f"validation prompt {k} is empty; each prompt needs at least one token id.")
        outside = [i for i in ids if not 0 <= i < vocab]
        if outside:
            raise InputError(f"validation prompt {k} has token ids {outside[:5]} outside the vocabulary of {vocab}.")
        if len(ids) + steps + 1 > context:
            raise InputError(f"validation prompt {k} has {len(ids)} tokens; with {steps} decode steps it exceeds the "
                             f"model's context of {context} tokens. Shorten the prompt or validate fewer steps.")
        out.append(ids)
    if not out:
        raise InputError("no validation prompts; pass token id lists, or none for the seeded default.")
    return out


def _claim(out_dir: Path, *, overwrite: bool, inputs: list[tuple[str, Any]]) -> None:
    """Lock ``out_dir`` for this export: an earlier export's folder is added to, another is claimed (emptied only
    with ``overwrite``; see :func:`edgestill.outdir.claim_output_dir`)."""
    from edgestill.outdir import claim_output_dir, lock_output_dir, marker_kind

    if out_dir.is_dir() and marker_kind(out_dir) == EXPORT_KIND:
        lock_output_dir(out_dir)
        return
    claim_output_dir(out_dir, kind=EXPORT_KIND, overwrite=overwrite, inputs=inputs)


def _exporter(fmt: str) -> Callable[..., Artifact]:
    module, func = LLM_EXPORTERS[fmt].split(":")
    return getattr(importlib.import_module(module), func)


def _clear(out_dir: Path, entry: str, manifest: str) -> None:
    """Remove ``entry`` and its rejected twin from ``out_dir`` (a link is unlinked, never followed): only an artifact
    an earlier export wrote there, i.e. one whose manifest (or rejected manifest) is beside it.

    Raises:
        InputError: ``entry`` exists without such a manifest (not edgestill's: it is never deleted)."""
    for name, twin in ((entry, manifest), (entry + REJECTED_SUFFIX, manifest + REJECTED_SUFFIX)):
        p = out_dir / name
        if p.is_dir() and not p.is_symlink() and name != twin:
            _check_ours(p, out_dir / twin)
        elif p.exists() and name != twin and not (out_dir / twin).is_file():
            raise InputError(f"{p} exists but no edgestill manifest ({twin}) says an export wrote it, so it is not "
                             "replaced. Move it away, or export into another --out.")
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p)


def _check_ours(folder: Path, manifest: Path) -> None:
    """``folder`` holds only files ``manifest`` lists (an earlier export's artifact), else InputError: a file someone
    else put there would be deleted with it."""
    try:
        listed = set(json.loads(manifest.read_text(encoding="utf-8")).get("files") or {})
    except (OSError, ValueError, AttributeError):
        listed = None
    if listed is None:
        raise InputError(f"{folder} exists but no readable edgestill manifest ({manifest.name}) says an export wrote "
                         "it, so it is not replaced. Move it away, or export into another --out.")
    root = folder.parent
    extra = sorted(str(f.relative_to(root)) for f in folder.rglob("*") if not f.is_dir() and
                   str(f.relative_to(root)) not in listed)
    if extra:
        raise InputError(f"{folder} holds {len(extra)} file(s) its manifest does not list (first: {extra[0]}); "
                         "edgestill replaces only what it wrote. Move them away, or export into another --out.")


def _settle(art: Artifact, staging: Path, out_dir: Path, passed: bool) -> Path:
    """Publish a passing artifact (its folder, then its manifest) or keep a failing one as rejected; return its
    manifest's final path."""
    art.write_manifest()
    manifest = art.manifest_path.name
    for entry in (art.name, manifest):
        _clear(out_dir, entry, manifest)
    suffix = "" if passed else REJECTED_SUFFIX
    for entry in (art.name, manifest):  # the folder first: a manifest never names files that are not there yet
        os.replace(staging / entry, out_dir / (entry + suffix))
    return out_dir / (manifest + suffix)


def _keep_logs(staging: Path, out_dir: Path) -> None:
    """Move the converters' logs (``*.log`` a format's exporter left in its staging folder) into ``out_dir/logs``, so
    an error message that names one still points at a file."""
    logs = [p for p in staging.glob("*.log") if p.is_file() and not p.is_symlink()]
    if not logs:
        return
    folder = out_dir / "logs"
    if folder.is_symlink():
        folder.unlink()  # the link only, never what it points at
    folder.mkdir(exist_ok=True)
    for log in logs:
        os.replace(log, folder / log.name)


def _run_cell(hf_dir: Path, fmt: str, precision: str, name: str, *, out_dir: Path, reference: TraceReference,
              fp32_traces: dict[str, TraceReference], want_fp32_trace: bool, budgets: LLMBudgets, threads: int,
              context_length: int | None) -> LLMCell:
    from edgestill.outdir import fresh_work_dir
    from edgestill.runtimes.generate import llm_info, load_generator

    started = time.monotonic()
    cell = LLMCell(format=fmt, precision=precision, name=name, status="error")
    staging = fresh_work_dir(out_dir, f".llm-export-{name}")
    art: Artifact | None = None
    try:
        try:
            art = _exporter(fmt)(hf_dir, staging, name, precision, context_length=context_length)
        except (UnsupportedError, ConfigError) as exc:
            cell.status, cell.reasons = "unsupported", [str(exc)]
            return cell
        except EdgestillError as exc:
            cell.reasons = [str(exc)]
            return cell
        info = llm_info(art)
        cell.route = info.route if info else None
        cell.model_bytes = art.model_bytes
        gen = load_generator(art, threads=threads)
        try:
            cell.validation = validate_generator(gen, reference, precision=precision, budgets=budgets,
                                                 fp32_reference=fp32_traces.get(fmt))
            if cell.validation["passed"] and precision == Precision.FP32.value and want_fp32_trace:
                fp32_traces[fmt] = generator_trace(gen, reference.prompts, reference.steps, source=f"fp32 file {name}")
        finally:
            gen.close()
        art.validation = cell.validation
        cell.reasons = list(cell.validation["reasons"])
        cell.status = "passed" if cell.validation["passed"] else "failed"
        cell.manifest = str(_settle(art, staging, out_dir, cell.passed))
        return cell
    except Exception as exc:  # noqa: BLE001  the runtime could not load or run the file: this cell's outcome
        cell.status, cell.reasons = "error", [f"{type(exc).__name__}: {exc}"]
        if art is not None and (staging / art.name).is_dir():  # kept as rejected, for diagnosis
            art.validation = {"passed": False, "kind": "generative", "error": cell.reasons[0],
                              "reasons": cell.reasons, "failures": []}
            cell.manifest = str(_settle(art, staging, out_dir, passed=False))
        return cell
    finally:
        _keep_logs(staging, out_dir)
        shutil.rmtree(staging, ignore_errors=True)
        cell.seconds = round(time.monotonic() - started, 3)


def export_llm(hf_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, formats: Sequence[str],
               precisions: Sequence[str], name: str | None = None, prompts: Sequence[Sequence[int]] | None = None,
               eval_data: str | os.PathLike[str] | None = None, n_prompts: int = DEFAULT_PROMPTS,
               steps: int = DEFAULT_STEPS, threads: int = 1, budgets: LLMBudgets | None = None,
               context_length: int | None = None, overwrite: bool = False,
               progress: Progress | None = None) -> LLMExportResult:
    """Export a local causal-LM folder to each format x precision, validate every file against torch, publish.

    Args:
        hf_dir: a local Hugging Face ``*ForCausalLM`` folder (config.json, safetensors weights, tokenizer.json).
        out_dir: where the artifacts go (see the module docstring for the folder rules).
        formats: onnx, openvino, tflite.
        precisions: fp32, fp16, int8-weight, int4-weight (a format that cannot make one reports it unsupported).
        name: artifact name stem (default: the folder's name); each artifact is ``NAME-FORMAT-PRECISION``.
        prompts: validation prompts as token id lists.
        eval_data: else, an LLM eval .npz (:func:`edgestill.data.reasoning.eval_arrays`): its first ``n_prompts``
            prompts; with neither, ``n_prompts`` seeded ones.
        n_prompts: how many prompts are made or read.
        steps: decode steps validated per prompt.
        threads: threads of each runtime while validating.
        budgets: validation bounds (default :class:`~edgestill.export.llm_validate.LLMBudgets`).
        context_length: the context each file is made for (default the model's maximum).
        overwrite: replace an ``out_dir`` another edgestill command wrote.
        progress: called as ``progress(done, total, label)``.

    Returns:
        One :class:`LLMCell` per format x precision, whatever the others did. A strict caller raises
        :meth:`LLMExportResult.failure`.

    Raises:
        InputError: not a local causal-LM folder, an unknown format or precision, bad prompts or steps, or an
            ``out_dir`` that may not be written (nothing is written then).
    """
    from edgestill.models.llm import load_causal_lm, special_ids, torch_logits_trace

    _check_request(formats, precisions, steps, threads, n_prompts)
    if prompts is not None and eval_data is not None:
        raise InputError("pass validation prompts or an eval .npz, not both.")
    folder = Path(hf_dir).expanduser()
    out = Path(out_dir)
    stem = name or default_llm_name(folder)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", stem):
        raise InputError(f"artifact name {stem!r} must start with a letter or digit and hold only letters, digits, "
                         "'.', '_' and '-'.")
    model, tokenizer = load_causal_lm(folder)
    vocab, context = int(model.config.vocab_size), int(model.config.max_position_embeddings)
    if context_length is not None:
        context = min(context, int(context_length))
    if prompts is None and eval_data is not None:
        prompts = eval_prompts(eval_data, vocab_size=vocab, context_length=context, n=n_prompts)
    elif prompts is None:
        ids = special_ids(model, tokenizer)
        prompts = seeded_prompts(vocab, [ids.bos, ids.eos, ids.pad], n=n_prompts)
    chosen = _check_prompts(prompts, vocab, context, steps)
    _claim(out, overwrite=overwrite, inputs=[("--model", folder)])
    reference = TraceReference(prompts=chosen, logits=[torch_logits_trace(model, p, steps) for p in chosen],
                               source="torch")
    del model
    result = LLMExportResult(model=str(folder), out_dir=out, prompts=chosen, steps=steps,
                             budgets=budgets or LLMBudgets())
    order = sorted(dict.fromkeys(precisions), key=lambda p: p != Precision.FP32.value)  # fp32 first: the reference
    total = len(formats) * len(order)
    fp32_traces: dict[str, TraceReference] = {}
    want_fp32_trace = any(Precision(p).is_weight_only for p in order)
    for fmt in dict.fromkeys(formats):
        for precision in order:
            if progress:
                progress(len(result.cells), total, f"{fmt} {precision}")
            result.cells.append(_run_cell(folder, fmt, precision, f"{stem}-{fmt}-{precision}", out_dir=out,
                                          reference=reference, fp32_traces=fp32_traces,
                                          want_fp32_trace=want_fp32_trace, budgets=result.budgets, threads=threads,
                                          context_length=context_length))
    if progress:
        progress(total, total, "done")
    return result
