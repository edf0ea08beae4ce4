"""A real SMTP server for the delivery tests: aiosmtpd in a thread of this process, on a free
127.0.0.1 port, with knobs for the failures a mail server shows (slow, refusing, stalling,
down)."""

from __future__ import annotations

import asyncio
import ssl
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.net import free_port


@dataclass
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    peer: Any
    login: str | None

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Behaviour:
    """What the server does; tests change it while it runs."""

    data_delay: float = 0.0
    rcpt_reply: str | None = None
    rcpt_stalls: int = 0
    data_stalls: int = 0
    stall_seconds: float = 2.0


class Recorder:
    """aiosmtpd handler: records accepted messages and applies :class:`Behaviour`."""

    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.received: list[Received] = []
        self.rcpt_attempts = 0
        self.sessions: set[int] = set()
        self._lock = threading.Lock()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        self.rcpt_attempts += 1
        self.sessions.add(id(session))
        b = self.behaviour
        if b.rcpt_reply is not None:
            return b.rcpt_reply
        if b.rcpt_stalls > 0:
            b.rcpt_stalls -= 1
            await asyncio.sleep(b.stall_seconds)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        b = self.behaviour
        if b.data_delay:
            await asyncio.sleep(b.data_delay)
        login = session.auth_data.login.decode() if session.authenticated else None
        with self._lock:
            self.received.append(
                Received(
                    mail_from=envelope.mail_from,
                    rcpt_tos=list(envelope.rcpt_tos),
                    raw=bytes(envelope.original_content or envelope.content),
                    peer=session.peer,
                    login=login,
                )
            )
        if b.data_stalls > 0:  # accepted, but the reply comes too late
            b.data_stalls -= 1
            await asyncio.sleep(b.stall_seconds)
        return "250 Message accepted"

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.rcpt_tos]


@dataclass
class SMTPServer:
    """The server: ``start()``/``stop()`` may be called repeatedly (an outage)."""

    recorder: Recorder = field(default_factory=Recorder)
    port: int = field(default_factory=free_port)
    tls_context: ssl.SSLContext | None = None
    users: dict[str, str] | None = None
    _controller: Controller | None = None

    def start(self) -> None:
        kwargs: dict[str, Any] = {}
        if self.tls_context is not None:
            kwargs["tls_context"] = self.tls_context
            kwargs["require_starttls"] = True
        if self.users is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_require_tls"] = True
        self._controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port, **kwargs)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and self.users is not None:
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if self.users.get(user) == password:
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)
