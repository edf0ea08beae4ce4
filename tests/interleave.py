"""A store wrapper that makes concurrent requests interleave at every store call.

The memory store's methods never await, so ``asyncio.gather`` of flows over it would run
each flow to completion in turn. :class:`Interleaving` yields to the event loop before and
after every call, so concurrent flows interleave at each store round-trip as they would on
a database, and it records the outcome of every ``rotate_session`` (the compare-and-set a
refresh wins or loses).
"""

from __future__ import annotations

import asyncio
from typing import Any

from otpcore.stores.memory import MemoryStore

__all__ = ["Interleaving"]


class Interleaving:
    """``store`` with a scheduling point around every call; records rotations."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        #: Every ``rotate_session`` outcome, in order: ``True`` for a rotation stored.
        self.rotations: list[bool] = []

    @property
    def rotated(self) -> int:
        """How many rotations were stored (``rotate_session`` calls that won)."""
        return self.rotations.count(True)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)
        if name == "transaction":  # a context manager, not a call
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0)
            result = await method(*args, **kwargs)
            if name == "rotate_session":
                self.rotations.append(result)
            await asyncio.sleep(0)
            return result

        return call
