"""``report.md`` of a chain run shows user strings (recipe, model, artifact names, errors) as text."""

from __future__ import annotations

from edgestill.chain.report import render_markdown

EVIL = "<script>alert(1)</script> | **bold** [link](http://x) `code`\n# heading"


def _report() -> dict:
    return {
        "kind": "run", "recipe": EVIL, "recipe_sha256": "ab" * 32, "provenance": {"cpu_model": EVIL},
        "data": {"name": EVIL, "input_shape": [3, 32, 32], "num_classes": 10, "n_train": 1, "n_val": 1, "n_test": 1,
                 "augment": "none"},
        "teacher": {"source": "model", "model": EVIL, "kwargs": {"x": EVIL}, "parameters": 1, "macs": 1, "test_accuracy": 0.5},
        "student": {"model": EVIL, "kwargs": {}, "parameters": 1, "macs": 1, "test_accuracy": 0.5, "losses": [{"name": EVIL, "weight": 1.0}],
                    "epochs_run": 1, "best_val_accuracy": 0.5, "best_epoch": 1, "stopped_early": False, "teacher_mode": "online"},
        "artifacts": [{"artifact": EVIL, "precision": "fp32", "runtime": "onnxruntime", "passed": False, "error": EVIL,
                       "measurements": []}],
        "checks": [], "stages": {"distill": {"status": "ran", "seconds": 1.0}},
        "store": {"run_id": 1, "path": EVIL, "measurements": 0},
    }


def test_user_strings_in_report_md_are_text_not_markup() -> None:
    """Bad input: names and an error message carrying HTML, Markdown emphasis, links, table pipes and a new line."""
    md = render_markdown(_report())
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "**bold**" not in md and "[link](" not in md and "\n# heading" not in md
    import re

    lines = md.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| artifact |"))
    cells = len(re.findall(r"(?<!\\)\|", lines[header]))
    row = lines[header + 2]
    assert "alert" in row and len(re.findall(r"(?<!\\)\|", row)) == cells  # the user's pipes split no cell
