"""The records every layer shares: code state, accounts, revocations, verified claims.

Plain frozen values with no behaviour beyond naming their keys. The pure core decides over
them, the ports carry them, the stores persist them; nothing here imports any of those.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Final, Generic, Literal, TypeAlias, TypeVar

__all__ = [
    "RESERVED_CLAIMS",
    "Account",
    "ChallengeState",
    "Claims",
    "LimitHit",
    "LimitWindow",
    "PendingChallenge",
    "Revocation",
    "RevocationKind",
    "SessionRecord",
    "TokenKind",
    "session_key",
    "user_key",
]

U = TypeVar("U")

TokenKind: TypeAlias = Literal["access", "refresh"]

#: Claims otpcore sets itself; custom claims may never name them.
RESERVED_CLAIMS: Final[frozenset[str]] = frozenset(
    {
        "sub",
        "iat",
        "nbf",
        "exp",
        "jti",
        "type",
        "sid",
        "iss",
        "aud",
        "auth_time",
        "gen",
        "client_id",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChallengeState:
    """Everything that affects a code decision for one account.

    Attributes:
        code_hash: HMAC of the pending code, or ``None`` when none is pending.
        issued_at: When the pending code was issued.
        attempts: Guesses counted against the pending code.
        failures: Consecutive wrong guesses across codes; reset only by a success.
        last_request_at: When the last code was issued (for the resend cooldown).
        last_failure_at: When the last wrong guess was counted (for the account lock).
        version: Incremented by every stored transition; the compare-and-set guard.
        unbound_attempts: Guesses counted against the pending code from clients that
            presented no binding (one shared budget per code; see
            :class:`PendingChallenge`).
        link_hash: Keyed hash of the magic link sent with the pending code, or ``None``
            (links off, or the code consumed). Only pending challenges keep one; the user
            row's legacy state never does.
    """

    code_hash: str | None = None
    issued_at: datetime | None = None
    attempts: int = 0
    failures: int = 0
    last_request_at: datetime | None = None
    last_failure_at: datetime | None = None
    version: int = 0
    unbound_attempts: int = 0
    link_hash: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Claims:
    """The verified contents of a token.

    Attributes:
        sub: Subject: the user identifier.
        jti: Unique token identifier (the revocation key for this token).
        sid: Session identifier: the refresh-token family this token belongs to.
        type: ``"access"`` or ``"refresh"``.
        iat: Issued at, unix seconds.
        nbf: Not before, unix seconds.
        exp: Expires at, unix seconds.
        auth_time: When the session began (the code was verified), unix seconds, ms precision.
        gen: The session's refresh generation on refresh tokens (``None`` on access tokens):
            rotating replaces the token of generation ``g`` with one of ``g + 1``.
        client_id: The RFC 9068 ``client_id`` of access tokens issued where one is
            configured, else ``None``.
        extra: Custom claims only (nothing in :data:`RESERVED_CLAIMS`).
    """

    sub: str
    jti: str
    sid: str
    type: TokenKind
    iat: int
    nbf: int
    exp: int
    auth_time: float
    gen: int | None = None
    client_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def as_dict(self) -> dict[str, Any]:
        """Return the full payload (reserved and custom claims, without ``iss``/``aud``).

        ``gen`` and ``client_id`` appear only when the token carries them.
        """
        optional: dict[str, Any] = {}
        if self.gen is not None:
            optional["gen"] = self.gen
        if self.client_id is not None:
            optional["client_id"] = self.client_id
        return {
            **self.extra,
            **optional,
            "sub": self.sub,
            "jti": self.jti,
            "sid": self.sid,
            "type": self.type,
            "iat": self.iat,
            "nbf": self.nbf,
            "exp": self.exp,
            "auth_time": self.auth_time,
        }


class RevocationKind(enum.StrEnum):
    """What a revocation entry's key names; stored as its string value."""

    #: One access token, by ``jti``.
    ACCESS = "access"
    #: One refresh token, by ``jti``: it was rotated (or blacklisted through the reference API).
    REFRESH = "refresh"
    #: A whole session, by :func:`session_key`.
    SESSION = "session"
    #: A user's logout-all cutoff, by :func:`user_key`.
    USER = "user"

    @classmethod
    def parse(cls, value: str | None) -> RevocationKind:
        """The kind a stored value names; an unknown value is a token-level revocation."""
        try:
            return cls(value or "")
        except ValueError:
            return cls.ACCESS


