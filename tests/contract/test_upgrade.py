"""Upgrading reference tables and collections: every account is kept, found by its
normalized e-mail, and collisions follow the documented rule (tested on a real SQLite file,
the real PostgreSQL and the MongoDB-wire server)."""

from __future__ import annotations

import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from otpcore.domain.codes import hash_code
from otpcore.domain.records import ChallengeState, SessionRecord
from otpcore.stores.sqlalchemy import SQLAlchemyAdapter
from otpcore.stores.upgrade import duplicate_marker, sql_script
from tests.backends.postgres import postgres_schema
from tests.backends.sql_models import StrictBlacklist, StrictUser

HASH = hash_code(b"k" * 32, "alice.smith@example.com", "123456")

# The reference's tables as its README's models create them (username required).
REFERENCE_DDL = """
CREATE TABLE users (
    id {pk},
    username VARCHAR(50) NOT NULL UNIQUE,
    email VARCHAR(255) NOT NULL,
    otp_code VARCHAR(20),
    otp_created_at {ts},
    otp_attempts INTEGER NOT NULL,
    last_otp_request_at {ts},
    is_verified BOOLEAN NOT NULL
);
CREATE UNIQUE INDEX ix_users_email ON users (email);
CREATE TABLE token_blacklist (
    id {pk},
    jti VARCHAR(255) NOT NULL,
    token_type VARCHAR(10) NOT NULL,
    blacklisted_at {ts} NOT NULL,
    expires_at {ts} NOT NULL
);
CREATE UNIQUE INDEX ix_token_blacklist_jti ON token_blacklist (jti);
"""

# (id, username, email as the reference stored it, verified, last code request)
ROWS = [
    (1, "alice", "Alice.Smith@Example.com", False, None),
    (2, "bob", "bob@example.com", True, "2025-02-01 00:00:00"),
    (3, "carol1", "Carol@example.com", True, "2025-01-01 00:00:00"),
    (4, "carol2", "carol@example.com", False, "2025-06-01 00:00:00"),
    (5, "carol3", "CAROL@EXAMPLE.COM", True, "2025-03-01 00:00:00"),
    (6, "jorg", "Jörg@bücher.example", False, None),
    (7, "dave", "dave@xn--bcher-kva.example", False, None),
]

EXPECTED_EMAILS = {
    1: "alice.smith@example.com",
    2: "bob@example.com",
    3: duplicate_marker(3),
    4: duplicate_marker(4),
    5: "carol@example.com",
    6: "Jörg@bücher.example",  # SQL lowercases ASCII only: reported for review
    7: "dave@xn--bcher-kva.example",
}
EXPECTED_REPORT = [
    ("3", "Carol@example.com", "duplicate", "5"),
    ("4", "carol@example.com", "duplicate", "5"),
    ("6", "Jörg@bücher.example", "review", None),
    ("7", "dave@xn--bcher-kva.example", "review", None),
]


def _inserts() -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            "INSERT INTO users (id, username, email, otp_code, otp_attempts, "
            "last_otp_request_at, is_verified) VALUES (:id, :username, :email, '123456', 1, "
            ":last, :verified)",
            {"id": i, "username": u, "email": e, "verified": v, "last": last},
        )
        for i, u, e, v, last in ROWS
    ]


