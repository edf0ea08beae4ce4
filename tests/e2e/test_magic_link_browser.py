"""The magic link end to end (issue 9): the demo with ``--smtp`` against a real SMTP server,
prefetched like a mail scanner, then clicked in a real headless Chromium.

The demo runs as its own process (``python -m otpcore_fastapi.demo --smtp …``) and mails
through aiosmtpd started by the test. A code is requested from another client than the
browser (the link must work on any device); the link is read from the captured e-mail,
fetched three times with plain GETs (what scanners do: nothing may be spent), then opened
in Chromium, whose button logs in and lands on the demo page signed in. The link then fails
a second time, in the browser and over HTTP.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.delivery.smtp_server import SMTPServer
from tests.e2e.test_demo_browser import browser
from tests.net import free_port

pytestmark = pytest.mark.browser
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

__all__ = ["browser"]  # the fixture, shared with the demo's browser test

EMAIL = "magic@example.com"
LINK = re.compile(r"http://127\.0\.0\.1:\d+/auth/magic\?t=[A-Za-z0-9._%-]+")


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    server = SMTPServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mailing_demo(tmp_path: Path, smtp: SMTPServer) -> Iterator[str]:
    """``python -m otpcore_fastapi.demo --smtp smtp://127.0.0.1:<aiosmtpd>`` on a free port."""
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
                "--smtp",
                f"smtp://127.0.0.1:{smtp.port}",
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
        yield f"http://127.0.0.1:{port}"
        # The demo mails; it never prints a code.
        assert not re.search(r"code for .*: \d+", console.read_text())
    finally:
        server.terminate()
        server.wait(timeout=10)


def _mailed_link(smtp: SMTPServer) -> tuple[str, str]:
    """The link (from the text part) and the code of the one e-mail to EMAIL."""
    deadline = time.monotonic() + 15
    while not smtp.recorder.to(EMAIL):
        assert time.monotonic() < deadline, "no e-mail arrived"
        time.sleep(0.05)
    [received] = smtp.recorder.to(EMAIL)
    message = received.message
    text = message.get_body(preferencelist=("plain",))
    page = message.get_body(preferencelist=("html",))
    assert text is not None
    assert page is not None
    match = LINK.search(text.get_content())
    assert match, text.get_content()
    link = match.group(0)
    assert f'href="{link}"' in page.get_content()  # the same link in the HTML part
    code = re.search(r"\b(\d{6})\b", text.get_content())
    assert code
    return link, code.group(1)


def _log_line(driver: WebDriver, pattern: str) -> str:
    def found(d: WebDriver) -> str | bool:
        lines = [line.text for line in d.find_elements(By.CSS_SELECTOR, "#log > div")]
        return next((text for text in lines if re.search(pattern, text)), False)

    line = WebDriverWait(driver, 15).until(found, message=f"no log line matching {pattern!r}")
    assert isinstance(line, str)
    return line


def test_magic_link_survives_scanners_and_logs_in_once(
    mailing_demo: str, smtp: SMTPServer, browser: WebDriver
) -> None:
    url = mailing_demo
    with httpx.Client(base_url=url) as other_device:
        requested = other_device.post("/auth/request-otp", json={"email": EMAIL})
        assert requested.status_code == 200, requested.text
    link, _code = _mailed_link(smtp)
    assert link.startswith(url + "/auth/magic?t=")

    # Three scanners prefetch the link: each sees the page, none spends anything.
    for _ in range(3):
        with httpx.Client() as scanner:
            page = scanner.get(link, follow_redirects=True)
        assert page.status_code == 200
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "no-store" in page.headers["cache-control"]
        assert "set-cookie" not in page.headers
        assert '<button type="submit">Sign in</button>' in page.text

    browser.get(link)
    assert browser.title == "Sign in"
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(browser, 15).until(
        lambda d: d.current_url == url + "/", message="the button did not land on the demo page"
    )
    assert EMAIL in _log_line(browser, r"GET /me -> 200")
    assert browser.find_element(By.ID, "token").text.startswith("access token: ey")
    jar = browser.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]
    [cookie] = [c for c in jar if c["name"] == "refresh_token"]
    assert (cookie["httpOnly"], cookie["path"]) == (True, "/auth")

    # A second use fails: in the browser (the page still shows, its button is refused) ...
    browser.get(link)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(browser, 15).until(
        lambda d: "cannot be used" in d.title, message="the second use was not refused"
    )
    assert "not valid" in browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    # ... and over HTTP, by the form and by the JSON endpoint.
    token = link.split("?t=", 1)[1]
    with httpx.Client(base_url=url) as client:
        form = client.post("/auth/magic", data={"t": token})
        assert form.status_code == 400
        assert "set-cookie" not in form.headers
        redeemed = client.post("/auth/magic-link", json={"token": token})
        assert redeemed.status_code == 400
        assert redeemed.json()["code"] == "link_invalid"
