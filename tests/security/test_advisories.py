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
    RateLimited,
    RefreshReused,
    TokenRevoked,
)
from otpcore.domain.limits import challenge_key
from otpcore.domain.policy import Policy
from otpcore.service import CodeRequest, Login, OTPAuth
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
    """NIST SP 800-63B rev 4 §3.1.3: a new secret SHALL NOT reset the failure count.

    Issue 8: failures are the binding's (resending on it keeps them), and bound guesses of
    clients without a device allowance also share the address-wide cap: a fresh binding
    does not refill it either.
    """
    auth, store, inbox, clock = make(max_failures=12, lockout_duration=timedelta(hours=24))
    bound: str | None = None
    for _ in range(3):
        bound = (await auth.request_code("v@example.com", challenge_id=bound)).challenge_id
        code = inbox.codes["v@example.com"]
        for _ in range(4):
            with pytest.raises(CodeInvalid):
                await auth.verify_code("v@example.com", wrong_for(code), challenge_id=bound)
        clock.advance(timedelta(hours=1))
    assert bound is not None
    pending = await store.find_challenge(challenge_key(SECRET, bound))
    assert pending is not None
    assert pending.state.failures == 12
    with pytest.raises(AccountLocked):
        await auth.request_code("v@example.com", challenge_id=bound)
    fresh = (await auth.request_code("v@example.com")).challenge_id
    with pytest.raises(AccountLocked):
        await auth.verify_code("v@example.com", inbox.codes["v@example.com"], challenge_id=fresh)


async def test_resend_flooding_is_throttled() -> None:
    # Issue 8: resends on one binding meet its cooldown; new bindings meet the mailbox limit.
    auth, _, _, _ = make()
    first = await auth.request_code("v@example.com")
    results = await asyncio.gather(
        *(auth.request_code("v@example.com", challenge_id=first.challenge_id) for _ in range(20)),
        return_exceptions=True,
    )
    assert all(isinstance(r, CodeCooldown) for r in results)
    unbound = await asyncio.gather(
        *(auth.request_code("v+x@example.com") for _ in range(20)), return_exceptions=True
    )
    assert sum(isinstance(r, CodeRequest) for r in unbound) == 4  # 5 per hour per mailbox
    assert all(isinstance(r, CodeRequest | RateLimited) for r in unbound)


async def test_code_hash_copied_to_another_account_does_not_verify() -> None:
    auth, store, inbox, _ = make()
    theirs = await auth.request_code("attacker@example.com")
    mine = await auth.request_code("victim@example.com")
    attacker = await store.find_challenge(challenge_key(SECRET, theirs.challenge_id))
    victim = await store.find_challenge(challenge_key(SECRET, mine.challenge_id))
    assert attacker is not None
    assert victim is not None
    planted = replace(
        victim.state, code_hash=attacker.state.code_hash, version=victim.state.version + 1
    )
    assert await store.update_challenge(
        victim.id,
        expected_version=victim.state.version,
        state=planted,
        expires_at=victim.expires_at,
    )
    with pytest.raises(CodeInvalid):
        await auth.verify_code("victim@example.com", inbox.codes["attacker@example.com"])
    with pytest.raises(CodeInvalid):
        await auth.verify_code(
            "victim@example.com",
            inbox.codes["attacker@example.com"],
            challenge_id=mine.challenge_id,
        )


async def test_case_variant_email_cannot_open_a_second_account() -> None:
    auth, store, inbox, _ = make()
    first = await auth.request_code("Owner@Example.com")
    with pytest.raises(CodeCooldown):  # the same binding: the same address
        await auth.request_code("owner@EXAMPLE.COM", challenge_id=first.challenge_id)
    login = await auth.verify_code("OWNER@example.com", inbox.codes["owner@example.com"])
    assert login.user.email == "owner@example.com"
    again = await auth.request_code("oWnEr@example.com")
    second = await auth.verify_code(
        "owner@example.COM", inbox.codes["owner@example.com"], challenge_id=again.challenge_id
    )
    assert second.user_id == login.user_id
    assert await store.find_by_email("Owner@Example.com") is None  # only the normalized key


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
