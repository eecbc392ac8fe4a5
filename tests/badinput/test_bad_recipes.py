"""Bad recipes through the real CLI: ``edgestill run RECIPE --out D`` and ``edgestill distill RECIPE --out D``.

Each case is a recipe file a user (or an attacker) could hand over: a YAML alias bomb, a self-referencing alias, too
many aliases, a file over the size budget, duplicate keys (the last one used to win silently), a python tag,
non-UTF-8 bytes, a NUL byte, a directory, an empty file, a comment-only file, a top-level list or scalar, a deeply
nested document, keys that are not text, NaN/Inf where numbers are expected, a 401-digit number, an impossible date,
thread counts of 0, -1 and true, a truthy string for a security switch, a loss name that is a list. Every one must
exit 2 with one paragraph naming the problem (the key, the line or the limit), leave the --out folder exactly as it
was (an earlier run's too, with --force), and run nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.badinput.conftest import assert_bad_input, edgestill, tree


def _base() -> dict[str, Any]:
    return {
        "name": "bad",
        "data": {"builtin": "synthetic-shapes", "size": "quick"},
        "teacher": {"model": "resnet-teacher", "kwargs": {"width": 8}, "train": {"epochs": 1}},
        "student": {"model": "mobilenetv2-student", "kwargs": {"width_mult": 0.25}},
        "distill": {"losses": [{"name": "kd"}], "epochs": 1},
        "export": {"formats": ["onnx"]},
        "bench": {"threads": [1]},
    }


def _with(edit) -> str:
    """The base recipe as YAML after ``edit(doc)`` (yaml.safe_dump writes NaN as .nan and Inf as .inf)."""
    doc = _base()
    edit(doc)
    return yaml.safe_dump(doc, sort_keys=False)


_GOOD = _with(lambda d: None)
_BOMB = "\n".join(['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
                  + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]) + "\n"
_MANY_ALIASES = "x: &x 1\nstudent:\n  model: mobilenetv2-student\n  kwargs:\n" + "".join(
    f"    k{i}: *x\n" for i in range(150)) + _GOOD.split("student:")[0]


# (id, file content (str or bytes), phrases the one-paragraph message must contain)
CASES: list[tuple[str, str | bytes, tuple[str, ...]]] = [
    ("alias-bomb", _BOMB, ("alias", "expand")),
    ("recursive-alias", "name: x\ndata: &d {builtin: synthetic-shapes, again: *d}\n", ("alias", "itself")),
    ("too-many-aliases", _MANY_ALIASES, ("150", "100 alias")),
    ("over-size-budget", "# " + "x" * (1024 * 1024 + 10) + "\n" + _GOOD, ("1 MiB",)),
    ("duplicate-section", _GOOD + "distill:\n  losses: [{name: ce}]\n  epochs: 3\n", ("duplicate key 'distill'", "line")),
    ("duplicate-nested", _GOOD.replace("\n  epochs: 1\n", "\n  epochs: 1\n  epochs: 50\n", 1), ("duplicate key 'epochs'", "line")),
    ("python-tag", "name: !!python/object/apply:os.system ['touch PWNED']\n" + _GOOD.split("\n", 1)[1],
     ("python/object/apply:os.system",)),
    ("not-utf8", _GOOD.replace("name: bad", "name: bad  # caf\xe9").encode("latin-1"), ("not UTF-8",)),
    ("nul-byte", _GOOD.replace("name: bad", "name: ba\x00d"), ("not valid YAML",)),
    ("empty-file", "", ("empty",)),
    ("comments-only", "# just a comment\n# and another\n", ("empty",)),
    ("top-level-list", "- data\n- student\n", ("mapping", "list")),
    ("top-level-scalar", "just some words\n", ("mapping", "str")),
    ("deep-nesting", _GOOD.replace("width_mult: 0.25", "width_mult: " + "[" * 5000 + "]" * 5000), ("nested", "deep")),
    ("key-not-text", _GOOD.replace("width_mult: 0.25", "width_mult: 0.25\n    2024-01-01: 1"),
     ("student.kwargs", "2024-01-01", "text")),
    ("top-key-int", _GOOD + "1: 2\n", ("1",)),
    ("lr-nan", _with(lambda d: d["distill"].update(lr=float("nan"))), ("distill", "lr")),
    ("epochs-inf", _with(lambda d: d["distill"].update(epochs=float("inf"))), ("epochs",)),
    ("tolerance-nan", _with(lambda d: d.update(validate={"fp32": {"atol": float("nan")}})), ("validate", "atol", "finite")),
    ("sqnr-inf", _with(lambda d: d.update(validate={"int8": {"min_sqnr_db": float("inf")}})), ("validate", "min_sqnr_db", "finite")),
    ("kwarg-nan", _with(lambda d: d["student"]["kwargs"].update(width_mult=float("nan"))), ("student.kwargs.width_mult",)),
    ("threads-0", _with(lambda d: d["bench"].update(threads=[0])), ("bench.threads",)),
    ("threads-negative", _with(lambda d: d["bench"].update(threads=[-1])), ("bench.threads",)),
    ("threads-true", _with(lambda d: d["bench"].update(threads=[True])), ("bench.threads",)),
    ("min-seconds-nan", _with(lambda d: d["bench"].update(min_seconds=float("nan"))), ("bench.min_seconds",)),
    ("min-runs-fraction", _with(lambda d: d["bench"].update(min_runs=1.5)), ("bench.min_runs", "whole number")),
    ("min-runs-text", _with(lambda d: d["bench"].update(min_runs="5")), ("bench.min_runs", "whole number")),
    ("trust-as-text", _with(lambda d: d["student"].update(trust_checkpoint="yes")), ("student.trust_checkpoint", "true or false")),
    ("loss-name-list", _with(lambda d: d["distill"]["losses"][0].update(name=["kd"])), ("distill.losses",)),
    ("binary-value", _GOOD.replace("name: bad", "name: !!binary aGVsbG8="), ("name",)),
    ("huge-integer", _with(lambda d: d["distill"].update(lr=10**400)), ("distill.lr", "too large", "401 digits")),
    ("impossible-date", _GOOD.replace("name: bad", "name: 2024-02-30"), ("line 1", "day is out of range")),
]

DISTILL_CASES = {"alias-bomb", "duplicate-section", "python-tag", "not-utf8", "empty-file", "deep-nesting", "lr-nan",
                 "trust-as-text", "over-size-budget", "recursive-alias"}


def _write(folder: Path, content: str | bytes) -> Path:
    path = folder / "recipe.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _out_with_user_file(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("a user's file\n")
    return out


@pytest.mark.parametrize(("content", "phrases"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_run_refuses_a_bad_recipe_and_leaves_out_untouched(tmp_path: Path, content: str | bytes, phrases: tuple[str, ...]) -> None:
    recipe = _write(tmp_path, content)
    out = _out_with_user_file(tmp_path)
    before = tree(out)
    r = edgestill("run", str(recipe), "--out", str(out), "--db", str(tmp_path / "db" / "r.db"), cwd=tmp_path, timeout=120)
    assert_bad_input(r, *phrases)
    assert tree(out) == before and sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert not (tmp_path / "db").exists()
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(("content", "phrases"), [c[1:] for c in CASES if c[0] in DISTILL_CASES],
                         ids=[c[0] for c in CASES if c[0] in DISTILL_CASES])
def test_distill_refuses_a_bad_recipe_and_creates_no_out(tmp_path: Path, content: str | bytes, phrases: tuple[str, ...]) -> None:
    recipe = _write(tmp_path, content)
    out = tmp_path / "out"
    r = edgestill("distill", str(recipe), "--out", str(out), cwd=tmp_path, timeout=120)
    assert_bad_input(r, *phrases)
    assert not out.exists()
    assert not (tmp_path / "PWNED").exists()


def test_a_directory_given_as_the_recipe_is_named_as_a_directory(tmp_path: Path) -> None:
    (tmp_path / "recipes.yaml").mkdir()
    out = _out_with_user_file(tmp_path)
    before = tree(out)
    r = edgestill("run", str(tmp_path / "recipes.yaml"), "--out", str(out), cwd=tmp_path)
    assert_bad_input(r, "is a directory")
    assert tree(out) == before


def test_the_good_base_recipe_loads_so_each_case_fails_for_its_own_reason(tmp_path: Path) -> None:
    from edgestill.chain.recipe import load_recipe

    recipe = load_recipe(_write(tmp_path, _GOOD))
    assert recipe.name == "bad" and recipe.bench is not None


@pytest.mark.parametrize("command", ["run", "distill"])
@pytest.mark.parametrize("case", ["duplicate-section", "alias-bomb", "lr-nan"])
def test_a_bad_recipe_never_touches_an_earlier_run_even_with_force(tmp_path: Path, command: str, case: str) -> None:
    """The recipe is read before the output folder is claimed: an earlier run's files stay, --force or not."""
    from edgestill.outdir import write_marker

    content = next(c[1] for c in CASES if c[0] == case)
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "student.safetensors").write_bytes(b"weights of an earlier run")
    (out / "report.json").write_text("{}\n")
    write_marker(out, command, files=["checkpoints", "report.json"])
    before = tree(out)
    r = edgestill(command, str(_write(tmp_path, content)), "--out", str(out), "--force", cwd=tmp_path, timeout=120)
    assert_bad_input(r, *next(c[2] for c in CASES if c[0] == case))
    assert tree(out) == before
