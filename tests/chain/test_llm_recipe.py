"""Reading a ``task: generate`` recipe: its sections, the cross-section rules, and every bad value named by key.

Bad inputs tried: an unknown method, kind or format; a weight-only precision misspelt; socratic without a generations
file; a black-box teacher with a method that needs the model; on_policy without token-level KD; a quantize or validate
section (not used by generate); two teachers at once; a missing corpus or generations file; a .txt corpus; an odd
head size; a bench section without export.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgestill.chain.recipe import recipe_from_dict
from edgestill.errors import ConfigError, InputError


def _doc(**over):
    doc = {
        "name": "llm",
        "task": "generate",
        "data": {"corpus": "builtin", "problems": 200, "val": 8, "test": 16},
        "teacher": {"llama": {"layers": 2, "hidden": 64, "heads": 4}, "train": {"steps": 10}},
        "student": {"llama": {"layers": 1, "hidden": 32, "heads": 4}},
        "distill": {"method": "seq-kd", "steps": 10},
        "export": {"formats": ["onnx"], "precisions": ["fp32", "int4-weight"]},
    }
    for k, v in over.items():
        if v is None:
            doc.pop(k, None)
        else:
            doc[k] = v
    return doc


def test_a_generate_recipe_reads_into_its_configs():
    r = recipe_from_dict(_doc(bench={"threads": [1]}))
    assert r.is_llm and not r.is_text
    assert r.distill.method == "seq-kd" and r.distill.samples_teacher and not r.distill.uses_cache
    assert r.llm_export.precisions == ("fp32", "int4-weight")
    assert r.teacher.train.steps == 10 and r.student.llama.hidden == 32
    assert r.fingerprint("distill") != recipe_from_dict(_doc(distill={"method": "ground-truth", "steps": 10})).fingerprint("distill")


@pytest.mark.parametrize("over, key", [
    ({"distill": {"method": "seqkd"}}, "distill.method"),
    ({"distill": {"method": "token-kd", "kind": "kl"}}, "distill.kind"),
    ({"distill": {"method": "token-kd", "beta": 1.5}}, "distill.beta"),
    ({"distill": {"method": "token-kd", "top_k": 0}}, "distill.top_k"),
    ({"export": {"formats": ["onxx"]}}, "export.formats"),
    ({"export": {"formats": ["onnx"], "precisions": ["int4"]}}, "export.precisions"),
    ({"student": {"llama": {"layers": 1, "hidden": 30, "heads": 4}}}, "llama.hidden"),
    ({"distill": {"method": "seq-kd", "tempreature": 2}}, "distill.tempreature"),
    ({"quantize": {"max_accuracy_drop": 1}}, "quantize"),
    ({"validate": {"atol": 1}}, "validate"),
    ({"distill": {"method": "seq-kd", "on_policy": 0.5}}, "on_policy"),
    ({"distill": {"method": "socratic"}}, "socratic"),
    ({"teacher": {"hf": "t", "llama": {"layers": 1}}}, "exactly one"),
    ({"export": None, "bench": {"threads": [1]}}, "bench needs exported"),
    ({"data": {"corpus": "problems.txt"}}, "data.corpus"),
])
def test_bad_values_are_config_errors_naming_the_key(over, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("+", r"\+")):
        recipe_from_dict(_doc(**over))


def test_a_black_box_teacher_takes_only_the_socratic_method(tmp_path: Path):
    gen = tmp_path / "teacher.jsonl"
    gen.write_text('{"prompt": "Q: 1+1 ?\\nA:", "completion": " 1+1=2 #### 2"}\n')
    teacher = {"generations": "teacher.jsonl"}
    r = recipe_from_dict(_doc(teacher=teacher, distill={"method": "socratic", "steps": 5}), base_dir=tmp_path)
    assert r.teacher.black_box and r.teacher.generations == gen
    with pytest.raises(ConfigError, match="method socratic"):
        recipe_from_dict(_doc(teacher=teacher, distill={"method": "token-kd"}), base_dir=tmp_path)


@pytest.mark.parametrize("section, key, value", [
    ("data", "corpus", "missing.jsonl"),
    ("teacher", "generations", "missing.jsonl"),
])
def test_missing_files_are_input_errors(tmp_path: Path, section, key, value):
    doc = _doc()
    if section == "teacher":
        doc["teacher"] = {"generations": value}
        doc["distill"] = {"method": "socratic"}
    else:
        doc["data"] = {"corpus": value}
    with pytest.raises(InputError, match="does not exist"):
        recipe_from_dict(doc, base_dir=tmp_path)
