"""Issue 8's limits and parity, on the memory store with a fake clock: the pure rules
(otpcore.domain.limits), the targets with the default limits, and known and unknown
addresses answered alike after the same store calls."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from otpcore.domain import limits as rules
from otpcore.domain.errors import (
    AccountLocked,
    CodeCooldown,
    CodeExpired,
    CodeInvalid,
    OTPAuthError,
    RateLimited,
)
from otpcore.domain.limits import Limits, Rate
from otpcore.domain.policy import Policy
from otpcore.domain.records import LimitHit
from otpcore.service import OTPAuth
from otpcore.stores.memory import MemoryStore
from otpcore.testing import FakeClock

SECRET = b"limits-test-secret-limits-test-secret"


class Inbox:
    def __init__(self) -> None:
        self.codes: dict[str, str] = {}
        self.sent: list[str] = []

    async def __call__(self, email: str, code: str) -> None:
        self.codes[email] = code
        self.sent.append(email)


def service(clock: FakeClock, inbox: Inbox, store: Any = None, **overrides: Any) -> OTPAuth[Any]:
    settings: dict[str, Any] = {
        "policy": Policy(secret=SECRET),
        "store": store if store is not None else MemoryStore(),
        "sender": inbox,
        "clock": clock,
    }
    settings.update(overrides)
    return OTPAuth(**settings)


# -- pure rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "mailbox"),
    [
        ("victim@example.com", "victim@example.com"),
        ("victim+1@example.com", "victim@example.com"),
        ("victim+a+b@example.com", "victim@example.com"),
        ("v.ictim@example.com", "v.ictim@example.com"),  # dots matter outside gmail
        ("v.ic.tim+x@gmail.com", "victim@gmail.com"),
        ("v.ictim@googlemail.com", "victim@gmail.com"),
        ("STRASSE@example.com", "strasse@example.com"),
        ("straße@example.com", "strasse@example.com"),  # case-folded, not just lowered
    ],
)
def test_canonical_mailbox(email: str, mailbox: str) -> None:
    assert rules.canonical_mailbox(email) == mailbox


@pytest.mark.parametrize(
    ("ip", "scope"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("testclient", "testclient"),
    ],
)
def test_client_scope_keys_ipv6_by_its_64(ip: str, scope: str) -> None:
    assert rules.client_scope(ip) == scope


def test_keys_never_hold_the_address() -> None:
    for key in (
        rules.subject_key(SECRET, "victim@example.com"),
        rules.limit_key(SECRET, "send-mailbox", "victim@example.com"),
        rules.challenge_key(SECRET, "some-challenge-id"),
    ):
        assert "victim" not in key
        assert "some-challenge" not in key
        assert len(key) <= 64
    assert rules.subject_key(SECRET, "a@x.io") != rules.subject_key(b"x" * 32, "a@x.io")


def test_device_allowances_are_bound_to_their_address() -> None:
    subject = rules.subject_key(SECRET, "victim@example.com")
    other = rules.subject_key(SECRET, "other@example.com")
    token = rules.device_token(SECRET, subject, "nonce1")
    assert rules.valid_device(SECRET, subject, token) == "nonce1"
    assert rules.valid_device(SECRET, other, token) is None
    assert rules.valid_device(SECRET, subject, token[:-1] + "A") is None
    assert rules.valid_device(SECRET, subject, "garbage") is None
    assert rules.valid_device(SECRET, subject, None) is None


def test_windows_are_epoch_aligned_and_weigh_the_previous_one() -> None:
    now = datetime(2026, 1, 1, 12, 3, 45, tzinfo=UTC)
    window = rules.window_at(now, timedelta(minutes=5))
    assert window.start == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert window.previous_start == datetime(2026, 1, 1, 11, 55, tzinfo=UTC)
    assert window.weight == pytest.approx(0.25)
    assert window.expires_at == datetime(2026, 1, 1, 12, 10, tzinfo=UTC)


def test_rates_are_validated() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Rate(0, timedelta(minutes=1))
    with pytest.raises(ValueError, match="one second"):
        Rate(1, timedelta(0))
    with pytest.raises(ValueError, match="global_per_hour"):
        Limits(global_per_hour=0)


@pytest.mark.parametrize("offset", [0, 17, 59, 200, 299])
async def test_retry_after_is_honest(offset: int) -> None:
    """One second before ``retry_after`` the hit is still refused; at it, allowed."""
    store = MemoryStore()
    rate = Rate(5, timedelta(minutes=5))
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC) + timedelta(seconds=offset)
    for n in range(5):
        now = start + timedelta(seconds=n)
        assert (await store.hit("k", limit=5, window=rules.window_at(now, rate.per))).allowed
    now = start + timedelta(seconds=5)
    window = rules.window_at(now, rate.per)
    refused = await store.hit("k", limit=5, window=window)
    assert not refused.allowed
    wait = rules.retry_after(refused, limit=5, window=window, now=now)
    early = now + timedelta(seconds=wait - 1)
    assert not (await store.hit("k", limit=5, window=rules.window_at(early, rate.per))).allowed
    on_time = now + timedelta(seconds=wait)
    assert (await store.hit("k", limit=5, window=rules.window_at(on_time, rate.per))).allowed


def test_retry_after_when_the_current_window_is_full() -> None:
    now = datetime(2026, 1, 1, 12, 1, tzinfo=UTC)
    window = rules.window_at(now, timedelta(minutes=5))
    hit = LimitHit(allowed=False, count=5, previous_count=0)
    # Four minutes to the next window, then 1 - 4/5 of it: 60 s more.
    assert rules.retry_after(hit, limit=5, window=window, now=now) == 240 + 60


# -- the targets with the defaults ---------------------------------------------------------------


@pytest.mark.parametrize("offset", [0, 30, 150, 270, 299])
async def test_one_client_asking_for_300_addresses_in_a_minute_gets_at_most_30(
    offset: int,
) -> None:
    clock, inbox = FakeClock(), Inbox()
    clock.advance(offset)  # anywhere in the fixed window, boundary-straddling included
    auth = service(clock, inbox)
    refused: list[RateLimited] = []
    for n in range(300):
        try:
            await auth.request_code(f"user{n}@example.com", ip="198.51.100.1")
        except RateLimited as error:
            refused.append(error)
        clock.advance(0.2)
    assert len(inbox.sent) <= 30
    assert len(inbox.sent) >= 25
    assert all(e.code == "rate_limited" and e.limit == "client" for e in refused)
    assert all(e.retry_after is not None and e.retry_after > 0 for e in refused)


async def test_an_ipv6_client_is_one_client_across_its_64() -> None:
    clock, inbox = FakeClock(), Inbox()
    auth = service(clock, inbox)
    for n in range(40):
        with contextlib.suppress(RateLimited):
            await auth.request_code(f"user{n}@example.com", ip=f"2001:db8:0:1::{n + 1:x}")
    assert len(inbox.sent) == 25


@pytest.mark.parametrize("offset", [0, 1800, 3599])
async def test_100_tag_variants_from_100_clients_in_a_minute_get_at_most_5(offset: int) -> None:
    clock, inbox = FakeClock(), Inbox()
    clock.advance(offset)
    auth = service(clock, inbox)
    limits: list[str] = []
    for n in range(100):
        address = f"victim+{n}@gmail.com" if n % 2 else f"v.i.c.tim+{n}@googlemail.com"
        try:
            await auth.request_code(address, ip=f"192.0.2.{n}")
        except RateLimited as refused:
            limits.append(refused.limit)
        clock.advance(0.6)
    assert len(inbox.sent) <= 5
    assert set(limits) == {"mailbox"}


async def test_the_global_budget_is_off_by_default_and_counts_when_set() -> None:
    clock, inbox = FakeClock(), Inbox()
    auth = service(clock, inbox, limits=Limits(global_per_hour=3, per_client=None))
    limits: list[str] = []
    for n in range(5):
        try:
            await auth.request_code(f"user{n}@example.com")
        except RateLimited as refused:
            limits.append(refused.limit)
    assert len(inbox.sent) == 3
    assert limits == ["global", "global"]
    assert Limits().global_per_hour is None


async def test_guess_spraying_from_one_client_is_limited() -> None:
    clock, inbox = FakeClock(), Inbox()
    auth = service(clock, inbox, limits=Limits(per_client=None, per_mailbox=None))
    for n in range(10):
        await auth.request_code(f"user{n}@example.com")
    outcomes: list[str] = []
    for n in range(40):
        try:
            await auth.verify_code(f"user{n % 10}@example.com", "000000", ip="198.51.100.9")
        except OTPAuthError as refused:
            outcomes.append(refused.code)
    assert outcomes.count("rate_limited") == 10
    assert "rate_limited" not in outcomes[:30]


async def test_a_device_allowance_has_its_own_mailbox_budget() -> None:
    clock, inbox = FakeClock(), Inbox()
    auth = service(clock, inbox)
    first = await auth.request_code("owner@example.com")
    login = await auth.verify_code(
        "owner@example.com", inbox.codes["owner@example.com"], challenge_id=first.challenge_id
    )
    for n in range(10):  # strangers spend the mailbox budget
        with contextlib.suppress(RateLimited):
            await auth.request_code("owner@example.com", ip=f"192.0.2.{n}")
    with pytest.raises(RateLimited):
        await auth.request_code("owner@example.com")
    await auth.request_code("owner@example.com", device=login.device)  # the owner's own share
    # Someone else's allowance (another address) is no allowance here.
    other = await auth.request_code("other@example.com")
    theirs = await auth.verify_code(
        "other@example.com", inbox.codes["other@example.com"], challenge_id=other.challenge_id
    )
    with pytest.raises(RateLimited):
        await auth.request_code("owner@example.com", device=theirs.device)


async def test_a_request_creates_no_user_and_verify_creates_it() -> None:
    clock, inbox = FakeClock(), Inbox()
    store = MemoryStore()
    auth = service(clock, inbox, store)
    request = await auth.request_code("new@example.com")
    assert await store.find_by_email("new@example.com") is None
    login = await auth.verify_code(
        "new@example.com", inbox.codes["new@example.com"], challenge_id=request.challenge_id
    )
    account = await store.find_by_email("new@example.com")
    assert account is not None
    assert account.user_id == login.user_id
    assert account.is_verified


# -- nothing to learn with auto_create_user = False ------------------------------------------


class Recording(MemoryStore):
    """The memory store, recording the name of every port call."""

    def __init__(self, calls: list[str]) -> None:
        super().__init__()
        self.calls = calls

    def __getattribute__(self, name: str) -> Any:
        attribute = super().__getattribute__(name)
        if not name.startswith("_") and callable(attribute) and name != "calls":
            self.calls.append(name)
        return attribute


async def _script(auth: OTPAuth[Any], clock: FakeClock, email: str) -> list[str]:
    """Request, resend too early, six wrong guesses, let it expire: every status in order."""
    seen: list[str] = []

    async def step(work: Any) -> None:
        try:
            await work
            seen.append("ok")
        except OTPAuthError as refused:
            seen.append(f"{refused.code}:{refused.retry_after}")

    request = await auth.request_code(email, ip="198.51.100.1")
    seen.append(f"id:{len(request.challenge_id)}:{request.resend_after}:{request.expires_in}")
    await step(auth.request_code(email, challenge_id=request.challenge_id))
    for _ in range(6):
        await step(auth.verify_code(email, "000000", challenge_id=request.challenge_id))
    for _ in range(6):
        await step(auth.verify_code(email, "000000"))
    clock.advance(timedelta(minutes=11))
    await step(auth.request_code(email, challenge_id=request.challenge_id))
    clock.advance(timedelta(minutes=11))
    await step(auth.verify_code(email, "000000", challenge_id=request.challenge_id))
    return seen


async def test_known_and_unknown_addresses_get_the_same_statuses_after_the_same_calls() -> None:
    transcripts = []
    for email in ("known@example.com", "ghost@example.com"):
        calls: list[str] = []
        clock, inbox = FakeClock(), Inbox()
        store = Recording(calls)
        auth = service(clock, inbox, store, auto_create_user=False, randbelow=lambda n: 3)
        await store.create("known@example.com", {})
        calls.clear()
        statuses = await _script(auth, clock, email)
        transcripts.append((statuses, calls))
    (known, known_calls), (ghost, ghost_calls) = transcripts
    assert known == ghost
    assert known_calls == ghost_calls
    assert "create" not in known_calls
    assert known[1].startswith(CodeCooldown.code)
    assert {s.split(":")[0] for s in known} >= {
        "ok",
        CodeInvalid.code,
        AccountLocked.code,
        CodeExpired.code,
    }


async def test_the_request_never_waits_for_the_mailer() -> None:
    import asyncio

    release = asyncio.Event()
    started: list[str] = []

    async def slow(email: str, code: str) -> None:
        started.append(email)
        await release.wait()

    clock = FakeClock()
    auth = service(clock, Inbox(), sender=slow)
    await asyncio.wait_for(auth.request_code("known@example.com"), timeout=1)
    assert started == ["known@example.com"]  # delivery began, the answer did not wait
    release.set()
    await asyncio.sleep(0)
