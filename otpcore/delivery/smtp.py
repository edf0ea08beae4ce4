"""An SMTP :class:`~otpcore.delivery.senders.MessageSender` over ``aiosmtplib`` (the ``smtp``
extra): STARTTLS or implicit TLS, AUTH, per-command timeouts, reused connections.

Failures are sorted for the outbox's retry policy by the phase they happen in:

============================================  =========================================
connecting, TLS, AUTH, MAIL FROM, RCPT TO      4xx, timeout, refused or dropped connection
                                               -> :class:`TransientFailure`; 5xx ->
                                               :class:`PermanentFailure`
the DATA command                               4xx / 5xx reply -> transient / permanent;
                                               a timeout or a dropped connection ->
                                               :class:`UnconfirmedDelivery` (never resent)
============================================  =========================================

A timeout anywhere inside DATA counts as after its end: ``aiosmtplib`` does not say whether it
was waiting for the ``354`` or for the final reply, and at most once matters more than one
more try.
"""

from __future__ import annotations

import asyncio
import ssl
from email import policy
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import unquote, urlsplit

from email_validator import EmailNotValidError, validate_email

from otpcore.delivery.errors import PermanentFailure, TransientFailure, UnconfirmedDelivery
from otpcore.delivery.message import Message

if TYPE_CHECKING:
    import aiosmtplib

__all__ = ["SMTPSender", "TLSMode"]

TLSMode = Literal["starttls", "implicit", "none"]
_TLS_MODES: Final = ("starttls", "implicit", "none")
_LOOPBACK: Final = frozenset({"localhost", "127.0.0.1", "::1"})


def _failure(exc: BaseException, *, after_data: bool = False) -> Exception:
    """The outbox's view of an ``aiosmtplib`` (or socket) error."""
    import aiosmtplib

    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        exc = exc.recipients[0]
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        reason = f"smtp {exc.code}"
        if 400 <= exc.code < 500:
            return TransientFailure(reason, smtp_code=exc.code)
        return PermanentFailure(reason, smtp_code=exc.code)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return PermanentFailure("not supported by the server")
    if isinstance(exc, TimeoutError | OSError | aiosmtplib.SMTPException):
        reason = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        if after_data:
            return UnconfirmedDelivery(f"{reason} during DATA")
        return TransientFailure(reason)
    raise exc


