"""ONNX KV-cache export (onnxruntime-genai's builder) and its torch-free generators (onnxruntime-genai, onnxruntime).

One tiny seeded Llama (2 layers, hidden 64, 2 key-value heads) exported once as fp32 and once as int4-weight for the
module, with a context of 64 tokens. The reference is transformers' own ``generate`` and the cache-free torch trace
(``models.llm.torch_logits_trace``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgestill.artifact import Artifact
from edgestill.errors import ConfigError, InputError, UnsupportedError
from edgestill.runtimes.generate import llm_info, load_generator

pytest.importorskip("onnxruntime_genai")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CONTEXT = 64
STEPS = 32
RUNTIMES = ("onnxruntime-genai", "onnxruntime")
SQNR_FLOOR_DB = 12.0
"""int4 (RTN, block 32) prefill logits against the fp32 file's on the random-weight tiny model: 17-19 dB measured;
a wrong scale or a dropped block gives about 0 dB or less."""


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-llm")


def _export(hf_dir: Path, work: Path, name: str, precision: str) -> Artifact:
    from edgestill.export.llm_onnx import export_llm_onnx

    art = export_llm_onnx(hf_dir, work, name, precision, context_length=CONTEXT)
    art.write_manifest()
    return Artifact.load(art.manifest_path)


@pytest.fixture(scope="module")
def fp32(hf_dir: Path, work: Path) -> Artifact:
    return _export(hf_dir, work, "tiny_fp32", "fp32")


@pytest.fixture(scope="module")
def int4(hf_dir: Path, work: Path) -> Artifact:
    return _export(hf_dir, work, "tiny_int4", "int4-weight")


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    rng = np.random.default_rng(1)
    return [[1, *rng.integers(4, 40, size=int(rng.integers(2, 24))).tolist()] for _ in range(8)]


def test_manifest_describes_the_kv_cache_folder(fp32: Artifact, hf_dir: Path) -> None:
    config = json.loads((hf_dir / "config.json").read_text())
    assert (fp32.format, fp32.precision, fp32.model_file) == ("onnx", "fp32", "tiny_fp32/model.onnx")
    assert {"tiny_fp32/model.onnx", "tiny_fp32/model.onnx.data", "tiny_fp32/genai_config.json",
            "tiny_fp32/tokenizer.json"} <= set(fp32.files)
    assert set(fp32.files) == {f"tiny_fp32/{p.name}" for p in (fp32.directory / "tiny_fp32").iterdir()}
    fp32.verify_files()
    assert [(s.name, s.shape, s.dtype, s.kind, s.high) for s in fp32.inputs] == [
        ("input_ids", ("batch", "sequence"), "int64", "ids", config["vocab_size"])]
    assert [(s.name, s.shape) for s in fp32.outputs] == [("logits", ("batch", "sequence", config["vocab_size"]))]
    info = llm_info(fp32)
    assert (info.vocab_size, info.context_length, info.eos_token_id, info.bos_token_id, info.pad_token_id) == (
        config["vocab_size"], CONTEXT, config["eos_token_id"], config["bos_token_id"], config["pad_token_id"])
    assert (info.num_layers, info.num_kv_heads, info.head_dim, info.weight_bits) == (2, 2, 16, 32)
    assert info.route == "onnxruntime-genai builder" and info.tokenizer == "tiny_fp32/tokenizer.json"
    assert fp32.quantization is None and fp32.versions["onnxruntime-genai"] != "not installed"
    assert fp32.parent_sha256 and len(fp32.parent_sha256) == 64
    assert (fp32.directory / "tiny_fp32.builder.log").is_file()


@pytest.fixture(scope="module")
def torch_tokens(torch_model, prompts: list[list[int]]) -> list[list[int]]:
    """Per prompt: transformers' greedy ``generate`` (its own KV cache, stopping at eos)."""
    import torch

    with torch.no_grad():
        return [torch_model.generate(torch.tensor([p]), max_new_tokens=STEPS, do_sample=False,
                                     pad_token_id=0)[0, len(p):].tolist() for p in prompts]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_fp32_greedy_tokens_identical_to_torch(fp32: Artifact, prompts: list[list[int]],
                                               torch_tokens: list[list[int]], runtime: str) -> None:
    """generate() gives transformers' tokens; at a fixed length (the timing protocol's) it gives exactly STEPS tokens,
    the argmax of the logits trace (compared with torch in the next test), with one step time per token after the
    first."""
    gen = load_generator(fp32, threads=1, runtime=runtime)
    try:
        for prompt, ref in zip(prompts, torch_tokens):
            assert gen.generate(prompt, STEPS).tokens == ref, prompt
        for prompt in prompts[:2]:
            got = gen.generate(prompt, STEPS, stop_on_eos=False)
            assert got.tokens == gen.logits(prompt, STEPS - 1).argmax(axis=-1).tolist()
            assert len(got.step_ms) == STEPS - 1 and got.ttft_ms > 0 and got.stopped == "length"
    finally:
        gen.close()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_fp32_logits_trace_matches_torch(fp32: Artifact, torch_model, prompts: list[list[int]], runtime: str) -> None:
    from edgestill.models.llm import torch_logits_trace

    gen = load_generator(fp32, threads=1, runtime=runtime)
    try:
        for prompt in prompts[:4]:
            ref = torch_logits_trace(torch_model, prompt, 8)
            got = gen.logits(prompt, 8)
            assert got.shape == ref.shape == (9, llm_info(fp32).vocab_size) and got.dtype == np.float32
            np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
    finally:
        gen.close()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_generation_stops_at_eos_like_torch(fp32: Artifact, torch_model, runtime: str) -> None:
    """The first seeded prompt whose greedy continuation meets eos: the file and torch both stop there, eos kept;
    with stop_on_eos=False both go on past it (eos neither ends nor is suppressed)."""
    from edgestill.models.llm import torch_greedy

    eos = llm_info(fp32).eos_token_id
    gen = load_generator(fp32, threads=1, runtime=runtime)
    try:
        rng = np.random.default_rng(0)
        for _ in range(200):
            prompt = [1, *rng.integers(4, 40, size=6).tolist()]
            got = gen.generate(prompt, STEPS)
            if got.stopped == "eos":
                break
        else:
            pytest.fail("no seeded prompt's greedy continuation reached eos; pick another seed")
        assert got.tokens == torch_greedy(torch_model, prompt, STEPS, eos)
        assert got.tokens[-1] == eos and len(got.tokens) < STEPS and len(got.step_ms) == len(got.tokens) - 1
        past = gen.generate(prompt, STEPS, stop_on_eos=False)  # greedy goes on past eos, like torch's trace
        assert past.tokens == torch_greedy(torch_model, prompt, STEPS, None) and past.stopped == "length"
        assert past.tokens[:len(got.tokens)] == got.tokens
    finally:
        gen.close()


