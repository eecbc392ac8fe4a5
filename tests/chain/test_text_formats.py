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