class SMTPSender:
    """Sends messages over SMTP, keeping up to ``connections`` connections open for reuse.

    Args:
        host: The server.
        port: Default 465 for implicit TLS, 587 for STARTTLS, 25 without TLS.
        tls: ``"starttls"`` (required: a server that does not offer it is refused),
            ``"implicit"`` (TLS from the first byte, "SMTPS"), or ``"none"`` (plain text; for
            a relay on the same host only).
        username: AUTH user; AUTH is skipped when ``None``.
        password: AUTH password.
        timeout: Seconds each SMTP command (and the connection) may take.
        connections: Idle connections kept for reuse.
        tls_context: Certificates and protocol versions; the system's defaults when omitted.
        local_hostname: The name sent in EHLO (default: this host's name).

    Raises:
        ValueError: A setting that cannot work.
    """

    __slots__ = (
        "_idle",
        "_loop",
        "connections",
        "host",
        "local_hostname",
        "password",
        "port",
        "timeout",
        "tls",
        "tls_context",
        "username",
    )

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        tls: TLSMode = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        connections: int = 4,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        if tls not in _TLS_MODES:
            raise ValueError(f"tls must be one of {', '.join(_TLS_MODES)}, got {tls!r}")
        if not host:
            raise ValueError("host must not be empty")
        if timeout <= 0 or connections < 1:
            raise ValueError("timeout must be above 0 and connections at least 1")
        if (username is None) != (password is None):
            raise ValueError("set both username and password for AUTH, or neither")
        self.host = host
        self.port = port if port is not None else {"implicit": 465, "starttls": 587}.get(tls, 25)
        self.tls: TLSMode = tls
        self.username = username
        self.password = password
        self.timeout = timeout
        self.connections = connections
        self.tls_context = tls_context
        self.local_hostname = local_hostname
        self._idle: list[aiosmtplib.SMTP] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_url(cls, url: str, **options: object) -> SMTPSender:
        """A sender for ``smtp://[user:password@]host[:port]`` (STARTTLS required, except to a
        loopback host, which gets none) or ``smtps://…`` (implicit TLS).

        Percent-encode ``@``, ``:`` and ``/`` in the user and password. ``options`` are the
        constructor's keyword arguments and win over the URL.

        Raises:
            ValueError: Another scheme, no host, or a path, query or fragment.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError("the SMTP URL must start with smtp:// or smtps://")
        if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("the SMTP URL is smtp[s]://[user:password@]host[:port]")
        if parts.scheme == "smtps":
            tls: TLSMode = "implicit"
        else:
            tls = "none" if parts.hostname in _LOOPBACK else "starttls"
        settings: dict[str, object] = {
            "port": parts.port,
            "tls": tls,
            "username": unquote(parts.username) if parts.username is not None else None,
            "password": unquote(parts.password) if parts.password is not None else None,
        }
        settings.update(options)
        return cls(parts.hostname, **settings)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        # Never the password.
        user = f" as {self.username!r}" if self.username else ""
        return f"SMTPSender({self.host}:{self.port}, tls={self.tls}{user})"

    async def send(self, message: Message) -> None:
        """Send ``message`` over a reused or new connection; see the module for failures."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # connections of a closed loop cannot be used or closed
            self._idle.clear()
            self._loop = loop
        while self._idle:
            client = self._idle.pop()
            if not client.is_connected:
                continue
            try:
                await self._transaction(client, message)
            except _Stale:
                continue  # the server closed an idle connection before MAIL: open a new one
            self._keep(client)
            return
        client = await self._connect()
        try:
            await self._transaction(client, message)
        except _Stale as exc:
            raise TransientFailure("connection lost before DATA") from exc.__cause__
        self._keep(client)

    async def aclose(self) -> None:
        """Close the idle connections (QUIT)."""
        idle, self._idle = self._idle, []
        if self._loop is not asyncio.get_running_loop():
            return
        for client in idle:
            try:
                await client.quit()
            except Exception:  # closing anyway: a failed QUIT changes nothing
                client.close()

    async def _connect(self) -> aiosmtplib.SMTP:
        try:
            import aiosmtplib
        except ImportError as exc:  # pragma: no cover - the extra is missing
            raise ImportError(f"SMTPSender needs pip install 'otpcore[smtp]' ({exc})") from exc
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.tls == "implicit",
            start_tls=self.tls == "starttls",
            username=self.username,
            password=self.password,
            timeout=self.timeout,
            tls_context=self.tls_context,
            local_hostname=self.local_hostname,
        )
        try:
            await client.connect()
        except Exception as exc:
            client.close()
            raise _failure(exc) from None
        return client

    async def _transaction(self, client: aiosmtplib.SMTP, message: Message) -> None:
        import aiosmtplib

        sender, recipient, utf8 = _envelope(message, client)
        encoding = "utf-8" if utf8 else "ascii"
        options = ["SMTPUTF8"] if utf8 else []
        mail = message.to_email()
        data = mail.as_bytes(policy=policy.SMTPUTF8 if utf8 else policy.SMTP)
        try:
            await client.mail(sender, options=options, encoding=encoding)
            await client.rcpt(recipient, encoding=encoding)
        except aiosmtplib.SMTPServerDisconnected as exc:
            client.close()
            raise _Stale() from exc
        except Exception as exc:
            client.close()
            raise _failure(exc) from None
        try:
            await client.data(data)
        except Exception as exc:
            client.close()
            raise _failure(exc, after_data=True) from None

    def _keep(self, client: aiosmtplib.SMTP) -> None:
        if len(self._idle) < self.connections:
            self._idle.append(client)
        else:
            client.close()


class _Stale(Exception):
    """A connection was gone before MAIL FROM completed: safe to try again at once."""


def _envelope(message: Message, client: aiosmtplib.SMTP) -> tuple[str, str, bool]:
    """``MAIL FROM`` and ``RCPT TO`` addresses, ASCII (IDNA domain) where they can be, and
    whether SMTPUTF8 is needed (a non-ASCII local part)."""
    addresses = [_ascii(message.envelope_sender), _ascii(message.recipient)]
    utf8 = not all(address.isascii() for address in addresses)
    if utf8 and not client.supports_extension("smtputf8"):
        raise PermanentFailure("the server does not support SMTPUTF8")
    return addresses[0], addresses[1], utf8


def _ascii(address: str) -> str:
    if address.isascii():
        return address
    try:
        checked = validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        raise PermanentFailure("invalid address") from None
    return checked.ascii_email or checked.normalized
