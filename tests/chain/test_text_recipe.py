"""Text recipes (task: text-classify | text-embed): their sections parse strictly, and bad input is refused with exit 2
before anything is written."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edgestill.chain.recipe import load_recipe, recipe_from_dict
from edgestill.chain.run import RunOptions, run_recipe
from edgestill.errors import ConfigError, InputError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def text_doc(task: str = "text-classify") -> dict:
    doc = {
        "name": "t", "task": task,
        "data": {"text": "builtin", "samples": 200},
        "teacher": {"hf_config": {"layers": 2, "hidden": 32, "heads": 2, "max_position": 64}, "train": {"epochs": 1}},
        "student": {"from_teacher": "every-other"},
        "distill": {"epochs": 1, "max_length": 24},
        "export": {"formats": ["onnx"], "max_length": 24},
    }
    if task == "text-embed":
        del doc["teacher"]["train"]
    return doc


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny classifier and embedder folder (max 32 tokens), built once."""
    from edgestill.data.text import generated_texts
    from edgestill.models.hf import make_tiny_hf

    root = tmp_path_factory.mktemp("hf")
    texts = generated_texts(200).texts
    return {task: make_tiny_hf(root / task, task=task, layers=1, hidden=32, heads=2, intermediate=32, max_position=32,
                               texts=texts) for task in ("classify", "embed")}


def test_both_examples_load_as_text_recipes() -> None:
    cls, emb = load_recipe(EXAMPLES / "text-classifier.yaml"), load_recipe(EXAMPLES / "text-embedder.yaml")
    assert (cls.task, emb.task) == ("text-classify", "text-embed")
    assert cls.distill.task == "classify" and emb.distill.task == "embed"
    assert cls.teacher.hf_config.layers == 4 and cls.teacher.hf_config.hidden == 128
    assert set(cls.export.formats) == {"onnx", "openvino", "tflite"} and cls.text_export.max_length == 32
    assert emb.data.builtin and emb.gate.min_teacher_cosine == 0.9


@pytest.mark.parametrize(
    ("where", "key", "message"),
    [
        ("data", "colum", "recipe key 'data.colum' is not valid. Did you mean 'column'?"),
        ("teacher", "hf_confg", "recipe key 'teacher.hf_confg' is not valid. Did you mean 'hf_config'?"),
        ("student", "layer", "recipe key 'student.layer' is not valid. Did you mean 'layers'?"),
        ("distill", "temprature", "recipe key 'distill.temprature' is not valid. Did you mean 'temperature'?"),
        ("distill", "mse_weight", "recipe key 'distill.mse_weight' is not valid."),  # an embedder's key, not a classifier's
        ("export", "max_lenght", "recipe key 'export.max_lenght' is not valid. Did you mean 'max_length'?"),
    ],
)
def test_an_unknown_key_under_a_text_section_names_its_path_and_the_closest(where: str, key: str, message: str) -> None:
    """Bad input: a misspelt key in each text section (and a key of the other task)."""
    doc = text_doc()
    doc[where][key] = 1
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")) as exc:
        recipe_from_dict(doc)
    assert "Valid keys under" in str(exc.value)


def test_the_teacher_config_keys_are_checked_too() -> None:
    """Bad input: an unknown key in teacher.hf_config and teacher.train; an unknown family; a misspelt task."""
    for path, value, message in ((("teacher", "hf_config", "layer"), 2, "'teacher.hf_config.layer' is not valid"),
                                 (("teacher", "train", "epoch"), 2, "'teacher.train.epoch' is not valid"),
                                 (("teacher", "hf_config", "family"), "gpt2", "family 'gpt2' is not valid")):
        doc = text_doc()
        doc[path[0]][path[1]][path[2]] = value
        with pytest.raises(ConfigError, match=message):
            recipe_from_dict(doc)
    with pytest.raises(ConfigError, match="Did you mean 'text-embed'"):
        recipe_from_dict({**text_doc(), "task": "text-embedd"})


