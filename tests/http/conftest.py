"""Shared pieces of the HTTP suite: a recording config, an app over the memory store, a client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from otpcore.domain.records import Claims
from otpcore.ports import Store
from otpcore.stores.memory import MemoryStore, MemoryUser
from otpcore.testing.clock import FakeClock
from otpcore_fastapi import (
    OTPAuthConfig,
    get_auth_router,
    get_current_user_dependency,
    get_custom_claims_dependency,
    get_principal_dependency,
    get_verified_user_dependency,
)

SECRET = "0123456789abcdef0123456789abcdef0123456789abcdef"
EMAIL = "alice@example.com"
BASE_URL = "http://testserver"


class RecordingConfig(OTPAuthConfig):
    """A config whose sender records codes and whose clock the test moves."""

    secret_key = SECRET

    def __init__(self, *, clock: FakeClock | None = None, **settings: Any) -> None:
        # Instance attributes shadow the class attributes the base validates and reads.
        # http://testserver is not https, so Secure cookies would never be sent back.
        settings.setdefault("cookie_secure", False)
        for name, value in settings.items():
            setattr(self, name, value)
        self.clock = clock or FakeClock()
        self.outbox: list[tuple[str, str]] = []
        super().__init__()

    async def send_otp(self, email: str, code: str) -> None:
        self.outbox.append((email, code))

    def now(self) -> datetime:
        return self.clock()

    def last_code(self, email: str = EMAIL) -> str:
        """The most recent code sent to ``email``."""
        return next(code for to, code in reversed(self.outbox) if to == email)


@dataclass
class Harness:
    """An app over a memory store, its client and what the test controls."""

    app: FastAPI
    client: httpx.AsyncClient
    config: RecordingConfig
    store: Store[Any]
    get_otp_db: Callable[..., Any]
    prefix: str = "/auth"

    @property
    def memory(self) -> MemoryStore:
        """The store, when it is the memory store."""
        assert isinstance(self.store, MemoryStore)
        return self.store

    @property
    def clock(self) -> FakeClock:
        """The config's clock."""
        return self.config.clock

    async def request_code(self, email: str = EMAIL) -> httpx.Response:
        """POST request-otp."""
        return await self.client.post(f"{self.prefix}/request-otp", json={"email": email})

    async def login(self, email: str = EMAIL) -> dict[str, Any]:
        """Request and verify a code; the verify-otp JSON body."""
        assert (await self.request_code(email)).status_code == 200
        response = await self.client.post(
            f"{self.prefix}/verify-otp",
            json={"email": email, "code": self.config.last_code(email)},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def build_app(
    config: OTPAuthConfig, store: Store[Any], prefix: str = "/auth"
) -> tuple[FastAPI, Callable[..., Any]]:
    """An app with the auth router under ``prefix`` and one route per dependency."""

    async def get_otp_db() -> AsyncIterator[Store[Any]]:
        yield store

    app = FastAPI()
    app.include_router(get_auth_router(get_otp_db, config), prefix=prefix, tags=["auth"])
    current_user = Depends(get_current_user_dependency(get_otp_db, config))
    verified_user = Depends(get_verified_user_dependency(get_otp_db, config))
    custom_claims = Depends(get_custom_claims_dependency(config))
    principal = Depends(get_principal_dependency(config))

    @app.get("/open")
    async def open_route() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/me")
    async def me(user: MemoryUser = current_user) -> dict[str, Any]:
        return {"id": user.id, "email": user.email}

    @app.get("/verified")
    async def verified(user: MemoryUser = verified_user) -> dict[str, Any]:
        return {"id": user.id}

    @app.get("/claims")
    async def claims(claims: dict[str, Any] = custom_claims) -> dict[str, Any]:
        return claims

    @app.get("/principal")
    async def whoami(claims: Claims = principal) -> dict[str, Any]:
        return {"sub": claims.sub, "sid": claims.sid, "extra": dict(claims.extra)}

    return app, get_otp_db


HarnessFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_harness() -> AsyncIterator[HarnessFactory]:
    """Build harnesses from config settings; closes their clients afterwards."""
    clients: list[httpx.AsyncClient] = []

    async def make(
        *,
        prefix: str = "/auth",
        store: Store[Any] | None = None,
        config_class: type[RecordingConfig] = RecordingConfig,
        **settings: Any,
    ) -> Harness:
        config = config_class(**settings)
        memory = store if store is not None else MemoryStore()
        app, get_otp_db = build_app(config, memory, prefix)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)
        clients.append(client)
        return Harness(app, client, config, memory, get_otp_db, prefix)

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture(params=["cookie", "body", "both"])
def delivery(request: pytest.FixtureRequest) -> str:
    """Each refresh-token delivery mode."""
    mode: str = request.param
    return mode
