"""A headless Chromium for the browser tests: Debian's ``chromium`` (``make test`` installs it) driven by playwright.

No browser build is downloaded: playwright launches the system binary. When playwright or chromium is missing the
tests fail, so that CI never passes by skipping them; locally, ``EDGESTILL_SKIP_BROWSER=1`` skips them instead
(never when ``CI`` is set).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser")
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")


def chromium_path() -> str | None:
    """``$EDGESTILL_CHROMIUM``, else the first chromium on PATH, else Debian's path; None when there is none."""
    if os.environ.get("EDGESTILL_CHROMIUM"):
        return os.environ["EDGESTILL_CHROMIUM"] if Path(os.environ["EDGESTILL_CHROMIUM"]).is_file() else None
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    return str(DEBIAN_CHROMIUM) if DEBIAN_CHROMIUM.is_file() else None


def _unavailable(reason: str) -> None:
    if os.environ.get("EDGESTILL_SKIP_BROWSER") == "1" and not os.environ.get("CI"):
        pytest.skip(f"{reason}; skipped because EDGESTILL_SKIP_BROWSER=1")
    pytest.fail(f"{reason}. `make test` installs Debian's chromium and the dev extra installs playwright; to skip the "
                "browser tests on a machine without them, set EDGESTILL_SKIP_BROWSER=1 (ignored when CI is set).",
                pytrace=False)  # fmt: skip


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Chromium, shared by the session's browser tests."""
    if os.environ.get("EDGESTILL_SKIP_BROWSER") == "1" and not os.environ.get("CI"):
        pytest.skip("browser tests skipped because EDGESTILL_SKIP_BROWSER=1")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -c constraints.txt -e '.[dev]')")
    path = chromium_path()
    if path is None:
        _unavailable("no chromium found (looked for $EDGESTILL_CHROMIUM, chromium and chromium-browser on PATH, "
                     f"{DEBIAN_CHROMIUM})")  # fmt: skip
    with sync_playwright() as p:
        # --no-sandbox: CI and this machine run tests as root, where Chromium's sandbox refuses to start
        b = p.chromium.launch(executable_path=path, headless=True,
                              args=["--no-sandbox", "--disable-background-networking", "--disable-component-update"])
        yield b
        b.close()
