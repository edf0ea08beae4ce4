"""The Redis server for the Redis limit store's tests, from ``REDIS_URL``.

``source scripts/redis.sh && start_redis`` provides a throwaway server. Without the variable
the cases are skipped, except under CI (``CI`` set), where that is a failure; a set but
unreachable server is always a failure, never a skip. Redis keeps only limit counters, so
it is no full storage backend: this module contributes no ``BACKENDS``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from otpcore.stores.redis import RedisLimitStore
from tests.backends import BackendSpec
from tests.net import free_port

__all__ = ["BACKENDS", "private_redis", "redis_store", "redis_url"]

URL_VARIABLE = "REDIS_URL"

#: Every module in ``tests.backends`` is scanned for backends; Redis is not a full store.
BACKENDS: list[BackendSpec] = []


def redis_url() -> str:
    """The server's URL; skips the test when unset (fails it under CI)."""
    url = os.environ.get(URL_VARIABLE)
    if url:
        return url
    reason = f"{URL_VARIABLE} is not set (source scripts/redis.sh && start_redis)"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the Redis suites: {reason}")
    pytest.skip(reason)


@asynccontextmanager
async def redis_store(prefix: str | None = None) -> AsyncIterator[RedisLimitStore]:
    """A :class:`~otpcore.stores.redis.RedisLimitStore` under a key prefix of its own (so
    tests never see each other's counters), after checking that the server answers."""
    url = redis_url()
    store = RedisLimitStore(url, key_prefix=prefix or f"otpcore-test-{uuid.uuid4().hex[:12]}")
    async with store:
        if not await store.ping():
            pytest.fail(f"Redis at {URL_VARIABLE}={url} does not answer")
        yield store


@asynccontextmanager
async def private_redis() -> AsyncIterator[str]:
    """The URL of a ``redis-server`` of the test's own on 127.0.0.1, stopped afterwards: for
    cases that flush or restart the server, which must not reach the shared one."""
    redis_url()  # skipped (failed under CI) where the Redis suites do not run
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not on PATH, though REDIS_URL is set")
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            break
        else:
            pytest.fail(f"redis-server on port {port} did not listen within 5 s")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        await server.wait()
