"""Delivery against a real SMTP server (aiosmtpd): the message, a slow server, an outage, a
permanent failure, timeouts, a full outbox and shutdown."""

from __future__ import annotations

import asyncio
import logging
import re
import statistics
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from otpcore.delivery import SMTPSender, TemplateMailer, Templates
from otpcore.domain.events import AuthEvent, CodeSent, DeliveryFailed
from otpcore.domain.limits import Limits
from otpcore.domain.policy import Policy
from otpcore.service import OTPAuth
from otpcore.stores.memory import MemoryStore
from otpcore_fastapi.languages import accept_languages
from tests.delivery.smtp_server import SMTPServer
from tests.http.conftest import SECRET

CODE = re.compile(r"\b(\d{6})\b")


def service(
    server: SMTPServer,
    *,
    events: list[AuthEvent] | None = None,
    templates: Templates | None = None,
    timeout: float = 5.0,
    **options: Any,
) -> OTPAuth[Any]:
    sender = SMTPSender("127.0.0.1", server.port, tls="none", timeout=timeout)
    return OTPAuth(
        policy=Policy(secret=SECRET.encode()),
        store=MemoryStore(),
        sender=TemplateMailer(sender, mail_from="Example <login@example.com>", templates=templates),
        events=events.append if events is not None else None,
        limits=Limits.unlimited(),
        **options,
    )


def code_in(text: str) -> str:
    found = CODE.search(text)
    assert found is not None, text
    return found.group(1)


async def test_the_message_is_multipart_alternative_with_the_code_in_both_parts(
    smtp_server: SMTPServer,
) -> None:
    auth = service(smtp_server)
    await auth.request_code("Alice@Example.com", languages=accept_languages("fr-CH, en;q=0.5"))
    assert await auth.outbox.drain(5) == 0

    [received] = smtp_server.recorder.received
    assert received.mail_from == "login@example.com"
    assert received.rcpt_tos == ["alice@example.com"]
    message = received.message
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    code = code_in(text.get_content())
    assert f">{code}</strong>" in html.get_content()
    assert 'aria-label="' + " ".join(code) + '"' in html.get_content()
    assert '<html lang="en">' in html.get_content()
    assert message["From"] == "Example <login@example.com>"
    assert message["To"] == "alice@example.com"
    assert message["Subject"] == "Your sign-in code"
    assert message["Date"] is not None
    assert re.fullmatch(r"<[^@<>]+@example\.com>", message["Message-ID"])
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Content-Language"] == "en"
    assert "10 minutes" in text.get_content()
    # No link configured: no link block in either part.
    assert "http" not in text.get_content()
    assert "<a " not in html.get_content()
    await auth.outbox.aclose()


async def test_locale_overrides_and_html_autoescape(smtp_server: SMTPServer) -> None:
    templates = Templates(
        overrides={
            "de/subject.txt": "Ihr Anmeldecode für $app_name",
            "de/body.txt": "Ihr Code: $code ($app_name)\n$link_block",
        },
        app_name='<b>Tom & "Jerry"</b>',
    )
    auth = service(smtp_server, templates=templates)
    await auth.request_code("bob@example.com", languages=accept_languages("de-CH;q=0.9, fr;q=0.8"))
    await auth.request_code("carol@example.com", languages=accept_languages("fr"))
    assert await auth.outbox.drain(5) == 0

    [german] = smtp_server.recorder.to("bob@example.com")
    text, html = german.message.iter_parts()
    assert german.message["Subject"] == 'Ihr Anmeldecode für <b>Tom & "Jerry"</b>'
    assert german.message["Content-Language"] == "de"
    assert text.get_content().startswith("Ihr Code: ")
    assert '<b>Tom & "Jerry"</b>' in text.get_content()  # text is not escaped
    assert "&lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt;" in html.get_content()
    assert "<b>Tom" not in html.get_content()
    assert '<html lang="de">' in html.get_content()
    [french] = smtp_server.recorder.to("carol@example.com")
    assert french.message["Content-Language"] == "en"  # no French set: the default
    await auth.outbox.aclose()


async def test_connections_are_reused(smtp_server: SMTPServer) -> None:
    auth = service(smtp_server, outbox_concurrency=1)
    for index in range(5):
        await auth.request_code(f"user{index}@example.com")
        await auth.outbox.drain(5)
    assert len(smtp_server.recorder.received) == 5
    assert len({r.peer for r in smtp_server.recorder.received}) == 1
    await auth.outbox.aclose()


async def test_a_slow_server_never_slows_request_otp(
    smtp_server: SMTPServer, mail_app: Any
) -> None:
    smtp_server.recorder.behaviour.data_delay = 0.4
    client, config, _ = await mail_app()
    durations = []
    for index in range(20):
        started = time.perf_counter()
        response = await client.post("/auth/request-otp", json={"email": f"u{index}@example.com"})
        durations.append(time.perf_counter() - started)
        assert response.status_code == 200
    assert statistics.median(durations) < 0.1, durations
    assert await config.auth.outbox.drain(30) == 0
    counts = Counter(address for r in smtp_server.recorder.received for address in r.rcpt_tos)
    assert counts == {f"u{index}@example.com": 1 for index in range(20)}
    assert len({r.message["Message-ID"] for r in smtp_server.recorder.received}) == 20


