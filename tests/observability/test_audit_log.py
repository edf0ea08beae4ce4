"""LoggingEventSink: every audit event becomes one structured record, never with a secret."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from otpcore import OTPAuth, Policy
from otpcore.domain.events import AuthEvent, CodeSent, GuessFailed
from otpcore.observability import LoggingEventSink, combine_sinks, event_fields, mask_email
from otpcore.testing import FakeClock
from otpcore.testing.contract import Backend
from tests.observability.flow import ALICE, SECRET, Inbox, walk

# Attributes every LogRecord has; the rest came from the sink's ``extra=``.
_STANDARD = set(vars(logging.makeLogRecord({})))


def _record_text(record: logging.LogRecord) -> str:
    extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
    return f"{record.getMessage()} {extras!r}"


async def test_a_real_flow_logs_every_event_without_codes_tokens_or_emails(
    local_backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox()
    auth: OTPAuth[Any] = OTPAuth(
        # Strict refresh (issue 10): the flow's replayed refresh token comes back at once.
        policy=Policy(secret=SECRET, max_attempts=2, refresh_grace=timedelta(0)),
        store=None,
        sender=inbox,
        clock=FakeClock(),
        events=LoggingEventSink(),
    )
    with caplog.at_level(logging.INFO):
        secrets = await walk(local_backend, auth, inbox, lambda store: store)

    audit = [r for r in caplog.records if r.name == "otpcore.audit"]
    names = [vars(r)["auth_event"] for r in audit]
    assert {
        "code_requested",
        "code_sent",
        "guess_failed",
        "otp_locked",
        "login_succeeded",
        "refresh_rotated",
        "refresh_reuse_detected",
        "logged_out",
    } <= set(names)
    for record in caplog.records:  # every record of the flow, not only the sink's
        text = _record_text(record)
        leaked = [secret for secret in secrets.all() if secret in text]
        assert leaked == [], f"{record.name} logged {leaked}: {text}"

    [first] = [r for r in audit if vars(r)["auth_event"] == "code_requested"][:1]
    fields = vars(first)
    assert (fields["email"], fields["outcome"], first.levelno) == ("a***@example.com", "issued", 20)
    assert first.getMessage().startswith("code_requested ")
    assert "email=a***@example.com" in first.getMessage()
    assert fields["at"] == "2026-01-01T12:00:00+00:00"
    warnings = {vars(r)["auth_event"] for r in audit if r.levelno == logging.WARNING}
    # Issue 9: the bounced delivery is given up as a DeliveryFailed event, at WARNING too.
    assert warnings == {"guess_failed", "otp_locked", "refresh_reuse_detected", "delivery_failed"}
    [failed] = [r for r in audit if vars(r)["auth_event"] == "delivery_failed"]
    assert (vars(failed)["reason"], vars(failed)["attempts"]) == ("permanent", 1)
    assert all(isinstance(getattr(r, "user_id", ""), str | None) for r in audit)


def test_routine_events_honour_the_configured_level(caplog: pytest.LogCaptureFixture) -> None:
    sink = LoggingEventSink("app.audit", level=logging.DEBUG)
    event = CodeSent(at=datetime(2026, 1, 1, tzinfo=UTC), email=ALICE, user_id="7")
    with caplog.at_level(logging.INFO, logger="app.audit"):
        sink(event)
    assert caplog.records == []
    with caplog.at_level(logging.DEBUG, logger="app.audit"):
        sink(event)
    [record] = caplog.records
    assert (record.name, record.levelno, record.getMessage()) == (
        "app.audit",
        logging.DEBUG,
        "code_sent email=a***@example.com user_id=7",
    )


@pytest.mark.parametrize(
    ("email", "masked"),
    [
        ("alice@example.com", "a***@example.com"),
        ("a@example.com", "a***@example.com"),
        ("weird@local@example.com", "w***@example.com"),
        ("not-an-address", "***"),
        ("@example.com", "***"),
    ],
)
def test_mask_email(email: str, masked: str) -> None:
    assert mask_email(email) == masked


def test_text_fields_outside_the_allow_list_are_dropped() -> None:
    # An event type that (wrongly) gained secret-bearing fields still logs none of them.
    @dataclasses.dataclass(frozen=True)
    class Leaky:
        at: datetime
        email: str
        user_id: str
        code: str
        token: str
        remaining_attempts: int

    event = Leaky(datetime(2026, 1, 1, tzinfo=UTC), ALICE, "7", "123456", "eyJ.x.y", 3)
    fields = event_fields(cast(AuthEvent, event))
    assert fields == {
        "at": "2026-01-01T00:00:00+00:00",
        "email": "a***@example.com",
        "user_id": "7",
        "remaining_attempts": 3,
    }


def test_combined_sinks_survive_a_failing_one(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[AuthEvent] = []

    def broken(event: AuthEvent) -> None:
        raise RuntimeError("audit queue full")

    event = GuessFailed(
        at=datetime(2026, 1, 1, tzinfo=UTC), email=ALICE, user_id="7", reason="otp_invalid"
    )
    with caplog.at_level(logging.ERROR, logger="otpcore"):
        combine_sinks(broken, seen.append)(event)
    assert seen == [event]
    assert "failed on guess_failed" in caplog.text
    assert ALICE not in caplog.text
