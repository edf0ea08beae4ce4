"""The one-time-code state machine: every rule about issuing and guessing lives here.

State is a frozen value; transitions are pure functions of ``(state, input, now, policy)``
that return an outcome value. Nothing here reads a clock, draws randomness or does I/O.

The service persists the state an outcome carries with a compare-and-set guarded on
``state.version`` *before* it reveals the outcome. A guess is therefore counted (the
incremented ``attempts`` is stored) before anyone learns whether it was right, and a
losing racer learns nothing: it reloads and decides again from the winner's state.

Rules (the transition table, by :class:`Phase` and input):

=============== ================================ =====================================
phase           request_code                     submit_guess
=============== ================================ =====================================
IDLE            Issued, or Cooldown              NoChallenge
PENDING         Issued (replaces), or Cooldown   Accepted, or Rejected (counted)
EXHAUSTED       Issued, or Cooldown              Locked
EXPIRED         Issued, or Cooldown              Expired
ACCOUNT_LOCKED  Cooldown until the lock lapses   Locked
=============== ================================ =====================================

Issuing a code never resets ``failures`` (NIST SP 800-63B rev 4 §3.1.3: "Generating a new
authentication secret SHALL NOT reset the failed authentication count"); only a correct
guess does.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from otpcore.domain.codes import hashes_equal
from otpcore.domain.policy import Policy
from otpcore.domain.records import ChallengeState

__all__ = [
    "Accepted",
    "ChallengeState",
    "Cooldown",
    "Expired",
    "GuessOutcome",
    "IssueOutcome",
    "Issued",
    "Locked",
    "NoChallenge",
    "Phase",
    "Rejected",
    "phase",
    "request_code",
    "submit_guess",
]


class Phase(enum.Enum):
    """Where a challenge stands at a given instant."""

    IDLE = "idle"
    PENDING = "pending"
    EXHAUSTED = "exhausted"
    EXPIRED = "expired"
    ACCOUNT_LOCKED = "account_locked"


@dataclass(frozen=True, slots=True, kw_only=True)
class Issued:
    """A new code may be sent; ``state`` holds its hash and must be stored first."""

    state: ChallengeState


@dataclass(frozen=True, slots=True, kw_only=True)
class Cooldown:
    """Issuing refused for ``retry_after`` whole seconds; ``locked`` when at the failure cap."""

    retry_after: int
    locked: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    """The guess was right; ``state`` has the code consumed and failures reset."""

    state: ChallengeState


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected:
    """The guess was wrong and counted; ``remaining_attempts`` guesses are left on this code."""

    state: ChallengeState
    remaining_attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Locked:
    """No guess is evaluated: the code's attempts are spent or the account is locked."""

    retry_after: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Expired:
    """The pending code outlived ``policy.code_lifetime``; not counted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NoChallenge:
    """No code is pending (never issued, or already consumed); not counted."""


IssueOutcome = Issued | Cooldown
GuessOutcome = Accepted | Rejected | Locked | Expired | NoChallenge


def _ceil_seconds(delta: timedelta) -> int:
    return max(1, math.ceil(delta.total_seconds()))


def _account_lock_until(state: ChallengeState, policy: Policy) -> datetime | None:
    if state.failures < policy.max_failures or state.last_failure_at is None:
        return None
    return state.last_failure_at + policy.lockout_duration


def phase(state: ChallengeState, *, now: datetime, policy: Policy) -> Phase:
    """Classify ``state`` at ``now`` into one row of the transition table."""
    lock_until = _account_lock_until(state, policy)
    if lock_until is not None and now < lock_until:
        return Phase.ACCOUNT_LOCKED
    if state.code_hash is None or state.issued_at is None:
        return Phase.IDLE
    if state.attempts >= policy.max_attempts:
        return Phase.EXHAUSTED
    if now >= state.issued_at + policy.code_lifetime:
        return Phase.EXPIRED
    return Phase.PENDING


def request_code(
    state: ChallengeState, *, code_hash: str, now: datetime, policy: Policy
) -> IssueOutcome:
    """Decide whether a new code may be issued now and, if so, the state that records it.

    The new code replaces any pending one, with a fresh attempt budget; ``failures`` carries
    over, and the required gap since the last code grows with it (``policy.resend_wait``).
    """
    lock_until = _account_lock_until(state, policy)
    if lock_until is not None and now < lock_until:
        return Cooldown(retry_after=_ceil_seconds(lock_until - now), locked=True)
    # At the failure cap this gap is ``lockout_duration`` (see ``Policy.resend_wait``): once
    # the lock lapses, one code per lockout period, never an unthrottled burst.
    if state.last_request_at is not None:
        ready_at = state.last_request_at + policy.resend_wait(state.failures)
        if now < ready_at:
            return Cooldown(retry_after=_ceil_seconds(ready_at - now))
    return Issued(
        state=replace(
            state,
            code_hash=code_hash,
            issued_at=now,
            attempts=0,
            last_request_at=now,
            version=state.version + 1,
        )
    )


def submit_guess(
    state: ChallengeState, *, presented_hash: str, now: datetime, policy: Policy
) -> GuessOutcome:
    """Count one guess against the pending code and decide it.

    Refusals (``Locked``, ``Expired``, ``NoChallenge``) change nothing and count nothing.
    ``Accepted`` and ``Rejected`` carry the state in which the guess is already counted.
    """
    match phase(state, now=now, policy=policy):
        case Phase.ACCOUNT_LOCKED:
            lock_until = _account_lock_until(state, policy)
            assert lock_until is not None
            return Locked(retry_after=_ceil_seconds(lock_until - now))
        case Phase.IDLE:
            return NoChallenge()
        case Phase.EXHAUSTED:
            return Locked()
        case Phase.EXPIRED:
            return Expired()
        case Phase.PENDING:
            pass
    assert state.code_hash is not None
    attempts = state.attempts + 1
    if hashes_equal(state.code_hash, presented_hash):
        return Accepted(
            state=replace(
                state,
                code_hash=None,
                issued_at=None,
                attempts=attempts,
                failures=0,
                last_failure_at=None,
                version=state.version + 1,
            )
        )
    return Rejected(
        state=replace(
            state,
            attempts=attempts,
            failures=state.failures + 1,
            last_failure_at=now,
            version=state.version + 1,
        ),
        remaining_attempts=max(0, policy.max_attempts - attempts),
    )
