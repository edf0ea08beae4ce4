"""Request and response bodies, named and shaped as in ``fastapi-otp-authentication``.

Fields are bounded so oversized input is refused (422) before anything is read or written.
The e-mail is a bounded string here, not ``EmailStr``: the core's normalizer is the one rule
for what an address is, so the binding does not apply a second, different one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from otpcore.domain.emails import MAX_EMAIL_LENGTH
from otpcore.domain.links import MAX_LINK_LENGTH
from otpcore.domain.policy import MAX_CODE_LENGTH, MIN_CODE_LENGTH
from otpcore.tokens.codec import MAX_TOKEN_LENGTH

#: What an opaque value of the core's (``challenge_id``, ``device``) may look like when
#: presented: URL-safe characters only, bounded far above any issued value.
OPAQUE_VALUE_PATTERN = r"^[A-Za-z0-9._~-]+$"
CHALLENGE_ID_MAX_LENGTH = 128
DEVICE_MAX_LENGTH = 512

_DEVICE_DESCRIPTION = (
    "The `device` value verify-otp returned to this client (body mode; browsers keep it as "
    "an HTTP-only cookie): its own share of the address's send budget, untouched by "
    "strangers."
)

__all__ = [
    "ErrorResponse",
    "JWKSet",
    "LogoutRequest",
    "MagicLinkRedeem",
    "MessageResponse",
    "OTPRequest",
    "OTPRequested",
    "OTPVerify",
    "RefreshRequest",
    "SessionItem",
    "SessionsEnded",
    "TokenResponse",
    "UnprocessableResponse",
]


class OTPRequest(BaseModel):
    """Body of ``POST /request-otp``."""

    email: str = Field(
        ...,
        max_length=MAX_EMAIL_LENGTH,
        description="E-mail address to send the code to.",
        examples=["user@example.com"],
    )
    challenge_id: str | None = Field(
        None,
        max_length=CHALLENGE_ID_MAX_LENGTH,
        pattern=OPAQUE_VALUE_PATTERN,
        description="The `challenge_id` of this client's earlier request, to resend on the "
        "same binding (the challenge cookie serves browsers). Optional.",
    )
    device: str | None = Field(
        None,
        max_length=DEVICE_MAX_LENGTH,
        pattern=OPAQUE_VALUE_PATTERN,
        description=_DEVICE_DESCRIPTION,
    )


class OTPVerify(BaseModel):
    """Body of ``POST /verify-otp``."""

    email: str = Field(
        ...,
        max_length=MAX_EMAIL_LENGTH,
        description="E-mail address the code was sent to.",
        examples=["user@example.com"],
    )
    code: str = Field(
        ...,
        min_length=MIN_CODE_LENGTH,
        max_length=MAX_CODE_LENGTH,
        pattern=r"^[0-9]+$",
        description="The code, digits only.",
        examples=["123456"],
    )
    challenge_id: str | None = Field(
        None,
        max_length=CHALLENGE_ID_MAX_LENGTH,
        pattern=OPAQUE_VALUE_PATTERN,
        description="The `challenge_id` request-otp returned: the guess is checked against "
        "that request's code only, under its own attempt budget. Without it (and without the "
        "challenge cookie) the guess is unbound: checked against the newest code under a "
        "separate, shared budget.",
    )
    device: str | None = Field(
        None,
        max_length=DEVICE_MAX_LENGTH,
        pattern=OPAQUE_VALUE_PATTERN,
        description=_DEVICE_DESCRIPTION,
    )


class TokenResponse(BaseModel):
    """A new access token, and the refresh token in ``body``/``both`` delivery modes."""

    access_token: str = Field(..., description="JWT access token; send as `Bearer`.")
    token_type: str = Field(default="bearer", description="Always `bearer`.")
    refresh_token: str | None = Field(
        None,
        description="Refresh token; present only when refresh_token_delivery is body or both.",
    )
    device: str | None = Field(
        None,
        description="This client's device allowance for the address; present only when "
        "refresh_token_delivery is body (browsers get it as an HTTP-only cookie). Keep it "
        "and send it with request-otp and verify-otp.",
    )


class MagicLinkRedeem(BaseModel):
    """Body of ``POST /magic-link``: the token of a magic link."""

    token: str = Field(
        ...,
        min_length=1,
        max_length=MAX_LINK_LENGTH,
        description="The `t` query parameter of the link in the e-mail.",
    )


class RefreshRequest(BaseModel):
    """Optional body of ``POST /refresh`` (``body``/``both`` modes)."""

    refresh_token: str | None = Field(
        None,
        max_length=MAX_TOKEN_LENGTH,
        description="Refresh token; the cookie wins when both are present.",
    )


class LogoutRequest(BaseModel):
    """Optional body of ``POST /logout`` (``body``/``both`` modes)."""

    refresh_token: str | None = Field(
        None,
        max_length=MAX_TOKEN_LENGTH,
        description="Refresh token of the session to end; the cookie wins when both are present.",
    )


class MessageResponse(BaseModel):
    """A human-readable confirmation."""

    message: str = Field(..., description="What happened.")


class OTPRequested(MessageResponse):
    """Answer of ``POST /request-otp``: the reference's message plus the binding."""

    challenge_id: str | None = Field(
        None,
        description="Opaque binding to this request's code; send it back with verify-otp "
        "(browsers also get it as an HTTP-only cookie). Returned for every accepted request, "
        "whether or not the address has an account.",
    )


class ErrorResponse(BaseModel):
    """Every refusal: a readable message and a stable machine-readable code."""

    detail: str = Field(..., description="Human-readable message, safe to show.")
    code: str = Field(..., description="Stable error code, e.g. `otp_invalid`.")


class UnprocessableResponse(BaseModel):
    """A 422: an e-mail the core refuses (with ``code``), or FastAPI's validation errors."""

    detail: str | list[dict[str, Any]] = Field(
        ...,
        description="`Invalid e-mail address.` with code `invalid_email`, or FastAPI's list "
        "of validation errors (malformed JSON, missing or oversized fields).",
    )
    code: str | None = Field(None, description="`invalid_email` when present.")


class JWKSet(BaseModel):
    """A JSON Web Key Set (RFC 7517) of the public verification keys."""

    keys: list[dict[str, Any]]


class SessionItem(BaseModel):
    """One of the user's active sessions, as ``GET /sessions`` lists it."""

    id: str = Field(..., description="The session id: what `DELETE /sessions/{id}` takes.")
    current: bool = Field(..., description="Whether the bearer token belongs to this session.")
    created_at: datetime = Field(..., description="When the session began (the code login).")
    last_used_at: datetime = Field(
        ..., description="The login or the last refresh; using an access token never moves it."
    )
    user_agent: str | None = Field(
        None, description="The client's `User-Agent` at login, at most 256 characters."
    )
    ip: str | None = Field(None, description="The client's address at login.")


class SessionsEnded(BaseModel):
    """The answer of ``POST /logout-others``."""

    message: str = Field(..., description="What happened.")
    ended: int = Field(..., description="How many sessions were ended.")
