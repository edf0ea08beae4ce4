"""In-memory reference implementation of every storage port.

Correct under asyncio concurrency within one process: every method completes its check and
its write without an ``await`` in between, so each is atomic with respect to other tasks.
It is what the pure-core and service tests run on, and the behaviour the database stores are
held to by the contract suite. State lives only as long as the process.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from otpcore.domain.records import (
    Account,
    ChallengeState,
    Revocation,
    RevocationKind,
    SessionRecord,
    user_key,
)
from otpcore.stores._base import StoreBase
from otpcore.stores._memory_channel import MemoryChannel
from otpcore.stores._reference import ReferenceAPI

__all__ = ["MemoryStore", "MemoryUser"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True, kw_only=True)
class MemoryUser:
    """The user object the memory store hands to the application: a snapshot of the user
    as it was read, with the reference's code fields (``otp_code``, …) as properties."""

    id: str
    email: str
    is_verified: bool = False
    fields: dict[str, object] = field(default_factory=dict)
    challenge: ChallengeState = field(default_factory=ChallengeState, repr=False)

    @property
    def otp_code(self) -> str | None:
        """HMAC of the pending code, or ``None``."""
        return self.challenge.code_hash

    @property
    def otp_created_at(self) -> datetime | None:
        """When the pending code was issued."""
        return self.challenge.issued_at

    @property
    def otp_attempts(self) -> int:
        """Guesses counted against the pending code."""
        return self.challenge.attempts

    @property
    def otp_failures(self) -> int:
        """Consecutive wrong guesses across codes."""
        return self.challenge.failures

    @property
    def last_otp_request_at(self) -> datetime | None:
        """When the last code was issued."""
        return self.challenge.last_request_at

    @property
    def otp_last_failure_at(self) -> datetime | None:
        """When the last wrong guess was counted."""
        return self.challenge.last_failure_at

    @property
    def otp_version(self) -> int:
        """The compare-and-set guard."""
        return self.challenge.version


