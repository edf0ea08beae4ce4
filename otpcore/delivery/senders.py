"""The delivery port and the mailers behind it.

The outbox hands each :class:`CodeMail` to a :class:`Mailer`. Two are built in:

- :class:`TemplateMailer` renders the templates into a :class:`Message` and gives it to a
  :class:`MessageSender`: :class:`~otpcore.delivery.smtp.SMTPSender`, or
  :class:`ConsoleSender` for development;
- :class:`CallbackMailer` calls the reference's ``async send_otp(email, code)`` unchanged.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Final, Protocol, TextIO, runtime_checkable

from otpcore.delivery.errors import DeliveryFailure, PermanentFailure, TransientFailure
from otpcore.delivery.message import CodeMail, Message
from otpcore.delivery.templates import Templates

__all__ = ["CallbackMailer", "ConsoleSender", "Mailer", "MessageSender", "TemplateMailer"]

#: RFC 3834 §5: marks the mail as automatic, so vacation responders stay silent.
DEFAULT_HEADERS: Final[Mapping[str, str]] = MappingProxyType({"Auto-Submitted": "auto-generated"})


@runtime_checkable
class MessageSender(Protocol):
    """Sends a rendered :class:`Message` (SMTP, an HTTP API, the console)."""

    async def send(self, message: Message) -> None:
        """Send ``message`` once.

        Raises:
            TransientFailure: Not sent; a later try may succeed.
            PermanentFailure: Not sent; a later try would fail the same way.
            UnconfirmedDelivery: Handed over but not acknowledged; never repeat it.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; the sender may be used again afterwards."""
        ...


@runtime_checkable
class Mailer(Protocol):
    """Delivers one code: what the outbox calls, once per attempt."""

    @property
    def domain(self) -> str:
        """The domain of ``Message-ID`` values for this mailer's messages."""
        ...

    async def deliver(self, mail: CodeMail, *, now: datetime) -> None:
        """Deliver ``mail`` once; raises like :meth:`MessageSender.send`."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class TemplateMailer:
    """Renders each code with :class:`Templates` and sends it through ``sender``.

    Args:
        sender: Where the rendered message goes.
        mail_from: The ``From`` header (``"Example <login@example.com>"``).
        templates: The template set; the built-in English one when omitted.
        headers: Further headers (default: ``Auto-Submitted: auto-generated``).
        locale: Chooses the locale for a mail (e.g. from the user's profile); returning
            ``None`` falls back to the mail's ``languages``.

    Raises:
        ValueError: ``mail_from`` is not one address, or ``headers`` sets a reserved one.
    """

    __slots__ = ("_domain", "_from", "_headers", "_locale", "_sender", "templates")

    def __init__(
        self,
        sender: MessageSender,
        *,
        mail_from: str,
        templates: Templates | None = None,
        headers: Mapping[str, str] = DEFAULT_HEADERS,
        locale: Callable[[CodeMail], str | None] | None = None,
    ) -> None:
        probe = Message(
            recipient="probe@example.com",
            sender=mail_from,
            subject="",
            text="",
            message_id="<probe@example.com>",
            date=datetime.fromtimestamp(0),
            headers=headers,
        )
        self._domain = probe.envelope_sender.rpartition("@")[2] or "localhost"
        self._sender = sender
        self._from = mail_from
        self._headers = MappingProxyType(dict(headers))
        self._locale = locale
        self.templates = templates if templates is not None else Templates()

    @property
    def domain(self) -> str:
        """The ``From`` address's domain."""
        return self._domain

    @property
    def sender(self) -> MessageSender:
        """The message sender."""
        return self._sender

    def compose(self, mail: CodeMail, *, now: datetime) -> Message:
        """The message ``mail`` becomes: rendered in its locale, with its own Message-ID."""
        locale = self._locale(mail) if self._locale is not None else None
        rendered = self.templates.render(mail, now=now, locale=locale)
        return Message(
            recipient=mail.email,
            sender=self._from,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            message_id=mail.message_id or f"<unset@{self._domain}>",
            date=mail.created_at or now,
            headers={**self._headers, "Content-Language": rendered.locale},
        )

    async def deliver(self, mail: CodeMail, *, now: datetime) -> None:
        """Render ``mail`` and send it."""
        await self._sender.send(self.compose(mail, now=now))

    async def aclose(self) -> None:
        """Close the sender's connections."""
        await self._sender.aclose()


class CallbackMailer:
    """The reference's hook, ``async def send_otp(self, email, code)``, as a mailer.

    The callable gets the address and the code and nothing else (no template, no link). It
    may raise :class:`TransientFailure` to be retried; ``ConnectionRefusedError`` is retried
    too. Any other exception is a permanent failure: the callable may have sent something
    before it raised, and a retry could deliver the code twice.
    """

    __slots__ = ("_send",)

    def __init__(self, send: Callable[[str, str], Awaitable[None]]) -> None:
        self._send = send

    @property
    def domain(self) -> str:
        """``localhost``: the callable makes its own message."""
        return "localhost"

    async def deliver(self, mail: CodeMail, *, now: datetime) -> None:
        """``await send(mail.email, mail.code)``."""
        try:
            await self._send(mail.email, mail.code)
        except DeliveryFailure:
            raise
        except ConnectionRefusedError as exc:
            raise TransientFailure(type(exc).__name__) from None
        except Exception as exc:
            # ``from None``: the exception's own text may quote the code or the address.
            raise PermanentFailure(type(exc).__name__) from None

    async def aclose(self) -> None:
        """Nothing to close."""


class ConsoleSender:
    """Writes each message's headers and text part to a stream: for development only, since
    the code is printed in clear.

    Args:
        stream: Where to write (default: standard output at the time of each send).
    """

    __slots__ = ("_stream",)

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    async def send(self, message: Message) -> None:
        """Write ``message`` (From, To, Subject, Message-ID and the text body)."""
        stream = self._stream if self._stream is not None else sys.stdout
        stream.write(
            f"--- e-mail ---\nFrom: {message.sender}\nTo: {message.recipient}\n"
            f"Subject: {message.subject}\nMessage-ID: {message.message_id}\n\n"
            f"{message.text}\n--- end ---\n"
        )
        stream.flush()

    async def aclose(self) -> None:
        """Nothing to close."""
