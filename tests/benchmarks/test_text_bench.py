"""``edgestill bench`` on text artifacts: eval data with one named array per input (plus labels or the teacher's
embeddings) scores the file on its own runtime; random timing inputs respect what each input means."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgestill.benchmarks.bench import benchmark
from edgestill.runtimes.harness import BenchOptions

QUICK = BenchOptions(min_runs=5, min_seconds=0.02, max_seconds=1.0, warmup_runs=1)
SEQ = 16


@pytest.fixture(scope="module")
def text_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """A tiny classifier and embedder exported to ONNX fp32 at 16 tokens, with eval arrays encoded from texts."""
    from edgestill.chain.convert import export_model
    from edgestill.data.text import encode_texts, generated_texts
    from edgestill.export.api import ExportConfig
    from edgestill.models.hf import make_tiny_hf

    root = tmp_path_factory.mktemp("text-bench")
    texts = generated_texts(40, seed=3)
    out = {}
    for task in ("classify", "embed"):
        folder = make_tiny_hf(root / f"hf-{task}", task=task, layers=1, hidden=32, heads=2, intermediate=32,
                              max_position=32, texts=generated_texts(200).texts)
        (result,) = export_model(str(folder), export=ExportConfig(formats=("onnx",), name=task), out_dir=root / task,
                                 seq_len=SEQ)
        assert result.passed, result.error
        arrays = encode_texts(folder / "tokenizer.json", texts.texts, max_length=SEQ, truncate=True,
                              input_names=[s.name for s in result.artifact.inputs])
        out[task] = {"manifest": result.artifact.manifest_path, "arrays": arrays, "labels": texts.labels,
                     "folder": folder, "root": root}
    return out


def _outputs(manifest: Path, arrays: dict[str, np.ndarray]) -> np.ndarray:
    from edgestill.runtimes import RuntimeOptions, load
    from edgestill.runtimes.accuracy import session_outputs

    return session_outputs(load(manifest, RuntimeOptions(threads=1)), arrays)


def test_bench_scores_a_text_classifier_on_named_eval_arrays(text_artifacts: dict[str, dict], tmp_path: Path) -> None:
    art = text_artifacts["classify"]
    logits = _outputs(art["manifest"], art["arrays"])
    teacher = logits + np.random.default_rng(0).normal(scale=0.5, size=logits.shape).astype(np.float32)
    data = tmp_path / "eval.npz"
    np.savez(data, **art["arrays"], y=art["labels"], teacher_logits=teacher)
    m = benchmark(art["manifest"], bench=QUICK, eval_data=data)
    assert m.kind == "measured", m.error
    assert m.accuracy.n == 40 and m.accuracy.value == pytest.approx(float((logits.argmax(1) == art["labels"]).mean()))
    assert m.teacher_top1_agreement == pytest.approx(float((logits.argmax(1) == teacher.argmax(1)).mean()))
    assert m.teacher_cosine is None and m.latency.p50_ms > 0


def test_bench_scores_a_text_embedder_against_the_teacher_embeddings(text_artifacts: dict[str, dict],
                                                                     tmp_path: Path) -> None:
    art = text_artifacts["embed"]
    emb = _outputs(art["manifest"], art["arrays"])
    data = tmp_path / "eval.npz"
    np.savez(data, **art["arrays"], teacher_embeddings=emb)  # the file against itself: perfect agreement
    m = benchmark(art["manifest"], bench=QUICK, eval_data=data)
    assert m.kind == "measured", m.error
    assert m.teacher_cosine == pytest.approx(1.0, abs=1e-5) and m.teacher_retrieval_agreement == 1.0
    assert m.retrieval_k == 5 and m.accuracy is None
    np.savez(data, **art["arrays"], teacher_embeddings=-emb)  # opposite vectors: cosine -1
    assert benchmark(art["manifest"], bench=QUICK, eval_data=data).teacher_cosine == pytest.approx(-1.0, abs=1e-5)


def test_random_timing_inputs_of_a_text_artifact_are_valid_ids_and_masks(text_artifacts: dict[str, dict]) -> None:
    from edgestill.artifact import Artifact
    from edgestill.runtimes.runner import make_inputs

    art = Artifact.load(text_artifacts["classify"]["manifest"])
    inputs = make_inputs(list(art.inputs), "random", 0, seq_len=SEQ)
    ids, mask, types = inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"]
    vocab = next(s.high for s in art.inputs if s.name == "input_ids")
    assert ids.shape == mask.shape == types.shape == (1, SEQ)
    assert 0 <= ids.min() and ids.max() < vocab and set(np.unique(mask)) <= {0, 1} and mask[0, 0] == 1
    assert not types.any()


def test_bench_refuses_eval_data_that_does_not_name_the_text_inputs(text_artifacts: dict[str, dict],
                                                                   tmp_path: Path) -> None:
    """Bad input: eval arrays missing attention_mask; one 'x' array for a multi-input model; input arrays of another
    sequence length; ids past the vocabulary; a mask of 0/2. Each exits 2 with a message naming the fix."""
    art = text_artifacts["classify"]
    a, y = art["arrays"], art["labels"]
    cases = {
        "missing": ({"input_ids": a["input_ids"], "token_type_ids": a["token_type_ids"], "y": y},
                    "but the model takes"),
        "x": ({"x": a["input_ids"], "y": y}, "holds one array 'x' but the model takes"),
        "length": ({k: np.pad(v, ((0, 0), (0, 4))) for k, v in a.items()} | {"y": y}, "Encode the texts at the model's"),
        "vocab": ({**a, "input_ids": a["input_ids"] + 5000, "y": y}, "outside the model's vocabulary"),
        "mask": ({**a, "attention_mask": a["attention_mask"] * 2, "y": y}, "values other than 0 and 1"),
    }
    for name, (arrays, message) in cases.items():
        data = tmp_path / f"{name}.npz"
        np.savez(data, **arrays)
        r = subprocess.run([sys.executable, "-m", "edgestill", "bench", str(art["manifest"]), "--data", str(data),
                            "--json", "--db", str(tmp_path / "r.db"), "--min-runs", "5"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, (name, r.stdout[-2000:], r.stderr[-2000:])
        assert message in r.stdout + r.stderr and "Traceback" not in r.stderr, name


def test_bench_times_a_raw_text_tokenized_with_the_artifacts_tokenizer(text_artifacts: dict[str, dict],
                                                                       tmp_path: Path) -> None:
    """``--text FILE`` times the file's first text; bad input: an empty text file, a text longer than the artifact's
    sequence length (exit 2)."""
    art = text_artifacts["embed"]
    queries = tmp_path / "queries.txt"
    queries.write_text("set an alarm for six am\nplay some jazz\n")
    db = tmp_path / "r.db"

    def bench(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edgestill", "bench", *args, "--json", "--db", str(db),
                               "--min-runs", "5", "--min-seconds", "0.02"], capture_output=True, text=True, timeout=120)

    r = bench(str(art["manifest"]), "--text", str(queries))
    assert r.returncode == 0, r.stderr[-2000:]
    (m,) = json.loads(r.stdout)["measurements"]
    assert m["kind"] == "measured" and m["settings"]["inputs"].startswith(f"--text {queries}")
    empty, long = tmp_path / "empty.txt", tmp_path / "long.txt"
    empty.write_text("\n\n")
    long.write_text(" ".join(["weather"] * 40) + "\n")
    for path, message in ((empty, "holds no text"), (long, "tokens long")):
        r = bench(str(art["manifest"]), "--text", str(path))
        assert r.returncode == 2 and message in r.stdout + r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