class MemoryStore(StoreBase, MemoryChannel, ReferenceAPI):
    """Users, code state, revocations, sessions, pending challenges and limit counters in
    dictionaries.

    One instance is the database: hand the same instance to every service that should share
    state. Each read hands out a fresh :class:`MemoryUser` snapshot, as a database would.

    Args:
        clock: Current time for the reference methods that stamp users and entries.
    """

    def __init__(self, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self._clock = clock
        self._ids = itertools.count(1)
        self._users: dict[str, MemoryUser] = {}
        self._by_email: dict[str, str] = {}
        self._revocations: dict[str, Revocation] = {}
        self._sessions: dict[str, SessionRecord] = {}
        self._init_channel()

    def _account(self, user_id: str) -> Account[MemoryUser] | None:
        user = self._users.get(user_id)
        if user is None:
            return None
        return Account(
            user_id=user.id,
            email=user.email,
            is_verified=user.is_verified,
            challenge=user.challenge,
            user=replace(user, fields=dict(user.fields)),
        )

    def _reference_id(self, user: MemoryUser) -> str:
        return user.id

    def _show(self, user: MemoryUser, state: ChallengeState, verified: bool) -> None:
        user.challenge = state
        user.is_verified = verified

    @asynccontextmanager
    async def transaction(self, *, atomic: bool = True) -> AsyncIterator[None]:
        """See :meth:`otpcore.ports.UnitOfWork.transaction`. Nothing to group: each call is
        atomic on its own and nothing is undone when the block raises (the memory store
        keeps no log to undo from)."""
        yield

    async def find_by_email(self, email: str) -> Account[MemoryUser] | None:
        """See :meth:`otpcore.ports.AccountStore.find_by_email`."""
        user_id = self._by_email.get(email)
        return None if user_id is None else self._account(user_id)

    async def find_by_id(self, user_id: str) -> Account[MemoryUser] | None:
        """See :meth:`otpcore.ports.AccountStore.find_by_id`."""
        return self._account(user_id)

    async def create(
        self, email: str, fields: Mapping[str, object], *, verified: bool = False
    ) -> Account[MemoryUser]:
        """See :meth:`otpcore.ports.AccountStore.create`."""
        existing = self._by_email.get(email)
        if existing is None:
            existing = str(next(self._ids))
            self._users[existing] = MemoryUser(
                id=existing, email=email, is_verified=verified, fields=dict(fields)
            )
            self._by_email[email] = existing
        account = self._account(existing)
        assert account is not None
        return account

    async def save_challenge(
        self,
        user_id: str,
        *,
        expected_version: int,
        state: ChallengeState,
        mark_verified: bool = False,
    ) -> bool:
        """See :meth:`otpcore.ports.AccountStore.save_challenge`."""
        user = self._users.get(user_id)
        if user is None or user.challenge.version != expected_version:
            return False
        user.challenge = state
        if mark_verified:
            user.is_verified = True
        return True

    async def load_principal(
        self, user_id: str, keys: Sequence[str]
    ) -> tuple[Account[MemoryUser] | None, list[Revocation]]:
        """See :meth:`otpcore.ports.AccountStore.load_principal`."""
        return self._account(user_id), await self.find_revocations(keys)

    async def revoke(self, revocation: Revocation) -> bool:
        """See :meth:`otpcore.ports.RevocationStore.revoke`."""
        if revocation.key in self._revocations:
            return False
        self._revocations[revocation.key] = revocation
        return True

    async def revoke_many(self, revocations: Sequence[Revocation]) -> list[bool]:
        """See :meth:`otpcore.ports.RevocationStore.revoke_many`."""
        return [await self.revoke(revocation) for revocation in revocations]

    async def revoke_user(self, user_id: str, *, at: datetime, expires_at: datetime) -> None:
        """See :meth:`otpcore.ports.RevocationStore.revoke_user`."""
        key = user_key(user_id)
        current = self._revocations.get(key)
        if current is not None:
            at = max(at, current.revoked_at)
            expires_at = max(expires_at, current.expires_at)
        self._revocations[key] = Revocation(
            key=key, kind=RevocationKind.USER, revoked_at=at, expires_at=expires_at
        )

    async def find_revocations(self, keys: Sequence[str]) -> list[Revocation]:
        """See :meth:`otpcore.ports.RevocationStore.find_revocations`."""
        found = (self._revocations.get(key) for key in keys)
        return [entry for entry in found if entry is not None]

    async def revocations_since(self, cursor: datetime, *, now: datetime) -> list[Revocation]:
        """See :meth:`otpcore.ports.RevocationStore.revocations_since`."""
        return [
            entry
            for entry in self._revocations.values()
            if entry.revoked_at >= cursor and entry.expires_at > now
        ]

    async def purge_expired(self, now: datetime) -> int:
        """See :meth:`otpcore.ports.RevocationStore.purge_expired`."""
        expired = [key for key, entry in self._revocations.items() if entry.expires_at <= now]
        for key in expired:
            del self._revocations[key]
        # Ending a session sets its expires_at to the end, so expiry alone finds ended ones.
        self._sessions = {
            sid: session for sid, session in self._sessions.items() if session.expires_at > now
        }
        self._purge_channel(now)
        return len(expired)

    async def open_session(self, session: SessionRecord) -> None:
        """See :meth:`otpcore.ports.SessionStore.open_session`."""
        if session.sid in self._sessions:
            raise ValueError("a session with this id already exists")
        self._sessions[session.sid] = session

    async def find_session(self, sid: str) -> SessionRecord | None:
        """See :meth:`otpcore.ports.SessionStore.find_session`."""
        return self._sessions.get(sid)

    async def rotate_session(
        self, sid: str, *, expected_generation: int, now: datetime, expires_at: datetime
    ) -> bool:
        """See :meth:`otpcore.ports.SessionStore.rotate_session`."""
        session = self._sessions.get(sid)
        if (
            session is None
            or session.generation != expected_generation
            or session.ended_at is not None
            or session.expires_at <= now
        ):
            return False
        self._sessions[sid] = replace(
            session,
            generation=expected_generation + 1,
            rotated_at=now,
            last_used_at=now,
            expires_at=expires_at,
        )
        return True

    async def list_sessions(self, user_id: str, *, now: datetime) -> list[SessionRecord]:
        """See :meth:`otpcore.ports.SessionStore.list_sessions`."""
        return self._active_sessions(user_id, now)

    def _active_sessions(self, user_id: str, now: datetime) -> list[SessionRecord]:
        active = [
            session
            for session in self._sessions.values()
            if session.user_id == user_id and session.ended_at is None and session.expires_at > now
        ]
        return sorted(active, key=lambda session: session.created_at, reverse=True)

    async def end_sessions(
        self,
        user_id: str,
        *,
        now: datetime,
        only: str | None = None,
        keep: str | None = None,
    ) -> list[str]:
        """See :meth:`otpcore.ports.SessionStore.end_sessions`."""
        ended: list[str] = []
        for session in self._active_sessions(user_id, now):
            if (only is not None and session.sid != only) or session.sid == keep:
                continue
            # Active, so its expires_at is after now: min(expires_at, now) is now.
            self._sessions[session.sid] = replace(session, ended_at=now, expires_at=now)
            ended.append(session.sid)
        return ended
