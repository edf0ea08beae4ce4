"""PostgreSQL through asyncpg, from ``OTPCORE_POSTGRES_URL``; a fresh schema per test.

``source scripts/postgres.sh && start_postgres`` provides a throwaway server. Without the
variable the cases are skipped, except under CI (``CI`` set), where that is a failure; a set
but unreachable server is always a failure, never a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.schema import CreateSchema, DropSchema

from otpcore.testing.contract import Backend
from tests.backends import BackendSpec
from tests.backends.sql_models import Base, Blacklist, User, UuidBase, UuidBlacklist, UuidUser
from tests.backends.sqlite import SQLBackend, SQLModels

__all__ = ["BACKENDS", "postgres_schema", "postgres_url"]

URL_VARIABLE = "OTPCORE_POSTGRES_URL"


def postgres_url() -> str:
    """The server's URL; skips the test when unset (fails it under CI)."""
    url = os.environ.get(URL_VARIABLE)
    if url:
        return url
    reason = f"{URL_VARIABLE} is not set (source scripts/postgres.sh && start_postgres)"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the PostgreSQL suites: {reason}")
    pytest.skip(reason)


@asynccontextmanager
async def postgres_schema(models: SQLModels) -> AsyncIterator[tuple[AsyncEngine, str]]:
    """An engine whose connections use a new schema holding the models' tables.

    Yields the engine and the schema name; drops the schema afterwards.
    """
    url = postgres_url()
    schema = f"otpcore_{uuid.uuid4().hex[:16]}"
    engine = create_async_engine(url, connect_args={"server_settings": {"search_path": schema}})
    try:
        try:
            async with engine.begin() as connection:
                await connection.execute(CreateSchema(schema))
                await connection.run_sync(models[0].metadata.create_all)
        except (OSError, DBAPIError) as error:
            pytest.fail(f"PostgreSQL at {URL_VARIABLE}={url} is unreachable: {error!r}")
        try:
            yield engine, schema
        finally:
            async with engine.begin() as connection:
                await connection.execute(DropSchema(schema, cascade=True))
    finally:
        await engine.dispose()


def _opener(name: str, models: SQLModels) -> Callable[[], AbstractAsyncContextManager[Backend]]:
    @asynccontextmanager
    async def open_backend() -> AsyncIterator[Backend]:
        async with postgres_schema(models) as (engine, _):
            yield SQLBackend(name, engine, models)

    return open_backend


_MARKS = (pytest.mark.postgres,)

BACKENDS = [
    BackendSpec("postgres", _opener("postgres", (Base, User, Blacklist)), _MARKS),
    BackendSpec(
        "postgres-uuid", _opener("postgres-uuid", (UuidBase, UuidUser, UuidBlacklist)), _MARKS
    ),
]
