"""The exception hierarchy: one root, a stable machine-readable ``code`` per leaf.

Expected outcomes inside the pure core are values, not exceptions; the service turns a
refusal into one of these at the boundary so that any framework can map ``code`` to its own
response. Messages are safe to show to end users: they never contain a code, a token, a
secret or a token-library internal.
"""

from __future__ import annotations

__all__ = [
    "AccountLocked",
    "CodeCooldown",
    "CodeExpired",
    "CodeInvalid",
    "ConfigurationError",
    "ContentionError",
    "DeliveryBusy",
    "DeliveryError",
    "LinkInvalid",
    "OTPAuthError",
    "RateLimited",
    "RefreshReused",
    "ReservedClaimError",
    "SessionNotFound",
    "StorageError",
    "TokenExpired",
    "TokenInvalid",
    "TokenRevoked",
    "UserNotFound",
    "UserNotVerified",
]


class OTPAuthError(Exception):
    """Root of every error otpcore raises on purpose.

    Attributes:
        code: Stable identifier (``otp_invalid``, ``token_revoked``, …) for clients and
            for the binding's status table. Never changes between releases.
        message: Human-readable sentence, safe to return to the caller.
        retry_after: Seconds until the same request may succeed, where that applies.
    """

    code: str = "auth_error"
    default_message: str = "Authentication failed."

    def __init__(self, message: str | None = None, *, retry_after: int | None = None) -> None:
        self.message = message or self.default_message
        self.retry_after = retry_after
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, retry_after={self.retry_after!r})"


class CodeInvalid(OTPAuthError):
    """The code is wrong, or there is no code pending for this e-mail."""

    code = "otp_invalid"
    default_message = "Invalid or expired code."

    def __init__(
        self, message: str | None = None, *, remaining_attempts: int | None = None
    ) -> None:
        super().__init__(message)
        self.remaining_attempts = remaining_attempts


class LinkInvalid(OTPAuthError):
    """The magic link is malformed, unknown, already used, or replaced by a newer code.

    Never a code guess: no attempt is counted for it.
    """

    code = "link_invalid"
    default_message = "This sign-in link is not valid. Please request a new code."


class CodeExpired(OTPAuthError):
    """The pending code outlived its lifetime; a new one must be requested."""

    code = "otp_expired"
    default_message = "The code has expired. Please request a new one."


class AccountLocked(OTPAuthError):
    """Too many wrong guesses: the pending code is dead, or the account is backing off."""

    code = "otp_locked"
    default_message = "Too many failed attempts. Please request a new code later."


class CodeCooldown(OTPAuthError):
    """A code was requested too recently; ``retry_after`` says when to ask again."""

    code = "otp_cooldown"
    default_message = "Please wait before requesting a new code."


class RateLimited(OTPAuthError):
    """A send or guess limit refused the request; ``retry_after`` says when to ask again.

    Attributes:
        limit: Which limit refused: ``"client"`` (codes per client address),
            ``"mailbox"`` (codes per mailbox), ``"global"`` (the deployment's hourly code
            budget) or ``"verify_client"`` (guesses per client address). Decided before
            anything about the address is looked at, so it reveals nothing about accounts.
    """

    code = "rate_limited"
    default_message = "Too many requests. Please try again later."

    def __init__(
        self, message: str | None = None, *, retry_after: int | None = None, limit: str = ""
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.limit = limit


class TokenInvalid(OTPAuthError):
    """The token is malformed, badly signed, of the wrong kind, or has the wrong claims."""

    code = "token_invalid"
    default_message = "Invalid token."


class TokenExpired(OTPAuthError):
    """The token's ``exp`` has passed."""

    code = "token_expired"
    default_message = "Token has expired."


class TokenRevoked(OTPAuthError):
    """The token, its session or all of its user's sessions were revoked."""

    code = "token_revoked"
    default_message = "Token has been revoked."


class RefreshReused(OTPAuthError):
    """An already-rotated refresh token was presented again: its whole session is revoked."""

    code = "refresh_reused"
    default_message = "Refresh token reuse detected; the session has been revoked."


class SessionNotFound(OTPAuthError):
    """The session named is not one of the caller's active sessions.

    Also raised for another user's session, and for one that ended or expired: the caller
    learns nothing about sessions that are not its own.
    """

    code = "session_not_found"
    default_message = "Session not found."


class UserNotFound(OTPAuthError):
    """The e-mail or token subject names no user (only raised where revealing it is allowed)."""

    code = "user_not_found"
    default_message = "User not found."


class UserNotVerified(OTPAuthError):
    """The user exists but has never completed a code verification."""

    code = "user_not_verified"
    default_message = "User has not completed OTP verification."


class StorageError(OTPAuthError):
    """The store could not be reached or failed; the driver's exception is ``__cause__``."""

    code = "storage_unavailable"
    default_message = "Authentication storage is unavailable. Please retry."


class ContentionError(OTPAuthError):
    """A compare-and-set lost its race more often than the retry bound allows."""

    code = "busy"
    default_message = "Too many concurrent requests for this account. Please retry."


class DeliveryBusy(OTPAuthError):
    """The outbox is full: no code was issued; ask again shortly (``retry_after`` set).

    Decided before the account lookup, so known and unknown addresses alike get it.
    """

    code = "busy"
    default_message = "Too many codes are waiting to be sent. Please retry shortly."


class DeliveryError(OTPAuthError):
    """The application's sender failed to deliver a code."""

    code = "delivery_failed"
    default_message = "The code could not be delivered. Please retry."


class ReservedClaimError(ValueError):
    """Custom claims tried to set a claim that otpcore owns (``sub``, ``exp``, …).

    This is a programming error in the application, not an authentication outcome, so it is a
    ``ValueError`` rather than an ``OTPAuthError``.
    """

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names
        listed = ", ".join(sorted(names))
        super().__init__(f"custom claims may not set reserved claim(s): {listed}")


class ConfigurationError(ValueError):
    """The application's setup cannot work (a missing hook, a model otpcore cannot fill).

    Raised when the problem is detected, with a message naming what to change; like
    :class:`ReservedClaimError` it is a programming error, not an authentication outcome.
    """
