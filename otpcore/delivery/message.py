"""What is delivered: a code to send (:class:`CodeMail`) and the e-mail made of it
(:class:`Message`), serialized by the standard library's :mod:`email` package."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from types import MappingProxyType
from typing import Final

__all__ = ["CodeMail", "Message"]

_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})
#: Headers a :class:`Message` sets itself; ``headers`` may not name them.
RESERVED_HEADERS: Final = frozenset(
    {"from", "to", "subject", "date", "message-id", "mime-version", "content-type"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeMail:
    """One code to deliver, as the request flow hands it to the outbox.

    It holds the code in memory only (the outbox never writes it anywhere), and its repr
    shows neither the code nor the link.

    Attributes:
        email: The normalized recipient address.
        code: The code in plaintext.
        expires_at: When the code expires; an undelivered message is dropped then.
        user_id: The account's id, or ``None`` for an address without one yet.
        binding: Opaque key of the challenge the code belongs to; a newer code for the
            same binding supersedes this one while it waits.
        languages: The requester's language tags, most wanted first (``("de-ch", "en")``);
            the template locale is chosen from them. A binding reads them from the request's
            ``Accept-Language`` (the core parses no HTTP).
        accept_language: The request's raw ``Accept-Language`` value, carried unchanged for
            a binding's locale hook; nothing in the core reads it.
        link: A URL that redeems the code (a magic link), put into the templates when set.
        variables: Further template variables (``$name``), autoescaped in HTML.
        message_id: ``Message-ID`` kept across every attempt; the outbox sets it.
        created_at: When the request made it (the ``Date`` header); the outbox sets it.
    """

    email: str
    code: str = field(repr=False)
    expires_at: datetime
    user_id: str | None = None
    binding: str | None = field(default=None, repr=False)
    languages: tuple[str, ...] = ()
    accept_language: str | None = None
    link: str | None = field(default=None, repr=False)
    variables: Mapping[str, str] = field(default_factory=lambda: _EMPTY, repr=False)
    message_id: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """An e-mail ready to send: a text part, an optional HTML part, and headers.

    Attributes:
        recipient: The envelope and ``To`` address.
        sender: The ``From`` address (``"Name <addr>"`` or a bare address).
        subject: The ``Subject`` line.
        text: The ``text/plain`` body.
        html: The ``text/html`` alternative, or ``None`` for a text-only message.
        message_id: The ``Message-ID`` (``<…@domain>``), the same on every attempt.
        date: The ``Date`` header's instant.
        headers: Further headers (never one listed in ``RESERVED_HEADERS``).
    """

    recipient: str
    sender: str
    subject: str = field(repr=False)
    text: str = field(repr=False)
    html: str | None = field(default=None, repr=False)
    message_id: str
    date: datetime
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        clash = RESERVED_HEADERS.intersection(name.lower() for name in self.headers)
        if clash:
            raise ValueError(f"headers may not set {', '.join(sorted(clash))}")

    @property
    def envelope_sender(self) -> str:
        """The bare address of ``sender``, for ``MAIL FROM``."""
        return _bare(self.sender)

    def to_email(self) -> EmailMessage:
        """The message as a standard-library :class:`~email.message.EmailMessage`:
        ``multipart/alternative`` (text, then HTML) when there is an HTML part."""
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = self.recipient
        mail["Subject"] = self.subject
        mail["Date"] = format_datetime(self.date)
        mail["Message-ID"] = self.message_id
        mail.set_content(self.text, subtype="plain", cte="quoted-printable")
        if self.html is not None:
            mail.add_alternative(self.html, subtype="html", cte="quoted-printable")
        # After the body: set_content drops every Content-* header (Content-Language too).
        for name, value in self.headers.items():
            mail[name] = value
        return mail


def _bare(address: str) -> str:
    # The header parser, not string slicing, takes the addr-spec out of "Name <addr>".
    probe = EmailMessage()
    probe["From"] = address
    parsed: tuple[Address, ...] = probe["From"].addresses
    if len(parsed) != 1 or not parsed[0].username or not parsed[0].domain:
        raise ValueError(f"not a single address: {address!r}")
    return parsed[0].addr_spec
