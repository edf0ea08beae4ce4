"""Session decisions: how a session opens and how long it lives, which revocations refuse a
token, what a refresh that lost its rotation race gets, and the per-worker mirror.

A session is one login on one device, named by the ``sid`` claim every token of it carries
and kept as a :class:`~otpcore.domain.records.SessionRecord`. Refresh tokens carry the
session's refresh generation (``gen``); rotating is a compare-and-set of the stored
generation from ``g`` to ``g + 1``, so exactly one presentation of a token rotates it.
Whatever a presentation that lost that race gets (the same successor inside the grace
window, a refusal for an ended or expired session, or reuse) is decided in one place,
:func:`refresh_verdict`.

Three kinds of revocation refuse a token: its own ``jti``, its session, and its user's
logout-all cutoff (every session that began at or before the cutoff). They are decided by
:func:`revocation_verdict`, for the store path and the mirror alike. Rotation writes none:
the mirror holds only what can refuse an access token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from otpcore.domain.policy import Policy
from otpcore.domain.records import (
    Claims,
    Revocation,
    RevocationKind,
    SessionRecord,
    session_key,
    user_key,
)

__all__ = [
    "MAX_IP_CHARS",
    "MAX_USER_AGENT_CHARS",
    "Expired",
    "Grace",
    "RefreshVerdict",
    "Reused",
    "RevocationMirror",
    "Revoked",
    "Valid",
    "Verdict",
    "absolute_end",
    "logout_all_cutoff",
    "new_session",
    "refresh_verdict",
    "revocation_keys",
    "revocation_verdict",
    "session_expiry",
    "session_revocation",
    "session_start",
    "successor_jti",
    "token_expiry",
    "token_revocation",
]

#: Longest ``User-Agent`` kept on a session; longer values are truncated.
MAX_USER_AGENT_CHARS: Final = 256
#: Longest client address kept on a session (an IPv6 address with a zone fits).
MAX_IP_CHARS: Final = 64
# Key-derivation label for successor jtis: the secret keys nothing else with this label.
_JTI_KEY_LABEL: Final = b"otpcore refresh-jti v1"
_JTI_CHARS: Final = 22  # 132 bits of the HMAC, as many as a random 16-byte id carries


@dataclass(frozen=True, slots=True, kw_only=True)
class Valid:
    """No revocation applies."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Revoked:
    """The token, its session or its user's sessions were revoked; ``by`` names which."""

    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Reused:
    """A refresh token older than its session's current generation came back after the
    grace window: end the session."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Grace:
    """The token was rotated moments ago: answer with the same successor, write nothing.

    Attributes:
        generation: The successor's generation (the session's current one).
        expires_at: The session's end as stored by the rotation (bounds the successor).
    """

    generation: int
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Expired:
    """The session reached its idle timeout or its absolute lifetime."""


#: What the revocation entries say about a token.
Verdict = Valid | Revoked
#: What a refresh that did not rotate gets (see :func:`refresh_verdict`).
RefreshVerdict = Grace | Revoked | Expired | Reused

_VALID = Valid()
_TOKEN_REVOKED = Revoked(by="token")


# -- opening and bounding a session ----------------------------------------------------------


def session_start(now: datetime) -> float:
    """The ``auth_time`` of a session that begins at ``now``: unix seconds, floored to the ms.

    Every store keeps a logout-all cutoff to the millisecond, floored (MongoDB's dates hold
    no more). Floored the same way, a session begun before a cutoff never compares after it,
    so a logout-all a fraction of a millisecond after a login still revokes that login.
    """
    return math.floor(now.timestamp() * 1000) / 1000


def absolute_end(auth_time: float, *, policy: Policy) -> datetime:
    """When a session begun at ``auth_time`` ends, however often it is refreshed."""
    return datetime.fromtimestamp(auth_time, tz=UTC) + policy.session_lifetime


def session_expiry(auth_time: float, *, now: datetime, policy: Policy) -> datetime:
    """A session's end if it is used at ``now``: the earlier of its absolute end and ``now``
    plus the idle timeout. Never later than the absolute end, whatever ``now`` is."""
    return min(absolute_end(auth_time, policy=policy), now + policy.session_idle_timeout)


def token_expiry(lifetime: timedelta, *, session_expires_at: datetime, now: datetime) -> datetime:
    """A token issued at ``now`` lives for ``lifetime``, but never past its session's end."""
    return min(now + lifetime, session_expires_at)


