"""Issue 8's seven-day simulation: a stranger who knows only the address cannot keep the owner
out, nor spend the owner's share of the mailbox budget.

The attacker acts every minute for a week at the highest rate the default limits allow,
from 50 client addresses: it asks for codes (opening a binding each time) until a limit
refuses, then makes every guess the defaults will still evaluate, unbound and on each of
its own bindings. The owner's client logged in once before the attack and keeps what a
browser keeps (the binding and the device allowance cookies); it asks for a code once an
hour and types it within a minute. Target: the owner logs in on at least 99% of attempts.
"""

from __future__ import annotations

import random
from datetime import timedelta

from otpcore.domain.errors import AccountLocked, CodeCooldown, CodeExpired, CodeInvalid, RateLimited
from otpcore.domain.limits import Limits
from otpcore.domain.policy import Policy
from otpcore.service import Login, OTPAuth
from otpcore.stores.memory import MemoryStore, MemoryUser
from otpcore.testing import FakeClock

SECRET = b"simulation-secret-simulation-secret"
EMAIL = "victim@example.com"
OWNER_IP = "198.51.100.20"
ATTACKER_IPS = [f"203.0.113.{n}" for n in range(50)]
REFUSED = (CodeInvalid, CodeExpired, AccountLocked, RateLimited, CodeCooldown)


class Inbox:
    def __init__(self) -> None:
        self.codes: dict[str, str] = {}
        self.delivered = 0

    async def __call__(self, email: str, code: str) -> None:
        self.codes[email] = code
        self.delivered += 1


async def test_a_week_of_attack_leaves_the_owner_logging_in() -> None:
    clock = FakeClock()
    inbox = Inbox()
    rng = random.Random(8)  # deterministic codes and guesses
    auth: OTPAuth[MemoryUser] = OTPAuth(
        policy=Policy(secret=SECRET),
        store=MemoryStore(),
        sender=inbox,
        clock=clock,
        randbelow=rng.randrange,
        limits=Limits(),  # the defaults, stated: this is what the target is about
    )

    # Before the attack: the owner logs in once and keeps the device allowance.
    first = await auth.request_code(EMAIL, ip=OWNER_IP)
    login = await auth.verify_code(
        EMAIL, inbox.codes[EMAIL], challenge_id=first.challenge_id, ip=OWNER_IP
    )
    device = login.device
    assert device is not None
    binding = first.challenge_id

    attempts = successes = 0
    attacker_codes = attacker_logins = attacker_guesses = 0
    bindings: list[str] = []
    ip_turn = 0

    def next_ip() -> str:
        nonlocal ip_turn
        ip_turn += 1
        return ATTACKER_IPS[ip_turn % len(ATTACKER_IPS)]

    async def guess(challenge_id: str | None) -> bool:
        """One attacker guess; False once the defaults refuse to evaluate more."""
        nonlocal attacker_guesses, attacker_logins
        try:
            await auth.verify_code(
                EMAIL, f"{rng.randrange(10**6):06d}", challenge_id=challenge_id, ip=next_ip()
            )
        except CodeInvalid:
            attacker_guesses += 1
            return True
        except REFUSED:
            return False
        attacker_logins += 1
        return True

    for minute in range(7 * 24 * 60):
        clock.advance(timedelta(minutes=1))
        # The attacker: codes until a limit refuses, then every guess still evaluated.
        for _ in range(3):
            try:
                request = await auth.request_code(EMAIL, ip=next_ip())
            except REFUSED:
                break
            attacker_codes += 1
            bindings = [*bindings[-4:], request.challenge_id]
        while await guess(None):
            pass
        for challenge_id in bindings:
            while await guess(challenge_id):
                pass
        # The owner: a code once an hour, typed within the minute.
        if minute % 60 == 30:
            attempts += 1
            try:
                mine = await auth.request_code(
                    EMAIL, ip=OWNER_IP, challenge_id=binding, device=device
                )
                binding = mine.challenge_id
                clock.advance(timedelta(seconds=40))
                login = await auth.verify_code(
                    EMAIL, inbox.codes[EMAIL], challenge_id=binding, ip=OWNER_IP, device=device
                )
            except REFUSED:
                continue
            assert isinstance(login, Login)
            successes += 1
            device = login.device

    rate = successes / attempts
    print(
        f"owner logged in {successes}/{attempts} ({rate:.1%}); attacker: {attacker_codes} codes, "
        f"{attacker_guesses} wrong guesses evaluated, {attacker_logins} logins"
    )
    assert attempts == 168
    assert rate >= 0.99
    # The stranger's codes are capped by the mailbox budget (5 per hour, and never more).
    assert attacker_codes <= 5 * 7 * 24
    # Every guess evaluated was within the per-code budgets: 5 unbound + 5 bound per code.
    assert attacker_guesses <= 10 * attacker_codes + 10 * attempts
