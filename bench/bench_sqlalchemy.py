"""The SQLAlchemy store under load: purge cost, revocation checks as the table grows, logins.

1. ``cleanup_blacklist()`` over 10,000 and 100,000 expired rows on SQLite: seconds, and peak
   Python memory (tracemalloc). One ``DELETE`` means memory stays flat in the row count.
2. ``find_revocations`` of 3 keys (median latency) with 1,000 and 1,000,000 rows present;
   the ratio should stay close to 1 (an indexed ``IN``). Also ``load_principal`` (the user and
   its revocations in one query). On PostgreSQL too when ``OTPCORE_POSTGRES_URL`` is set.
3. Full verify flows (``request_code`` then ``verify_code``, one session per request) per
   second through :class:`otpcore.service.OTPAuth` on SQLite, with its default rollback
   journal (an fsync per commit dominates) and on the recommended engine
   (:func:`~otpcore.stores.sqlalchemy.create_sqlite_engine`: WAL, ``synchronous=NORMAL``), and
   on PostgreSQL when set.

Run: python bench/bench_sqlalchemy.py
"""

from __future__ import annotations

import asyncio
import functools
import os
import statistics
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Integer, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.schema import CreateSchema, DropSchema

from otpcore.domain.policy import Policy
from otpcore.service import OTPAuth
from otpcore.stores.sqlalchemy import (
    BaseOTPUserTable,
    SQLAlchemyAdapter,
    TokenBlacklist,
    create_sqlite_engine,
)

__all__ = ["main", "run"]

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CHUNK = 20_000
CHECKS = 2_000
ROUNDS = 10
FLOW_SECONDS = 3.0


class _Base(DeclarativeBase):
    pass


