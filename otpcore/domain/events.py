"""Typed audit events the service emits. They never carry a code, a hash or a token."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "AuthEvent",
    "CodeRequested",
    "CodeSent",
    "DeliveryFailed",
    "EventSink",
    "GuessFailed",
    "LoggedOut",
    "LoggedOutEverywhere",
    "LoginSucceeded",
    "OTPLocked",
    "RefreshReuseDetected",
    "RefreshRotated",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeRequested:
    """Someone asked for a code; ``outcome`` is ``issued``, ``cooldown``, ``locked`` or
    ``unknown_user``."""

    at: datetime
    email: str
    user_id: str | None
    outcome: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeSent:
    """The sender accepted a code for delivery.

    ``user_id`` is ``None`` for an address with no account yet (``auto_create_user``: the
    account is created by the first successful verify).
    """

    at: datetime
    email: str
    user_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryFailed:
    """The outbox gave a code up undelivered, or unconfirmed.

    ``reason``: ``permanent`` (the server refused it, e.g. SMTP 5xx), ``expired`` (the code
    expired while retries waited), ``unconfirmed`` (a timeout after DATA: it may have
    arrived, and is never sent twice) or ``error`` (the mailer raised something else).
    ``attempts`` counts the tries made. Nothing about the challenge changes.
    """

    at: datetime
    email: str
    user_id: str | None
    reason: str
    attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GuessFailed:
    """A guess was refused; ``reason`` is the error code (``otp_invalid``, ``otp_expired``, …)."""

    at: datetime
    email: str
    user_id: str | None
    reason: str
    remaining_attempts: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OTPLocked:
    """A wrong guess spent the code's last attempt or hit the binding's failure cap.

    ``user_id`` is ``None``: guesses are decided on the pending code alone, the same for
    known and unknown addresses, without loading the account.
    """

    at: datetime
    email: str
    user_id: str | None
    failures: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginSucceeded:
    """A code was accepted and session ``sid`` began."""

    at: datetime
    user_id: str
    sid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshRotated:
    """Session ``sid`` exchanged its refresh token for a new one."""

    at: datetime
    user_id: str
    sid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshReuseDetected:
    """An already-rotated refresh token came back; session ``sid`` was revoked."""

    at: datetime
    user_id: str
    sid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedOut:
    """Session ``sid`` was ended: by logout, or by its user from another session."""

    at: datetime
    user_id: str
    sid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedOutEverywhere:
    """Every session of the user that began at or before ``at`` was revoked."""

    at: datetime
    user_id: str


AuthEvent = (
    CodeRequested
    | CodeSent
    | DeliveryFailed
    | GuessFailed
    | OTPLocked
    | LoginSucceeded
    | RefreshRotated
    | RefreshReuseDetected
    | LoggedOut
    | LoggedOutEverywhere
)

#: Receives every event synchronously; hand off to a queue if delivery is slow.
EventSink = Callable[[AuthEvent], None]
