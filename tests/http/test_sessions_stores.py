"""Issue 10: the session endpoints over every store (memory, SQLite, PostgreSQL, MongoDB).

The app opens a fresh store handle per request, as an application's ``get_otp_db`` does, so
what one request writes (a login's session record, an ended session) is read back by the
next through the database, not through an object both share.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import jwt
from fastapi import Depends, FastAPI

from otpcore.ports import Store
from otpcore.testing.contract import Backend
from otpcore_fastapi import (
    get_auth_router,
    get_current_user_dependency,
    get_custom_claims_dependency,
)
from tests.http.conftest import BASE_URL, EMAIL, RecordingConfig

OTHER = "bob@example.com"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sid_of(token: str) -> str:
    sid: str = jwt.decode(token, options={"verify_signature": False})["sid"]
    return sid


def app_over(backend: Backend, config: RecordingConfig) -> FastAPI:
    async def get_otp_db() -> AsyncIterator[Store[Any]]:
        async with backend.store(clock=config.clock) as store:
            yield store

    app = FastAPI()
    app.include_router(get_auth_router(get_otp_db, config), prefix="/auth")
    current_user = Depends(get_current_user_dependency(get_otp_db, config))
    custom_claims = Depends(get_custom_claims_dependency(config))

    @app.get("/me")
    async def me(user: Any = current_user) -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/claims")
    async def claims(found: dict[str, Any] = custom_claims) -> dict[str, Any]:
        return found

    return app


async def login(
    client: httpx.AsyncClient, config: RecordingConfig, user_agent: str, email: str = EMAIL
) -> tuple[str, str]:
    config.clock.advance(timedelta(seconds=config.otp_rate_limit_seconds + 1))
    headers = {"User-Agent": user_agent}
    assert (
        await client.post("/auth/request-otp", json={"email": email}, headers=headers)
    ).status_code == 200
    verified = await client.post(
        "/auth/verify-otp",
        json={"email": email, "code": config.last_code(email)},
        headers=headers,
    )
    assert verified.status_code == 200, verified.text
    body = verified.json()
    return body["access_token"], body["refresh_token"]


async def test_session_endpoints_on_every_store(backend: Backend) -> None:
    config = RecordingConfig(refresh_token_delivery="body")
    app = app_over(backend, config)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as c:
        laptop, laptop_refresh = await login(c, config, "Laptop/1.0")
        phone, phone_refresh = await login(c, config, "Phone/1.0")
        tablet, tablet_refresh = await login(c, config, "Tablet/1.0")
        bob, _ = await login(c, config, "Bob/1.0", email=OTHER)

        listed = (await c.get("/auth/sessions", headers=bearer(laptop))).json()
        assert [item["user_agent"] for item in listed] == ["Tablet/1.0", "Phone/1.0", "Laptop/1.0"]
        assert [item["current"] for item in listed] == [False, False, True]
        assert {item["ip"] for item in listed} == {"127.0.0.1"}

        # Another user's session is not found; nothing of it changes.
        foreign = await c.delete(f"/auth/sessions/{sid_of(bob)}", headers=bearer(laptop))
        assert foreign.status_code == 404
        assert foreign.json()["code"] == "session_not_found"
        assert (await c.get("/me", headers=bearer(bob))).status_code == 200

        # End the phone's session from the laptop.
        assert (await c.get("/claims", headers=bearer(phone))).status_code == 200
        ended = await c.delete(f"/auth/sessions/{sid_of(phone)}", headers=bearer(laptop))
        assert ended.status_code == 204, ended.text
        refused = await c.post("/auth/refresh", json={"refresh_token": phone_refresh})
        assert refused.json()["code"] == "token_revoked"
        assert (await c.get("/me", headers=bearer(phone))).status_code == 401
        config.clock.advance(config.revocation_mirror_interval)
        assert (await c.get("/claims", headers=bearer(phone))).status_code == 401
        again = await c.delete(f"/auth/sessions/{sid_of(phone)}", headers=bearer(laptop))
        assert again.status_code == 404

        # Everything but the laptop's.
        others = await c.post("/auth/logout-others", headers=bearer(laptop))
        assert others.json()["ended"] == 1
        refused = await c.post("/auth/refresh", json={"refresh_token": tablet_refresh})
        assert refused.json()["code"] == "token_revoked"
        assert (await c.get("/me", headers=bearer(tablet))).status_code == 401
        listed = (await c.get("/auth/sessions", headers=bearer(laptop))).json()
        assert [item["user_agent"] for item in listed] == ["Laptop/1.0"]
        assert (
            await c.post("/auth/refresh", json={"refresh_token": laptop_refresh})
        ).status_code == 200
        assert (await c.get("/me", headers=bearer(bob))).status_code == 200
