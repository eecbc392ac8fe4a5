"""TFLite LLM export (litert-torch generative path: prefill/decode signatures, external KV cache) and its torch-free
LiteRT generator.

One tiny seeded Llama (2 layers, hidden 64) exported once per precision for the module with a 200-token cache (prefill
signatures of 32 and 128 tokens, so a 180-token prompt is prefilled in two chunks, the second moved back to end inside
the cache). The reference is transformers' own greedy ``generate`` and torch without a KV cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgestill.artifact import Artifact
from edgestill.errors import ConfigError, InputError, UnsupportedError

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

STEPS = 32
CONTEXT = 200


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tflite-llm")


def _export(hf_dir: Path, work: Path, name: str, precision: str) -> Artifact:
    from edgestill.export.llm_tflite import export_llm_tflite

    steps: list[tuple[int, int, str]] = []
    art = export_llm_tflite(hf_dir, work, name, precision, context_length=CONTEXT,
                            progress=lambda done, total, label: steps.append((done, total, label)))
    assert steps[-1][:2] == (3, 3)
    art.write_manifest()
    return Artifact.load(art.manifest_path)


@pytest.fixture(scope="module")
def fp32(hf_dir: Path, work: Path) -> Artifact:
    return _export(hf_dir, work, "tiny_fp32", "fp32")


@pytest.fixture(scope="module")
def int8(hf_dir: Path, work: Path) -> Artifact:
    return _export(hf_dir, work, "tiny_int8", "int8-weight")


@pytest.fixture(scope="module")
def prompts(fp32: Artifact) -> list[list[int]]:
    """Eight prompts: seven short ones (one signature call) and one of 150 tokens (two chunks)."""
    vocab = fp32.source["llm"]["vocab_size"]
    rng = np.random.default_rng(0)
    lengths = [*(int(n) for n in rng.integers(4, 24, size=7)), 150]
    return [[1, *rng.integers(4, vocab, size=n).tolist()] for n in lengths]


def test_fp32_manifest_describes_a_kv_cache_llm(fp32: Artifact, hf_dir: Path) -> None:
    llm = fp32.source["llm"]
    assert (fp32.format, fp32.precision, fp32.model_file) == ("tflite", "fp32", "tiny_fp32/model.tflite")
    assert {"tiny_fp32/model.tflite", "tiny_fp32/tokenizer.json"} <= set(fp32.files)
    assert all(f.startswith("tiny_fp32/") for f in fp32.files)
    inputs = [(s.name, s.dtype, s.kind, s.high) for s in fp32.inputs]
    assert inputs == [("input_ids", "int64", "ids", llm["vocab_size"])]
    assert fp32.outputs[0].name == "logits" and fp32.outputs[0].shape[-1] == llm["vocab_size"]
    assert llm["context_length"] == CONTEXT and llm["eos_token_id"] == 2 and llm["weight_bits"] == 32
    assert llm["runtime"] == "litert" and llm["route"].startswith("litert-torch generative")
    assert llm["tokenizer"] == "tiny_fp32/tokenizer.json"
    assert (llm["num_layers"], llm["num_kv_heads"], llm["head_dim"]) == (2, 2, 16)
    assert fp32.source["signatures"] == ["prefill_32", "prefill_128", "decode"]
    assert fp32.quantization is None and fp32.parent_sha256
    fp32.verify_files()


def test_fp32_greedy_tokens_identical_to_torch_and_logits_close(fp32: Artifact, torch_model, prompts) -> None:
    import torch

    from edgestill.models.llm import torch_logits_trace
    from edgestill.runtimes.generate import load_generator

    gen = load_generator(fp32, threads=1)
    worst = 0.0
    for prompt in prompts:
        with torch.no_grad():  # transformers' greedy search with its own KV cache, exactly STEPS tokens
            ref = torch_model.generate(torch.tensor([prompt]), max_new_tokens=STEPS, min_new_tokens=STEPS,
                                       do_sample=False)[0, len(prompt):].tolist()
        out = gen.generate(prompt, STEPS, stop_on_eos=False)
        assert out.tokens == ref
        assert len(out.step_ms) == STEPS - 1 and out.ttft_ms > 0 and out.stopped == "length"
        trace = gen.logits(prompt, 8)
        assert trace.shape == (9, fp32.source["llm"]["vocab_size"]) and trace.dtype == np.float32
        worst = max(worst, float(np.abs(trace - torch_logits_trace(torch_model, prompt, 8)).max()))
    assert worst < 1e-4, worst  # measured 8e-7 (float32 throughout)


def test_a_prompt_longer_than_every_prefill_signature_is_chunked_correctly(fp32: Artifact, torch_model) -> None:
    from edgestill.models.llm import torch_logits_trace
    from edgestill.runtimes.generate import load_generator

    prompt = [1, *np.random.default_rng(1).integers(4, fp32.source["llm"]["vocab_size"], size=179).tolist()]
    got = load_generator(fp32, threads=1).logits(prompt, CONTEXT - len(prompt))  # chunk 0..127, then 72..199
    ref = torch_logits_trace(torch_model, prompt, CONTEXT - len(prompt))
    assert (got.argmax(-1) == ref.argmax(-1)).all() and np.abs(got - ref).max() < 1e-4


def test_generation_stops_at_eos(fp32: Artifact, prompts) -> None:
    from edgestill.runtimes.generate import load_generator

    gen = load_generator(fp32, threads=1)
    free = gen.generate(prompts[0], STEPS, stop_on_eos=False).tokens
    gen.info = type(gen.info)(**{**gen.info.to_dict(), "eos_token_id": free[3]})  # make the 4th token the eos
    out = gen.generate(prompts[0], STEPS)
    assert out.stopped == "eos" and out.tokens == free[:free.index(free[3]) + 1]


def test_int8_weight_file_is_quantized_and_tracks_fp32(int8: Artifact, fp32: Artifact, prompts) -> None:
    from edgestill.runtimes.generate import load_generator
    from edgestill.runtimes.litert import interpreter_module

    assert int8.precision == "int8-weight" and int8.source["llm"]["weight_bits"] == 8
    assert int8.quantization["tool"] == "litert-torch full_dynamic_recipe"
    assert int8.model_path.stat().st_size < 0.8 * fp32.model_path.stat().st_size
    interp = interpreter_module()[0].Interpreter(model_path=str(int8.model_path))
    assert any(d["dtype"] == np.int8 and len(d["shape"]) == 2 for d in interp.get_tensor_details())
    q, f = load_generator(int8, threads=1), load_generator(fp32, threads=1)
    for prompt in prompts[:4]:  # prefill logits of the int8 file against fp32 (random weights, no training)
        ref, got = f.logits(prompt, 0)[0], q.logits(prompt, 0)[0]
        sqnr = 10 * np.log10(np.sum(ref**2) / np.sum((ref - got) ** 2))
        assert sqnr > 20, sqnr
    assert len(q.generate(prompts[0], 8, stop_on_eos=False).tokens) == 8


def test_prompt_over_the_context_and_bad_ids_are_refused(fp32: Artifact) -> None:
    from edgestill.runtimes.generate import load_generator

    gen = load_generator(fp32, threads=1)
    with pytest.raises(InputError, match=f"exceeds the model's context of {CONTEXT}"):
        gen.generate([1] * (CONTEXT - 4), 8)
    with pytest.raises(InputError, match="context"):
        gen.logits([1] * CONTEXT, 1)
    with pytest.raises(InputError, match="vocabulary"):
        gen.generate([1, 10_000], 2)
    with pytest.raises(InputError, match="empty prompt"):
        gen.generate([], 2)
    with pytest.raises(InputError, match="does not run TFLite"):
        load_generator(fp32, runtime="onnxruntime")


def test_a_corrupt_model_file_is_refused_before_loading(fp32: Artifact, tmp_path: Path) -> None:
    import shutil

    from edgestill.runtimes.generate import load_generator

    shutil.copytree(fp32.directory / fp32.name, tmp_path / fp32.name)
    shutil.copy(fp32.manifest_path, tmp_path)
    model = tmp_path / fp32.model_file
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(InputError, match="sha256|changed"):
        load_generator(Artifact.load(tmp_path / fp32.manifest_path.name), threads=1)


def test_bad_inputs_to_the_export_are_refused(hf_dir: Path, tmp_path: Path, fp32: Artifact) -> None:
    from edgestill.export.llm_tflite import export_llm_tflite

    with pytest.raises(UnsupportedError, match="int8-weight"):
        export_llm_tflite(hf_dir, tmp_path, "x", "int8-static")
    with pytest.raises(ConfigError, match="max_position_embeddings"):
        export_llm_tflite(hf_dir, tmp_path, "x", "fp32", context_length=100_000)
    with pytest.raises(InputError, match="already exists"):
        export_llm_tflite(hf_dir, fp32.directory, "tiny_fp32", "fp32")
    with pytest.raises(InputError, match="no config.json"):
        export_llm_tflite(tmp_path, tmp_path, "x", "fp32")
    other = tmp_path / "qwen"
    other.mkdir()
    (other / "config.json").write_text('{"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"}')
    with pytest.raises(UnsupportedError, match="re-authors Llama"):
        export_llm_tflite(other, tmp_path, "x", "fp32")
    scaled = tmp_path / "scaled"
    scaled.mkdir()
    (scaled / "config.json").write_text('{"model_type": "llama", "rope_scaling": {"rope_type": "llama3"}}')
    with pytest.raises(UnsupportedError, match="rope_scaling"):
        export_llm_tflite(scaled, tmp_path, "x", "fp32")
    (scaled / "config.json").write_text('{"model_type": "llama", "vocab_size": 64, "hidden_size": "64"}')
    with pytest.raises(InputError, match="hidden_size"):
        export_llm_tflite(scaled, tmp_path, "x", "fp32")


def test_the_generator_runs_without_torch(fp32: Artifact) -> None:
    code = (
        "import sys\n"
        "from edgestill.artifact import Artifact\n"
        "from edgestill.runtimes.generate import load_generator\n"
        f"gen = load_generator(Artifact.load({str(fp32.manifest_path)!r}), threads=1)\n"
        "assert len(gen.generate([1, 5, 6, 7], 4, stop_on_eos=False).tokens) == 4\n"
        "bad = sorted(m for m in ('torch', 'transformers', 'tokenizers', 'litert_torch') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
