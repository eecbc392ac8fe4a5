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
    if recipe.teacher is not None and getattr(recipe.teacher, "predictions", None) is not None:
        assert recipe.teacher.predictions.is_file()  # resolved against the recipe's folder


def test_examples_cover_every_loss_family_black_box_born_again_and_a_full_run() -> None:
    recipes = [r for r in (load_recipe(p) for p in EXAMPLES) if not r.is_text and not r.is_llm]
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


# --- hardened loading: budgets, duplicate keys, types -------------------------------------------------------------

from edgestill.chain import recipe as recipe_mod  # noqa: E402
from edgestill.chain.recipe import MAX_ALIASES, MAX_DEPTH, MAX_RECIPE_BYTES, MAX_VALUES, parse_recipe_yaml  # noqa: E402


def test_duplicate_keys_are_refused_with_both_lines() -> None:
    with pytest.raises(ConfigError, match=r"duplicate key 'lr' at line 4 \(first at line 2\)"):
        parse_recipe_yaml("distill:\n  lr: 0.1\n  epochs: 2\n  lr: 0.5\n")
    # the same key in two different mappings is fine, and so is overriding a '<<' merge
    doc = parse_recipe_yaml("base: &b {lr: 0.1, epochs: 2}\na: {lr: 0.1}\nb: {lr: 0.2}\nc:\n  <<: *b\n  lr: 0.3\n")
    assert doc["c"] == {"lr": 0.3, "epochs": 2}


def test_alias_budget_allows_exactly_the_limit(tmp_path: Path) -> None:
    text = "x: &x 1\nys:\n" + "".join(f"  - *x\n" for _ in range(MAX_ALIASES))
    assert len(parse_recipe_yaml(text)["ys"]) == MAX_ALIASES
    with pytest.raises(ConfigError, match=rf"uses {MAX_ALIASES + 1} aliases \(e.g. \*x\); the limit is {MAX_ALIASES}"):
        parse_recipe_yaml(text + "  - *x\n")


def test_an_alias_bomb_is_refused_without_expanding_it() -> None:
    lines = ["a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    with pytest.raises(ConfigError, match=rf"expand to more than {MAX_VALUES:,} values"):
        parse_recipe_yaml("\n".join(lines))  # 9**9 values if expanded: this returns at once or not at all
    shallow = "\n".join(lines[:4])  # 9**4 = 6561 values: a large but honest document still loads
    assert len(parse_recipe_yaml(shallow)["d"]) == 9


def test_an_alias_inside_itself_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"alias \*d is used inside the value &d it names \(line 1\)"):
        parse_recipe_yaml("data: &d {builtin: x, again: *d}\n")
    doc = {"data": {"builtin": "synthetic-shapes"}}
    doc["data"]["me"] = doc["data"]  # the same through the Python API
    with pytest.raises(ConfigError, match=r"'data.me' contains itself"):
        recipe_from_dict(doc)


def test_nesting_is_limited_by_the_loader_and_by_recipe_from_dict() -> None:
    ok = "k: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    parse_recipe_yaml(ok)
    with pytest.raises(ConfigError, match=rf"nested more than {MAX_DEPTH} levels deep at line 1"):
        parse_recipe_yaml("k: " + "[" * 10_000 + "]" * 10_000)
    doc = base()
    deep: list = []
    doc["student"]["kwargs"]["x"] = deep
    for _ in range(MAX_DEPTH):
        deep.append([])
        deep = deep[0]
    with pytest.raises(ConfigError, match=r"'student.kwargs.x\[0\].*nested more than"):
        recipe_from_dict(doc)


def test_size_budget_is_checked_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(base()) + "#" * (MAX_RECIPE_BYTES - len(yaml.safe_dump(base()))))
    assert path.stat().st_size == MAX_RECIPE_BYTES
    load_recipe(path)  # exactly at the limit: fine
    with path.open("a") as f:
        f.write("#")
    with pytest.raises(InputError, match="larger than the 1 MiB limit"):
        load_recipe(path)


