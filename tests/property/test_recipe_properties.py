"""Recipe parsing: whatever a YAML file or a Python dict holds, the result is a Recipe or a ConfigError/InputError
(exit 2), never another exception; a valid recipe's fingerprint does not depend on key order or on a YAML round trip.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from edgestill.chain.recipe import (
    Recipe,
    StudentConfig,
    TeacherConfig,
    _SECTIONS,
    load_recipe,
    parse_recipe_yaml,
    recipe_from_dict,
)
from edgestill.compress.distill.trainer import TrainConfig
from edgestill.data.loaders import DataConfig
from edgestill.errors import InputError  # ConfigError and UnknownNameError are InputErrors
from tests.property._settings import BOUNDED, FEW, MANY
from tests.property.helpers import key_paths

KNOWN_KEYS = sorted({*_SECTIONS, "losses", "name", "weight", "options", "temperature", "alpha", "pairs", "threads",
                     "formats", "precisions", "min_runs", "min_seconds", "fp32", "int8", "atol", "min_sqnr_db",
                     *(f.name for cls in (DataConfig, TrainConfig, TeacherConfig, StudentConfig)
                       for f in dataclasses.fields(cls))})

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.integers(), st.sampled_from([10**400, -(10**400), 2**64, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["kd", "onnx", "fp32", "int8-static", "synthetic-shapes", "quick", "resnet-teacher",
                     "mobilenetv2-student", "../x", "/etc/passwd", "", "a\x00b", "pkg.mod:fn", "auto"]),
)
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=8), st.integers(-2, 2), st.booleans(), st.none())
values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)),
    max_leaves=25,
)


def base() -> dict[str, Any]:
    return {
        "name": "prop",
        "data": {"builtin": "synthetic-shapes", "size": "quick", "seed": 0},
        "teacher": {"model": "resnet-teacher", "kwargs": {"width": 8}, "train": {"epochs": 1, "lr": 0.05}},
        "student": {"model": "mobilenetv2-student", "kwargs": {"width_mult": 0.25}},
        "distill": {"losses": [{"name": "kd", "weight": 1.0, "options": {"temperature": 4.0}}], "epochs": 1},
        "export": {"formats": ["onnx"], "precisions": ["fp32", "int8-static"]},
        "validate": {"fp32": {"atol": 0.001}},
        "quantize": {"calibration_samples": 10},
        "bench": {"threads": [1], "min_runs": 5},
        "gate": {"min_test_accuracy": 0.1},
    }


def _parse_or_refuse(doc: Any) -> Recipe | None:
    """recipe_from_dict's contract: a Recipe, or an InputError (ConfigError, UnknownNameError); nothing else."""
    try:
        return recipe_from_dict(doc)
    except InputError:
        return None


@MANY
@given(values)
def test_any_document_gives_a_recipe_or_a_config_error(doc: Any) -> None:
    _parse_or_refuse(doc)


@MANY
@given(st.data())
def test_any_single_change_to_a_valid_recipe_gives_a_recipe_or_a_config_error(data: st.DataObject) -> None:
    doc = base()
    path = data.draw(st.sampled_from(key_paths(doc)), label="path")
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    action = data.draw(st.sampled_from(["replace", "delete", "add"]), label="action")
    if action == "delete":
        del parent[path[-1]]
    elif action == "add" and isinstance(parent, dict):
        parent[data.draw(keys, label="key")] = data.draw(values, label="value")
    else:
        parent[path[-1]] = data.draw(values, label="value")
    recipe = _parse_or_refuse(doc)
    if recipe is not None:  # accepted: every number in it is finite and the fingerprint is computable
        assert len(recipe.fingerprint()) == 64


@MANY
@given(st.text(max_size=300))
def test_any_text_parses_or_is_refused_as_bad_input(text: str) -> None:
    try:
        parse_recipe_yaml(text)
    except InputError:
        pass


