"""The challenge rules beyond the transition table (otpcore.domain.challenge): the stepped
resend backoff, the unbound guess lane and how long a challenge is kept."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from otpcore.domain.challenge import (
    Accepted,
    CodeSpent,
    Cooldown,
    Issued,
    NoChallenge,
    Rejected,
    keep_until,
    request_code,
    resend_wait,
    submit_guess,
    submit_unbound_guess,
)
from otpcore.domain.policy import MIN_SECRET_BYTES, Policy
from otpcore.domain.records import ChallengeState

SECRET = b"s" * MIN_SECRET_BYTES
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def make(**overrides: Any) -> Policy:
    kwargs: dict[str, Any] = {"secret": SECRET}
    kwargs.update(overrides)
    return Policy(**kwargs)


# --- resend_wait --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "expected"),
    [
        (0, timedelta(seconds=60)),
        (4, timedelta(seconds=60)),
        (5, timedelta(seconds=60) + timedelta(minutes=1)),
        (9, timedelta(seconds=60) + timedelta(minutes=1)),
        (10, timedelta(seconds=60) + timedelta(minutes=5)),
        (19, timedelta(seconds=60) + timedelta(minutes=5)),
        (20, timedelta(seconds=60) + timedelta(minutes=15)),
        (49, timedelta(seconds=60) + timedelta(minutes=15)),
        (50, timedelta(seconds=60) + timedelta(hours=1)),
        (99, timedelta(seconds=60) + timedelta(hours=1)),
        (100, timedelta(hours=24)),
        (150, timedelta(hours=24)),
    ],
)
def test_default_resend_wait_steps(failures: int, expected: timedelta) -> None:
    assert resend_wait(failures, policy=make()) == expected


def test_resend_wait_never_decreases_with_failures() -> None:
    policy = make()
    waits = [resend_wait(n, policy=policy) for n in range(0, 120)]
    assert waits == sorted(waits)


def test_custom_resend_wait_steps_and_cap() -> None:
    policy = make(
        resend_cooldown=timedelta(seconds=10),
        backoff=((0, timedelta(0)), (2, timedelta(seconds=5)), (4, timedelta(seconds=20))),
        max_failures=6,
        lockout_duration=timedelta(minutes=3),
    )
    assert [resend_wait(n, policy=policy).total_seconds() for n in range(8)] == [
        10.0,
        10.0,
        15.0,
        15.0,
        30.0,
        30.0,
        180.0,
        180.0,
    ]


def test_resend_wait_decides_the_cooldown() -> None:
    policy = make()
    state = ChallengeState(failures=10, last_request_at=NOW, version=3)
    ready = NOW + resend_wait(10, policy=policy)
    early = request_code(state, code_hash="h", now=ready - timedelta(microseconds=1), policy=policy)
    assert early == Cooldown(retry_after=1)
    assert isinstance(request_code(state, code_hash="h", now=ready, policy=policy), Issued)


# --- the unbound lane (issue 8) ------------------------------------------------------------
# The withdrawal of an undelivered code is gone (issue 8: delivery's outcome must not change
# challenge state, or it would tell a known address from an unknown one).


def _pending(**overrides: object) -> ChallengeState:
    base = ChallengeState(
        code_hash="right", issued_at=NOW, last_request_at=NOW, failures=3, version=2
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def test_unbound_guesses_spend_only_the_unbound_budget_and_count_no_failure() -> None:
    policy = make()
    state = _pending()
    for left in range(policy.max_attempts - 1, -1, -1):
        outcome = submit_unbound_guess(state, presented_hash="wrong", now=NOW, policy=policy)
        assert isinstance(outcome, Rejected)
        assert outcome.remaining_attempts == left
        assert outcome.ends_guessing == (left == 0)
        state = outcome.state
        assert state.attempts == 0
        assert state.failures == 3
    assert isinstance(
        submit_unbound_guess(state, presented_hash="right", now=NOW, policy=policy), CodeSpent
    )
    # The bound budget is still whole: the binding's holder logs in.
    accepted = submit_guess(state, presented_hash="right", now=NOW, policy=policy)
    assert isinstance(accepted, Accepted)


def test_an_unbound_guess_is_evaluated_even_when_the_bound_budget_is_spent() -> None:
    policy = make()
    state = _pending(attempts=policy.max_attempts)
    assert isinstance(
        submit_guess(state, presented_hash="right", now=NOW, policy=policy), CodeSpent
    )
    outcome = submit_unbound_guess(state, presented_hash="right", now=NOW, policy=policy)
    assert isinstance(outcome, Accepted)
    assert outcome.state.code_hash is None
    assert outcome.state.failures == 0


def test_a_consumed_code_refuses_both_lanes() -> None:
    policy = make()
    outcome = submit_unbound_guess(_pending(), presented_hash="right", now=NOW, policy=policy)
    assert isinstance(outcome, Accepted)
    for guess in (submit_guess, submit_unbound_guess):
        assert isinstance(
            guess(outcome.state, presented_hash="right", now=NOW, policy=policy), NoChallenge
        )


def test_keep_until_covers_the_code_the_cooldown_and_the_lock() -> None:
    policy = make()
    fresh = _pending(failures=0)
    assert keep_until(fresh, policy=policy) == NOW + max(
        policy.code_lifetime, policy.resend_cooldown
    )
    locked = _pending(failures=policy.max_failures, last_failure_at=NOW)
    assert keep_until(locked, policy=policy) == NOW + policy.lockout_duration
