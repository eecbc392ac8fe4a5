"""The browser tests never pass by skipping in CI: a missing chromium or playwright fails them there, and only
``EDGESTILL_SKIP_BROWSER=1`` outside CI skips them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BROWSER_TEST = "tests/browser/test_report_browser.py"


def _pytest(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "EDGESTILL_SKIP_BROWSER", "EDGESTILL_CHROMIUM")}
    return subprocess.run([sys.executable, "-m", "pytest", BROWSER_TEST, "-q", "-rs", "-p", "no:cacheprovider",
                           "--basetemp", str(tmp_path / "inner")], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_a_missing_chromium_fails_in_ci_even_when_asked_to_skip(tmp_path: Path) -> None:
    r = _pytest(tmp_path, CI="true", EDGESTILL_SKIP_BROWSER="1", EDGESTILL_CHROMIUM=str(tmp_path / "no-chromium"))
    assert r.returncode == 1, r.stdout
    assert "1 error" in r.stdout and "no chromium found" in r.stdout and "skipped" not in r.stdout


def test_a_missing_playwright_fails_in_ci(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "playwright"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('playwright is hidden by this test')\n")
    r = _pytest(tmp_path, CI="true", PYTHONPATH=str(shadow.parent))
    assert r.returncode == 1, r.stdout
    assert "playwright is not installed" in r.stdout and "skipped" not in r.stdout


@pytest.mark.parametrize("chromium", ["missing", "present"])
def test_edgestill_skip_browser_skips_outside_ci_with_a_reason(tmp_path: Path, chromium: str) -> None:
    env = {"EDGESTILL_SKIP_BROWSER": "1"}
    if chromium == "missing":
        env["EDGESTILL_CHROMIUM"] = str(tmp_path / "no-chromium")
    r = _pytest(tmp_path, **env)
    assert r.returncode == 0, r.stdout
    assert "1 skipped" in r.stdout and "EDGESTILL_SKIP_BROWSER=1" in r.stdout
