"""What only the SQL store promises about sessions, on SQLite and (when available) PostgreSQL.

The sessions table comes with the application's own models (the reference Quick Start's
two, verbatim, and their ``create_all``), whatever the mapping style; each port method is
one statement (``end_sessions`` one ``UPDATE … RETURNING``; ``purge_expired`` one more
``DELETE``), autocommitted on PostgreSQL; the upgrade scripts make the same table as
``create_all``.
"""

from __future__ import annotations

import re
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Integer, String, event, inspect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    declarative_base,
    mapped_column,
    registry,
)

from otpcore.domain.errors import ConfigurationError
from otpcore.domain.records import SessionRecord
from otpcore.stores.sqlalchemy import SQLAlchemyAdapter, TokenBlacklist
from otpcore.stores.sqlalchemy.models import sessions_table
from otpcore.stores.upgrade import sql_script
from tests.backends.postgres import postgres_schema
from tests.backends.sql_models import Base, Blacklist, User
from tests.backends.sqlite import sqlite_engine
from tests.contract.test_sqlalchemy_specific import DIALECTS, Database, _database, statements
from tests.http.test_quickstart import import_quickstart

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
TABLE = "token_blacklist_sessions"


def _session(sid: str, user_id: str = "1", *, ttl: float = 3600) -> SessionRecord:
    return SessionRecord(
        sid=sid,
        user_id=user_id,
        created_at=T0,
        last_used_at=T0,
        rotated_at=T0,
        generation=0,
        user_agent="curl/8.5",
        ip="192.0.2.7",
        expires_at=T0 + timedelta(seconds=ttl),
    )


@pytest.fixture(params=DIALECTS)
async def db(request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    """Integer-key tables (``User``, ``Blacklist``) and their sessions table."""
    async with _database(request.param, (Base, User, Blacklist)) as database:
        yield database


def _shape(connection: Any, table: str) -> dict[str, Any]:
    """A table as the database reports it: columns, primary key, indexes."""
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


async def _table_shape(connection: AsyncConnection, table: str = TABLE) -> dict[str, Any]:
    return await connection.run_sync(_shape, table)


# -- the table comes with the application's models ---------------------------------------------


async def test_quickstart_models_and_their_create_all_make_the_sessions_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    quickstart = import_quickstart(secret="ab" * 32)
    engine: AsyncEngine = quickstart.engine
    try:
        async with engine.begin() as connection:
            await connection.run_sync(quickstart.Base.metadata.create_all)
        async with engine.connect() as connection:
            shape = await _table_shape(connection)
        assert shape["primary key"] == ["sid"]
        assert [column[0] for column in shape["columns"]] == [
            "sid",
            "user_id",
            "created_at",
            "last_used_at",
            "rotated_at",
            "expires_at",
            "generation",
            "user_agent",
            "ip",
            "ended_at",
        ]
        assert shape["indexes"] == [
            (f"ix_{TABLE}_expires_at", ("expires_at",), False),
            (f"ix_{TABLE}_user_id_expires_at", ("user_id", "expires_at"), False),
        ]
        async with quickstart.async_session_maker() as session:
            store = SQLAlchemyAdapter(session, quickstart.User, quickstart.Blacklist)
            await store.open_session(_session("s-1"))
            assert await store.rotate_session(
                "s-1", expected_generation=0, now=T0, expires_at=T0 + timedelta(days=1)
            )
            assert [found.sid for found in await store.list_sessions("1", now=T0)] == ["s-1"]
    finally:
        await engine.dispose()


def test_the_table_is_declared_whatever_the_mapping_style() -> None:
    class Modern(DeclarativeBase):
        pass

    class Renamed(TokenBlacklist, Modern):
        __tablename__ = "revoked"

    legacy: Any = declarative_base()

    class Legacy(TokenBlacklist, legacy):  # type: ignore[misc]
        pass

    mapper_registry = registry()

    @mapper_registry.mapped
    class Decorated(TokenBlacklist):
        __table_args__ = {"schema": "auth"}  # noqa: RUF012

    class Single(DeclarativeBase):
        pass

    class Parent(TokenBlacklist, Single):
        kind: Mapped[str] = mapped_column(String(10), default="parent")
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "parent"}  # noqa: RUF012

    class Child(Parent):
        __mapper_args__ = {"polymorphic_identity": "child"}  # noqa: RUF012

    # Issue 8 declares its pending-challenge and limit-counter tables the same way.
    companions = ("challenges", "limits", "sessions")

    def beside(table: str) -> list[str]:
        return [table, *(f"{table}_{suffix}" for suffix in companions)]

    assert sorted(Modern.metadata.tables) == beside("revoked")
    assert sorted(legacy.metadata.tables) == beside("token_blacklist")
    assert sorted(mapper_registry.metadata.tables) == beside("auth.token_blacklist")
    assert sorted(Single.metadata.tables) == beside("token_blacklist")
    assert sessions_table(Renamed).name == "revoked_sessions"
    assert sessions_table(Decorated).schema == "auth"
    assert sessions_table(Child) is sessions_table(Parent)
    assert sessions_table(Legacy) is legacy.metadata.tables["token_blacklist_sessions"]


