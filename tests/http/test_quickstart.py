"""The reference README's SQLAlchemy Quick Start (``quickstart_app.py``) runs unchanged.

Each test imports the Quick Start afresh inside a temporary directory: its module-level
engine on ``./app.db`` then points there, as it would for a user running it in their project.
One line differs from the published text: the README's placeholder ``secret_key``, which is
refused outside developer mode (issue 11), is replaced by a generated secret, as the README
itself tells users to do (``openssl rand -hex 32``).
"""

from __future__ import annotations

import importlib.util
import re
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from otpcore.domain.errors import ConfigurationError
from otpcore_fastapi import get_auth_router, get_current_user_dependency

EMAIL = "alice@example.com"
# The Quick Start sets cookie_secure = True, so its client speaks https, as in production.
BASE_URL = "https://testserver"
MODULE = "tests.http.quickstart_app"
PLACEHOLDER = "your-secret-key-generate-with-openssl-rand-hex-32"


def import_quickstart(*, secret: str | None) -> ModuleType:
    """Import the Quick Start afresh, with ``secret`` in place of the README's placeholder."""
    sys.modules.pop(MODULE, None)
    if secret is None:
        return importlib.import_module(MODULE)
    spec = importlib.util.find_spec(MODULE)
    assert spec is not None
    assert spec.loader is not None
    assert spec.origin is not None
    source = spec.loader.get_source(MODULE)  # type: ignore[attr-defined]
    assert isinstance(source, str)
    assert source.count(f'"{PLACEHOLDER}"') == 1
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE] = module
    code = compile(source.replace(PLACEHOLDER, secret), spec.origin, "exec")
    exec(code, module.__dict__)  # noqa: S102 - the repository's own Quick Start module
    return module


@pytest.fixture
async def quickstart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModuleType]:
    """The Quick Start module, imported in a temporary directory, with its tables created."""
    monkeypatch.chdir(tmp_path)
    module = import_quickstart(secret=secrets.token_hex(32))
    async with module.engine.begin() as connection:
        await connection.run_sync(module.Base.metadata.create_all)
    yield module
    await module.engine.dispose()
    sys.modules.pop(MODULE, None)
    assert (tmp_path / "app.db").exists()


