"""ONNX export of a causal language model with a KV cache: onnxruntime-genai's model builder, run as a subprocess.

The builder (``python -m onnxruntime_genai.models.builder -i HF_DIR -o OUT -p fp32|int8|int4 -e cpu``) writes a
decoder with ``GroupQueryAttention`` and past/present key-value inputs and outputs, its ``genai_config.json`` and the
tokenizer files: what onnxruntime-genai runs as is, and what plain onnxruntime runs step by step
(:mod:`edgestill.runtimes.llm_onnx`). Weight-only int8 and int4 are its MatMulNBits quantization (round-to-nearest,
symmetric, per block of :data:`BLOCK_SIZE` input channels, every MatMul including the LM head; the embedding stays
float).

The builder of onnxruntime-genai 0.18 is written against transformers 5: on the pinned transformers 4.57 it fails
twice before reading a weight, and both are bridged here rather than changing the pins (optimum-onnx needs
transformers < 4.58):

* ``builders/base.py`` imports ``Qwen3_5ForConditionalGeneration`` and ``Qwen3_5MoeForConditionalGeneration`` at
  module level (used only for Qwen3.5 multimodal folders): :data:`_BUILDER_LAUNCHER` gives transformers placeholders
  that raise when used, then runs the builder's ``__main__``.
* it iterates ``config.rope_scaling``, which transformers 4.57 leaves ``None`` for the default RoPE (5.x always has
  ``rope_parameters``): the builder reads a staged copy of the folder whose ``config.json`` says
  ``rope_scaling: {"rope_type": "default"}``, what ``None`` means. The staged config also carries the requested
  context length (``max_position_embeddings``: the length of the file's RoPE tables and its ``context_length``).

fp16 is not made: the builder makes fp16 for GPU execution providers only (its own table: "FP32 CPU, ... INT8 CPU,
INT4 CPU").
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgestill.artifact import Artifact, Format, Precision, TensorSpec, sha256_file
from edgestill.errors import ConfigError, InputError, RuntimeFailure, UnsupportedError
from edgestill.export.base import dist_versions
from edgestill.outdir import fresh_work_dir, write_json_atomic
from edgestill.runtimes.generate import LLM_SOURCE_KEY, LLMInfo

ROUTE = "onnxruntime-genai builder"
BUILDER_PRECISIONS: dict[str, str] = {"fp32": "fp32", "int8-weight": "int8", "int4-weight": "int4"}
"""Artifact precision -> the builder's ``-p`` value."""
WEIGHT_BITS: dict[str, int] = {"fp32": 32, "int8-weight": 8, "int4-weight": 4}
BLOCK_SIZE = 32
"""Input channels per MatMulNBits scale (the builder's default). Smaller blocks track the weights more closely and
store more scales; 32 is what onnxruntime-genai ships its CPU int4 models with."""
ACCURACY_LEVEL = 4
"""MatMulNBits ``accuracy_level``: 4 lets the CPU kernel quantize activations to int8 per block and use integer dot
products (the fast path the decode speed-up comes from); 1 would compute in fp32 from dequantized weights."""
BUILDER_TIMEOUT_S = 3600
"""The builder reads the weights once and writes the file: seconds for the built-in models, minutes for a 1B model."""
MAX_CONFIG_BYTES = 1 << 20
Progress = Callable[..., None]  # progress(done, total, label)

_BUILDER_LAUNCHER = """\
import runpy, sys, transformers
class _NotInThisTransformers:
    def __init__(self, *args, **kwargs):
        raise ImportError("this transformers has no Qwen3.5 multimodal classes")
for _name in ("Qwen3_5ForConditionalGeneration", "Qwen3_5MoeForConditionalGeneration"):
    if not hasattr(transformers, _name):
        setattr(transformers, _name, _NotInThisTransformers)
sys.argv = ["onnxruntime_genai.models.builder", *sys.argv[1:]]
runpy.run_module("onnxruntime_genai.models.builder", run_name="__main__", alter_sys=True)
"""
"""Runs the builder's ``__main__`` after giving transformers 4.57 the two class names the builder imports and never
uses for a Llama-style folder (see the module docstring)."""


