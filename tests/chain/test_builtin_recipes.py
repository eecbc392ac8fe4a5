"""The demo is a built-in recipe: shown as YAML, parsed as any recipe file is, overridable from the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgestill.chain.recipe import BUILTIN_RECIPES, builtin_recipe, builtin_recipe_text, load_recipe, with_bench_threads
from edgestill.errors import ConfigError, UnknownNameError


@pytest.mark.parametrize("name", BUILTIN_RECIPES)
def test_a_built_in_recipe_saved_to_a_file_is_the_same_recipe(name: str, tmp_path: Path) -> None:
    path = tmp_path / "copy.yaml"
    path.write_text(builtin_recipe_text(name))
    from_file, builtin = load_recipe(path), builtin_recipe(name)
    assert from_file.name == builtin.name == name
    assert from_file.fingerprint() == builtin.fingerprint()
    assert from_file.export == builtin.export and from_file.quantize == builtin.quantize
    assert from_file.gate == builtin.gate and from_file.bench == builtin.bench


def test_the_demo_recipe_states_the_demo_checks() -> None:
    demo = builtin_recipe("demo")
    assert demo.distill.baseline and demo.teacher is not None
    assert set(demo.export.formats) == {"onnx", "tflite", "openvino"}
    assert set(demo.export.precisions) == {"fp32", "int8-static"}
    assert demo.gate.int8_faster_than_fp32 and demo.gate.min_fp32_top1_agreement == 1.0
    assert demo.gate.min_kd_gain_points is not None


def test_unknown_built_in_recipe_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'demo'"):
        builtin_recipe("dmeo")


def test_threads_override_changes_the_bench_cells_and_the_recipe_hash() -> None:
    demo = builtin_recipe("demo")
    two = with_bench_threads(demo, (1, 2))
    assert two.bench.threads == (1, 2) and two.bench.timing == demo.bench.timing
    assert two.fingerprint() != demo.fingerprint() and two.fingerprint("distill") == demo.fingerprint("distill")
    no_export = builtin_recipe("demo").__class__(**{**demo.__dict__, "export": None, "bench": None})
    with pytest.raises(ConfigError, match="no export section"):
        with_bench_threads(no_export, (1,))


def test_recipes_cli_lists_and_shows(tmp_path: Path) -> None:
    listed = subprocess.run([sys.executable, "-m", "edgestill", "recipes", "list"], capture_output=True, text=True)
    assert listed.returncode == 0 and listed.stdout.split() == list(BUILTIN_RECIPES)
    shown = subprocess.run([sys.executable, "-m", "edgestill", "recipes", "show", "demo"], capture_output=True, text=True)
    assert shown.returncode == 0 and shown.stdout == builtin_recipe_text("demo")
    bad = subprocess.run([sys.executable, "-m", "edgestill", "recipes", "show", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown built-in recipe 'nope'" in bad.stderr and "Traceback" not in bad.stderr
