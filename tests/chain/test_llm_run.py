"""Generate recipes end to end through run_recipe on tiny configs: a Llama teacher trained on the built-in corpus, a
student by token-level KD from the teacher's offline top-k cache, exported with a KV cache (ONNX fp32 and weight-only
int8), validated against torch, scored by exact match on its runtime, timed (TTFT, decode tokens/s) and stored; a
rerun redoes nothing. And the Socratic route: a student from a black-box teacher's JSONL, no teacher weights.
(Sequence-level KD needs a teacher good enough to verify its traces: tests/distill/test_llm_distill.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgestill.benchmarks.store import ResultsStore
from edgestill.chain.recipe import recipe_from_dict
from edgestill.chain.run import RunOptions, run_recipe

TINY = {"layers": 2, "hidden": 32, "heads": 2, "kv_heads": 1, "intermediate": 64, "context_length": 96}


def recipe(**over: dict) -> dict:
    doc = {
        "name": "llm-tiny", "task": "generate",
        "data": {"corpus": "builtin", "problems": 64, "val": 3, "test": 6, "seed": 0, "max_new_tokens": 40},
        "teacher": {"llama": TINY, "train": {"steps": 30, "batch_size": 16, "lr": 0.01}},
        "student": {"llama": {**TINY, "layers": 1}},  # ONNX GQA needs a head size of 16k
        "distill": {"method": "token-kd", "steps": 10, "batch_size": 16, "lr": 0.01, "top_k": 8},
        "export": {"formats": ["onnx"], "precisions": ["fp32", "int8-weight"], "validate_tokens": 8},
        "bench": {"threads": [1], "prompt_tokens": 8, "gen_tokens": 8},
    }
    doc.update(over)
    return doc


def test_a_generate_recipe_runs_end_to_end_and_a_rerun_resumes(tmp_path: Path) -> None:
    out, db, cache = tmp_path / "out", tmp_path / "r.db", tmp_path / "cache"
    report = run_recipe(recipe_from_dict(recipe()), RunOptions(out_dir=out, db=db, cache_dir=cache))

    assert report["task"] == "generate" and report["data"]["n_test"] == 6
    teacher, student = report["teacher"], report["student"]
    assert teacher["source"] == "llama" and teacher["cache"] == "miss" and 0 <= teacher["test_exact_match"] <= 1
    assert student["method"] == "token-kd" and 0 <= student["test_exact_match"] <= 1
    assert (out / "checkpoints" / "teacher-topk").is_dir()  # the offline cache the student trained from
    assert (out / "checkpoints" / "student" / "tokenizer.json").is_file()
    eval_npz = np.load(out / "checkpoints" / "test-eval.npz")
    assert len(eval_npz["prompt_len"]) == 6 and "teacher_answer_ids" in eval_npz.files
    rows = {r["artifact"]: r for r in report["artifacts"]}
    assert set(rows) == {"student-onnx-fp32", "student-onnx-int8-weight"}
    fp32 = rows["student-onnx-fp32"]
    assert fp32["passed"], fp32.get("reasons")
    manifest = json.loads((out / fp32["manifest"]).read_text())
    assert manifest["precision"] == "fp32" and manifest["source"]["llm"]["vocab_size"] > 0
    # the same model on its runtime: greedy decoding gives the torch student's exact match
    assert fp32["test_accuracy"] == student["test_exact_match"] and fp32["accuracy_drop_points"] == 0
    with ResultsStore(db) as store:
        stored = store.measurements(report["store"]["run_id"])
    timed = {m["artifact"]: m for m in stored}
    assert "student-onnx-fp32" in timed
    m = timed["student-onnx-fp32"]
    assert m["ttft_ms"] > 0 and m["decode_tokens_per_s"] > 0 and m["generated_tokens"] == 8
    assert m["accuracy"]["metric"] == "exact_match"
    md = (out / "report.md").read_text()
    assert "(generate)" in md

    again = run_recipe(recipe_from_dict(recipe()), RunOptions(out_dir=out, db=db, cache_dir=cache))
    assert {k: v["status"] for k, v in again["stages"].items()} == {
        "distill": "skipped (unchanged)", "export": "skipped (unchanged)", "bench": "skipped (unchanged)"}
    assert again["store"]["reused"] is True


def test_a_socratic_recipe_learns_from_a_black_box_teachers_generations(tmp_path: Path) -> None:
    from edgestill.data.reasoning import splits

    train = splits(64, 3, 6, seed=0)["train"]
    rows = [{"prompt": p.prompt, "completion": p.solution} for p in train]
    rows[0]["completion"] = rows[0]["completion"].rsplit("####", 1)[0] + "#### -1"  # a wrong answer: dropped
    (tmp_path / "teacher.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    doc = recipe(teacher={"generations": "teacher.jsonl"},
                 distill={"method": "socratic", "steps": 10, "batch_size": 16, "lr": 0.01},
                 export={"formats": ["onnx"], "precisions": ["fp32"], "validate_tokens": 8})
    doc.pop("bench")
    out = tmp_path / "out"
    report = run_recipe(recipe_from_dict(doc, base_dir=tmp_path), RunOptions(out_dir=out, db=None, cache_dir=tmp_path))
    assert report["teacher"]["black_box"] is True
    traces = report["student"]["traces"]
    assert traces["kept"] == len(rows) - 1, traces
    (row,) = report["artifacts"]
    assert row["passed"] and row["test_accuracy"] == report["student"]["test_exact_match"]
    assert "teacher_answer_ids" not in np.load(out / "checkpoints" / "test-eval.npz").files


def test_on_policy_token_kd_keeps_the_teacher_loaded_and_samples_the_student(tmp_path: Path) -> None:
    """distill.on_policy > 0: the objective scores the student's own samples with the loaded teacher (no cache)."""
    doc = recipe(distill={"method": "token-kd", "steps": 4, "batch_size": 8, "lr": 0.01, "on_policy": 0.5})
    doc.pop("export")
    doc.pop("bench")
    out = tmp_path / "out"
    report = run_recipe(recipe_from_dict(doc), RunOptions(out_dir=out, db=None, cache_dir=tmp_path / "cache"))
    assert report["student"]["method"] == "token-kd" and report["student"]["train"]["steps"] == 4
    assert not (out / "checkpoints" / "teacher-topk").exists()
    assert any("on-policy" in line for line in report["log"])