def export_llm_onnx(
    hf_dir: str | os.PathLike[str], work_dir: str | os.PathLike[str], name: str, precision: str, *,
    context_length: int | None = None, progress: Progress | None = None,
) -> Artifact:
    """Build ``work_dir/name/`` (model.onnx, model.onnx.data, genai_config.json, tokenizer files) from a local Hugging
    Face causal-LM folder; return its unvalidated Artifact (no manifest written: the orchestrator validates first).

    Args:
        hf_dir: the folder ``save_pretrained`` wrote (config.json with a ``*ForCausalLM`` architecture, safetensors
            weights, tokenizer.json).
        work_dir: where ``name/`` and the builder's log ``name.builder.log`` go (created when missing).
        name: the artifact's name (a plain file name).
        precision: fp32, int8-weight or int4-weight.
        context_length: the most tokens (prompt + generated) the file holds; at most the model's
            ``max_position_embeddings``, which is the default.
        progress: called as ``progress(done, total, label)`` before and after the build.

    Raises:
        UnsupportedError: a precision the builder does not make on CPU (fp16, int8-static, ...); an architecture or
            RoPE kind the builder has no support for (its message).
        ConfigError: a context length out of range.
        InputError: ``hf_dir`` is not a local causal-LM folder, or ``name`` already exists in ``work_dir``.
        RuntimeFailure: the builder failed otherwise (its log is kept and named).
    """
    hf = Path(hf_dir)
    config = _read_causal_lm_config(hf)
    builder_precision = _builder_precision(precision)
    context = _context_length(config, context_length, hf)
    _check_head_size(config, hf)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    out = work / name
    if out.exists() or out.is_symlink():
        raise InputError(f"{out} already exists; export each artifact into a fresh folder, or remove it first.")
    log = work / f"{name}.builder.log"
    report = progress or (lambda *_: None)
    report(0, 1, f"onnx {precision}: onnxruntime-genai builder")
    scratch = fresh_work_dir(work, f".{name}-builder")
    try:
        staged = _stage_folder(hf, config, context, scratch / "hf")
        _run_builder(hf, staged, out, builder_precision, scratch / "cache", log)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    art = _artifact(hf, work, name, Precision(precision).value)
    report(1, 1, f"onnx {precision}: built")
    return art


def _read_causal_lm_config(hf: Path) -> dict[str, Any]:
    """``hf/config.json`` as a dict, refusing a folder the builder cannot read as a local causal LM."""
    if not hf.is_dir():
        raise InputError(f"{hf} is not a folder; pass a local Hugging Face causal-LM folder (what save_pretrained "
                         "writes: config.json, model.safetensors, tokenizer.json). Nothing is downloaded.")
    config_path = hf / "config.json"
    if not config_path.is_file() or config_path.stat().st_size > MAX_CONFIG_BYTES:
        raise InputError(f"{hf} has no config.json (or one over {MAX_CONFIG_BYTES} bytes); a causal-LM folder holds "
                         "the config.json that save_pretrained writes.")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{config_path} is not a JSON config ({exc}); write it again with save_pretrained.") from None
    architectures = config.get("architectures") if isinstance(config, dict) else None
    if not isinstance(architectures, list) or not any(str(a).endswith("ForCausalLM") for a in architectures):
        raise InputError(f"{config_path} names architectures {architectures!r}; the ONNX KV-cache export takes a causal "
                         "language model (LlamaForCausalLM or another *ForCausalLM).")
    if not (hf / "tokenizer.json").is_file():
        raise InputError(f"{hf} has no tokenizer.json; the exported folder carries the tokenizer, so save it there "
                         "(AutoTokenizer.from_pretrained(dir).save_pretrained(dir)).")
    if not any(hf.glob("*.safetensors")):
        raise InputError(f"{hf} has no *.safetensors weights; save the model with save_pretrained "
                         "(safe_serialization=True, the default).")
    return config


