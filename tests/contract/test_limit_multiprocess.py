"""Cross-process proof (issue 8): four worker processes ask for codes for 200 different
addresses from one client address, through :class:`otpcore.service.OTPAuth` with the default
limits, each process with its own connections and one store handle per request. The
per-client send limit (25 per 5 minutes) is never exceeded: exactly 25 codes are issued,
on PostgreSQL, on the MongoDB-wire server (PyMongo and Motor workers), and with the
counters in Redis.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from multiprocessing.managers import SyncManager

import pytest
from sqlalchemy import text

from otpcore.domain.limits import Limits, Rate
from tests.backends.mongodb import mongodb_database, mongodb_uri
from tests.backends.postgres import postgres_schema, postgres_url
from tests.backends.redis import redis_url
from tests.backends.sql_models import Base, Blacklist, User
from tests.contract import limit_workers
from tests.contract.limit_workers import LimitJob

pytestmark = pytest.mark.multiprocess

WORKERS = 4
REQUESTS = 200
CLIENT = "203.0.113.7"


def _per_client() -> Rate:
    rate = Limits().per_client
    assert rate is not None
    return rate


PER_CLIENT = _per_client()


def _instant() -> str:
    """Ten seconds into a fixed window of the per-client limit (no window edge mid-test)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    now = datetime.now(UTC)
    start = epoch + ((now - epoch) // PER_CLIENT.per) * PER_CLIENT.per
    return (start + timedelta(seconds=10)).isoformat()


@pytest.fixture(scope="module")
def workers() -> Iterator[tuple[ProcessPoolExecutor, SyncManager]]:
    """Four spawned worker processes (started once for the module) and a barrier factory."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(WORKERS, mp_context=context) as pool:
        yield pool, manager


def _spawn(
    workers: tuple[ProcessPoolExecutor, SyncManager], backends: list[str], **job: str | None
) -> Counter[str]:
    pool, manager = workers
    barrier = manager.Barrier(WORKERS)
    share = REQUESTS // WORKERS
    futures = [
        pool.submit(
            limit_workers.run,
            LimitJob(
                backend=backends[index % len(backends)],
                ip=CLIENT,
                first=index * share,
                tasks=share,
                **job,  # type: ignore[arg-type]
            ),
            barrier,
        )
        for index in range(WORKERS)
    ]
    outcomes = [outcome for future in futures for outcome in future.result(timeout=240)]
    crashes = [outcome for outcome in outcomes if outcome.startswith("crash")]
    assert not crashes, crashes[0]
    assert len(outcomes) == REQUESTS
    return Counter(outcomes)


def _expected() -> Counter[str]:
    return Counter({"ok": PER_CLIENT.limit, "RateLimited": REQUESTS - PER_CLIENT.limit})


@pytest.mark.postgres
async def test_the_per_client_limit_holds_across_processes_on_postgresql(
    workers: tuple[ProcessPoolExecutor, SyncManager],
) -> None:
    url = postgres_url()
    async with postgres_schema((Base, User, Blacklist)) as (engine, schema):
        outcomes = await asyncio.to_thread(
            _spawn, workers, ["postgres"], url=url, location=schema, at=_instant()
        )
        async with engine.connect() as connection:
            counted = await connection.scalar(
                text('SELECT max("count") FROM token_blacklist_limits')
            )
            codes = await connection.scalar(text("SELECT count(*) FROM token_blacklist_challenges"))
    assert outcomes == _expected()
    assert counted == PER_CLIENT.limit
    assert codes == PER_CLIENT.limit


@pytest.mark.mongodb
async def test_the_per_client_limit_holds_across_processes_on_mongodb(
    workers: tuple[ProcessPoolExecutor, SyncManager],
) -> None:
    uri = mongodb_uri()
    async with mongodb_database("pymongo") as database:
        outcomes = await asyncio.to_thread(
            _spawn,
            workers,
            ["mongodb-pymongo", "mongodb-motor"],
            url=uri,
            location=database.name,
            at=_instant(),
        )
        codes = await database["token_blacklist_challenges"].count_documents({})
    assert outcomes == _expected()
    assert codes == PER_CLIENT.limit


@pytest.mark.redis
async def test_the_per_client_limit_holds_across_processes_with_redis_counters(
    workers: tuple[ProcessPoolExecutor, SyncManager],
) -> None:
    outcomes = await asyncio.to_thread(
        _spawn, workers, ["redis"], url=redis_url(), location=f"mp-{uuid.uuid4().hex}", at=None
    )
    assert outcomes == _expected()
