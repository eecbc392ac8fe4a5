"""OpenVINO export of a Hugging Face causal LM with a KV cache: optimum-intel's stateful IR, NNCF weight compression.

Route: ``optimum.exporters.openvino.main_export(task="text-generation-with-past", stateful=True)``. The IR keeps the
KV cache inside the model as state (ReadValue/Assign): its inputs are ``input_ids``, ``attention_mask``,
``position_ids`` and ``beam_idx``, its output ``logits``, and a request's ``reset_state()`` starts a new sequence. This
is the layout openvino-genai's ``LLMPipeline`` runs, so the same folder serves both runtimes
(:mod:`edgestill.runtimes.llm_openvino`). The tokenizer is converted to ``openvino_tokenizer.xml`` /
``openvino_detokenizer.xml`` by openvino-tokenizers when it can be (the built-in character-level WordLevel tokenizer
converts); the generator works on token ids and does not need them.

Precisions:

- ``fp32``: ``OVConfig(dtype="fp32")`` is passed explicitly. Without an ``ov_config`` optimum-intel compresses every
  model of >= 1B parameters to int8 on its own, and ``save_model`` would store fp16 weights by default.
- ``int8-weight``: ``nncf.compress_weights(mode=INT8_ASYM)`` on the fp32 IR: every MatMul and embedding weight per
  output channel, asymmetric uint8, activations float.
- ``int4-weight``: ``nncf.compress_weights(mode=INT4_ASYM, group_size=128, ratio=1.0)``: every linear layer of the
  decoder blocks in unsigned 4 bits with a scale and a zero point per group of 128 input channels (a smaller power of
  two where a layer is narrower, NNCF's ``ADJUST`` fallback); the embedding and the output projection stay 8-bit
  (NNCF's default backup mode, INT8_ASYM): they are the layers most sensitive to 4 bits. Asymmetric, not INT4_SYM:
  on the trained 2-layer hidden-128 Llama the greedy trace agreed with fp32 for 0.79 of the steps before the first
  divergence (40 corpus prompts x 32 steps) against 0.69 for INT4_SYM (0.74 at group 32), for 0.7% more bytes.
  Data-free: no AWQ / scale estimation (they need a calibration set).

Inference precision is a runtime setting, not the file's: the generator compiles with ``INFERENCE_PRECISION_HINT f32``
for every precision (the CPU plugin's default bf16 changes greedy tokens), recorded in ``quantization``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgestill.artifact import Artifact, Precision, TensorSpec, sha256_file
from edgestill.errors import ConfigError, InputError, RuntimeFailure, UnsupportedError
from edgestill.export.base import dist_versions
from edgestill.runtimes.generate import LLMInfo
from edgestill.runtimes.openvino import no_telemetry

ROUTE = "optimum-intel stateful"
MODEL_XML = "openvino_model.xml"
PRECISIONS: tuple[str, ...] = (Precision.FP32.value, Precision.INT8_WEIGHT.value, Precision.INT4_WEIGHT.value)
INT4_GROUP_SIZE = 128
"""Input channels per 4-bit scale: NNCF's and optimum-intel's default for int4 LLMs (64 costs ~1/8 more bytes)."""
INFERENCE_PRECISION_HINT = "f32"
_WEIGHT_TYPES = ("f32", "f16", "bf16", "u8", "i8", "u4", "i4")  # Constant element types counted as weights
Progress = Callable[..., None]  # progress(done, total, label)


def export_llm_openvino(hf_dir: str | os.PathLike[str], work_dir: str | os.PathLike[str], name: str, precision: str, *,
                        context_length: int | None = None, progress: Progress | None = None) -> Artifact:
    """Export a local causal-LM folder to a stateful OpenVINO IR in ``work_dir/name/``; return the unvalidated Artifact.

    The manifest is not written and nothing is validated: the orchestrator (``edgestill.chain.llm_export``) compares
    the file with torch first.

    Args:
        hf_dir: a local Hugging Face folder of a ``*ForCausalLM`` (config.json, model.safetensors, tokenizer.json).
        work_dir: a folder of the caller's; ``work_dir/name`` must not exist yet.
        name: the artifact's name (its sub-folder and manifest name).
        precision: fp32, int8-weight or int4-weight (see the module docstring for each method).
        context_length: the most tokens (prompt + generated) a prompt may use; default the model's
            ``max_position_embeddings``, and never more.
        progress: called as ``progress(done, total, label)``.

    Raises:
        UnsupportedError: a precision this route does not make (fp16, int8-static, ...).
        InputError: the folder is not a local causal LM, ``work_dir/name`` exists; ConfigError: a bad context_length.
        RuntimeFailure: optimum-intel or NNCF failed.
    """
    if precision not in PRECISIONS:
        raise UnsupportedError(f"OpenVINO LLM export makes {', '.join(PRECISIONS)}, not {precision!r}: a generative "
                               "model is exported in fp32 or with weight-only int8/int4 (NNCF weight compression); "
                               "pick one of those.")
    folder = Path(hf_dir).expanduser()
    config = _causal_lm_config(folder)
    context = _context_length(config, context_length, folder)
    target = Path(work_dir) / name
    if target.exists() or target.is_symlink():
        raise InputError(f"{target} already exists; the OpenVINO export writes a new folder there. Pass an empty work "
                         "folder (or another name).")
    steps = 2 if precision == Precision.FP32 else 3
    _report(progress, 0, steps, "optimum-intel stateful export")
    _stateful_export(folder, target)
    quantization = None
    if precision != Precision.FP32:
        _report(progress, 2, steps, f"NNCF weight compression ({precision})")
        quantization = _compress_weights(target / MODEL_XML, precision)
    _report(progress, steps - 1, steps, "hashing")
    art = _artifact(folder, target, name, precision, config, context, quantization)
    _report(progress, steps, steps, "done")
    return art


def _report(progress: Progress | None, done: int, total: int, label: str) -> None:
    if progress:
        progress(done, total, label)


def _causal_lm_config(folder: Path) -> dict[str, Any]:
    """config.json of a local causal-LM folder (what this exporter reads; the chain checks the folder in full)."""
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise InputError(f"{folder} is not a local Hugging Face model folder (no config.json). edgestill reads local "
                         "folders only and never downloads: save the model with save_pretrained(DIR) and pass DIR.")
    try:
        config = json.loads(cfg.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{cfg} is not valid JSON ({exc}); re-save the model with save_pretrained(DIR).") from None
    architectures = config.get("architectures") if isinstance(config, dict) else None
    if not architectures or not any(str(a).endswith("ForCausalLM") for a in architectures):
        raise InputError(f"{cfg} names {architectures or 'no architecture'}, not a causal LM (*ForCausalLM); the "
                         "OpenVINO LLM export takes generative decoder models only.")
    if _parent_sha256(folder) is None:  # transformers would fall back to a pickled pytorch_model.bin
        raise InputError(f"{folder} has no model.safetensors (or model.safetensors.index.json); the OpenVINO LLM "
                         "export reads safetensors weights only (a pickle could run code). Re-save the model with "
                         "save_pretrained(DIR, safe_serialization=True).")
    return config


def _context_length(config: dict[str, Any], asked: int | None, folder: Path) -> int:
    """The context the artifact promises: what was asked, within the model's position embeddings."""
    limit = int(config.get("max_position_embeddings") or 0)
    if asked is None:
        if limit < 1:
            raise ConfigError(f"{folder / 'config.json'} has no max_position_embeddings; pass context_length.")
        return limit
    if isinstance(asked, bool) or not isinstance(asked, int) or asked < 2 or (limit and asked > limit):
        raise ConfigError(f"context_length {asked!r} is not valid: it must be an integer from 2 to the model's "
                          f"max_position_embeddings ({limit or 'not set'}).")
    return asked