def test_files_that_are_not_recipes_say_what_they_are(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory"):
        load_recipe(tmp_path)
    for name, content in (("empty.yaml", b""), ("comments.yaml", b"# nothing\n"), ("blank.yaml", b"\n\n  \n")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ConfigError, match="is empty"):
            load_recipe(tmp_path / name)
    (tmp_path / "latin1.yaml").write_bytes(b"name: x\n# caf\xe9\n")
    with pytest.raises(InputError, match=r"not UTF-8 text \(byte 0xe9 on line 2\)"):
        load_recipe(tmp_path / "latin1.yaml")
    (tmp_path / "nul.yaml").write_bytes(b"name: x\nb: \x00\n")
    with pytest.raises(InputError, match=r"not valid YAML at line 2: character #x0000"):
        load_recipe(tmp_path / "nul.yaml")
    (tmp_path / "scalar.yaml").write_text("42\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping .* got int"):
        load_recipe(tmp_path / "scalar.yaml")
    for bad_value in ("2024-02-30", "1" + "0" * 5000):  # Python's own ValueError while YAML builds the value
        (tmp_path / "value.yaml").write_text(f"name: x\ndata:\n  seed: {bad_value}\n")
        with pytest.raises(InputError, match=r"not valid YAML at line 3, column 9: cannot read the value"):
            load_recipe(tmp_path / "value.yaml")
    (tmp_path / "two.yaml").write_text("a: 1\n---\nb: 2\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_recipe(tmp_path / "two.yaml")


def test_python_tags_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    for tag in ("!!python/object/apply:os.system", "!!python/name:os.system", "!!python/object/new:os.system"):
        with pytest.raises(InputError, match=f"tag:yaml.org,2002:{tag[2:]}"):
            parse_recipe_yaml(f"name: {tag} ['touch {marker}']\n")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["distill"].update(lr=float("nan")), "lr=nan is not valid; lr must be a number in (0, 10]"),
        (lambda d: d["distill"].update(epochs=float("inf")), "'distill.epochs' must be a whole number, got inf"),
        (lambda d: d.update(validate={"fp32": {"atol": float("nan")}}), ("validate", "atol", "finite", "nan")),
        (lambda d: d.update(validate={"int8": {"min_sqnr_db": float("inf")}}), ("validate", "min_sqnr_db", "finite", "inf")),
        (lambda d: d["student"]["kwargs"].update(width_mult=float("nan")), "'student.kwargs.width_mult' is not a finite"),
        (lambda d: d.update(export={"formats": ["onnx"]}, bench={"min_seconds": float("nan")}), "'bench.min_seconds' is not a finite"),
        (lambda d: d.update(export={"formats": ["onnx"]}, bench={"stability_max_seconds": float("inf")}), "'bench.stability_max_seconds' is not a finite"),
        (lambda d: d.update(export={"formats": ["onnx"]}, bench={"min_runs": 1.5}), "'bench.min_runs' must be a whole number, got 1.5"),
        (lambda d: d.update(export={"formats": ["onnx"]}, bench={"min_runs": "5"}), "'bench.min_runs' must be a whole number, got '5'"),
        (lambda d: d.update(export={"formats": ["onnx"]}, bench={"max_runs": True}), "'bench.max_runs' must be a whole number, got True"),
        (lambda d: d.update(export={"formats": ["onnx"]}, bench={"threads": [0]}), "bench.threads must be a list of whole numbers >= 1"),
        (lambda d: d.update(export={"formats": ["onnx"]}, bench={"threads": [-1]}), "bench.threads must be a list of whole numbers >= 1"),
        (lambda d: d.update(export={"formats": ["onnx"]}, bench={"threads": [True]}), "bench.threads must be a list of whole numbers >= 1"),
        (lambda d: d["student"].update(trust_checkpoint="yes"), "'student.trust_checkpoint' must be true or false, got 'yes'"),
        (lambda d: d["distill"]["losses"][0].update(name=["kd"]), "distill.losses[0].name must be a loss name, got ['kd']"),
        (lambda d: d["student"]["kwargs"].update({3: 1}), "'student.kwargs.3' is not text (YAML read it as int)"),
        (lambda d: d.update(name=b"x"), "'name' is binary data"),
        (lambda d: d["student"].update(checkpoint="a\x00b"), "'student.checkpoint' must be a path"),
        (lambda d: d["distill"].update(lr=10**400), "'distill.lr' is too large (401 digits)"),
        (lambda d: d["distill"]["losses"][0].update(weight=-(10**400)), "'distill.losses[0].weight' is too large"),
        (lambda d: d.update(gate={"max_model_bytes": 2**64 + 1}), "'gate.max_model_bytes' is too large"),
    ],
    ids=["lr-nan", "epochs-inf", "atol-nan", "sqnr-inf", "kwarg-nan", "min-seconds-nan", "stability-inf", "min-runs-1.5",
         "min-runs-text", "max-runs-bool", "threads-0", "threads-neg", "threads-bool", "trust-text", "loss-name-list",
         "int-key", "binary", "nul-path", "huge-lr", "huge-weight", "huge-bytes"],
)
def test_values_of_the_wrong_kind_name_the_key(edit, message: str | tuple[str, ...]) -> None:
    doc = base()
    edit(doc)
    with pytest.raises(ConfigError) as exc:
        recipe_from_dict(doc)
    for part in (message,) if isinstance(message, str) else message:
        assert part in str(exc.value)


def test_dates_and_sets_from_yaml_are_named(tmp_path: Path) -> None:
    text = yaml.safe_dump(base())
    (tmp_path / "date.yaml").write_text(text.replace("width_mult: 0.25", "width_mult: 0.25\n    2024-01-01: 1"))
    with pytest.raises(ConfigError, match=r"'student.kwargs.2024-01-01' is not text \(YAML read it as a date\)"):
        load_recipe(tmp_path / "date.yaml")
    (tmp_path / "set.yaml").write_text(text.replace("width_mult: 0.25", "width_mult: !!set {a, b}"))
    with pytest.raises(ConfigError, match=r"'student.kwargs.width_mult' is a set"):
        load_recipe(tmp_path / "set.yaml")


def test_builtin_recipes_go_through_the_same_loader(monkeypatch) -> None:
    monkeypatch.setattr(recipe_mod, "builtin_recipe_text", lambda name: "name: x\nname: y\n")
    with pytest.raises(ConfigError, match="built-in recipe demo has the duplicate key 'name' at line 2"):
        recipe_mod.builtin_recipe("demo")
