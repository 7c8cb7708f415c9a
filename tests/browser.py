"""Headless Chromium for the browser tests: Debian's chromium driven through its own
chromedriver by Selenium (never a browser or driver downloaded at run time), a fresh
profile per session, explicit waits, and a screenshot of every step in one folder
(SCREENSHOTS_DIR, default var/screenshots/), which the test run prints at the end."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.support import PROJECT_DIR

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(os.environ.get("SCREENSHOTS_DIR") or PROJECT_DIR / "var" / "screenshots")
# Bound on every explicit wait: it stops a broken run from hanging on a loaded machine,
# it asserts no speed.
WAIT = 45

# Without the network flags Chromium keeps trying hosts this machine cannot reach.
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run", "--window-size=1400,1000",
]


# Every screenshot this test run took, for the run's closing lines (tests/conftest.py).
TAKEN: list[Path] = []


def screenshots_clear() -> None:
    """A run starts with an empty folder: what is there is what this run saw."""
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()


def browser_available() -> bool:
    return CHROMIUM.exists() and CHROMEDRIVER.exists()


def skip_or_fail_without_a_browser() -> None:
    if not browser_available():
        message = "chromium and chromium-driver are not installed (.ci/setup installs them as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def chromium() -> Iterator[WebDriver]:
    # Selenium Manager is never asked for anything: the driver and browser are given.
    os.environ["SE_OFFLINE"] = "true"
    with tempfile.TemporaryDirectory(prefix="hitl-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)), options=options)
        driver.set_page_load_timeout(WAIT)
        try:
            yield driver
        finally:
            driver.quit()


class Browser:
    """One Chromium session with the waits and screenshots the tests use."""

    def __init__(self, driver: WebDriver, base: str, prefix: str) -> None:
        self.driver, self.base, self.prefix = driver, base, prefix
        self.step = 0

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def wait(self, condition: Callable[[WebDriver], Any], what: str) -> Any:
        # A stale element is a page that was just replaced (a navigation, a live re-render):
        # look again, as for an element not there yet.
        return WebDriverWait(self.driver, WAIT, poll_frequency=0.1,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
            condition, message=f"waiting for {what}")

    def find(self, css: str) -> WebElement:
        return self.wait(lambda d: d.find_element(By.CSS_SELECTOR, css), css)

    def text(self, css: str = "body") -> str:
        return self.find(css).text

    def click_link(self, text: str) -> None:
        """The link whose text is `text`. Found again if the page re-rendered it (the
        live queue replaces its rows on every event), until the click lands."""

        def click(driver: WebDriver) -> bool:
            try:
                for link in driver.find_elements(By.TAG_NAME, "a"):
                    if link.text.strip() == text:
                        link.click()
                        return True
            except StaleElementReferenceException:
                pass
            return False

        self.wait(click, f"a link {text!r}")

    def click_button(self, label: str) -> None:
        """The button (or submit input) labelled `label`."""
        for element in self.driver.find_elements(By.CSS_SELECTOR, "button, input[type=submit]"):
            if (element.text or element.get_attribute("value") or "").strip() == label and element.is_displayed():
                element.click()
                return
        raise AssertionError(f"no button {label!r} on {self.driver.current_url}")

    def login(self, username: str, password: str = "demo-password-123") -> None:
        self.driver.delete_all_cookies()
        self.open("/admin/login/")
        self.find("#id_username").send_keys(username)
        self.find("#id_password").send_keys(password)
        self.find("input[type=submit]").click()
        self.wait(lambda d: "/admin/login/" not in d.current_url, "the login to finish")

    def shot(self, name: str) -> Path:
        self.step += 1
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.prefix}-{self.step:02d}-{re.sub(r'[^a-z0-9]+', '-', name.lower())}.png"
        self.driver.save_screenshot(str(path))
        TAKEN.append(path)
        return path