def _builder_precision(precision: str) -> str:
    if precision not in BUILDER_PRECISIONS:
        why = (" (the builder makes fp16 for GPU execution providers only; on CPU use fp32, or int8-weight/int4-weight "
               "for smaller files)") if precision == Precision.FP16 else ""
        raise UnsupportedError(f"the ONNX KV-cache export makes {', '.join(BUILDER_PRECISIONS)}, not {precision!r}{why}.")
    return BUILDER_PRECISIONS[precision]


ORT_HEAD_MULTIPLE = 16  # onnxruntime's CPU GroupQueryAttention kernel: "head_size shall be a multiple of 16"


def _check_head_size(config: dict[str, Any], hf: Path) -> None:
    """Refuse a head size onnxruntime's attention kernel cannot run, before a file is built that fails at run time."""
    heads, hidden = config.get("num_attention_heads"), config.get("hidden_size")
    head = config.get("head_dim") or (hidden // heads if isinstance(hidden, int) and isinstance(heads, int) and heads
                                       else None)
    if isinstance(head, int) and head % ORT_HEAD_MULTIPLE:
        raise UnsupportedError(f"{hf} has attention heads of size {head}; onnxruntime's CPU attention kernel "
                               f"(GroupQueryAttention) needs a multiple of {ORT_HEAD_MULTIPLE}. Use OpenVINO or TFLite "
                               "for this model, or a head size such as 16, 32 or 64 (hidden_size / num_attention_heads).")


def _context_length(config: dict[str, Any], requested: int | None, hf: Path) -> int:
    limit = config.get("max_position_embeddings")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 2:
        raise InputError(f"{hf}/config.json has no max_position_embeddings (got {limit!r}); the KV-cache file needs "
                         "the model's context length.")
    if requested is None:
        return limit
    if isinstance(requested, bool) or not isinstance(requested, int) or not 2 <= requested <= limit:
        raise ConfigError(f"context_length {requested!r} is out of range: the model at {hf} was made for at most "
                          f"{limit} positions (max_position_embeddings); pass a whole number in [2, {limit}].")
    return requested


def _stage_folder(hf: Path, config: dict[str, Any], context: int, staged: Path) -> Path:
    """A folder of links to ``hf``'s files whose config.json the builder can read on transformers 4.57."""
    staged.mkdir()
    for f in hf.iterdir():
        if f.name != "config.json" and f.is_file():
            os.symlink(f.resolve(), staged / f.name)
    patched = dict(config, max_position_embeddings=context)
    if patched.get("rope_scaling") is None:
        patched["rope_scaling"] = {"rope_type": "default"}
    write_json_atomic(staged / "config.json", patched)
    return staged


