"""The HTML report in a real browser: it loads offline with no error, its charts are drawn, and a model named like a
script is shown as text without running."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgestill.benchmarks.report import write_report
from tests.benchmarks.test_report import HOSTILE, make_report_store

pytestmark = pytest.mark.browser


def test_the_report_loads_offline_draws_its_charts_and_shows_a_hostile_name_as_text(browser: Any, tmp_path: Path) -> None:
    make_report_store(tmp_path / "results.db")
    page_path = tmp_path / "report.html"
    report = write_report(tmp_path / "results.db", "latest", html=page_path)
    charts_expected = sum(1 for d in report["devices"] if any(c["quality"] is not None for c in d["cells"] + d["estimates"]))
    assert charts_expected == 2

    context = browser.new_context(offline=True, viewport={"width": 1366, "height": 900}, java_script_enabled=True)
    fetched: list[str] = []

    def refuse(route: Any) -> None:  # anything but the file itself is a fetch the report must not make
        if route.request.url == page_path.as_uri():
            route.continue_()
        else:
            fetched.append(route.request.url)
            route.abort()

    context.route("**/*", refuse)
    page = context.new_page()
    console_errors: list[str] = []
    page_errors: list[str] = []
    dialogs: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(page_path.as_uri(), wait_until="load")

    assert console_errors == [] and page_errors == [] and fetched == []
    assert dialogs == [] and page.evaluate("document.scripts.length") == 0
    charts = page.locator("figure > svg")
    assert charts.count() == charts_expected
    for i in range(charts.count()):
        chart = charts.nth(i)
        chart.scroll_into_view_if_needed()
        box = chart.bounding_box()
        assert chart.is_visible() and box is not None and box["width"] > 300 and box["height"] > 150, box
        assert chart.locator("text").count() > 10  # tick labels, axis titles, names: text, not paths
    assert page.get_by_role("cell", name=HOSTILE, exact=True).first.is_visible()
    in_chart = page.locator("figure svg text", has_text=HOSTILE)
    assert in_chart.count() == 1 and in_chart.first.is_visible()
    assert page.get_by_text("estimated, low–high (not measured)").count() >= 1  # the legend says what hollow means

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    context.close()
    assert shot.stat().st_size > 10_000
    print(f"report screenshot: {shot}")