async def _check_upgraded(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        rows = (await connection.execute(text("SELECT id, email FROM users"))).all()
        emails = {int(row[0]): str(row[1]) for row in rows}
        report = (
            await connection.execute(
                text(
                    "SELECT user_id, email, outcome, kept_user_id FROM otpcore_upgrade_report "
                    "ORDER BY outcome, user_id"
                )
            )
        ).all()
        codes = (await connection.execute(text("SELECT count(otp_code) FROM users"))).scalar()
    assert emails == EXPECTED_EMAILS
    assert [tuple(row) for row in report] == EXPECTED_REPORT
    assert codes == 0  # plain-text reference codes are gone
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session:
        store = SQLAlchemyAdapter(session, StrictUser, StrictBlacklist)
        alice = await store.find_by_email("alice.smith@example.com")
        carol = await store.find_by_email("carol@example.com")
        assert alice is not None
        assert (alice.user_id, carol and carol.user_id) == ("1", "5")
        # The reference API finds the upgraded row by any spelling: no second account.
        same = await store.create_user("ALICE.Smith@example.com", username="alice-again")
        assert same.id == 1
        # The new columns work: a compare-and-set write and the version it guards.
        state = ChallengeState(
            code_hash=HASH, issued_at=datetime(2026, 1, 1, tzinfo=UTC), version=1
        )
        assert await store.save_challenge("1", expected_version=0, state=state)
        await store.update_otp(same, HASH)
        # The sessions table the upgrade ends with works: open, rotate, list, end, purge.
        now = datetime(2026, 1, 1, tzinfo=UTC)
        later = datetime(2026, 2, 1, tzinfo=UTC)
        opened = SessionRecord(
            sid="s-1",
            user_id="1",
            created_at=now,
            last_used_at=now,
            rotated_at=now,
            generation=0,
            user_agent="curl/8",
            ip="192.0.2.1",
            expires_at=later,
        )
        await store.open_session(opened)
        assert await store.rotate_session("s-1", expected_generation=0, now=now, expires_at=later)
        assert [found.sid for found in await store.list_sessions("1", now=now)] == ["s-1"]
        assert await store.end_sessions("1", now=now) == ["s-1"]
        await store.purge_expired(now)
        assert await store.find_session("s-1") is None
    async with engine.connect() as connection:
        count = (await connection.execute(text("SELECT count(*) FROM users"))).scalar()
    assert count == len(ROWS)


async def test_sqlite_upgrade_keeps_every_account() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "reference.db"
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
        try:
            async with engine.begin() as connection:
                for statement in REFERENCE_DDL.format(
                    pk="INTEGER PRIMARY KEY", ts="DATETIME"
                ).split(";"):
                    if statement.strip():
                        await connection.execute(text(statement))
                for statement, params in _inserts():
                    await connection.execute(text(statement), params)
            # Run as an operator would: the script as it ships, through sqlite3.
            with sqlite3.connect(path, isolation_level=None) as raw:
                raw.executescript(sql_script("sqlite"))
            raw.close()
            await _check_upgraded(engine)
        finally:
            await engine.dispose()


class _NoTables(DeclarativeBase):
    pass


@pytest.mark.postgres
async def test_postgresql_upgrade_keeps_every_account() -> None:
    async with postgres_schema((_NoTables, StrictUser, StrictBlacklist)) as (engine, _):
        async with engine.begin() as connection:
            ddl = REFERENCE_DDL.format(pk="SERIAL PRIMARY KEY", ts="TIMESTAMP WITHOUT TIME ZONE")
            for statement in ddl.split(";"):
                if statement.strip():
                    await connection.execute(text(statement))
            for statement, params in _inserts():
                params = {
                    **params,
                    "last": params["last"] and datetime.fromisoformat(params["last"]),
                }
                await connection.execute(text(statement), params)
        async with engine.connect() as connection:
            raw: Any = await connection.get_raw_connection()
            await raw.driver_connection.execute(sql_script("postgresql"))
        await _check_upgraded(engine)


@pytest.mark.mongodb
async def test_mongodb_upgrade_keeps_every_account() -> None:
    from otpcore.stores.mongodb import BaseOTPUserDocument, MongoDBAdapter
    from otpcore.stores.upgrade.mongodb import Duplicate, upgrade
    from tests.backends.mongodb import mongodb_database

    class User(BaseOTPUserDocument):
        username: str

    async with mongodb_database("pymongo") as database:
        users = database["users"]
        await users.create_index("email", unique=True)  # the reference Quick Start's index
        for index, username, email, verified, last in ROWS:
            await users.insert_one(
                {
                    "_id": f"user-{index}",
                    "username": username,
                    "email": email,
                    "is_verified": verified,
                    "otp_code": "123456",
                    "otp_attempts": 1,
                    "last_otp_request_at": last and datetime.fromisoformat(last),
                }
            )
        report = await upgrade(database)
        again = await upgrade(database)
        emails = {doc["_id"]: doc["email"] async for doc in users.find({})}
        store = MongoDBAdapter(database, "users", "token_blacklist", User, ttl_index=False)
        alice = await store.get_by_email("Alice.Smith@example.com")
        created = await store.create_user("DAVE@bücher.example", username="dave-again")
        remaining_codes = await users.count_documents({"otp_code": {"$ne": None}})
    assert emails == {
        "user-1": "alice.smith@example.com",
        "user-2": "bob@example.com",
        "user-3": duplicate_marker("user-3"),
        "user-4": duplicate_marker("user-4"),
        "user-5": "carol@example.com",
        "user-6": "jörg@bücher.example",  # Python normalizes what SQL cannot
        "user-7": "dave@bücher.example",
    }
    assert sorted(report.duplicates, key=lambda d: d.user_id) == [
        Duplicate(user_id="user-3", email="Carol@example.com", kept_user_id="user-5"),
        Duplicate(user_id="user-4", email="carol@example.com", kept_user_id="user-5"),
    ]
    assert (report.normalized, report.review) == (4, [])
    assert (again.normalized, again.duplicates, again.review) == (0, [], [])
    assert alice is not None
    assert alice.id == "user-1"
    assert created.id == "user-7"
    assert remaining_codes == 0
