"""The contract suite of the reference library's adapter API, for every store.

``get_by_email``, ``update_otp``, ``increment_otp_attempts``, … mean the same on every
backend (see :mod:`otpcore.stores._reference`): time comes from the injected clock, a wrong
guess always counts an attempt and a failure, every write is a compare-and-set that never
consumes a code twice. Subclass :class:`ReferenceContract` in a pytest module with the same
``backend`` fixture as :mod:`otpcore.testing.contract`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest

from otpcore.domain.codes import hash_code
from otpcore.domain.errors import ContentionError
from otpcore.domain.records import ChallengeState
from otpcore.testing.clock import FakeClock
from otpcore.testing.contract import T0, Backend, _at, _gather_in_handles, _revocation

__all__ = ["ReferenceContract"]

_HASH = hash_code(b"contract-secret-" * 2, "ref@example.com", "123456")
_OTHER_HASH = hash_code(b"contract-secret-" * 2, "ref@example.com", "654321")


class ReferenceContract:
    """The reference library's adapter API: the same semantics on every store.

    A wrong guess always counts (an attempt and a failure), every write is a
    compare-and-set that never consumes a code twice, and time comes from the injected clock.
    """

    async def test_methods_walk_a_login_on_the_injected_clock(self, backend: Backend) -> None:
        clock = FakeClock()
        async with backend.store(clock=clock) as handle:
            store: Any = handle
            user = await store.create_user("ref@example.com")
            assert (await store.get_by_email("ref@example.com")).id == user.id
            assert (await store.get_by_id(user.id)).email == "ref@example.com"
            assert await store.get_by_email("nobody@example.com") is None
            assert await store.get_by_id("999999") is None
            user_id = (await store.find_by_email("ref@example.com")).user_id

            await store.update_otp(user, _HASH)
            assert (user.otp_code, user.otp_created_at, user.otp_attempts) == (_HASH, T0, 0)
            clock.advance(5)
            await store.increment_otp_attempts(user)
            await store.increment_otp_attempts(user)
            assert (user.otp_attempts, user.otp_failures, user.otp_version) == (2, 2, 3)
            assert user.otp_last_failure_at == _at(5)
            stored = await store.find_by_id(user_id)
            assert stored.challenge == ChallengeState(
                code_hash=_HASH,
                issued_at=T0,
                attempts=2,
                failures=2,
                last_request_at=T0,
                last_failure_at=_at(5),
                version=3,
            )
            await store.clear_otp(user)
            assert (user.otp_code, user.otp_attempts, user.otp_failures) == (None, 0, 2)
            clock.advance(5)
            await store.update_otp(user, _OTHER_HASH)
            await store.verify_user(user)
            assert (user.is_verified, user.otp_code, user.otp_failures) == (True, None, 0)
        async with backend.store() as fresh:
            account = await fresh.find_by_id(user_id)
        assert account is not None
        assert account.is_verified is True
        assert account.challenge == ChallengeState(last_request_at=_at(10), version=6)

    async def test_update_otp_refuses_anything_but_a_code_hash(self, backend: Backend) -> None:
        async with backend.store() as handle:
            store: Any = handle
            user = await store.create_user("ref@example.com")
            for plaintext in ("123456", _HASH.upper(), _HASH[:-1], "g" * 64, ""):
                with pytest.raises(ValueError, match="hash"):
                    await store.update_otp(user, plaintext)
            account = await store.find_by_email("ref@example.com")
        assert account is not None
        assert account.challenge == ChallengeState()

    async def test_concurrent_wrong_guesses_are_all_counted(self, backend: Backend) -> None:
        async with backend.store() as handle:
            store: Any = handle
            user = await store.create_user("ref@example.com")
            await store.update_otp(user, _HASH)

        async def guess(handle: Any, _: int) -> None:
            await handle.increment_otp_attempts(await handle.get_by_email("ref@example.com"))

        await _gather_in_handles(backend, 20, guess)
        async with backend.store() as store:
            account = await store.find_by_email("ref@example.com")
        assert account is not None
        assert (account.challenge.attempts, account.challenge.failures) == (20, 20)
        assert account.challenge.version == 21
        assert account.challenge.code_hash == _HASH

    async def test_a_stale_user_cannot_consume_the_code_twice(self, backend: Backend) -> None:
        async with backend.store() as handle:
            store: Any = handle
            user = await store.create_user("ref@example.com")
            await store.update_otp(user, _HASH)
        writes: list[Callable[[Any, Any], Any]] = [
            lambda handle, user: handle.verify_user(user),
            lambda handle, user: handle.clear_otp(user),
            lambda handle, user: handle.update_otp(user, _OTHER_HASH),
        ]
        async with contextlib.AsyncExitStack() as stack:
            handles = [await stack.enter_async_context(backend.store()) for _ in range(4)]
            users = [await _any(h).get_by_email("ref@example.com") for h in handles]
            await _any(handles[0]).verify_user(users[0])
            for write, handle, stale in zip(writes, handles[1:], users[1:], strict=True):
                with pytest.raises(ContentionError):
                    await write(handle, stale)
                # The refused caller now sees what it must decide anew from.
                assert (stale.is_verified, stale.otp_code) == (True, None)
        async with backend.store() as store:
            account = await store.find_by_email("ref@example.com")
        assert account is not None
        assert account.is_verified is True
        assert account.challenge.code_hash is None

    async def test_an_unrelated_write_in_between_is_retried_over(self, backend: Backend) -> None:
        async with backend.store() as handle:
            store: Any = handle
            user = await store.create_user("ref@example.com")
            await store.update_otp(user, _HASH)
        async with backend.store() as one, backend.store() as two:
            checked: Any = await _any(one).get_by_email("ref@example.com")
            guesser: Any = await _any(two).get_by_email("ref@example.com")
            await _any(two).increment_otp_attempts(guesser)
            # The code the caller checked is still the pending one: verifying succeeds.
            await _any(one).verify_user(checked)
            assert (checked.is_verified, checked.otp_code, checked.otp_version) == (True, None, 3)

    async def test_emails_are_normalized_like_the_core(self, backend: Backend) -> None:
        async with backend.store() as handle:
            store: Any = handle
            user = await store.create_user("Alice.Smith@Example.COM")
            assert user.email == "alice.smith@example.com"
            again = await store.create_user("ALICE.SMITH@example.com")
            assert again.id == user.id
            assert (await store.get_by_email("Alice.SMITH@EXAMPLE.com")).id == user.id
            assert await store.find_by_email("alice.smith@example.com") is not None

    async def test_blacklist_methods_on_the_injected_clock(self, backend: Backend) -> None:
        clock = FakeClock()
        async with backend.store(clock=clock) as handle:
            store: Any = handle
            await store.add_to_blacklist("jti-1", "access", _at(10))
            await store.add_to_blacklist("jti-1", "access", _at(10))
            await store.add_to_blacklist("jti-2", "refresh", _at(100))
            assert await store.is_blacklisted("jti-1") is True
            assert await store.is_blacklisted("jti-3") is False
            assert await store.find_revocations(["jti-1"]) == [_revocation("jti-1", ttl=10)]
            assert await store.cleanup_blacklist() == 0
            clock.advance(10)
            assert await store.cleanup_blacklist() == 1
            clock.advance(1000)
            assert await store.cleanup_blacklist() == 1
            assert await store.is_blacklisted("jti-2") is False


def _any(value: object) -> Any:
    """``value`` typed as ``Any``: the reference methods are not part of the ports."""
    return value
