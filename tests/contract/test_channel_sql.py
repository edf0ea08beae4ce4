"""What only the SQL store promises about pending challenges and limit counters (issue 8), on
SQLite and (when available) PostgreSQL.

The tables come with the application's models (the reference Quick Start's two, verbatim,
and their ``create_all``); a limit hit is one ``INSERT … ON CONFLICT … RETURNING`` (a
refusal one more ``SELECT``), autocommitted on PostgreSQL; each challenge call is one
statement; the upgrade scripts make the same tables as ``create_all``; a dialect without
``ON CONFLICT`` is told so.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase

from otpcore.domain.errors import ConfigurationError
from otpcore.domain.limits import window_at
from otpcore.domain.records import ChallengeState, PendingChallenge
from otpcore.stores.sqlalchemy import SQLAlchemyAdapter
from otpcore.stores.sqlalchemy.limits import limit_plan
from otpcore.stores.upgrade import sql_script
from tests.backends.postgres import postgres_schema
from tests.backends.sql_models import Base, Blacklist, User
from tests.backends.sqlite import sqlite_engine
from tests.contract.test_sqlalchemy_specific import DIALECTS, Database, _database, statements
from tests.http.test_quickstart import import_quickstart

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
TABLES = ("token_blacklist_challenges", "token_blacklist_limits")


@pytest.fixture(params=DIALECTS)
async def db(request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    """Integer-key tables (``User``, ``Blacklist``) and their companion tables."""
    async with _database(request.param, (Base, User, Blacklist)) as database:
        yield database


def _challenge(key: str, *, at: datetime = T0) -> PendingChallenge:
    state = ChallengeState(code_hash="c" * 64, issued_at=at, last_request_at=at, version=1)
    return PendingChallenge(id=key, subject="s" * 64, state=state, expires_at=at + MINUTE)


def _shape(connection: Any, table: str) -> dict[str, Any]:
    inspector = inspect(connection)
    return {
        "columns": [
            (column["name"], str(column["type"]), column["nullable"], column.get("default"))
            for column in inspector.get_columns(table)
        ],
        "primary key": inspector.get_pk_constraint(table)["constrained_columns"],
        "indexes": sorted(
            (index["name"], tuple(index["column_names"]), bool(index["unique"]))
            for index in inspector.get_indexes(table)
        ),
    }


async def _shapes(connection: AsyncConnection) -> list[dict[str, Any]]:
    return [await connection.run_sync(_shape, table) for table in TABLES]


async def test_quickstart_models_and_their_create_all_make_both_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    quickstart = import_quickstart(secret="ab" * 32)
    engine: AsyncEngine = quickstart.engine
    try:
        async with engine.begin() as connection:
            await connection.run_sync(quickstart.Base.metadata.create_all)
        async with engine.connect() as connection:
            shapes = await _shapes(connection)
    finally:
        await engine.dispose()
    challenges, limits = shapes
    assert challenges["primary key"] == ["id"]
    assert [column[0] for column in limits["columns"]] == [
        "key",
        "window_start",
        "count",
        "previous_count",
        "expires_at",
    ]


async def test_an_allowed_hit_is_one_statement_and_a_refusal_one_more_select(
    db: Database,
) -> None:
    window = window_at(T0, MINUTE)
    async with db.adapter() as store:
        with statements(db.engine) as allowed:
            hit = await store.hit("k" * 43, limit=1, window=window)
        assert hit.allowed
        with statements(db.engine) as refused:
            hit = await store.hit("k" * 43, limit=1, window=window)
        assert not hit.allowed
        assert (hit.count, hit.previous_count) == (1, 0)
    assert [statement.split()[0].upper() for statement in allowed] == ["INSERT"]
    assert "ON CONFLICT" in allowed[0].upper()
    assert "RETURNING" in allowed[0].upper()
    assert [statement.split()[0].upper() for statement in refused] == ["INSERT", "SELECT"]


async def test_each_challenge_call_is_one_statement(db: Database) -> None:
    async with db.adapter() as store:
        with statements(db.engine) as seen:
            await store.create_challenge(_challenge("c-1"))
            await store.find_challenge("c-1")
            await store.newest_challenge("s" * 64)
            await store.update_challenge(
                "c-1", expected_version=1, state=ChallengeState(last_request_at=T0), expires_at=T0
            )
    assert [statement.split()[0].upper() for statement in seen] == [
        "INSERT",
        "SELECT",
        "SELECT",
        "UPDATE",
    ]


async def test_a_challenge_without_last_request_at_is_refused_before_any_statement(
    db: Database,
) -> None:
    orphan = PendingChallenge(id="c", subject="s", state=ChallengeState(), expires_at=T0)
    async with db.adapter() as store:
        with statements(db.engine) as seen, pytest.raises(ValueError, match="last_request_at"):
            await store.create_challenge(orphan)
    assert seen == []


def test_a_dialect_without_on_conflict_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="PostgreSQL or SQLite"):
        limit_plan(Blacklist, "mysql")


async def test_sqlite_abuse_script_makes_the_tables_create_all_makes() -> None:
    with tempfile.TemporaryDirectory() as directory:
        made = sqlite_engine(Path(directory) / "made.db")
        upgraded = sqlite_engine(Path(directory) / "upgraded.db")
        try:
            async with made.begin() as connection:
                await connection.run_sync(Base.metadata.create_all)
            async with upgraded.begin() as connection:  # a database from before issue 8
                await connection.run_sync(
                    Base.metadata.create_all,
                    tables=[Base.metadata.tables["users"], Base.metadata.tables["token_blacklist"]],
                )
            with sqlite3.connect(Path(directory) / "upgraded.db", isolation_level=None) as raw:
                raw.executescript(sql_script("sqlite", abuse_only=True))
                raw.executescript(sql_script("sqlite", abuse_only=True))  # idempotent
            raw.close()
            async with made.connect() as left, upgraded.connect() as right:
                assert await _shapes(left) == await _shapes(right)
            await _works(upgraded)
        finally:
            await made.dispose()
            await upgraded.dispose()


class _Empty(DeclarativeBase):
    pass


@pytest.mark.postgres
async def test_postgresql_abuse_script_makes_the_tables_create_all_makes() -> None:
    async with (
        postgres_schema((Base, User, Blacklist)) as (made, _),
        postgres_schema((_Empty, User, Blacklist)) as (upgraded, _),
    ):
        async with upgraded.begin() as connection:
            await connection.run_sync(
                Base.metadata.create_all,
                tables=[Base.metadata.tables["users"], Base.metadata.tables["token_blacklist"]],
            )
        for _ in range(2):  # idempotent
            async with upgraded.connect() as connection:
                raw: Any = await connection.get_raw_connection()
                await raw.driver_connection.execute(sql_script("postgresql", abuse_only=True))
        async with made.connect() as left, upgraded.connect() as right:
            assert await _shapes(left) == await _shapes(right)
        await _works(upgraded)


def test_the_full_upgrade_ends_with_the_sessions_and_abuse_tables() -> None:
    for dialect in ("sqlite", "postgresql"):
        full = sql_script(dialect)
        assert full.endswith(sql_script(dialect, abuse_only=True))
        assert sql_script(dialect, sessions_only=True) in full


async def _works(engine: AsyncEngine) -> None:
    async with async_sessionmaker(engine)() as session:
        store = SQLAlchemyAdapter(session, User, Blacklist)
        await store.create_challenge(_challenge("c-1"))
        assert await store.find_challenge("c-1") is not None
        assert (await store.hit("k", limit=1, window=window_at(T0, MINUTE))).allowed
