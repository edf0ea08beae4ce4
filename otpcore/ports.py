"""What the service needs from storage and delivery, as ``typing.Protocol``s over typed records.

Every write here is one atomic operation. Where two callers race, the docstring says what the
loser sees; the service relies on exactly that and nothing more. Stores wrap driver failures
in :class:`otpcore.errors.StorageError`, keeping the driver's exception as ``__cause__``, and
never leave a half-applied write behind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from otpcore.challenge import ChallengeState

__all__ = [
    "Account",
    "AccountStore",
    "CodeSender",
    "Revocation",
    "RevocationStore",
    "Store",
    "session_key",
    "user_key",
]

U = TypeVar("U")


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
        kind: ``"access"``, ``"refresh"``, ``"session"`` or ``"user"``.
        revoked_at: When it was revoked. For ``"user"`` entries this is the cutoff: every
            session that began at or before it is revoked.
        expires_at: When keeping the entry stops mattering (every token it could match has
            expired); purge removes it after that.
    """

    key: str
    kind: str
    revoked_at: datetime
    expires_at: datetime


def session_key(sid: str) -> str:
    """Revocation key of a session (refresh-token family)."""
    return f"sid:{sid}"


def user_key(user_id: str) -> str:
    """Revocation key holding a user's logout-all cutoff."""
    return f"user:{user_id}"


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
        """Delete every entry with ``expires_at <= now`` in one operation; the count removed."""
        ...


class Store(AccountStore[U], RevocationStore, Protocol[U]):
    """Everything the service needs from one storage backend."""


class CodeSender(Protocol):
    """Delivers a code to its owner (e-mail, SMS, console in development)."""

    async def __call__(self, email: str, code: str) -> None:
        """Send ``code`` to ``email``. Raising means it was not delivered."""
        ...
