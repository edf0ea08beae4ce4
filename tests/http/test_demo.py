"""The demo: its page, its API through the whole flow, and its command line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from otpcore_fastapi.demo import create_app
from tests.http.conftest import BASE_URL, EMAIL
from tests.net import free_port


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the demo app over a temporary SQLite file, with its lifespan running."""
    app = create_app(tmp_path / "demo.db")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as client,
    ):
        yield client
    assert (tmp_path / "demo.db").exists()


def printed_code(capsys: pytest.CaptureFixture[str]) -> str:
    """The code the demo's console mailer printed last."""
    found = re.findall(r"code for \S+: (\d+)", capsys.readouterr().out)
    assert found
    code: str = found[-1]
    return code


async def test_the_page_is_served_without_external_assets(demo: httpx.AsyncClient) -> None:
    response = await demo.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<title>otpcore demo</title>" in page
    for endpoint in ("/auth/request-otp", "/auth/verify-otp", "/auth/refresh", "/auth/logout"):
        assert endpoint in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert (await demo.get("/docs")).status_code == 200


async def test_the_whole_flow_through_the_demo_api(
    demo: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (await demo.get("/ping")).json() == {"status": "ok"}
    assert (await demo.post("/auth/request-otp", json={"email": EMAIL})).status_code == 200
    code = printed_code(capsys)
    verified = await demo.post("/auth/verify-otp", json={"email": EMAIL, "code": code})
    assert verified.status_code == 200
    assert "HttpOnly" in verified.headers["set-cookie"]
    assert "Secure" not in verified.headers["set-cookie"]  # plain http on 127.0.0.1
    headers = {"Authorization": f"Bearer {verified.json()['access_token']}"}

    me = await demo.get("/me", headers=headers)
    assert me.json() == {"id": 1, "email": EMAIL, "is_verified": True}
    claims = (await demo.get("/claims", headers=headers)).json()
    assert claims["custom"] == {"email": EMAIL}
    assert claims["sub"] == "1"

    # The browser page's requests are same-origin: fetch sends these headers.
    browser = {"Origin": BASE_URL, "Sec-Fetch-Site": "same-origin"}
    refreshed = await demo.post("/auth/refresh", headers=browser)
    assert refreshed.status_code == 200
    assert (await demo.post("/auth/logout", headers=browser)).status_code == 200
    assert (await demo.get("/me", headers=headers)).status_code == 401
    assert (await demo.post("/auth/refresh", headers=browser)).status_code == 401


def test_python_m_demo_serves(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "OTPCORE_DEMO_DB": str(tmp_path / "cli.db")}
    process = subprocess.Popen(
        [sys.executable, "-m", "otpcore_fastapi.demo", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        page = None
        while time.monotonic() < deadline and page is None:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            except httpx.TransportError:
                time.sleep(0.2)
        assert page is not None, "the demo did not start within 30 s"
        assert page.status_code == 200
        assert (tmp_path / "cli.db").exists()
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in output
