"""What the MongoDB store promises beyond the shared contract, through PyMongo and Motor."""

from __future__ import annotations

import gc
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pydantic import Field
from pymongo import AsyncMongoClient, monitoring
from pymongo.errors import BulkWriteError, ServerSelectionTimeoutError

from otpcore.domain.codes import hash_code
from otpcore.domain.errors import ConfigurationError, ContentionError, StorageError
from otpcore.domain.records import ChallengeState, Revocation, RevocationKind, session_key
from otpcore.stores.mongodb import BaseOTPUserDocument, MongoDBAdapter, TokenBlacklistDocument
from tests.backends.mongodb import (
    BLACKLIST,
    DRIVERS,
    USERS,
    MongoBackend,
    mongodb_database,
    mongodb_uri,
)

pytestmark = pytest.mark.mongodb

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
HASH = hash_code(b"k" * 32, "a@example.com", "123456")


class User(BaseOTPUserDocument):
    """The reference's Quick Start model: one extra required field."""

    username: str = Field(..., max_length=50)
    full_name: str | None = Field(None, max_length=100)


class Blacklist(TokenBlacklistDocument):
    pass


class CommandLog(monitoring.CommandListener):
    """Names of the commands a client sent, in order (PyMongo's own event hooks)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture(params=list(DRIVERS), ids=[f"mongodb-{name}" for name in DRIVERS])
async def mongo(request: pytest.FixtureRequest) -> AsyncIterator[MongoBackend]:
    """An empty database through each driver."""
    async with mongodb_database(request.param) as database:
        yield MongoBackend(f"mongodb-{request.param}", database)


def users(mongo: MongoBackend, *, ttl_index: bool = False) -> MongoDBAdapter[User]:
    return MongoDBAdapter(mongo.database, USERS, BLACKLIST, User, ttl_index=ttl_index)


async def test_quick_start_constructor_forms(mongo: MongoBackend) -> None:
    by_keyword = MongoDBAdapter(
        database=mongo.database,
        user_collection_name="users",
        blacklist_collection_name="token_blacklist",
        user_model_class=User,
    )
    positional = MongoDBAdapter(mongo.database, "users", "token_blacklist", User)
    created = await by_keyword.create_user("a@example.com", username="alice")
    found = await positional.get_by_email("a@example.com")
    assert found is not None
    assert found.id == created.id
    assert found.username == "alice"


async def test_reference_methods_walk_a_login(mongo: MongoBackend) -> None:
    db = users(mongo)
    user = await db.create_user("a@example.com", username="alice", full_name="Alice A")
    assert isinstance(user, User)
    assert user.id is not None
    assert (user.is_verified, user.otp_code, user.otp_attempts, user.otp_version) == (
        False,
        None,
        0,
        0,
    )
    assert await db.get_by_id(user.id) == user
    assert await db.get_by_email("nobody@example.com") is None

    await db.update_otp(user, HASH)
    assert (user.otp_code, user.otp_attempts, user.otp_version) == (HASH, 0, 1)
    assert user.otp_created_at is not None
    assert user.otp_created_at.tzinfo is not None
    await db.increment_otp_attempts(user)
    assert (user.otp_attempts, user.otp_failures, user.otp_version) == (1, 1, 2)
    stored = await db.get_by_email("a@example.com")
    assert stored is not None
    assert (stored.otp_code, stored.otp_attempts, stored.otp_version) == (HASH, 1, 2)

    await db.verify_user(user)
    reloaded = await db.get_by_id(user.id)
    assert reloaded is not None
    assert (reloaded.is_verified, reloaded.otp_code, reloaded.otp_attempts) == (True, None, 0)
    assert reloaded == user

    await db.update_otp(user, HASH)
    await db.clear_otp(user)
    cleared = await db.get_by_id(user.id)
    assert cleared is not None
    assert (cleared.otp_code, cleared.otp_created_at, cleared.is_verified) == (None, None, True)


async def test_stale_user_object_cannot_consume_the_code_twice(mongo: MongoBackend) -> None:
    db = users(mongo)
    user = await db.create_user("a@example.com", username="alice")
    await db.update_otp(user, HASH)
    first = await db.get_by_email("a@example.com")
    second = await db.get_by_email("a@example.com")
    third = await db.get_by_email("a@example.com")
    assert first is not None
    assert second is not None
    assert third is not None
    await db.verify_user(first)
    with pytest.raises(ContentionError):
        await db.verify_user(second)
    # A refused object shows the stored state afterwards (as SQLAlchemy's identity map
    # does), so the second stale write needs an object of its own.
    assert (second.is_verified, second.otp_code) == (True, None)
    with pytest.raises(ContentionError):
        await db.update_otp(third, HASH)


@pytest.mark.parametrize(
    "code",
    ["123456", "000000", HASH.upper(), HASH[:-1], HASH + "0", "g" * 64, ""],
)
async def test_update_otp_refuses_anything_but_a_hash(mongo: MongoBackend, code: str) -> None:
    db = users(mongo)
    user = await db.create_user("a@example.com", username="alice")
    with pytest.raises(ValueError, match="hash"):
        await db.update_otp(user, code)
    stored = await db.get_by_id(str(user.id))
    assert stored is not None
    assert stored.otp_code is None


async def test_blacklist_methods(mongo: MongoBackend) -> None:
    db = users(mongo)
    later = datetime.now(UTC) + timedelta(hours=1)
    await db.add_to_blacklist("jti-1", "access", later)
    await db.add_to_blacklist("jti-1", "access", later)
    await db.add_to_blacklist("jti-old", "refresh", datetime.now(UTC) - timedelta(seconds=1))
    assert await db.is_blacklisted("jti-1") is True
    assert await db.is_blacklisted("jti-2") is False
    assert await db.cleanup_blacklist() == 1
    assert await db.is_blacklisted("jti-old") is False
    assert await db.is_blacklisted("jti-1") is True
    raw = await mongo.database[BLACKLIST].find_one({"jti": "jti-1"})
    entry = Blacklist.model_validate(raw)
    assert (entry.jti, entry.token_type) == ("jti-1", "access")


def _index_specs(info: dict[str, Any]) -> list[tuple[list[tuple[str, Any]], bool, Any]]:
    return sorted(
        (list(spec["key"]), bool(spec.get("unique")), spec.get("expireAfterSeconds"))
        for spec in info.values()
    )


async def test_ensure_indexes_creates_them_once_and_is_idempotent(mongo: MongoBackend) -> None:
    db = users(mongo, ttl_index=True)
    await db.ensure_indexes()
    await db.ensure_indexes()
    user_indexes = _index_specs(await mongo.database[USERS].index_information())
    blacklist_indexes = _index_specs(await mongo.database[BLACKLIST].index_information())
    assert ([("email", 1)], True, None) in user_indexes
    assert ([("jti", 1)], True, None) in blacklist_indexes
    assert ([("expires_at", 1)], False, 0) in blacklist_indexes
    assert ([("blacklisted_at", 1)], False, None) in blacklist_indexes
    assert len(blacklist_indexes) == 4  # _id plus ours: repeated calls added nothing


async def test_ensure_indexes_accepts_the_quick_start_indexes(mongo: MongoBackend) -> None:
    await mongo.database["users"].create_index("email", unique=True)
    await mongo.database["token_blacklist"].create_index("jti", unique=True)
    await mongo.database["token_blacklist"].create_index("expires_at", expireAfterSeconds=0)
    db = users(mongo, ttl_index=True)
    await db.ensure_indexes()
    assert len(await mongo.database[BLACKLIST].index_information()) == 4


async def test_non_unique_email_index_is_a_configuration_error(mongo: MongoBackend) -> None:
    await mongo.database[USERS].create_index("email")
    with pytest.raises(ConfigurationError, match="email"):
        await users(mongo).ensure_indexes()


async def test_indexes_are_ensured_lazily_once_per_process() -> None:
    log = CommandLog()
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongodb_uri(), event_listeners=[log])
    database = client[f"otpcore_test_{ObjectId()}"]
    try:
        first = MongoDBAdapter(database, USERS, BLACKLIST, User)
        await first.find_by_email("a@example.com")
        assert "createIndexes" not in log.names  # reads need no index creation
        await first.create_user("a@example.com", username="alice")
        created = log.names.count("createIndexes")
        assert created >= 4
        second = MongoDBAdapter(database, USERS, BLACKLIST, User)
        await second.create_user("b@example.com", username="bob")
        await second.revoke(
            Revocation(key="j", kind=RevocationKind.ACCESS, revoked_at=T0, expires_at=T0)
        )
        assert log.names.count("createIndexes") == created
    finally:
        await client.drop_database(database.name)
        await client.close()


async def test_load_principal_is_one_round_trip() -> None:
    log = CommandLog()
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongodb_uri(), event_listeners=[log])
    database = client[f"otpcore_test_{ObjectId()}"]
    try:
        db = MongoDBAdapter(database, USERS, BLACKLIST, User, ttl_index=False)
        account = await db.create("a@example.com", {"username": "alice"})
        revoked = Revocation(
            key=session_key("s1"), kind=RevocationKind.SESSION, revoked_at=T0, expires_at=T0
        )
        await db.revoke(revoked)
        log.names.clear()
        found, revocations = await db.load_principal(account.user_id, ["j1", session_key("s1")])
        assert log.names == ["aggregate"]
        assert found is not None
        assert found.user.username == "alice"
        assert revocations == [revoked]
    finally:
        await client.drop_database(database.name)
        await client.close()


async def test_load_principal_with_dollar_keys_is_still_exact(mongo: MongoBackend) -> None:
    db = users(mongo)
    account = await db.create("a@example.com", {"username": "alice"})
    entry = Revocation(key="$email", kind=RevocationKind.ACCESS, revoked_at=T0, expires_at=T0)
    await db.revoke(entry)
    found, revocations = await db.load_principal(account.user_id, ["$email", "a@example.com"])
    assert found is not None
    assert revocations == [entry]


async def test_object_id_and_string_ids_both_round_trip(mongo: MongoBackend) -> None:
    db = users(mongo)
    collection = mongo.database[USERS]
    created = await db.create("oid@example.com", {"username": "o"})
    raw = await collection.find_one({"email": "oid@example.com"})
    assert raw is not None
    assert isinstance(raw["_id"], ObjectId)
    assert created.user_id == str(raw["_id"])

    hex_text = "a" * 24
    await collection.insert_one({"_id": "custom-id", "email": "s@example.com", "username": "s"})
    await collection.insert_one({"_id": hex_text, "email": "h@example.com", "username": "h"})
    for user_id, email in [
        (created.user_id, "oid@example.com"),
        ("custom-id", "s@example.com"),
        (hex_text, "h@example.com"),
    ]:
        account = await db.find_by_id(user_id)
        assert account is not None
        assert (account.user_id, account.email, account.user.id) == (user_id, email, user_id)
        # Documents written without otpcore's fields start at version 0 and can be saved.
        state = ChallengeState(code_hash=HASH, issued_at=T0, last_request_at=T0, version=1)
        assert await db.save_challenge(user_id, expected_version=0, state=state)
        revoked = Revocation(
            key=f"user:{user_id}", kind=RevocationKind.USER, revoked_at=T0, expires_at=T0
        )
        await db.revoke(revoked)
        principal, found = await db.load_principal(user_id, ["k", revoked.key, "sid:x"])
        assert principal is not None
        assert principal.challenge == state
        assert found == [revoked]

    for bad in ["", "b" * 24, "not-an-id", "{'$ne': 1}", "0" * 25]:
        assert await db.find_by_id(bad) is None
        assert await db.get_by_id(bad) is None
    assert await db.get_by_id(12345) is None


async def test_stored_booleans_and_datetimes_are_coerced(mongo: MongoBackend) -> None:
    db = users(mongo)
    naive = datetime(2026, 3, 1, 8, 30, 15, 250000)
    await mongo.database[USERS].insert_one(
        {
            "email": "c@example.com",
            "username": "c",
            "is_verified": 1,
            "otp_code": HASH,
            "otp_created_at": naive,
            "last_otp_request_at": "2026-03-01 08:30:15.250000",
            "otp_last_failure_at": "2026-03-01T08:30:16.5+00:00",
            "otp_attempts": 2,
            "otp_version": 3,
        }
    )
    account = await db.find_by_email("c@example.com")
    assert account is not None
    assert account.is_verified is True
    assert account.user.is_verified is True
    expected = naive.replace(tzinfo=UTC)
    assert account.challenge.issued_at == expected
    assert account.challenge.last_request_at == expected
    assert account.challenge.last_failure_at == expected + timedelta(seconds=1.25)
    for moment in (account.challenge.issued_at, account.user.otp_created_at):
        assert moment is not None
        assert moment.utcoffset() == timedelta(0)


async def test_datetimes_are_kept_to_the_millisecond(mongo: MongoBackend) -> None:
    db = users(mongo)
    account = await db.create("ms@example.com", {"username": "m"})
    precise = T0 + timedelta(microseconds=123456)
    state = ChallengeState(code_hash=HASH, issued_at=precise, last_request_at=precise, version=1)
    assert await db.save_challenge(account.user_id, expected_version=0, state=state)
    reloaded = await db.find_by_id(account.user_id)
    assert reloaded is not None
    assert reloaded.challenge.issued_at == T0 + timedelta(microseconds=123000)
    await db.revoke(
        Revocation(key="j", kind=RevocationKind.ACCESS, revoked_at=precise, expires_at=precise)
    )
    [entry] = await db.find_revocations(["j"])
    assert entry.revoked_at == T0 + timedelta(microseconds=123000)
    assert [e.key for e in await db.revocations_since(precise, now=T0)] == ["j"]


async def test_extra_required_fields_come_from_create_user(mongo: MongoBackend) -> None:
    db = users(mongo)
    user = await db.create_user("x@example.com", username="xavier")
    assert user.username == "xavier"
    again = await db.create_user("x@example.com", username="someone-else")
    assert again.id == user.id
    assert again.username == "xavier"
    with pytest.raises(ConfigurationError, match="username") as caught:
        await db.create("y@example.com", {})
    assert caught.value.__cause__ is None
    assert "ValidationError" not in str(caught.value)
    with pytest.raises(ConfigurationError, match="username"):
        await db.create_user("y@example.com", username="u" * 51)
    assert await mongo.database[USERS].count_documents({"email": "y@example.com"}) == 0


@pytest.mark.parametrize("driver", list(DRIVERS))
async def test_unreachable_server_is_a_storage_error(driver: str) -> None:
    async with DRIVERS[driver]("mongodb://127.0.0.1:1/?directConnection=true", 200) as client:
        db = MongoDBAdapter(client["nowhere"], USERS, BLACKLIST, User)
        with pytest.raises(StorageError) as caught:
            await db.find_by_email("a@example.com")
        assert isinstance(caught.value.__cause__, ServerSelectionTimeoutError)
        with pytest.raises(StorageError):
            await db.revoke(
                Revocation(key="j", kind=RevocationKind.ACCESS, revoked_at=T0, expires_at=T0)
            )
        with pytest.raises(StorageError):
            await db.load_principal(str(ObjectId()), ["j"])
        with pytest.raises(StorageError):
            await db.create_user("a@example.com", username="a")
    # PyMongo's async monitor can be cancelled by close() in the middle of a refused connect,
    # leaving its socket to the garbage collector; collect it here rather than in a later test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def test_missing_pymongo_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['pymongo'] = None\n"
        "try:\n"
        "    import otpcore.stores.mongodb\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "otpcore[mongodb]" in result.stdout


def test_code_hash_is_not_in_the_repr() -> None:
    user = User.model_validate({"email": "a@example.com", "username": "a", "otp_code": HASH})
    assert HASH not in repr(user)


class _Unreplicated:
    """Fault injection: the blacklist collection writes, then reports the write concern
    failed (``w="majority"`` timing out on a replica set), which one server cannot produce."""

    def __init__(self, collection: Any) -> None:
        self._collection = collection

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    async def insert_many(self, documents: Any, **options: Any) -> Any:
        try:
            await self._collection.insert_many(documents, **options)
            write_errors: list[dict[str, Any]] = []
        except BulkWriteError as error:
            write_errors = error.details["writeErrors"]
        raise BulkWriteError(
            {
                "writeErrors": write_errors,
                "writeConcernErrors": [{"code": 64, "errmsg": "waiting for replication"}],
                "nInserted": len(documents) - len(write_errors),
            }
        )


async def test_revoke_many_reports_a_failed_write_concern(mongo: MongoBackend) -> None:
    db = users(mongo)
    later = datetime.now(UTC) + timedelta(hours=1)
    entry = Revocation(key="held", kind=RevocationKind.ACCESS, revoked_at=later, expires_at=later)
    assert await db.revoke_many([entry, replace(entry, key="fresh")]) == [True, True]
    db.blacklist_collection = _Unreplicated(db.blacklist_collection)
    # Only duplicates are an answer ("already revoked"); a write not known to be durable is
    # the store failing, with or without duplicates beside it.
    for keys in (["new-1", "new-2"], ["held", "new-3"]):
        with pytest.raises(StorageError):
            await db.revoke_many([replace(entry, key=key) for key in keys])
