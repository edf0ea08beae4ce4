"""The in-memory reference store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from otpcore.ports import Store
from otpcore.stores.memory import MemoryStore
from otpcore.testing.contract import Backend
from tests.backends import BackendSpec


class MemoryBackend:
    """Every handle is the same store: the memory store is its own database."""

    name = "memory"

    def __init__(self) -> None:
        self.shared = MemoryStore()

    @asynccontextmanager
    async def store(self) -> AsyncIterator[Store[Any]]:
        yield self.shared


@asynccontextmanager
async def _open() -> AsyncIterator[Backend]:
    yield MemoryBackend()


BACKENDS = [BackendSpec("memory", _open)]