def _stateful_export(folder: Path, target: Path) -> None:
    """optimum-intel's stateful export of ``folder`` into ``target``, fp32 weights, tokenizer IRs where they convert."""
    try:
        with no_telemetry():
            from optimum.exporters.openvino import main_export
            from optimum.intel import OVConfig
    except ImportError as exc:
        raise InputError(f"optimum-intel is needed for the OpenVINO LLM export ({exc}); install the 'llm' extra "
                         "(pip install 'edgestill[llm]').") from None
    try:
        with no_telemetry():
            main_export(str(folder), output=str(target), task="text-generation-with-past", stateful=True,
                        local_files_only=True, trust_remote_code=False, library_name="transformers",
                        ov_config=OVConfig(dtype="fp32"), convert_tokenizer=True)
    except Exception as exc:  # optimum raises many types; all mean "this model did not export"
        shutil.rmtree(target, ignore_errors=True)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise RuntimeFailure(f"optimum-intel's stateful OpenVINO export of {folder} failed: "
                             f"{type(exc).__name__}: {first[:300]}") from exc
    if not (target / MODEL_XML).is_file():
        raise RuntimeFailure(f"optimum-intel's export of {folder} wrote no {MODEL_XML} in {target}.")


def _nncf_settings(precision: str) -> dict[str, Any]:
    """compress_weights arguments (as plain values, recorded in the manifest) for a weight-only precision."""
    if precision == Precision.INT8_WEIGHT:
        return {"mode": "int8_asym"}
    return {"mode": "int4_asym", "group_size": INT4_GROUP_SIZE, "ratio": 1.0, "backup_mode": "int8_asym",
            "group_size_fallback": "adjust"}


