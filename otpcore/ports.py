"""What the service needs from storage and delivery, as ``typing.Protocol``s over typed records.

Every write here is one atomic operation. Where two callers race, the docstring says what the
loser sees; the service relies on exactly that and nothing more. Stores wrap driver failures
in :class:`otpcore.domain.errors.StorageError`, keeping the driver's exception as ``__cause__``, and
never leave a half-applied write behind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from otpcore.domain.records import Account, ChallengeState, Revocation, SessionRecord

__all__ = [
    "AccountStore",
    "CodeSender",
    "RevocationStore",
    "SessionStore",
    "Store",
]

U = TypeVar("U")


class AccountStore(Protocol[U]):
    """Users and their code state."""

    async def find_by_email(self, email: str) -> Account[U] | None:
        """The account with this normalized e-mail, or ``None``."""
        ...

    async def find_by_id(self, user_id: str) -> Account[U] | None:
        """The account with this id, or ``None`` (also for ids of the wrong shape)."""
        ...

    async def create(self, email: str, fields: Mapping[str, object]) -> Account[U]:
        """Insert a user with this e-mail and the application's extra ``fields``.

        Atomic under the unique e-mail: when a concurrent call inserted the same e-mail
        first, the loser returns that existing account instead of failing.
        """
        ...

    async def save_challenge(
        self,
        user_id: str,
        *,
        expected_version: int,
        state: ChallengeState,
        mark_verified: bool = False,
    ) -> bool:
        """Store ``state`` (and ``is_verified = True`` if asked) iff the stored version still
        equals ``expected_version``. One conditional write; ``False`` means another writer
        won and nothing was changed.
        """
        ...

    async def load_principal(
        self, user_id: str, keys: Sequence[str]
    ) -> tuple[Account[U] | None, list[Revocation]]:
        """The account and the revocations among ``keys``, in one round-trip."""
        ...


class RevocationStore(Protocol):
    """Revoked token ids, session ids and logout-all cutoffs."""

    async def revoke(self, revocation: Revocation) -> bool:
        """Insert under the unique ``key``. ``True`` if this call inserted it; ``False`` if it
        was already present (a concurrent or earlier revocation won), with nothing changed.
        """
        ...

    async def revoke_user(self, user_id: str, *, at: datetime, expires_at: datetime) -> None:
        """Raise the user's logout-all cutoff to ``at`` (never lowers it) in one write."""
        ...

    async def find_revocations(self, keys: Sequence[str]) -> list[Revocation]:
        """The entries among ``keys``, in one indexed query."""
        ...

    async def revocations_since(self, cursor: datetime, *, now: datetime) -> list[Revocation]:
        """Unexpired entries revoked at or after ``cursor``, in one indexed query."""
        ...

    async def purge_expired(self, now: datetime) -> int:
        """Delete every entry with ``expires_at <= now`` in one operation; the count removed.

        Stores that keep sessions also delete ended sessions and sessions whose
        ``expires_at <= now`` (one more statement); those are not counted.
        """
        ...


class SessionStore(Protocol):
    """Session records: one per login, rotated by compare-and-set on the refresh generation."""

    async def open_session(self, session: SessionRecord) -> None:
        """Insert ``session`` under its unique ``sid`` (ids are random: a clash is a bug)."""
        ...

    async def find_session(self, sid: str) -> SessionRecord | None:
        """The session with this id, ended or not, or ``None`` (never opened, or purged)."""
        ...

    async def rotate_session(
        self, sid: str, *, expected_generation: int, now: datetime, expires_at: datetime
    ) -> bool:
        """Advance the generation by one and set ``rotated_at = last_used_at = now`` and
        ``expires_at``, iff the stored generation equals ``expected_generation``, the session
        is not ended and its ``expires_at`` is after ``now``. One conditional write; ``False``
        means nothing changed (another refresh won, or the session is ended or expired).
        """
        ...

    async def list_sessions(self, user_id: str, *, now: datetime) -> list[SessionRecord]:
        """The user's active sessions (not ended, ``expires_at`` after ``now``), newest
        ``created_at`` first, in one indexed query."""
        ...

    async def end_sessions(
        self,
        user_id: str,
        *,
        now: datetime,
        only: str | None = None,
        keep: str | None = None,
    ) -> list[str]:
        """Set ``ended_at = now`` on the user's active sessions, in one write: just ``only``
        when given, all but ``keep`` when given, else all. Returns the ids this call ended
        (a session of another user, or one already ended, is never among them).
        """
        ...


class Store(AccountStore[U], RevocationStore, Protocol[U]):
    """Everything the service needs from one storage backend."""


class CodeSender(Protocol):
    """Delivers a code to its owner (e-mail, SMS, console in development)."""

    async def __call__(self, email: str, code: str) -> None:
        """Send ``code`` to ``email``. Raising means it was not delivered."""
        ...
