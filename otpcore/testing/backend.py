"""What the contract suites run against: a storage backend under test."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from otpcore.ports import Store

__all__ = ["Backend"]


class Backend(Protocol):
    """A storage backend under test: a name, and fresh handles on one shared database."""

    name: str

    def store(
        self, *, clock: Callable[[], datetime] | None = None
    ) -> AbstractAsyncContextManager[Store[Any]]:
        """Open a handle (a session, a client view, …) on the backend's database.

        ``clock``, when given, is the time source of the handle's reference methods.
        """
        ...