class BenchUser(BaseOTPUserTable[int], _Base):
    """Integer-key user, as in the reference README."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)


class BenchBlacklist(TokenBlacklist, _Base):
    """The revocation table."""


@asynccontextmanager
async def _sqlite(*, recommended: bool = False) -> AsyncIterator[AsyncEngine]:
    with tempfile.TemporaryDirectory(prefix="otpcore-bench-") as directory:
        url = f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}"
        engine = create_sqlite_engine(url) if recommended else create_async_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(_Base.metadata.create_all)
            yield engine
        finally:
            await engine.dispose()


@asynccontextmanager
async def _postgres(url: str) -> AsyncIterator[AsyncEngine]:
    schema = f"otpcore_bench_{uuid.uuid4().hex[:12]}"
    engine = create_async_engine(url, connect_args={"server_settings": {"search_path": schema}})
    try:
        async with engine.begin() as connection:
            await connection.execute(CreateSchema(schema))
            await connection.run_sync(_Base.metadata.create_all)
        yield engine
        async with engine.begin() as connection:
            await connection.execute(DropSchema(schema, cascade=True))
    finally:
        await engine.dispose()


async def _seed(engine: AsyncEngine, count: int, *, expired: bool, start: int = 0) -> None:
    """Insert ``count`` revocations in chunks; expired ones lapse at ``T0``."""
    expires = T0 if expired else T0 + timedelta(days=365)
    statement = insert(BenchBlacklist)
    for first in range(start, start + count, CHUNK):
        rows = [
            {
                "jti": f"k{index}",
                "token_type": "access",
                "blacklisted_at": T0,
                "expires_at": expires,
            }
            for index in range(first, min(first + CHUNK, start + count))
        ]
        async with engine.begin() as connection:
            await connection.execute(statement, rows)


async def _cleanup(engine: AsyncEngine, rows: int) -> dict[str, float]:
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def cleanup() -> int:
        async with sessions() as session:
            store = SQLAlchemyAdapter(session, BenchUser, BenchBlacklist, clock=lambda: T0)
            return await store.cleanup_blacklist()

    await cleanup()  # compile and cache the statement outside the measurement
    await _seed(engine, rows, expired=True)
    start = time.perf_counter()
    removed = await cleanup()
    seconds = time.perf_counter() - start
    assert removed == rows, (removed, rows)

    await _seed(engine, rows, expired=True)
    tracemalloc.start()
    try:
        assert await cleanup() == rows
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {"seconds": seconds, "peak_kib": peak / 1024}


async def _timed(call: Callable[[], Awaitable[object]], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return samples


async def _lookup_calls(
    engine: AsyncEngine, present: int, stack: AsyncExitStack
) -> dict[str, Callable[[], Awaitable[None]]]:
    """The two revocation reads, over one session, against a table of ``present`` rows."""
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    session = await stack.enter_async_context(sessions())
    store = SQLAlchemyAdapter(session, BenchUser, BenchBlacklist)
    account = await store.create("bench@example.com", {})
    hit = f"k{present // 2}"
    keys = [hit, "sid:absent", f"user:{account.user_id}"]

    async def check() -> None:
        found = await store.find_revocations(keys)
        assert [entry.key for entry in found] == [hit]

    async def principal() -> None:
        user, found = await store.load_principal(account.user_id, keys)
        assert user is not None
        assert len(found) == 1

    return {"find_revocations": check, "load_principal": principal}


async def _growth(
    open_engine: Callable[[], AbstractAsyncContextManager[AsyncEngine]],
) -> dict[str, float]:
    """Median microseconds per read with 1k and with 1M rows, measured in alternation so that
    machine noise hits both sizes alike."""
    sizes = {"1k": 1_000, "1M": 1_000_000}
    async with AsyncExitStack() as stack:
        calls = {}
        for label, rows in sizes.items():
            engine = await stack.enter_async_context(open_engine())
            await _seed(engine, rows, expired=False)
            async with engine.begin() as connection:
                # Production tables have planner statistics (autovacuum); fresh ones do not.
                await connection.execute(text("ANALYZE"))
            calls[label] = await _lookup_calls(engine, rows, stack)
        samples: dict[tuple[str, str], list[float]] = {}
        for label, reads in calls.items():
            for name, call in reads.items():
                await _timed(call, 50)  # warm caches and prepared statements
                samples[name, label] = []
        for _ in range(ROUNDS):
            for label, reads in calls.items():
                for name, call in reads.items():
                    samples[name, label] += await _timed(call, CHECKS // ROUNDS)
    medians = {key: statistics.median(values) * 1e6 for key, values in samples.items()}
    results: dict[str, float] = {}
    for name in calls["1k"]:
        results[f"{name} us @1k rows"] = medians[name, "1k"]
        results[f"{name} us @1M rows"] = medians[name, "1M"]
        results[f"{name} ratio 1M/1k"] = medians[name, "1M"] / medians[name, "1k"]
    return results


async def _flows(open_engine: Callable[[], AbstractAsyncContextManager[AsyncEngine]]) -> float:
    """Completed request-code + verify-code logins per second, sequentially."""
    async with open_engine() as engine:
        sessions = async_sessionmaker(engine, expire_on_commit=False)

        async def send(email: str, code: str) -> None:
            return None

        auth: OTPAuth[BenchUser] = OTPAuth(
            policy=Policy(secret=b"bench", developer_mode=True, resend_cooldown=timedelta(0)),
            store=None,
            sender=send,
        )

        async def flow(index: int) -> None:
            email = f"user{index % 50}@example.com"
            async with sessions() as session:
                store = SQLAlchemyAdapter(session, BenchUser, BenchBlacklist)
                await auth.with_store(store).request_code(email)
            async with sessions() as session:
                store = SQLAlchemyAdapter(session, BenchUser, BenchBlacklist)
                await auth.with_store(store).verify_code(email, "000000")

        for index in range(50):  # create the users and warm every cache
            await flow(index)
        done = 0
        start = time.perf_counter()
        while time.perf_counter() - start < FLOW_SECONDS:
            await flow(done)
            done += 1
        return done / (time.perf_counter() - start)


async def _run() -> dict[str, float]:
    results: dict[str, float] = {}
    for rows in (10_000, 100_000):
        async with _sqlite() as engine:
            cleanup = await _cleanup(engine, rows)
        label = f"{rows // 1000}k"
        results[f"sqlite cleanup {label} rows seconds"] = cleanup["seconds"]
        results[f"sqlite cleanup {label} rows peak KiB"] = cleanup["peak_kib"]
    results["sqlite cleanup peak memory ratio 100k/10k"] = (
        results["sqlite cleanup 100k rows peak KiB"] / results["sqlite cleanup 10k rows peak KiB"]
    )
    for name, value in (await _growth(_sqlite)).items():
        results[f"sqlite {name}"] = value
    results["sqlite verify flows per second"] = await _flows(_sqlite)
    recommended = functools.partial(_sqlite, recommended=True)
    results["sqlite (create_sqlite_engine) verify flows per second"] = await _flows(recommended)

    url = os.environ.get("OTPCORE_POSTGRES_URL")
    if url:
        postgres = functools.partial(_postgres, url)
        for name, value in (await _growth(postgres)).items():
            results[f"postgres {name}"] = value
        results["postgres verify flows per second"] = await _flows(postgres)
    return results


def run() -> dict[str, float]:
    """Every measurement, by name (latencies in microseconds)."""
    return asyncio.run(_run())


def main() -> None:
    """Run and print the table."""
    results = run()
    width = max(len(name) for name in results)
    print(f"{'measurement':<{width}}  {'value':>14}")
    print(f"{'-' * width}  {'-' * 14}")
    for name, value in results.items():
        print(f"{name:<{width}}  {value:>14,.3f}")
    if "postgres verify flows per second" not in results:
        print("(set OTPCORE_POSTGRES_URL to measure PostgreSQL too)")


if __name__ == "__main__":
    main()
