"""Database round-trips per protected request, counted at the driver on SQLite.

Current user: exactly one statement (revocations and the user in one query). Claims-only:
none while the revocation mirror is fresh, one per worker per ``revocation_mirror_interval``.
request-otp with ``auto_create_user = False``: the same statements for a known and an
unknown address (issue 8), so the store's work reveals nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from otpcore_fastapi import (
    SQLAlchemyAdapter,
    get_auth_router,
    get_current_user_dependency,
    get_custom_claims_dependency,
    get_principal_dependency,
    get_verified_user_dependency,
)
from tests.backends.sql_models import Base, Blacklist, User
from tests.http.conftest import BASE_URL, EMAIL, RecordingConfig


class Counter:
    """Statements sent to the database."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, *args: Any) -> None:
        self.statements.append(str(args[2]))

    def reset(self) -> None:
        """Start counting afresh."""
        self.statements.clear()


@pytest.fixture
async def sql_app(
    tmp_path: Path,
) -> AsyncIterator[tuple[httpx.AsyncClient, RecordingConfig, Counter]]:
    """An app over a SQLite file, a client, its config, and the statement counter."""
    async with serve_sql(tmp_path, RecordingConfig()) as served:
        yield served


@asynccontextmanager
async def serve_sql(
    tmp_path: Path, config: RecordingConfig
) -> AsyncIterator[tuple[httpx.AsyncClient, RecordingConfig, Counter]]:
    """Serve ``config`` over a SQLite file: a client, the config and the statement counter."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'otp.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with sessions() as session:
            yield session

    async def get_otp_db(
        session: AsyncSession = Depends(get_session),  # noqa: B008
    ) -> AsyncIterator[SQLAlchemyAdapter[User]]:
        yield SQLAlchemyAdapter(session, User, Blacklist)

    app = FastAPI()
    app.include_router(get_auth_router(get_otp_db, config), prefix="/auth")
    current_user = Depends(get_current_user_dependency(get_otp_db, config))
    verified_user = Depends(get_verified_user_dependency(get_otp_db, config))
    custom_claims = Depends(get_custom_claims_dependency(config))
    principal = Depends(get_principal_dependency(config))

    @app.get("/me")
    async def me(user: User = current_user) -> dict[str, Any]:
        return {"id": user.id}

    @app.get("/verified")
    async def verified(user: User = verified_user) -> dict[str, Any]:
        return {"id": user.id}

    @app.get("/claims")
    async def claims(c: dict[str, Any] = custom_claims) -> dict[str, Any]:
        return c

    @app.get("/principal")
    async def whoami(c: Any = principal) -> dict[str, Any]:
        return {"sub": c.sub}

    counter = Counter()
    event.listen(engine.sync_engine, "before_cursor_execute", counter)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as c:
        yield c, config, counter
    event.remove(engine.sync_engine, "before_cursor_execute", counter)
    await engine.dispose()


async def login(client: httpx.AsyncClient, config: RecordingConfig) -> dict[str, str]:
    """Log in; the Authorization header."""
    await client.post("/auth/request-otp", json={"email": EMAIL})
    verified = await client.post(
        "/auth/verify-otp", json={"email": EMAIL, "code": config.last_code()}
    )
    assert verified.status_code == 200, verified.text
    return {"Authorization": f"Bearer {verified.json()['access_token']}"}


@pytest.mark.parametrize("path", ["/me", "/verified"])
async def test_current_user_is_one_round_trip(
    sql_app: tuple[httpx.AsyncClient, RecordingConfig, Counter], path: str
) -> None:
    client, config, counter = sql_app
    headers = await login(client, config)
    for _ in range(3):
        counter.reset()
        response = await client.get(path, headers=headers)
        assert response.status_code == 200
        assert len(counter.statements) == 1, counter.statements


@pytest.mark.parametrize("path", ["/claims", "/principal"])
async def test_claims_only_makes_no_round_trip_while_the_mirror_is_fresh(
    sql_app: tuple[httpx.AsyncClient, RecordingConfig, Counter], path: str
) -> None:
    client, config, counter = sql_app
    headers = await login(client, config)
    counter.reset()
    assert (await client.get(path, headers=headers)).status_code == 200
    assert len(counter.statements) == 1  # the first check loads the mirror
    for _ in range(5):
        counter.reset()
        assert (await client.get(path, headers=headers)).status_code == 200
        assert counter.statements == []
    config.clock.advance(config.revocation_mirror_interval)
    counter.reset()
    assert (await client.get(path, headers=headers)).status_code == 200
    assert len(counter.statements) == 1  # one "revocations since" query per interval


async def test_revocation_is_enforced_on_sql_too(
    sql_app: tuple[httpx.AsyncClient, RecordingConfig, Counter],
) -> None:
    client, config, _ = sql_app
    headers = await login(client, config)
    assert (await client.get("/claims", headers=headers)).status_code == 200
    assert (await client.post("/auth/logout")).status_code == 200
    assert (await client.get("/me", headers=headers)).status_code == 401
    config.clock.advance(config.revocation_mirror_interval)
    assert (await client.get("/claims", headers=headers)).status_code == 401


def shapes(statements: list[str]) -> list[str]:
    """The statements with whitespace folded (their parameters are not part of the text)."""
    return [" ".join(statement.split()) for statement in statements]


async def test_request_otp_makes_the_same_statements_for_known_and_unknown_addresses(
    tmp_path: Path,
) -> None:
    config = RecordingConfig()
    async with serve_sql(tmp_path, config) as (client, _, counter):
        await login(client, config)  # EMAIL is known: its first login created the user
        config.auto_create_user = False
        seen: dict[str, list[list[str]]] = {}
        for email in (EMAIL, "nobody@example.com"):
            client.cookies.clear()
            config.clock.advance(timedelta(hours=2))
            runs = seen.setdefault(email, [])
            for _ in range(2):  # a first request, then a resend on the same binding
                counter.reset()
                response = await client.post("/auth/request-otp", json={"email": email})
                runs.append(shapes(counter.statements))
                runs[-1].append(str(response.status_code))
        known, unknown = seen[EMAIL], seen["nobody@example.com"]
        assert known[0][-1] == "200"
        assert known[1][-1] == "429"  # the binding's cooldown, for both
        assert known == unknown
        assert [len(run) for run in known] == [len(run) for run in unknown]
        assert [email for email, _ in config.outbox].count("nobody@example.com") == 0