def test_a_classifier_needs_labels_and_a_trained_teacher(tmp_path: Path) -> None:
    """Bad input: a .txt (no labels) for text-classify; an untrained hf_config classifier; a label column for embed."""
    notes = tmp_path / "notes.txt"
    notes.write_text("set an alarm\nplay jazz\n")
    doc = text_doc()
    doc["data"] = {"text": str(notes)}
    with pytest.raises(ConfigError, match="names no label column"):
        recipe_from_dict(doc)
    doc = text_doc()
    del doc["teacher"]["train"]
    with pytest.raises(ConfigError, match="add teacher.train"):
        recipe_from_dict(doc)
    csv = tmp_path / "t.csv"
    csv.write_text("text,label\nhi,a\n")
    doc = text_doc("text-embed")
    doc["data"] = {"text": str(csv), "column": "text", "label_column": "label"}
    with pytest.raises(ConfigError, match="data.label_column is not used"):
        recipe_from_dict(doc)


def test_a_sequence_longer_than_the_model_takes_is_refused(tiny_folders: dict[str, Path]) -> None:
    """Bad input: distill.max_length past hf_config.max_position; export.max_length past a teacher folder's maximum."""
    doc = text_doc()
    doc["distill"]["max_length"] = 100
    with pytest.raises(ConfigError, match=r"distill.max_length 100 is longer than the teacher takes \(64 tokens, teacher.hf_config.max_position"):
        recipe_from_dict(doc)
    doc = text_doc()
    doc["teacher"] = {"hf": str(tiny_folders["classify"])}
    doc["export"]["max_length"] = 48
    with pytest.raises(ConfigError, match=r"export.max_length 48 is longer than the teacher .* \(32 tokens"):
        recipe_from_dict(doc)
    doc["export"]["max_length"] = 32
    doc["distill"]["max_length"] = 16
    assert recipe_from_dict(doc).teacher.hf == tiny_folders["classify"]