@pytest.fixture
async def client(quickstart: ModuleType) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the Quick Start's app."""
    transport = httpx.ASGITransport(app=quickstart.app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        yield http


def test_the_readme_placeholder_secret_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    try:
        with pytest.raises(ConfigurationError, match="placeholder"):
            import_quickstart(secret=None)
    finally:
        sys.modules.pop(MODULE, None)


def printed_code(capsys: pytest.CaptureFixture[str], email: str) -> str:
    """The code the Quick Start's ``send_otp`` printed for ``email``."""
    found = re.findall(rf"OTP for {re.escape(email)}: (\d+)", capsys.readouterr().out)
    assert found, "send_otp printed no code"
    code: str = found[-1]
    return code


async def sign_up(quickstart: ModuleType, email: str, username: str) -> int:
    """Insert a user as the application's own sign-up would (``username`` is required)."""
    async with quickstart.async_session_maker() as session:
        user = quickstart.User(email=email, username=username)
        session.add(user)
        await session.commit()
        user_id: int = user.id
        return user_id


async def test_the_quick_start_runs_the_whole_flow(
    quickstart: ModuleType, client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    user_id = await sign_up(quickstart, EMAIL, "alice")

    requested = await client.post("/auth/request-otp", json={"email": EMAIL})
    assert requested.status_code == 200
    # Issue 8 adds the binding (challenge_id) to the reference's shape.
    assert requested.json()["message"] == "OTP code has been sent to your email"
    assert set(requested.json()) == {"message", "challenge_id"}
    code = printed_code(capsys, EMAIL)
    assert len(code) == 6

    verified = await client.post("/auth/verify-otp", json={"email": EMAIL, "code": code})
    assert verified.status_code == 200
    body = verified.json()
    assert set(body) == {"access_token", "token_type"}
    assert body["token_type"] == "bearer"
    set_cookie = verified.headers["set-cookie"]
    assert set_cookie.startswith("refresh_token=")
    for attribute in ("HttpOnly", "Secure", "SameSite=lax", "Path=/auth"):
        assert attribute in set_cookie
    headers = {"Authorization": f"Bearer {body['access_token']}"}

    protected = await client.get("/protected", headers=headers)
    assert protected.status_code == 200
    assert protected.json() == {"user_id": user_id, "email": EMAIL}
    verified_only = await client.get("/verified-only", headers=headers)
    assert verified_only.json() == {"message": "Access granted to verified user"}
    claims = await client.get("/check-claims", headers=headers)
    assert claims.json() == {"custom_claims": {"username": "alice"}}

    refreshed = await client.post("/auth/refresh")
    assert refreshed.status_code == 200
    assert set(refreshed.json()) == {"access_token", "token_type"}
    new_headers = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    assert (await client.get("/protected", headers=new_headers)).status_code == 200

    logged_out = await client.post("/auth/logout")
    assert logged_out.status_code == 200
    assert logged_out.json() == {"message": "Successfully logged out"}
    assert "refresh_token" not in client.cookies
    assert (await client.get("/protected", headers=new_headers)).status_code == 401
    assert (await client.post("/auth/refresh")).status_code == 401

    assert (await client.get("/protected")).status_code == 401
    wrong = await client.post("/auth/verify-otp", json={"email": EMAIL, "code": "000000"})
    assert wrong.status_code == 401


async def test_auto_creating_the_quick_start_user_names_the_hook_it_needs(
    quickstart: ModuleType, client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    # The README's User has a required username no library can invent (the reference fails
    # with an IntegrityError here); otpcore says which hook provides it. Issue 8: no user
    # row before a verified login, so it is the right code's verify that needs the hook,
    # and it fails before the code is spent.
    email = "new@example.com"
    assert (await client.post("/auth/request-otp", json={"email": email})).status_code == 200
    code = printed_code(capsys, email)
    with pytest.raises(ConfigurationError, match="new_user_fields"):
        await client.post("/auth/verify-otp", json={"email": email, "code": code})
    async with quickstart.async_session_maker() as session:
        assert await session.get(quickstart.User, 1) is None
    quickstart.config.new_user_fields = lambda address: {"username": address.split("@")[0]}
    verified = await client.post("/auth/verify-otp", json={"email": email, "code": code})
    assert verified.status_code == 200, verified.text


async def test_the_new_user_fields_hook_lets_it_auto_create(
    quickstart: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    class AutoCreatingConfig(quickstart.MyOTPConfig):  # type: ignore[misc, name-defined]
        def new_user_fields(self, email: str) -> dict[str, Any]:
            return {"username": email.split("@")[0]}

    config = AutoCreatingConfig()
    app = FastAPI()
    app.include_router(get_auth_router(quickstart.get_otp_db, config), prefix="/auth")
    me = Depends(get_current_user_dependency(quickstart.get_otp_db, config))

    @app.get("/me")
    async def whoami(user: Any = me) -> dict[str, Any]:
        return {"username": user.username}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        email = "carol@example.com"
        assert (await http.post("/auth/request-otp", json={"email": email})).status_code == 200
        code = printed_code(capsys, email)
        verified = await http.post("/auth/verify-otp", json={"email": email, "code": code})
        token = verified.json()["access_token"]
        response = await http.get("/me", headers={"Authorization": f"Bearer {token}"})
        assert response.json() == {"username": "carol"}


async def test_the_quick_start_and_its_create_all_support_abuse_protection(
    quickstart: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 8 on the verbatim models: binding, limits, device allowance, no early rows."""
    from sqlalchemy import func, inspect, select

    async with quickstart.engine.connect() as connection:
        tables = set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
    assert {"token_blacklist_challenges", "token_blacklist_limits"} <= tables
    await sign_up(quickstart, EMAIL, "alice")

    def client_at(ip: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=quickstart.app, client=(ip, 40_000))
        return httpx.AsyncClient(transport=transport, base_url=BASE_URL)

    async with client_at("198.51.100.1") as owner, client_at("203.0.113.9") as stranger:
        requested = await owner.post("/auth/request-otp", json={"email": EMAIL})
        assert requested.status_code == 200
        assert requested.json()["challenge_id"] == owner.cookies["otp_challenge"]
        code = printed_code(capsys, EMAIL)

        # A stranger: 3 code requests and 20 wrong guesses, bound and unbound.
        wrong = "000000" if code != "000000" else "111111"
        for attempt in range(20):
            if attempt in (0, 7, 14):
                response = await stranger.post("/auth/request-otp", json={"email": EMAIL})
                assert response.status_code in (200, 429)
            if attempt % 2:
                stranger.cookies.clear()
            response = await stranger.post("/auth/verify-otp", json={"email": EMAIL, "code": wrong})
            assert response.status_code in (401, 429)
        capsys.readouterr()

        verified = await owner.post("/auth/verify-otp", json={"email": EMAIL, "code": code})
        assert verified.status_code == 200, verified.text
        assert "otp_device" in owner.cookies
        assert "otp_challenge" not in owner.cookies

        # No user row before a verified login; the mailbox limit counts unknown addresses.
        statuses = []
        for index in range(7):
            async with client_at(f"192.0.2.{index + 1}") as client:
                response = await client.post(
                    "/auth/request-otp", json={"email": f"new+{index}@example.com"}
                )
                statuses.append(response.status_code)
        assert statuses[:5] == [200] * 5
        assert statuses[5:] == [429, 429]
    async with quickstart.async_session_maker() as session:
        users = await session.scalar(select(func.count()).select_from(quickstart.User))
        pending = await session.scalar(
            select(func.count()).select_from(
                quickstart.Base.metadata.tables["token_blacklist_challenges"]
            )
        )
    assert users == 1
    assert pending is not None
    assert pending >= 7
