"""The runner on a generative artifact: timing at fixed lengths, greedy exact match and teacher agreement on its own
runtime, bad eval data refused (exit 2) before anything is timed, never torch; bench and the CLI around it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgestill.artifact import Artifact
from edgestill.runtimes.generate import answer_ids, eval_generations, llm_info, load_generator, time_generation

os.environ.setdefault("HF_HUB_OFFLINE", "1")
CONTEXT = 64


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer seeded Llama (context 64) exported to a stateful OpenVINO IR, with its manifest."""
    pytest.importorskip("openvino")
    from edgestill.export.llm_openvino import export_llm_openvino
    from edgestill.models.llm import make_tiny_llama

    root = tmp_path_factory.mktemp("llm")
    hf = make_tiny_llama(root / "hf", layers=1, hidden=32, heads=2, kv_heads=1, intermediate=64, context_length=CONTEXT)
    return export_llm_openvino(hf, root / "out", "tiny-llm", "fp32").write_manifest()


def eval_data(path: Path, manifest: Path) -> tuple[Path, float]:
    """LLM eval arrays whose expected exact match is known by construction: the model's own greedy answers (after the
    marker, a token every generation emits) are the references of the even prompts and wrong (one id longer) for the
    odd ones; the teacher's answers are the model's own, so agreement is 1. Returns (file, expected exact match)."""
    art = Artifact.load(manifest)
    info = llm_info(art)
    rng = np.random.default_rng(0)
    prompts = [list(rng.integers(3, info.vocab_size, size=int(n))) for n in rng.integers(3, 9, size=12)]
    arrays = {"prompt_ids": np.zeros((len(prompts), 8), np.int32), "prompt_len": np.array([len(p) for p in prompts], np.int32),
              "max_new_tokens": np.array(24, np.int32), "strip_ids": np.array([], np.int32)}  # fmt: skip
    for i, p in enumerate(prompts):
        arrays["prompt_ids"][i, : len(p)] = p
    gen = load_generator(art, threads=1)
    try:
        outs = eval_generations(gen, arrays)
    finally:
        gen.close()
    counts = np.bincount([t for o in outs for t in set(o)], minlength=info.vocab_size)
    marker = int(np.argmax(counts))  # the token most generations emit
    keep = [i for i, o in enumerate(outs) if marker in o and answer_ids(o, [marker], set(), info.eos_token_id)]
    assert len(keep) >= 4, "too few generations carry a common token to build eval data from"
    answers = [list(answer_ids(outs[i], [marker], set(), info.eos_token_id)) for i in keep]
    refs = [a if j % 2 == 0 else a + [3] for j, a in enumerate(answers)]
    width = max(len(r) for r in refs)
    pad = lambda rows: np.array([r + [-1] * (width - len(r)) for r in rows], np.int32)  # noqa: E731
    arrays.update(prompt_ids=arrays["prompt_ids"][keep], prompt_len=arrays["prompt_len"][keep], answer_ids=pad(refs),
                  teacher_answer_ids=pad(answers), marker_ids=np.array([marker], np.int32))
    np.savez(path, **arrays)
    return path, len(range(0, len(keep), 2)) / len(keep)


