"""The SessionStore port on every backend (memory, SQLite, PostgreSQL, MongoDB; int and UUID
user keys; PyMongo and Motor): what the refresh flow and the session endpoints rely on.

Every instant is on a millisecond boundary (MongoDB keeps milliseconds); sessions belong to
users created through the store, so their ``user_id`` is the backend's own key as text.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from otpcore.domain.records import Revocation, RevocationKind, SessionRecord
from otpcore.ports import Store
from otpcore.testing.contract import Backend

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)
MS = timedelta(milliseconds=1)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _session(sid: str, user_id: str, *, at: float = 0, ttl: float = 3600) -> SessionRecord:
    return SessionRecord(
        sid=sid,
        user_id=user_id,
        created_at=_at(at),
        last_used_at=_at(at),
        rotated_at=_at(at),
        generation=0,
        user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
        ip="2001:db8::7",
        expires_at=_at(at + ttl),
    )


async def _user(store: Store[Any], email: str = "alice@example.com") -> str:
    return (await store.create(email, {})).user_id


async def test_open_then_find_round_trips_every_field(backend: Backend) -> None:
    async with backend.store() as store:
        user_id = await _user(store)
        opened = _session("s-1", user_id, at=0.123)
        await store.open_session(opened)
        found = await store.find_session("s-1")
    assert found == opened
    assert found is not None
    assert found.created_at.tzinfo is not None
    assert found.ended_at is None


async def test_an_unknown_session_is_none(backend: Backend) -> None:
    async with backend.store() as store:
        await store.open_session(_session("s-1", await _user(store)))
        assert await store.find_session("s-2") is None
        assert await store.find_session("") is None


async def test_user_agent_of_256_characters_is_kept(backend: Backend) -> None:
    agent = "A" * 255 + "é"
    async with backend.store() as store:
        await store.open_session(replace(_session("s-1", await _user(store)), user_agent=agent))
        found = await store.find_session("s-1")
    assert found is not None
    assert found.user_agent == agent


async def test_missing_agent_and_address_stay_missing(backend: Backend) -> None:
    async with backend.store() as store:
        session = replace(_session("s-1", await _user(store)), user_agent=None, ip=None)
        await store.open_session(session)
        assert await store.find_session("s-1") == session


async def test_rotate_advances_the_generation_once(backend: Backend) -> None:
    async with backend.store() as store:
        user_id = await _user(store)
        await store.open_session(_session("s-1", user_id))
        won = await store.rotate_session(
            "s-1", expected_generation=0, now=_at(60), expires_at=_at(7200)
        )
        again = await store.rotate_session(
            "s-1", expected_generation=0, now=_at(61), expires_at=_at(9000)
        )
        found = await store.find_session("s-1")
    assert (won, again) == (True, False)
    assert found is not None
    assert found.generation == 1
    assert found.rotated_at == found.last_used_at == _at(60)
    assert found.expires_at == _at(7200)
    assert found.created_at == _at(0)
    assert found.ended_at is None


async def test_rotations_chain_and_each_new_expiry_governs(backend: Backend) -> None:
    # The second rotation's filter reads what the first one wrote (on some servers a date
    # written by an update no longer compares as a date).
    async with backend.store() as store:
        user_id = await _user(store)
        await store.open_session(_session("s-1", user_id, ttl=100))
        assert await store.rotate_session(
            "s-1", expected_generation=0, now=_at(50), expires_at=_at(150)
        )
        assert await store.rotate_session(
            "s-1", expected_generation=1, now=_at(120), expires_at=_at(200)
        )
        assert [s.sid for s in await store.list_sessions(user_id, now=_at(199))] == ["s-1"]
        assert await store.list_sessions(user_id, now=_at(200)) == []
        assert not await store.rotate_session(
            "s-1", expected_generation=2, now=_at(200), expires_at=_at(300)
        )
        assert await store.end_sessions(user_id, now=_at(200)) == []
        found = await store.find_session("s-1")
    assert found is not None
    assert (found.generation, found.expires_at, found.ended_at) == (2, _at(200), None)


async def test_rotate_refuses_a_stale_or_future_generation(backend: Backend) -> None:
    async with backend.store() as store:
        await store.open_session(_session("s-1", await _user(store)))
        for generation in (-1, 1, 5):
            assert not await store.rotate_session(
                "s-1", expected_generation=generation, now=_at(1), expires_at=_at(99)
            )
        assert not await store.rotate_session(
            "nope", expected_generation=0, now=_at(1), expires_at=_at(99)
        )
        found = await store.find_session("s-1")
    assert found is not None
    assert found.generation == 0


async def test_rotate_refuses_an_expired_session_to_the_millisecond(backend: Backend) -> None:
    async with backend.store() as store:
        user_id = await _user(store)
        await store.open_session(_session("s-1", user_id, ttl=10))
        await store.open_session(_session("s-2", user_id, ttl=10))
        assert not await store.rotate_session(
            "s-1", expected_generation=0, now=_at(10), expires_at=_at(99)
        )
        assert await store.rotate_session(
            "s-2", expected_generation=0, now=_at(10) - MS, expires_at=_at(99)
        )
        found = await store.find_session("s-1")
    assert found is not None
    assert found.generation == 0


async def test_rotate_refuses_an_ended_session(backend: Backend) -> None:
    async with backend.store() as store:
        user_id = await _user(store)
        await store.open_session(_session("s-1", user_id))
        assert await store.end_sessions(user_id, now=_at(5), only="s-1") == ["s-1"]
        assert not await store.rotate_session(
            "s-1", expected_generation=0, now=_at(6), expires_at=_at(99)
        )
        found = await store.find_session("s-1")
    assert found is not None
    assert (found.generation, found.ended_at) == (0, _at(5))


async def test_20_concurrent_rotations_of_one_generation_yield_one_winner(
    backend: Backend,
) -> None:
    async with backend.store() as store:
        await store.open_session(_session("s-1", await _user(store)))

    async def rotate(index: int) -> bool:
        async with backend.store() as store:
            return await store.rotate_session(
                "s-1", expected_generation=0, now=_at(1 + index / 1000), expires_at=_at(7200)
            )

    outcomes = await asyncio.gather(*(rotate(index) for index in range(20)))
    assert outcomes.count(True) == 1
    async with backend.store() as store:
        found = await store.find_session("s-1")
    assert found is not None
    assert found.generation == 1
    assert found.rotated_at == _at(1 + outcomes.index(True) / 1000)


async def test_list_holds_the_users_active_sessions_newest_first(backend: Backend) -> None:
    async with backend.store() as store:
        alice = await _user(store)
        bob = await _user(store, "bob@example.com")
        await store.open_session(_session("old", alice, at=0))
        await store.open_session(_session("new", alice, at=30))
        await store.open_session(_session("mid", alice, at=10))
        await store.open_session(_session("ended", alice, at=40))
        await store.open_session(_session("expired", alice, at=0, ttl=50))
        await store.open_session(_session("bobs", bob, at=20))
        assert await store.end_sessions(alice, now=_at(45), only="ended") == ["ended"]
        listed = await store.list_sessions(alice, now=_at(60))
        assert [s.sid for s in await store.list_sessions(bob, now=_at(60))] == ["bobs"]
        assert await store.list_sessions("no-such-user", now=_at(60)) == []
    assert [session.sid for session in listed] == ["new", "mid", "old"]
    assert listed[0] == _session("new", alice, at=30)


async def test_end_only_ends_one_session_of_its_owner(backend: Backend) -> None:
    async with backend.store() as store:
        alice = await _user(store)
        bob = await _user(store, "bob@example.com")
        await store.open_session(_session("a-1", alice))
        await store.open_session(_session("a-2", alice))
        await store.open_session(_session("b-1", bob))
        # Another user's session, an unknown one: nothing ended.
        assert await store.end_sessions(alice, now=_at(5), only="b-1") == []
        assert await store.end_sessions(alice, now=_at(5), only="zz") == []
        assert await store.end_sessions(alice, now=_at(5), only="a-1") == ["a-1"]
        # Already ended: not ended again, never reported twice.
        assert await store.end_sessions(alice, now=_at(6), only="a-1") == []
        ended = await store.find_session("a-1")
        assert [s.sid for s in await store.list_sessions(alice, now=_at(7))] == ["a-2"]
        assert [s.sid for s in await store.list_sessions(bob, now=_at(7))] == ["b-1"]
    assert ended is not None
    assert ended.ended_at == _at(5)


async def test_end_keep_ends_every_other_session(backend: Backend) -> None:
    async with backend.store() as store:
        alice = await _user(store)
        bob = await _user(store, "bob@example.com")
        for sid in ("a-1", "a-2", "a-3"):
            await store.open_session(_session(sid, alice))
        await store.open_session(_session("a-expired", alice, ttl=3))
        await store.open_session(_session("b-1", bob))
        ended = await store.end_sessions(alice, now=_at(5), keep="a-2")
        assert sorted(ended) == ["a-1", "a-3"]
        assert await store.end_sessions(alice, now=_at(6), keep="a-2") == []
        assert [s.sid for s in await store.list_sessions(alice, now=_at(7))] == ["a-2"]
        assert [s.sid for s in await store.list_sessions(bob, now=_at(7))] == ["b-1"]
        expired = await store.find_session("a-expired")
    # An expired session is not active, so ending it is nothing to report.
    assert expired is not None
    assert expired.ended_at is None


async def test_end_all_ends_every_active_session_of_the_user(backend: Backend) -> None:
    async with backend.store() as store:
        alice = await _user(store)
        bob = await _user(store, "bob@example.com")
        for sid in ("a-1", "a-2"):
            await store.open_session(_session(sid, alice))
        await store.open_session(_session("b-1", bob))
        assert await store.end_sessions(alice, now=_at(5), only="a-2") == ["a-2"]
        assert await store.end_sessions(alice, now=_at(6)) == ["a-1"]
        assert await store.end_sessions(alice, now=_at(7)) == []
        assert await store.list_sessions(alice, now=_at(8)) == []
        assert [s.sid for s in await store.list_sessions(bob, now=_at(8))] == ["b-1"]
        first = await store.find_session("a-2")
    assert first is not None
    assert first.ended_at == _at(5)  # ending again never moves the instant


async def test_only_and_keep_together_end_only_unless_kept(backend: Backend) -> None:
    async with backend.store() as store:
        alice = await _user(store)
        await store.open_session(_session("a-1", alice))
        await store.open_session(_session("a-2", alice))
        assert await store.end_sessions(alice, now=_at(5), only="a-1", keep="a-1") == []
        assert await store.end_sessions(alice, now=_at(5), only="a-1", keep="a-2") == ["a-1"]


async def test_concurrent_ends_report_each_session_once(backend: Backend) -> None:
    async with backend.store() as store:
        alice = await _user(store)
        for index in range(6):
            await store.open_session(_session(f"a-{index}", alice))

    async def end(index: int) -> list[str]:
        async with backend.store() as store:
            if index % 3 == 0:
                return await store.end_sessions(alice, now=_at(5), only=f"a-{index % 6}")
            if index % 3 == 1:
                return await store.end_sessions(alice, now=_at(5), keep="a-5")
            return await store.end_sessions(alice, now=_at(5))

    reports = await asyncio.gather(*(end(index) for index in range(12)))
    counts = Counter(sid for report in reports for sid in report)
    assert counts == Counter({f"a-{index}": 1 for index in range(6)})


async def test_purge_deletes_ended_and_expired_sessions_only(backend: Backend) -> None:
    async with backend.store() as store:
        alice = await _user(store)
        await store.open_session(_session("active", alice, ttl=3600))
        await store.open_session(_session("ended", alice, ttl=3600))
        await store.open_session(_session("expired", alice, ttl=100))
        await store.open_session(_session("edge", alice, ttl=200))
        await store.end_sessions(alice, now=_at(10), only="ended")
        await store.revoke(
            Revocation(
                key="jti-1", kind=RevocationKind.ACCESS, revoked_at=_at(0), expires_at=_at(50)
            )
        )
        # Sessions are not counted: the count is of revocations, as before.
        assert await store.purge_expired(_at(200)) == 1
        remaining = {
            sid: await store.find_session(sid) for sid in ("active", "ended", "expired", "edge")
        }
    assert {sid for sid, found in remaining.items() if found is not None} == {"active"}
