"""Stateful property test of the pure challenge machine against a simple independent model.

Hypothesis drives ``request_code``/``submit_guess``/``submit_unbound_guess`` (bound and
unbound guesses, issue 8) with a fake clock, stores the state that
``Issued``/``Accepted``/``Rejected`` carry (as the service does after its compare-and-set) and
checks every outcome against a model written from the rules in ``otpcore.domain.challenge``'s
docstring, plus safety invariants that hold whatever the model says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from otpcore.domain.challenge import (
    Accepted,
    CodeSpent,
    Cooldown,
    Expired,
    GuessOutcome,
    Issued,
    LockedOut,
    NoChallenge,
    Phase,
    Rejected,
    phase,
    request_code,
    resend_wait,
    submit_guess,
    submit_unbound_guess,
)
from otpcore.domain.codes import hash_code
from otpcore.domain.policy import Policy
from otpcore.domain.records import ChallengeState

SECRET = b"state-machine-secret-0123456789abcdef"
EMAIL = "alice@example.com"
START = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
ONE_SECOND = timedelta(seconds=1)

SMALL_POLICY = Policy(
    secret=SECRET,
    code_length=4,
    code_lifetime=timedelta(minutes=2),
    max_attempts=3,
    resend_cooldown=timedelta(seconds=10),
    backoff=((0, timedelta(0)), (1, timedelta(seconds=5)), (3, timedelta(seconds=30))),
    # Low enough that random runs reliably cross the cap and outlive the lockout.
    max_failures=4,
    lockout_duration=timedelta(minutes=5),
)
ROOMIER_POLICY = replace(
    SMALL_POLICY,
    max_attempts=2,
    max_failures=7,
    backoff=((0, timedelta(0)), (2, timedelta(seconds=5)), (4, timedelta(seconds=30))),
)
DEFAULT_POLICY = Policy(secret=SECRET)

RUN_SETTINGS = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def ceil_seconds(delta: timedelta) -> int:
    return max(1, math.ceil(delta.total_seconds()))


@dataclass
class CodeRecord:
    """What the model remembers about one issued code."""

    plain: str
    issued_at: datetime
    evaluated: int = 0  # bound guesses evaluated (Accepted + Rejected) against this code
    unbound_evaluated: int = 0  # unbound guesses evaluated against this code
    accepted: int = 0


@dataclass
class Model:
    """The account as the model sees it; written from the documented rules, not the code."""

    policy: Policy
    now: datetime = START
    codes: list[CodeRecord] = field(default_factory=list)
    pending: CodeRecord | None = None  # the code that can still be redeemed, if any
    failures: int = 0
    last_failure_at: datetime | None = None
    last_request_at: datetime | None = None
    version: int = 0

    def lock_until(self) -> datetime | None:
        if self.failures >= self.policy.max_failures and self.last_failure_at is not None:
            until = self.last_failure_at + self.policy.lockout_duration
            if self.now < until:
                return until
        return None

    def resend_gap(self) -> timedelta:
        # Independent restatement of the stepped backoff: cooldown plus the largest step
        # reached; at the failure cap one code per lockout_duration.
        if self.failures >= self.policy.max_failures:
            return self.policy.lockout_duration
        reached = [wait for step, wait in self.policy.backoff if self.failures >= step]
        return self.policy.resend_cooldown + (reached[-1] if reached else timedelta(0))

    def ready_at(self) -> datetime | None:
        if self.last_request_at is None:
            return None
        return self.last_request_at + self.resend_gap()

    def expected_issue(self) -> Cooldown | LockedOut | None:
        """``None`` when a code must be issued, else the exact refusal."""
        lock_until = self.lock_until()
        if lock_until is not None:
            return LockedOut(retry_after=ceil_seconds(lock_until - self.now))
        ready_at = self.ready_at()
        if ready_at is not None and self.now < ready_at:
            return Cooldown(retry_after=ceil_seconds(ready_at - self.now))
        return None

    def spent(self) -> bool:
        return self.pending is not None and self.pending.evaluated >= self.policy.max_attempts

    def expired(self) -> bool:
        return (
            self.pending is not None
            and self.now >= self.pending.issued_at + self.policy.code_lifetime
        )

    def expected_unbound_refusal(self) -> LockedOut | CodeSpent | Expired | NoChallenge | None:
        """The unbound lane: its own budget, whatever is left of the bound one."""
        lock_until = self.lock_until()
        if lock_until is not None:
            return LockedOut(retry_after=ceil_seconds(lock_until - self.now))
        if self.pending is None:
            return NoChallenge()
        if self.expired():
            return Expired()
        if self.pending.unbound_evaluated >= self.policy.max_attempts:
            return CodeSpent()
        return None

    def expected_guess_refusal(self) -> LockedOut | CodeSpent | Expired | NoChallenge | None:
        """``None`` when the guess must be evaluated, else the exact refusal."""
        lock_until = self.lock_until()
        if lock_until is not None:
            return LockedOut(retry_after=ceil_seconds(lock_until - self.now))
        if self.pending is None:
            return NoChallenge()
        if self.spent():
            return CodeSpent()
        if self.expired():
            return Expired()
        return None


class ChallengeMachine(RuleBasedStateMachine):
    """Rules: issue, wrong guess, right guess, unbound wrong and right guesses, stale guess,
    replay, advance clock."""

    POLICY: ClassVar[Policy] = SMALL_POLICY

    def __init__(self) -> None:
        super().__init__()
        self.policy = self.POLICY
        self.stored = ChallengeState()
        self.model = Model(policy=self.policy)
        self.lockouts_seen = 0

    # --- helpers ------------------------------------------------------------------------

    def hash_of(self, plain: str) -> str:
        return hash_code(self.policy.secret, EMAIL, plain)

    def code_from(self, n: int) -> str:
        return f"{n % 10**self.policy.code_length:0{self.policy.code_length}d}"

    def store(self, new: ChallengeState) -> None:
        """Apply a transition as the service would after a successful compare-and-set."""
        assert new.version == self.stored.version + 1, "every stored transition bumps version"
        self.model.version += 1
        self.stored = new

    def issue(self, plain: str) -> None:
        before = self.stored
        expected = self.model.expected_issue()
        outcome = request_code(
            before, code_hash=self.hash_of(plain), now=self.model.now, policy=self.policy
        )
        if expected is not None:
            assert outcome == expected
            assert isinstance(outcome, Cooldown | LockedOut)
            assert outcome.retry_after > 0
            assert self.stored is before  # a refusal carries no state to store
            # retry_after is honest: one second earlier is still refused, at it is allowed.
            early = self.model.now + timedelta(seconds=outcome.retry_after - 1)
            on_time = self.model.now + timedelta(seconds=outcome.retry_after)
            assert isinstance(
                request_code(before, code_hash="x", now=early, policy=self.policy),
                Cooldown | LockedOut,
            )
            assert isinstance(
                request_code(before, code_hash="x", now=on_time, policy=self.policy), Issued
            )
            if isinstance(outcome, LockedOut):
                self.lockouts_seen += 1
            return
        assert isinstance(outcome, Issued), outcome
        new = outcome.state
        assert new.failures == before.failures, "issuing never resets failures"
        assert new.last_failure_at == before.last_failure_at
        assert new.code_hash == self.hash_of(plain)
        assert new.issued_at == self.model.now
        assert new.last_request_at == self.model.now
        if before.last_request_at is not None:
            assert self.model.now - before.last_request_at >= self.policy.resend_cooldown
        self.store(new)
        record = CodeRecord(plain=plain, issued_at=self.model.now)
        self.model.codes.append(record)
        self.model.pending = record
        self.model.last_request_at = self.model.now

    def guess(self, plain: str) -> GuessOutcome:
        before = self.stored
        pending = self.model.pending
        refusal = self.model.expected_guess_refusal()
        outcome = submit_guess(
            before, presented_hash=self.hash_of(plain), now=self.model.now, policy=self.policy
        )
        if refusal is not None:
            assert outcome == refusal
            assert not isinstance(outcome, Accepted | Rejected)
            assert not hasattr(outcome, "state")  # nothing a service could store
            assert self.stored is before
            if isinstance(outcome, LockedOut):
                assert outcome.retry_after > 0
                lapse = self.model.now + timedelta(seconds=outcome.retry_after)
                assert phase(before, now=lapse, policy=self.policy) is not Phase.ACCOUNT_LOCKED
            return outcome
        assert pending is not None
        # Evaluated: not locked, not spent, not expired.
        assert self.model.lock_until() is None
        assert pending.evaluated < self.policy.max_attempts
        assert self.model.now < pending.issued_at + self.policy.code_lifetime
        if plain == pending.plain:
            assert isinstance(outcome, Accepted), outcome
            assert pending.accepted == 0, "a code is accepted at most once"
            new = outcome.state
            assert new.code_hash is None
            assert new.failures == 0
            assert new.last_failure_at is None
            assert new.last_request_at == before.last_request_at
            self.store(new)
            pending.evaluated += 1
            pending.accepted += 1
            self.model.pending = None
            self.model.failures = 0
            self.model.last_failure_at = None
        else:
            assert isinstance(outcome, Rejected), outcome
            new = outcome.state
            pending.evaluated += 1
            assert outcome.remaining_attempts == self.policy.max_attempts - pending.evaluated
            assert new.failures == before.failures + 1
            assert new.last_failure_at == self.model.now
            assert new.code_hash == before.code_hash
            assert new.attempts == before.attempts + 1
            # ends_guessing says exactly whether the next guess is refused unevaluated.
            after = submit_guess(
                new,
                presented_hash=self.hash_of(pending.plain),
                now=self.model.now,
                policy=self.policy,
            )
            assert outcome.ends_guessing == isinstance(after, CodeSpent | LockedOut)
            self.store(new)
            self.model.failures += 1
            self.model.last_failure_at = self.model.now
        return outcome

    def unbound_guess(self, plain: str) -> GuessOutcome:
        before = self.stored
        pending = self.model.pending
        refusal = self.model.expected_unbound_refusal()
        outcome = submit_unbound_guess(
            before, presented_hash=self.hash_of(plain), now=self.model.now, policy=self.policy
        )
        if refusal is not None:
            assert outcome == refusal
            assert not hasattr(outcome, "state")
            return outcome
        assert pending is not None
        assert pending.unbound_evaluated < self.policy.max_attempts
        new = outcome.state if isinstance(outcome, Accepted | Rejected) else None
        assert new is not None, outcome
        assert new.attempts == before.attempts, "an unbound guess never touches the bound budget"
        if plain == pending.plain:
            assert isinstance(outcome, Accepted), outcome
            assert pending.accepted == 0, "a code is accepted at most once"
            assert new.code_hash is None
            assert new.failures == 0
            self.store(new)
            pending.unbound_evaluated += 1
            pending.accepted += 1
            self.model.pending = None
            self.model.failures = 0
            self.model.last_failure_at = None
        else:
            assert isinstance(outcome, Rejected), outcome
            pending.unbound_evaluated += 1
            assert (
                outcome.remaining_attempts == self.policy.max_attempts - pending.unbound_evaluated
            )
            assert new.failures == before.failures, "an unbound guess counts no failure"
            assert new.last_failure_at == before.last_failure_at
            assert new.unbound_attempts == before.unbound_attempts + 1
            self.store(new)
        return outcome

    # --- rules --------------------------------------------------------------------------

    @initialize(n=st.integers(min_value=0))
    def first_request(self, n: int) -> None:
        """Start most runs with a code out, so guesses have something to hit."""
        self.issue(self.code_from(n))

    @rule(n=st.integers(min_value=0))
    def request(self, n: int) -> None:
        """Issue (or resend: the same call replaces a pending code) a fresh random code."""
        self.issue(self.code_from(n))

    @rule(n=st.integers(min_value=0))
    def unbound_wrong_guess(self, n: int) -> None:
        """A guess with the address only (a reference-style client, or a stranger)."""
        plain = self.code_from(n)
        if self.model.pending is not None and plain == self.model.pending.plain:
            plain = self.code_from(n + 1)
        assert not isinstance(self.unbound_guess(plain), Accepted)

    @rule(ns=st.lists(st.integers(min_value=0), min_size=2, max_size=6))
    def unbound_wrong_guesses(self, ns: list[int]) -> None:
        """A stranger's burst of unbound guesses: spends only the unbound budget."""
        for n in ns:
            self.unbound_wrong_guess(n)

    @precondition(lambda self: self.model.pending is not None)
    @rule()
    def unbound_right_guess(self) -> None:
        """The right code without a binding logs in while the unbound budget lasts."""
        pending = self.model.pending
        assert pending is not None
        self.unbound_guess(pending.plain)

    @precondition(lambda self: self.model.pending is not None)
    @rule()
    def resend(self) -> None:
        """A resend while a code is pending; when allowed, the old code stops working."""
        old = self.model.pending
        assert old is not None
        self.issue(self.code_from(int(old.plain) + 1))
        if self.model.pending is not old:  # replaced: the new code differs by construction
            outcome = self.guess(old.plain)
            assert not isinstance(outcome, Accepted), "a replaced code never verifies"

    def wrong(self, n: int) -> None:
        plain = self.code_from(n)
        if self.model.pending is not None and plain == self.model.pending.plain:
            plain = self.code_from(n + 1)
        outcome = self.guess(plain)
        assert not isinstance(outcome, Accepted)

    @rule(n=st.integers(min_value=0))
    def wrong_guess(self, n: int) -> None:
        self.wrong(n)

    @rule(ns=st.lists(st.integers(min_value=0), min_size=2, max_size=4))
    def wrong_guesses(self, ns: list[int]) -> None:
        """A burst of wrong guesses, as a guessing attacker sends them (reaches the caps)."""
        for n in ns:
            self.wrong(n)

    @rule()
    def right_guess(self) -> None:
        """Guess the pending code or, when none is pending, replay the last one issued."""
        if self.model.pending is not None:
            self.guess(self.model.pending.plain)
        elif self.model.codes:
            outcome = self.guess(self.model.codes[-1].plain)
            assert not isinstance(outcome, Accepted), "a consumed code is never accepted again"
        else:
            assert self.guess(self.code_from(0)) == NoChallenge()

    @precondition(lambda self: len(self.model.codes) > 1)
    @rule(i=st.integers(min_value=0))
    def stale_guess(self, i: int) -> None:
        """Guess a code from an earlier issue; only the pending code can ever verify."""
        record = self.model.codes[i % len(self.model.codes)]
        outcome = self.guess(record.plain)
        if isinstance(outcome, Accepted):
            assert self.model.codes[-1].plain == record.plain

    @rule(
        step=st.one_of(
            st.integers(min_value=1, max_value=90).map(lambda s: timedelta(seconds=s)),
            st.sampled_from(["lifetime", "cooldown", "lockout", "resend_wait", "ready"]),
        ),
        nudge=st.sampled_from([timedelta(0), ONE_SECOND, -ONE_SECOND, timedelta(microseconds=1)]),
    )
    def advance_clock(self, step: timedelta | str, nudge: timedelta) -> None:
        """Small steps, and jumps to just before / at / just after each policy boundary."""
        if step == "ready":  # to the instant the model says issuing is allowed again
            moments = [self.model.lock_until(), self.model.ready_at()]
            target = max((m for m in moments if m is not None), default=self.model.now)
            step = max(timedelta(0), target - self.model.now + nudge)
        elif isinstance(step, str):
            base = {
                "lifetime": self.policy.code_lifetime,
                "cooldown": self.policy.resend_cooldown,
                "lockout": self.policy.lockout_duration,
                "resend_wait": resend_wait(self.model.failures, policy=self.policy),
            }[step]
            step = max(timedelta(0), base + nudge)
        self.model.now += step

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def guesses_per_code_bounded(self) -> None:
        for record in self.model.codes:
            assert record.evaluated <= self.policy.max_attempts
            assert record.unbound_evaluated <= self.policy.max_attempts
            assert record.accepted <= 1

    @invariant()
    def stored_matches_model(self) -> None:
        assert self.stored.version == self.model.version
        assert self.stored.failures == self.model.failures
        assert self.stored.last_failure_at == self.model.last_failure_at
        assert self.stored.last_request_at == self.model.last_request_at
        pending = self.model.pending
        assert self.stored.code_hash == (None if pending is None else self.hash_of(pending.plain))
        if pending is not None:
            assert self.stored.attempts == pending.evaluated
            assert self.stored.unbound_attempts == pending.unbound_evaluated
            assert self.stored.issued_at == pending.issued_at

    @invariant()
    def phase_matches_model(self) -> None:
        current = phase(self.stored, now=self.model.now, policy=self.policy)
        if self.model.lock_until() is not None:
            expected = Phase.ACCOUNT_LOCKED
        elif self.model.pending is None:
            expected = Phase.IDLE
        elif self.model.spent():
            expected = Phase.EXHAUSTED
        elif self.model.expired():
            expected = Phase.EXPIRED
        else:
            expected = Phase.PENDING
        assert current is expected

    @invariant()
    def clock_is_utc(self) -> None:
        assert self.model.now.tzinfo is UTC


