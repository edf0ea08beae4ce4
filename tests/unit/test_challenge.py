"""The challenge rules beyond the transition table (otpcore.domain.challenge): the stepped
resend backoff and the withdrawal of an undelivered code."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from otpcore.domain.challenge import Cooldown, Issued, phase, request_code, resend_wait, withdraw
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


# --- withdraw -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "before",
    [
        ChallengeState(),
        ChallengeState(
            code_hash="old",
            issued_at=NOW - timedelta(minutes=3),
            attempts=2,
            failures=7,
            last_request_at=NOW - timedelta(minutes=3),
            last_failure_at=NOW - timedelta(minutes=1),
            version=41,
        ),
    ],
    ids=["first code", "replacing a pending code"],
)
def test_withdraw_restores_the_earlier_state_under_a_newer_version(
    before: ChallengeState,
) -> None:
    policy = make()
    outcome = request_code(before, code_hash="new", now=NOW, policy=policy)
    assert isinstance(outcome, Issued)
    issued = outcome.state
    snapshot = (replace(before), replace(issued))

    restored = withdraw(before, issued)

    assert restored.version == issued.version + 1
    assert replace(restored, version=before.version) == before
    assert (before, issued) == snapshot  # pure: the inputs are untouched
    # No cooldown from the undelivered code: a new one may be issued straight away.
    assert isinstance(request_code(restored, code_hash="again", now=NOW, policy=policy), Issued)
    assert phase(restored, now=NOW, policy=policy) == phase(before, now=NOW, policy=policy)
