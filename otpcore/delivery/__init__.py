"""Delivering codes: message records, templates, senders and the outbox.

- :class:`CodeMail` is one code to send; :class:`Message` the e-mail made of it.
- :class:`Templates` renders the text and HTML parts, per locale.
- :class:`TemplateMailer` sends rendered messages through a :class:`MessageSender`
  (:class:`SMTPSender`, :class:`ConsoleSender`); :class:`CallbackMailer` keeps the reference's
  ``send_otp(email, code)`` hook.
- :class:`Outbox` takes codes off the request path, retries transient failures, and drains at
  shutdown.

``SMTPSender`` needs the ``smtp`` extra (``aiosmtplib``), imported when it first connects.
"""

from otpcore.delivery.errors import (
    DeliveryFailure,
    PermanentFailure,
    TransientFailure,
    UnconfirmedDelivery,
)
from otpcore.delivery.message import CodeMail, Message
from otpcore.delivery.outbox import Outbox, RetryPolicy, Ticket
from otpcore.delivery.senders import (
    CallbackMailer,
    ConsoleSender,
    Mailer,
    MessageSender,
    TemplateMailer,
)
from otpcore.delivery.smtp import SMTPSender, TLSMode
from otpcore.delivery.templates import Rendered, Templates

__all__ = [
    "CallbackMailer",
    "CodeMail",
    "ConsoleSender",
    "DeliveryFailure",
    "Mailer",
    "Message",
    "MessageSender",
    "Outbox",
    "PermanentFailure",
    "Rendered",
    "RetryPolicy",
    "SMTPSender",
    "TLSMode",
    "TemplateMailer",
    "Templates",
    "Ticket",
    "TransientFailure",
    "UnconfirmedDelivery",
]
