"""What the service hands back: a token pair with its user, an authenticated token, and the
sessions a user can see."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from otpcore.domain.records import Account, Claims

__all__ = ["CodeRequest", "Login", "Principal", "SessionView"]

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
        device: The device allowance for this client and address: an opaque value to keep
            (the binding sets it as a long-lived HttpOnly cookie) and pass back to
            :meth:`OTPAuth.request_code` and :meth:`OTPAuth.verify_code` as ``device``. It
            gives this client its own share of the mailbox's send budget and exempts it
            from the account-wide failure lock strangers can reach.
    """

    access_token: str
    refresh_token: str
    user: U
    user_id: str
    sid: str
    access_expires_at: datetime
    refresh_expires_at: datetime
    token_type: str = "bearer"  # noqa: S105 - the OAuth 2.0 token type, not a secret
    device: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeRequest:
    """An accepted code request: the requester's binding to its code.

    Returned alike for known and unknown addresses (nothing here depends on the account).

    Attributes:
        challenge_id: Opaque binding (128 random bits, URL-safe): pass it back to
            :meth:`OTPAuth.verify_code` so the guess is evaluated against this code only,
            and to :meth:`OTPAuth.request_code` to resend on the same binding. The binding
            sets it as an HttpOnly cookie and returns it in the body.
        resend_after: Seconds until this binding may ask for another code.
        expires_in: Seconds the code can be redeemed for.
    """

    challenge_id: str = field(repr=False)
    resend_after: int
    expires_in: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal(Generic[U]):
    """An authenticated access token: its verified claims and the current account."""

    claims: Claims
    account: Account[U]

    @property
    def user(self) -> U:
        """The application's user object."""
        return self.account.user


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionView:
    """One of a user's active sessions, as the user may see it.

    Attributes:
        id: The session id (``sid``): what :meth:`OTPAuth.revoke_session` takes.
        current: Whether the access token that asked belongs to this session.
        created_at: When the session began (the code was verified).
        last_used_at: The login or the last refresh; an access never moves it.
        user_agent: The client's ``User-Agent`` at login, at most 256 characters.
        ip: The client address at login.
    """

    id: str
    current: bool
    created_at: datetime
    last_used_at: datetime
    user_agent: str | None
    ip: str | None
