"""Statements and write transactions per step of a login flow, counted at the driver (issue 13).

A flow is request-otp -> verify-otp (the first login: the account is created) -> current
user -> refresh -> logout, through the ASGI app, on the README's SQLite wiring (plain
``create_async_engine``), on ``create_sqlite_engine`` and on PostgreSQL. Pinned per step:

- ``statements``: what SQLAlchemy sends (``before_cursor_execute``; SQLite's
  ``BEGIN IMMEDIATE`` is one of them);
- ``writes``: transactions that wrote and committed (a ``commit`` event after an
  ``INSERT``, ``UPDATE`` or ``DELETE`` on that connection). Each step is one at most: the
  first login creates the account, spends the code and opens the session in one;
- ``units`` (PostgreSQL): transactions opened outside autocommit, each two round-trips
  (``BEGIN``, ``COMMIT``) besides its statements. A lone statement runs in autocommit.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from otpcore.stores.sqlalchemy import create_sqlite_engine
from otpcore_fastapi import SQLAlchemyAdapter, get_auth_router, get_current_user_dependency
from tests.backends.postgres import postgres_schema
from tests.backends.sql_models import Base, Blacklist, User
from tests.backends.sqlite import sqlite_database
from tests.http.conftest import BASE_URL, EMAIL, RecordingConfig

_WRITES = ("INSERT", "UPDATE", "DELETE")


class Counts:
    """Per step: statements, write transactions committed, non-autocommit transactions."""

    def __init__(self) -> None:
        self.step = "setup"
        self.seen: dict[str, Counter[str]] = {}
        self._dirty: set[int] = set()

    def add(self, name: str) -> None:
        self.seen.setdefault(self.step, Counter())[name] += 1

    def statement(self, conn: Connection, cursor: Any, statement: str, *rest: Any) -> None:
        self.add("statements")
        if statement.lstrip().split(None, 1)[0].upper() in _WRITES:
            self._dirty.add(id(conn.connection.dbapi_connection))

    def commit(self, conn: Connection) -> None:
        key = id(conn.connection.dbapi_connection)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add("writes")

    def rollback(self, conn: Connection) -> None:
        self._dirty.discard(id(conn.connection.dbapi_connection))

    def begin(self, conn: Connection) -> None:
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            self.add("units")

    def of(self, step: str) -> dict[str, int]:
        return dict(self.seen.get(step, Counter()))


def flow_app(engine: AsyncEngine) -> tuple[FastAPI, RecordingConfig]:
    """The auth router and ``/me`` over ``engine``, and its config."""
    config = RecordingConfig(refresh_token_delivery="body")
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

    @app.get("/me")
    async def me(user: User = current_user) -> dict[str, Any]:
        return {"id": user.id}

    return app, config


@asynccontextmanager
async def counted_app(
    engine: AsyncEngine,
) -> AsyncIterator[tuple[httpx.AsyncClient, Counts, RecordingConfig]]:
    """The auth router and ``/me`` over ``engine``: a client, the counters, the config."""
    app, config = flow_app(engine)
    counts = Counts()
    listeners: list[tuple[str, Callable[..., None]]] = [
        ("before_cursor_execute", counts.statement),
        ("commit", counts.commit),
        ("rollback", counts.rollback),
        ("begin", counts.begin),
    ]
    for name, listener in listeners:
        event.listen(engine.sync_engine, name, listener)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client, counts, config
    for name, listener in listeners:
        event.remove(engine.sync_engine, name, listener)


async def run_flow(
    client: httpx.AsyncClient, counts: Counts, config: RecordingConfig, email: str = EMAIL
) -> None:
    """One login flow of a new user, each step counted under its name."""
    counts.step = "request-otp"
    requested = await client.post("/auth/request-otp", json={"email": email})
    assert requested.status_code == 200, requested.text
    counts.step = "verify-otp"
    body = {"email": email, "code": config.last_code(email)}
    body["challenge_id"] = requested.json()["challenge_id"]
    login = await client.post("/auth/verify-otp", json=body)
    assert login.status_code == 200, login.text
    counts.step = "current-user"
    bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert (await client.get("/me", headers=bearer)).status_code == 200
    counts.step = "refresh"
    renewed = await client.post(
        "/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}
    )
    assert renewed.status_code == 200, renewed.text
    counts.step = "logout"
    bearer = {"Authorization": f"Bearer {renewed.json()['access_token']}"}
    out = await client.post(
        "/auth/logout", json={"refresh_token": renewed.json()["refresh_token"]}, headers=bearer
    )
    assert out.status_code == 200, out.text
    counts.step = "done"


STEPS = ("request-otp", "verify-otp", "current-user", "refresh", "logout")


async def measured(engine: AsyncEngine) -> dict[str, dict[str, int]]:
    """The counts of one new user's login flow over ``engine``, per step."""
    async with counted_app(engine) as (client, counts, config):
        await run_flow(client, counts, config)
    return {step: counts.of(step) for step in STEPS}


