"""One regression test per known attack on OTP login flows, named for the attack."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from otpcore.domain.errors import (
    AccountLocked,
    CodeCooldown,
    CodeInvalid,
    RefreshReused,
    TokenRevoked,
)
from otpcore.domain.policy import Policy
from otpcore.service import Login, OTPAuth
from otpcore.stores.memory import MemoryStore, MemoryUser
from otpcore.testing import FakeClock

SECRET = b"advisory-secret-advisory-secret!"


class Inbox:
    def __init__(self) -> None:
        self.codes: dict[str, str] = {}

    async def __call__(self, email: str, code: str) -> None:
        self.codes[email] = code


def make(**policy: Any) -> tuple[OTPAuth[MemoryUser], MemoryStore, Inbox, FakeClock]:
    store, inbox, clock = MemoryStore(), Inbox(), FakeClock()
    auth: OTPAuth[MemoryUser] = OTPAuth(
        policy=Policy(secret=SECRET, **policy), store=store, sender=inbox, clock=clock
    )
    return auth, store, inbox, clock


def wrong_for(code: str) -> str:
    return "1" * len(code) if code != "1" * len(code) else "2" * len(code)


async def test_parallel_guessing_cannot_exceed_the_attempt_limit() -> None:
    auth, _, inbox, _ = make()
    await auth.request_code("v@example.com")
    code = inbox.codes["v@example.com"]
    guesses = [f"{n:06d}" for n in range(500) if f"{n:06d}" != code]
    results = await asyncio.gather(
        *(auth.verify_code("v@example.com", g) for g in guesses), return_exceptions=True
    )
    assert sum(isinstance(r, CodeInvalid) for r in results) == 5
    assert not any(isinstance(r, Login) for r in results)


async def test_resending_does_not_refill_the_guess_budget() -> None:
    """NIST SP 800-63B rev 4 §3.1.3: a new secret SHALL NOT reset the failure count."""
    auth, store, inbox, clock = make(max_failures=12, lockout_duration=timedelta(hours=24))
    for _ in range(3):
        await auth.request_code("v@example.com")
        code = inbox.codes["v@example.com"]
        for _ in range(4):
            with pytest.raises(CodeInvalid):
                await auth.verify_code("v@example.com", wrong_for(code))
        clock.advance(timedelta(hours=1))
    account = await store.find_by_email("v@example.com")
    assert account is not None
    assert account.challenge.failures == 12
    with pytest.raises(AccountLocked):
        await auth.request_code("v@example.com")


async def test_resend_flooding_is_throttled() -> None:
    auth, _, _, _ = make()
    await auth.request_code("v@example.com")
    results = await asyncio.gather(
        *(auth.request_code("v@example.com") for _ in range(20)), return_exceptions=True
    )
    assert all(isinstance(r, CodeCooldown) for r in results)


async def test_code_hash_copied_to_another_account_does_not_verify() -> None:
    auth, store, inbox, _ = make()
    await auth.request_code("attacker@example.com")
    await auth.request_code("victim@example.com")
    attacker = await store.find_by_email("attacker@example.com")
    victim = await store.find_by_email("victim@example.com")
    assert attacker is not None
    assert victim is not None
    planted = replace(
        victim.challenge,
        code_hash=attacker.challenge.code_hash,
        version=victim.challenge.version + 1,
    )
    assert await store.save_challenge(
        victim.user_id, expected_version=victim.challenge.version, state=planted
    )
    with pytest.raises(CodeInvalid):
        await auth.verify_code("victim@example.com", inbox.codes["attacker@example.com"])


async def test_case_variant_email_cannot_open_a_second_account() -> None:
    auth, _, inbox, _ = make()
    await auth.request_code("Owner@Example.com")
    with pytest.raises(CodeCooldown):
        await auth.request_code("owner@EXAMPLE.COM")
    login = await auth.verify_code("OWNER@example.com", inbox.codes["owner@example.com"])
    assert login.user.email == "owner@example.com"


async def test_stolen_refresh_token_replay_revokes_the_family() -> None:
    auth, _, inbox, clock = make()
    await auth.request_code("v@example.com")
    login = await auth.verify_code("v@example.com", inbox.codes["v@example.com"])
    legit = await auth.refresh(login.refresh_token)
    # Issue 10: a replay within the grace window gets the same successor; after it, reuse.
    clock.advance(auth.policy.refresh_grace + timedelta(seconds=1))
    with pytest.raises(RefreshReused):
        await auth.refresh(login.refresh_token)  # the thief replays the stolen token
    with pytest.raises(TokenRevoked):
        await auth.refresh(legit.refresh_token)  # ...and the family is dead for both


async def test_logout_kills_outstanding_access_tokens() -> None:
    auth, _, inbox, _ = make()
    await auth.request_code("v@example.com")
    login = await auth.verify_code("v@example.com", inbox.codes["v@example.com"])
    await auth.logout(login.refresh_token)
    with pytest.raises(TokenRevoked):
        await auth.authenticate(login.access_token)


async def test_codes_and_tokens_never_reach_logs(caplog: pytest.LogCaptureFixture) -> None:
    auth, _, inbox, clock = make()
    with caplog.at_level(logging.DEBUG):
        await auth.request_code("v@example.com")
        code = inbox.codes["v@example.com"]
        with pytest.raises(CodeInvalid):
            await auth.verify_code("v@example.com", wrong_for(code))
        login = await auth.verify_code("v@example.com", code)
        rotated = await auth.refresh(login.refresh_token)
        clock.advance(auth.policy.refresh_grace + timedelta(seconds=1))
        with pytest.raises(RefreshReused):
            await auth.refresh(login.refresh_token)
    for secret in (code, wrong_for(code), login.access_token, rotated.refresh_token):
        assert secret not in caplog.text


def test_secrets_stay_out_of_reprs() -> None:
    policy = Policy(secret=SECRET)
    assert SECRET.decode() not in repr(policy)
    assert (
        repr(CodeInvalid(remaining_attempts=2))
        == "CodeInvalid(code='otp_invalid', retry_after=None)"
    )