def test_int4_is_matmulnbits_and_tracks_fp32(fp32: Artifact, int4: Artifact, prompts: list[list[int]]) -> None:
    import onnx

    graph = onnx.load(str(int4.model_path), load_external_data=False).graph
    nbits = [n for n in graph.node if n.op_type == "MatMulNBits"]
    assert nbits and not [n for n in graph.node if n.op_type == "MatMul"]
    assert {onnx.helper.get_attribute_value(a) for n in nbits for a in n.attribute if a.name == "bits"} == {4}
    assert int4.quantization["bits"] == 4 and int4.quantization["block_size"] == 32
    assert llm_info(int4).weight_bits == 4 and int4.model_bytes < 0.6 * fp32.model_bytes
    ref, q = load_generator(fp32, threads=1), load_generator(int4, threads=1)
    try:
        for prompt in prompts:  # prefill logits: signal-to-quantization-noise of the whole row
            a, b = ref.logits(prompt, 0)[0], q.logits(prompt, 0)[0]
            assert 10 * np.log10(np.sum(a**2) / np.sum((a - b) ** 2)) > SQNR_FLOOR_DB
        assert len(q.generate(prompts[0], 16, stop_on_eos=False).tokens) == 16
    finally:
        ref.close()
        q.close()


_THREADS_PROBE = """
import os, sys
from edgestill.artifact import Artifact
from edgestill.runtimes.generate import load_generator
art = Artifact.load(sys.argv[1])
start = len(os.listdir("/proc/self/task"))
gen = load_generator(art, threads=int(sys.argv[3]), runtime=sys.argv[2])
gen.generate([1, 5, 6], 4, stop_on_eos=False)
print(gen.threads, len(os.listdir("/proc/self/task")) - start, *(m in sys.modules for m in ("torch", "transformers",
                                                                                          "tokenizers")))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through /proc (Linux)")
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_threads_honoured_and_no_torch(fp32: Artifact, runtime: str) -> None:
    """A fresh process per thread count: 3 threads start two more OS threads than 1 (the intra-op pool's workers;
    the calling thread is the first); loading and generating imports neither torch, transformers nor tokenizers."""
    started = {}
    for threads in (1, 3):
        done = subprocess.run([sys.executable, "-c", _THREADS_PROBE, str(fp32.manifest_path), runtime, str(threads)],
                              capture_output=True, text=True, timeout=120, check=True)
        recorded, new_threads, *imported = done.stdout.split()
        assert int(recorded) == threads and imported == ["False"] * 3
        started[threads] = int(new_threads)
    assert started[3] - started[1] == 2, started


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_prompt_past_context_or_vocabulary_is_refused(fp32: Artifact, runtime: str) -> None:
    gen = load_generator(fp32, threads=1, runtime=runtime)
    try:
        with pytest.raises(InputError, match="exceeds the model's context of 64"):
            gen.generate([1] * 60, 8)
        with pytest.raises(InputError, match="exceeds the model's context of 64"):
            gen.logits([1] * 64, 1)
        with pytest.raises(InputError, match="outside the model's vocabulary"):
            gen.generate([1, 10_000], 4)
        with pytest.raises(InputError, match="empty prompt"):
            gen.generate([], 4)
    finally:
        gen.close()


def _copy(art: Artifact, dest: Path) -> Artifact:
    shutil.copytree(art.directory / art.name, dest / art.name)
    shutil.copyfile(art.manifest_path, dest / art.manifest_path.name)
    return Artifact.load(dest / art.manifest_path.name)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_bad_files_are_refused(fp32: Artifact, tmp_path: Path, runtime: str) -> None:
    changed = _copy(fp32, tmp_path / "changed")
    changed.model_path.write_bytes(b"not an onnx model")
    with pytest.raises(InputError, match="changed since it was exported"):
        load_generator(changed, runtime=runtime)

    corrupt = _copy(fp32, tmp_path / "corrupt")  # garbage whose hash the manifest records
    corrupt.model_path.write_bytes(b"not an onnx model")
    corrupt.hash_files()
    with pytest.raises(InputError, match="cannot load .*corrupt, truncated"):
        load_generator(corrupt, runtime=runtime)

    missing = _copy(fp32, tmp_path / "missing")
    (missing.directory / missing.name / "genai_config.json").unlink()
    with pytest.raises(InputError, match="genai_config.json is missing"):
        load_generator(missing, runtime=runtime)
    del missing.files[f"{missing.name}/genai_config.json"]
    with pytest.raises(InputError, match="has no genai_config.json"):
        load_generator(missing, runtime=runtime)

    with pytest.raises(InputError, match="runtimes: onnxruntime-genai, onnxruntime"):
        load_generator(fp32, runtime="openvino")


def test_export_refusals(hf_dir: Path, tmp_path: Path, fp32: Artifact) -> None:
    from edgestill.export.llm_onnx import export_llm_onnx

    with pytest.raises(UnsupportedError, match="GPU execution providers only"):
        export_llm_onnx(hf_dir, tmp_path, "m", "fp16")
    with pytest.raises(ConfigError, match=r"context_length 512 .* \[2, 256\]"):
        export_llm_onnx(hf_dir, tmp_path, "m", "fp32", context_length=512)
    with pytest.raises(InputError, match="already exists"):
        export_llm_onnx(hf_dir, fp32.directory, fp32.name, "fp32")
    encoder = tmp_path / "encoder"
    shutil.copytree(hf_dir, encoder)
    config = json.loads((encoder / "config.json").read_text())
    (encoder / "config.json").write_text(json.dumps(dict(config, architectures=["BertModel"])))
    with pytest.raises(InputError, match="causal language model"):
        export_llm_onnx(encoder, tmp_path, "m", "fp32")
    (encoder / "config.json").write_text(json.dumps(config))
    (encoder / "tokenizer.json").unlink()
    with pytest.raises(InputError, match="no tokenizer.json"):
        export_llm_onnx(encoder, tmp_path, "m", "fp32")
    with pytest.raises(InputError, match="not a folder"):
        export_llm_onnx(tmp_path / "nowhere", tmp_path, "m", "fp32")


def test_builder_refusal_is_unsupported(hf_dir: Path, tmp_path: Path) -> None:
    """An architecture the builder does not know fails inside the builder: UnsupportedError naming the user's folder
    (not the staged copy), the log kept, no half-written or staging folder left."""
    from edgestill.export.llm_onnx import export_llm_onnx

    odd = tmp_path / "foo-lm"
    shutil.copytree(hf_dir, odd)
    config = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps(dict(config, architectures=["FooForCausalLM"])))
    with pytest.raises(UnsupportedError, match=f"cannot export {odd}: NotImplementedError: The {odd} model is not"):
        export_llm_onnx(odd, tmp_path / "out", "m", "fp32")
    assert (tmp_path / "out" / "m.builder.log").is_file() and not (tmp_path / "out" / "m").exists()
    assert not list((tmp_path / "out").glob(".m-builder*"))


def test_a_head_size_onnxruntime_cannot_run_is_refused_before_building(tmp_path):
    """Bad input: heads of size 8 (hidden 16 / 2 heads). onnxruntime's GroupQueryAttention needs a multiple of 16, so
    the builder's file would only fail when run; the export refuses it first, naming the other formats."""
    from edgestill.errors import UnsupportedError
    from edgestill.export.llm_onnx import export_llm_onnx
    from edgestill.models.llm import make_tiny_llama

    hf = make_tiny_llama(tmp_path / "hf", layers=1, hidden=16, heads=2, kv_heads=1, intermediate=32, context_length=32)
    with pytest.raises(UnsupportedError, match="multiple of 16"):
        export_llm_onnx(hf, tmp_path / "work", "m", "fp32")
    assert not (tmp_path / "work" / "m").exists()