def test_a_model_that_is_no_mapped_blacklist_has_no_sessions_table() -> None:
    class Other(DeclarativeBase):
        pass

    class Plain(Other):
        __tablename__ = "plain"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)

    for model in (Plain, TokenBlacklist, int):
        with pytest.raises(ConfigurationError, match="TokenBlacklist"):
            sessions_table(model)


# -- statements per call -----------------------------------------------------------------------


async def test_each_session_call_is_one_statement(db: Database) -> None:
    now = T0 + timedelta(seconds=5)
    async with db.adapter() as store:
        isolation: list[str] = []
        with statements(db.engine, isolation) as seen:
            await store.open_session(_session("s-1"))
            await store.open_session(_session("s-2"))
            await store.open_session(_session("s-3"))
            await store.find_session("s-1")
            assert await store.rotate_session(
                "s-1", expected_generation=0, now=now, expires_at=T0 + timedelta(days=1)
            )
            assert not await store.rotate_session(
                "s-1", expected_generation=0, now=now, expires_at=T0 + timedelta(days=1)
            )
            assert len(await store.list_sessions("1", now=now)) == 3
            assert await store.end_sessions("1", now=now, only="s-2") == ["s-2"]
            assert await store.end_sessions("1", now=now, keep="s-1") == ["s-3"]
            assert await store.end_sessions("1", now=now) == ["s-1"]
    verbs = [statement.split()[0].upper() for statement in seen]
    assert verbs == ["INSERT"] * 3 + ["SELECT", "UPDATE", "UPDATE", "SELECT"] + ["UPDATE"] * 3
    assert all("RETURNING" in statement.upper() for statement in seen[-3:])
    # On PostgreSQL each runs in autocommit: one round-trip, no BEGIN/COMMIT.
    expected = "AUTOCOMMIT" if db.engine.dialect.name == "postgresql" else ""
    assert isolation == [expected] * len(seen)


async def test_session_sql_is_compiled_once(db: Database) -> None:
    sent: list[str] = []
    async with db.adapter() as store:
        for round_ in range(2):
            with statements(db.engine) as seen:
                await store.open_session(_session(f"s-{round_}"))
                await store.rotate_session(
                    f"s-{round_}", expected_generation=0, now=T0, expires_at=T0
                )
                await store.list_sessions("1", now=T0)
                await store.end_sessions("1", now=T0, only=f"s-{round_}")
            sent.append("\n".join(seen))
    assert sent[0] == sent[1]


async def test_ending_without_returning_reports_exactly_what_it_ended(db: Database) -> None:
    """SQLite before 3.35 has no ``UPDATE … RETURNING``: the candidates are read, then each
    is ended by its own conditional ``UPDATE``, so the ids returned stay exact."""
    db.engine.sync_engine.dialect.update_returning = False  # as an old SQLite reports
    async with db.adapter() as store:
        for sid in ("s-1", "s-2", "s-3", "s-4"):
            await store.open_session(_session(sid))
        await store.open_session(_session("other", "2"))
        with statements(db.engine) as seen:
            assert await store.end_sessions("1", now=T0, only="s-2") == ["s-2"]
            assert await store.end_sessions("1", now=T0, only="other") == []
            assert sorted(await store.end_sessions("1", now=T0, keep="s-1")) == ["s-3", "s-4"]
            assert await store.end_sessions("1", now=T0) == ["s-1"]
            assert await store.end_sessions("1", now=T0) == []
        assert [found.sid for found in await store.list_sessions("2", now=T0)] == ["other"]
    assert not any("RETURNING" in statement.upper() for statement in seen)
    assert [statement.split()[0].upper() for statement in seen].count("SELECT") == 5


async def test_purge_is_one_more_delete(db: Database) -> None:
    async with db.adapter() as store:
        await store.open_session(_session("active"))
        await store.open_session(_session("ended"))
        await store.open_session(_session("expired", ttl=1))
        await store.end_sessions("1", now=T0, only="ended")
        with statements(db.engine) as seen:
            assert await store.purge_expired(T0 + timedelta(seconds=1)) == 0
        assert await store.find_session("active") is not None
        assert await store.find_session("ended") is None
        assert await store.find_session("expired") is None
    # Revocations, sessions, and (issue 8) pending challenges and limit counters.
    assert [statement.split()[0].upper() for statement in seen] == ["DELETE"] * 4