@pytest.fixture(scope="module")
def llm_eval(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    return eval_data(tmp_path_factory.mktemp("eval") / "eval.npz", manifest)


def run_runner(tmp_path: Path, job: dict, *extra: str) -> tuple[int, dict, str]:
    job_path = tmp_path / "job.json"
    job_path.write_text(json.dumps(job))
    proc = subprocess.run([sys.executable, *extra, "-m", "edgestill.runtimes.runner", str(job_path)],
                          capture_output=True, text=True, timeout=180)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"stdout must be one JSON line, got: {proc.stdout!r} {proc.stderr[-2000:]}"
    return proc.returncode, json.loads(lines[0]), proc.stderr


def test_the_runner_times_and_scores_a_generative_artifact_without_torch(tmp_path: Path, manifest: Path,
                                                                        llm_eval: tuple[Path, float]) -> None:
    data, expected_em = llm_eval
    job = {"artifact": str(manifest), "options": {"threads": 1}, "bench": {"min_seconds": 0.0}, "eval_data": str(data),
           "llm": {"repeats": 4}}  # the default 128/128 does not fit a 64-token context: 32 + 32 are timed
    rc, doc, stderr = run_runner(tmp_path, job, "-X", "importtime")
    assert rc == 0, doc
    imported = {line.split("|")[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}
    assert doc["torch_imported"] is False and "torch" not in imported and "openvino" in imported
    assert (doc["prompt_tokens"], doc["generated_tokens"]) == (32, 32) and doc["settings"]["llm"]["repeats_made"] == 4
    samples = doc["samples_ms"]
    assert len(samples) == doc["n"] == 4 * 31  # every decode step of every timed generation
    assert doc["p50_ms"] == pytest.approx(float(np.median(samples)))  # latency = ms per decoded token
    assert doc["prefill_tokens_per_s"] == pytest.approx(32 / (doc["ttft_ms"] / 1e3))
    each = doc["settings"]["llm"]["decode_tokens_per_s_each"]
    assert doc["decode_tokens_per_s"] == pytest.approx(float(np.median(each)))
    assert sum(31 / r for r in each) * 1e3 == pytest.approx(sum(samples))  # each rate = its steps / their total time
    assert doc["accuracy"] == {"metric": "exact_match", "value": pytest.approx(expected_em), "n": doc["accuracy"]["n"]}
    assert doc["teacher_top1_agreement"] == 1.0
    assert doc["provenance"]["runtime"] == "openvino" and doc["provenance"]["runtime_version"]
    assert doc["init_ms"] > 0 and doc["peak_rss_mb"] > 0 and doc["model_bytes"] == Artifact.load(manifest).model_bytes


def test_time_generation_on_a_real_decoder_makes_exactly_the_asked_lengths(manifest: Path) -> None:
    gen = load_generator(Artifact.load(manifest), threads=1)
    try:
        out = time_generation(gen, list(range(3, 13)), gen_tokens=6, warmup=1, repeats=2)
    finally:
        gen.close()
    assert (out["prompt_tokens"], out["generated_tokens"], out["repeats"], len(out["samples_ms"])) == (10, 6, 2, 10)
    assert out["ttft_ms"] == pytest.approx(float(np.median(out["ttft_samples_ms"]))) and out["first_ms"] > 0


@pytest.mark.parametrize("case, message", [
    ("missing", r"lacks \['answer_ids'\]"),
    ("vocab", "prompt_ids holds ids from .* outside the model's vocabulary"),
    ("context", "exceeds the model's context of 64 tokens"),
    ("llm", "job 'llm' has unknown key"),
])  # fmt: skip
def test_bad_llm_eval_data_exits_2_before_anything_is_loaded(tmp_path: Path, manifest: Path, case: str, message: str) -> None:
    arrays = {"prompt_ids": np.array([[5, 6, 7]], np.int32), "prompt_len": np.array([3], np.int32),
              "answer_ids": np.array([[5]], np.int32), "marker_ids": np.array([9], np.int32),
              "strip_ids": np.array([4], np.int32), "max_new_tokens": np.array(8, np.int32)}
    llm: dict = {}
    if case == "missing":
        del arrays["answer_ids"]
    elif case == "vocab":
        arrays["prompt_ids"][0, 1] = 10_000
    elif case == "context":
        arrays["max_new_tokens"] = np.array(62, np.int32)
    else:
        llm = {"prompt_tokns": 8}
    np.savez(tmp_path / "bad.npz", **arrays)
    job = {"artifact": str(manifest), "eval_data": str(tmp_path / "bad.npz"), "bench": {"min_seconds": 0.0}, "llm": llm}
    rc, doc, stderr = run_runner(tmp_path, job)
    assert rc == 2 and doc["kind"] == "failed" and "Traceback" not in stderr
    assert re.search(message, doc["error"]), doc["error"]


def test_the_device_bundle_holds_every_generative_runtime_and_no_torch() -> None:
    from edgestill.devices.transport import bundle_modules

    mods = bundle_modules()  # raises when a module of the runner's closure imports torch
    assert {"edgestill.runtimes.generate", "edgestill.runtimes.llm_openvino"} <= set(mods)
    from edgestill.runtimes.generate import GENERATOR_MODULES

    present = {m for m in GENERATOR_MODULES.values() if (Path(__file__).parents[2] / "src" / (m.replace(".", "/") + ".py")).exists()}
    assert present <= set(mods)


def test_bench_cli_prints_and_stores_the_generative_figures(tmp_path: Path, manifest: Path) -> None:
    db = tmp_path / "r.db"
    base = [sys.executable, "-m", "edgestill", "bench", str(manifest), "--db", str(db), "--min-seconds", "0"]
    r = subprocess.run([*base, "--prompt-tokens", "8", "--gen-tokens", "8", "--json"], capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    (m,) = json.loads(r.stdout)["measurements"]
    assert (m["prompt_tokens"], m["generated_tokens"], m["kind"]) == (8, 8, "measured") and m["decode_tokens_per_s"] > 0
    from edgestill.benchmarks.store import ResultsStore

    with ResultsStore(db) as store:
        (row,) = store.measurements()
        assert row["decode_tokens_per_s"] == m["decode_tokens_per_s"] and len(store.samples(row["id"])) == 3 * 7
    # a generative runtime by name (the format's loader knows its names), and the table
    r = subprocess.run([*base, "--gen-tokens", "4", "--prompt-tokens", "4", "--runtime", "openvino-genai"],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0 and "decode tok/s" in r.stdout, r.stdout + r.stderr[-2000:]
    assert re.search(r"tiny-llm +│ openvino-genai +│ +1 │ +4\+4 │", r.stdout), r.stdout
    r = subprocess.run([*base, "--runtime", "onnxruntime"], capture_output=True, text=True, timeout=180)
    assert r.returncode == 2 and "does not run OpenVINO LLM files" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = subprocess.run([*base, "--gen-tokens", "1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--gen_tokens must be a whole number >= 2" in r.stderr, r.stderr[-2000:]


@pytest.mark.ssh
def test_bench_on_an_ssh_device_measures_and_scores_the_generative_artifact_there(
        tmp_path: Path, manifest: Path, llm_eval: tuple[Path, float]) -> None:
    from tests.devices.conftest import _require_sshd, start_sshd, write_inventory

    _require_sshd()
    data, expected_em = llm_eval
    server = start_sshd(tmp_path / "sshd")
    try:
        inventory = write_inventory(tmp_path / "devices.yaml", [server.entry("loop")])
        r = subprocess.run([sys.executable, "-m", "edgestill", "bench", str(manifest), "--device", "loop", "--inventory",
                            str(inventory), "--data", str(data), "--db", str(tmp_path / "r.db"), "--min-seconds", "0",
                            "--json"], capture_output=True, text=True, timeout=180)  # fmt: skip
    finally:
        server.stop()
    assert r.returncode == 0, r.stderr[-2000:]
    (m,) = json.loads(r.stdout)["measurements"]
    assert m["provenance"]["device"]["transport"] == "ssh" and m["provenance"]["torch_imported"] is False
    assert (m["prompt_tokens"], m["generated_tokens"]) == (32, 32) and m["decode_tokens_per_s"] > 0
    assert m["accuracy"]["metric"] == "exact_match" and m["accuracy"]["value"] == pytest.approx(expected_em)
    assert m["teacher_top1_agreement"] == 1.0


def test_bench_config_takes_the_generative_lengths_and_refuses_bad_ones() -> None:
    from edgestill.benchmarks.bench import BenchConfig
    from edgestill.errors import ConfigError

    assert (BenchConfig().prompt_tokens, BenchConfig().gen_tokens) == (128, 128)
    assert BenchConfig(prompt_tokens=64, gen_tokens=32).gen_tokens == 32
    for bad, message in (({"gen_tokens": 1}, "bench.gen_tokens must be a whole number >= 2"),
                         ({"prompt_tokens": 0}, "bench.prompt_tokens must be a whole number >= 1"),
                         ({"prompt_tokens": True}, "bench.prompt_tokens"), ({"gen_tokens": "8"}, "got '8'")):
        with pytest.raises(ConfigError, match=message):
            BenchConfig(**bad)
