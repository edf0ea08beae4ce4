"""The service's contract suite: its concurrency guarantees, proven on each backend with
concurrent requests. Re-exported by :mod:`otpcore.testing.contract`, with the store's."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, Literal, cast

import pytest

from otpcore.domain.errors import (
    AccountLocked,
    CodeInvalid,
    OTPAuthError,
    RefreshReused,
    TokenInvalid,
    TokenRevoked,
)
from otpcore.domain.limits import subject_key
from otpcore.domain.policy import Policy
from otpcore.ports import ChallengeStore
from otpcore.service import Login, OTPAuth
from otpcore.testing.backend import Backend
from otpcore.testing.clock import FakeClock

__all__ = ["ServiceContract"]


class _Inbox:
    """A sender that remembers the last code per e-mail."""

    def __init__(self) -> None:
        self.codes: dict[str, str] = {}

    async def __call__(self, email: str, code: str) -> None:
        self.codes[email] = code


def _service(clock: FakeClock, inbox: _Inbox, **overrides: Any) -> OTPAuth[Any]:
    settings: dict[str, Any] = {
        "policy": Policy(secret=b"contract-secret-" * 2, max_attempts=5),
        "store": None,
        "sender": inbox,
        "clock": clock,
    }
    settings.update(overrides)
    return OTPAuth(**settings)


async def _log_in(bound: OTPAuth[Any], inbox: _Inbox, email: str) -> Login[Any]:
    """Request a code for ``email`` and verify it: a new session."""
    await bound.request_code(email)
    return await bound.verify_code(email, inbox.codes[email])


async def _gather_outcomes(
    backend: Backend, auth: OTPAuth[Any], count: int, work: Any
) -> list[object]:
    async def one(index: int) -> object:
        async with backend.store() as store:
            try:
                return await work(auth.with_store(store), index)
            except OTPAuthError as exc:
                return exc

    return list(await asyncio.gather(*(one(i) for i in range(count))))


class ServiceContract:
    """The service's guarantees, proven on each backend with concurrent requests."""

    async def test_full_flow_request_verify_refresh_logout(self, backend: Backend) -> None:
        clock, inbox = FakeClock(), _Inbox()
        auth = _service(clock, inbox)
        async with backend.store() as store:
            bound = auth.with_store(store)
            await bound.request_code("Flow@Example.com")
            login = await bound.verify_code("flow@example.com", inbox.codes["flow@example.com"])
            principal = await bound.authenticate(login.access_token)
            assert principal.account.is_verified is True
            assert principal.claims.sub == login.user_id
            clock.advance(1)
            rotated = await bound.refresh(login.refresh_token)
            assert rotated.sid == login.sid
            assert rotated.refresh_token != login.refresh_token
            assert await bound.logout(rotated.refresh_token) is True
            with pytest.raises(TokenRevoked):
                await bound.authenticate(rotated.access_token)
            with pytest.raises(TokenRevoked):
                await bound.refresh(rotated.refresh_token)

    async def test_concurrent_wrong_guesses_evaluate_at_most_max(self, backend: Backend) -> None:
        clock, inbox = FakeClock(), _Inbox()
        auth = _service(clock, inbox)
        async with backend.store() as store:
            await auth.with_store(store).request_code("guess@example.com")
        code = inbox.codes["guess@example.com"]
        wrong = "0" * 6 if code != "0" * 6 else "1" * 6

        async def guess(bound: OTPAuth[Any], _: int) -> object:
            return await bound.verify_code("guess@example.com", wrong)

        outcomes = await _gather_outcomes(backend, auth, 200, guess)
        evaluated = [o for o in outcomes if isinstance(o, CodeInvalid)]
        assert len(evaluated) == auth.policy.max_attempts
        assert sorted(o.remaining_attempts or 0 for o in evaluated) == list(range(5))
        assert all(isinstance(o, AccountLocked) for o in outcomes if o not in evaluated)
        async with backend.store() as store:  # issue 8: unbound guesses, on the code's record
            pending = await cast(ChallengeStore, store).newest_challenge(
                subject_key(auth.policy.secret, "guess@example.com")
            )
            assert pending is not None
            assert (pending.state.unbound_attempts, pending.state.failures) == (5, 0)
            with pytest.raises(AccountLocked):
                await auth.with_store(store).verify_code("guess@example.com", code)

    async def test_concurrent_correct_guesses_yield_one_login(self, backend: Backend) -> None:
        clock, inbox = FakeClock(), _Inbox()
        auth = _service(clock, inbox)
        async with backend.store() as store:
            await auth.with_store(store).request_code("once@example.com")
        code = inbox.codes["once@example.com"]

        async def redeem(bound: OTPAuth[Any], _: int) -> object:
            return await bound.verify_code("once@example.com", code)

        outcomes = await _gather_outcomes(backend, auth, 50, redeem)
        logins = [o for o in outcomes if isinstance(o, Login)]
        assert len(logins) == 1
        assert all(isinstance(o, CodeInvalid) for o in outcomes if o is not logins[0])

    async def test_concurrent_refreshes_rotate_once_then_revoke(self, backend: Backend) -> None:
        # With a zero grace window (strict); the window is in otpcore.testing.sessions.
        clock, inbox = FakeClock(), _Inbox()
        auth = _service(clock, inbox, policy=Policy(secret=b"s" * 32, refresh_grace=timedelta(0)))
        async with backend.store() as store:
            bound = auth.with_store(store)
            login = await _log_in(bound, inbox, "rot@example.com")

        async def rotate(bound: OTPAuth[Any], _: int) -> object:
            return await bound.refresh(login.refresh_token)

        outcomes = await _gather_outcomes(backend, auth, 20, rotate)
        rotated = [o for o in outcomes if isinstance(o, Login)]
        assert len(rotated) == 1
        others = [o for o in outcomes if o is not rotated[0]]
        assert any(isinstance(o, RefreshReused) for o in others)
        assert all(isinstance(o, RefreshReused | TokenRevoked) for o in others)
        async with backend.store() as store:
            bound = auth.with_store(store)
            with pytest.raises(TokenRevoked):
                await bound.refresh(rotated[0].refresh_token)
            with pytest.raises(TokenRevoked):
                await bound.authenticate(rotated[0].access_token)

    async def test_logout_all_revokes_earlier_sessions_only(self, backend: Backend) -> None:
        clock, inbox = FakeClock(), _Inbox()
        auth = _service(clock, inbox, policy=Policy(secret=b"s" * 32, resend_cooldown=timedelta(0)))
        async with backend.store() as store:
            bound = auth.with_store(store)
            first = await _log_in(bound, inbox, "all@example.com")
            clock.advance(1)
            second = await _log_in(bound, inbox, "all@example.com")
            clock.advance(1)
            await bound.logout_all(first.access_token)  # the token says whose sessions end
            clock.advance(1)
            third = await _log_in(bound, inbox, "all@example.com")
            for old in (first, second):
                with pytest.raises(TokenRevoked):
                    await bound.authenticate(old.access_token)
                with pytest.raises(TokenRevoked):
                    await bound.refresh(old.refresh_token)
            assert (await bound.authenticate(third.access_token)).claims.sid == third.sid

    async def test_logout_blacklists_the_token_and_never_raises(self, backend: Backend) -> None:
        clock, inbox = FakeClock(), _Inbox()
        auth = _service(clock, inbox)
        async with backend.store() as store:
            bound = auth.with_store(store)
            login = await _log_in(bound, inbox, "out@example.com")
            jti = auth.codec.verify(login.refresh_token, kind="refresh", now=clock()).jti
            assert await bound.logout("not-a-token") is False
            assert await bound.logout() is False
            assert await bound.logout(login.refresh_token) is True
            assert [entry.key for entry in await store.find_revocations([jti])] == [jti]
            # The reference library's adapter API answers from the same entry.
            is_blacklisted = getattr(store, "is_blacklisted", None)
            if is_blacklisted is not None:
                assert await is_blacklisted(jti) is True
            assert await bound.logout(login.refresh_token) is False
            with pytest.raises(TokenRevoked):
                await bound.refresh(login.refresh_token)

    async def test_a_missing_user_is_token_invalid_everywhere(self, backend: Backend) -> None:
        clock, inbox = FakeClock(), _Inbox()
        auth = _service(clock, inbox)
        now = clock()

        def mint(kind: Literal["access", "refresh"]) -> str:
            return auth.codec.issue(
                kind=kind, subject="424242", sid="s", jti=kind, auth_time=now.timestamp(), now=now
            )

        async with backend.store() as store:
            bound = auth.with_store(store)
            with pytest.raises(TokenInvalid):
                await bound.authenticate(mint("access"))
            with pytest.raises(TokenInvalid):
                await bound.refresh(mint("refresh"))
            with pytest.raises(TokenInvalid):
                await bound.logout_all(mint("access"))

    async def test_mirror_sees_revocations_within_the_interval(self, backend: Backend) -> None:
        clock, inbox = FakeClock(), _Inbox()
        auth = _service(clock, inbox, mirror_interval=timedelta(seconds=1))
        async with backend.store() as store:
            bound = auth.with_store(store)
            login = await _log_in(bound, inbox, "mirror@example.com")
            assert (await bound.authenticate_claims(login.access_token)).sid == login.sid
            await bound.logout(login.refresh_token)
            # Within the interval the mirror may still accept; once it lapses it must refuse.
            clock.advance(1)
            with pytest.raises(TokenRevoked):
                await bound.authenticate_claims(login.access_token)