def _run_builder(source: Path, staged: Path, out: Path, precision: str, cache: Path, log: Path) -> None:
    """Run the builder offline on ``staged`` (the staged copy of ``source``) with an argument list (no shell); its
    output goes to ``log``."""
    args = [sys.executable, "-c", _BUILDER_LAUNCHER, "-i", str(staged), "-o", str(out), "-p", precision, "-e", "cpu",
            "-c", str(cache), "--extra_options", "hf_token=false", f"block_size={BLOCK_SIZE}",
            f"accuracy_level={ACCURACY_LEVEL}"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    with open(log, "w", encoding="utf-8") as f:
        try:
            done = subprocess.run(args, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=BUILDER_TIMEOUT_S,
                                  check=False)
        except subprocess.TimeoutExpired:
            shutil.rmtree(out, ignore_errors=True)
            raise RuntimeFailure(f"the onnxruntime-genai builder ran past {BUILDER_TIMEOUT_S} s; see {log}.") from None
    if done.returncode == 0 and (out / "model.onnx").is_file() and (out / "genai_config.json").is_file():
        return
    shutil.rmtree(out, ignore_errors=True)
    tail = _last_error(log).replace(str(staged), str(source))
    if "NotImplementedError" in tail or "not supported" in tail:
        raise UnsupportedError(f"the onnxruntime-genai builder cannot export {source}: {tail} Try another format "
                               f"(openvino, tflite); the builder's log is {log}.")
    raise RuntimeFailure(f"the onnxruntime-genai builder failed (exit {done.returncode}): {tail} See {log}.")


def _last_error(log: Path, limit: int = 400) -> str:
    """The last line of the builder's log that names an error (or its last line)."""
    lines = [ln.strip() for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln or "error" in ln]
    line = (errors or lines or ["no output"])[-1]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _artifact(hf: Path, work: Path, name: str, precision: str) -> Artifact:
    """The Artifact of the builder's folder ``work/name``: every file hashed, LLMInfo from its genai_config.json."""
    genai = json.loads((work / name / "genai_config.json").read_text(encoding="utf-8"))
    info = llm_info_from_genai_config(genai, tokenizer=f"{name}/tokenizer.json", weight_bits=WEIGHT_BITS[precision])
    art = Artifact(
        name=name, format=Format.ONNX.value, precision=precision, directory=work,
        model_file=f"{name}/{genai['model']['decoder']['filename']}",
        files={f"{name}/{f.name}": "" for f in sorted((work / name).iterdir()) if f.is_file()},
        inputs=[TensorSpec(name="input_ids", shape=("batch", "sequence"), dtype="int64", kind="ids",
                           high=info.vocab_size)],
        outputs=[TensorSpec(name="logits", shape=("batch", "sequence", info.vocab_size), dtype="float32")],
        parent_sha256=_weights_sha256(hf),
        source={"model": str(hf), LLM_SOURCE_KEY: info.to_dict(), "route": ROUTE,
                "transformers_bridge": "Qwen3.5 class placeholders; rope_scaling None -> {'rope_type': 'default'}"},
        quantization=_quantization(precision),
        versions=dist_versions("onnxruntime-genai", "onnxruntime", "onnx", "transformers", "torch"),
    )
    art.hash_files()
    return art


def llm_info_from_genai_config(genai: dict[str, Any], *, tokenizer: str | None, weight_bits: int | None) -> LLMInfo:
    """The :class:`LLMInfo` a genai_config.json describes (the first eos id where it lists several)."""
    model = genai["model"]
    decoder = model["decoder"]

    def first(value: Any) -> int | None:
        return value[0] if isinstance(value, list) and value else value if isinstance(value, int) else None

    return LLMInfo(
        vocab_size=int(model["vocab_size"]), context_length=int(model["context_length"]),
        eos_token_id=first(model.get("eos_token_id")), bos_token_id=first(model.get("bos_token_id")),
        pad_token_id=first(model.get("pad_token_id")), tokenizer=tokenizer, route=ROUTE, runtime="onnxruntime-genai",
        num_layers=int(decoder["num_hidden_layers"]), num_kv_heads=int(decoder["num_key_value_heads"]),
        head_dim=int(decoder["head_size"]), weight_bits=weight_bits,
    )


def _quantization(precision: str) -> dict[str, Any] | None:
    if precision == Precision.FP32:
        return None
    return {"method": "weight-only MatMulNBits", "tool": f"{ROUTE} (onnxruntime.quantization.matmul_nbits_quantizer)",
            "algorithm": "RTN", "symmetric": True, "bits": WEIGHT_BITS[precision], "block_size": BLOCK_SIZE,
            "accuracy_level": ACCURACY_LEVEL, "quantized": "every MatMul (attention, MLP, LM head)",
            "kept_float": "embedding, norms", "activations": "float32 I/O; int8 per block inside MatMulNBits"}


def _weights_sha256(hf: Path) -> str:
    """sha256 over the folder's safetensors files (name and bytes, in name order): the parent of every export."""
    h = hashlib.sha256()
    for f in sorted(hf.glob("*.safetensors")):
        h.update(f.name.encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()
