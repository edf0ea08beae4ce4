"""``examples/starlette_app.py`` through HTTP: the whole flow, the refusals, and no FastAPI.

In-process through ``httpx.ASGITransport`` (with the app's lifespan run) on the memory store
and on SQLite, and once as a real server on a free port.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import jwt
import pytest

from otpcore.testing.clock import FakeClock
from tests.net import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "starlette_app.py"
EMAIL = "reader@example.com"


@cache
def example() -> ModuleType:
    """The example module, loaded once (it is a script, not a package module)."""
    spec = importlib.util.spec_from_file_location("otpcore_starlette_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class Inbox:
    """The codes the app sent, and the app's clock (a fake one, moved by the tests)."""

    def __init__(self) -> None:
        self.codes: dict[str, str] = {}
        self.clock = FakeClock()

    async def __call__(self, email: str, code: str) -> None:
        self.codes[email] = code


@pytest.fixture(params=["memory", "sqlite"])
async def client(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Inbox]]:
    """A client on the example app (state in memory or in a SQLite file) and its inbox."""
    inbox = Inbox()
    database = tmp_path / "app.db" if request.param == "sqlite" else None
    app = example().create_app(
        database, sender=inbox, secret="s" * 16 + "0123456789abcdef", clock=inbox.clock
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as http,
    ):
        yield http, inbox


