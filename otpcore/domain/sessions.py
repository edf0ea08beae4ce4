"""Session decisions: when a session starts, which revocations apply to a token, whether a
refresh is a reuse, and the per-worker mirror of revocations.

A session is one refresh-token family, named by the ``sid`` claim every token of it carries.
Three kinds of revocation apply to a token: its own ``jti``, its session, and its user's
logout-all cutoff (every session that began at or before the cutoff). For a refresh token a
revoked ``jti`` means it was already rotated: presenting it again is *reuse*. Reuse is
decided in one place, :func:`revocation_verdict`, for the store path (including a lost race
to rotate) and for the mirror alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from otpcore.domain.policy import Policy
from otpcore.domain.records import Claims, Revocation, RevocationKind, session_key, user_key

__all__ = [
    "Reused",
    "RevocationMirror",
    "Revoked",
    "Valid",
    "Verdict",
    "logout_all_cutoff",
    "revocation_keys",
    "revocation_verdict",
    "rotation_marker",
    "session_revocation",
    "session_start",
    "token_revocation",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Valid:
    """No revocation applies."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Revoked:
    """The token, its session or its user's sessions were revoked; ``by`` names which."""

    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Reused:
    """A refresh token that was already rotated came back: revoke its session."""


Verdict = Valid | Revoked | Reused

_VALID = Valid()


def revocation_keys(claims: Claims) -> tuple[str, str, str]:
    """Every revocation key that could apply to ``claims``: token, session, user."""
    return (claims.jti, session_key(claims.sid), user_key(claims.sub))


def session_start(now: datetime) -> float:
    """The ``auth_time`` of a session that begins at ``now``: unix seconds, floored to the ms.

    Every store keeps a logout-all cutoff to the millisecond, floored (MongoDB's dates hold
    no more). Floored the same way, a session begun before a cutoff never compares after it,
    so a logout-all a fraction of a millisecond after a login still revokes that login.
    """
    return math.floor(now.timestamp() * 1000) / 1000


def _verdict_for(claims: Claims, entry: Revocation) -> Verdict | None:
    if entry.kind is RevocationKind.USER:
        if entry.key == user_key(claims.sub) and claims.auth_time <= entry.revoked_at.timestamp():
            return Revoked(by="user")
        return None
    if entry.key == session_key(claims.sid):
        return Revoked(by="session")
    if entry.key == claims.jti:
        return Reused() if claims.type == "refresh" else Revoked(by="token")
    return None


def revocation_verdict(
    claims: Claims, revocations: Iterable[Revocation], *, rotation_won: bool = True
) -> Verdict:
    """Decide from the revocations found for :func:`revocation_keys`: the one reuse rule.

    A refresh token is reused when its ``jti`` is already revoked (it was rotated), or when
    this presentation lost the race to insert its :func:`rotation_marker`
    (``rotation_won=False``: a concurrent presentation rotated it first). A revoked session
    or user outranks reuse: once the family is dead, a replayed refresh token is simply
    revoked, and there is nothing further to revoke.

    Args:
        claims: The verified token.
        revocations: The entries a store (or the mirror) found under its revocation keys.
        rotation_won: For a refresh being rotated, whether this call inserted the rotation
            marker; leave ``True`` where no rotation was attempted.
    """
    reused = not rotation_won
    for entry in revocations:
        match _verdict_for(claims, entry):
            case Revoked() as revoked:
                return revoked
            case Reused():
                reused = True
            case _:
                pass
    return Reused() if reused else _VALID


def token_revocation(claims: Claims, *, now: datetime, policy: Policy) -> Revocation:
    """The entry that revokes the one token ``claims`` names, by its ``jti``.

    Kept until the token expires (plus leeway); its kind is the token's own
    (:attr:`RevocationKind.ACCESS` or :attr:`RevocationKind.REFRESH`).
    """
    expires = datetime.fromtimestamp(claims.exp, tz=now.tzinfo) + policy.leeway
    kind = RevocationKind.REFRESH if claims.type == "refresh" else RevocationKind.ACCESS
    return Revocation(key=claims.jti, kind=kind, revoked_at=now, expires_at=expires)


def rotation_marker(claims: Claims, *, now: datetime, policy: Policy) -> Revocation:
    """The entry that marks a refresh token as rotated; kept until the token expires."""
    if claims.type != "refresh":
        raise ValueError("only a refresh token is rotated")
    return token_revocation(claims, now=now, policy=policy)


def session_revocation(claims: Claims, *, now: datetime, policy: Policy) -> Revocation:
    """The entry that revokes ``claims``' whole session.

    Kept for a refresh lifetime: no token of the session is issued after it, so none can
    outlive it.
    """
    return Revocation(
        key=session_key(claims.sid),
        kind=RevocationKind.SESSION,
        revoked_at=now,
        expires_at=now + policy.refresh_lifetime + policy.leeway,
    )


def logout_all_cutoff(*, now: datetime, policy: Policy) -> tuple[datetime, datetime]:
    """``(cutoff, keep_until)`` for revoking every session of a user that began by ``now``."""
    return now, now + policy.refresh_lifetime + policy.leeway


class RevocationMirror:
    """A process-local copy of the unexpired revocations, for checks that make no query.

    Pure data: the service feeds it what ``revocations_since`` returned and decides when to
    refresh (``is_stale``). The cursor steps back by ``overlap`` on every refresh so that a
    revocation committed late, or stamped by a worker whose clock lags, is still picked up.
    """

    __slots__ = ("_entries", "_next_prune", "cursor", "interval", "overlap", "refreshed_at")

    def __init__(
        self,
        *,
        interval: timedelta = timedelta(seconds=1),
        overlap: timedelta = timedelta(seconds=10),
    ) -> None:
        if interval <= timedelta(0):
            raise ValueError("the mirror refresh interval must be positive")
        self.interval = interval
        self.overlap = overlap
        self.cursor: datetime | None = None
        self.refreshed_at: datetime | None = None
        self._entries: dict[str, Revocation] = {}
        self._next_prune: datetime | None = None

    def is_stale(self, now: datetime) -> bool:
        """Whether a check at ``now`` must refresh first to honour ``interval``."""
        return self.refreshed_at is None or now - self.refreshed_at >= self.interval

    def since(self) -> datetime | None:
        """The cursor to query from, or ``None`` for a full load."""
        return None if self.cursor is None else self.cursor - self.overlap

    def apply(self, entries: Iterable[Revocation], *, started_at: datetime) -> None:
        """Merge a refresh that began at ``started_at``; prune expired entries now and then."""
        for entry in entries:
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
