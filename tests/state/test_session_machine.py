"""Stateful property test of the session lifecycle (issue 10) against a simple model.

Hypothesis drives :class:`otpcore.service.OTPAuth` over the memory store (with a scheduling
point before every store call, so concurrent refreshes interleave as on a database): login,
refresh with the current, the previous or an older token, concurrent refreshes, revoke one
session, log out the others, log out everywhere, log out, access checks on both paths, and a
fake clock crossing the grace window, the idle timeout and the absolute lifetime. Every
outcome is checked against a model written from the rules in ``otpcore.domain.sessions``;
after every step the stored records must match the model and no session may end later than
its absolute or idle limit. Hypothesis has no async rules, so each rule runs its calls to
completion on the machine's own event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from otpcore.domain.errors import (
    OTPAuthError,
    RefreshReused,
    SessionNotFound,
    TokenExpired,
    TokenRevoked,
)
from otpcore.domain.limits import Limits
from otpcore.domain.policy import Policy
from otpcore.domain.sessions import successor_jti
from otpcore.service import Login, OTPAuth
from otpcore.stores.memory import MemoryStore
from otpcore.testing import FakeClock
from tests.interleave import Interleaving

T = TypeVar("T")

SECRET = b"session-machine-secret-0123456789abcdef"
USERS = ("alice@example.com", "bob@example.com")
POLICY = Policy(
    secret=SECRET,
    access_lifetime=timedelta(minutes=5),
    refresh_lifetime=timedelta(minutes=40),
    idle_timeout=timedelta(minutes=30),
    session_lifetime=timedelta(minutes=50),
    refresh_grace=timedelta(seconds=10),
    leeway=timedelta(0),  # exact expiry, so the model can name every outcome
    resend_cooldown=timedelta(0),
)
# Steps that land inside and just past the grace window, the access lifetime, the idle
# timeout and the refresh lifetime; two 20-minute steps with refreshes between reach the
# absolute lifetime.
STEPS = (1, 5, 9, 10, 11, 60, 299, 301, 1_201, 1_799, 1_801, 2_401)


class Inbox:
    def __init__(self) -> None:
        self.codes: dict[str, str] = {}

    async def __call__(self, email: str, code: str) -> None:
        self.codes[email] = code


@dataclass(slots=True)
class ModelSession:
    sid: str
    user: str
    created: datetime
    generation: int
    rotated_at: datetime
    expires_at: datetime
    refresh: dict[int, tuple[str, int]]  # generation -> (token, exp)
    access: tuple[str, int]
    ended: bool = False
    grace_jtis: set[str] = field(default_factory=set)


def _exp(at: datetime) -> int:
    return int(at.timestamp())


class SessionMachine(RuleBasedStateMachine):
    sessions = Bundle("sessions")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.inbox = Inbox()
        self.memory = MemoryStore()
        self.store = Interleaving(self.memory)
        self.auth: OTPAuth[Any] = OTPAuth(
            policy=POLICY,
            store=self.store,
            sender=self.inbox,
            clock=self.clock,
            # Logs in far more often than the default per-mailbox send limit allows (issue 8).
            limits=Limits.unlimited(),
        )
        self.model: dict[str, ModelSession] = {}

    def teardown(self) -> None:
        self.loop.close()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)

    def outcome(self, work: Coroutine[Any, Any, T]) -> T | OTPAuthError:
        try:
            return self.run(work)
        except OTPAuthError as exc:
            return exc

    # -- the model's answers -----------------------------------------------------------------

    def now_ts(self) -> float:
        return self.clock().timestamp()

    def active(self, m: ModelSession) -> bool:
        return not m.ended and m.expires_at > self.clock()

    def end(self, m: ModelSession) -> None:
        """The store ends an active session: ended now, and its expiry moves to now (so the
        purge finds it by expiry alone); an ended one is left as it is."""
        if self.active(m):
            m.expires_at = min(m.expires_at, self.clock())
        m.ended = True

    def access_refusal(self, m: ModelSession) -> type[OTPAuthError] | None:
        if m.access[1] <= self.now_ts():
            return TokenExpired
        return TokenRevoked if m.ended else None

    def absorb(self, m: ModelSession, login: Login[Any], generation: int) -> None:
        m.refresh.setdefault(generation, (login.refresh_token, _exp(login.refresh_expires_at)))
        m.access = (login.access_token, _exp(login.access_expires_at))
        assert login.refresh_expires_at <= m.expires_at
        assert login.access_expires_at <= m.expires_at

    # -- rules -------------------------------------------------------------------------------

    @initialize(target=sessions)
    def first_login(self) -> str:
        return self.open(USERS[0])

    @rule(target=sessions, user=st.sampled_from(USERS))
    def login(self, user: str) -> str:
        return self.open(user)

    def open(self, user: str) -> str:
        # A millisecond apart: after a logout-all in the same millisecond a login would be
        # inside the cutoff, and "the newest code" would be ambiguous.
        self.clock.advance(timedelta(milliseconds=1))
        self.run(self.auth.request_code(user))
        login = self.run(self.auth.verify_code(user, self.inbox.codes[user], user_agent="UA"))
        now = self.clock()
        m = ModelSession(
            sid=login.sid,
            user=user,
            created=now,
            generation=0,
            rotated_at=now,
            expires_at=min(now + POLICY.session_lifetime, now + POLICY.session_idle_timeout),
            refresh={},
            access=("", 0),
        )
        self.absorb(m, login, 0)
        self.model[login.sid] = m
        return login.sid

    @rule(seconds=st.sampled_from(STEPS))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    def expected_refresh(self, m: ModelSession, generation: int) -> str:
        now = self.clock()
        if m.refresh[generation][1] <= now.timestamp():
            return "expired"
        # Before the session's expiry: ending a session moves its expiry to the end.
        if m.ended:
            return "revoked"
        if m.expires_at <= now:
            return "expired"
        if generation == m.generation:
            return "rotate"
        if generation == m.generation - 1 and now - m.rotated_at <= POLICY.refresh_grace:
            return "grace"
        return "reused"

    def rotate_model(self, m: ModelSession) -> None:
        now = self.clock()
        m.generation += 1
        m.rotated_at = now
        absolute = m.created + POLICY.session_lifetime
        m.expires_at = min(absolute, now + POLICY.session_idle_timeout)

    def present(self, m: ModelSession, generation: int) -> None:
        expected = self.expected_refresh(m, generation)
        event(f"refresh: {expected}")
        rotations = self.store.rotated
        result = self.outcome(self.auth.refresh(m.refresh[generation][0]))
        match expected:
            case "expired":
                assert isinstance(result, TokenExpired), result
            case "revoked":
                assert isinstance(result, TokenRevoked), result
            case "reused":
                assert isinstance(result, RefreshReused), result
                self.end(m)
            case "rotate":
                assert isinstance(result, Login), result
                assert self.store.rotated == rotations + 1
                self.rotate_model(m)
                self.absorb(m, result, m.generation)
            case "grace":
                assert isinstance(result, Login), result
                assert self.store.rotated == rotations  # no write
                self.absorb(m, result, m.generation)
        if isinstance(result, Login):
            jti = self.auth.codec.verify(result.refresh_token, kind="refresh", now=self.clock()).jti
            assert jti == successor_jti(SECRET, m.sid, m.generation)

    @rule(sid=sessions)
    def refresh(self, sid: str) -> None:
        m = self.model[sid]
        self.present(m, m.generation)

    @rule(sid=sessions, back=st.sampled_from([1, 2]), after=st.sampled_from([0, 5, 10, 11, 60]))
    def replay(self, sid: str, back: int, after: int) -> None:
        """An older token again, inside or after the grace window: a second tab, a retry
        after a lost response, or a thief."""
        m = self.model[sid]
        if m.generation - back < 0:
            self.present(m, m.generation)  # rotate first, so there is something to replay
        if m.generation - back < 0:
            return
        self.clock.advance(after)
        self.present(m, m.generation - back)

    @rule(sid=sessions, count=st.integers(min_value=2, max_value=6))
    def concurrent_refresh(self, sid: str, count: int) -> None:
        m = self.model[sid]
        expected = self.expected_refresh(m, m.generation)
        token = m.refresh[m.generation][0]
        rotations = self.store.rotated

        async def together() -> list[Any]:
            calls = [self.auth.refresh(token) for _ in range(count)]
            return list(await asyncio.gather(*calls, return_exceptions=True))

        results = self.run(together())
        event(f"concurrent refresh: {expected}")
        if expected == "rotate":
            assert all(isinstance(r, Login) for r in results), results
            assert self.store.rotated == rotations + 1  # exactly one per generation
            self.rotate_model(m)
            jtis = {
                self.auth.codec.verify(r.refresh_token, kind="refresh", now=self.clock()).jti
                for r in results
            }
            assert jtis == {successor_jti(SECRET, sid, m.generation)}
            self.absorb(m, results[0], m.generation)
        else:
            refusal = {"expired": TokenExpired, "revoked": TokenRevoked}[expected]
            assert all(isinstance(r, refusal) for r in results), results
            assert self.store.rotated == rotations

    def caller_refused(self, caller: ModelSession, result: object) -> bool:
        refusal = self.access_refusal(caller)
        if refusal is None:
            return False
        assert isinstance(result, refusal), result
        return True

    @rule(caller=sessions, victim=sessions)
    def revoke_one(self, caller: str, victim: str) -> None:
        c, t = self.model[caller], self.model[victim]
        result = self.outcome(self.auth.revoke_session(c.access[0], victim))
        if self.caller_refused(c, result):
            return
        event(f"revoke one: {'own' if t.user == c.user else 'other user'}")
        if t.user == c.user and self.active(t):
            # True exactly when the caller ended its own session (a binding clears its cookie).
            assert result is (victim == caller), (result, victim, caller)
            self.end(t)
        else:
            assert isinstance(result, SessionNotFound), result

    @rule(caller=sessions)
    def logout_others(self, caller: str) -> None:
        c = self.model[caller]
        result = self.outcome(self.auth.revoke_other_sessions(c.access[0]))
        if self.caller_refused(c, result):
            return
        others = [
            m for m in self.model.values() if m.user == c.user and m is not c and self.active(m)
        ]
        assert result == len(others)
        for m in others:
            self.end(m)

    @rule(caller=sessions)
    def logout_all(self, caller: str) -> None:
        c = self.model[caller]
        result = self.outcome(self.auth.logout_all(c.access[0]))
        if self.caller_refused(c, result):
            return
        assert result is None, result
        for m in self.model.values():
            if m.user == c.user and self.active(m):
                self.end(m)

    @rule(sid=sessions, with_refresh=st.booleans())
    def logout(self, sid: str, with_refresh: bool) -> None:
        m = self.model[sid]
        token, exp = m.refresh[m.generation] if with_refresh else m.access
        if with_refresh:
            result = self.run(self.auth.logout(token))
        else:
            result = self.run(self.auth.logout(access_token=token))
        valid = exp > self.now_ts()
        assert result is (valid and not m.ended), (result, valid, m.ended)
        if valid:
            self.end(m)

    @rule(sid=sessions)
    def check_access(self, sid: str) -> None:
        m = self.model[sid]
        refusal = self.access_refusal(m)
        self.run(self.auth.refresh_mirror(force=True))
        for check in (self.auth.authenticate, self.auth.authenticate_claims):
            result = self.outcome(check(m.access[0]))
            if refusal is None:
                assert not isinstance(result, OTPAuthError), result
            else:
                assert isinstance(result, refusal), result

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def records_match_the_model(self) -> None:
        for m in self.model.values():
            stored = self.run(self.memory.find_session(m.sid))
            assert stored is not None
            assert stored.generation == m.generation
            assert (stored.ended_at is not None) == m.ended
            assert stored.expires_at == m.expires_at
            # No refresh extends a session past its absolute or idle limit.
            assert stored.expires_at <= stored.created_at + POLICY.session_lifetime
            assert stored.expires_at <= stored.last_used_at + POLICY.session_idle_timeout

    @invariant()
    def each_user_lists_exactly_their_active_sessions(self) -> None:
        for user in USERS:
            mine = [m for m in self.model.values() if m.user == user and self.active(m)]
            if not mine:
                continue
            owner = self.run(self.memory.find_by_email(user))
            assert owner is not None
            listed = self.run(self.memory.list_sessions(owner.user_id, now=self.clock()))
            expected = sorted(mine, key=lambda m: m.created, reverse=True)
            assert [s.sid for s in listed] == [m.sid for m in expected]


TestSessionMachine = SessionMachine.TestCase
TestSessionMachine.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
