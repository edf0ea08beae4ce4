"""MongoDB through PyMongo's async client and through Motor, on the server at ``MONGODB_URI``.

``scripts/mongodb.sh`` starts one (``source scripts/mongodb.sh && start_mongodb``). Without
``MONGODB_URI`` these backends are skipped, except under CI (``CI`` set), where a missing
server is a failure; a URI that does not answer is always a failure.

Every test gets a fresh database with a unique name, dropped afterwards. The adapter is made
without the TTL index: the contract suite's instants come from a fake clock in the past,
which a server would expire on its own clock.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any

import pytest

from otpcore.ports import Store
from otpcore.testing.contract import Backend
from tests.backends import BackendSpec

__all__ = [
    "BACKENDS",
    "MongoBackend",
    "mongodb_database",
    "mongodb_uri",
]

USERS = "users"
BLACKLIST = "token_blacklist"


def mongodb_uri() -> str:
    """The server under test, or skip (fail under CI) when none is configured."""
    uri = os.environ.get("MONGODB_URI")
    if uri:
        return uri
    reason = "MONGODB_URI is not set; run `source scripts/mongodb.sh && start_mongodb` first"
    if os.environ.get("CI"):
        pytest.fail(f"CI needs the MongoDB-wire server: {reason}")
    pytest.skip(reason)


@asynccontextmanager
async def _pymongo_client(uri: str, timeout_ms: int = 5000) -> AsyncIterator[Any]:
    from pymongo import AsyncMongoClient

    client: Any = AsyncMongoClient(uri, serverSelectionTimeoutMS=timeout_ms)
    try:
        yield client
    finally:
        await client.close()


@asynccontextmanager
async def _motor_client(uri: str, timeout_ms: int = 5000) -> AsyncIterator[Any]:
    from motor.motor_asyncio import AsyncIOMotorClient

    client: Any = AsyncIOMotorClient(uri, serverSelectionTimeoutMS=timeout_ms)
    try:
        yield client
    finally:
        client.close()


DRIVERS: dict[str, Callable[[str, int], AbstractAsyncContextManager[Any]]] = {
    "pymongo": _pymongo_client,
    "motor": _motor_client,
}


@asynccontextmanager
async def mongodb_database(driver: str) -> AsyncIterator[Any]:
    """A fresh, uniquely named database through ``driver``, dropped afterwards."""
    uri = mongodb_uri()
    async with DRIVERS[driver](uri, 5000) as client:
        try:
            await client.admin.command("ping")
        except Exception as exc:
            pytest.fail(f"MONGODB_URI={uri} does not answer: {exc!r}")
        database = client[f"otpcore_test_{uuid.uuid4().hex[:16]}"]
        try:
            yield database
        finally:
            await client.drop_database(database.name)


class MongoBackend:
    """Handles are adapters over one database and one client, as an app makes per request."""

    def __init__(self, name: str, database: Any) -> None:
        self.name = name
        self.database = database

    def adapter(
        self, *, ttl_index: bool = False, clock: Callable[[], datetime] | None = None
    ) -> Any:
        """A new adapter on the test database, with the base user document."""
        from otpcore.stores.mongodb import BaseOTPUserDocument, MongoDBAdapter

        options = {} if clock is None else {"clock": clock}
        return MongoDBAdapter(
            self.database, USERS, BLACKLIST, BaseOTPUserDocument, ttl_index=ttl_index, **options
        )

    @asynccontextmanager
    async def store(
        self, *, clock: Callable[[], datetime] | None = None
    ) -> AsyncIterator[Store[Any]]:
        yield self.adapter(clock=clock)


def _opener(driver: str) -> Callable[[], AbstractAsyncContextManager[Backend]]:
    @asynccontextmanager
    async def _open() -> AsyncIterator[Backend]:
        async with mongodb_database(driver) as database:
            yield MongoBackend(f"mongodb-{driver}", database)

    return _open


BACKENDS = [
    BackendSpec(f"mongodb-{driver}", _opener(driver), (pytest.mark.mongodb,)) for driver in DRIVERS
]
