"""Recipes: every example loads; unknown keys and bad values are ConfigErrors naming the key path and the choices."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgestill.errors import ConfigError, InputError
from edgestill.chain.recipe import load_recipe, recipe_from_dict

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))
FAMILIES = {"kd", "dkd", "fitnets", "at", "rkd", "pkt", "sp", "tfkd"}


def base() -> dict:
    return {
        "data": {"builtin": "synthetic-shapes", "size": "quick"},
        "teacher": {"model": "resnet-teacher", "kwargs": {"width": 8}, "train": {"epochs": 1}},
        "student": {"model": "mobilenetv2-student", "kwargs": {"width_mult": 0.25}},
        "distill": {"losses": [{"name": "kd"}], "epochs": 1},
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_recipe_loads(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.name == yaml.safe_load(path.read_text())["name"]
    if recipe.teacher is not None and recipe.teacher.predictions is not None:
        assert recipe.teacher.predictions.is_file()  # resolved against the recipe's folder


def test_examples_cover_every_loss_family_black_box_born_again_and_a_full_run() -> None:
    recipes = [load_recipe(p) for p in EXAMPLES]
    used = {t.name for r in recipes for t in r.distill.losses}
    assert FAMILIES <= used
    assert any(r.teacher is not None and r.teacher.black_box for r in recipes)
    assert any(r.distill.generations > 1 for r in recipes)
    assert any(r.export and r.bench and r.gate for r in recipes)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(distil={}), "recipe key 'distil' is not valid. Did you mean 'distill'?"),
        (lambda d: d["distill"].update(temprature=3), "recipe key 'distill.temprature' is not valid. Did you mean 'temperature'?"),
        (lambda d: d["data"].update(augmnt={}), "recipe key 'data.augmnt' is not valid. Did you mean 'augment'?"),
        (lambda d: d["data"].update(augment={"flipp": True}), "'data.augment.flipp' is not valid. Did you mean 'flip'?"),
        (lambda d: d["teacher"]["train"].update(epoch=2), "'teacher.train.epoch' is not valid. Did you mean 'epochs'?"),
        (lambda d: d.update(bench={"thread": [1]}), "'bench.thread' is not valid. Did you mean 'threads'?"),
        (lambda d: d.update(gate={"max_p90": 1}), "'gate.max_p90' is not valid. Did you mean 'max_p90_ms'?"),
        (lambda d: d["distill"]["losses"][0].update(name="kdd"), ("distill.losses: unknown loss", "'kdd'. Did you mean 'kd'?")),
        (lambda d: d["distill"]["losses"][0].update(options={"temprature": 2}), "unknown option 'temprature'. Did you mean 'temperature'?"),
    ],
    ids=["top", "distill", "data", "augment", "teacher-train", "bench", "gate", "loss-name", "loss-option"],
)
def test_unknown_keys_and_names_suggest_the_closest(edit, message) -> None:
    doc = base()
    edit(doc)
    with pytest.raises(ConfigError) as exc:
        recipe_from_dict(doc)
    for part in (message,) if isinstance(message, str) else message:
        assert part in str(exc.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["distill"].update(epochs=0), "distill: train config: epochs=0 is not valid; epochs must be a positive integer"),
        (lambda d: d["data"].update(size="huge"), "data.size 'huge' is not valid. Valid: default, quick"),
        (lambda d: d["distill"].update(teacher_mode="sometimes"), "distill.teacher_mode 'sometimes' is not valid"),
        (lambda d: d.update(export={"formats": ["onx"]}), "unknown value 'onx'. Did you mean 'onnx'?"),
        (lambda d: d.update(bench={"devices": ["pixel9"]}), "bench.devices: unknown device 'pixel9'"),
        (lambda d: d.update(gate={"min_test_accuracy": 70}), "gate.min_test_accuracy must be a number in [0, 1]"),
        (lambda d: d["teacher"].update(predictions="p.npz"), "teacher: give exactly one of model, program, predictions, artifact; got model, predictions"),
        (lambda d: d["teacher"].pop("train"), "teacher.model needs trained weights"),
        (lambda d: d["teacher"].update(checkpoint="t.safetensors"), "teacher.checkpoint (trained weights) or teacher.train"),
        (lambda d: d.pop("teacher"), "use kd, which learn from a teacher, but the recipe has no teacher section"),
        (lambda d: d.pop("student"), "recipe is missing section(s) student"),
        (lambda d: d["data"].update(npz="x.npz"), "data: give exactly one source of builtin, folder, npz, csv; got builtin, npz"),
        (lambda d: d.update(teacher={"predictions": "p.npz"}, distill={
            "losses": [{"name": "fitnets", "options": {"pairs": [["features.1", "features.1"]]}}], "epochs": 1}),
         "gives only its answers (a black-box teacher)"),
        (lambda d: d.update(teacher={"predictions": "p.npz"}) or d["data"].update(augment={"flip": True}),
         "black-box teacher (teacher.predictions) answered for the original images only"),
        (lambda d: d.update(bench={"threads": [1]}), "bench needs exported artifacts"),
    ],
    ids=["epochs", "size", "teacher-mode", "format", "device", "gate", "two-teachers", "untrained", "ckpt-and-train", "no-teacher",
         "no-student", "two-sources", "blackbox-features", "blackbox-augment", "bench-no-export"],
)
def test_bad_values_name_the_key_and_the_valid_choices(edit, message: str) -> None:
    doc = base()
    edit(doc)
    with pytest.raises(ConfigError) as exc:
        recipe_from_dict(doc)
    assert message in str(exc.value)


def test_shared_temperature_is_the_default_of_terms_that_do_not_set_their_own() -> None:
    doc = base()
    doc["distill"].update(temperature=2.0, losses=[{"name": "kd"}, {"name": "dkd", "options": {"temperature": 6.0}},
                                                   {"name": "ce"}])
    terms = recipe_from_dict(doc).distill.losses
    assert terms[0].resolved()["temperature"] == 2.0
    assert terms[1].resolved()["temperature"] == 6.0
    assert "temperature" not in terms[2].resolved()


def test_paths_are_relative_to_the_recipe_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    doc = base()
    doc["teacher"] = {"predictions": "preds/p.npz"}
    (tmp_path / "sub" / "r.yaml").write_text(yaml.safe_dump(doc))
    recipe = load_recipe(tmp_path / "sub" / "r.yaml")
    assert recipe.teacher.predictions == tmp_path / "sub" / "preds" / "p.npz"
    assert recipe.name == "r"


def test_unreadable_recipe_files_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("data:\n  builtin: [unclosed\n")
    with pytest.raises(InputError, match=r"not valid YAML at line \d+"):
        load_recipe(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_recipe(tmp_path / "list.yaml")
    (tmp_path / "obj.yaml").write_text("data: !!python/object:os.system {}\n")
    with pytest.raises(InputError, match="not valid YAML"):  # safe_load refuses python objects
        load_recipe(tmp_path / "obj.yaml")


def test_fingerprint_changes_only_with_its_sections() -> None:
    a = recipe_from_dict(base())
    doc = base()
    doc["bench"] = {"threads": [2]}
    doc["export"] = {"formats": ["onnx"]}
    b = recipe_from_dict(doc)
    assert a.fingerprint("teacher", "student", "distill") == b.fingerprint("teacher", "student", "distill")
    assert a.fingerprint("bench") != b.fingerprint("bench")
