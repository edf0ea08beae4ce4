"""Worker processes for ``test_limit_multiprocess``: each opens its own connections and asks
for codes through :class:`otpcore.service.OTPAuth` from one client address.

Every worker warms its connections, waits at a barrier shared with the other workers, then
runs its requests concurrently (one store handle each, as a web app opens one per request)
and reports one outcome per request: ``"ok"`` or the name of the exception raised.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from otpcore.domain.policy import Policy
from otpcore.ports import LimitStore, Store
from otpcore.service import OTPAuth

__all__ = ["LimitJob", "run"]

SECRET = b"limit-multiprocess-secret"


@dataclass(frozen=True, slots=True)
class LimitJob:
    """What one worker process does.

    Attributes:
        backend: ``"postgres"``, ``"mongodb-pymongo"``, ``"mongodb-motor"`` or ``"redis"``
            (limits in Redis, everything else in a memory store of the process's own).
        url: The server's URL.
        location: The PostgreSQL schema, the MongoDB database, or the Redis key prefix.
        ip: The client address every request comes from.
        first: Number of this worker's first address (``user<n>@example.com``).
        tasks: How many concurrent requests this process makes.
        at: The service's fixed clock (ISO 8601), or ``None`` for the wall clock (Redis
            counts on its own clock anyway).
    """

    backend: str
    url: str
    location: str
    ip: str
    first: int
    tasks: int
    at: str | None = None


async def _no_send(email: str, code: str) -> None:
    return None


def make_auth(at: str | None, limit_store: LimitStore | None = None) -> OTPAuth[Any]:
    """The service every process runs, with the default limits."""
    options: dict[str, Any] = {}
    if at is not None:
        instant = datetime.fromisoformat(at)
        options["clock"] = lambda: instant
    policy = Policy(secret=SECRET, developer_mode=True)
    return OTPAuth(policy=policy, store=None, sender=_no_send, limit_store=limit_store, **options)


@asynccontextmanager
async def _stores(job: LimitJob) -> AsyncIterator[tuple[Callable[[], Any], Any]]:
    """``(open a store handle as an async context manager, limit store or None)``."""
    if job.backend == "postgres":
        from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

        from otpcore.stores.sqlalchemy import SQLAlchemyAdapter
        from tests.backends.sql_models import Blacklist, User

        engine = create_async_engine(
            job.url,
            pool_size=job.tasks,
            max_overflow=0,
            connect_args={"server_settings": {"search_path": job.location}},
        )
        sessions = async_sessionmaker(engine, expire_on_commit=False)

        @asynccontextmanager
        async def sql_handle() -> AsyncIterator[Store[Any]]:
            async with sessions() as session:
                yield SQLAlchemyAdapter(session, User, Blacklist)

        try:
            yield sql_handle, None
        finally:
            await engine.dispose()
    elif job.backend.startswith("mongodb-"):
        from otpcore.stores.mongodb import BaseOTPUserDocument, MongoDBAdapter
        from tests.backends.mongodb import BLACKLIST, DRIVERS, USERS

        async with DRIVERS[job.backend.removeprefix("mongodb-")](job.url, 5000) as client:
            database = client[job.location]

            @asynccontextmanager
            async def mongo_handle() -> AsyncIterator[Store[Any]]:
                yield MongoDBAdapter(
                    database, USERS, BLACKLIST, BaseOTPUserDocument, ttl_index=False
                )

            yield mongo_handle, None
    else:
        from otpcore.stores.memory import MemoryStore
        from otpcore.stores.redis import RedisLimitStore

        memory = MemoryStore()

        @asynccontextmanager
        async def memory_handle() -> AsyncIterator[Store[Any]]:
            yield memory

        async with RedisLimitStore(job.url, key_prefix=job.location) as redis:
            yield memory_handle, redis


async def _work(job: LimitJob, wait: Callable[[], Awaitable[object]]) -> list[str]:
    async with _stores(job) as (handle, limit_store):
        auth = make_auth(job.at, limit_store)

        async def warm() -> None:
            async with handle() as store:
                await store.find_by_email("warm-up@example.com")

        async def one(index: int) -> str:
            async with handle() as store:
                try:
                    await auth.with_store(store).request_code(
                        f"user{job.first + index}@example.com", ip=job.ip
                    )
                except Exception as error:
                    return type(error).__name__
            return "ok"

        await asyncio.gather(*(warm() for _ in range(min(job.tasks, 5))))
        await wait()
        return list(await asyncio.gather(*(one(index) for index in range(job.tasks))))


def run(job: LimitJob, barrier: Any) -> list[str]:
    """Entry point in the worker process; never raises (a crash is reported as text)."""
    try:
        return asyncio.run(_work(job, lambda: asyncio.to_thread(barrier.wait, 60)))
    except Exception:
        return [f"crash: {traceback.format_exc()}"]