async def test_ending_moves_the_expiry_to_the_end(db: Database) -> None:
    """An ended session's ``expires_at`` is its end, so the purge needs no ``ended_at`` test;
    ``find_session`` still tells it ended."""
    ended_at = T0 + timedelta(seconds=5)
    async with db.adapter() as store:
        await store.open_session(_session("s-1"))
        await store.open_session(_session("s-2"))
        assert await store.end_sessions("1", now=ended_at, only="s-1") == ["s-1"]
        found = await store.find_session("s-1")
        kept = await store.find_session("s-2")
    assert found is not None
    assert (found.ended_at, found.expires_at) == (ended_at, ended_at)
    assert kept == _session("s-2")


async def test_the_sessions_purge_is_a_range_of_the_expiry_index(db: Database) -> None:
    """The purge's ``DELETE`` tests ``expires_at`` alone, and the database runs it as a
    search of ``ix_…_expires_at`` (an ``ended_at IS NOT NULL OR …`` would scan the table)."""
    async with db.adapter() as store:
        for n in range(20):
            await store.open_session(_session(f"s-{n}", ttl=60 * (n + 1)))
        sent: list[tuple[str, Any]] = []

        def record(*args: Any) -> None:
            if TABLE in args[2] and args[2].lstrip().upper().startswith("DELETE"):
                sent.append((args[2], args[3]))

        sync_engine = db.engine.sync_engine
        event.listen(sync_engine, "before_cursor_execute", record)
        try:
            await store.purge_expired(T0 + timedelta(minutes=5))
        finally:
            event.remove(sync_engine, "before_cursor_execute", record)
        assert len(await store.list_sessions("1", now=T0 + timedelta(minutes=5))) == 15
    [(statement, parameters)] = sent
    where = statement.split("WHERE", 1)[1]
    assert "expires_at <=" in where
    assert "ended_at" not in where
    assert " OR " not in where.upper()
    index = f"ix_{TABLE}_expires_at"
    async with db.engine.connect() as connection:
        if db.engine.dialect.name == "sqlite":
            result = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            plan = " | ".join(str(row[-1]) for row in result)
            assert re.search(rf"SEARCH \S+ USING (COVERING )?INDEX {index} ", plan), plan
        else:
            await connection.exec_driver_sql("SET enable_seqscan = off")
            result = await connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
            plan = " | ".join(str(row[0]) for row in result)
            assert re.search(rf"(Index (Only )?Scan using|Bitmap Index Scan on) {index} ", plan)
            assert "Seq Scan" not in plan, plan


async def test_long_agent_and_address_are_cut_to_their_columns(db: Database) -> None:
    async with db.adapter() as store:
        await store.open_session(replace(_session("s-1"), user_agent="a" * 300, ip="f" * 100))
        found = await store.find_session("s-1")
    assert found is not None
    assert found.user_agent == "a" * 256
    assert found.ip == "f" * 64


# -- upgrade scripts ---------------------------------------------------------------------------


async def test_sqlite_sessions_script_makes_the_table_create_all_makes() -> None:
    with tempfile.TemporaryDirectory() as directory:
        made = sqlite_engine(Path(directory) / "made.db")
        upgraded = sqlite_engine(Path(directory) / "upgraded.db")
        try:
            async with made.begin() as connection:
                await connection.run_sync(Base.metadata.create_all)
            async with upgraded.begin() as connection:  # a database from before issue 10
                await connection.run_sync(
                    Base.metadata.create_all,
                    tables=[Base.metadata.tables["users"], Base.metadata.tables["token_blacklist"]],
                )
            with sqlite3.connect(Path(directory) / "upgraded.db", isolation_level=None) as raw:
                raw.executescript(sql_script("sqlite", sessions_only=True))
                raw.executescript(sql_script("sqlite", sessions_only=True))  # idempotent
            raw.close()
            async with made.connect() as left, upgraded.connect() as right:
                assert await _table_shape(left) == await _table_shape(right)
            await _works(upgraded)
        finally:
            await made.dispose()
            await upgraded.dispose()


@pytest.mark.postgres
async def test_postgresql_sessions_script_makes_the_table_create_all_makes() -> None:
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
                await raw.driver_connection.execute(sql_script("postgresql", sessions_only=True))
        async with made.connect() as left, upgraded.connect() as right:
            assert await _table_shape(left) == await _table_shape(right)
        await _works(upgraded)


class _Empty(DeclarativeBase):
    pass


async def _works(engine: AsyncEngine) -> None:
    async with async_sessionmaker(engine)() as session:
        store = SQLAlchemyAdapter(session, User, Blacklist)
        await store.open_session(_session("s-1"))
        assert await store.rotate_session("s-1", expected_generation=0, now=T0, expires_at=T0)
        assert await store.find_session("s-1") is not None
