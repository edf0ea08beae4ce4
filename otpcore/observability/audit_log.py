"""Audit events as structured records in standard :mod:`logging`.

A record carries the event's safe fields as attributes (``extra=``), for JSON formatters and
log pipelines, and a message that names the event and lists the same fields as
``key=value``. Only allow-listed text fields are copied: no code, hash or token can reach a
record, even if an event gains a field, and e-mail addresses are masked.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import Final, TypeGuard

from otpcore.domain.events import (
    AuthEvent,
    DeliveryFailed,
    EventSink,
    GuessFailed,
    OTPLocked,
    RefreshReuseDetected,
)

__all__ = ["LoggingEventSink", "combine_sinks", "event_fields", "event_name", "mask_email"]

logger = logging.getLogger("otpcore")

#: Text fields copied verbatim: identifiers and outcome names, never secrets.
_SAFE_TEXT: Final = frozenset({"user_id", "sid", "outcome", "reason"})
#: Worth a WARNING: someone may be guessing codes or replaying a stolen refresh token, or a
#: code was not delivered.
_WARNING_EVENTS: Final = (GuessFailed, OTPLocked, RefreshReuseDetected, DeliveryFailed)
# Word boundaries in a class name: "RefreshRotated" -> "Refresh_Rotated", "OTPLocked" ->
# "OTP_Locked" (an acronym stays one word).
_CAMEL: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def mask_email(email: str) -> str:
    """``alice@example.com`` -> ``a***@example.com``: enough to tell users apart in support,
    not enough to recover the address. Anything without an ``@`` becomes ``***``."""
    local, at, domain = email.rpartition("@")
    if not at or not local:
        return "***"
    return f"{local[0]}***@{domain}"


def event_name(event: AuthEvent) -> str:
    """The event's stable snake_case name: ``CodeRequested`` -> ``code_requested``,
    ``OTPLocked`` -> ``otp_locked``."""
    return _CAMEL.sub("_", type(event).__name__).lower()


def event_fields(
    event: AuthEvent, *, mask: Callable[[str], str] = mask_email
) -> dict[str, str | int | float | bool | None]:
    """The fields of ``event`` that are safe to record.

    ``at`` as ISO 8601, ``email`` through ``mask``, the allow-listed identifiers and outcome
    names, and numbers and flags; any other field is left out.
    """
    fields: dict[str, str | int | float | bool | None] = {}
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        if field.name == "email" and isinstance(value, str):
            fields["email"] = mask(value)
        elif isinstance(value, datetime):
            fields[field.name] = value.isoformat()
        elif _is_safe(field.name, value):
            fields[field.name] = value
    return fields


def _is_safe(name: str, value: object) -> TypeGuard[str | int | float | bool | None]:
    # Numbers and flags cannot hold a code or token; text only under an allow-listed name.
    if value is None or isinstance(value, bool | int | float):
        return True
    return name in _SAFE_TEXT and isinstance(value, str)


class LoggingEventSink:
    """An ``events=`` sink that logs every audit event as one structured record.

    Each record's attributes are ``auth_event`` (the event's name) and the fields of
    :func:`event_fields` (``at``, ``user_id``, ``email`` masked, ``sid``, ``outcome``,
    ``reason``, …); failed guesses, locks and refresh reuse are logged at WARNING, the rest
    at ``level``.

    Args:
        logger_name: The logger records go to.
        level: Level of routine events.
        mask: Turns an e-mail address into what is logged (default :func:`mask_email`).
    """

    __slots__ = ("_level", "_logger", "_mask")

    def __init__(
        self,
        logger_name: str = "otpcore.audit",
        *,
        level: int = logging.INFO,
        mask: Callable[[str], str] = mask_email,
    ) -> None:
        self._logger = logging.getLogger(logger_name)
        self._level = level
        self._mask = mask

    def __call__(self, event: AuthEvent) -> None:
        """Log ``event``."""
        level = logging.WARNING if isinstance(event, _WARNING_EVENTS) else self._level
        if not self._logger.isEnabledFor(level):
            return
        name = event_name(event)
        fields = event_fields(event, mask=self._mask)
        details = " ".join(f"{key}={value}" for key, value in fields.items() if key != "at")
        # None of the event fields is a name LogRecord reserves ("msg", "args", "name", …);
        # the event's own name goes under a prefixed key for that reason.
        self._logger.log(level, "%s %s", name, details, extra={"auth_event": name, **fields})


def combine_sinks(*sinks: EventSink) -> EventSink:
    """One ``events=`` sink that hands every event to each of ``sinks`` in turn.

    A failing sink is logged and skipped, so the others still see the event.
    """
    chain: tuple[EventSink, ...] = tuple(sinks)

    def fan_out(event: AuthEvent) -> None:
        for sink in chain:
            try:
                sink(event)
            except Exception:
                logger.exception("otpcore event sink %r failed on %s", sink, event_name(event))

    return fan_out
