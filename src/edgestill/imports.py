"""The package's imports, read with ``ast`` (nothing is imported): which of its modules a file imports, lazy imports
inside functions and ``TYPE_CHECKING`` ones included. The layering test checks the graph with it; the SSH transport
computes the runner's import closure with it (what a device is sent)."""

from __future__ import annotations

import ast
from pathlib import Path


def module_files(src: Path, package: str = "edgestill") -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under ``src/package``."""
    mods = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def module_imports(path: Path, name: str, mods: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(the modules of ``mods`` that module ``name`` at ``path`` imports anywhere in its body, the top-level names of
    every import it makes, e.g. ``torch``)."""
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    deps: set[str] = set()
    tops: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # ``from pkg import sub`` imports the submodule; ``from mod import name`` imports mod
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod for a in node.names]
        for t in targets:
            tops.add(t.split(".")[0])
            while t and t not in mods:  # ``import a.b.c`` of a name inside a module: the module itself
                t = t.rpartition(".")[0]
            if t and t != name:
                deps.add(t)
    return deps, tops
