"""The demo page, driven in a real headless Chromium against the real demo server.

Walks the page as a person would: request a code, read it from the server's console, log in,
call the protected routes, refresh, log out, and see the old access token refused. Cookie
mode throughout: the page never sees the refresh token.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.net import free_port  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
EMAIL = "browser@example.com"

if CHROMIUM is None or CHROMEDRIVER is None:
    if os.environ.get("CI"):
        pytest.fail("CI must provide chromium and chromedriver", pytrace=False)
    pytest.skip("chromium/chromedriver not installed", allow_module_level=True)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The demo server on a free port; yields its URL and the file its console goes to."""
    port = free_port()
    console = tmp_path / "console.log"
    with console.open("w") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "otpcore_fastapi.demo",
                "--port",
                str(port),
                "--db",
                str(tmp_path / "demo.db"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 30
        while "Application startup complete" not in console.read_text():
            assert server.poll() is None, console.read_text()
            assert time.monotonic() < deadline, "demo did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", console
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Chromium with no background networking (the machine has no internet)."""
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _click_and_wait(driver: WebDriver, button: str, expect: str) -> str:
    """Click ``button`` and wait until the page's log shows a new line matching ``expect``."""
    before = len(driver.find_elements(By.CSS_SELECTOR, "#log > div"))
    driver.find_element(By.ID, button).click()

    def newest(d: WebDriver) -> str | bool:
        lines = d.find_elements(By.CSS_SELECTOR, "#log > div")
        added = [line.text for line in lines[: len(lines) - before]]  # the log prepends
        return next((text for text in added if re.search(expect, text)), False)

    line = WebDriverWait(driver, 15).until(
        newest, message=f"no log line matching {expect!r} after clicking #{button}"
    )
    assert isinstance(line, str)
    return line


def test_demo_page_walks_the_whole_flow(demo: tuple[str, Path], browser: WebDriver) -> None:
    url, console = demo
    browser.get(url + "/")
    assert "otpcore" in browser.title.lower()

    browser.find_element(By.ID, "email").send_keys(EMAIL)
    _click_and_wait(browser, "request", r"request-otp -> 200")
    match = re.search(rf"code for {re.escape(EMAIL)}: (\d+)", console.read_text())
    assert match, "the demo printed no code"

    browser.find_element(By.ID, "code").send_keys(match.group(1))
    _click_and_wait(browser, "verify", r"verify-otp -> 200")
    assert browser.find_element(By.ID, "token").text.startswith("access token: ey")
    # The refresh token lives in an HttpOnly cookie: the page's script can never read it.
    assert "refresh_token" not in browser.execute_script("return document.cookie")
    jar = browser.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]
    [cookie] = [c for c in jar if c["name"] == "refresh_token"]
    assert (cookie["httpOnly"], cookie["path"], cookie["sameSite"]) == (True, "/auth", "Lax")

    assert EMAIL in _click_and_wait(browser, "me", r"/me -> 200")
    _click_and_wait(browser, "claims", r"/claims -> 200")
    _click_and_wait(browser, "refresh", r"refresh -> 200")
    _click_and_wait(browser, "me", r"/me -> 200")
    _click_and_wait(browser, "logout", r"logout -> 200")
    # The page keeps the old access token on purpose; its session is revoked now.
    _click_and_wait(browser, "me", r"/me -> 401 .*revoked")
    _click_and_wait(browser, "refresh", r"refresh -> 401")


def test_docs_render_offline_from_same_origin_assets(
    demo: tuple[str, Path], browser: WebDriver
) -> None:
    """Swagger UI at /docs lists the auth endpoints and loads nothing from another origin."""
    url, _ = demo
    browser.get(url + "/docs")
    auth_paths = {"/auth/request-otp", "/auth/verify-otp", "/auth/refresh", "/auth/logout"}

    def listed(d: WebDriver) -> set[str] | bool:
        shown = {e.text for e in d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
        return shown if shown >= auth_paths else False

    paths = WebDriverWait(browser, 20).until(
        listed, message="Swagger UI did not list the auth endpoints"
    )
    assert isinstance(paths, set)
    assert "/me" in paths
    sources = browser.execute_script(
        "return Array.from(document.querySelectorAll('script[src], link[href], img[src]'))"
        ".map(e => e.src || e.href)"
    )
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert any(s.endswith("/swagger-ui-bundle.js") for s in sources), sources
    foreign = [s for s in [*sources, *loaded] if not s.startswith(url + "/")]
    assert foreign == [], f"/docs loaded from other origins: {foreign}"
