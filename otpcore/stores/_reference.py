"""The reference library's adapter API, written once over the storage ports.

``fastapi-otp-authentication`` applications call these methods on the adapter directly
(``get_by_email``, ``update_otp``, ``increment_otp_attempts``, …). Every store inherits them
from :class:`ReferenceAPI`, so they mean the same on all of them, and the shared contract
suite (``otpcore.testing.contract.ReferenceContract``) holds each store to it.

Semantics, where the reference left them open:

- **E-mails** are looked up and created by their normalized form
  (:func:`otpcore.domain.emails.normalize_email`), the key the core uses; text that is no
  valid address is used as given.
- **Every write is a compare-and-set** through ``save_challenge``: it computes the new code
  state from the stored one and writes it guarded on the version it started from. A lost race
  re-reads and retries, at most :data:`RETRIES` times. Each round has a winner, so with
  fewer concurrent writers on one user than that, no write fails for contention.
- **A wrong guess is always counted**: ``increment_otp_attempts`` counts an attempt and a
  consecutive failure (as the core's guess does), whatever changed since the caller read its
  user, so twenty concurrent wrong guesses leave twenty attempts.
- **The caller's code must still be pending**: ``update_otp``, ``verify_user`` and
  ``clear_otp`` act on a decision the caller took from the user object it read (the cooldown
  passed, the code was right). If the pending code hash has changed since (another request
  issued, consumed or cleared it), they raise :class:`~otpcore.domain.errors.ContentionError`
  and change nothing, so one code is never consumed twice. Changes that do not touch the
  pending code (a concurrent wrong guess) are retried over.
- **Time** comes from the adapter's injected clock, never the wall clock.
- After a write, and after a :class:`~otpcore.domain.errors.ContentionError`, the caller's
  user object shows the stored state.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Final, Protocol, TypeVar

from otpcore.domain.emails import InvalidEmail, normalize_email
from otpcore.domain.errors import ContentionError
from otpcore.domain.records import ChallengeState, Revocation, RevocationKind
from otpcore.ports import Store
from otpcore.stores._record import OTPRecord, challenge_of

__all__ = ["RETRIES", "ReferenceAPI", "email_key"]

U = TypeVar("U")
#: Rounds a reference write may lose to concurrent writers before it gives up.
RETRIES: Final = 32
_CODE_HASH = re.compile(r"[0-9a-f]{64}")
_Step = Callable[[ChallengeState, datetime], ChallengeState]


def email_key(email: str) -> str:
    """The form an account is stored and found by: normalized, or as given if invalid."""
    try:
        return normalize_email(email)
    except InvalidEmail:
        return email


class _Host(Store[U], Protocol[U]):
    """What :class:`ReferenceAPI` needs from the store it is mixed into."""

    _clock: Callable[[], datetime]

    def _reference_id(self, user: U) -> str:
        """The port-level id of ``user``; ``ValueError`` when it has none."""
        ...

    def _show(self, user: U, state: ChallengeState, verified: bool) -> None:
        """Make ``user`` show the stored ``state`` and verification flag."""
        ...


def _issued(code_hash: str) -> _Step:
    def step(state: ChallengeState, now: datetime) -> ChallengeState:
        return replace(state, code_hash=code_hash, issued_at=now, attempts=0, last_request_at=now)

    return step


def _counted(state: ChallengeState, now: datetime) -> ChallengeState:
    return replace(
        state, attempts=state.attempts + 1, failures=state.failures + 1, last_failure_at=now
    )


def _verified(state: ChallengeState, now: datetime) -> ChallengeState:
    return replace(
        state, code_hash=None, issued_at=None, attempts=0, failures=0, last_failure_at=None
    )


def _cleared(state: ChallengeState, now: datetime) -> ChallengeState:
    return replace(state, code_hash=None, issued_at=None, attempts=0)


async def _write(
    host: _Host[U],
    user: U,
    step: _Step,
    *,
    keep_code: bool,
    mark_verified: bool = False,
) -> None:
    """Apply ``step`` to the stored code state by compare-and-set, retrying lost races.

    The first round starts from the state ``user`` shows (one statement when it is
    current); later rounds from a fresh read. With ``keep_code``, a round that finds another
    pending code than the one ``user`` showed raises :class:`ContentionError`.
    """
    user_id = host._reference_id(user)
    seen = challenge_of(_record(user))
    state, verified = seen, bool(getattr(user, "is_verified", False))
    for _ in range(RETRIES):
        if keep_code and state.code_hash != seen.code_hash:
            host._show(user, state, verified)  # what the caller must decide anew from
            raise ContentionError()
        new = replace(step(state, host._clock()), version=state.version + 1)
        if await host.save_challenge(
            user_id, expected_version=state.version, state=new, mark_verified=mark_verified
        ):
            host._show(user, new, verified or mark_verified)
            return
        account = await host.find_by_id(user_id)
        if account is None:
            if keep_code:
                raise ContentionError()
            return  # deleted meanwhile: no code left to count against
        state, verified = account.challenge, account.is_verified
    raise ContentionError()


def _record(user: object) -> OTPRecord:
    # Every store's user objects carry the reference's code fields; the Protocol says which.
    return user  # type: ignore[return-value]


class ReferenceAPI:
    """The reference library's adapter methods, over the ports of the store mixed into."""

    async def get_by_email(self: _Host[U], email: str) -> U | None:
        """The user with this (normalized) e-mail, or ``None``."""
        account = await self.find_by_email(email_key(email))
        return None if account is None else account.user

    async def get_by_id(self: _Host[U], user_id: object) -> U | None:
        """The user with this id (text as token subjects carry it, or the key itself)."""
        account = await self.find_by_id(str(user_id))
        return None if account is None else account.user

    async def create_user(self: _Host[U], /, email: str, **kwargs: object) -> U:
        """Create a user with this (normalized) e-mail and extra fields; when one exists
        already, it is returned instead of a duplicate."""
        return (await self.create(email_key(email), kwargs)).user

    async def update_otp(self: _Host[U], user: U, code_hash: str) -> None:
        """Store a new code's hash, stamped now, with a fresh attempt budget.

        Raises:
            ValueError: ``code_hash`` is not 64 lowercase hex characters, e.g. a plaintext
                code; codes are stored only as ``otpcore.domain.codes.hash_code(...)``.
            ContentionError: The pending code changed since ``user`` was read.
        """
        if not isinstance(code_hash, str) or _CODE_HASH.fullmatch(code_hash) is None:
            raise ValueError(
                "update_otp stores a code hash (64 lowercase hex characters from "
                "otpcore.domain.codes.hash_code), never the code itself"
            )
        await _write(self, user, _issued(code_hash), keep_code=True)

    async def increment_otp_attempts(self: _Host[U], user: U) -> None:
        """Count one wrong guess: an attempt against the pending code and a consecutive
        failure. Never lost to a concurrent write."""
        await _write(self, user, _counted, keep_code=False)

    async def verify_user(self: _Host[U], user: U) -> None:
        """Mark the user verified, consume the pending code and reset the failures.

        Raises:
            ContentionError: The pending code changed since ``user`` was read (for
                instance, a concurrent request consumed it first).
        """
        await _write(self, user, _verified, keep_code=True, mark_verified=True)

    async def clear_otp(self: _Host[U], user: U) -> None:
        """Drop the pending code without verifying the user.

        Raises:
            ContentionError: The pending code changed since ``user`` was read.
        """
        await _write(self, user, _cleared, keep_code=True)

    async def add_to_blacklist(
        self: _Host[U], jti: str, token_type: str, expires_at: datetime
    ) -> None:
        """Revoke ``jti`` now until ``expires_at``; revoking it again changes nothing."""
        await self.revoke(
            Revocation(
                key=jti,
                kind=RevocationKind.parse(token_type),
                revoked_at=self._clock(),
                expires_at=expires_at,
            )
        )

    async def is_blacklisted(self: _Host[U], jti: str) -> bool:
        """Whether ``jti`` is revoked."""
        return bool(await self.find_revocations([jti]))

    async def cleanup_blacklist(self: _Host[U]) -> int:
        """Delete every expired entry in one operation; the number removed."""
        return await self.purge_expired(self._clock())