def new_session(
    *,
    sid: str,
    user_id: str,
    now: datetime,
    policy: Policy,
    user_agent: str | None = None,
    ip: str | None = None,
) -> SessionRecord:
    """The record a login at ``now`` opens: generation 0, the client truncated to fit."""
    return SessionRecord(
        sid=sid,
        user_id=user_id,
        created_at=now,
        last_used_at=now,
        rotated_at=now,
        generation=0,
        user_agent=None if user_agent is None else user_agent[:MAX_USER_AGENT_CHARS],
        ip=None if ip is None else ip[:MAX_IP_CHARS],
        expires_at=session_expiry(session_start(now), now=now, policy=policy),
    )


def successor_jti(secret: bytes, sid: str, generation: int) -> str:
    """The ``jti`` of session ``sid``'s refresh token of ``generation``.

    Derived, not drawn: every process that answers a refresh inside the grace window names
    the same successor. An HMAC-SHA256 under a key derived from the secret, so nobody
    without the secret can predict or forge one; 22 base64url characters (132 bits).
    """
    key = hmac.new(secret, _JTI_KEY_LABEL, hashlib.sha256).digest()
    message = b"refresh-jti\x00" + sid.encode() + b"\x00" + str(generation).encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:_JTI_CHARS]


# -- a refresh that lost its rotation ---------------------------------------------------------


def refresh_verdict(
    claims: Claims, session: SessionRecord | None, *, now: datetime, policy: Policy
) -> RefreshVerdict:
    """Decide a refresh whose compare-and-set did not rotate: the one reuse rule.

    Args:
        claims: The verified refresh token (``gen`` set).
        session: Its session as read after the failed rotation, or ``None`` if none is
            stored (never opened, or purged after it ended).
        now: The current instant.
        policy: ``refresh_grace`` is the window.

    Returns:
        :class:`Revoked` when the session is gone or ended; :class:`Expired` when it
        reached its idle or absolute end; :class:`Grace` when the session's generation is
        exactly the token's plus one and was issued at most ``refresh_grace`` ago (a
        concurrent tab, or a retry after a lost response); :class:`Reused` otherwise.
    """
    if session is None or session.ended_at is not None or session.user_id != claims.sub:
        return Revoked(by="session")
    if session.expires_at <= now:
        return Expired()
    window = policy.refresh_grace
    if (
        claims.gen is not None
        and session.generation == claims.gen + 1
        and window > timedelta(0)
        and now - session.rotated_at <= window
    ):
        return Grace(generation=session.generation, expires_at=session.expires_at)
    return Reused()


# -- revocations -----------------------------------------------------------------------------


def revocation_keys(claims: Claims) -> tuple[str, str, str]:
    """Every revocation key that could apply to ``claims``: token, session, user."""
    return (claims.jti, session_key(claims.sid), user_key(claims.sub))


def _verdict_for(claims: Claims, entry: Revocation) -> Revoked | None:
    if entry.kind is RevocationKind.USER:
        if entry.key == user_key(claims.sub) and claims.auth_time <= entry.revoked_at.timestamp():
            return Revoked(by="user")
        return None
    if entry.key == session_key(claims.sid):
        return Revoked(by="session")
    if entry.key == claims.jti:
        return _TOKEN_REVOKED
    return None


def revocation_verdict(claims: Claims, revocations: Iterable[Revocation]) -> Verdict:
    """Decide from the revocations found for :func:`revocation_keys`.

    A revoked session or user outranks a revoked token: ``by`` names the widest revocation.

    Args:
        claims: The verified token.
        revocations: The entries a store (or the mirror) found under its revocation keys.
    """
    token_revoked = False
    for entry in revocations:
        revoked = _verdict_for(claims, entry)
        if revoked is None:
            continue
        if revoked.by != "token":
            return revoked
        token_revoked = True
    return _TOKEN_REVOKED if token_revoked else _VALID


