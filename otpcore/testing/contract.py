"""The contract suites: the cases every storage backend must pass, memory store included.

:class:`StoreContract` holds the ports to their documented atomic behaviour;
:class:`ServiceContract` proves the service's concurrency guarantees on top of them;
the reference library's adapter API has its own suite in :mod:`otpcore.testing.reference`.
Subclass them (and :class:`otpcore.testing.reference.ReferenceContract`) in a pytest module
and provide a ``backend`` fixture that yields a :class:`Backend` over empty storage. Each
case opens handles with ``backend.store()``; concurrent cases open one handle per task, as a
web app opens one database session per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from otpcore.domain.records import ChallengeState, Revocation, RevocationKind, session_key, user_key
from otpcore.ports import Store
from otpcore.testing.backend import Backend
from otpcore.testing.service_contract import ServiceContract

__all__ = ["Backend", "ServiceContract", "StoreContract"]

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _revocation(
    key: str, *, kind: RevocationKind = RevocationKind.ACCESS, at: float = 0, ttl: float = 3600
) -> Revocation:
    return Revocation(key=key, kind=kind, revoked_at=_at(at), expires_at=_at(at + ttl))


async def _gather_in_handles(backend: Backend, count: int, work: Any) -> list[Any]:
    async def one(index: int) -> Any:
        async with backend.store() as store:
            return await work(store, index)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


class StoreContract:
    """Every behaviour of the ports that the service relies on."""

    async def test_create_then_find_by_email_and_id(self, backend: Backend) -> None:
        async with backend.store() as store:
            created = await store.create("alice@example.com", {})
            assert created.email == "alice@example.com"
            assert created.is_verified is False
            assert created.challenge == ChallengeState()
            by_email = await store.find_by_email("alice@example.com")
            by_id = await store.find_by_id(created.user_id)
        assert by_email is not None
        assert by_id is not None
        assert by_email.user_id == by_id.user_id == created.user_id
        assert isinstance(created.user_id, str)

    async def test_create_verified_stores_the_mark_in_its_one_write(self, backend: Backend) -> None:
        async with backend.store() as store:
            created = await store.create("proven@example.com", {}, verified=True)
            plain = await store.create("plain@example.com", {})
            # An address already stored comes back as stored, whatever this call asked.
            again = await store.create("plain@example.com", {}, verified=True)
        async with backend.store() as store:
            proven = await store.find_by_email("proven@example.com")
            unproven = await store.find_by_email("plain@example.com")
        assert created.is_verified is True
        assert proven is not None
        assert proven.is_verified is True
        assert proven.user.is_verified is True
        assert (plain.is_verified, again.is_verified, again.user_id) == (
            False,
            False,
            plain.user_id,
        )
        assert unproven is not None
        assert unproven.is_verified is False

    async def test_unknown_email_and_id_are_none(self, backend: Backend) -> None:
        async with backend.store() as store:
            await store.create("known@example.com", {})
            assert await store.find_by_email("nobody@example.com") is None
            assert await store.find_by_id("999999") is None
            assert await store.find_by_id("not-an-id-of-any-shape") is None
            assert await store.find_by_id("") is None

    async def test_unicode_email_round_trips(self, backend: Backend) -> None:
        async with backend.store() as store:
            created = await store.create("jörg@bücher.example", {})
            found = await store.find_by_email("jörg@bücher.example")
        assert found is not None
        assert found.user_id == created.user_id
        assert found.email == "jörg@bücher.example"

    async def test_concurrent_create_of_one_email_yields_one_user(self, backend: Backend) -> None:
        async def create(store: Store[Any], _: int) -> str:
            return (await store.create("race@example.com", {})).user_id

        ids = await _gather_in_handles(backend, 20, create)
        assert len(set(ids)) == 1
        async with backend.store() as store:
            found = await store.find_by_email("race@example.com")
        assert found is not None
        assert found.user_id == ids[0]

    async def test_save_challenge_with_current_version_persists_state(
        self, backend: Backend
    ) -> None:
        state = ChallengeState(
            code_hash="a" * 64,
            issued_at=_at(1.5),
            attempts=2,
            failures=7,
            last_request_at=_at(1.5),
            last_failure_at=_at(2.25),
            version=1,
        )
        async with backend.store() as store:
            account = await store.create("cas@example.com", {})
            saved = await store.save_challenge(account.user_id, expected_version=0, state=state)
        assert saved is True
        async with backend.store() as store:
            reloaded = await store.find_by_id(account.user_id)
        assert reloaded is not None
        assert reloaded.challenge == state
        assert reloaded.is_verified is False

    async def test_datetimes_come_back_aware_utc(self, backend: Backend) -> None:
        state = ChallengeState(issued_at=_at(0), last_request_at=_at(0), code_hash="b", version=1)
        async with backend.store() as store:
            account = await store.create("tz@example.com", {})
            await store.save_challenge(account.user_id, expected_version=0, state=state)
            reloaded = await store.find_by_email("tz@example.com")
        assert reloaded is not None
        issued = reloaded.challenge.issued_at
        assert issued is not None
        assert issued.utcoffset() == timedelta(0)
        assert issued == _at(0)

    async def test_save_challenge_with_stale_version_changes_nothing(
        self, backend: Backend
    ) -> None:
        first = ChallengeState(code_hash="first", issued_at=_at(0), version=1)
        async with backend.store() as store:
            account = await store.create("stale@example.com", {})
            assert await store.save_challenge(account.user_id, expected_version=0, state=first)
            stale = replace(first, code_hash="second", version=1)
            assert not await store.save_challenge(account.user_id, expected_version=0, state=stale)
            assert not await store.save_challenge("999999", expected_version=0, state=stale)
        async with backend.store() as store:
            reloaded = await store.find_by_id(account.user_id)
        assert reloaded is not None
        assert reloaded.challenge == first

    async def test_concurrent_save_challenge_has_exactly_one_winner(self, backend: Backend) -> None:
        async with backend.store() as store:
            account = await store.create("winner@example.com", {})

        async def save(store: Store[Any], index: int) -> bool:
            state = ChallengeState(code_hash=f"h{index}", issued_at=_at(0), version=1)
            return await store.save_challenge(account.user_id, expected_version=0, state=state)

        results = await _gather_in_handles(backend, 30, save)
        assert results.count(True) == 1
        winner = results.index(True)
        async with backend.store() as store:
            reloaded = await store.find_by_id(account.user_id)
        assert reloaded is not None
        assert reloaded.challenge.code_hash == f"h{winner}"
        assert reloaded.challenge.version == 1

    async def test_mark_verified_rides_on_the_same_write(self, backend: Backend) -> None:
        async with backend.store() as store:
            account = await store.create("verify@example.com", {})
            state = ChallengeState(attempts=1, version=1)
            refused = await store.save_challenge(
                account.user_id, expected_version=5, state=state, mark_verified=True
            )
            assert refused is False
            unchanged = await store.find_by_id(account.user_id)
            assert unchanged is not None
            assert unchanged.is_verified is False
            assert await store.save_challenge(
                account.user_id, expected_version=0, state=state, mark_verified=True
            )
        async with backend.store() as store:
            reloaded = await store.find_by_id(account.user_id)
        assert reloaded is not None
        assert reloaded.is_verified is True
        assert reloaded.challenge.version == 1

    async def test_revoke_inserts_once(self, backend: Backend) -> None:
        async with backend.store() as store:
            assert await store.revoke(_revocation("jti-1")) is True
            assert (
                await store.revoke(_revocation("jti-1", kind=RevocationKind.REFRESH, at=5)) is False
            )
            found = await store.find_revocations(["jti-1"])
        assert found == [_revocation("jti-1")]

    async def test_concurrent_revoke_of_one_key_has_exactly_one_winner(
        self, backend: Backend
    ) -> None:
        async def revoke(store: Store[Any], index: int) -> bool:
            return await store.revoke(
                _revocation("contended", kind=RevocationKind.REFRESH, at=index)
            )

        results = await _gather_in_handles(backend, 30, revoke)
        assert results.count(True) == 1

    async def test_revoke_many_inserts_each_absent_key_once(self, backend: Backend) -> None:
        async with backend.store() as store:
            assert await store.revoke(_revocation("held", at=1)) is True
            answers = await store.revoke_many(
                [
                    _revocation("new-1"),
                    _revocation("held", at=7),
                    _revocation("new-1", kind=RevocationKind.REFRESH, at=9),
                    _revocation(session_key("s4")),
                ]
            )
            assert await store.revoke_many([]) == []
            again = await store.revoke_many([_revocation("new-1"), _revocation("new-2")])
            found = await store.find_revocations(["held", "new-1", "new-2", session_key("s4")])
        # A key already present keeps its entry and keeps none of the others out; a key given
        # twice is written once, from its first entry.
        assert answers == [True, False, False, True]
        assert again == [False, True]
        assert sorted(found, key=lambda entry: entry.key) == sorted(
            [
                _revocation("held", at=1),
                _revocation("new-1"),
                _revocation("new-2"),
                _revocation(session_key("s4")),
            ],
            key=lambda entry: entry.key,
        )

    async def test_concurrent_revoke_many_inserts_each_key_once(self, backend: Backend) -> None:
        async def revoke(store: Store[Any], index: int) -> list[bool]:
            keys = ["shared-a", f"own-{index}", "shared-b"]
            return await store.revoke_many([_revocation(key, at=index) for key in keys])

        results = await _gather_in_handles(backend, 20, revoke)
        assert [answers[0] for answers in results].count(True) == 1
        assert [answers[2] for answers in results].count(True) == 1
        assert all(answers[1] for answers in results)

    async def test_find_revocations_returns_only_requested_keys(self, backend: Backend) -> None:
        async with backend.store() as store:
            for key in ("a", session_key("s1"), user_key("7"), "b"):
                await store.revoke(_revocation(key))
            found = await store.find_revocations(["a", session_key("s1"), "missing"])
            none = await store.find_revocations(["missing"])
            empty = await store.find_revocations([])
        assert sorted(entry.key for entry in found) == sorted(["a", session_key("s1")])
        assert none == []
        assert empty == []

    async def test_revoke_user_only_raises_the_cutoff(self, backend: Backend) -> None:
        async with backend.store() as store:
            await store.revoke_user("42", at=_at(100), expires_at=_at(1000))
            await store.revoke_user("42", at=_at(50), expires_at=_at(500))
            [entry] = await store.find_revocations([user_key("42")])
            assert (entry.kind, entry.revoked_at, entry.expires_at) == ("user", _at(100), _at(1000))
            await store.revoke_user("42", at=_at(200), expires_at=_at(2000))
            [entry] = await store.find_revocations([user_key("42")])
        assert (entry.revoked_at, entry.expires_at) == (_at(200), _at(2000))

    async def test_load_principal_is_user_plus_matching_revocations(self, backend: Backend) -> None:
        async with backend.store() as store:
            account = await store.create("principal@example.com", {})
            await store.revoke(_revocation(session_key("s9")))
            await store.revoke(_revocation("other"))
            found, revoked = await store.load_principal(
                account.user_id, ["j1", session_key("s9"), user_key(account.user_id)]
            )
            missing, _ = await store.load_principal("999999", ["j1"])
            clean, nothing = await store.load_principal(account.user_id, ["j2"])
        assert found is not None
        assert found.user_id == account.user_id
        assert [entry.key for entry in revoked] == [session_key("s9")]
        assert missing is None
        assert clean is not None
        assert nothing == []

    async def test_revocations_since_filters_by_cursor_and_expiry(self, backend: Backend) -> None:
        async with backend.store() as store:
            await store.revoke(_revocation("old", at=0))
            await store.revoke(_revocation("new", at=10))
            await store.revoke(_revocation("new-but-expired", at=10, ttl=5))
            since = await store.revocations_since(_at(10), now=_at(20))
            everything = await store.revocations_since(_at(-1), now=_at(20))
        assert [entry.key for entry in since] == ["new"]
        assert sorted(entry.key for entry in everything) == ["new", "old"]

    async def test_purge_expired_removes_exactly_the_expired(self, backend: Backend) -> None:
        async with backend.store() as store:
            for index in range(25):
                await store.revoke(_revocation(f"gone-{index}", at=0, ttl=10))
            await store.revoke(_revocation("kept", at=0, ttl=100))
            await store.revoke_user("1", at=_at(0), expires_at=_at(5))
            removed = await store.purge_expired(_at(10))
            again = await store.purge_expired(_at(10))
            left = await store.find_revocations(["kept", "gone-0", user_key("1")])
        assert removed == 26
        assert again == 0
        assert [entry.key for entry in left] == ["kept"]

    async def test_revoked_key_can_be_reinserted_after_purge(self, backend: Backend) -> None:
        async with backend.store() as store:
            await store.revoke(_revocation("cycle", ttl=1))
            await store.purge_expired(_at(2))
            assert await store.revoke(_revocation("cycle", at=3)) is True

    async def test_many_keys_in_one_lookup(self, backend: Backend) -> None:
        keys: Sequence[str] = [f"k{index}" for index in range(50)]
        async with backend.store() as store:
            for key in keys[::2]:
                await store.revoke(_revocation(key))
            found = await store.find_revocations(keys)
        assert sorted(entry.key for entry in found) == sorted(keys[::2])