@dataclass(frozen=True, slots=True, kw_only=True)
class Account(Generic[U]):
    """One user as the service sees it.

    Attributes:
        user_id: The user's primary key as text (what tokens carry in ``sub``).
        email: The normalized e-mail the account is found by.
        is_verified: Whether the user has ever completed a code verification.
        challenge: The code state, with its compare-and-set ``version``.
        user: The application's own user object (ORM row, Pydantic document, …).
    """

    user_id: str
    email: str
    is_verified: bool
    challenge: ChallengeState
    user: U


@dataclass(frozen=True, slots=True, kw_only=True)
class Revocation:
    """One revoked identifier.

    Attributes:
        key: A token ``jti``, :func:`session_key` of a session id, or :func:`user_key`.
        kind: What the key names (:class:`RevocationKind`).
        revoked_at: When it was revoked. For ``"user"`` entries this is the cutoff: every
            session that began at or before it is revoked.
        expires_at: When keeping the entry stops mattering (every token it could match has
            expired); purge removes it after that.
    """

    key: str
    kind: RevocationKind
    revoked_at: datetime
    expires_at: datetime


def session_key(sid: str) -> str:
    """Revocation key of a session (refresh-token family)."""
    return f"sid:{sid}"


def user_key(user_id: str) -> str:
    """Revocation key holding a user's logout-all cutoff."""
    return f"user:{user_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRecord:
    """One login on one device: what a user sees in their session list, and what refresh
    rotates.

    Attributes:
        sid: The session id, carried by every token of the session in ``sid``.
        user_id: The owner's id as text (``sub``).
        created_at: When the code was verified; with the absolute lifetime, when it must end.
        last_used_at: The login or the last refresh; never written by an access.
        rotated_at: When the current ``generation`` was issued (the grace window's anchor).
        generation: The refresh generation: the refresh token of generation ``g`` carries
            ``gen = g``; rotating is a compare-and-set from ``g`` to ``g + 1``.
        user_agent: The client's ``User-Agent`` at login, at most 256 characters.
        ip: The client address at login.
        expires_at: When the session ends unless refreshed before: the earlier of the absolute
            end and ``last_used_at`` plus the idle timeout.
        ended_at: When it was ended (logout, revoked, reuse), or ``None`` while active.
    """

    sid: str
    user_id: str
    created_at: datetime
    last_used_at: datetime
    rotated_at: datetime
    generation: int
    user_agent: str | None
    ip: str | None
    expires_at: datetime
    ended_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingChallenge:
    """One requester's code: the binding a request-otp hands out, and its state.

    Every code request without a (matching) binding creates a new one, so a stranger's
    request never replaces another requester's code or starts its cooldown.

    Attributes:
        id: The store key: a keyed hash of the opaque ``challenge_id`` the requester holds
            (never the ``challenge_id`` itself). At most 64 characters.
        subject: A keyed hash of the normalized address the code was sent to (known and
            unknown addresses alike; never the address). At most 64 characters. Indexed
            together with ``state.last_request_at`` for :meth:`ChallengeStore.newest_challenge`.
        state: The code, its bound (``attempts``) and unbound (``unbound_attempts``) budgets,
            the binding's cooldown and its own failures; ``state.version`` is the
            compare-and-set guard. ``state.last_request_at`` is set on every record.
        expires_at: When the record stops mattering (code expired, cooldown and lock over);
            ``purge_expired`` removes it after that.
        order: When its code was issued, as an integer that only grows: it breaks ties of
            ``state.last_request_at`` in :meth:`ChallengeStore.newest_challenge`, so of two
            codes requested in the same instant the later one is the newest. The service
            sets it on every issue (strictly increasing within a process, wall-clock
            nanoseconds across processes).
    """

    id: str
    subject: str
    state: ChallengeState
    expires_at: datetime
    order: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitWindow:
    """Where one instant falls for a sliding-window limit; computed by the pure core.

    The window approximates a sliding window of ``length`` by two fixed windows: the
    current one (``start``) counts in full, the previous one (``previous_start``) by the
    ``weight`` still inside the sliding window (Cloudflare's and ``limits``' sliding
    window counter).

    Attributes:
        length: The window length.
        start: Start of the fixed window containing now (epoch-aligned multiple of
            ``length``).
        previous_start: ``start - length``.
        weight: Share of the previous fixed window still inside the sliding window:
            ``1 - (now - start) / length``, in ``(0, 1]``.
        expires_at: ``start + 2 * length``: after that the counter can no longer matter.
    """

    length: timedelta
    start: datetime
    previous_start: datetime
    weight: float
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitHit:
    """What one :meth:`LimitStore.hit` saw and did.

    Attributes:
        allowed: Whether the hit was within the limit and counted.
        count: The current fixed window's count after the call (this hit included when
            ``allowed``).
        previous_count: The previous fixed window's count.
    """

    allowed: bool
    count: int
    previous_count: int
