"""The in-memory reference store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from otpcore.ports import Store
from otpcore.stores.memory import MemoryStore
from otpcore.testing.contract import Backend
from tests.backends import BackendSpec


class MemoryBackend:
    """Every handle is the same store: the memory store is its own database."""

    name = "memory"

    def __init__(self) -> None:
        self.clock: Callable[[], datetime] | None = None
        self.shared = MemoryStore(clock=self._now)

    def _now(self) -> datetime:
        return datetime.now(UTC) if self.clock is None else self.clock()

    @asynccontextmanager
    async def store(
        self, *, clock: Callable[[], datetime] | None = None
    ) -> AsyncIterator[Store[Any]]:
        # One shared store: a handle's clock is the store's while the handle is open.
        self.clock = clock
        try:
            yield self.shared
        finally:
            self.clock = None


@asynccontextmanager
async def _open() -> AsyncIterator[Backend]:
    yield MemoryBackend()


BACKENDS = [BackendSpec("memory", _open)]