async def _login(http: httpx.AsyncClient, inbox: Inbox, email: str = EMAIL) -> dict[str, Any]:
    response = await http.post("/auth/request-otp", json={"email": email})
    assert response.status_code == 200, response.text
    response = await http.post(
        "/auth/verify-otp", json={"email": email, "code": inbox.codes[email]}
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


def _unverified(token: str) -> tuple[Any, ...]:
    """A refresh token's session, generation and id, read without checking it."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return claims["sid"], claims["gen"], claims["jti"]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_whole_flow(client: tuple[httpx.AsyncClient, Inbox]) -> None:
    http, inbox = client
    tokens = await _login(http, inbox)
    assert tokens["token_type"] == "bearer"

    me = await http.get("/me", headers=_bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert (me.json()["email"], me.json()["is_verified"]) == (EMAIL, True)

    rotated = await http.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert rotated.status_code == 200
    new = rotated.json()
    assert new["refresh_token"] != tokens["refresh_token"]
    assert (await http.get("/me", headers=_bearer(new["access_token"]))).status_code == 200

    out = await http.post(
        "/auth/logout",
        json={"refresh_token": new["refresh_token"]},
        headers=_bearer(new["access_token"]),
    )
    assert out.status_code == 200
    after = await http.get("/me", headers=_bearer(new["access_token"]))
    assert (after.status_code, after.json()["code"]) == (401, "token_revoked")
    again = await http.post("/auth/refresh", json={"refresh_token": new["refresh_token"]})
    assert again.status_code == 401


async def test_bad_or_missing_token_is_401(client: tuple[httpx.AsyncClient, Inbox]) -> None:
    http, _ = client
    bad = await http.get("/me", headers=_bearer("not.a.jwt"))
    assert (bad.status_code, bad.json()["code"]) == (401, "token_invalid")
    assert bad.headers["WWW-Authenticate"].startswith("Bearer")
    missing = await http.get("/me")
    assert (missing.status_code, missing.json()["code"]) == (401, "token_missing")
    basic = await http.get("/me", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert basic.json()["code"] == "token_missing"


async def test_wrong_code_is_401_and_the_right_one_still_works(
    client: tuple[httpx.AsyncClient, Inbox],
) -> None:
    http, inbox = client
    await http.post("/auth/request-otp", json={"email": EMAIL})
    code = inbox.codes[EMAIL]
    wrong = f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"
    refused = await http.post("/auth/verify-otp", json={"email": EMAIL, "code": wrong})
    assert (refused.status_code, refused.json()["code"]) == (401, "otp_invalid")
    accepted = await http.post("/auth/verify-otp", json={"email": EMAIL, "code": code})
    assert accepted.status_code == 200
    reused = await http.post("/auth/verify-otp", json={"email": EMAIL, "code": code})
    assert reused.status_code == 401, "a code is single-use"


async def test_refresh_token_reuse_revokes_the_session(
    client: tuple[httpx.AsyncClient, Inbox],
) -> None:
    """A spent refresh token presented again inside the grace window (a second tab) gets the
    same successor; 12 s later (after the 10 s window) the reuse ends the whole session."""
    http, inbox = client
    tokens = await _login(http, inbox)
    rotated = (
        await http.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    ).json()
    inbox.clock.advance(5)
    tab = await http.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert tab.status_code == 200, tab.text
    # The same successor: the same session, generation and derived jti (issued later).
    assert _unverified(tab.json()["refresh_token"]) == _unverified(rotated["refresh_token"])
    inbox.clock.advance(7)
    replay = await http.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert (replay.status_code, replay.json()["code"]) == (401, "refresh_reused")
    # The whole family is gone: the newest pair is refused too.
    me = await http.get("/me", headers=_bearer(rotated["access_token"]))
    assert (me.status_code, me.json()["code"]) == (401, "token_revoked")
    newest = await http.post("/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert newest.status_code == 401


async def test_bad_input_is_a_4xx_with_a_stable_code(
    client: tuple[httpx.AsyncClient, Inbox],
) -> None:
    http, _ = client
    cases = [
        (b"{not json", "invalid_body"),
        (b"[1, 2]", "invalid_body"),
        (b'{"email": 7}', "invalid_body"),
        (b"{}", "invalid_body"),
        (b'{"email": "not-an-address"}', "invalid_email"),
    ]
    for body, code in cases:
        response = await http.post(
            "/auth/request-otp", content=body, headers={"Content-Type": "application/json"}
        )
        assert (response.status_code, response.json()["code"]) == (422, code), body
    sent = (await http.post("/auth/request-otp", json={"email": EMAIL})).json()
    # Issue 8: the cooldown belongs to the requester's binding.
    cooldown = await http.post(
        "/auth/request-otp", json={"email": EMAIL, "challenge_id": sent["challenge_id"]}
    )
    assert (cooldown.status_code, cooldown.json()["code"]) == (429, "otp_cooldown")
    assert int(cooldown.headers["Retry-After"]) > 0


def test_the_example_never_imports_fastapi(tmp_path: Path) -> None:
    """Import the example and walk the flow with every ``fastapi`` import refused."""
    script = f"""
import asyncio, importlib.abc, importlib.util, sys

class NoFastAPI(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "fastapi" or name.startswith("fastapi."):
            raise ImportError(f"the example imported {{name}}")
        return None

sys.meta_path.insert(0, NoFastAPI())
for name in [m for m in sys.modules if m == "fastapi" or m.startswith("fastapi.")]:
    del sys.modules[name]
spec = importlib.util.spec_from_file_location("example", {str(EXAMPLE)!r})
example = importlib.util.module_from_spec(spec)
sys.modules["example"] = example
spec.loader.exec_module(example)
import httpx

async def flow():
    codes = {{}}
    async def send(email, code):
        codes[email] = code
    app = example.create_app({str(tmp_path / "app.db")!r}, sender=send)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        await http.post("/auth/request-otp", json={{"email": "a@example.com"}})
        body = {{"email": "a@example.com", "code": codes["a@example.com"]}}
        token = (await http.post("/auth/verify-otp", json=body)).json()["access_token"]
        me = await http.get("/me", headers={{"Authorization": "Bearer " + token}})
        assert me.status_code == 200, me.text

asyncio.run(flow())
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "fastapi")
print("fastapi modules:", loaded)
assert not loaded
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fastapi modules: []" in result.stdout


def test_serves_on_the_port_it_is_given(tmp_path: Path) -> None:
    port = free_port()
    console = tmp_path / "console.log"
    with console.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, str(EXAMPLE), "--port", str(port), "--db", str(tmp_path / "s.db")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 30
        while "Application startup complete" not in console.read_text():
            assert server.poll() is None, console.read_text()
            assert time.monotonic() < deadline, "the example did not start"
            time.sleep(0.1)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as http:
            assert http.post("/auth/request-otp", json={"email": EMAIL}).status_code == 200
            match = re.search(rf"code for {re.escape(EMAIL)}: (\d+)", console.read_text())
            assert match, console.read_text()
            login = http.post("/auth/verify-otp", json={"email": EMAIL, "code": match.group(1)})
            assert login.status_code == 200
            me = http.get("/me", headers=_bearer(login.json()["access_token"]))
            assert me.json()["email"] == EMAIL
    finally:
        server.terminate()
        server.wait(timeout=10)
