"""What every service flow shares: the settings an :class:`~otpcore.service.OTPAuth` was
built with, the production clock and id sources, and event delivery."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from otpcore.delivery import Outbox
from otpcore.domain.errors import ConfigurationError
from otpcore.domain.events import AuthEvent, EventSink
from otpcore.domain.limits import Limits
from otpcore.domain.policy import Policy
from otpcore.domain.sessions import RevocationMirror
from otpcore.ports import LimitStore, RevocationStore, Store
from otpcore.tokens import TokenCodec

__all__ = ["RevocationSource", "Settings", "emit", "new_token_id", "require_store", "utc_now"]

U = TypeVar("U")

logger = logging.getLogger("otpcore")

#: Opens a revocation store for a mirror refresh, e.g. one database session.
RevocationSource = Callable[[], AbstractAsyncContextManager[RevocationStore]]


def utc_now() -> datetime:
    """The production clock."""
    return datetime.now(UTC)


def new_token_id() -> str:
    """A fresh 128-bit identifier for ``jti`` and ``sid``."""
    return secrets.token_urlsafe(16)


@dataclass(slots=True, kw_only=True)
class Settings(Generic[U]):
    """One service's configuration, shared by every :meth:`OTPAuth.with_store` view."""

    policy: Policy
    codec: TokenCodec
    #: Where codes go: a bounded in-memory queue with its own delivery tasks.
    outbox: Outbox
    clock: Callable[[], datetime]
    randbelow: Callable[[int], int]
    new_id: Callable[[], str]
    events: EventSink | None
    auto_create_user: bool
    reveal_unknown_users: bool
    new_user_fields: Callable[[str], Mapping[str, object]] | None
    claims_for: Callable[[U], Mapping[str, Any]] | None
    max_retries: int
    mirror: RevocationMirror
    mirror_lock: asyncio.Lock
    revocation_source: RevocationSource | None
    limits: Limits = field(default_factory=Limits)
    limit_store: LimitStore | None = None
    #: Where magic links point (``<base>?t=<token>``); ``None``: codes are sent without one.
    magic_link_url: str | None = None


def require_store(store: Store[U] | None) -> Store[U]:
    """``store``, or a :class:`ConfigurationError` saying how to get one."""
    if store is None:
        raise ConfigurationError("this OTPAuth has no store; call with_store(store) first")
    return store


def emit(s: Settings[Any], event: AuthEvent) -> None:
    """Hand ``event`` to the sink, if any; a failing sink is logged, never raised."""
    if s.events is None:
        return
    try:
        s.events(event)
    except Exception:
        # An audit sink failure must not decide a login; it is reported, not raised.
        logger.exception("otpcore event sink failed on %s", type(event).__name__)
