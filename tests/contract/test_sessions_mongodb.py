"""What only the MongoDB store promises about sessions, through PyMongo and Motor.

The collection is named after the blacklist collection; its indexes come from
``ensure_indexes`` (lazily, before the first session is opened); every filter compares the
integer ``expires_ms``; each call is the documented number of commands.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient, monitoring

from otpcore.domain.records import SessionRecord
from otpcore.stores.mongodb import BaseOTPUserDocument, MongoDBAdapter
from tests.backends.mongodb import DRIVERS, USERS, mongodb_database, mongodb_uri
from tests.contract.test_mongodb_specific import CommandLog, _index_specs

pytestmark = pytest.mark.mongodb

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
REVOKED = "revoked"


def _session(sid: str, user_id: str = "u-1", *, ttl: float = 3600) -> SessionRecord:
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


@pytest.fixture(params=list(DRIVERS), ids=[f"mongodb-{name}" for name in DRIVERS])
async def database(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """An empty database through each driver."""
    async with mongodb_database(request.param) as db:
        yield db


def _adapter(database: Any, *, ttl_index: bool = False) -> MongoDBAdapter[BaseOTPUserDocument]:
    return MongoDBAdapter(database, USERS, REVOKED, BaseOTPUserDocument, ttl_index=ttl_index)


class _Commands(CommandLog):
    """The commands themselves, not just their names."""

    def __init__(self) -> None:
        super().__init__()
        self.commands: list[Mapping[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        super().started(event)
        self.commands.append(event.command)


async def test_the_collection_is_named_after_the_blacklist_collection(database: Any) -> None:
    store = _adapter(database)
    await store.open_session(_session("s-1"))
    assert store.session_collection.name == "revoked_sessions"
    doc = await database["revoked_sessions"].find_one({"_id": "s-1"})
    assert doc is not None
    assert doc["user_id"] == "u-1"
    # Dates for people and the TTL index; the expiry also as exact integer milliseconds.
    assert isinstance(doc["expires_at"], datetime)
    assert doc["expires_ms"] == int((T0 + timedelta(hours=1)).timestamp() * 1000)
    assert doc["ended_at"] is None


async def test_ensure_indexes_creates_the_session_indexes_once(database: Any) -> None:
    store = _adapter(database, ttl_index=True)
    await store.ensure_indexes()
    await store.ensure_indexes()
    indexes = _index_specs(await database["revoked_sessions"].index_information())
    assert indexes == [
        ([("_id", 1)], False, None),
        ([("expires_at", 1)], False, 0),
        ([("expires_ms", 1)], False, None),
        ([("user_id", 1), ("expires_ms", 1)], False, None),
    ]
    # Without the TTL index (instants from another clock), the lookup and purge indexes.
    other = MongoDBAdapter(database, USERS, "other", BaseOTPUserDocument, ttl_index=False)
    await other.ensure_indexes()
    assert _index_specs(await database["other_sessions"].index_information()) == [
        ([("_id", 1)], False, None),
        ([("expires_ms", 1)], False, None),
        ([("user_id", 1), ("expires_ms", 1)], False, None),
    ]


async def test_ending_moves_the_expiry_so_the_purge_needs_it_alone(database: Any) -> None:
    """An ended session's expiry (date and milliseconds) is its end: the purge's filter is
    ``expires_ms`` alone, a range of its index, and still removes ended sessions."""
    store = _adapter(database)
    for sid in ("s-1", "s-2", "s-3"):
        await store.open_session(_session(sid))
    ended_at = T0 + timedelta(seconds=5)
    assert await store.end_sessions("u-1", now=ended_at, only="s-1") == ["s-1"]
    assert await store.end_sessions("u-1", now=ended_at, keep="s-3") == ["s-2"]
    for sid in ("s-1", "s-2"):
        doc = await database["revoked_sessions"].find_one({"_id": sid})
        assert doc is not None
        assert doc["expires_ms"] == int(ended_at.timestamp() * 1000)
        found = await store.find_session(sid)
        assert found is not None
        assert (found.ended_at, found.expires_at) == (ended_at, ended_at)
    log = _Commands()
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongodb_uri(), event_listeners=[log])
    try:
        watched = _adapter(client[database.name])
        await watched.purge_expired(ended_at)
    finally:
        await client.close()
    [purge] = [command for command in log.commands if command.get("delete") == "revoked_sessions"]
    assert [spec["q"] for spec in purge["deletes"]] == [
        {"expires_ms": {"$lte": int(ended_at.timestamp() * 1000)}}
    ]
    assert await store.find_session("s-1") is None
    assert await store.find_session("s-2") is None
    assert await store.find_session("s-3") is not None


async def test_opening_a_session_ensures_the_indexes_first(database: Any) -> None:
    await _adapter(database).open_session(_session("s-1"))
    indexes = _index_specs(await database["revoked_sessions"].index_information())
    assert ([("user_id", 1), ("expires_ms", 1)], False, None) in indexes


async def test_instants_keep_their_milliseconds(database: Any) -> None:
    store = _adapter(database)
    precise = T0 + timedelta(microseconds=123_456)
    session = SessionRecord(
        sid="s-1",
        user_id="u-1",
        created_at=precise,
        last_used_at=precise,
        rotated_at=precise,
        generation=0,
        user_agent=None,
        ip=None,
        expires_at=precise + timedelta(hours=1),
    )
    await store.open_session(session)
    assert await store.rotate_session(
        "s-1", expected_generation=0, now=precise, expires_at=precise + timedelta(hours=2)
    )
    found = await store.find_session("s-1")
    stored = T0 + timedelta(microseconds=123_000)
    assert found is not None
    assert found.created_at == found.rotated_at == stored
    assert found.expires_at == stored + timedelta(hours=2)
    # The stored expiry is what counts: active until that millisecond, not after.
    until = stored + timedelta(hours=2)
    assert len(await store.list_sessions("u-1", now=until - timedelta(microseconds=1))) == 1
    assert await store.list_sessions("u-1", now=until) == []


async def test_each_call_is_the_documented_number_of_commands() -> None:
    log = CommandLog()
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongodb_uri(), event_listeners=[log])
    database = client[f"otpcore_test_{ObjectId()}"]
    try:
        store = _adapter(database)
        await store.ensure_indexes()
        for sid in ("s-1", "s-2", "s-3", "s-4"):
            await store.open_session(_session(sid))
        now = T0 + timedelta(seconds=5)
        calls: list[tuple[str, list[str]]] = []

        async def count(name: str, call: Any) -> Any:
            log.names.clear()
            result = await call
            calls.append((name, list(log.names)))
            return result

        await count("open", store.open_session(_session("s-5")))
        await count("find", store.find_session("s-1"))
        await count(
            "rotate", store.rotate_session("s-1", expected_generation=0, now=now, expires_at=now)
        )
        await count("list", store.list_sessions("u-1", now=T0))
        assert await count("end only", store.end_sessions("u-1", now=now, only="s-2")) == ["s-2"]
        assert await count("end nothing", store.end_sessions("u-1", now=now, only="s-2")) == []
        ended = await count("end keep", store.end_sessions("u-1", now=now, keep="s-3"))
        assert sorted(ended) == ["s-4", "s-5"]
        assert await count("end none left", store.end_sessions("u-1", now=now, keep="s-3")) == []
        await count("purge", store.purge_expired(now))
    finally:
        await client.drop_database(database.name)
        await client.close()
    assert dict(calls) == {
        "open": ["insert"],
        "find": ["find"],
        "rotate": ["update"],
        "list": ["find"],
        "end only": ["update"],
        "end nothing": ["update"],
        "end keep": ["update", "find"],
        "end none left": ["update"],
        # Revocations, sessions, and (issue 8) pending challenges and limit counters.
        "purge": ["delete"] * 4,
    }
