"""TFLite export of a Hugging Face Llama causal LM with an external KV cache: litert-torch's generative path.

Route: the Llama folder's ``config.json`` becomes a litert-torch ``ModelConfig`` (RMSNorm, gated SiLU MLP, grouped-query
attention, RoPE), ``model_builder.build_decoder_only_model`` re-authors the model and loads the folder's safetensors by
the Hugging Face tensor names, and litert-torch's converter writes one ``.tflite`` with the signatures

* ``prefill_<P>`` for each prefill length P in :func:`prefill_lengths`: ``tokens`` int32 [1, P], ``input_pos`` int32
  [P], the cache ``kv_cache_{k,v}_<layer>`` float32 [1, context, kv_heads, head_dim]; out ``logits`` float32
  [1, P, vocab] and the updated cache;
* ``decode``: the same with one token.

The cache travels in and out of every call (the runner carries it in numpy: :mod:`edgestill.runtimes.llm_litert`);
the causal mask is built inside the file from ``input_pos``, so a prompt shorter than P is right-padded and the pad
positions, later than every real one, are masked out and overwritten by decoding.

The weight-only precisions store the weights of every linear layer and the embedding in 8 or 4 bits and keep the
activations float32 between ops; each FULLY_CONNECTED quantizes its input on the fly inside the kernel (litert-torch's
dynamic-range recipe, ``full_dynamic_recipe``: int8 per output channel, int4 in blocks of 32; XNNPACK's qd8 kernels),
as onnxruntime's MatMulNBits does at accuracy level 4. litert-torch's strict weight-only recipe
(``full_weight_only_recipe``, int8 only; it has no int4 weight-only scheme) puts the int8 weights behind DEQUANTIZE
ops, which compute in float32 and gain no speed: on a 4-layer 512-wide Llama (vocab 2048, cache 256, 128/128 tokens,
1 thread; the fastest of 5 runs per step on a shared machine) it decoded at 421 tokens/s against fp32's 415,
dynamic-range int8's 1030 (2.5x) and int4's 1410 (3.4x), so the precisions use the dynamic-range recipe and
``quantization`` says so. fp16 stores the weights as float16 (``full_fp16_recipe``).

litert-torch 0.10's ``generative.layers.lora`` imports ``tensorflow.lite.python.schema_py_generated`` (TensorFlow is not
a dependency); :func:`_generative_modules` lends it ai-edge-litert's copy of the same flatbuffer schema for that one
import and takes the alias away again.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgestill.artifact import Artifact, Precision, TensorSpec, sha256_file
from edgestill.errors import ConfigError, InputError, UnsupportedError
from edgestill.export.base import conversion_error, dist_versions
from edgestill.limits import read_small_text
from edgestill.runtimes.generate import LLM_SOURCE_KEY, LLMInfo

if TYPE_CHECKING:
    import torch

ROUTE = "litert-torch generative (re-authored Llama, prefill/decode signatures, external KV cache)"
# tokens the cache holds when the caller names none (capped by max_position_embeddings): the cache is static, and every
# decode step attends over all of it and carries it in and out, so a model's full position range would be paid per token
DEFAULT_CONTEXT = 256
PREFILL_CHOICES = (32, 128)  # prefill signatures; a longer prompt is prefilled in chunks of the largest
MODEL_FILE = "model.tflite"
# files of the Hugging Face folder copied beside the model: the host tokenizes with them and reads the eos
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")
_ON_THE_FLY = "float32 between ops; each fully connected layer quantizes its input to int8 on the fly (dynamic range)"
QUANTIZATION: dict[str, dict[str, Any]] = {
    Precision.FP16: {"method": "fp16", "tool": "litert-torch full_fp16_recipe", "weights": "float16",
                     "activations": "float32"},
    Precision.INT8_WEIGHT: {"method": "int8 weights, dynamic range", "tool": "litert-torch full_dynamic_recipe",
                            "weights": "int8, per output channel", "activations": _ON_THE_FLY},
    Precision.INT4_WEIGHT: {"method": "int4 weights, dynamic range", "tool": "litert-torch full_dynamic_recipe",
                            "weights": "int4, blocks of 32", "activations": _ON_THE_FLY},
}
PRECISIONS = (Precision.FP32, *QUANTIZATION)
WEIGHT_BITS = {Precision.FP32: 32, Precision.FP16: 16, Precision.INT8_WEIGHT: 8, Precision.INT4_WEIGHT: 4}
_TF_SCHEMA = "tensorflow.lite.python.schema_py_generated"
SIZE_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")

Progress = Callable[[int, int, str], None]  # progress(done, total, label)


def _generative_modules() -> types.SimpleNamespace:
    """litert-torch's generative modules, imported with the temporary schema alias (see the module docstring)."""
    import litert_torch  # noqa: F401  (loads torch._dynamo first: it inspects module specs of what is imported)

    if "litert_torch.generative.layers.lora" not in sys.modules:
        from ai_edge_litert import schema_py_generated

        lent = {name: types.ModuleType(name) for name in ("tensorflow", "tensorflow.lite", "tensorflow.lite.python")}
        lent["tensorflow.lite.python"].schema_py_generated = schema_py_generated  # type: ignore[attr-defined]
        lent[_TF_SCHEMA] = schema_py_generated  # type: ignore[assignment]
        taken = [name for name in lent if name not in sys.modules]
        sys.modules.update({name: lent[name] for name in taken})
        try:
            import litert_torch.generative.layers.lora  # noqa: F401
        finally:
            for name in taken:
                sys.modules.pop(name, None)
    import litert_torch.generative.layers.model_config as cfg
    from litert_torch._convert import interface as converter
    from litert_torch.generative.layers import kv_cache
    from litert_torch.generative.quantize import quant_attrs, quant_recipes
    from litert_torch.generative.utilities import converter as gen_converter
    from litert_torch.generative.utilities import export_config, model_builder

    return types.SimpleNamespace(cfg=cfg, converter=converter, kv_cache=kv_cache, quant_attrs=quant_attrs,
                                 quant_recipes=quant_recipes, gen_converter=gen_converter,
                                 export_config=export_config, model_builder=model_builder)


