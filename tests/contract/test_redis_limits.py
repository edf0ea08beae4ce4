"""The Redis limit store (``otpcore.stores.redis``) against a real ``redis-server``.

Its windows run on the server's clock, so these tests use real one-second windows and real
waits; the contract cases with a fake clock do not apply to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import coredis
import pytest

from otpcore.domain.errors import ConfigurationError, StorageError
from otpcore.domain.limits import window_at
from otpcore.domain.records import LimitHit, LimitWindow
from otpcore.stores.redis import RedisLimitStore
from tests.backends.redis import private_redis, redis_store, redis_url
from tests.net import free_port

pytestmark = pytest.mark.redis

SECOND = timedelta(seconds=1)


def _window(length: timedelta = SECOND, *, at: datetime | None = None) -> LimitWindow:
    return window_at(at or datetime.now(UTC), length)


async def _hits(store: RedisLimitStore, key: str, count: int, *, limit: int) -> list[bool]:
    return [(await store.hit(key, limit=limit, window=_window())).allowed for _ in range(count)]


async def test_a_one_second_window_allows_the_limit_then_refuses() -> None:
    async with redis_store() as store:
        assert await _hits(store, "k", 3, limit=3) == [True, True, True]
        refused = await store.hit("k", limit=3, window=_window())
    assert refused.allowed is False
    assert (refused.count, refused.previous_count) == (3, 0)


async def test_the_window_slides_on_the_server_clock() -> None:
    """Full right away; about a second later the previous window still weighs (not a reset);
    two seconds later both windows are gone. Retried when the machine stalls past a step."""
    for _ in range(3):
        async with redis_store() as store:
            started = time.monotonic()
            assert await _hits(store, "k", 4, limit=3) == [True, True, True, False]
            await asyncio.sleep(1.2 - (time.monotonic() - started))
            sliding = await _hits(store, "k", 3, limit=3)
            slid_at = time.monotonic() - started
            await asyncio.sleep(2.3 - (time.monotonic() - started))
            fresh = await _hits(store, "k", 4, limit=3)
        if slid_at < 1.7:
            break
    else:
        pytest.fail("the machine never ran the middle step within 1.7 s")
    # At 1.2-1.7 s the previous window's 3 hits weigh 3 * (0.3 .. 0.8): 1 or 2 more allowed.
    assert sliding[0] is True
    assert sliding[-1] is False
    assert fresh == [True, True, True, False]


async def test_the_callers_clock_does_not_move_the_window() -> None:
    """A window computed from a clock an hour ahead (or behind) counts the same: only its
    length is used."""
    async with redis_store() as store:
        ahead = _window(at=datetime.now(UTC) + timedelta(hours=1))
        behind = _window(at=datetime.now(UTC) - timedelta(hours=1))
        first = [await store.hit("k", limit=2, window=ahead) for _ in range(2)]
        third = await store.hit("k", limit=2, window=behind)
    assert [hit.allowed for hit in first] == [True, True]
    assert third.allowed is False


async def test_concurrent_hits_allow_exactly_the_limit() -> None:
    async with redis_store() as store:
        window = _window(timedelta(minutes=5))
        hits = await asyncio.gather(*(store.hit("k", limit=7, window=window) for _ in range(40)))
    assert sum(hit.allowed for hit in hits) == 7


async def _flush_scripts(url: str) -> None:
    client: coredis.Redis[str] = coredis.Redis.from_url(url, decode_responses=True)
    try:
        assert await client.script_flush()
    finally:
        client.connection_pool.disconnect()


async def test_a_cold_script_cache_counts_each_concurrent_hit_once() -> None:
    """The first hits after the server lost its scripts (a restart, a fail-over, ``SCRIPT
    FLUSH``), 200 at once on one store: exactly the limit allowed, none failed. coredis
    answers a script the server does not know by dropping the connection the concurrent hits
    share; resent, a hit that had already counted counted twice and one code too few went
    out. Ten rounds, each on a flushed cache, as the race does not lose every time."""
    async with private_redis() as url:
        for round_ in range(10):
            await _flush_scripts(url)
            async with RedisLimitStore(url, key_prefix=f"cold-{round_}") as store:
                window = _window(timedelta(minutes=5))
                outcomes = await asyncio.gather(
                    *(store.hit("k", limit=25, window=window) for _ in range(200)),
                    return_exceptions=True,
                )
            hits = [outcome for outcome in outcomes if isinstance(outcome, LimitHit)]
            assert hits == [outcome for outcome in outcomes], outcomes
            assert sum(hit.allowed for hit in hits) == 25, f"round {round_}"


class _ReplyDropper:
    """A TCP relay to the Redis server that, once armed, closes the client's connection in
    place of passing on the next reply: the command ran on the server, its answer is lost
    (the fault a real network gives only by chance)."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.armed = False
        self.dropped = 0
        #: One task per relayed connection; awaited at the end, as before Python 3.12
        #: ``Server.wait_closed`` does not wait for them.
        self.sessions: list[asyncio.Task[Any]] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.sessions.append(task)
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)

        async def requests() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()  # the client hung up: so does the server, ending ``replies``

        async def replies() -> None:
            while data := await up_reader.read(65536):
                if self.armed:
                    self.armed = False
                    self.dropped += 1
                    return
                writer.write(data)
                await writer.drain()

        forward = asyncio.create_task(requests())
        try:
            with contextlib.suppress(OSError):  # the client went away first
                await replies()
        finally:
            forward.cancel()
            await asyncio.gather(forward, return_exceptions=True)
            writer.close()
            up_writer.close()


