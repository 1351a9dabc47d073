"""Headless Chromium for the tests of crossmodal's pages (fixtures registered in conftest).

``browser`` is a Selenium driver on the system's Chromium, fully offline; ``page`` is a
Playwright tab on the same Chromium that records the page's console errors in ``page.errors``.
The tests that use them skip where Chromium, Selenium or Playwright is missing
(``scripts/install dev`` installs them). :func:`open_page` loads a file and returns what the
browser made of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["CHROMEDRIVER", "CHROMIUM", "browser", "open_page", "page"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium driven by Selenium, fully offline (no Selenium Manager download)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(
            f"{CHROMIUM} / {CHROMEDRIVER} not installed: apt-get install chromium "
            "chromium-driver (scripts/install does it when run as root)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1200,2000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture()
def page() -> Iterator[Any]:
    """A Playwright tab (1200×900) in headless Chromium; ``page.errors`` collects console
    errors and uncaught exceptions."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        context = chromium.new_context(viewport={"width": 1200, "height": 900})
        tab = context.new_page()
        errors: list[str] = []
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.errors = errors
        yield tab
        chromium.close()


_PAGE_STATE_JS = """
return {
  images: Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.className]),
  placeholders: document.querySelectorAll('div.thumb.missing').length,
  scripts: document.scripts.length,
  requests: performance.getEntriesByType('resource').map(r => r.name),
  title: document.title,
};
"""


def open_page(driver: Any, page: Path) -> dict[str, Any]:
    """Load ``page``; return what the browser made of it and the console messages."""
    driver.get(page.as_uri())
    state: dict[str, Any] = driver.execute_script(_PAGE_STATE_JS)
    state["console"] = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    return state
