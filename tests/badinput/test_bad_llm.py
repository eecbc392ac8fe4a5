"""Bad input on the generative-model (causal LM) paths through the real CLI: ``run`` of a ``task: generate`` recipe,
``export --model CAUSAL_LM_DIR``, ``bench`` and ``estimate`` of an LLM artifact.

The bad inputs tried. Recipes: token-level KD between a teacher and a student folder with different tokenizers; a
black-box teacher's generations JSONL with a missing "completion" field, with non-UTF-8 bytes, and empty; an empty
corpus JSONL (also: is the message about data.corpus?); a corpus file that does not exist; the Socratic method
without a generations file; seq-kd from a generations file; a teacher folder without config.json; keys refused
before anything runs: data.max_new_tokens 0, data.problems -1, an unknown data key, no teacher, two students, hidden
not divisible by heads, a context of 8, an unknown distill.method or kind, top_k 0, alpha 3, a negative sampling
temperature, on_policy with seq-kd, a misspelt distill key, an activation-int8 precision, a text for a true/false
key. ``export --model``: an LLM eval .npz whose prompt is longer than the context, a precision a causal LM is not
made in (int8-static), a text-model option (--seq-len), a --tolerance override, an unknown format. ``bench --data``
of an LLM artifact: a prompt longer than the context, a prompt that fits but not with its new tokens, an .npz
missing prompt_ids, a prompt_len wider than prompt_ids, ids outside the vocabulary, max_new_tokens 0, float ids, a
prompt_len with fewer rows than prompt_ids; ``bench`` with ``--gen-tokens 1``, ``--prompt-tokens 0`` and with a
runtime that does not run the file. ``distill`` of a token-KD recipe with different tokenizers and of a Socratic one
without generations. Crafted LLM manifests given to ``bench``: a model_file and a files entry outside the folder, a
negative context length, a source.llm that is a string, an export whose genai_config.json was edited. ``estimate``
of an LLM artifact on an unknown device, with an unknown precision and with 0 threads.
Each must exit 2 with one paragraph naming the value, leave ``--out`` absent and store no measured row.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from edgestill.models.llm import build_char_tokenizer, make_tiny_llama
from tests.badinput.conftest import assert_bad_input, edgestill, no_artifacts

_TINY = {"layers": 1, "hidden": 32, "heads": 2, "kv_heads": 1, "intermediate": 64, "context_length": 64}
_MANIFEST = "ex/t-onnx-fp32.manifest.json"
_QUICK = ("--min-runs", "1", "--min-seconds", "0", "--db", "db/r.db")
_EXPORT = ("export", "--model", "t", "--formats", "onnx", "--precisions", "fp32", "--samples", "1", "--steps", "2",
           "--out", "out")


def _recipe(teacher: dict[str, str], student: dict[str, str], method: str, corpus: str = "builtin") -> str:
    """A tiny ``task: generate`` recipe (two training steps) as YAML."""
    return yaml.safe_dump({
        "name": "bad-llm", "task": "generate",
        "data": {"corpus": corpus, "problems": 40, "val": 2, "test": 4, "seed": 0, "max_new_tokens": 8},
        "teacher": teacher, "student": student,
        "distill": {"method": method, "steps": 2, "batch_size": 4, "lr": 0.003},
        "export": {"formats": ["onnx"], "precisions": ["fp32"]},
        "bench": {"threads": [1], "prompt_tokens": 8, "gen_tokens": 4},
    }, sort_keys=False)


_RECIPES: dict[str, str] = {
    "difftok.yaml": _recipe({"hf": "t"}, {"hf": "s"}, "token-kd"),
    "gen-missing.yaml": _recipe({"generations": "gen-missing.jsonl"}, {"hf": "s"}, "socratic"),
    "gen-latin.yaml": _recipe({"generations": "gen-latin.jsonl"}, {"hf": "s"}, "socratic"),
    "gen-empty.yaml": _recipe({"generations": "gen-empty.jsonl"}, {"hf": "s"}, "socratic"),
    "corpus-empty.yaml": _recipe({"hf": "t"}, {"hf": "t"}, "ground-truth", corpus="corpus-empty.jsonl"),
    "corpus-missing.yaml": _recipe({"hf": "t"}, {"hf": "t"}, "ground-truth", corpus="nothere.jsonl"),
    "socratic-no-gen.yaml": _recipe({"hf": "t"}, {"hf": "s"}, "socratic"),
    "seqkd-from-gen.yaml": _recipe({"generations": "gen-empty.jsonl"}, {"hf": "s"}, "seq-kd"),
    "teacher-no-config.yaml": _recipe({"hf": "nocfg"}, {"hf": "s"}, "seq-kd"),
}


def _edited(edit: Callable[[dict[str, Any]], None]) -> str:
    """A teacher-folder, built-student seq-kd recipe after ``edit(doc)``: for keys refused before anything runs."""
    doc = yaml.safe_load(_recipe({"hf": "t"}, {"llama": dict(_TINY)}, "seq-kd"))
    edit(doc)
    return yaml.safe_dump(doc, sort_keys=False)


def _set(section: str, **values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc[section].update(values)


_KEY_CASES: list[tuple[str, Callable[[dict[str, Any]], None], tuple[str, ...]]] = [
    ("max-new-tokens-0", _set("data", max_new_tokens=0), ("data.max_new_tokens", "got 0")),
    ("problems-negative", _set("data", problems=-1), ("data.problems", "got -1")),
    ("unknown-data-key", _set("data", difficulty="insane"), ("data.difficulty", "corpus")),
    ("no-teacher", lambda d: d.update(teacher={}), ("teacher", "exactly one", "got none")),
    ("two-students", _set("student", hf="s"), ("student", "exactly one", "llama, hf")),
    ("student-hidden-heads", lambda d: d["student"]["llama"].update(hidden=30, heads=4),
     ("llama.hidden 30", "heads 4")),
    ("student-context-8", lambda d: d["student"]["llama"].update(context_length=8), ("context_length", "got 8")),
    ("unknown-method", _set("distill", method="magic"), ("distill.method", "'magic'", "token-kd")),
    ("unknown-kd-kind", _set("distill", method="token-kd", kind="xyz"), ("distill.kind", "'xyz'", "fkl")),
    ("top-k-0", _set("distill", method="token-kd", top_k=0), ("distill.top_k", "got 0")),
    ("alpha-3", _set("distill", method="token-kd", alpha=3), ("distill.alpha", "got 3")),
    ("sample-temperature-negative", _set("distill", sample_temperature=-1), ("distill.sample_temperature", "-1")),
    ("on-policy-with-seq-kd", _set("distill", on_policy=0.5), ("distill.on_policy", "token-kd")),
    ("misspelt-distill-key", _set("distill", stepz=3), ("distill.stepz", "'steps'")),
    ("activation-int8-precision", _set("export", precisions=["int8-static"]), ("export.precisions", "int8-weight")),
    ("trust-as-text", _set("teacher", trust_checkpoint="yes"), ("teacher.trust_checkpoint", "true or false")),
]
_RECIPES.update({f"key-{cid}.yaml": _edited(edit) for cid, edit, _ in _KEY_CASES})

_JSONL: dict[str, bytes] = {
    "gen-missing.jsonl": b'{"prompt": "Q: 1+1\\nA:"}\n',
    "gen-latin.jsonl": b'{"prompt": "Q: caf\xe9\\nA:", "completion": " 2 #### 2"}\n',
    "gen-empty.jsonl": b"",
    "corpus-empty.jsonl": b"",
}


# Per case id: its working folder and the CLI's result.
Results = dict[str, tuple[Path, subprocess.CompletedProcess[str]]]


def _eval_npz(path: Path, length: int, **override: np.ndarray | None) -> None:
    """An LLM eval .npz (two prompts of ``length`` ids) with ``override`` replacing (None: dropping) arrays."""
    arrays: dict[str, np.ndarray | None] = {
        "prompt_ids": np.full((2, length), 5, np.int32), "prompt_len": np.array([length, length], np.int32),
        "answer_ids": np.array([[6, 7], [6, -1]], np.int32), "marker_ids": np.array([8, 8], np.int32),
        "strip_ids": np.array([9], np.int32), "max_new_tokens": np.array(8, np.int32), **override}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})


_NPZ: dict[str, Callable[[Path], None]] = {
    "long.npz": lambda p: _eval_npz(p, 100),
    "no-room.npz": lambda p: _eval_npz(p, 60, max_new_tokens=np.array(30, np.int32)),
    "no-prompt.npz": lambda p: _eval_npz(p, 10, prompt_ids=None),
    "wide-len.npz": lambda p: _eval_npz(p, 10, prompt_len=np.array([20, 3], np.int32)),
    "big-ids.npz": lambda p: _eval_npz(p, 10, prompt_ids=np.full((2, 10), 5000, np.int32)),
    "no-new.npz": lambda p: _eval_npz(p, 10, max_new_tokens=np.array(0, np.int32)),
    "float-ids.npz": lambda p: _eval_npz(p, 10, prompt_ids=np.full((2, 10), 5.5, np.float32)),
    "short-len.npz": lambda p: _eval_npz(p, 10, prompt_len=np.array([10], np.int32)),
}

# (id, CLI arguments, phrases the one-paragraph message must contain)
CASES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("kd-different-tokenizers", ("run", "difftok.yaml"), ("different tokenizers", "tokenizer_dir")),
    ("generations-missing-field", ("run", "gen-missing.yaml"), ("gen-missing.jsonl", "line 1", '"completion"')),
    ("generations-not-utf8", ("run", "gen-latin.yaml"), ("gen-latin.jsonl", "not UTF-8", "0xe9")),
    ("generations-empty", ("run", "gen-empty.yaml"), ("gen-empty.jsonl", "no rows")),
    ("corpus-empty", ("run", "corpus-empty.yaml"), ("corpus-empty.jsonl", "no rows")),
    pytest.param("corpus-empty-named", ("run", "corpus-empty.yaml"), ("data.corpus", "corpus-empty.jsonl")),
    ("corpus-missing", ("run", "corpus-missing.yaml"), ("data.corpus", "nothere.jsonl", "does not exist")),
    ("socratic-without-generations", ("run", "socratic-no-gen.yaml"), ("socratic", "teacher.generations")),
    ("seq-kd-from-generations", ("run", "seqkd-from-gen.yaml"), ("teacher.generations", "seq-kd", "socratic")),
    ("teacher-without-config", ("run", "teacher-no-config.yaml"), ("teacher.hf", "config.json")),
    ("export-prompt-over-context", (*_EXPORT, "--data", "long.npz"), ("100 tokens", "context of 64")),
    ("export-int8-static", ("export", "--model", "t", "--formats", "onnx", "--precisions", "int8-static",
                            "--out", "out"),
     ("int8-static", "causal LM", "int4-weight")),
    ("export-seq-len", ("export", "--model", "t", "--formats", "onnx", "--seq-len", "16", "--out", "out"),
     ("--seq-len", "causal LM")),
    ("export-unknown-format", ("export", "--model", "t", "--formats", "coreml", "--out", "out"), ("'coreml'", "onnx")),
    ("bench-prompt-over-context", ("bench", _MANIFEST, "--data", "long.npz", *_QUICK), ("100 tokens", "context of 64")),
    ("bench-no-room-for-new-tokens", ("bench", _MANIFEST, "--data", "no-room.npz", *_QUICK),
     ("60 tokens plus 30 new tokens", "context of 64")),
    ("bench-data-no-prompt-ids", ("bench", _MANIFEST, "--data", "no-prompt.npz", *_QUICK),
     ("prompt_ids", "eval_arrays")),
    ("bench-prompt-len-too-wide", ("bench", _MANIFEST, "--data", "wide-len.npz", *_QUICK), ("prompt_len", "20")),
    ("bench-ids-outside-vocab", ("bench", _MANIFEST, "--data", "big-ids.npz", *_QUICK), ("5000", "vocabulary")),
    ("bench-max-new-tokens-0", ("bench", _MANIFEST, "--data", "no-new.npz", *_QUICK), ("max_new_tokens", "0")),
    ("bench-float-ids", ("bench", _MANIFEST, "--data", "float-ids.npz", *_QUICK), ("prompt_ids", "float32", "integer")),
    ("bench-prompt-len-rows", ("bench", _MANIFEST, "--data", "short-len.npz", *_QUICK), ("prompt_len", "shape [1]")),
    ("bench-gen-tokens-1", ("bench", _MANIFEST, "--gen-tokens", "1", *_QUICK), ("gen", ">= 2", "got 1")),
    ("bench-runtime-cannot-run", ("bench", _MANIFEST, "--runtime", "litert", *_QUICK), ("litert", "KV-cache")),
    ("bench-prompt-tokens-0", ("bench", _MANIFEST, "--prompt-tokens", "0", *_QUICK), ("prompt", "got 0")),
    ("export-tolerance", (*_EXPORT, "--tolerance", "fp32.max_abs=1"), ("--tolerance", "causal LM")),
    *[(f"recipe-{cid}", ("run", f"key-{cid}.yaml"), phrases) for cid, _, phrases in _KEY_CASES],
    ("distill-different-tokenizers", ("distill", "difftok.yaml"), ("different tokenizers",)),
    ("distill-socratic-without-generations", ("distill", "socratic-no-gen.yaml"), ("socratic", "teacher.generations")),
    ("manifest-model-file-outside", ("bench", "ex/outside.manifest.json", *_QUICK), ("'../../etc/passwd'", "outside")),
    ("manifest-files-entry-outside", ("bench", "ex/outside-entry.manifest.json", *_QUICK), ("hostname", "outside")),
    ("manifest-context-negative", ("bench", "ex/negative-context.manifest.json", *_QUICK), ("source.llm.context_length", "-5")),
    pytest.param("manifest-llm-block-not-object", ("bench", "ex/llm-string.manifest.json", *_QUICK), ("source", "llm")),
    ("genai-config-tampered", ("bench", "tampered/t-onnx-fp32.manifest.json", *_QUICK),
     ("genai_config.json", "changed since it was exported")),
    ("estimate-unknown-device", ("estimate", _MANIFEST, "--device", "nope", "--db", "db/r.db"), ("'nope'",)),
    pytest.param("estimate-threads-0", ("estimate", _MANIFEST, "--device", "raspberry-pi-5", "--threads", "0",
                                        "--db", "db/r.db"), ("threads",)),
    pytest.param("estimate-unknown-precision", ("estimate", _MANIFEST, "--device", "raspberry-pi-5", "--precision",
                                                "int2", "--db", "db/r.db"), ("'int2'",)),
]


def _case_id(case: tuple | object) -> str:
    return case.values[0] if hasattr(case, "values") else case[0]  # type: ignore[union-attr,index]


def _case_args(case: tuple | object) -> tuple[str, ...]:
    return case.values[1] if hasattr(case, "values") else case[1]  # type: ignore[union-attr,index]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny causal-LM folders (teacher t, student s with another tokenizer, nocfg without config.json), the bad
    recipes, JSONL and .npz files, and the teacher exported to ONNX fp32 (ex/)."""
    root = tmp_path_factory.mktemp("llm-inputs")
    make_tiny_llama(root / "t", **_TINY)
    build_char_tokenizer(root / "tok-b", alphabet="0123456789+-*/=#;:QA \n")
    make_tiny_llama(root / "s", **_TINY, tokenizer_dir=root / "tok-b")
    (root / "nocfg").mkdir()
    (root / "nocfg" / "tokenizer.json").write_bytes((root / "t" / "tokenizer.json").read_bytes())
    for name, text in _RECIPES.items():
        (root / name).write_text(text, encoding="utf-8")
    for name, data in _JSONL.items():
        (root / name).write_bytes(data)
    for name, make in _NPZ.items():
        make(root / name)
    r = edgestill(*_EXPORT[:-1], "ex", cwd=root, timeout=600)
    assert r.returncode == 0 and (root / _MANIFEST).is_file(), r.stderr
    _crafted_manifests(root)
    return root


