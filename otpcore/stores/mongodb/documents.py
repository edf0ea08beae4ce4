"""The stored shapes: Pydantic documents, and the conversions every read and write uses.

Datetimes are written as aware UTC truncated to milliseconds (MongoDB's precision) and every
datetime read goes through :func:`from_db`, so naive values (MongoDB without ``tz_aware``)
and the text some MongoDB-compatible servers return for ``$set`` dates both come back aware
UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from bson import ObjectId
from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from otpcore.domain.errors import StorageError
from otpcore.domain.records import ChallengeState, Revocation, RevocationKind

__all__ = [
    "DATETIME_FIELDS",
    "BaseOTPUserDocument",
    "TokenBlacklistDocument",
    "challenge_fields",
    "from_db",
    "id_filter",
    "opt_to_db",
    "revocation_doc",
    "revocation_of",
    "to_db",
]

#: User fields holding instants: read through :func:`from_db` whatever was stored.
DATETIME_FIELDS: Final = frozenset(
    {"otp_created_at", "otp_expires_at", "last_otp_request_at", "otp_last_failure_at"}
)


class _Document(BaseModel):
    """What every document shares: ``_id`` read as text (an ObjectId's hex, or the string)."""

    id: str | None = Field(default=None, alias="_id")

    model_config = ConfigDict(
        populate_by_name=True, from_attributes=True, arbitrary_types_allowed=True
    )

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, ObjectId) else value


class BaseOTPUserDocument(_Document):
    """A user document with everything OTP authentication needs; subclass to add fields.

    Attributes:
        id: The document's ``_id`` as text (an ObjectId's hex, or the string stored).
        email: The normalized e-mail; unique in the collection.
        is_verified: Whether the user has ever completed a code verification.
        otp_code: HMAC-SHA256 of the pending code (64 hex characters), never the code.
        otp_created_at: When the pending code was issued.
        otp_expires_at: Kept for compatibility with existing documents; not used.
        otp_attempts: Guesses counted against the pending code.
        last_otp_request_at: When the last code was issued (for the resend cooldown).
        otp_failures: Consecutive wrong guesses across codes (for the account lock).
        otp_last_failure_at: When the last wrong guess was counted.
        otp_version: Incremented by every state change; the compare-and-set guard.
    """

    email: EmailStr
    is_verified: bool = False
    otp_code: str | None = Field(default=None, repr=False)
    otp_created_at: datetime | None = None
    otp_expires_at: datetime | None = None
    otp_attempts: int = 0
    last_otp_request_at: datetime | None = None
    otp_failures: int = 0
    otp_last_failure_at: datetime | None = None
    otp_version: int = 0


class TokenBlacklistDocument(_Document):
    """One revoked identifier: a token ``jti``, a session or a user's logout-all cutoff.

    Attributes:
        id: The document's ``_id`` as text.
        jti: The revoked identifier; unique in the collection.
        token_type: ``"access"``, ``"refresh"``, ``"session"`` or ``"user"``.
        blacklisted_at: When it was revoked (for a user entry, the cutoff).
        expires_at: When the entry stops mattering; a TTL index deletes it after that.
    """

    jti: str = Field(max_length=255)
    token_type: str = Field(max_length=10)
    blacklisted_at: datetime
    expires_at: datetime


def to_db(moment: datetime) -> datetime:
    """An instant as MongoDB stores it: aware UTC, truncated to milliseconds."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def opt_to_db(moment: datetime | None) -> datetime | None:
    """:func:`to_db`, passing ``None`` through."""
    return None if moment is None else to_db(moment)


def from_db(value: object) -> datetime | None:
    """The one reader of stored datetimes: naive, aware or ISO text in, aware UTC out."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise StorageError("A stored timestamp could not be read.") from exc
    if not isinstance(value, datetime):
        raise StorageError("A stored timestamp has an unexpected type.")
    return to_db(value)


def id_filter(user_id: object) -> dict[str, Any] | None:
    """The ``_id`` condition for a port-level id, or ``None`` when nothing can match."""
    if not isinstance(user_id, str) or not user_id:
        return None
    # Ids that look like ObjectIds may still be stored as strings by the application. Always
    # ``$in``: nx-27017 (the test server) answers ``$lookup`` after an equality ``$match``
    # on ``_id`` wrongly, and after ``$in`` correctly; MongoDB treats both the same.
    if ObjectId.is_valid(user_id):
        return {"_id": {"$in": [ObjectId(user_id), user_id]}}
    return {"_id": {"$in": [user_id]}}


def revocation_of(doc: Mapping[str, Any]) -> Revocation:
    """The revocation a blacklist document holds."""
    revoked_at = from_db(doc.get("blacklisted_at"))
    expires_at = from_db(doc.get("expires_at"))
    if revoked_at is None or expires_at is None:
        raise StorageError("A revocation entry is missing its timestamps.")
    return Revocation(
        key=str(doc["jti"]),
        kind=RevocationKind.parse(doc.get("token_type")),
        revoked_at=revoked_at,
        expires_at=expires_at,
    )


def revocation_doc(revocation: Revocation) -> dict[str, Any]:
    """The blacklist document for ``revocation``."""
    return {
        "jti": revocation.key,
        "token_type": revocation.kind,
        "blacklisted_at": to_db(revocation.revoked_at),
        "expires_at": to_db(revocation.expires_at),
    }


def challenge_fields(state: ChallengeState) -> dict[str, Any]:
    """The user fields that hold ``state``, as stored."""
    return {
        "otp_code": state.code_hash,
        "otp_created_at": opt_to_db(state.issued_at),
        "otp_attempts": state.attempts,
        "otp_failures": state.failures,
        "last_otp_request_at": opt_to_db(state.last_request_at),
        "otp_last_failure_at": opt_to_db(state.last_failure_at),
        "otp_version": state.version,
    }
