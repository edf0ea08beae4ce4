"""The decisions of the challenge state machine: small frozen values named for the outcome.

:mod:`otpcore.domain.challenge` returns them (and re-exports them); the service dispatches on
them with ``match`` and ends in ``assert_never``. Only ``Issued``, ``Accepted`` and
``Rejected`` carry a state to store; every other outcome changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from otpcore.domain.records import ChallengeState

__all__ = [
    "Accepted",
    "CodeSpent",
    "Cooldown",
    "Expired",
    "GuessOutcome",
    "IssueOutcome",
    "Issued",
    "LinkOutcome",
    "LockedOut",
    "NoChallenge",
    "Outcome",
    "Rejected",
    "WrongLink",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Issued:
    """A new code may be sent; ``state`` holds its hash and must be stored first."""

    state: ChallengeState


@dataclass(frozen=True, slots=True, kw_only=True)
class Cooldown:
    """Issuing refused: the resend gap ends in ``retry_after`` whole seconds."""

    retry_after: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LockedOut:
    """The account is at the failure cap: nothing is issued or evaluated for ``retry_after``
    whole seconds."""

    retry_after: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    """The guess was right; ``state`` has the code consumed and failures reset."""

    state: ChallengeState


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected:
    """The guess was wrong and counted in ``state``.

    Attributes:
        state: The state with this guess counted; store it before revealing the outcome.
        remaining_attempts: Guesses left on this code.
        ends_guessing: No further guess will be evaluated after this one: it spent the
            code's last attempt (``CodeSpent`` follows) or reached ``policy.max_failures``
            (``LockedOut`` follows).
    """

    state: ChallengeState
    remaining_attempts: int
    ends_guessing: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeSpent:
    """The pending code's attempts are used up; no guess is evaluated against it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Expired:
    """The pending code outlived ``policy.code_lifetime``; not counted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WrongLink:
    """The presented magic link is not the pending code's (none was sent, a newer code
    replaced it, or it was used); not counted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NoChallenge:
    """No code is pending (never issued, or already consumed); not counted."""


IssueOutcome: TypeAlias = Issued | Cooldown | LockedOut
GuessOutcome: TypeAlias = Accepted | Rejected | CodeSpent | LockedOut | Expired | NoChallenge
LinkOutcome: TypeAlias = Accepted | WrongLink | Expired | LockedOut
Outcome: TypeAlias = IssueOutcome | GuessOutcome | LinkOutcome
