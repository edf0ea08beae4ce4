"""Session flows of issue 10 on the memory store: the grace window, lifetimes, the mirror
after many refreshes, hosts with skewed clocks, and the session list."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from otpcore.domain.errors import (
    RefreshReused,
    SessionNotFound,
    TokenExpired,
    TokenInvalid,
    TokenRevoked,
)
from otpcore.domain.events import AuthEvent, LoggedOut, RefreshReuseDetected, RefreshRotated
from otpcore.domain.policy import Policy
from otpcore.domain.sessions import successor_jti
from otpcore.service import Login, OTPAuth, SessionView
from otpcore.stores.memory import MemoryStore, MemoryUser
from otpcore.testing import FakeClock
from tests.interleave import Interleaving

SECRET = b"session-flow-secret-session-flow"


class Inbox:
    def __init__(self) -> None:
        self.codes: dict[str, str] = {}

    async def __call__(self, email: str, code: str) -> None:
        self.codes[email] = code


class Host:
    """One service instance (a host or worker) over a shared store, with its own clock."""

    def __init__(self, store: Any, clock: FakeClock, inbox: Inbox, **policy: Any) -> None:
        self.clock = clock
        self.events: list[AuthEvent] = []
        settings: dict[str, Any] = {"secret": SECRET, "resend_cooldown": timedelta(0)}
        settings.update(policy)
        self.auth: OTPAuth[MemoryUser] = OTPAuth(
            policy=Policy(**settings),
            store=store,
            sender=inbox,
            clock=clock,
            events=self.events.append,
        )
        self.inbox = inbox

    async def login(self, email: str = "user@example.com", **client: str) -> Login[MemoryUser]:
        # Each code request on its own millisecond: "the newest code" is then unambiguous.
        self.clock.advance(timedelta(milliseconds=1))
        await self.auth.request_code(email)
        return await self.auth.verify_code(email, self.inbox.codes[email], **client)

    def refresh_jti(self, login: Login[Any]) -> str:
        return self.auth.codec.verify(login.refresh_token, kind="refresh", now=self.clock()).jti


def host(**policy: Any) -> Host:
    return Host(MemoryStore(), FakeClock(), Inbox(), **policy)


# --- the grace window ------------------------------------------------------------------------


async def test_five_concurrent_refreshes_all_succeed_with_one_successor() -> None:
    store = Interleaving(MemoryStore())
    h = Host(store, FakeClock(), Inbox())
    login = await h.login()
    outcomes = await asyncio.gather(*(h.auth.refresh(login.refresh_token) for _ in range(5)))
    assert {h.refresh_jti(o) for o in outcomes} == {successor_jti(SECRET, login.sid, 1)}
    assert store.rotated == 1
    # The session lives on: every pair works, and the successor rotates on.
    for outcome in outcomes:
        await h.auth.authenticate(outcome.access_token)
    h.clock.advance(1)
    nxt = await h.auth.refresh(outcomes[3].refresh_token)
    assert h.refresh_jti(nxt) == successor_jti(SECRET, login.sid, 2)
    assert [type(e) for e in h.events].count(RefreshRotated) == 2


async def test_the_same_token_twelve_seconds_later_ends_the_session() -> None:
    h = host()
    login = await h.login()
    rotated = await h.auth.refresh(login.refresh_token)
    h.clock.advance(12)
    with pytest.raises(RefreshReused):
        await h.auth.refresh(login.refresh_token)
    for token in (login.access_token, rotated.access_token):
        with pytest.raises(TokenRevoked):
            await h.auth.authenticate(token)
        with pytest.raises(TokenRevoked):
            await h.auth.authenticate_claims(token)
    with pytest.raises(TokenRevoked):
        await h.auth.refresh(rotated.refresh_token)
    assert any(isinstance(e, RefreshReuseDetected) for e in h.events)
    assert await h.auth.store.list_sessions(login.user_id, now=h.clock()) == []  # type: ignore[union-attr]


async def test_fifty_concurrent_refreshes_rotate_exactly_once() -> None:
    store = Interleaving(MemoryStore())
    h = Host(store, FakeClock(), Inbox())
    login = await h.login()
    outcomes = await asyncio.gather(*(h.auth.refresh(login.refresh_token) for _ in range(50)))
    assert store.rotated == 1
    assert len({h.refresh_jti(o) for o in outcomes}) == 1
    session = await store.store.find_session(login.sid)
    assert session is not None
    assert session.generation == 1


async def test_a_grace_answer_is_bounded_like_the_rotation_it_repeats() -> None:
    h = host()
    login = await h.login()
    first = await h.auth.refresh(login.refresh_token)
    h.clock.advance(5)
    again = await h.auth.refresh(login.refresh_token)
    assert h.refresh_jti(again) == h.refresh_jti(first)
    assert again.refresh_expires_at <= first.refresh_expires_at + timedelta(seconds=5)
    session = await h.auth.store.find_session(login.sid)  # type: ignore[union-attr]
    assert session is not None
    assert session.generation == 1
    assert session.last_used_at == first.access_expires_at - h.auth.policy.access_lifetime


async def test_strict_mode_refuses_even_an_immediate_repeat() -> None:
    h = host(refresh_grace=timedelta(0))
    login = await h.login()
    await h.auth.refresh(login.refresh_token)
    with pytest.raises(RefreshReused):
        await h.auth.refresh(login.refresh_token)


async def test_only_the_immediate_predecessor_gets_the_grace() -> None:
    h = host()
    login = await h.login()
    second = await h.auth.refresh(login.refresh_token)
    await h.auth.refresh(second.refresh_token)
    with pytest.raises(RefreshReused):  # generation 0 while the session is at 2
        await h.auth.refresh(login.refresh_token)


# --- lifetimes -------------------------------------------------------------------------------

LIFETIMES = {
    "access_lifetime": timedelta(minutes=15),
    "refresh_lifetime": timedelta(days=7),
    "session_lifetime": timedelta(days=30),
    "idle_timeout": timedelta(days=2),
}


async def test_no_refresh_extends_a_session_past_its_absolute_lifetime() -> None:
    h = host(**LIFETIMES)
    login = await h.login()
    end = h.clock() + timedelta(days=30)
    current = login
    while True:
        h.clock.advance(timedelta(days=1, hours=23))  # inside the idle timeout every time
        try:
            current = await h.auth.refresh(current.refresh_token)
        except TokenExpired:
            break
        assert current.refresh_expires_at <= end
        assert current.access_expires_at <= end
        claims = h.auth.codec.verify(current.refresh_token, kind="refresh", now=h.clock())
        assert claims.exp <= end.timestamp()
    assert h.clock() >= end
    assert h.clock() - end < timedelta(days=2)


async def test_a_session_idle_past_its_timeout_ends() -> None:
    h = host(**LIFETIMES)
    login = await h.login()
    assert login.refresh_expires_at == h.clock() + timedelta(days=2)
    h.clock.advance(timedelta(days=2, seconds=1))  # inside the leeway: the session decides
    with pytest.raises(TokenExpired):
        await h.auth.refresh(login.refresh_token)
    h.clock.advance(timedelta(minutes=1))  # past the leeway: the token itself is expired
    with pytest.raises(TokenExpired):
        await h.auth.refresh(login.refresh_token)


async def test_a_refresh_moves_the_idle_end_but_not_the_start() -> None:
    h = host(**LIFETIMES)
    login = await h.login("idle@example.com", user_agent="UA", ip="198.51.100.7")
    created = h.clock()
    h.clock.advance(timedelta(minutes=10))
    await h.auth.authenticate(login.access_token)  # an access never counts as use
    await h.auth.authenticate_claims(login.access_token)
    [view] = await h.auth.list_sessions(login.access_token)
    assert view.last_used_at == created
    h.clock.advance(timedelta(days=1))
    rotated = await h.auth.refresh(login.refresh_token)
    assert rotated.refresh_expires_at == h.clock() + timedelta(days=2)
    [view] = await h.auth.list_sessions(rotated.access_token)
    assert view == SessionView(
        id=login.sid,
        current=True,
        created_at=created,
        last_used_at=h.clock(),
        user_agent="UA",
        ip="198.51.100.7",
    )


# --- the mirror ------------------------------------------------------------------------------


async def test_twenty_thousand_refreshes_leave_the_mirror_and_the_store_as_they_were() -> None:
    h = host()
    login = await h.login()
    await h.auth.authenticate_claims(login.access_token)
    store = h.auth.store
    assert isinstance(store, MemoryStore)
    before = len(await store.revocations_since(h.clock() - timedelta(days=365), now=h.clock()))
    current = login
    for _ in range(20_000):
        current = await h.auth.refresh(current.refresh_token)
    h.clock.advance(1)
    await h.auth.authenticate_claims(current.access_token)
    after = await store.revocations_since(h.clock() - timedelta(days=365), now=h.clock())
    assert len(after) == before == 0
    assert len(h.auth.mirror) == 0
    fresh = Host(store, h.clock, h.inbox)  # a new worker loads everything at once
    await fresh.auth.authenticate_claims(current.access_token)
    assert len(fresh.auth.mirror) == 0


# --- hosts whose clocks disagree -------------------------------------------------------------


def two_hosts(skew: float, **policy: Any) -> tuple[Host, Host]:
    """A host on time and one whose clock is ``skew`` seconds behind, over one store."""
    store, inbox = MemoryStore(), Inbox()
    on_time = FakeClock()
    lagging = FakeClock(on_time() - timedelta(seconds=skew))
    return Host(store, on_time, inbox, **policy), Host(store, lagging, inbox, **policy)


def tick(*hosts: Host, seconds: float = 1) -> None:
    for h in hosts:
        h.clock.advance(seconds)


async def assert_refused_everywhere(host: Host, login: Login[Any]) -> None:
    with pytest.raises(TokenRevoked):
        await host.auth.authenticate(login.access_token)
    with pytest.raises(TokenRevoked):
        await host.auth.authenticate_claims(login.access_token)
    with pytest.raises(TokenRevoked):
        await host.auth.refresh(login.refresh_token)


@pytest.mark.parametrize("how", ["refresh_token", "access_token", "revoke_session", "all"])
async def test_a_logout_on_a_host_five_seconds_slow_revokes_on_every_route(how: str) -> None:
    on_time, slow = two_hosts(5)
    login = await on_time.login()
    await on_time.auth.authenticate_claims(login.access_token)  # the mirror is warm
    keeper = await on_time.login()
    tick(on_time, slow, seconds=0.5)
    if how == "refresh_token":
        assert await slow.auth.logout(login.refresh_token) is True
    elif how == "access_token":
        assert await slow.auth.logout(access_token=login.access_token) is True
    elif how == "revoke_session":
        await slow.auth.revoke_session(keeper.access_token, login.sid)
    else:
        await slow.auth.logout_all(keeper.access_token)
    tick(on_time, slow)
    await assert_refused_everywhere(on_time, login)
    await assert_refused_everywhere(slow, login)


async def test_the_mirror_reads_back_past_the_leeway() -> None:
    # 20 s of lag is outside the mirror's 10 s overlap alone; the 30 s leeway covers it.
    on_time, slow = two_hosts(20)
    login = await on_time.login()
    await on_time.auth.authenticate_claims(login.access_token)
    tick(on_time, slow, seconds=0.5)
    assert await slow.auth.logout(access_token=login.access_token) is True
    tick(on_time, slow)
    with pytest.raises(TokenRevoked):
        await on_time.auth.authenticate_claims(login.access_token)


async def test_tokens_from_a_host_five_seconds_fast_are_accepted() -> None:
    on_time, slow = two_hosts(5)
    login = await on_time.login()  # iat is 5 s ahead of the slow host's clock
    await slow.auth.authenticate(login.access_token)
    await slow.auth.authenticate_claims(login.access_token)
    assert (await slow.auth.refresh(login.refresh_token)).sid == login.sid


# --- listing and ending sessions -------------------------------------------------------------


async def test_verify_records_the_client_truncated() -> None:
    h = host()
    login = await h.login(user_agent="X" * 500, ip="203.0.113.9")
    [view] = await h.auth.list_sessions(login.access_token)
    assert view.user_agent == "X" * 256
    assert view.ip == "203.0.113.9"
    assert view.current is True


async def test_revoking_the_current_session_ends_the_caller_too() -> None:
    h = host()
    login = await h.login()
    assert await h.auth.revoke_session(login.access_token, login.sid) is True
    with pytest.raises(TokenRevoked):
        await h.auth.list_sessions(login.access_token)
    with pytest.raises(TokenRevoked):
        await h.auth.refresh(login.refresh_token)
    assert [e.sid for e in h.events if isinstance(e, LoggedOut)] == [login.sid]


async def test_session_calls_refuse_a_bad_or_revoked_token() -> None:
    h = host()
    login = await h.login()
    other = await h.login()
    for call in (
        h.auth.list_sessions("garbage"),
        h.auth.revoke_session(login.refresh_token, other.sid),
        h.auth.revoke_other_sessions(login.refresh_token),
    ):
        with pytest.raises(TokenInvalid):
            await call
    await h.auth.logout(login.refresh_token)
    with pytest.raises(TokenRevoked):
        await h.auth.revoke_other_sessions(login.access_token)
    assert len(await h.auth.list_sessions(other.access_token)) == 1


async def test_an_expired_session_cannot_be_revoked_or_listed() -> None:
    h = host(**LIFETIMES)
    old = await h.login()
    h.clock.advance(timedelta(days=2, minutes=1))
    current = await h.login()
    assert [v.id for v in await h.auth.list_sessions(current.access_token)] == [current.sid]
    with pytest.raises(SessionNotFound):
        await h.auth.revoke_session(current.access_token, old.sid)


async def test_logout_ends_the_record_and_purge_removes_it() -> None:
    h = host()
    login = await h.login()
    other = await h.login()
    assert await h.auth.logout(login.refresh_token) is True
    assert [v.id for v in await h.auth.list_sessions(other.access_token)] == [other.sid]
    store = h.auth.store
    assert isinstance(store, MemoryStore)
    ended = await store.find_session(login.sid)
    assert ended is not None
    assert ended.ended_at == h.clock()
    await h.auth.purge_expired()
    assert await store.find_session(login.sid) is None
    assert await store.find_session(other.sid) is not None
    with pytest.raises(TokenRevoked):
        await h.auth.refresh(login.refresh_token)