class RoomierPolicyMachine(ChallengeMachine):
    """Two attempts per code, seven failures to the cap: the backoff steps come into play."""

    POLICY: ClassVar[Policy] = ROOMIER_POLICY


class DefaultPolicyMachine(ChallengeMachine):
    """The same rules under the shipped defaults (5 attempts, 100 failures, 24 h lockout)."""

    POLICY: ClassVar[Policy] = DEFAULT_POLICY


TestChallengeMachine = ChallengeMachine.TestCase
TestChallengeMachine.settings = RUN_SETTINGS
TestRoomierPolicyMachine = RoomierPolicyMachine.TestCase
TestRoomierPolicyMachine.settings = settings(RUN_SETTINGS, max_examples=75)
TestDefaultPolicyMachine = DefaultPolicyMachine.TestCase
TestDefaultPolicyMachine.settings = settings(RUN_SETTINGS, max_examples=40)


# --- NIST SP 800-63B: at most 100 consecutive failures, then no codes ------------------------


def _fail_until(policy: Policy, failures: int) -> tuple[ChallengeState, datetime]:
    """Drive ``failures`` consecutive wrong guesses through issue/guess cycles."""
    state = ChallengeState()
    now = START
    code_no = 0
    while state.failures < failures:
        if state.last_request_at is not None:
            now = max(now, state.last_request_at + resend_wait(state.failures, policy=policy))
        issued = request_code(
            state, code_hash=hash_code(SECRET, EMAIL, f"{code_no:06d}"), now=now, policy=policy
        )
        assert isinstance(issued, Issued), issued
        assert issued.state.failures == state.failures
        state = issued.state
        code_no += 1
        for _ in range(policy.max_attempts):
            if state.failures >= failures:
                break
            now += ONE_SECOND
            outcome = submit_guess(
                state, presented_hash=hash_code(SECRET, EMAIL, "wrong"), now=now, policy=policy
            )
            assert isinstance(outcome, Rejected), outcome
            state = outcome.state
    return state, now


