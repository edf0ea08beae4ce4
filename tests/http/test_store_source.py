"""Claims-only dependencies reach the store through ``get_otp_db``, solved by FastAPI's DI."""

# No `from __future__ import annotations`: the dependencies below are local functions, which
# FastAPI cannot find by name in a string annotation.

from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request

from otpcore.domain.errors import ConfigurationError
from otpcore.ports import Store
from otpcore.stores.memory import MemoryStore
from otpcore_fastapi import get_auth_router, get_custom_claims_dependency
from otpcore_fastapi.store_source import StoreSource
from tests.http.conftest import BASE_URL, EMAIL, RecordingConfig


class Tracker:
    """Records what was opened and closed."""

    def __init__(self) -> None:
        self.events: list[str] = []


async def test_nested_async_generators_are_resolved_and_closed() -> None:
    tracker = Tracker()
    store = MemoryStore()

    async def get_session() -> AsyncIterator[str]:
        tracker.events.append("session open")
        yield "session"
        tracker.events.append("session closed")

    async def get_otp_db(session: str = Depends(get_session)) -> AsyncIterator[MemoryStore]:
        assert session == "session"
        tracker.events.append("db open")
        yield store
        tracker.events.append("db closed")

    async with StoreSource(get_otp_db).open() as opened:
        assert opened is store
        assert tracker.events == ["session open", "db open"]
    assert tracker.events == ["session open", "db open", "db closed", "session closed"]


async def test_every_callable_shape_is_supported() -> None:
    store = MemoryStore()
    closed: list[str] = []

    def sync_gen() -> Iterator[int]:
        yield 1
        closed.append("sync")

    async def coroutine() -> int:
        return 2

    def plain() -> int:
        return 3

    class Settings:
        def __init__(self, value: Annotated[int, Depends(plain)]) -> None:
            self.value = value

    def get_otp_db(
        a: Annotated[int, Depends(sync_gen)],
        b: Annotated[int, Depends(coroutine)],
        c: int = Depends(plain),
        settings: Settings = Depends(),  # noqa: B008
        d: int = 4,
    ) -> MemoryStore:
        assert (a, b, c, settings.value, d) == (1, 2, 3, 3, 4)
        return store

    async with StoreSource(get_otp_db).open() as opened:
        assert opened is store
    assert closed == ["sync"]


async def test_a_shared_sub_dependency_is_called_once() -> None:
    calls: list[int] = []

    def counter() -> int:
        calls.append(1)
        return len(calls)

    def get_otp_db(a: int = Depends(counter), b: int = Depends(counter)) -> tuple[int, int]:
        return a, b

    async with StoreSource(get_otp_db).open() as opened:
        assert opened == (1, 1)
    assert calls == [1]


def test_an_unresolvable_signature_fails_when_the_router_is_built() -> None:
    async def get_otp_db(session: Any) -> AsyncIterator[MemoryStore]:
        yield MemoryStore()

    with pytest.raises(ConfigurationError, match="parameter 'session'"):
        get_auth_router(get_otp_db, RecordingConfig())


def test_an_unresolvable_nested_signature_fails_too() -> None:
    def get_session(url: str) -> str:
        return url

    def get_otp_db(session: str = Depends(get_session)) -> MemoryStore:
        return MemoryStore()

    with pytest.raises(ConfigurationError, match="get_session"):
        StoreSource(get_otp_db)


async def test_claims_dependency_without_a_recorded_store_says_what_to_do() -> None:
    config = RecordingConfig()
    app = FastAPI()
    claims = Depends(get_custom_claims_dependency(config))

    @app.get("/claims")
    async def read(c: dict[str, Any] = claims) -> dict[str, Any]:
        return c

    token = config.auth.codec.issue(
        kind="access", subject="1", sid="s", jti="j", auth_time=0.0, now=config.now()
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as c:
        with pytest.raises(ConfigurationError, match="get_auth_router"):
            await c.get("/claims", headers={"Authorization": f"Bearer {token}"})


async def test_the_mirror_honours_dependency_overrides_and_the_request() -> None:
    production = MemoryStore()  # must never be touched in this test
    test_store = MemoryStore()
    seen_paths: list[str] = []

    def get_store() -> Store[Any]:
        return production

    async def get_otp_db(
        request: Request,
        store: Store[Any] = Depends(get_store),  # noqa: B008
    ) -> AsyncIterator[Store[Any]]:
        seen_paths.append(request.url.path)
        yield store

    config = RecordingConfig()
    app = FastAPI()
    app.include_router(get_auth_router(get_otp_db, config), prefix="/auth")
    claims = Depends(get_custom_claims_dependency(config))

    @app.get("/claims")
    async def read(c: dict[str, Any] = claims) -> dict[str, Any]:
        return c

    app.dependency_overrides[get_store] = lambda: test_store
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as c:
        await c.post("/auth/request-otp", json={"email": EMAIL})
        verified = await c.post(
            "/auth/verify-otp", json={"email": EMAIL, "code": config.last_code()}
        )
        headers = {"Authorization": f"Bearer {verified.json()['access_token']}"}
        assert (await c.get("/claims", headers=headers)).status_code == 200
        assert (await c.post("/auth/logout")).status_code == 200
        config.clock.advance(config.revocation_mirror_interval)
        # Only the overridden store knows about the logout; the mirror must have read it.
        assert (await c.get("/claims", headers=headers)).status_code == 401
    assert await production.find_by_email(EMAIL) is None
    assert "/claims" in seen_paths  # the mirror refresh ran get_otp_db with the request


async def test_the_store_is_opened_only_for_a_stale_mirror_and_closed_at_once() -> None:
    store = MemoryStore()
    events: list[str] = []

    async def get_otp_db() -> AsyncIterator[MemoryStore]:
        events.append("open")
        yield store
        events.append("close")

    config = RecordingConfig()
    app = FastAPI()
    app.include_router(get_auth_router(get_otp_db, config), prefix="/auth")
    claims = Depends(get_custom_claims_dependency(config))

    @app.get("/claims")
    async def read(c: dict[str, Any] = claims) -> dict[str, Any]:
        events.append("handler")
        return c

    account = await store.create(EMAIL, {})
    token = config.auth.codec.issue(
        kind="access",
        subject=account.user_id,
        sid="s",
        jti="j",
        auth_time=config.clock().timestamp(),
        now=config.clock(),
    )
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as c:
        for _ in range(3):
            assert (await c.get("/claims", headers=headers)).status_code == 200
        # Opened for the first (cold) check and closed before the handler ran; then no
        # store session at all while the mirror is fresh.
        assert events == ["open", "close", "handler", "handler", "handler"]
        events.clear()
        config.clock.advance(config.revocation_mirror_interval)
        assert (await c.get("/claims", headers=headers)).status_code == 200
        assert events == ["open", "close", "handler"]


def test_a_required_query_parameter_deep_in_the_tree_is_named() -> None:
    def get_tenant(tenant: str) -> str:
        return tenant

    def get_session(tenant: str = Depends(get_tenant)) -> str:
        return tenant

    def get_otp_db(session: str = Depends(get_session)) -> MemoryStore:
        return MemoryStore()

    with pytest.raises(ConfigurationError, match=r"get_tenant.*'tenant'"):
        StoreSource(get_otp_db)


def test_a_body_parameter_in_the_tree_is_refused() -> None:
    from pydantic import BaseModel

    class Payload(BaseModel):
        value: int

    def get_otp_db(payload: Payload) -> MemoryStore:
        return MemoryStore()

    with pytest.raises(ConfigurationError, match="request body"):
        StoreSource(get_otp_db)
