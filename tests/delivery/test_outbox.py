"""The outbox with in-process mailers: the first attempt before the answer, superseded and
expired messages dropped, retries, events, and what never changes (the challenge)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

import pytest

from otpcore.delivery import (
    CallbackMailer,
    CodeMail,
    Outbox,
    PermanentFailure,
    RetryPolicy,
    TransientFailure,
)
from otpcore.domain.errors import DeliveryBusy
from otpcore.domain.events import AuthEvent, CodeSent, DeliveryFailed
from otpcore.domain.limits import Limits
from otpcore.domain.policy import Policy
from otpcore.service import OTPAuth
from otpcore.stores.memory import MemoryStore
from otpcore.testing.clock import FakeClock
from tests.http.conftest import SECRET

FAST = RetryPolicy(first_delay=timedelta(milliseconds=20), max_delay=timedelta(milliseconds=80))


class Gate:
    """A send_otp that waits for :meth:`open` and records what it sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.opened = asyncio.Event()
        self.failures: list[BaseException] = []

    async def __call__(self, email: str, code: str) -> None:
        await self.opened.wait()
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((email, code))


def service(send: Any, clock: FakeClock, events: list[AuthEvent], **options: Any) -> OTPAuth[Any]:
    return OTPAuth(
        policy=Policy(secret=SECRET.encode()),
        store=MemoryStore(),
        sender=send,
        clock=clock,
        events=events.append,
        limits=Limits.unlimited(),
        **options,
    )


async def test_an_in_process_sender_has_delivered_when_request_code_returns() -> None:
    sent: list[tuple[str, str]] = []

    async def send_otp(email: str, code: str) -> None:
        sent.append((email, code))

    events: list[AuthEvent] = []
    auth = service(send_otp, FakeClock(), events)
    for index in range(10):
        await auth.request_code(f"user{index}@example.com")
        assert len(sent) == index + 1  # no sleep, no drain
    assert sum(isinstance(e, CodeSent) for e in events) == 10
    assert len(auth.outbox) == 0


async def test_a_newer_code_for_the_same_binding_supersedes_a_waiting_one() -> None:
    gate = Gate()
    events: list[AuthEvent] = []
    clock = FakeClock()
    auth = service(gate, clock, events, outbox_concurrency=1)
    await auth.request_code("blocker@example.com")  # holds the only delivery task
    first = await auth.request_code("alice@example.com")
    clock.advance(timedelta(seconds=61))  # past the resend cooldown
    await auth.request_code("alice@example.com", challenge_id=first.challenge_id)
    gate.opened.set()
    assert await auth.outbox.drain(5) == 0
    to_alice = [code for email, code in gate.sent if email == "alice@example.com"]
    assert len(to_alice) == 1  # only the newer code; the superseded one was dropped
    login = await auth.verify_code("alice@example.com", to_alice[0])
    assert login.user_id


async def test_an_expired_message_is_dropped_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = Gate()
    events: list[AuthEvent] = []
    clock = FakeClock()
    auth = service(gate, clock, events, outbox_concurrency=1)
    await auth.request_code("blocker@example.com")
    await auth.request_code("late@example.com")
    clock.advance(timedelta(minutes=11))  # the code's lifetime is 10 minutes
    gate.opened.set()
    assert await auth.outbox.drain(5) == 0
    assert [email for email, _ in gate.sent] == ["blocker@example.com"]
    [failed] = [e for e in events if isinstance(e, DeliveryFailed)]
    assert (failed.email, failed.reason, failed.attempts) == ("late@example.com", "expired", 0)
    assert any("l***@example.com" in r.getMessage() for r in caplog.records)


async def test_transient_failures_are_retried_with_backoff_then_delivered_once() -> None:
    gate = Gate()
    gate.failures = [TransientFailure("smtp 451"), ConnectionRefusedError()]
    gate.opened.set()
    events: list[AuthEvent] = []
    auth = service(gate, FakeClock(), events, retry=FAST)
    await auth.request_code("retry@example.com")
    assert gate.sent == []
    assert await auth.outbox.drain(5) == 0
    assert [email for email, _ in gate.sent] == ["retry@example.com"]
    assert [type(e) for e in events if isinstance(e, CodeSent | DeliveryFailed)] == [CodeSent]


