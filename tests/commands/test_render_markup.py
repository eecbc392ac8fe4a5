"""Terminal tables show user strings (artifact names, errors, warnings) as text: "[/]" or "[bold]" in a name crashed
rich's markup parser (MarkupError, exit 3) or restyled the output."""

from __future__ import annotations

import pytest

from edgestill.record import Measurement
from edgestill.stats import summarize

HOSTILE = "m[/]x[bold]y[/bold"


def test_bench_table_prints_hostile_names_errors_and_warnings_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    """Bad input: an artifact named with rich markup, a failed cell whose error holds markup, a warning with it."""
    from edgestill.commands.render import print_measurements

    ok = Measurement(artifact=HOSTILE, format="onnx", precision="fp32", runtime="onnxruntime", threads=1,
                     init_ms=1.0, first_ms=1.0, warmup_ms_mean=1.0, latency=summarize([1.0, 1.1, 0.9]), peak_rss_mb=1.0,
                     model_bytes=1, warnings=["noisy [/] window"])
    failed = Measurement(artifact=HOSTILE, format="onnx", precision="fp32", runtime="onnxruntime", threads=2,
                         kind="failed", error="crashed: [red]boom[/]")
    print_measurements([ok, failed])
    out = capsys.readouterr().out
    assert HOSTILE in out
    assert "crashed: [red]boom[/]" in out and "noisy [/] window" in out


def test_chain_summary_prints_hostile_recipe_and_model_names_as_text(capsys: pytest.CaptureFixture[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edgestill.commands.recipe_cli import print_summary
    from tests.chain.test_report_md import _report

    report = _report()
    for key in ("recipe",):
        report[key] = HOSTILE
    report["student"]["model"] = HOSTILE
    report["artifacts"][0]["artifact"] = HOSTILE
    report["stage_seconds"] = {"total": 1.0}
    print_summary(report, tmp_path)
    out = capsys.readouterr().out
    assert out.count(HOSTILE) >= 3  # the title, the student row, the artifact row