def _crafted_manifests(root: Path) -> None:
    """Manifests beside the real export that a user (or an attacker) could hand over, and a copy of the export whose
    genai_config.json was edited after export."""
    good = json.loads((root / _MANIFEST).read_text(encoding="utf-8"))
    crafted = {
        "outside": {**good, "model_file": "../../etc/passwd"},
        "outside-entry": {**good, "files": {**good["files"], "../../../etc/hostname": "0" * 64}},
        "negative-context": {**good, "source": {**good["source"],
                                                "llm": {**good["source"]["llm"], "context_length": -5}}},
        "llm-string": {**good, "source": {**good["source"], "llm": "x"}},
    }
    for name, doc in crafted.items():
        (root / "ex" / f"{name}.manifest.json").write_text(json.dumps(doc), encoding="utf-8")
    shutil.copytree(root / "ex", root / "tampered")
    (root / "tampered" / "t-onnx-fp32" / "genai_config.json").write_text("{}\n", encoding="utf-8")


def _run_case(root: Path, folder: Path, args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    """Run one case in its own folder: the inputs linked in, so ``--out``/``--db`` land in ``folder``."""
    for item in root.iterdir():
        (folder / item.name).symlink_to(item)
    extra = {"run": ("--out", "out", "--db", "db/r.db"), "distill": ("--out", "out")}.get(args[0], ())
    return edgestill(*args, *extra, cwd=folder, timeout=600, env={"HF_HUB_OFFLINE": "1"})


@pytest.fixture(scope="module")
def results(inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Results:
    """Every case run once, three CLI processes at a time."""
    folders = {_case_id(c): tmp_path_factory.mktemp(_case_id(c)) for c in CASES}
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {cid: pool.submit(_run_case, inputs, folders[cid], _case_args(c))
                   for c in CASES for cid in [_case_id(c)]}
    return {cid: (folders[cid], f.result()) for cid, f in futures.items()}


def _measured_rows(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        return con.execute("SELECT COUNT(*) FROM measurements WHERE kind = 'measured'").fetchone()[0]


@pytest.mark.parametrize(("case_id", "args", "phrases"), CASES, ids=[_case_id(c) for c in CASES])
def test_llm_paths_refuse_bad_input(results: Results, case_id: str,
                                    args: tuple[str, ...], phrases: tuple[str, ...]) -> None:
    folder, r = results[case_id]
    assert_bad_input(r, *phrases)
    assert not (folder / "out").exists(), "a refused command left its --out folder"
    assert _measured_rows(folder / "db" / "r.db") == 0
    assert no_artifacts(folder / "db")