async def test_other_exceptions_from_send_otp_are_not_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = Gate()
    gate.failures = [RuntimeError("boom for 123456 to mallory@example.com")]
    gate.opened.set()
    events: list[AuthEvent] = []
    auth = service(gate, FakeClock(), events, retry=FAST)
    await auth.request_code("mallory@example.com")
    assert await auth.outbox.drain(5) == 0
    await asyncio.sleep(0.1)
    assert gate.sent == []
    [failed] = [e for e in events if isinstance(e, DeliveryFailed)]
    assert failed.reason == "permanent"
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "RuntimeError" in text
    assert "mallory@" not in text
    assert "123456" not in text


async def test_delivery_never_changes_the_challenge() -> None:
    async def refuse(email: str, code: str) -> None:
        raise PermanentFailure("smtp 550")

    events: list[AuthEvent] = []
    clock = FakeClock()
    store = MemoryStore()
    auth: OTPAuth[Any] = OTPAuth(
        policy=Policy(secret=SECRET.encode()),
        store=store,
        sender=refuse,
        clock=clock,
        events=events.append,
        limits=Limits.unlimited(),
        randbelow=lambda _: 7,
    )
    requested = await auth.request_code("grace@example.com")
    assert await auth.outbox.drain(5) == 0
    assert any(isinstance(e, DeliveryFailed) for e in events)
    # The undelivered code still stands, with its cooldown, exactly as if it had been sent.
    login = await auth.verify_code(
        "grace@example.com", "777777", challenge_id=requested.challenge_id
    )
    assert login.user_id


async def test_reserve_refuses_when_full_and_a_failed_request_frees_its_slot() -> None:
    outbox = Outbox(CallbackMailer(Gate()), capacity=2, clock=FakeClock())
    first = outbox.reserve()
    with outbox.reserve():
        with pytest.raises(DeliveryBusy) as refused:
            outbox.reserve()
        assert refused.value.code == "busy"
        assert refused.value.retry_after == 5
    assert len(outbox) == 1  # left normally with no history: released at once
    with pytest.raises(RuntimeError), outbox.reserve():
        raise RuntimeError("the request failed after reserving")
    assert len(outbox) == 1
    with first:
        pass
    assert len(outbox) == 0
    assert await outbox.drain(0.01) == 0


async def test_aclose_cancels_waiting_retries(caplog: pytest.LogCaptureFixture) -> None:
    gate = Gate()
    gate.failures = [TransientFailure("smtp 421")]
    gate.opened.set()
    auth = service(
        gate,
        FakeClock(),
        [],
        retry=RetryPolicy(first_delay=timedelta(seconds=30), max_delay=timedelta(seconds=30)),
    )
    await auth.request_code("slow@example.com")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="otpcore"):
        assert await auth.outbox.drain(0.05) == 1
    assert "not delivered at shutdown" in caplog.text
    await auth.outbox.aclose()
    assert len(auth.outbox) == 0


def test_retry_policy_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(
        first_delay=timedelta(seconds=1), max_delay=timedelta(seconds=10), jitter=0.0
    )
    assert [policy.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    jittered = RetryPolicy(first_delay=timedelta(seconds=1))
    assert all(0.8 <= jittered.delay(1) <= 1.2 for _ in range(100))
    with pytest.raises(ValueError, match="first_delay"):
        RetryPolicy(first_delay=timedelta(0))
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=1.0)


def test_code_mail_repr_hides_the_code_and_link() -> None:
    mail = CodeMail(
        email="a@example.com",
        code="135790",
        expires_at=datetime(2030, 1, 1),
        link="https://app.example.com/auth/magic?t=secret-token",
    )
    assert "135790" not in repr(mail)
    assert "secret-token" not in repr(mail)
