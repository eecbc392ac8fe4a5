"""Text recipes end to end through run_recipe: a classifier and an embedder are distilled, exported, scored on their
own runtime, timed and stored; a rerun resumes without retraining."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgestill.benchmarks.store import ResultsStore
from edgestill.chain.recipe import recipe_from_dict
from edgestill.chain.run import RunOptions, run_recipe

QUICK_BENCH = {"threads": [1], "min_runs": 5, "min_seconds": 0.02, "max_seconds": 1.0, "warmup_runs": 1}


def recipe(task: str, **sections: dict) -> dict:
    doc = {
        "name": task, "task": task,
        "data": {"text": "builtin", "samples": 300, "seed": 0},
        "teacher": {"hf_config": {"layers": 2, "hidden": 32, "heads": 2, "intermediate": 64, "max_position": 64}},
        "student": {"from_teacher": "every-other"},
        "distill": {"epochs": 1, "max_length": 24, "lr": 0.005, "batch_size": 16},
        "export": {"formats": ["onnx"], "precisions": ["fp32"]},
        "bench": QUICK_BENCH,
    }
    if task == "text-classify":
        doc["teacher"]["train"] = {"epochs": 4, "lr": 0.005, "batch_size": 16}
    doc.update(sections)
    return doc


def test_a_text_classifier_runs_end_to_end_and_a_rerun_resumes(tmp_path: Path) -> None:
    doc = recipe("text-classify", export={"formats": ["onnx"], "precisions": ["fp32", "int8-dynamic"]},
                 gate={"max_accuracy_drop_points": 5.0})
    out, db, cache = tmp_path / "out", tmp_path / "r.db", tmp_path / "cache"
    report = run_recipe(recipe_from_dict(doc), RunOptions(out_dir=out, db=db, cache_dir=cache))

    assert report["task"] == "text-classify" and report["data"]["n_test"] == 60 and report["data"]["num_classes"] == 4
    teacher, student = report["teacher"], report["student"]
    assert teacher["source"] == "hf_config" and teacher["cache"] == "miss"
    assert teacher["test_accuracy"] >= 0.5  # learnt the generated intents (chance: 0.25)
    assert student["parameters"] < teacher["parameters"] and 0 <= student["test_accuracy"] <= 1
    assert (out / "checkpoints" / "student" / "config.json").is_file()
    assert (out / "checkpoints" / "student" / "tokenizer.json").is_file()
    rows = {r["artifact"]: r for r in report["artifacts"]}
    assert set(rows) == {"student-onnx-fp32", "student-onnx-int8-dynamic"}
    for name, row in rows.items():
        assert row["passed"], row.get("error")
        assert row["runtime"] == "onnxruntime" and row["n_test"] == 60
        assert 0 <= row["test_accuracy"] <= 1 and 0 <= row["teacher_top1_agreement"] <= 1 and row["teacher_kl"] >= 0
        manifest = json.loads((out / row["manifest"]).read_text())
        assert [i["name"] for i in manifest["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
        assert manifest["inputs"][0]["shape"][1] == 24
        tokenizer = manifest["source"]["text"]["tokenizer"]
        assert (out / "artifacts" / tokenizer).is_file() and manifest["source"]["text"]["task"] == "classify"
    fp32 = rows["student-onnx-fp32"]
    assert abs(fp32["test_accuracy"] - student["test_accuracy"]) <= 1 / 60 + 1e-9  # the same model on its runtime
    assert rows["student-onnx-int8-dynamic"]["quantization"]["budget_met"] is True
    assert all(c["verdict"] == "pass" for c in report["checks"]), report["checks"]
    md = (out / "report.md").read_text()
    assert "(text-classify)" in md and "| student-onnx-int8-dynamic | int8-dynamic | onnxruntime | pass |" in md
    with ResultsStore(db) as store:
        stored = store.measurements(report["store"]["run_id"])
    assert {m["artifact"] for m in stored} == set(rows)
    for m in stored:
        assert m["accuracy"]["value"] == pytest.approx(rows[m["artifact"]]["test_accuracy"])
        assert m["teacher_top1_agreement"] == pytest.approx(rows[m["artifact"]]["teacher_top1_agreement"])
        assert m["teacher_cosine"] is None and m["p50_ms"] > 0

    sha = (out / "checkpoints" / "student" / "model.safetensors").read_bytes()
    again = run_recipe(recipe_from_dict(doc), RunOptions(out_dir=out, db=db, cache_dir=cache))
    assert {k: v["status"] for k, v in again["stages"].items()} == {
        "distill": "skipped (unchanged)", "export": "skipped (unchanged)", "bench": "skipped (unchanged)"}
    assert (out / "checkpoints" / "student" / "model.safetensors").read_bytes() == sha
    assert again["student"]["sha256"] == student["sha256"] and again["store"]["reused"] is True

    doc["distill"]["temperature"] = 4.0  # a new distill setting: the cached teacher is reused, the student retrained
    third = run_recipe(recipe_from_dict(doc), RunOptions(out_dir=tmp_path / "out3", db=None, cache_dir=cache, through="distill"))
    assert third["teacher"]["cache"] == "hit" and third["stages"]["distill"]["status"] == "ran"
    assert third["artifacts"] == [] and not (tmp_path / "out3" / "artifacts").exists()


def test_a_text_embedder_runs_end_to_end_with_cosine_and_retrieval_agreement(tmp_path: Path) -> None:
    """An embedder exported with a dynamic sequence length, scored by cosine and retrieval agreement, gated."""
    doc = recipe("text-embed", distill={"epochs": 2, "max_length": 24, "lr": 0.005, "batch_size": 16},
                 export={"formats": ["onnx"], "dynamic_length": True},
                 gate={"min_teacher_cosine": 0.5, "min_teacher_retrieval_agreement": 1.0})
    out, db = tmp_path / "out", tmp_path / "r.db"
    report = run_recipe(recipe_from_dict(doc), RunOptions(out_dir=out, db=db, cache_dir=tmp_path / "cache"))

    assert report["task"] == "text-embed" and report["data"]["labelled"] is False and report["data"]["num_classes"] == 0
    s = report["student"]
    assert s["test_accuracy"] is None and 0.5 < s["teacher_cosine"] <= 1 and s["retrieval_k"] == 5
    (row,) = report["artifacts"]
    assert row["passed"] and row["test_accuracy"] is None and row["teacher_top1_agreement"] is None
    assert row["teacher_cosine"] == pytest.approx(s["teacher_cosine"], abs=1e-4)  # fp32 file = torch student
    assert 0 <= row["teacher_retrieval_agreement"] <= 1 and row["retrieval_k"] == 5
    manifest = json.loads((out / row["manifest"]).read_text())
    assert manifest["source"]["text"]["task"] == "embed" and manifest["outputs"][0]["shape"][-1] == 32
    assert manifest["source"]["text"]["dynamic_length"] is True  # export.dynamic_length: a symbolic sequence dim
    assert all(isinstance(i["shape"][1], str) for i in manifest["inputs"])
    teacher_out = np.load(out / "checkpoints" / "teacher-test-outputs.npy")
    assert teacher_out.shape == (60, 32)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["mean cosine to the teacher's embeddings"]["verdict"] == "pass"
    retrieval = checks["top-5 retrieval agreement with the teacher"]
    assert retrieval["verdict"] == ("pass" if row["teacher_retrieval_agreement"] >= 1.0 else "fail")
    md = (out / "report.md").read_text()
    assert "(text-embed)" in md and "cosine to teacher" in md and "no accuracy or top-1" in md
    with ResultsStore(db) as store:
        (m,) = store.measurements(report["store"]["run_id"])
    assert m["teacher_cosine"] == pytest.approx(row["teacher_cosine"])
    assert m["teacher_retrieval_agreement"] == pytest.approx(row["teacher_retrieval_agreement"]) and m["retrieval_k"] == 5
    assert m["accuracy"] is None and m["teacher_top1_agreement"] is None