yaml_tokens = st.sampled_from(["a", "b", ":", " ", "\n", "  ", "- ", "&x ", "*x", "&y ", "*y", "[", "]", "{", "}", ",",
                               "!!python/object/apply:os.system ", "<<: ", ".nan", ".inf", "~", "'", '"', "#", "?",
                               "---\n", "!!binary ", "!!set ", "1", "2024-01-01", "\t", "|", ">"])


@MANY
@given(st.lists(yaml_tokens, max_size=60).map("".join))
def test_yaml_shaped_garbage_is_a_value_or_bad_input(text: str) -> None:
    try:
        parse_recipe_yaml(text)
    except InputError:
        pass


@FEW
@given(st.binary(max_size=400))
def test_any_file_bytes_load_or_are_refused_as_bad_input(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.yaml"
        path.write_bytes(content)
        try:
            load_recipe(path)
        except InputError:
            pass


valid_recipes = st.fixed_dictionaries({
    "epochs": st.integers(1, 50),
    "lr": st.floats(1e-4, 1.0),
    "seed": st.integers(0, 2**31 - 1),
    "losses": st.lists(st.sampled_from(["kd", "dkd", "ce"]), min_size=1, max_size=3, unique=True),
    "temperature": st.floats(0.5, 20.0),
    "formats": st.lists(st.sampled_from(["onnx", "tflite", "openvino"]), min_size=1, max_size=3, unique=True),
    "threads": st.lists(st.integers(1, 8), min_size=1, max_size=3, unique=True),
    "atol": st.floats(0.0, 1.0),
    "order_seed": st.randoms(use_true_random=False),
})


def _valid_doc(v: dict[str, Any]) -> dict[str, Any]:
    doc = base()
    doc["distill"] = {"losses": [{"name": n, "weight": 1.0} for n in v["losses"]], "epochs": v["epochs"],
                      "lr": v["lr"], "seed": v["seed"], "temperature": v["temperature"]}
    doc["export"] = {"formats": v["formats"], "precisions": ["fp32"]}
    doc["bench"] = {"threads": v["threads"], "min_runs": 5}
    doc["validate"] = {"fp32": {"atol": v["atol"]}}
    return doc


def _shuffled(d: Any, rnd: Any) -> Any:
    if isinstance(d, dict):
        items = list(d.items())
        rnd.shuffle(items)
        return {k: _shuffled(v, rnd) for k, v in items}
    if isinstance(d, list):
        return [_shuffled(x, rnd) for x in d]
    return d


@BOUNDED
@given(valid_recipes)
def test_a_valid_recipe_loads_and_its_fingerprint_survives_yaml_and_key_order(v: dict[str, Any]) -> None:
    doc = _valid_doc(v)
    with tempfile.TemporaryDirectory() as tmp:
        a = recipe_from_dict(copy.deepcopy(doc), base_dir=Path(tmp))
        path = Path(tmp) / "prop.yaml"
        path.write_text(yaml.safe_dump(_shuffled(doc, v["order_seed"]), sort_keys=False))
        b = load_recipe(path)
        again = load_recipe(path)
    assert a.fingerprint() == b.fingerprint() == again.fingerprint()
    for section in ("data", "teacher", "student", "distill", "export", "bench", "validate"):
        assert a.fingerprint(section) == b.fingerprint(section)
    assert b.distill.train.epochs == v["epochs"] and tuple(b.bench.threads) == tuple(v["threads"])
    assert [t.name for t in b.distill.losses] == v["losses"]


@BOUNDED
@given(valid_recipes, st.sampled_from([("distill", "epochs"), ("distill", "lr"), ("bench", "min_runs")]))
def test_the_fingerprint_follows_a_changed_value_only_in_its_section(v: dict[str, Any], where: tuple[str, str]) -> None:
    doc = _valid_doc(v)
    changed = copy.deepcopy(doc)
    section, key = where
    changed[section][key] = changed[section].get(key, 1) * 2
    a, b = recipe_from_dict(doc), recipe_from_dict(changed)
    assert a.fingerprint(section) != b.fingerprint(section)
    others = [s for s in ("data", "teacher", "student", "distill", "export", "bench") if s != section]
    assert a.fingerprint(*others) == b.fingerprint(*others)
