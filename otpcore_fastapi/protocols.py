"""The reference's typing names for adapters and user models, as ``typing.Protocol``s.

``fastapi-otp-authentication`` exports these so applications can annotate their own code
(``def get_otp_db() -> DatabaseAdapter[User]``); they describe what otpcore's
``SQLAlchemyAdapter`` and ``MongoDBAdapter`` and their user models provide. The service
itself talks to stores through :mod:`otpcore.ports`, not through these.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = [
    "DatabaseAdapter",
    "OTPUserProtocol",
    "PydanticOTPUserProtocol",
    "SQLAlchemyUserModelProtocol",
]


@runtime_checkable
class OTPUserProtocol(Protocol):
    """A user object as the adapters read it (a row of ``BaseOTPUserTable``, a document).

    ``otp_code`` holds the HMAC of the pending code, never the code itself.
    """

    @property
    def id(self) -> Any:
        """The primary key."""

    @property
    def email(self) -> str:
        """The normalized e-mail address."""

    @property
    def is_verified(self) -> bool:
        """Whether the user ever completed a code verification."""

    @property
    def otp_code(self) -> str | None:
        """The pending code's HMAC, if a code is pending."""

    @property
    def otp_created_at(self) -> datetime | None:
        """When the pending code was issued."""

    @property
    def otp_attempts(self) -> int:
        """Guesses counted against the pending code."""

    @property
    def last_otp_request_at(self) -> datetime | None:
        """When a code was last requested."""


@runtime_checkable
class PydanticOTPUserProtocol(OTPUserProtocol, Protocol):
    """A Pydantic user document (``BaseOTPUserDocument``): a user that (de)serializes."""

    def model_dump(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The document as a dict."""
        ...

    @classmethod
    def model_validate(cls, *args: Any, **kwargs: Any) -> Any:
        """A document from a dict."""
        ...


@runtime_checkable
class SQLAlchemyUserModelProtocol(Protocol):
    """A user model class (not an instance) whose ``email`` column queries can filter on."""

    email: Any


UserT = TypeVar("UserT")


@runtime_checkable
class DatabaseAdapter(Protocol[UserT]):
    """The reference's adapter API, which ``SQLAlchemyAdapter`` and ``MongoDBAdapter`` provide.

    Parameters are positional (except ``create_user``'s fields), as the reference's
    callers pass them.
    """

    async def get_by_email(self, email: str, /) -> UserT | None:
        """The user with exactly this e-mail, or ``None``."""
        ...

    async def get_by_id(self, user_id: int | str, /) -> UserT | None:
        """The user with this primary key, or ``None``."""
        ...

    async def create_user(self, email: str, **kwargs: Any) -> UserT:
        """Insert a user with ``email`` and the model's other fields."""
        ...

    async def update_otp(self, user: UserT, code_hash: str, /) -> None:
        """Store a new code's HMAC (never the code), stamped now, with a fresh budget."""
        ...

    async def increment_otp_attempts(self, user: UserT, /) -> None:
        """Count one attempt against the pending code."""
        ...

    async def verify_user(self, user: UserT, /) -> None:
        """Mark the user verified and clear the pending code."""
        ...

    async def clear_otp(self, user: UserT, /) -> None:
        """Clear the pending code without marking the user verified."""
        ...

    async def add_to_blacklist(self, jti: str, token_type: str, expires_at: datetime, /) -> None:
        """Revoke ``jti`` until ``expires_at``."""
        ...

    async def is_blacklisted(self, jti: str, /) -> bool:
        """Whether ``jti`` is revoked."""
        ...

    async def cleanup_blacklist(self) -> int:
        """Delete expired revocations; the number removed."""
        ...
