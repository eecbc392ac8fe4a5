"""Bad text recipes (``task: text-classify`` and ``task: text-embed``) through the real CLI: ``edgestill run``.

The bad inputs tried: an unknown task; data.text that does not exist, is a folder, is a .json file, is not UTF-8,
is empty; a CSV without a label column for a classifier, with a misspelt column, with one class only, with only a
header, with a row shorter than the header, with too few texts to split; a label column for an embedder; a CSV
column named while data.text is 'builtin'; data.classes 1; data.samples 0; an unknown hf_config family; hidden not
divisible by heads (teacher and student); both hf and hf_config for the teacher; a teacher.hf folder that does not
exist, one holding a causal LM (not a text encoder), teacher.train with teacher.hf; an unknown student.from_teacher;
a configured student missing its sizes; export.max_length over the teacher's positions; a text for a true/false key
(export.dynamic_length, teacher.trust_checkpoint); distill.epochs 0, a negative lr, alpha 2; a misspelt distill key;
an unknown export format; a precision text models are not made in (int4-weight); gate.min_teacher_cosine 2. Each
must exit 2 with one paragraph naming the key or the file, write no --out folder and no results store, and train
nothing.
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgestill.models.llm import make_tiny_llama
from tests.badinput.conftest import assert_bad_input, edgestill, tree

Edit = Callable[[dict[str, Any]], None]


def _classifier() -> dict[str, Any]:
    return {
        "name": "bad-text", "task": "text-classify",
        "data": {"text": "builtin", "samples": 200, "classes": 4, "seed": 0},
        "teacher": {"hf_config": {"family": "bert", "layers": 2, "hidden": 32, "heads": 2, "intermediate": 64,
                                  "max_position": 64}, "train": {"epochs": 1}},
        "student": {"from_teacher": "every-other"},
        "distill": {"epochs": 1, "lr": 0.0005, "batch_size": 32, "max_length": 16},
        "export": {"formats": ["onnx"], "precisions": ["fp32"], "max_length": 16},
        "bench": {"threads": [1]},
    }


def _embedder() -> dict[str, Any]:
    doc = _classifier()
    doc["task"] = "text-embed"
    del doc["data"]["classes"], doc["teacher"]["train"]
    return doc


def _set(section: str, **values: Any) -> Edit:
    return lambda doc: doc[section].update(values)


def _replace(**values: Any) -> Edit:
    return lambda doc: doc.update(values)


# Per case id: its working folder, the CLI's result, the folder's files before the run.
Results = dict[str, tuple[Path, subprocess.CompletedProcess[str], dict[str, bytes]]]

# Data files each case may name (relative to its working folder).
_FILES: dict[str, bytes] = {
    "latin.txt": b"caf\xe9\n",
    "empty.txt": b"",
    "x.json": b"{}\n",
    "t.csv": b"text,label\nhello,a\nbye,b\n",
    "one.csv": b"text,label\nhello,a\nbye,a\nyo,a\n",
    "header.csv": b"text,label\n",
    "short.csv": b"text,label\nhello,a\nbye\n",
}

# (id, base recipe, edit, phrases the one-paragraph message must contain)
CASES: list[tuple[str, Callable[[], dict[str, Any]], Edit, tuple[str, ...]]] = [
    ("unknown-task", _classifier, _replace(task="text-generate"), ("task", "'text-generate'", "text-classify")),
    ("text-missing", _embedder, _set("data", text="nothere.txt"), ("data.text", "nothere.txt", "does not exist")),
    ("text-is-folder", _classifier, _set("data", text="adir"), ("data.text", "adir", ".txt or .csv")),
    ("text-is-json", _classifier, _set("data", text="x.json"), ("data.text", "x.json", ".txt or .csv")),
    ("text-not-utf8", _embedder, _set("data", text="latin.txt"), ("latin.txt", "not UTF-8", "0xe9")),
    ("text-empty", _embedder, _set("data", text="empty.txt"), ("empty.txt", "no text")),
    ("csv-no-label-column", _classifier, _set("data", text="t.csv", column="text"), ("text-classify", "label column")),
    ("csv-misspelt-column", _classifier, _set("data", text="t.csv", column="txt", label_column="label"),
     ("t.csv", "'txt'", "did you mean 'text'")),
    ("csv-one-class", _classifier, _set("data", text="one.csv", column="text", label_column="label"),
     ("one.csv", "one class", "at least 2")),
    ("csv-header-only", _classifier, _set("data", text="header.csv", column="text", label_column="label"),
     ("header.csv", "no text")),
    ("csv-short-row", _embedder, _set("data", text="short.csv", column="label"), ("short.csv", "row 3", "'label'")),
    ("csv-too-few-texts", _embedder, _set("data", text="t.csv", column="text"), ("2 texts", "too few", "at least 10")),
    ("embedder-label-column", _embedder, _set("data", text="t.csv", column="text", label_column="label"),
     ("text-embed", "data.label_column")),
    ("column-with-builtin", _classifier, _set("data", column="text"), ("data.column", "builtin")),
    ("classes-1", _classifier, _set("data", classes=1), ("data.classes", "got 1")),
    ("samples-0", _classifier, _set("data", samples=0), ("data.samples", "got 0")),
    ("unknown-family", _classifier, lambda d: d["teacher"]["hf_config"].update(family="gpt9"),
     ("teacher.hf_config.family", "'gpt9'", "bert")),
    ("teacher-hidden-heads", _classifier, lambda d: d["teacher"]["hf_config"].update(hidden=30, heads=4),
     ("hidden 30", "heads 4")),
    ("teacher-hf-and-config", _classifier, _set("teacher", hf="t"), ("teacher", "exactly one", "hf_config")),
    ("teacher-hf-missing", _embedder, _replace(teacher={"hf": "nothere"}), ("teacher.hf", "nothere", "does not exist")),
    ("teacher-hf-causal-lm", _embedder, _replace(teacher={"hf": "llama"}), ("teacher.hf", "'llama'", "bert")),
    ("teacher-hf-with-train", _classifier, _replace(teacher={"hf": "llama", "train": {"epochs": 1}}),
     ("teacher.train", "teacher.hf")),
    ("student-from-unknown", _classifier, _set("student", from_teacher="every-third"),
     ("student.from_teacher", "'every-third'", "every-other")),
    ("student-missing-sizes", _classifier, _replace(student={"layers": 1}), ("student", "hidden, heads missing")),
    ("student-hidden-heads", _classifier, _replace(student={"layers": 1, "hidden": 30, "heads": 4}),
     ("student.hidden 30", "student.heads 4")),
    ("max-length-over-positions", _classifier, _set("export", max_length=1000),
     ("export.max_length 1000", "64")),
    ("dynamic-length-text", _classifier, _set("export", dynamic_length="yes"),
     ("export.dynamic_length", "true or false")),
    ("trust-checkpoint-text", _classifier, _set("teacher", trust_checkpoint="yes"),
     ("teacher.trust_checkpoint", "true or false")),
    ("epochs-0", _classifier, _set("distill", epochs=0), ("epochs", "0")),
    ("lr-negative", _classifier, _set("distill", lr=-1), ("lr", "-1")),
    ("alpha-2", _classifier, _set("distill", alpha=2), ("alpha", "[0, 1]")),
    ("misspelt-key", _classifier, _set("distill", temprature=2), ("distill.temprature", "temperature")),
    ("unknown-format", _classifier, _set("export", formats=["coreml"]), ("export.formats", "'coreml'")),
    ("weight-only-precision", _classifier, _set("export", precisions=["int4-weight"]),
     ("export.precisions", "'int4-weight'")),
    ("gate-cosine-over-1", _embedder, _replace(gate={"min_teacher_cosine": 2}), ("gate.min_teacher_cosine", "got 2")),
]


def _run_case(folder: Path, llama: Path, make: Callable[[], dict[str, Any]], edit: Edit,
              ) -> tuple[subprocess.CompletedProcess[str], dict[str, bytes]]:
    """Write the recipe and the data files into ``folder`` and run it there; the result and the files before it."""
    doc = copy.deepcopy(make())
    edit(doc)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    for name, data in _FILES.items():
        (folder / name).write_bytes(data)
    (folder / "adir").mkdir()
    (folder / "llama").symlink_to(llama)
    before = tree(folder)
    r = edgestill("run", "recipe.yaml", "--out", "out", "--db", "db/r.db", cwd=folder, timeout=300,
                  env={"HF_HUB_OFFLINE": "1", "EDGESTILL_CACHE": str(folder / "cache")})
    return r, before


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    """Every case run once, four CLI processes at a time (a refused recipe is mostly interpreter start-up)."""
    llama = make_tiny_llama(tmp_path_factory.mktemp("llama") / "llama", layers=1, hidden=32, heads=2, kv_heads=1,
                            intermediate=64, context_length=64)
    folders = {c[0]: tmp_path_factory.mktemp(c[0]) for c in CASES}
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {cid: pool.submit(_run_case, folders[cid], llama, make, edit) for cid, make, edit, _ in CASES}
    return {cid: (folders[cid], *f.result()) for cid, f in futures.items()}


@pytest.mark.parametrize(("case_id", "phrases"), [(c[0], c[3]) for c in CASES], ids=[c[0] for c in CASES])
def test_run_refuses_a_bad_text_recipe(results: Results,
                                       case_id: str, phrases: tuple[str, ...]) -> None:
    folder, r, before = results[case_id]
    assert_bad_input(r, *phrases)
    assert tree(folder) == before, "a refused recipe changed or added files"
    assert not (folder / "out").exists() and not (folder / "db").exists() and not (folder / "cache").exists()