@pytest.mark.parametrize("missing", ["model.safetensors", "tokenizer.json", "config.json"])
def test_a_teacher_folder_missing_weights_tokenizer_or_config_is_refused(missing: str, tiny_folders: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    """Bad input: a teacher folder without its weights, its tokenizer.json or its config.json."""
    import shutil

    folder = tmp_path / "teacher"
    shutil.copytree(tiny_folders["embed"], folder)
    (folder / missing).unlink()
    doc = text_doc("text-embed")
    doc["teacher"] = {"hf": str(folder)}
    doc["distill"]["max_length"] = doc["export"]["max_length"] = 16
    word = {"model.safetensors": "no weights", "tokenizer.json": "no tokenizer.json", "config.json": "no config.json"}
    with pytest.raises(InputError, match=word[missing]):
        recipe_from_dict(doc)


def test_a_classify_recipe_refuses_an_embedder_folder(tiny_folders: dict[str, Path]) -> None:
    """Bad input: task text-classify with a teacher folder that holds no sequence classifier."""
    doc = text_doc()
    doc["teacher"] = {"hf": str(tiny_folders["embed"])}
    doc["distill"]["max_length"] = doc["export"]["max_length"] = 16
    with pytest.raises(ConfigError, match="not a sequence classifier"):
        recipe_from_dict(doc)


def _bad_text_recipes(tmp_path: Path) -> dict[str, tuple[dict, str]]:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    csv = tmp_path / "intents.csv"
    csv.write_text("utterance,intent\nset an alarm,alarm\nplay jazz,music\n" * 10)
    embed = text_doc("text-embed")
    cls = text_doc()
    return {
        "empty": ({**copy.deepcopy(embed), "data": {"text": str(empty)}}, "holds no text"),
        "not-utf8": ({**copy.deepcopy(embed), "data": {"text": str(latin)}}, "is not UTF-8"),
        "no-column": ({**copy.deepcopy(cls), "data": {"text": str(csv), "column": "text", "label_column": "intent"}},
                      "has no column 'text'"),
    }


def test_bad_text_files_are_refused_before_the_output_folder_is_made(tmp_path: Path) -> None:
    """Bad input: an empty .txt, a .txt that is not UTF-8, a CSV without the named column (run_recipe, Python API)."""
    for name, (doc, message) in _bad_text_recipes(tmp_path).items():
        recipe = recipe_from_dict(doc)
        out = tmp_path / f"out-{name}"
        with pytest.raises(InputError, match=message):
            run_recipe(recipe, RunOptions(out_dir=out, db=None, cache_dir=tmp_path / "cache"))
        assert not out.exists(), name


def test_edgestill_run_exits_2_on_a_bad_text_file_and_writes_nothing(tmp_path: Path) -> None:
    """Bad input through the CLI: a CSV without the named column, and a missing text file; exit 2, one message, no
    traceback, no output folder."""
    doc, _ = _bad_text_recipes(tmp_path)["no-column"]
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(yaml.safe_dump(doc))
    missing = tmp_path / "missing.yaml"
    missing.write_text(yaml.safe_dump({**text_doc("text-embed"), "data": {"text": "nowhere.txt"}}))
    env = {**os.environ, "EDGESTILL_CACHE": str(tmp_path / "cache")}
    for path, message in ((recipe, "has no column 'text'"), (missing, "nowhere.txt does not exist")):
        out = tmp_path / f"out-{path.stem}"
        r = subprocess.run([sys.executable, "-m", "edgestill", "run", str(path), "--out", str(out), "--db",
                            str(tmp_path / "r.db")], capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 2, r.stderr
        assert message in r.stderr and "Traceback" not in r.stderr
        assert not out.exists() and not (tmp_path / "r.db").exists()


def test_the_recipe_hash_follows_the_text_sections() -> None:
    a = recipe_from_dict(text_doc())
    doc = text_doc()
    doc["distill"]["temperature"] = 4.0
    b = recipe_from_dict(doc)
    assert a.fingerprint("data", "teacher") == b.fingerprint("data", "teacher")
    assert a.fingerprint("distill") != b.fingerprint("distill")
    assert json.loads(json.dumps(a.raw))["task"] == "text-classify"


def test_a_text_longer_than_the_sequence_length_is_refused_with_the_recipe_key_to_change(tmp_path: Path) -> None:
    """Bad input: training texts longer than distill.max_length (no truncation asked); with truncate: true it runs."""
    doc = text_doc("text-embed")
    doc["data"]["samples"] = 40
    doc["distill"]["max_length"] = doc["export"]["max_length"] = 8
    with pytest.raises(InputError, match=r"tokens long.*distill\.truncate: true"):
        run_recipe(recipe_from_dict(doc), RunOptions(out_dir=tmp_path / "a", db=None, cache_dir=tmp_path / "c",
                                                     through="distill"))
    doc["distill"]["truncate"] = True
    report = run_recipe(recipe_from_dict(doc), RunOptions(out_dir=tmp_path / "b", db=None, cache_dir=tmp_path / "c",
                                                          through="distill"))
    assert report["student"]["teacher_cosine"] > 0 and report["data"]["input_shape"] == [8]


def test_a_labelled_csv_maps_label_names_to_the_teachers_classes(tmp_path: Path) -> None:
    """A CSV text + label column: names numbered in sorted order, or mapped to the teacher's id2label order; bad
    input: a label the teacher does not classify, and a label column with a blank cell (the rows would misalign)."""
    from edgestill.chain.text import TextDataConfig, load_text_data

    csv = tmp_path / "intents.csv"
    rows = [("set an alarm for six", "alarm"), ("play some jazz", "music"), ("wake me at noon", "alarm"),
            ("put on rock music", "music")] * 5
    csv.write_text("utterance,intent\n" + "".join(f"{t},{y}\n" for t, y in rows))
    cfg = TextDataConfig(text=csv, column="utterance", label_column="intent", test_fraction=0.2)
    data = load_text_data(cfg, "text-classify")
    assert data.class_names == ["alarm", "music"] and len(data.train) + len(data.val) + len(data.test) == 20
    by_text = dict(rows)
    assert all(data.class_names[y] == by_text[t] for t, y in zip(data.train.texts, data.train.labels.tolist()))
    mapped = load_text_data(cfg, "text-classify", label_names=["music", "weather", "alarm"])
    assert mapped.class_names == ["music", "weather", "alarm"]
    assert all(mapped.class_names[y] == by_text[t] for t, y in zip(mapped.test.texts, mapped.test.labels.tolist()))
    with pytest.raises(InputError, match=r"labels \['music'\] that the teacher does not classify"):
        load_text_data(cfg, "text-classify", label_names=["alarm", "timer"])
    csv.write_text("utterance,intent\n" + "".join(f"{t},{y}\n" for t, y in rows) + "turn on the lights,\n")
    with pytest.raises(InputError, match="every row needs a text and a label"):
        load_text_data(cfg, "text-classify")
    doc = text_doc()
    doc["data"] = {"text": str(csv), "column": "utterance", "label_column": "intent"}
    assert recipe_from_dict(doc).data.label_column == "intent"  # parsed; the blank label is found when it is read
