"""The reference library's per-user code fields, shared by the database stores."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from otpcore.domain.records import ChallengeState

__all__ = ["OTPRecord", "challenge_of"]


class OTPRecord(Protocol):
    """A user row or document with the reference's code fields plus otpcore's three."""

    @property
    def otp_code(self) -> str | None: ...
    @property
    def otp_created_at(self) -> datetime | None: ...
    @property
    def otp_attempts(self) -> int: ...
    @property
    def otp_failures(self) -> int: ...
    @property
    def last_otp_request_at(self) -> datetime | None: ...
    @property
    def otp_last_failure_at(self) -> datetime | None: ...
    @property
    def otp_version(self) -> int: ...


def challenge_of(record: OTPRecord) -> ChallengeState:
    """The code state a user row or document holds."""
    return ChallengeState(
        code_hash=record.otp_code,
        issued_at=record.otp_created_at,
        attempts=record.otp_attempts,
        failures=record.otp_failures,
        last_request_at=record.last_otp_request_at,
        last_failure_at=record.otp_last_failure_at,
        version=record.otp_version,
    )