def _compress_weights(xml: Path, precision: str) -> dict[str, Any]:
    """Compress the IR's weights in place with NNCF; return the ``quantization`` record."""
    with no_telemetry():
        import nncf
        import openvino as ov
        from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode

    settings = _nncf_settings(precision)
    kwargs: dict[str, Any] = {"mode": nncf.CompressWeightsMode(settings["mode"])}
    if "group_size" in settings:
        kwargs.update(group_size=settings["group_size"], ratio=settings["ratio"],
                      backup_mode=nncf.BackupMode(settings["backup_mode"]),
                      advanced_parameters=AdvancedCompressionParameters(
                          group_size_fallback_mode=GroupSizeFallbackMode.ADJUST))
    tmp = xml.with_name("compressed.xml")
    try:
        with no_telemetry():
            model = nncf.compress_weights(ov.Core().read_model(str(xml)), **kwargs)
            ov.save_model(model, str(tmp), compress_to_fp16=False)
        weights = _weight_elements(model)
        del model
    except Exception as exc:  # NNCF raises many types; all mean "compression failed"
        raise RuntimeFailure(f"NNCF weight compression ({precision}) of {xml} failed: {type(exc).__name__}: {exc}") from exc
    os.replace(tmp.with_suffix(".bin"), xml.with_suffix(".bin"))
    os.replace(tmp, xml)
    return {"method": "nncf.compress_weights", **settings, "weights": "weight-only; activations float",
            "weight_elements": weights, "inference_precision_hint": INFERENCE_PRECISION_HINT,
            "tool": f"nncf {dist_versions('nncf')['nncf']}"}


def _weight_elements(model: Any) -> dict[str, int]:
    """Elements of the model's constants of two or more dims, by element type (``u8``, ``i4``, ``f32``, ...)."""
    counts: Counter[str] = Counter()
    for op in model.get_ops():
        if op.get_type_name() != "Constant":
            continue
        shape = list(op.get_output_shape(0))
        kind = op.get_element_type().get_type_name()
        if len(shape) >= 2 and kind in _WEIGHT_TYPES:
            n = 1
            for d in shape:
                n *= int(d)
            counts[kind] += n
    return dict(sorted(counts.items()))


def _token_id(*values: Any) -> int | None:
    """The first integer among ``values`` (a list's first item counts): generation_config.json before config.json."""
    for v in values:
        if isinstance(v, list) and v:
            v = v[0]
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return None


def _generation_config(folder: Path) -> dict[str, Any]:
    path = folder / "generation_config.json"
    try:
        d = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        d = {}
    return d if isinstance(d, dict) else {}


def _parent_sha256(folder: Path) -> str | None:
    for name in ("model.safetensors", "model.safetensors.index.json"):
        if (folder / name).is_file():
            return sha256_file(folder / name)
    return None


def _artifact(folder: Path, target: Path, name: str, precision: str, config: dict[str, Any], context: int,
              quantization: dict[str, Any] | None) -> Artifact:
    """The Artifact for the files in ``target`` (every file hashed; manifest not written)."""
    gen = _generation_config(folder)
    vocab = int(config["vocab_size"])
    heads = int(config.get("num_attention_heads") or 0)
    head_dim = config.get("head_dim") or (int(config["hidden_size"]) // heads if heads else None)
    tokenizer = target / "tokenizer.json"
    info = LLMInfo(
        vocab_size=vocab, context_length=context,
        eos_token_id=_token_id(gen.get("eos_token_id"), config.get("eos_token_id")),
        bos_token_id=_token_id(gen.get("bos_token_id"), config.get("bos_token_id")),
        pad_token_id=_token_id(gen.get("pad_token_id"), config.get("pad_token_id")),
        tokenizer=f"{name}/tokenizer.json" if tokenizer.is_file() else None,
        route=ROUTE, runtime="openvino", num_layers=config.get("num_hidden_layers"),
        num_kv_heads=config.get("num_key_value_heads") or config.get("num_attention_heads"), head_dim=head_dim,
        weight_bits={"fp32": 32, "int8-weight": 8, "int4-weight": 4}[precision],
    )
    root = target.parent
    art = Artifact(
        name=name, format="openvino", precision=precision, directory=root, model_file=f"{name}/{MODEL_XML}",
        files={p.relative_to(root).as_posix(): "" for p in sorted(target.rglob("*")) if p.is_file()},
        inputs=[TensorSpec(name="input_ids", shape=("batch", "sequence"), dtype="int64", kind="ids", high=vocab)],
        outputs=[TensorSpec(name="logits", shape=("batch", "sequence", vocab), dtype="float32")],
        parent_sha256=_parent_sha256(folder),
        source={"model": str(folder), "kind": "causal-lm", "architecture": config["architectures"][0],
                "llm": info.to_dict(), "stateful": True,
                "tokenizer_ir": (target / "openvino_tokenizer.xml").is_file()},
        quantization=quantization,
        versions=dist_versions("torch", "transformers", "optimum-intel", "openvino", "openvino-tokenizers", "nncf"),
    )
    art.hash_files()
    return art