#: The README's SQLite wiring: every step writes in one transaction at most. The reads run
#: before it (pysqlite opens no transaction for them), so no reader holds SQLite's lock.
SQLITE: dict[str, dict[str, int]] = {
    # the account lookup; the send-client and send-mailbox hits and the challenge: one commit
    "request-otp": {"statements": 4, "writes": 1},
    # the challenge and the account reads; the verify-client hit, the account-wide guess
    # cap, the new account (verified as it is inserted), the spent code and the session: one
    # commit
    "verify-otp": {"statements": 7, "writes": 1},
    "current-user": {"statements": 1},
    # the principal read; the rotation
    "refresh": {"statements": 2, "writes": 1},
    # the session ended; its revocation and the two tokens' ids, one multi-row insert: one
    # commit
    "logout": {"statements": 2, "writes": 1},
}
#: create_sqlite_engine: the same, each write transaction opened by BEGIN IMMEDIATE (one
#: statement more; a lone write, the rotation, needs none).
_UNITS = ("request-otp", "verify-otp", "logout")
SQLITE_WAL = {
    step: {
        **counts,
        "statements": counts["statements"] + (step in ("request-otp", "verify-otp", "logout")),
    }
    for step, counts in SQLITE.items()
}
#: PostgreSQL: lone statements in autocommit (one round-trip each); the login in one
#: transaction (its 7 statements, BEGIN and COMMIT: 9 round-trips).
POSTGRES: dict[str, dict[str, int]] = {
    "request-otp": {"statements": 4, "writes": 3},
    "verify-otp": {"statements": 7, "writes": 1, "units": 1},
    "current-user": {"statements": 1},
    "refresh": {"statements": 2, "writes": 1},
    "logout": {"statements": 2, "writes": 2},
}


@pytest.mark.parametrize("recommended", [False, True], ids=["readme-sqlite", "sqlite-wal"])
async def test_sqlite_steps_write_in_one_transaction(recommended: bool) -> None:
    async with sqlite_database((Base, User, Blacklist), recommended=recommended) as engine:
        seen = await measured(engine)
    # A SQLAlchemy "begin" is no SQLite transaction (pysqlite begins one before a write).
    for counts in seen.values():
        counts.pop("units", None)
    assert seen == (SQLITE_WAL if recommended else SQLITE)


@pytest.mark.postgres
async def test_postgres_steps() -> None:
    async with postgres_schema((Base, User, Blacklist)) as (engine, _):
        seen = await measured(engine)
    assert seen == POSTGRES


async def test_concurrent_logins_never_meet_in_sqlites_busy_handler(tmp_path: Path) -> None:
    # SQLite's busy timeout at 0: a connection that met another's lock would fail at once
    # (503 storage_unavailable) instead of sleeping in the busy handler. On
    # create_sqlite_engine (WAL: readers never wait), 24 concurrent logins of new users in
    # one process all succeed: writers queue on the adapter's lock, never inside SQLite.
    url = f"sqlite+aiosqlite:///{tmp_path / 'otp.db'}"
    engine = create_sqlite_engine(url, connect_args={"timeout": 0})
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        app, config = flow_app(engine)

        async def login(n: int) -> None:
            transport = httpx.ASGITransport(app=app, client=(f"203.0.113.{n}", 5000))
            async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
                await run_flow(client, Counts(), config, f"user{n}@example.com")

        await asyncio.gather(*(login(n) for n in range(1, 25)))
    finally:
        await engine.dispose()
