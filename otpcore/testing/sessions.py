"""The session contract: the cases every storage backend must pass for session records.

:class:`SessionContract` holds the :class:`~otpcore.ports.SessionStore` methods to their
documented atomic behaviour (the compare-and-set on the refresh generation above all) and
proves the refresh guarantees of issue 10 on top of them: concurrent refreshes of one token
all get the same successor and exactly one rotation is stored; the same token after the
grace window ends the session; a user can list and end only their own sessions. Subclass
it in a pytest module with a ``backend`` fixture, as for
:class:`otpcore.testing.contract.StoreContract`.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from otpcore.domain.errors import OTPAuthError, RefreshReused, SessionNotFound, TokenRevoked
from otpcore.domain.policy import Policy
from otpcore.domain.records import SessionRecord
from otpcore.ports import Store
from otpcore.service import Login, OTPAuth
from otpcore.testing.clock import FakeClock
from otpcore.testing.contract import Backend

__all__ = ["SessionContract"]

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
_DAY = timedelta(days=1)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _session(sid: str, user_id: str = "1", *, at: float = 0, ttl: float = 86_400) -> SessionRecord:
    return SessionRecord(
        sid=sid,
        user_id=user_id,
        created_at=_at(at),
        last_used_at=_at(at),
        rotated_at=_at(at),
        generation=0,
        user_agent="Mozilla/5.0 (contract)",
        ip="2001:db8::1",
        expires_at=_at(at + ttl),
    )


class _Inbox:
    def __init__(self) -> None:
        self.codes: dict[str, str] = {}

    async def __call__(self, email: str, code: str) -> None:
        self.codes[email] = code


async def _login(auth: OTPAuth[Any], inbox: _Inbox, store: Store[Any], email: str) -> Login[Any]:
    bound = auth.with_store(store)
    await bound.request_code(email)
    return await bound.verify_code(email, inbox.codes[email], user_agent="UA", ip="192.0.2.1")


async def _in_handles(backend: Backend, count: int, work: Any) -> list[Any]:
    async def one(index: int) -> Any:
        async with backend.store() as store:
            try:
                return await work(store, index)
            except OTPAuthError as exc:
                return exc

    return list(await asyncio.gather(*(one(i) for i in range(count))))


class SessionContract:
    """Session records and the refresh they carry, on each backend."""

    # -- the port -------------------------------------------------------------------------

    async def test_open_then_find_round_trips(self, backend: Backend) -> None:
        session = _session("sid-a")
        async with backend.store() as store:
            await store.open_session(session)
            assert await store.find_session("sid-a") == session
            assert await store.find_session("sid-unknown") is None
            found = await store.find_session("sid-a")
            assert found is not None
            for value in (found.created_at, found.last_used_at, found.expires_at):
                assert value.utcoffset() == timedelta(0)

    async def test_rotate_is_a_compare_and_set_on_the_generation(self, backend: Backend) -> None:
        async with backend.store() as store:
            await store.open_session(_session("sid-a"))
            assert not await store.rotate_session(
                "sid-a", expected_generation=1, now=_at(5), expires_at=_at(99)
            )
            assert await store.rotate_session(
                "sid-a", expected_generation=0, now=_at(5), expires_at=_at(999)
            )
            assert not await store.rotate_session(
                "sid-a", expected_generation=0, now=_at(6), expires_at=_at(999)
            )
            assert not await store.rotate_session(
                "sid-unknown", expected_generation=0, now=_at(6), expires_at=_at(999)
            )
            rotated = await store.find_session("sid-a")
        assert rotated == replace(
            _session("sid-a"),
            generation=1,
            rotated_at=_at(5),
            last_used_at=_at(5),
            expires_at=_at(999),
        )

    async def test_an_ended_or_expired_session_never_rotates(self, backend: Backend) -> None:
        async with backend.store() as store:
            await store.open_session(_session("sid-ended"))
            await store.open_session(_session("sid-expired", ttl=10))
            assert await store.end_sessions("1", now=_at(1), only="sid-ended") == ["sid-ended"]
            assert not await store.rotate_session(
                "sid-ended", expected_generation=0, now=_at(2), expires_at=_at(99)
            )
            assert not await store.rotate_session(
                "sid-expired", expected_generation=0, now=_at(10), expires_at=_at(99)
            )
            ended = await store.find_session("sid-ended")
            assert ended is not None
            assert ended.ended_at == _at(1)
            assert ended.generation == 0

    async def test_concurrent_rotations_of_one_generation_have_one_winner(
        self, backend: Backend
    ) -> None:
        async with backend.store() as store:
            await store.open_session(_session("sid-race"))

        async def rotate(store: Store[Any], index: int) -> bool:
            return await store.rotate_session(
                "sid-race", expected_generation=0, now=_at(1 + index / 1000), expires_at=_at(999)
            )

        outcomes = await _in_handles(backend, 20, rotate)
        assert outcomes.count(True) == 1
        assert outcomes.count(False) == 19
        async with backend.store() as store:
            found = await store.find_session("sid-race")
        assert found is not None
        assert found.generation == 1

    async def test_list_is_the_users_active_sessions_newest_first(self, backend: Backend) -> None:
        async with backend.store() as store:
            await store.open_session(_session("old", at=0))
            await store.open_session(_session("new", at=10))
            await store.open_session(_session("mid", at=5))
            await store.open_session(_session("short", at=1, ttl=20))
            await store.open_session(_session("ended", at=2))
            await store.open_session(_session("theirs", user_id="2", at=3))
            await store.end_sessions("1", now=_at(11), only="ended")
            listed = await store.list_sessions("1", now=_at(21))
        assert [s.sid for s in listed] == ["new", "mid", "old"]

    async def test_end_one_all_but_one_or_all(self, backend: Backend) -> None:
        async with backend.store() as store:
            for sid in ("a", "b", "c", "d"):
                await store.open_session(_session(sid))
            await store.open_session(_session("theirs", user_id="2"))
            assert await store.end_sessions("1", now=_at(1), only="theirs") == []
            assert await store.end_sessions("1", now=_at(1), only="a") == ["a"]
            assert await store.end_sessions("1", now=_at(2), only="a") == []
            assert sorted(await store.end_sessions("1", now=_at(3), keep="b")) == ["c", "d"]
            assert await store.end_sessions("1", now=_at(4)) == ["b"]
            assert await store.end_sessions("1", now=_at(5)) == []
            assert [s.sid for s in await store.list_sessions("2", now=_at(5))] == ["theirs"]
            c = await store.find_session("c")
            assert c is not None
            assert c.ended_at == _at(3)

    async def test_purge_removes_ended_and_expired_sessions_only(self, backend: Backend) -> None:
        async with backend.store() as store:
            await store.open_session(_session("live"))
            await store.open_session(_session("ended"))
            await store.open_session(_session("expired", ttl=10))
            await store.end_sessions("1", now=_at(1), only="ended")
            await store.purge_expired(_at(10))
            assert await store.find_session("ended") is None
            assert await store.find_session("expired") is None
            assert await store.find_session("live") is not None

    # -- the refresh on top of it ------------------------------------------------------------

    async def test_concurrent_refreshes_get_one_successor_and_one_rotation(
        self, backend: Backend
    ) -> None:
        clock, inbox = FakeClock(), _Inbox()
        auth: OTPAuth[Any] = OTPAuth(
            policy=Policy(secret=b"s" * 32), store=None, sender=inbox, clock=clock
        )
        async with backend.store() as store:
            login = await _login(auth, inbox, store, "tabs@example.com")

        async def refresh(store: Store[Any], _: int) -> Login[Any]:
            return await auth.with_store(store).refresh(login.refresh_token)

        outcomes = await _in_handles(backend, 5, refresh)
        assert all(isinstance(o, Login) for o in outcomes), outcomes
        successors = {
            auth.codec.verify(o.refresh_token, kind="refresh", now=clock()).jti for o in outcomes
        }
        assert len(successors) == 1
        async with backend.store() as store:
            session = await store.find_session(login.sid)
            assert session is not None
            assert session.generation == 1  # one rotation, whatever the interleaving
            bound = auth.with_store(store)
            for outcome in outcomes:
                await bound.authenticate(outcome.access_token)
            clock.advance(1)
            assert (await bound.refresh(outcomes[0].refresh_token)).sid == login.sid

    async def test_fifty_concurrent_refreshes_store_exactly_one_rotation(
        self, backend: Backend
    ) -> None:
        clock, inbox = FakeClock(), _Inbox()
        auth: OTPAuth[Any] = OTPAuth(
            policy=Policy(secret=b"s" * 32), store=None, sender=inbox, clock=clock
        )
        async with backend.store() as store:
            login = await _login(auth, inbox, store, "fifty@example.com")
        for generation in (1, 2):  # a second round, from the successor: one more rotation
            token = login.refresh_token

            async def refresh(store: Store[Any], _: int, token: str = token) -> Login[Any]:
                return await auth.with_store(store).refresh(token)

            outcomes = await _in_handles(backend, 50, refresh)
            assert all(isinstance(o, Login) for o in outcomes), outcomes
            jtis = {
                auth.codec.verify(o.refresh_token, kind="refresh", now=clock()).jti
                for o in outcomes
            }
            assert len(jtis) == 1
            async with backend.store() as store:
                session = await store.find_session(login.sid)
            assert session is not None
            assert session.generation == generation
            login = outcomes[0]
            clock.advance(1)

    async def test_the_same_token_after_the_window_ends_the_session(self, backend: Backend) -> None:
        clock, inbox = FakeClock(), _Inbox()
        auth: OTPAuth[Any] = OTPAuth(
            policy=Policy(secret=b"s" * 32, refresh_grace=timedelta(seconds=10)),
            store=None,
            sender=inbox,
            clock=clock,
        )
        async with backend.store() as store:
            bound = auth.with_store(store)
            login = await _login(auth, inbox, store, "late@example.com")
            rotated = await bound.refresh(login.refresh_token)
            clock.advance(12)
            with pytest.raises(RefreshReused):
                await bound.refresh(login.refresh_token)
            with pytest.raises(TokenRevoked):
                await bound.refresh(rotated.refresh_token)
            with pytest.raises(TokenRevoked):
                await bound.authenticate(rotated.access_token)
            session = await store.find_session(login.sid)
            assert session is None or session.ended_at is not None

    async def test_users_list_and_end_only_their_own_sessions(self, backend: Backend) -> None:
        clock, inbox = FakeClock(), _Inbox()
        auth: OTPAuth[Any] = OTPAuth(
            policy=Policy(secret=b"s" * 32, resend_cooldown=timedelta(0)),
            store=None,
            sender=inbox,
            clock=clock,
        )
        async with backend.store() as store:
            bound = auth.with_store(store)
            first = await _login(auth, inbox, store, "mine@example.com")
            clock.advance(1)
            second = await _login(auth, inbox, store, "mine@example.com")
            clock.advance(1)
            third = await _login(auth, inbox, store, "mine@example.com")
            other = await _login(auth, inbox, store, "other@example.com")
            views = await bound.list_sessions(second.access_token)
            assert [v.id for v in views] == [third.sid, second.sid, first.sid]
            assert [v.current for v in views] == [False, True, False]
            assert {(v.user_agent, v.ip) for v in views} == {("UA", "192.0.2.1")}
            for sid in (other.sid, "no-such-session"):
                with pytest.raises(SessionNotFound):
                    await bound.revoke_session(second.access_token, sid)
            await bound.authenticate(other.access_token)  # untouched
            # Another of the caller's sessions: not its own, so False.
            assert await bound.revoke_session(second.access_token, first.sid) is False
            with pytest.raises(SessionNotFound):
                await bound.revoke_session(second.access_token, first.sid)
            with pytest.raises(TokenRevoked):
                await bound.authenticate(first.access_token)
            with pytest.raises(TokenRevoked):
                await bound.refresh(first.refresh_token)
            assert await bound.revoke_other_sessions(second.access_token) == 1
            with pytest.raises(TokenRevoked):
                await bound.refresh(third.refresh_token)
            assert [v.id for v in await bound.list_sessions(second.access_token)] == [second.sid]
            assert await bound.revoke_other_sessions(second.access_token) == 0
