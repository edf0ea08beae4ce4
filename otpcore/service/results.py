"""What the service hands back: a token pair with its user, and an authenticated token."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from otpcore.domain.records import Account, Claims

__all__ = ["Login", "Principal"]

U = TypeVar("U")


@dataclass(frozen=True, slots=True, kw_only=True)
class Login(Generic[U]):
    """A token pair, and whom it was issued to.

    Attributes:
        access_token: Short-lived bearer token.
        refresh_token: Token that rotates into the next pair; keep it secret.
        token_type: Always ``"bearer"``.
        user: The application's user object.
        user_id: ``sub`` of both tokens.
        sid: The session both tokens belong to.
        access_expires_at: When the access token stops working.
        refresh_expires_at: When the refresh token stops working.
    """

    access_token: str
    refresh_token: str
    user: U
    user_id: str
    sid: str
    access_expires_at: datetime
    refresh_expires_at: datetime
    token_type: str = "bearer"  # noqa: S105 - the OAuth 2.0 token type, not a secret


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal(Generic[U]):
    """An authenticated access token: its verified claims and the current account."""

    claims: Claims
    account: Account[U]

    @property
    def user(self) -> U:
        """The application's user object."""
        return self.account.user
