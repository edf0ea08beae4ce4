"""How a send failed, as the outbox needs to know it: retry, give up, or never repeat.

Senders raise these (the SMTP sender translates ``aiosmtplib``'s errors into them); an
application's ``send_otp`` may raise :class:`TransientFailure` to ask for a retry. Messages
never quote an address or a code: a server's reply may echo either, so only its status code
is kept.
"""

from __future__ import annotations

__all__ = ["DeliveryFailure", "PermanentFailure", "TransientFailure", "UnconfirmedDelivery"]


class DeliveryFailure(Exception):
    """A message was not (or not certainly) delivered.

    Attributes:
        reason: A short, safe description (e.g. ``"smtp 451"``, ``"connection refused"``).
        smtp_code: The server's reply code, when there was one.
    """

    def __init__(self, reason: str, *, smtp_code: int | None = None) -> None:
        self.reason = reason
        self.smtp_code = smtp_code
        super().__init__(reason)


class TransientFailure(DeliveryFailure):
    """Not delivered, and worth another try: connection refused, SMTP 4xx, a timeout before
    the end of DATA."""


class PermanentFailure(DeliveryFailure):
    """Not delivered, and another try would fail the same way: SMTP 5xx."""


class UnconfirmedDelivery(DeliveryFailure):
    """The message was handed over but never acknowledged (a timeout or a dropped connection
    after DATA): the server may have accepted it, so it is not sent again (at most once)."""
