"""Fixtures of the delivery suite: a real SMTP server, and an app that mails through it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from otpcore.stores.memory import MemoryStore
from otpcore_fastapi import OTPAuthConfig
from tests.delivery.smtp_server import SMTPServer
from tests.http.conftest import BASE_URL, SECRET, build_app


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    """aiosmtpd on a free 127.0.0.1 port, stopped after the test."""
    server = SMTPServer()
    server.start()
    yield server
    server.stop()


class MailConfig(OTPAuthConfig):
    """A config that sends by SMTP (no send_otp), limits off unless a test sets them."""

    secret_key = SECRET
    cookie_secure = False
    mail_from = "Example <login@example.com>"
    send_limit_per_client = None
    send_limit_per_mailbox = None
    verify_limit_per_client = None

    def __init__(self, **settings: Any) -> None:
        for name, value in settings.items():
            setattr(self, name, value)
        super().__init__()


@pytest.fixture
async def mail_app(
    smtp_server: SMTPServer,
) -> AsyncIterator[Any]:
    """``make(**settings)``: ``(client, config, store)`` of an app over the memory store that
    mails to ``smtp_server``."""
    made: list[tuple[httpx.AsyncClient, MailConfig]] = []

    async def make(**settings: Any) -> tuple[httpx.AsyncClient, MailConfig, MemoryStore]:
        settings.setdefault("smtp_url", f"smtp://127.0.0.1:{smtp_server.port}")
        config = MailConfig(**settings)
        store = MemoryStore()
        app, _ = build_app(config, store, "/auth")
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)
        made.append((client, config))
        return client, config, store

    yield make
    for client, config in made:
        await client.aclose()
        await config.auth.outbox.aclose()
