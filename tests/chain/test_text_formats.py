"""A text embedder through all three formats in one recipe: every file keeps the input names, the tokenizer and the
sequence length, and is scored on its own runtime against the teacher's embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgestill.chain.recipe import recipe_from_dict
from edgestill.chain.run import RunOptions, run_recipe


@pytest.mark.slow
def test_a_text_embedder_exports_to_onnx_openvino_and_tflite_and_each_file_is_scored(tmp_path: Path) -> None:
    doc = {
        "name": "emb3", "task": "text-embed",
        "data": {"text": "builtin", "samples": 200, "seed": 0},
        "teacher": {"hf_config": {"layers": 2, "hidden": 32, "heads": 2, "intermediate": 64, "max_position": 64}},
        "student": {"from_teacher": "every-other"},
        "distill": {"epochs": 1, "max_length": 24, "lr": 0.005, "batch_size": 16},
        "export": {"formats": ["onnx", "openvino", "tflite"], "precisions": ["fp32", "int8-dynamic"]},
        "bench": {"threads": [1], "min_runs": 5, "min_seconds": 0.02, "max_seconds": 1.0, "warmup_runs": 1},
    }
    out = tmp_path / "out"
    report = run_recipe(recipe_from_dict(doc), RunOptions(out_dir=out, db=None, cache_dir=tmp_path / "cache"))
    rows = {(r["format"], r["precision"]): r for r in report["artifacts"]}
    assert set(rows) == {(f, p) for f in ("onnx", "openvino", "tflite") for p in ("fp32", "int8-dynamic")}
    runtimes = {"onnx": "onnxruntime", "openvino": "openvino", "tflite": "litert"}
    student_cosine = report["student"]["teacher_cosine"]
    for (fmt, precision), row in rows.items():
        assert row["passed"], (fmt, precision, row.get("error"))
        assert row["runtime"] == runtimes[fmt] and len(row["measurements"]) == 1
        manifest = json.loads((out / row["manifest"]).read_text())
        assert [i["name"] for i in manifest["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
        assert all(i["shape"][1] == 24 for i in manifest["inputs"])
        assert (out / "artifacts" / manifest["source"]["text"]["tokenizer"]).is_file()
        tol = 1e-4 if precision == "fp32" else 0.02  # fp32 is the torch student; int8 within the quantize budget
        assert row["teacher_cosine"] == pytest.approx(student_cosine, abs=tol)
        assert 0 <= row["teacher_retrieval_agreement"] <= 1
    budget = [c for c in report["checks"] if c["name"] == "int8 mean cosine to the fp32 file within the quantize budget"]
    assert len(budget) == 3 and all(c["verdict"] == "pass" and c["measured"] >= c["threshold"] for c in budget)
    tflite = json.loads((out / rows[("tflite", "fp32")]["manifest"]).read_text())
    assert {i["dtype"] for i in tflite["inputs"]} == {"int32"}  # int64 ids recorded as int32 where the format needs it
    assert np.load(out / "checkpoints" / "teacher-test-outputs.npy").shape == (report["data"]["n_test"], 32)


@pytest.mark.slow
def test_a_text_classifier_through_three_formats_with_each_formats_int8_is_scored_and_timed(tmp_path: Path) -> None:
    """A classifier recipe asking fp32 and int8 (each format's own route): distil, export to ONNX, OpenVINO and TFLite,
    validate, score accuracy and teacher agreement on the held-out texts on each file's runtime, and time every file."""
    doc = {
        "name": "cls3", "task": "text-classify",
        "data": {"text": "builtin", "samples": 300, "seed": 0},
        "teacher": {"hf_config": {"layers": 2, "hidden": 64, "heads": 4, "intermediate": 128, "max_position": 64},
                    "train": {"epochs": 4, "lr": 0.005, "batch_size": 16}},
        "student": {"from_teacher": "every-other"},
        "distill": {"epochs": 2, "max_length": 24, "lr": 0.005, "batch_size": 16},
        "export": {"formats": ["onnx", "openvino", "tflite"], "precisions": ["fp32", "int8"]},
        "quantize": {"max_accuracy_drop": 25.0},  # a tiny model: the route is under test, not int8 accuracy
        "bench": {"threads": [1], "min_runs": 5, "min_seconds": 0.02, "max_seconds": 1.0, "warmup_runs": 1},
    }
    out = tmp_path / "out"
    report = run_recipe(recipe_from_dict(doc), RunOptions(out_dir=out, db=None, cache_dir=tmp_path / "cache"))
    rows = {r["format"]: [x for x in report["artifacts"] if x["format"] == r["format"]] for r in report["artifacts"]}
    assert set(rows) == {"onnx", "openvino", "tflite"} and all(len(v) == 2 for v in rows.values())
    int8 = {fmt: next(x for x in v if x["precision"] != "fp32") for fmt, v in rows.items()}
    assert int8["onnx"]["precision"] == "int8-dynamic" and int8["tflite"]["precision"] == "int8-dynamic"
    assert int8["openvino"]["precision"] in ("int8-static", "mixed")  # NNCF static; mixed if a layer stayed float
    for row in (r for v in rows.values() for r in v):
        assert row["passed"], (row["artifact"], row.get("error"))
        assert 0 <= row["test_accuracy"] <= 1 and 0 <= row["teacher_top1_agreement"] <= 1
        assert len(row["measurements"]) == 1 and row["measurements"][0]["p50_ms"] > 0
        manifest = json.loads((out / row["manifest"]).read_text())
        assert manifest["source"]["text"]["task"] == "classify"
        assert (out / "artifacts" / manifest["source"]["text"]["tokenizer"]).is_file()
    for v in rows.values():
        fp32 = next(x for x in v if x["precision"] == "fp32")
        assert abs(fp32["test_accuracy"] - report["student"]["test_accuracy"]) <= 1 / fp32["n_test"] + 1e-9