def read_llama_config(hf_dir: Path) -> dict[str, Any]:
    """The folder's config.json, checked to be a Llama causal LM this route re-authors exactly.

    Raises:
        InputError: no folder, no config.json, or not JSON; UnsupportedError: another family or a Llama variant the
            re-authored model would compute differently (rope scaling, biases, another activation).
    """
    path = hf_dir / "config.json"
    if not path.is_file():
        raise InputError(f"{hf_dir} is not a Hugging Face model folder (no config.json); pass the folder written by "
                         "model.save_pretrained(DIR) with its tokenizer.")
    try:
        config = json.loads(read_small_text(path, max_bytes=1 << 20, what="config.json"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); re-save the model with save_pretrained.") from None
    if not isinstance(config, dict) or config.get("model_type") != "llama":
        found = config.get("model_type") if isinstance(config, dict) else None
        raise UnsupportedError(f"TFLite export of a generative model re-authors Llama (model_type 'llama'); {path} "
                               f"has model_type {found!r}. Export it to onnx or openvino, or convert it to a Llama.")
    differences = {
        "rope_scaling": (config.get("rope_scaling"), None),
        "attention_bias": (config.get("attention_bias", False), False),
        "mlp_bias": (config.get("mlp_bias", False), False),
        "hidden_act": (config.get("hidden_act", "silu"), "silu"),
    }
    bad = {k: v for k, (v, want) in differences.items() if v != want}
    if bad:
        raise UnsupportedError(f"TFLite export re-authors a plain Llama (no rope scaling, no biases, SiLU); {path} has "
                               f"{bad}, which the re-authored model would not compute. Export it to onnx or openvino.")
    sizes = {k: config.get(k) for k in SIZE_KEYS}
    wrong = {k: v for k, v in sizes.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1}
    if wrong:
        raise InputError(f"{path} gives {wrong}; a Llama config has positive integers for {', '.join(SIZE_KEYS)}. "
                         "Re-save the model with save_pretrained.")
    return config


def resolve_context(config: dict[str, Any], context_length: int | None) -> int:
    """The cache length: ``context_length`` or :data:`DEFAULT_CONTEXT`, at most max_position_embeddings."""
    most = int(config.get("max_position_embeddings", DEFAULT_CONTEXT))
    if context_length is None:
        return min(DEFAULT_CONTEXT, most)
    if isinstance(context_length, bool) or not isinstance(context_length, int) or not 2 <= context_length <= most:
        raise ConfigError(f"context_length {context_length!r} is not a number of tokens from 2 to the model's "
                         f"max_position_embeddings ({most}); pass one in that range.")
    return context_length


def prefill_lengths(context: int) -> list[int]:
    """The prefill signatures' lengths: :data:`PREFILL_CHOICES` that fit the context, or the context itself."""
    return sorted({min(p, context) for p in PREFILL_CHOICES})


def model_config(config: dict[str, Any], context: int, gen: types.SimpleNamespace) -> Any:
    """litert-torch's ModelConfig of the Llama ``config`` with a ``context``-token cache."""
    cfg = gen.cfg
    heads = int(config["num_attention_heads"])
    head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    norm = cfg.NormalizationConfig(type=cfg.NormalizationType.RMS_NORM, epsilon=float(config.get("rms_norm_eps", 1e-6)))
    attention = cfg.AttentionConfig(num_heads=heads, head_dim=head_dim,
                                    num_query_groups=int(config.get("num_key_value_heads") or heads),
                                    rotary_base=float(config.get("rope_theta", 10000.0)), rotary_percentage=1.0)
    feed_forward = cfg.FeedForwardConfig(type=cfg.FeedForwardType.GATED,
                                         activation=cfg.ActivationConfig(cfg.ActivationType.SILU),
                                         intermediate_size=int(config["intermediate_size"]))
    block = cfg.TransformerBlockConfig(attn_config=attention, ff_config=feed_forward, pre_attention_norm_config=norm,
                                       post_attention_norm_config=norm)
    return cfg.ModelConfig(vocab_size=int(config["vocab_size"]), num_layers=int(config["num_hidden_layers"]),
                           max_seq_len=context, embedding_dim=int(config["hidden_size"]), block_configs=block,
                           final_norm_config=norm,
                           lm_head_share_weight_with_embedding=bool(config.get("tie_word_embeddings", False)))


def build_model(hf_dir: Path, mcfg: Any, gen: types.SimpleNamespace) -> torch.nn.Module:
    """The re-authored model with the folder's weights (every tensor must map: the loader is strict)."""
    names = (gen.model_builder.TENSOR_NAMES if mcfg.lm_head_share_weight_with_embedding
             else gen.model_builder.TENSOR_NAMES_WITH_SEPARATE_LM_HEAD)
    try:
        return gen.model_builder.build_decoder_only_model(str(hf_dir), mcfg, names, mask_cache_size=mcfg.max_seq_len)
    except (KeyError, ValueError, RuntimeError, FileNotFoundError) as exc:
        raise InputError(f"the weights of {hf_dir} do not load into a Llama of its config.json ({exc}); pass a folder "
                         "saved by LlamaForCausalLM.save_pretrained with model.safetensors.") from None


def quant_config(precision: Precision, mcfg: Any, gen: types.SimpleNamespace) -> Any:
    """litert-torch's recipe for ``precision`` (None for fp32; see the module docstring for why dynamic range)."""
    recipes, attrs = gen.quant_recipes, gen.quant_attrs
    if precision == Precision.FP16:
        return recipes.full_fp16_recipe(mcfg=mcfg)
    if precision == Precision.INT8_WEIGHT:
        return recipes.full_dynamic_recipe(mcfg=mcfg)
    if precision == Precision.INT4_WEIGHT:
        return recipes.full_dynamic_recipe(mcfg=mcfg, weight_dtype=attrs.Dtype.INT4,
                                           granularity=attrs.Granularity.BLOCKWISE_32)
    return None


def write_tflite(model: torch.nn.Module, mcfg: Any, path: Path, precision: Precision,
                 gen: types.SimpleNamespace) -> None:
    """Convert ``model`` with the prefill and decode signatures (logits on prefill too) and write ``path``."""
    import torch

    config = gen.export_config.ExportConfig(output_logits_on_prefill=True)
    module = gen.gen_converter.ExportableModule(model, export_config=config).eval()
    converter = gen.converter.Converter()
    context = mcfg.max_seq_len
    for length, signature in [*((p, f"prefill_{p}") for p in prefill_lengths(context)), (1, "decode")]:
        converter.add_signature(signature, module, sample_kwargs={
            "tokens": torch.zeros((1, length), dtype=torch.int32),
            "input_pos": torch.arange(length, dtype=torch.int32),
            "kv_cache": gen.kv_cache.KVCache.from_model_config(context, mcfg),
        })
    try:  # litert-torch and the quantizer print their progress to stdout, which is the CLI's (JSON) output
        with contextlib.redirect_stdout(sys.stderr):
            converter.convert(quant_config=quant_config(precision, mcfg, gen)).export(str(path))
    except Exception as exc:  # the converter raises many types; all mean "this model did not convert"
        raise conversion_error(exc, "tflite", model) from exc


def _check_precision(precision: str) -> Precision:
    if precision not in [p.value for p in PRECISIONS]:
        raise UnsupportedError(f"TFLite export of a generative model makes {', '.join(PRECISIONS)}, not {precision!r}; "
                               "pick one of them.")
    return Precision(precision)


def _token_id(configs: list[dict[str, Any]], key: str) -> int | None:
    """The first id ``key`` names in ``configs`` (generation_config.json before config.json)."""
    for config in configs:
        value = config.get(key)
        if isinstance(value, list):  # generation configs may list several eos ids; the first is the one emitted
            value = value[0] if value else None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def export_llm_tflite(hf_dir: str | Path, work_dir: str | Path, name: str, precision: str, *,
                      context_length: int | None = None, progress: Progress | None = None) -> Artifact:
    """Write ``work_dir/name/model.tflite`` (prefill and decode signatures over a ``context_length``-token KV cache)
    and the tokenizer files beside it; return the unvalidated Artifact (no manifest written).

    ``context_length`` defaults to :data:`DEFAULT_CONTEXT` (at most max_position_embeddings); ``progress`` is called
    as ``progress(done, total, label)``.

    Raises:
        InputError: not a Llama folder, weights that do not fit its config, ``work_dir/name`` exists.
        ConfigError: a context outside 2..max_position_embeddings.
        UnsupportedError: another family or Llama variant, or a precision this route does not make.
        RuntimeFailure: the converter failed.
    """
    hf_dir, work_dir = Path(hf_dir).expanduser(), Path(work_dir)
    chosen = _check_precision(precision)
    config = read_llama_config(hf_dir)
    context = resolve_context(config, context_length)
    out = work_dir / name
    if out.exists() or out.is_symlink():
        raise InputError(f"{out} already exists; the TFLite export writes a new folder there. Pass an empty work "
                         "folder (or another name).")
    gen = _generative_modules()
    mcfg = model_config(config, context, gen)
    _report(progress, 0, 3, "re-authoring the Llama with litert-torch's generative layers")
    model = build_model(hf_dir, mcfg, gen)
    _report(progress, 1, 3, f"converting ({chosen.value}, prefill {prefill_lengths(context)}, cache {context})")
    out.mkdir(parents=True)
    write_tflite(model, mcfg, out / MODEL_FILE, chosen, gen)
    for f in TOKENIZER_FILES:
        if (hf_dir / f).is_file():
            shutil.copyfile(hf_dir / f, out / f)
    _report(progress, 2, 3, "hashing")
    art = _artifact(hf_dir, work_dir, name, chosen, config, mcfg)
    _report(progress, 3, 3, "done")
    return art


def _report(progress: Progress | None, done: int, total: int, label: str) -> None:
    if progress:
        progress(done, total, label)


def _artifact(hf_dir: Path, work_dir: Path, name: str, precision: Precision, config: dict[str, Any],
              mcfg: Any) -> Artifact:
    """The Artifact of the files written under ``work_dir/name`` (hashed, ``source["llm"]`` filled)."""
    generation = hf_dir / "generation_config.json"
    gen_config = json.loads(generation.read_text(encoding="utf-8")) if generation.is_file() else {}
    attention = mcfg.block_config(0).attn_config
    weights = hf_dir / "model.safetensors"
    vocab = mcfg.vocab_size
    info = LLMInfo(
        vocab_size=vocab, context_length=mcfg.max_seq_len,
        eos_token_id=_token_id([gen_config, config], "eos_token_id"),
        bos_token_id=_token_id([gen_config, config], "bos_token_id"),
        pad_token_id=_token_id([gen_config, config], "pad_token_id"),
        tokenizer=f"{name}/tokenizer.json" if (work_dir / name / "tokenizer.json").is_file() else None,
        route=ROUTE, runtime="litert", num_layers=mcfg.num_layers, num_kv_heads=attention.num_query_groups,
        head_dim=attention.head_dim, weight_bits=WEIGHT_BITS[precision],
    )
    art = Artifact(
        name=name, format="tflite", precision=precision.value, directory=work_dir, model_file=f"{name}/{MODEL_FILE}",
        files={f"{name}/{p.name}": "" for p in sorted((work_dir / name).iterdir()) if p.is_file()},
        inputs=[TensorSpec(name="input_ids", shape=("batch", "sequence"), dtype="int64", kind="ids", high=vocab)],
        outputs=[TensorSpec(name="logits", shape=("batch", "sequence", vocab), dtype="float32")],
        parent_sha256=sha256_file(weights) if weights.is_file() else None,
        source={"model": str(hf_dir), "kind": "causal-lm",
                "architecture": (config.get("architectures") or ["LlamaForCausalLM"])[0],
                LLM_SOURCE_KEY: info.to_dict(), "prefill_lengths": prefill_lengths(mcfg.max_seq_len),
                "signatures": [*(f"prefill_{p}" for p in prefill_lengths(mcfg.max_seq_len)), "decode"]},
        quantization=QUANTIZATION.get(precision),
        versions=dist_versions("torch", "transformers", "litert-torch", "ai-edge-litert"),
    )
    art.hash_files()
    return art