async def test_a_hit_whose_reply_is_lost_fails_and_is_counted_once() -> None:
    """coredis resends a command whose connection was lost; a resent hit is counted twice
    (with a limit of 1 the first code of a new client was refused). The store sends it once:
    the caller gets a StorageError, and the server holds one hit."""
    host, port = redis_url().removeprefix("redis://").split("/")[0].rsplit(":", 1)
    dropper = _ReplyDropper(host, int(port))
    relay = await asyncio.start_server(dropper.serve, "127.0.0.1", 0)
    relay_port = relay.sockets[0].getsockname()[1]
    try:
        prefix = f"otpcore-lost-{time.time_ns()}"
        async with RedisLimitStore(f"redis://127.0.0.1:{relay_port}/0", key_prefix=prefix) as store:
            window = _window(timedelta(minutes=5))
            assert (await store.hit("other", limit=1, window=window)).allowed
            dropper.armed = True
            with pytest.raises(StorageError):
                await store.hit("k", limit=1, window=window)
            assert dropper.dropped == 1
            refused = await store.hit("k", limit=1, window=window)
        assert (refused.allowed, refused.count) == (False, 1)
    finally:
        relay.close()
        # The store has closed its connections: every relayed connection ends.
        await asyncio.wait_for(asyncio.gather(*dropper.sessions), timeout=10)
        await relay.wait_closed()


async def test_limits_are_counted_per_key_and_per_limit() -> None:
    async with redis_store() as store:
        assert await _hits(store, "a", 2, limit=1) == [True, False]
        assert await _hits(store, "b", 1, limit=1) == [True]


async def test_keys_carry_the_prefix_and_expire_on_the_server() -> None:
    prefix = f"otpcore-ttl-{time.time_ns()}"
    async with redis_store(prefix) as store:
        await store.hit("k" * 43, limit=5, window=_window())
    client: coredis.Redis[str] = coredis.Redis.from_url(redis_url(), decode_responses=True)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        assert keys
        for key in keys:
            assert key.startswith(prefix)
            assert 0 < await client.pttl(key) <= 2000  # two windows of one second at most
    finally:
        client.connection_pool.disconnect()


async def test_fractional_windows_are_refused() -> None:
    async with redis_store() as store:
        with pytest.raises(ConfigurationError, match="whole seconds"):
            await store.hit("k", limit=1, window=_window(timedelta(milliseconds=1500)))


async def test_purge_has_nothing_to_do() -> None:
    async with redis_store() as store:
        await store.hit("k", limit=1, window=_window())
        assert await store.purge_expired(datetime.now(UTC)) == 0
        assert (await store.hit("k", limit=1, window=_window())).allowed is False


async def test_an_unreachable_server_is_a_storage_error_keeping_the_cause() -> None:
    async with RedisLimitStore(f"redis://127.0.0.1:{free_port()}/0") as store:
        with pytest.raises(StorageError) as raised:
            await store.hit("k", limit=1, window=_window())
        assert raised.value.__cause__ is not None
        assert await store.ping() is False


def test_urls_are_checked_and_never_shown() -> None:
    with pytest.raises(ConfigurationError, match="redis://"):
        RedisLimitStore("http://127.0.0.1:6379")
    store = RedisLimitStore("redis://:hunter2@127.0.0.1:6379/0")
    assert "hunter2" not in repr(store)
