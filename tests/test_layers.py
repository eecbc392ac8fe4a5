"""Layers point down and nothing imports in a circle: checked on the package's source with ``ast``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.layers import cycles, import_graph, layer_of, upward_imports

SRC = Path(__file__).resolve().parents[1] / "src"


def test_every_module_has_a_layer() -> None:
    unplaced = []
    for mod in import_graph(SRC):
        try:
            layer_of(mod)
        except KeyError:
            unplaced.append(mod)
    assert not unplaced, f"modules missing from the layer order in tests/layers.py: {unplaced}"


def test_the_package_has_no_import_cycle() -> None:
    assert cycles(import_graph(SRC)) == []


def test_no_import_points_up_the_layer_order() -> None:
    assert upward_imports(import_graph(SRC)) == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / "edgestill" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def clean(tmp_path: Path) -> dict[str, str]:
    """A small tree shaped like the package that passes both checks."""
    return {
        "__init__.py": "",
        "errors.py": "",
        "runtimes/__init__.py": "",
        "runtimes/base.py": "from edgestill.errors import X\n",
        "export/__init__.py": "from edgestill.export.api import export\n",
        "export/api.py": "from edgestill.runtimes import base\n",
        "commands/__init__.py": "",
        "commands/run.py": "def f():\n    from edgestill.export import api\n",
    }


def test_the_checks_pass_a_clean_tree(tmp_path: Path, clean: dict[str, str]) -> None:
    graph = import_graph(_tree(tmp_path, clean))
    assert graph["edgestill.commands.run"] == {"edgestill.export.api"}
    assert cycles(graph) == []
    assert upward_imports(graph) == []


def test_a_cycle_is_caught_even_through_a_lazy_import(tmp_path: Path, clean: dict[str, str]) -> None:
    clean["runtimes/base.py"] += "def g():\n    from . import other\n"
    clean["runtimes/other.py"] = "from edgestill.runtimes.base import g\n"
    assert cycles(import_graph(_tree(tmp_path, clean))) == [["edgestill.runtimes.base", "edgestill.runtimes.other"]]


def test_an_upward_import_is_caught(tmp_path: Path, clean: dict[str, str]) -> None:
    clean["runtimes/base.py"] += "import edgestill.export.api\n"
    assert upward_imports(import_graph(_tree(tmp_path, clean))) == [
        "edgestill.runtimes.base (runtimes) -> edgestill.export.api (export)"]


def test_a_type_checking_import_counts(tmp_path: Path, clean: dict[str, str]) -> None:
    clean["errors.py"] = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from edgestill.commands import run\n"
    assert upward_imports(import_graph(_tree(tmp_path, clean))) == [
        "edgestill.errors (foundation) -> edgestill.commands.run (commands)"]

