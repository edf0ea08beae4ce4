"""What only the MongoDB store promises about pending challenges and limit counters (issue 8),
through PyMongo and Motor on the MongoDB-wire server.

The collections are named after the blacklist collection; their indexes come from
``ensure_indexes``; a limit hit is one ``findAndModify`` (an upsert) whenever it is allowed,
the key's first included (the documented number of commands otherwise); counts of windows
that no longer matter are dropped; nothing in them names an address.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from otpcore.domain.limits import window_at
from otpcore.domain.records import ChallengeState, PendingChallenge
from otpcore.stores.mongodb import BaseOTPUserDocument, MongoDBAdapter
from tests.backends.mongodb import DRIVERS, USERS, mongodb_database, mongodb_uri
from tests.contract.test_mongodb_specific import CommandLog, _index_specs

pytestmark = pytest.mark.mongodb

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
REVOKED = "revoked"


@pytest.fixture(params=list(DRIVERS), ids=[f"mongodb-{name}" for name in DRIVERS])
async def database(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """An empty database through each driver."""
    async with mongodb_database(request.param) as db:
        yield db


def _adapter(database: Any, *, ttl_index: bool = False) -> MongoDBAdapter[BaseOTPUserDocument]:
    return MongoDBAdapter(database, USERS, REVOKED, BaseOTPUserDocument, ttl_index=ttl_index)


def _challenge(key: str, *, at: datetime = T0) -> PendingChallenge:
    state = ChallengeState(code_hash="c" * 64, issued_at=at, last_request_at=at, version=1)
    return PendingChallenge(id=key, subject="s" * 64, state=state, expires_at=at + MINUTE)


async def test_collections_are_named_after_the_blacklist_collection(database: Any) -> None:
    store = _adapter(database)
    await store.create_challenge(_challenge("c-1"))
    await store.hit("k" * 43, limit=3, window=window_at(T0, MINUTE))
    assert sorted(await database.list_collection_names()) == [
        "revoked_challenges",
        "revoked_limits",
    ]


async def test_ensure_indexes_creates_the_new_collections_indexes(database: Any) -> None:
    store = _adapter(database, ttl_index=True)
    await store.ensure_indexes()
    await store.ensure_indexes()  # idempotent
    challenges = _index_specs(await database["revoked_challenges"].index_information())
    limits = _index_specs(await database["revoked_limits"].index_information())
    assert ([("subject", 1), ("last_request_ms", 1)], False, None) in challenges
    assert ([("expires_ms", 1)], False, None) in challenges
    assert ([("expires_at", 1)], False, 0) in challenges
    assert ([("expires_ms", 1)], False, None) in limits


async def test_a_challenge_document_holds_hashes_and_exact_integer_instants(
    database: Any,
) -> None:
    at = T0 + timedelta(milliseconds=123)
    await _adapter(database).create_challenge(_challenge("c-1", at=at))
    doc = await database["revoked_challenges"].find_one({"_id": "c-1"})
    assert doc is not None
    assert doc["subject"] == "s" * 64
    assert doc["last_request_ms"] == int(at.timestamp() * 1000)
    assert doc["expires_ms"] == int((at + MINUTE).timestamp() * 1000)


async def test_newest_prefers_the_later_millisecond_then_the_greater_id(database: Any) -> None:
    """nx-27017 compares dates to the whole second; the integer instant keeps the order."""
    store = _adapter(database)
    await store.create_challenge(_challenge("c-a", at=T0 + timedelta(milliseconds=900)))
    await store.create_challenge(_challenge("c-b", at=T0 + timedelta(milliseconds=100)))
    newest = await store.newest_challenge("s" * 64)
    assert newest is not None
    assert newest.id == "c-a"
    await store.create_challenge(_challenge("c-c", at=T0 + timedelta(milliseconds=900)))
    newest = await store.newest_challenge("s" * 64)
    assert newest is not None
    assert newest.id == "c-c"


async def test_a_hit_counts_in_the_field_of_its_window_and_drops_older_ones(
    database: Any,
) -> None:
    store = _adapter(database)
    key = "k" * 43
    for minute in (0, 1, 2, 7):
        hit = await store.hit(key, limit=5, window=window_at(T0 + minute * MINUTE, MINUTE))
        assert hit.allowed
    doc = await database["revoked_limits"].find_one({"_id": key})
    assert doc is not None
    start = int((T0 + 7 * MINUTE).timestamp() * 1000)
    # Only the current window's count is left (the previous one is empty): nothing older.
    assert {name: value for name, value in doc.items() if name.startswith("w")} == {f"w{start}": 1}
    assert doc["top"] == start
    assert doc["expires_ms"] == start + 2 * 60_000


async def test_each_hit_is_the_documented_number_of_commands() -> None:
    log = CommandLog()
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongodb_uri(), event_listeners=[log])
    database = client[f"otpcore_test_{ObjectId()}"]
    try:
        store = _adapter(database)
        window = window_at(T0, MINUTE)
        calls: list[tuple[bool, list[str]]] = []
        for _ in range(4):
            log.names.clear()
            hit = await store.hit("k", limit=2, window=window)
            calls.append((hit.allowed, list(log.names)))
        log.names.clear()
        await store.hit("k", limit=2, window=window_at(T0 + MINUTE + MINUTE / 2, MINUTE))
        rolled = list(log.names)
    finally:
        await client.drop_database(database.name)
        await client.close()
    assert calls == [
        (True, ["findAndModify"]),  # the key's first hit: the upsert inserts it
        (True, ["findAndModify"]),
        (False, ["findAndModify", "find"]),  # a refusal reads the counts
        (False, ["findAndModify", "find"]),
    ]
    assert rolled == ["findAndModify"]  # a new window is the same one statement


async def test_purge_removes_expired_challenges_and_counters_only(database: Any) -> None:
    store = _adapter(database)
    await store.create_challenge(_challenge("old", at=T0))
    await store.create_challenge(_challenge("new", at=T0 + 10 * MINUTE))
    await store.hit("old-key", limit=3, window=window_at(T0, MINUTE))
    await store.hit("new-key", limit=3, window=window_at(T0 + 10 * MINUTE, MINUTE))
    await store.purge_expired(T0 + 5 * MINUTE)
    assert await store.find_challenge("old") is None
    assert await store.find_challenge("new") is not None
    assert [doc["_id"] async for doc in database["revoked_limits"].find({})] == ["new-key"]