def test_hundred_consecutive_failures_stop_issuing_until_lockout_passes() -> None:
    policy = DEFAULT_POLICY
    assert policy.max_failures == 100
    lockout = policy.lockout_duration

    # 99 failures: still allowed to get a code once the (long) backoff has passed.
    almost, t99 = _fail_until(policy, 99)
    assert almost.failures == 99
    assert phase(almost, now=t99, policy=policy) is not Phase.ACCOUNT_LOCKED

    state, t_last = _fail_until(policy, 100)
    assert state.failures == 100
    assert state.last_failure_at == t_last
    assert phase(state, now=t_last, policy=policy) is Phase.ACCOUNT_LOCKED

    new_hash = hash_code(SECRET, EMAIL, "123456")
    full = int(lockout.total_seconds())
    for offset, retry in [
        (timedelta(0), full),
        (timedelta(hours=1), full - 3600),
        (lockout - ONE_SECOND, 1),
        (lockout - timedelta(microseconds=1), 1),
    ]:
        at = t_last + offset
        assert request_code(state, code_hash=new_hash, now=at, policy=policy) == LockedOut(
            retry_after=retry
        )
        # No guess is evaluated while locked, not even the right one.
        assert submit_guess(
            state, presented_hash=state.code_hash or new_hash, now=at, policy=policy
        ) == LockedOut(retry_after=retry)

    at = t_last + lockout
    issued = request_code(state, code_hash=new_hash, now=at, policy=policy)
    assert isinstance(issued, Issued)
    assert issued.state.failures == 100  # the lapse does not forgive the failures
    after = issued.state

    # At the cap, one code per lockout_duration even after the lock lapsed.
    assert request_code(after, code_hash=new_hash, now=at + ONE_SECOND, policy=policy) == Cooldown(
        retry_after=full - 1
    )

    # One more wrong guess locks the account again straight away.
    wrong = submit_guess(
        after,
        presented_hash=hash_code(SECRET, EMAIL, "000000"),
        now=at + ONE_SECOND,
        policy=policy,
    )
    assert isinstance(wrong, Rejected)
    assert phase(wrong.state, now=at + ONE_SECOND, policy=policy) is Phase.ACCOUNT_LOCKED

    # Whereas the right guess resets the count (NIST: only success resets it).
    right = submit_guess(after, presented_hash=new_hash, now=at + ONE_SECOND, policy=policy)
    assert isinstance(right, Accepted)
    assert right.state.failures == 0
    assert right.state.last_failure_at is None
