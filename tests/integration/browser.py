"""Headless Chromium through selenium, for the dashboard's browser tests.

Debian's ``chromium`` and ``chromium-driver`` packages (``.ci/run`` installs them).
Without them the browser tests skip with a reason, unless ``TRIOFLOW_REQUIRE_BROWSER=1``
(set by ``.ci/run``): then a missing browser is a failure, so CI cannot pass by skipping.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def require_browser() -> None:
    """Skip (or, when CI requires the browser, fail) unless Chromium can be driven."""
    missing = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install '.[test]')")
    if CHROMIUM is None:
        missing.append("chromium (apt-get install chromium)")
    if DRIVER is None:
        missing.append("chromedriver (apt-get install chromium-driver)")
    if missing:
        why = "browser tests need " + ", ".join(missing)
        if os.environ.get("TRIOFLOW_REQUIRE_BROWSER") == "1":
            pytest.fail(why + " (TRIOFLOW_REQUIRE_BROWSER=1)")
        pytest.skip(why)


@contextlib.contextmanager
def chromium(width: int = 1200, height: int = 900) -> Iterator[Any]:
    """A headless Chromium WebDriver; quits on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-extensions", "--no-first-run", f"--window-size={width},{height}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(driver: Any, condition: Any, timeout: float = 20) -> Any:
    """What ``condition(driver)`` returns once truthy (WebDriverWait; fails after timeout)."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)


@contextlib.contextmanager
def chromium_on_loop() -> Iterator[Any]:
    """One browser for several steps of a Trio test: yields ``browse``, and
    ``await browse(step)`` runs ``step(driver)`` in a thread (selenium blocks)."""
    import trio

    with chromium() as driver:
        async def browse(step: Any) -> Any:
            return await trio.to_thread.run_sync(step, driver)

        yield browse