async def test_an_outage_then_recovery_delivers_each_message_exactly_once(
    smtp_server: SMTPServer, mail_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, config, _ = await mail_app(
        delivery_retry_delay=timedelta(milliseconds=200),
        delivery_retry_max_delay=timedelta(seconds=1),
    )
    smtp_server.stop()
    started = time.monotonic()
    emails = [f"outage{index}@example.com" for index in range(10)]
    for email in emails:
        assert (await client.post("/auth/request-otp", json={"email": email})).status_code == 200
        await asyncio.sleep(0.5)  # requests spread over the 5 s outage
    await asyncio.sleep(max(0.0, 5 - (time.monotonic() - started)))
    assert smtp_server.recorder.received == []
    smtp_server.start()
    assert await config.auth.outbox.drain(60) == 0
    assert time.monotonic() - started < 60
    counts = Counter(address for r in smtp_server.recorder.received for address in r.rcpt_tos)
    assert counts == dict.fromkeys(emails, 1)
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert retries
    assert all("outage" not in r.getMessage() for r in retries)  # masked: o***@example.com


async def test_a_permanent_failure_is_logged_masked_emitted_and_not_retried(
    smtp_server: SMTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    smtp_server.recorder.behaviour.rcpt_reply = "550 5.1.1 no such user"
    events: list[AuthEvent] = []
    auth = service(smtp_server, events=events, retry=None)
    codes: list[str] = []
    with caplog.at_level(logging.WARNING, logger="otpcore"):
        requested = await auth.request_code("dave@example.com")
        assert await auth.outbox.drain(5) == 0
    assert smtp_server.recorder.rcpt_attempts == 1
    assert smtp_server.recorder.received == []
    [failed] = [e for e in events if isinstance(e, DeliveryFailed)]
    assert (failed.reason, failed.attempts, failed.email) == ("permanent", 1, "dave@example.com")
    assert not any(isinstance(e, CodeSent) for e in events)
    [record] = [r for r in caplog.records if "deliver" in r.getMessage()]
    assert "d***@example.com" in record.getMessage()
    assert "smtp 550" in record.getMessage()
    assert "dave@" not in record.getMessage()
    assert record.exc_info is None
    codes.append(requested.challenge_id)
    assert not any(value in record.getMessage() for value in codes)
    await auth.outbox.aclose()


async def test_a_timeout_before_data_is_retried(smtp_server: SMTPServer) -> None:
    behaviour = smtp_server.recorder.behaviour
    behaviour.rcpt_stalls, behaviour.stall_seconds = 1, 1.5
    events: list[AuthEvent] = []
    auth = service(smtp_server, events=events, timeout=0.3, retry=_fast_retry())
    await auth.request_code("erin@example.com")
    assert await auth.outbox.drain(10) == 0
    assert smtp_server.recorder.rcpt_attempts == 2
    assert len(smtp_server.recorder.to("erin@example.com")) == 1
    assert [type(e) for e in events if isinstance(e, CodeSent | DeliveryFailed)] == [CodeSent]
    await auth.outbox.aclose()


async def test_a_timeout_after_data_is_never_resent(smtp_server: SMTPServer) -> None:
    behaviour = smtp_server.recorder.behaviour
    behaviour.data_stalls, behaviour.stall_seconds = 1, 1.5
    events: list[AuthEvent] = []
    auth = service(smtp_server, events=events, timeout=0.3, retry=_fast_retry())
    await auth.request_code("frank@example.com")
    assert await auth.outbox.drain(10) == 0
    await asyncio.sleep(0.5)  # a retry would have come by now
    assert len(smtp_server.recorder.to("frank@example.com")) == 1  # at most once
    [failed] = [e for e in events if isinstance(e, DeliveryFailed)]
    assert (failed.reason, failed.attempts) == ("unconfirmed", 1)
    await auth.outbox.aclose()


async def test_a_full_outbox_answers_429_busy_for_any_address(
    smtp_server: SMTPServer, mail_app: Any
) -> None:
    smtp_server.recorder.behaviour.data_delay = 1.0
    client, config, store = await mail_app(
        outbox_size=3, outbox_concurrency=1, auto_create_user=False
    )
    known = [f"known{index}@example.com" for index in range(4)]
    for email in known:
        await store.create(email, {})

    async def request(email: str) -> tuple[int, str | None]:
        response = await client.post("/auth/request-otp", json={"email": email})
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
        return response.status_code, response.json().get("code")

    assert [await request(email) for email in known[:3]] == [(200, None)] * 3
    assert await request("stranger@example.com") == (429, "busy")
    assert await request(known[3]) == (429, "busy")
    assert await config.auth.outbox.drain(30) == 0
    assert len(smtp_server.recorder.received) == 3

    # Unknown addresses get no mail but hold a slot as long as a delivery took (about 1 s
    # here), so they fill the outbox just as known ones do.
    assert [await request(f"nobody{index}@example.com") for index in range(3)] == [(200, None)] * 3
    assert await request(known[3]) == (429, "busy")
    assert len(smtp_server.recorder.received) == 3


async def test_shutdown_drains_the_queue(smtp_server: SMTPServer) -> None:
    smtp_server.recorder.behaviour.data_delay = 0.2
    auth = service(smtp_server, outbox_concurrency=1)
    for index in range(5):
        await auth.request_code(f"drain{index}@example.com")
    assert len(smtp_server.recorder.received) == 0
    assert await auth.outbox.drain(0.1) > 0  # too short: some are left, and say so
    assert await auth.outbox.drain(10) == 0
    assert len(smtp_server.recorder.received) == 5
    await auth.outbox.aclose()


def _fast_retry() -> Any:
    from otpcore.delivery import RetryPolicy

    return RetryPolicy(first_delay=timedelta(milliseconds=100), max_delay=timedelta(seconds=1))
