"""The Redis limit store (``otpcore.stores.redis``) against a real ``redis-server``.

Its windows run on the server's clock, so these tests use real one-second windows and real
waits; the contract cases with a fake clock do not apply to it.
"""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC, datetime, timedelta

import coredis
import pytest

from otpcore.domain.errors import ConfigurationError, StorageError
from otpcore.domain.limits import window_at
from otpcore.domain.records import LimitWindow
from otpcore.stores.redis import RedisLimitStore
from tests.backends.redis import redis_store, redis_url

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


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_an_unreachable_server_is_a_storage_error_keeping_the_cause() -> None:
    async with RedisLimitStore(f"redis://127.0.0.1:{_closed_port()}/0") as store:
        with pytest.raises(StorageError) as raised:
            await store.hit("k", limit=1, window=_window())
        assert raised.value.__cause__ is not None
        assert await store.ping() is False


def test_urls_are_checked_and_never_shown() -> None:
    with pytest.raises(ConfigurationError, match="redis://"):
        RedisLimitStore("http://127.0.0.1:6379")
    store = RedisLimitStore("redis://:hunter2@127.0.0.1:6379/0")
    assert "hunter2" not in repr(store)
