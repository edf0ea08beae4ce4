"""The one-time-code state machine: every rule about issuing and guessing lives here.

One state is one requester's binding (:class:`~otpcore.domain.records.PendingChallenge`):
its code, its cooldown, its own failures, and two guess budgets of ``policy.max_attempts``
each: the bound one (``attempts``, guesses presenting this binding) and the unbound one
(``unbound_attempts``, guesses presenting only the address, evaluated against the
address's newest code). An unbound guess never touches the bound budget nor the failures.

State is a frozen value; transitions are pure functions of ``(state, input, now, policy)``
that return an outcome value. Nothing here reads a clock, draws randomness or does I/O.

The service persists the state an outcome carries with a compare-and-set guarded on
``state.version`` *before* it reveals the outcome. A guess is therefore counted (the
incremented ``attempts`` is stored) before anyone learns whether it was right, and a
losing racer learns nothing: it reloads and decides again from the winner's state.

The transition table is data: :data:`TRANSITIONS` maps ``(Phase, Input)`` to the rule that
decides and the outcomes it may give; :func:`request_code` and :func:`submit_guess` look
the rule up and refuse any outcome the table does not list. A pair absent from the table
is illegal. The tables below are :func:`render_table`'s output, and a test keeps them so:

============== ================= =================== =========================================
phase          request_code      submit_guess        submit_unbound
============== ================= =================== =========================================
IDLE           Issued | Cooldown NoChallenge         NoChallenge
PENDING        Issued | Cooldown Accepted | Rejected Accepted | Rejected | CodeSpent
EXHAUSTED      Issued | Cooldown CodeSpent           Accepted | Rejected | CodeSpent | Expired
EXPIRED        Issued | Cooldown Expired             Expired
ACCOUNT_LOCKED LockedOut         LockedOut           LockedOut
============== ================= =================== =========================================

============== =====================
phase          redeem_link
============== =====================
IDLE           WrongLink
PENDING        Accepted | WrongLink
EXHAUSTED      Accepted | WrongLink
EXPIRED        Expired | WrongLink
ACCOUNT_LOCKED LockedOut | WrongLink
============== =====================

- ``Issued`` replaces any pending code with a fresh attempt budget. ``Cooldown`` means the
  resend gap (:func:`resend_wait`) has not passed.
- ``Rejected`` is a counted wrong guess; ``Accepted`` consumes the code and resets failures.
- ``CodeSpent``: this code's attempts (of the guess's budget) are used up; a new code may be
  requested.
- ``submit_unbound`` evaluates against the unbound budget alone, whatever is left of the
  bound one; its ``Rejected`` counts no failure. (``Expired`` in ``EXHAUSTED``: that row is
  decided before expiry, and a spent bound budget does not stop the code expiring.)
- ``redeem_link`` presents the magic link sent with the code (its keyed hash): a link that
  is not this code's (none was sent, a newer code replaced it, it was used) is ``WrongLink``
  in every phase, checked first, and counts nothing: a link is no guess. The right one logs
  in like a right code (``Accepted``: the code and its link are consumed together, so one
  login per challenge, by code or link), also when a guess budget is spent: the link holds
  128 random bits, no guessable secret.
- ``LockedOut``: the account reached ``policy.max_failures``; no code is issued and no guess
  is evaluated until ``policy.lockout_duration`` after the last failure.
- Refusals (everything but ``Issued``, ``Accepted`` and ``Rejected``) change nothing.

Issuing a code never resets ``failures`` (NIST SP 800-63B rev 4 §3.1.3: "Generating a new
authentication secret SHALL NOT reset the failed authentication count"); only a correct
guess does. Delivery never changes a challenge: whether the mailer succeeded must not be
observable in what the next request or guess is told.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Final, cast

from otpcore.domain.codes import hashes_equal
from otpcore.domain.outcomes import (
    Accepted,
    CodeSpent,
    Cooldown,
    Expired,
    GuessOutcome,
    Issued,
    IssueOutcome,
    LinkOutcome,
    LockedOut,
    NoChallenge,
    Outcome,
    Rejected,
    WrongLink,
)
from otpcore.domain.policy import Policy
from otpcore.domain.records import ChallengeState

__all__ = [
    "TRANSITIONS",
    "Accepted",
    "ChallengeState",
    "CodeSpent",
    "Cooldown",
    "Expired",
    "GuessOutcome",
    "Input",
    "IssueOutcome",
    "Issued",
    "LinkOutcome",
    "LockedOut",
    "NoChallenge",
    "Outcome",
    "Phase",
    "Rejected",
    "Transition",
    "WrongLink",
    "keep_until",
    "phase",
    "redeem_link",
    "render_table",
    "request_code",
    "resend_wait",
    "submit_guess",
    "submit_unbound_guess",
]


class Phase(enum.Enum):
    """Where a challenge stands at a given instant: one row of the table."""

    IDLE = "idle"
    PENDING = "pending"
    EXHAUSTED = "exhausted"
    EXPIRED = "expired"
    ACCOUNT_LOCKED = "account_locked"

    # Members are singletons compared by identity; hashing them by identity too keeps the
    # table lookup on every decision in C (Enum's own __hash__ hashes the name in Python).
    __hash__ = object.__hash__


class Input(enum.Enum):
    """What can happen to a challenge: one column of the table."""

    REQUEST_CODE = "request_code"
    SUBMIT_GUESS = "submit_guess"
    SUBMIT_UNBOUND = "submit_unbound"
    REDEEM_LINK = "redeem_link"

    __hash__ = object.__hash__  # as for Phase


_CODE_SPENT: Final = CodeSpent()
_EXPIRED: Final = Expired()
_NO_CHALLENGE: Final = NoChallenge()
_WRONG_LINK: Final = WrongLink()


# -- the rules the table names -------------------------------------------------------------


def _ceil_seconds(delta: timedelta) -> int:
    return max(1, math.ceil(delta.total_seconds()))


def _account_lock_until(state: ChallengeState, policy: Policy) -> datetime | None:
    if state.failures < policy.max_failures or state.last_failure_at is None:
        return None
    return state.last_failure_at + policy.lockout_duration


def resend_wait(failures: int, *, policy: Policy) -> timedelta:
    """The gap required between two codes for an account with ``failures`` consecutive failures.

    ``policy.resend_cooldown`` plus the largest ``policy.backoff`` step reached. At the
    failure cap the gap is ``policy.lockout_duration``: once the lock lapses, one code per
    lockout period, never an unthrottled burst.
    """
    if failures >= policy.max_failures:
        return policy.lockout_duration
    extra = timedelta(0)
    for threshold, wait in policy.backoff:
        if failures >= threshold:
            extra = wait
    return policy.resend_cooldown + extra


def _issue(state: ChallengeState, code_hash: str, now: datetime, policy: Policy) -> Outcome:
    if state.last_request_at is not None:
        ready_at = state.last_request_at + resend_wait(state.failures, policy=policy)
        if now < ready_at:
            return Cooldown(retry_after=_ceil_seconds(ready_at - now))
    return Issued(
        state=replace(
            state,
            code_hash=code_hash,
            issued_at=now,
            attempts=0,
            unbound_attempts=0,
            last_request_at=now,
            version=state.version + 1,
        )
    )


def _lock_out(state: ChallengeState, _hash: str, now: datetime, policy: Policy) -> Outcome:
    lock_until = _account_lock_until(state, policy)
    assert lock_until is not None  # the ACCOUNT_LOCKED phase has one
    return LockedOut(retry_after=_ceil_seconds(lock_until - now))


def _spent(
    state: ChallengeState, *, attempts: int | None = None, unbound_attempts: int | None = None
) -> ChallengeState:
    """The state after a right code or link: code and link consumed, failures forgiven."""
    return replace(
        state,
        code_hash=None,
        issued_at=None,
        link_hash=None,
        attempts=state.attempts if attempts is None else attempts,
        unbound_attempts=state.unbound_attempts if unbound_attempts is None else unbound_attempts,
        failures=0,
        last_failure_at=None,
        version=state.version + 1,
    )


def _evaluate(state: ChallengeState, presented: str, now: datetime, policy: Policy) -> Outcome:
    assert state.code_hash is not None  # the PENDING phase has one
    attempts = state.attempts + 1
    if hashes_equal(state.code_hash, presented):
        return Accepted(state=_spent(state, attempts=attempts))
    failures = state.failures + 1
    remaining = max(0, policy.max_attempts - attempts)
    return Rejected(
        state=replace(
            state,
            attempts=attempts,
            failures=failures,
            last_failure_at=now,
            version=state.version + 1,
        ),
        remaining_attempts=remaining,
        ends_guessing=remaining == 0 or failures >= policy.max_failures,
    )


def _evaluate_unbound(
    state: ChallengeState, presented: str, now: datetime, policy: Policy
) -> Outcome:
    assert state.code_hash is not None  # PENDING and EXHAUSTED have a code
    assert state.issued_at is not None
    if now >= state.issued_at + policy.code_lifetime:
        return _EXPIRED  # EXHAUSTED is decided before expiry; the unbound lane still expires
    if state.unbound_attempts >= policy.max_attempts:
        return _CODE_SPENT
    attempts = state.unbound_attempts + 1
    if hashes_equal(state.code_hash, presented):
        return Accepted(state=_spent(state, unbound_attempts=attempts))
    remaining = max(0, policy.max_attempts - attempts)
    return Rejected(
        state=replace(state, unbound_attempts=attempts, version=state.version + 1),
        remaining_attempts=remaining,
        ends_guessing=remaining == 0,
    )


def _link_matches(state: ChallengeState, presented: str) -> bool:
    return state.link_hash is not None and hashes_equal(state.link_hash, presented)


def _redeem_link(state: ChallengeState, presented: str, now: datetime, policy: Policy) -> Outcome:
    if not _link_matches(state, presented):
        return _WRONG_LINK
    return Accepted(state=_spent(state))


def _wrong_link(_state: ChallengeState, _hash: str, _now: datetime, _policy: Policy) -> Outcome:
    return _WRONG_LINK


def _link_expired(state: ChallengeState, presented: str, now: datetime, policy: Policy) -> Outcome:
    # The link first: a wrong one learns nothing about the code's phase.
    return _EXPIRED if _link_matches(state, presented) else _WRONG_LINK


def _link_locked(state: ChallengeState, presented: str, now: datetime, policy: Policy) -> Outcome:
    if not _link_matches(state, presented):
        return _WRONG_LINK
    return _lock_out(state, presented, now, policy)


def _code_spent(_state: ChallengeState, _hash: str, _now: datetime, _policy: Policy) -> Outcome:
    return _CODE_SPENT


def _expired(_state: ChallengeState, _hash: str, _now: datetime, _policy: Policy) -> Outcome:
    return _EXPIRED


def _no_challenge(_state: ChallengeState, _hash: str, _now: datetime, _policy: Policy) -> Outcome:
    return _NO_CHALLENGE


# -- the table ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transition:
    """One cell of the table: the outcomes it may give, and the rule that picks one.

    Attributes:
        outcomes: Every outcome type the cell allows, in the order the table names them.
        decide: ``decide(state, hash, now, policy)``; ``hash`` is the new code's hash for
            ``REQUEST_CODE``, the presented one for the guesses and the presented link's
            for ``REDEEM_LINK``.
    """

    outcomes: tuple[type[Outcome], ...]
    decide: Callable[[ChallengeState, str, datetime, Policy], Outcome]


_ISSUE: Final = Transition((Issued, Cooldown), _issue)
_LOCK_OUT: Final = Transition((LockedOut,), _lock_out)
_UNBOUND: Final = Transition((Accepted, Rejected, CodeSpent), _evaluate_unbound)
_UNBOUND_SPENT_BOUND: Final = Transition(
    (Accepted, Rejected, CodeSpent, Expired), _evaluate_unbound
)
_LINK: Final = Transition((Accepted, WrongLink), _redeem_link)

#: Every legal ``(phase, input)`` pair and its transition; anything absent is illegal.
TRANSITIONS: Final[Mapping[tuple[Phase, Input], Transition]] = MappingProxyType(
    {
        (Phase.IDLE, Input.REQUEST_CODE): _ISSUE,
        (Phase.IDLE, Input.SUBMIT_GUESS): Transition((NoChallenge,), _no_challenge),
        (Phase.IDLE, Input.SUBMIT_UNBOUND): Transition((NoChallenge,), _no_challenge),
        (Phase.IDLE, Input.REDEEM_LINK): Transition((WrongLink,), _wrong_link),
        (Phase.PENDING, Input.REQUEST_CODE): _ISSUE,
        (Phase.PENDING, Input.SUBMIT_GUESS): Transition((Accepted, Rejected), _evaluate),
        (Phase.PENDING, Input.SUBMIT_UNBOUND): _UNBOUND,
        (Phase.PENDING, Input.REDEEM_LINK): _LINK,
        (Phase.EXHAUSTED, Input.REQUEST_CODE): _ISSUE,
        (Phase.EXHAUSTED, Input.SUBMIT_GUESS): Transition((CodeSpent,), _code_spent),
        (Phase.EXHAUSTED, Input.SUBMIT_UNBOUND): _UNBOUND_SPENT_BOUND,
        (Phase.EXHAUSTED, Input.REDEEM_LINK): _LINK,
        (Phase.EXPIRED, Input.REQUEST_CODE): _ISSUE,
        (Phase.EXPIRED, Input.SUBMIT_GUESS): Transition((Expired,), _expired),
        (Phase.EXPIRED, Input.SUBMIT_UNBOUND): Transition((Expired,), _expired),
        (Phase.EXPIRED, Input.REDEEM_LINK): Transition((Expired, WrongLink), _link_expired),
        (Phase.ACCOUNT_LOCKED, Input.REQUEST_CODE): _LOCK_OUT,
        (Phase.ACCOUNT_LOCKED, Input.SUBMIT_GUESS): _LOCK_OUT,
        (Phase.ACCOUNT_LOCKED, Input.SUBMIT_UNBOUND): _LOCK_OUT,
        (Phase.ACCOUNT_LOCKED, Input.REDEEM_LINK): Transition((LockedOut, WrongLink), _link_locked),
    }
)


#: The columns of each table the module docstring shows (one table would not fit a line).
_TABLES: Final = (
    (Input.REQUEST_CODE, Input.SUBMIT_GUESS, Input.SUBMIT_UNBOUND),
    (Input.REDEEM_LINK,),
)


def _render(inputs: tuple[Input, ...]) -> str:
    rows = [["phase", *(i.value for i in inputs)]]
    for p in Phase:
        cells = [p.name]
        for i in inputs:
            transition = TRANSITIONS.get((p, i))
            names = [t.__name__ for t in transition.outcomes] if transition else ["(illegal)"]
            cells.append(" | ".join(names))
        rows.append(cells)
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    rule = " ".join("=" * width for width in widths)

    def line(row: list[str]) -> str:
        return " ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))

    body = [line(row).rstrip() for row in rows[1:]]
    return "\n".join([rule, line(rows[0]).rstrip(), rule, *body, rule])


def render_table() -> str:
    """:data:`TRANSITIONS` as the reStructuredText tables the module docstring shows: the
    code's inputs, then the link's."""
    assert {i for inputs in _TABLES for i in inputs} == set(Input)
    return "\n\n".join(_render(inputs) for inputs in _TABLES)


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


def _step(
    state: ChallengeState, given: Input, digest: str, now: datetime, policy: Policy
) -> Outcome:
    current = phase(state, now=now, policy=policy)
    transition = TRANSITIONS.get((current, given))
    if transition is None:
        raise LookupError(f"no transition from {current.name} on {given.value}")
    outcome = transition.decide(state, digest, now, policy)
    if type(outcome) not in transition.outcomes:
        # Fail closed: a rule may only answer what its cell of the table allows.
        raise AssertionError(f"{type(outcome).__name__} is not in ({current.name}, {given.value})")
    return outcome


def request_code(
    state: ChallengeState,
    *,
    code_hash: str,
    now: datetime,
    policy: Policy,
    link_hash: str | None = None,
) -> IssueOutcome:
    """Decide whether a new code may be issued now and, if so, the state that records it.

    The new code replaces any pending one, with a fresh attempt budget; ``failures`` carries
    over, and the required gap since the last code grows with it (:func:`resend_wait`). Its
    magic link (``link_hash``, or none) replaces any earlier link too.
    """
    outcome = cast(IssueOutcome, _step(state, Input.REQUEST_CODE, code_hash, now, policy))
    if isinstance(outcome, Issued):
        return Issued(state=replace(outcome.state, link_hash=link_hash))
    return outcome


def submit_guess(
    state: ChallengeState, *, presented_hash: str, now: datetime, policy: Policy
) -> GuessOutcome:
    """Count one guess against the pending code and decide it.

    Refusals (``CodeSpent``, ``LockedOut``, ``Expired``, ``NoChallenge``) change nothing and
    count nothing. ``Accepted`` and ``Rejected`` carry the state in which the guess is
    already counted.
    """
    return cast(GuessOutcome, _step(state, Input.SUBMIT_GUESS, presented_hash, now, policy))


def submit_unbound_guess(
    state: ChallengeState, *, presented_hash: str, now: datetime, policy: Policy
) -> GuessOutcome:
    """Count one unbound guess (the address only, no binding) against this code and decide it.

    Evaluated under the shared unbound budget (``unbound_attempts``), whatever is left of the
    bound one; a wrong one counts no failure. Refusals change nothing.
    """
    return cast(GuessOutcome, _step(state, Input.SUBMIT_UNBOUND, presented_hash, now, policy))


def redeem_link(
    state: ChallengeState, *, presented_hash: str, now: datetime, policy: Policy
) -> LinkOutcome:
    """Decide a magic link (its keyed hash) presented for this challenge.

    ``Accepted`` consumes the code and the link together; ``WrongLink``, ``Expired`` and
    ``LockedOut`` change nothing and count nothing.
    """
    return cast(LinkOutcome, _step(state, Input.REDEEM_LINK, presented_hash, now, policy))


def keep_until(state: ChallengeState, *, policy: Policy) -> datetime:
    """When a stored challenge in ``state`` stops mattering: its code has expired, its
    resend gap has passed and any lock of its own has lapsed. Purge may drop it after."""
    assert state.last_request_at is not None  # every stored challenge was issued once
    until = state.last_request_at + max(
        policy.code_lifetime, resend_wait(state.failures, policy=policy)
    )
    lock_until = _account_lock_until(state, policy)
    return max(until, lock_until) if lock_until is not None else until
