"""The tables: the mixins for the application's user and revocation models, and their types."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Generic, TypeVar

from sqlalchemy import Boolean, Integer, String, false, text, types
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column

__all__ = ["BaseOTPUserTable", "TokenBlacklist", "UTCDateTime"]

IdType = TypeVar("IdType")


class UTCDateTime(types.TypeDecorator[datetime]):
    """A ``DateTime`` stored as naive UTC and always returned timezone-aware in UTC.

    Naive values given to it are taken to be UTC already. SQLite keeps no offset, so without
    this a value would come back naive and compare unequal to the aware one stored.
    """

    impl = types.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to naive UTC for storage."""
        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class BaseOTPUserTable(Generic[IdType]):
    """Mixin for the application's user model: e-mail, verification and code state.

    The application declares the primary key (``id``, of type ``IdType``: an integer, a UUID,
    …) and any other columns. ``otp_code`` holds the HMAC of the pending code, never the code.
    """

    email: Mapped[str] = mapped_column(String(255), unique=True, index=True, nullable=False)
    is_verified: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), nullable=False
    )
    otp_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    otp_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    otp_attempts: Mapped[int] = mapped_column(
        Integer, default=0, server_default=text("0"), nullable=False
    )
    last_otp_request_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    otp_failures: Mapped[int] = mapped_column(
        Integer, default=0, server_default=text("0"), nullable=False
    )
    otp_last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    otp_version: Mapped[int] = mapped_column(
        Integer, default=0, server_default=text("0"), nullable=False
    )


class TokenBlacklist:
    """Mixin for the revocation table (``token_blacklist``).

    ``jti`` holds token ids, revoked sessions (``sid:<sid>``) and logout-all cutoffs
    (``user:<id>``); ``token_type`` their kind; ``blacklisted_at`` when they were revoked
    (for a cutoff: the cutoff itself).
    """

    __tablename__ = "token_blacklist"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    jti: Mapped[str] = mapped_column(String(255), unique=True, nullable=False, index=True)
    token_type: Mapped[str] = mapped_column(String(10), nullable=False)
    blacklisted_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
