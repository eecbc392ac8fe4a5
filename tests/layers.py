"""The package's import graph, read with ``ast``: which module imports which, its cycles, and its upward imports.

Every import counts, lazy ones inside functions and ``TYPE_CHECKING`` ones included: a lazy import keeps a heavy
library out of ``import edgestill``, but it is still a dependency and must point down the layer order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from edgestill.imports import module_files, module_imports

# The layer order, bottom first (DESIGN.md "Layer order"). A module may import from its own layer and the ones
# before it, never from a later one. A module belongs to the layer of the longest prefix that names it; the bare
# package name "edgestill" names only the package's own ``__init__``.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("edgestill", "edgestill.errors", "edgestill.registry", "edgestill.outdir", "edgestill.artifact",
                    "edgestill.record", "edgestill.stats", "edgestill.host", "edgestill.limits", "edgestill.signals",
                    "edgestill.extras", "edgestill.imports")),
    ("runtimes", ("edgestill.runtimes",)),
    ("export", ("edgestill.export",)),
    ("data and models", ("edgestill.data", "edgestill.models")),
    ("benchmarks", ("edgestill.benchmarks",)),
    ("distill", ("edgestill.compress", "edgestill.compress.distill")),
    ("quantize", ("edgestill.compress.quantize",)),
    ("devices", ("edgestill.devices",)),
    ("chain", ("edgestill.chain",)),
    ("commands", ("edgestill.commands", "edgestill.cli", "edgestill.__main__")),
)


def import_graph(src: Path, package: str = "edgestill") -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in its body)."""
    mods = module_files(src, package)
    return {name: module_imports(path, name, mods)[0] for name, path in mods.items()}


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), each sorted; an empty list when acyclic."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def layer_of(module: str, layers: Sequence[tuple[str, tuple[str, ...]]] = LAYERS) -> int:
    """Position of ``module``'s layer (longest matching prefix).

    Raises:
        KeyError: no layer names the module (add it to the order).
    """
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(layers):
        for p in prefixes:
            if (module == p or ("." in p and module.startswith(p + "."))) and len(p) > best_len:
                best, best_len = i, len(p)
    if best is None:
        raise KeyError(module)
    return best


def upward_imports(graph: Mapping[str, set[str]],
                   layers: Sequence[tuple[str, tuple[str, ...]]] = LAYERS) -> list[str]:
    """One line per import from a lower layer into a higher one, e.g. ``a.b (runtimes) -> c.d (export)``."""
    bad = []
    for mod in sorted(graph):
        lm = layer_of(mod, layers)
        for dep in sorted(graph[mod]):
            ld = layer_of(dep, layers)
            if ld > lm:
                bad.append(f"{mod} ({layers[lm][0]}) -> {dep} ({layers[ld][0]})")
    return bad
