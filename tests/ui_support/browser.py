"""Headless Debian Chromium driven by selenium; ``why_no_browser()`` says why the tests must skip."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

CHROMIUM = os.environ.get("HUDDLE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("HUDDLE_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,900",
)


def why_no_browser() -> str | None:
    """None when selenium, chromium and chromedriver are all present; otherwise the reason to skip."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{name} not found at {path} (apt-get install chromium chromium-driver)"
    return None


class Browser:
    """One headless Chromium with a fresh profile; JS dialogs are left open so tests can detect them."""

    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="huddle-ui-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.set_capability("unhandledPromptBehavior", "ignore")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
        self.driver.set_page_load_timeout(30)

    def get(self, url: str) -> None:
        """Navigate and wait for the document to load."""
        self.driver.get(url)

    def js(self, script: str, *args: Any) -> Any:
        """Run script in the page and return its value."""
        return self.driver.execute_script(script, *args)

    def wait_until(self, condition: Callable[[], Any], what: str, limit: float = 20.0) -> Any:
        """Poll ``condition`` until it returns something truthy (bounded; not a timing assertion)."""
        from selenium.common.exceptions import StaleElementReferenceException

        deadline = time.monotonic() + limit
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = condition()
                if last:
                    return last
            except StaleElementReferenceException:
                pass  # the page re-rendered between finding and reading: look again
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what} (last: {last!r})")

    def texts(self, selector: str) -> list[str]:
        """textContent of every element matching the CSS selector (rendered text, in document order)."""
        return list(
            self.js("return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)", selector)
        )

    def alert_text(self) -> str | None:
        """The text of an open JS dialog, or None."""
        from selenium.common.exceptions import NoAlertPresentException

        try:
            return str(self.driver.switch_to.alert.text)
        except NoAlertPresentException:
            return None

    def console_errors(self) -> list[str]:
        """Severe browser console entries since the last call (CSP violations, script errors)."""
        entries: list[dict[str, Any]] = self.driver.get_log("browser")  # type: ignore[no-untyped-call]
        return [str(e["message"]) for e in entries if e.get("level") == "SEVERE"]

    def screenshot(self, path: str) -> None:
        """Save a PNG of the viewport."""
        self.driver.save_screenshot(path)

    def close(self) -> None:
        """Quit the browser and remove its profile."""
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)
