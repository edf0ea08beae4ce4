"""What the service needs from storage and delivery, as ``typing.Protocol``s over typed records.

Every write here is one atomic operation. Where two callers race, the docstring says what the
loser sees; the service relies on exactly that and nothing more. Stores wrap driver failures
in :class:`otpcore.domain.errors.StorageError`, keeping the driver's exception as ``__cause__``, and
never leave a half-applied write behind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol, TypeVar

from otpcore.domain.records import (
    Account,
    ChallengeState,
    LimitHit,
    LimitWindow,
    PendingChallenge,
    Revocation,
    SessionRecord,
)

__all__ = [
    "AccountStore",
    "ChallengeStore",
    "CodeSender",
    "LimitStore",
    "RevocationStore",
    "SessionStore",
    "Store",
    "UnitOfWork",
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

    async def create(
        self, email: str, fields: Mapping[str, object], *, verified: bool = False
    ) -> Account[U]:
        """Insert a user with this e-mail and the application's extra ``fields``, marked
        verified when ``verified`` (a login that proved the address creates it), in one write.

        Atomic under the unique e-mail: when a concurrent call inserted the same e-mail
        first, the loser returns that existing account, as stored, instead of failing.
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

    async def revoke_many(self, revocations: Sequence[Revocation]) -> list[bool]:
        """Insert each under its unique ``key``, as :meth:`revoke` does, in one write (SQL:
        one multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING key``; Mongo: one unordered
        ``insert_many``). For each entry, in order, ``True`` if this call inserted it; a key
        given twice is inserted once (the first entry wins). Each insert stands on its own:
        a key already present changes nothing and keeps none of the others out.
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

        Stores that keep sessions also delete sessions whose ``expires_at <= now``, ended
        ones included (ending sets ``expires_at``; one more statement on the ``expires_at``
        index); those are not counted.
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
        """Set ``ended_at = now`` and ``expires_at = min(expires_at, now)`` (that is, now:
        only active sessions end) on the user's active sessions, in one write: just ``only``
        when given, all but ``keep`` when given, else all. Returns the ids this call ended
        (a session of another user, or one already ended, is never among them).

        Moving the expiry lets ``purge_expired`` find ended sessions by ``expires_at``
        alone, on its index; ``find_session`` still tells an ended session by ``ended_at``.
        """
        ...


class ChallengeStore(Protocol):
    """Pending codes, one record per requester binding (:class:`PendingChallenge`).

    Records are keyed by ``id`` (a keyed hash of the requester's ``challenge_id``) and found
    for unbound guesses by ``subject`` (a keyed hash of the address), so the same calls are
    made for known and unknown addresses. A magic link names its record's ``id``, so
    redeeming one is ``find_challenge`` and ``update_challenge`` too. Every field of
    ``state`` round-trips, ``state.link_hash`` (the link's keyed hash, or null) included.
    ``purge_expired`` deletes records whose ``expires_at <= now`` (one more statement, not
    counted in its result).
    """

    async def create_challenge(self, challenge: PendingChallenge) -> None:
        """Insert ``challenge`` under its unique ``id``, in one write (ids are random: a
        clash is a bug, and the store may raise)."""
        ...

    async def find_challenge(self, challenge_id: str) -> PendingChallenge | None:
        """The record with this ``id`` (expired or not, until purged), or ``None``; one
        indexed read."""
        ...

    async def newest_challenge(self, subject: str) -> PendingChallenge | None:
        """The ``subject``'s newest code: among its records that hold one
        (``state.code_hash`` is not null: pending, spent or expired but not yet purged; a
        consumed code holds none), the one with the latest ``state.last_request_at``, ties
        broken by the greatest ``order`` (the later issue), then the greatest ``id``; or
        ``None``. One indexed read (index on ``subject`` and ``last_request_at``)."""
        ...

    async def update_challenge(
        self,
        challenge_id: str,
        *,
        expected_version: int,
        state: ChallengeState,
        expires_at: datetime,
        order: int | None = None,
    ) -> bool:
        """Store ``state`` and ``expires_at`` (and ``order`` when given: a code was issued
        on this record) on the record iff its stored ``state.version`` still equals
        ``expected_version``. One conditional write (SQL ``UPDATE … WHERE id = :id AND
        version = :seen`` checked by ``rowcount``; Mongo ``update_one``/
        ``find_one_and_update`` with the version in the filter). ``False`` means another
        writer won (or the record is gone) and nothing was changed: the caller reloads and
        decides again.
        """
        ...


class LimitStore(Protocol):
    """Sliding-window counters for send and guess limits, one atomic statement per hit.

    A counter is ``(key, window_start, count, previous_count, expires_at)``; the pure core
    computes the :class:`LimitWindow` (fixed-window starts and the previous window's
    weight) from its clock and passes it in, so stores only compare and add. Keys are at
    most 64 characters and are already keyed hashes (never an address). ``purge_expired``
    deletes counters whose ``expires_at <= now`` (one more statement, not counted).
    """

    async def hit(self, key: str, *, limit: int, window: LimitWindow) -> LimitHit:
        """Count one hit on ``key`` iff it keeps the sliding count within ``limit``.

        One atomic statement has this effect (SQL ``INSERT … ON CONFLICT (key) DO UPDATE
        SET … WHERE <allowed> RETURNING …``; Mongo ``find_one_and_update`` with an
        update pipeline; memory without an ``await`` in between):

        1. Roll the stored counter to ``window.start``: stored ``window_start`` at or after
           ``window.start`` (never moved back, e.g. by a host whose clock lags) keeps both
           counts; stored ``window_start == window.previous_start`` makes
           ``previous_count = count, count = 0``; anything older, or no counter, makes both 0.
        2. ``allowed = previous_count * window.weight + count + 1 <= limit`` on the rolled
           counts. (A missing counter is always allowed, since ``limit >= 1``: the
           ``INSERT`` branch needs no condition.)
        3. If allowed, store the rolled counter with ``count + 1``, ``window_start =
           max(stored, window.start)`` and ``expires_at = window.expires_at``. If refused,
           change nothing (the stored row may stay un-rolled).

        Returns the rolled counts after the call (``count`` includes this hit when
        allowed). On a refusal the statement returns no row; the store may read the
        counter with a second, read-only statement to report the counts (they only size
        ``retry_after``; reporting the rolled counts it decided on is enough).

        Concurrent hits on one key serialize on that key (row lock, document-level
        atomicity): of any number of concurrent hits, across processes and hosts, with
        room for ``k`` more, exactly ``k`` are allowed; a loser sees ``allowed=False``
        and nothing counted. The limit is never exceeded.
        """
        ...


class UnitOfWork(Protocol):
    """Groups the store calls of one step, so that a database store can make them one
    transaction (one commit, on SQLite one write lock) instead of one each."""

    def transaction(self, *, atomic: bool = True) -> AbstractAsyncContextManager[None]:
        """The calls made inside the block (by one task, on this store) as one unit.

        ``atomic=True``: all or nothing. The calls' writes become visible together when the
        block ends, and none of them if it raises. A store that cannot promise this says
        so in its docstring, and then keeps each call atomic on its own (the service
        orders the calls so that what a crash between them leaves is safe).

        ``atomic=False``: a grouping the store may use or ignore, whichever costs less; each
        call stays atomic on its own. When the block raises, calls that completed may or
        may not be kept, so the service raises a refusal only after the block ends.

        Blocks do not nest: a call inside one must not open another.
        """
        ...


class Store(
    AccountStore[U],
    RevocationStore,
    SessionStore,
    ChallengeStore,
    LimitStore,
    UnitOfWork,
    Protocol[U],
):
    """Everything the service needs from one storage backend."""


class CodeSender(Protocol):
    """Delivers a code to its owner (e-mail, SMS, console in development)."""

    async def __call__(self, email: str, code: str) -> None:
        """Send ``code`` to ``email``. Raising means it was not delivered."""
        ...