def token_revocation(claims: Claims, *, now: datetime, policy: Policy) -> Revocation:
    """The entry that revokes the one token ``claims`` names, by its ``jti``.

    Kept until the token expires (plus leeway); its kind is the token's own
    (:attr:`RevocationKind.ACCESS` or :attr:`RevocationKind.REFRESH`).
    """
    expires = datetime.fromtimestamp(claims.exp, tz=now.tzinfo) + policy.leeway
    kind = RevocationKind.REFRESH if claims.type == "refresh" else RevocationKind.ACCESS
    return Revocation(key=claims.jti, kind=kind, revoked_at=now, expires_at=expires)


def session_revocation(sid: str, *, now: datetime, policy: Policy) -> Revocation:
    """The entry that revokes session ``sid``'s access tokens, on every worker.

    The session record is ended too, which refuses its refresh tokens for good; the entry
    only has to outlive the access tokens issued before it: an access lifetime, plus the
    leeway on each side for the clocks of the host that issued and the host that checks.
    """
    return Revocation(
        key=session_key(sid),
        kind=RevocationKind.SESSION,
        revoked_at=now,
        expires_at=now + policy.access_lifetime + 2 * policy.leeway,
    )


def logout_all_cutoff(*, now: datetime, policy: Policy) -> tuple[datetime, datetime]:
    """``(cutoff, keep_until)`` for revoking every session of a user that began by ``now``.

    Kept for a refresh lifetime: a login racing the logout-all may open its session record
    after the records were ended, and the cutoff still refuses its tokens.
    """
    return now, now + policy.refresh_lifetime + policy.leeway


# -- the mirror ------------------------------------------------------------------------------


class RevocationMirror:
    """A process-local copy of the unexpired revocations that can refuse an access token,
    for checks that make no query.

    Pure data: the service feeds it what ``revocations_since`` returned and decides when to
    refresh (``is_stale``). Entries for refresh tokens are dropped on arrival: no access
    token can match them. The cursor steps back by ``overlap`` plus ``leeway`` on every
    refresh, so that a revocation committed late, or stamped by a host whose clock lags by
    up to the leeway, is still picked up.
    """

    __slots__ = (
        "_entries",
        "_next_prune",
        "cursor",
        "interval",
        "leeway",
        "overlap",
        "refreshed_at",
    )

    def __init__(
        self,
        *,
        interval: timedelta = timedelta(seconds=1),
        overlap: timedelta = timedelta(seconds=10),
        leeway: timedelta = timedelta(0),
    ) -> None:
        if interval <= timedelta(0):
            raise ValueError("the mirror refresh interval must be positive")
        if overlap < timedelta(0) or leeway < timedelta(0):
            raise ValueError("the mirror overlap and leeway must not be negative")
        self.interval = interval
        self.overlap = overlap
        self.leeway = leeway
        self.cursor: datetime | None = None
        self.refreshed_at: datetime | None = None
        self._entries: dict[str, Revocation] = {}
        self._next_prune: datetime | None = None

    def is_stale(self, now: datetime) -> bool:
        """Whether a check at ``now`` must refresh first to honour ``interval``."""
        return self.refreshed_at is None or now - self.refreshed_at >= self.interval

    def since(self) -> datetime | None:
        """The cursor to query from, or ``None`` for a full load."""
        return None if self.cursor is None else self.cursor - self.overlap - self.leeway

    def apply(self, entries: Iterable[Revocation], *, started_at: datetime) -> None:
        """Merge a refresh that began at ``started_at``; prune expired entries now and then."""
        refresh = RevocationKind.REFRESH
        for entry in entries:
            if entry.kind is not refresh:
                self._entries[entry.key] = entry
        self.cursor = started_at
        self.refreshed_at = started_at
        if self._next_prune is None or started_at >= self._next_prune:
            self._entries = {k: e for k, e in self._entries.items() if e.expires_at > started_at}
            self._next_prune = started_at + timedelta(minutes=1)

    def verdict(self, claims: Claims) -> Verdict:
        """:func:`revocation_verdict` against the mirrored entries: the same rule, no query."""
        # Called on every claims-only request: three lookups, and nothing built unless one
        # of them finds an entry (the usual answer is none, and revocation_verdict of no
        # entries is Valid).
        get = self._entries.get
        token = get(claims.jti)
        session = get(session_key(claims.sid))
        user = get(user_key(claims.sub))
        if token is None and session is None and user is None:
            return _VALID
        found = [entry for entry in (token, session, user) if entry is not None]
        return revocation_verdict(claims, found)

    def __len__(self) -> int:
        return len(self._entries)
