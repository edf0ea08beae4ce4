"""``RedisLimitStore``: the send and guess limit counters in Redis, on the ``limits`` library.

An optional home for :class:`otpcore.ports.LimitStore` where a deployment already runs
Redis: the counters then cost the database nothing. Everything else (users, pending
challenges, revocations, sessions) stays in the application's store.

A hit is ``limits``' sliding window counter (``SlidingWindowCounterRateLimiter`` over its
asyncio ``RedisStorage`` with coredis): one Lua script, so one atomic round-trip, that
weights the previous window by its remaining time-to-live and counts the hit only when it
stays within the limit. Of any number of concurrent hits on one key, from any number of
processes and hosts, exactly as many as there is room for are allowed. A refused hit reads
the two windows' counts with one more (read-only) script.

A hit is sent at most once. coredis would resend a command whose connection was lost, but
the script may already have counted: the store's client retries nothing, so a lost
connection is a :class:`~otpcore.domain.errors.StorageError` and never a second count. And
before its first hit the store runs each script once, alone: coredis answers a script the
server does not know (``NOSCRIPT``) by closing the connection, and concurrent hits share
one. After a Redis restart the script cache is empty again, so the hits in flight at the
first one fail once (a ``StorageError``, counted at most once) before the script is
loaded again.

Windows run on the Redis server's clock, not the caller's: the :class:`LimitWindow` a hit
receives gives only the window length (whole seconds; ``limits`` counts in seconds), and
its ``start`` and ``weight`` are not used. So a fake clock in tests does not move these
windows, and the counts a refusal reports are the server's, which size ``Retry-After`` to
within one window. On an allowed hit nothing is read back: ``count`` is reported as 1 and
``previous_count`` as 0 (the service reads counts only from refusals). Keys expire on the
server, so :meth:`RedisLimitStore.purge_expired` has nothing to do.

One difference from the database stores: ``limits`` rounds the previous window's weighted
count down before comparing, so a Redis counter allows ``floor(previous * weight) + count
+ 1 <= limit`` where the others allow ``previous * weight + count + 1 <= limit``: at most
one more hit per sliding window, and never more than ``limit`` in one fixed window.

Requires the ``redis`` extra: ``pip install 'otpcore[redis]'``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, ClassVar, Final

try:
    import coredis
    from coredis.retry import NoRetryPolicy
    from limits import RateLimitItemPerSecond
    from limits.aio.storage import RedisStorage
    from limits.aio.strategies import SlidingWindowCounterRateLimiter
    from limits.errors import ConfigurationError as LimitsConfigurationError
    from limits.errors import StorageError as LimitsStorageError
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "otpcore.stores.redis needs the limits library with its asyncio Redis client; "
        "install them with: pip install 'otpcore[redis]'"
    ) from exc

from otpcore.domain.errors import ConfigurationError
from otpcore.domain.records import LimitHit, LimitWindow
from otpcore.stores._base import StoreBase

__all__ = ["RedisLimitStore"]

#: Prefix of every key this store writes, before ``limits``' own key layout.
DEFAULT_PREFIX: Final = "otpcore"
#: The key the scripts are first run on; neither script writes it (see ``_load_scripts``).
_SCRIPT_PROBE: Final = "scripts"
_SCHEMES: Final = ("redis://", "rediss://", "redis+unix://", "unix://")


def _client_url(url: str) -> str:
    """The URL the coredis pool connects to."""
    url = url.removeprefix("async+").replace("redis+unix://", "unix://", 1)
    if not url.startswith(_SCHEMES):
        raise ConfigurationError(
            "the Redis URL must start with redis://, rediss:// or unix:// "
            f"(got one starting {url.split(':', 1)[0]!r})"
        )
    return url


def _seconds(length: timedelta) -> int:
    seconds = length.total_seconds()
    if seconds < 1 or seconds != int(seconds):
        raise ConfigurationError(
            f"Redis limit windows are whole seconds; a window of {seconds} s cannot be kept"
        )
    return int(seconds)


class RedisLimitStore(StoreBase):
    """Sliding-window limit counters in Redis; implements :class:`otpcore.ports.LimitStore`.

    Args:
        url: The server, e.g. ``redis://127.0.0.1:6379/0`` (``rediss://`` for TLS,
            ``unix:///path/to/socket``); credentials may be in the URL.
        key_prefix: Prefix of every key, so several deployments can share one server.
        **options: More options for the coredis connection pool (e.g.
            ``connect_timeout``, ``stream_timeout``, ``max_connections``).

    The store owns its connection pool: :meth:`aclose` (or ``async with``) closes it.

    Raises:
        ConfigurationError: The URL is not a Redis URL, or ``limits`` refuses it.
    """

    #: Connection and server failures; ``limits`` wraps the client's own in its
    #: ``StorageError`` (``wrap_exceptions``).
    driver_errors: ClassVar[tuple[type[BaseException], ...]] = (
        LimitsStorageError,
        ConnectionError,
        OSError,
        TimeoutError,
    )

    def __init__(self, url: str, *, key_prefix: str = DEFAULT_PREFIX, **options: Any) -> None:
        client_url = _client_url(url)
        try:
            # Our own pool (limits' documented ``connection_pool`` option), so that closing
            # the store closes its connections.
            self._pool = coredis.ConnectionPool.from_url(client_url, **options)
            pool: dict[str, Any] = {
                "connection_pool": self._pool,
                "retry_policy": NoRetryPolicy(),
            }
            self.storage = RedisStorage(
                f"async+{client_url.replace('unix://', 'redis+unix://', 1)}",
                wrap_exceptions=True,
                key_prefix=key_prefix,
                **pool,
            )
        except (LimitsConfigurationError, ValueError) as exc:
            raise ConfigurationError(f"the Redis limit store is misconfigured: {exc}") from exc
        self.key_prefix = key_prefix
        self._limiter = SlidingWindowCounterRateLimiter(self.storage)
        self._scripts_loaded = False
        self._loading_scripts = asyncio.Lock()

    def __repr__(self) -> str:
        # Never the URL: it may hold a password.
        return f"RedisLimitStore(key_prefix={self.key_prefix!r})"

    async def hit(self, key: str, *, limit: int, window: LimitWindow) -> LimitHit:
        """See :meth:`otpcore.ports.LimitStore.hit` and the module's description: one
        script on an allowed hit, one more read on a refusal.

        Raises:
            ConfigurationError: ``window.length`` is not a whole number of seconds.
        """
        item = RateLimitItemPerSecond(limit, _seconds(window.length))
        if not self._scripts_loaded:
            await self._load_scripts()
        if await self._limiter.hit(item, key):
            return LimitHit(allowed=True, count=1, previous_count=0)
        previous, _, current, _ = await self.storage.get_sliding_window(
            item.key_for(key), item.get_expiry()
        )
        return LimitHit(allowed=False, count=int(current), previous_count=int(previous))

    async def _load_scripts(self) -> None:
        """Run the hit's and the refusal's scripts once, one at a time, on a key neither
        writes: with ``amount`` above ``limit`` the hit's script returns before any write,
        and the read finds no window to shift."""
        async with self._loading_scripts:
            if self._scripts_loaded:
                return
            await self.storage.acquire_sliding_window_entry(_SCRIPT_PROBE, 0, 1, 1)
            await self.storage.get_sliding_window(_SCRIPT_PROBE, 1)
            self._scripts_loaded = True

    async def purge_expired(self, now: datetime) -> int:
        """Nothing to do: Redis expires each key two windows after its last hit. Returns 0."""
        return 0

    async def ping(self) -> bool:
        """Whether the server answers (``PING``)."""
        return bool(await self.storage.check())

    async def aclose(self) -> None:
        """Close the store's connections; a later hit opens new ones."""
        self._pool.disconnect()

    async def __aenter__(self) -> RedisLimitStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
