"""The one table from otpcore error codes to HTTP responses, and the ways it is applied.

Every refusal the binding sends is ``{"detail": <message>, "code": <stable code>}`` with the
status and headers from :data:`ERROR_TABLE`: 401s carry ``WWW-Authenticate: Bearer`` (with
``error="invalid_token"`` for token refusals, RFC 6750 §3.1), 429s carry ``Retry-After`` when
the core knows it. The auth router applies it through :class:`OTPAuthRoute`; dependencies on
the application's own routes raise :class:`OTPAuthHTTPException`, which FastAPI's default
handler renders as ``{"detail": …}`` and :func:`install_error_handlers` renders with the code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from otpcore.domain.emails import InvalidEmail
from otpcore.domain.errors import OTPAuthError
from otpcore_fastapi.schemas import ErrorResponse, UnprocessableResponse

__all__ = [
    "ERROR_TABLE",
    "CSRFRefused",
    "ErrorCode",
    "HTTPErrorSpec",
    "OTPAuthHTTPException",
    "OTPAuthRoute",
    "TokenMissing",
    "error_response",
    "http_exception",
    "install_error_handlers",
    "openapi_responses",
]

logger = logging.getLogger("otpcore_fastapi")


class ErrorCode(StrEnum):
    """Every ``code`` a response body can carry; stable across releases."""

    OTP_INVALID = "otp_invalid"
    OTP_EXPIRED = "otp_expired"
    OTP_LOCKED = "otp_locked"
    OTP_COOLDOWN = "otp_cooldown"
    BUSY = "busy"
    TOKEN_MISSING = "token_missing"  # noqa: S105 - an error code, not a secret
    TOKEN_INVALID = "token_invalid"  # noqa: S105 - an error code, not a secret
    TOKEN_EXPIRED = "token_expired"  # noqa: S105 - an error code, not a secret
    TOKEN_REVOKED = "token_revoked"  # noqa: S105 - an error code, not a secret
    REFRESH_REUSED = "refresh_reused"
    USER_NOT_VERIFIED = "user_not_verified"
    CSRF_REFUSED = "csrf_refused"
    USER_NOT_FOUND = "user_not_found"
    INVALID_EMAIL = "invalid_email"
    DELIVERY_FAILED = "delivery_failed"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    AUTH_ERROR = "auth_error"


class TokenMissing(OTPAuthError):
    """The request carried no token where one is required."""

    code = ErrorCode.TOKEN_MISSING.value
    default_message = "Not authenticated."


class CSRFRefused(OTPAuthError):
    """A cookie-authenticated request came from another site."""

    code = ErrorCode.CSRF_REFUSED.value
    default_message = "Cross-site request refused."


@dataclass(frozen=True, slots=True)
class HTTPErrorSpec:
    """How one error code is sent: status, fixed headers, and what OpenAPI says of it."""

    status: int
    headers: Mapping[str, str]
    description: str


# RFC 6750 §3: a request without credentials gets the bare challenge; a refused token gets
# error="invalid_token" so clients know to refresh or log in again rather than retry.
_CHALLENGE: Final = MappingProxyType({"WWW-Authenticate": "Bearer"})
_INVALID_TOKEN: Final = MappingProxyType({"WWW-Authenticate": 'Bearer error="invalid_token"'})
_NONE: Final[Mapping[str, str]] = MappingProxyType({})

#: The one table: error code -> status, headers, description.
ERROR_TABLE: Final[Mapping[str, HTTPErrorSpec]] = MappingProxyType(
    {
        ErrorCode.OTP_INVALID: HTTPErrorSpec(
            401, _CHALLENGE, "The code is wrong or none is pending."
        ),
        ErrorCode.OTP_EXPIRED: HTTPErrorSpec(401, _CHALLENGE, "The code has expired."),
        ErrorCode.OTP_LOCKED: HTTPErrorSpec(429, _NONE, "Too many failed attempts."),
        ErrorCode.OTP_COOLDOWN: HTTPErrorSpec(429, _NONE, "A code was requested too recently."),
        ErrorCode.BUSY: HTTPErrorSpec(429, _NONE, "Too many concurrent requests; retry."),
        ErrorCode.TOKEN_MISSING: HTTPErrorSpec(401, _CHALLENGE, "No token was presented."),
        ErrorCode.TOKEN_INVALID: HTTPErrorSpec(401, _INVALID_TOKEN, "The token is invalid."),
        ErrorCode.TOKEN_EXPIRED: HTTPErrorSpec(401, _INVALID_TOKEN, "The token has expired."),
        ErrorCode.TOKEN_REVOKED: HTTPErrorSpec(401, _INVALID_TOKEN, "The token was revoked."),
        ErrorCode.REFRESH_REUSED: HTTPErrorSpec(
            401, _INVALID_TOKEN, "A rotated refresh token was reused; the session is revoked."
        ),
        ErrorCode.USER_NOT_VERIFIED: HTTPErrorSpec(403, _NONE, "The user is not verified."),
        ErrorCode.CSRF_REFUSED: HTTPErrorSpec(403, _NONE, "Cross-site cookie request refused."),
        ErrorCode.USER_NOT_FOUND: HTTPErrorSpec(404, _NONE, "No such user."),
        ErrorCode.INVALID_EMAIL: HTTPErrorSpec(422, _NONE, "The e-mail address is not valid."),
        ErrorCode.DELIVERY_FAILED: HTTPErrorSpec(502, _NONE, "The code could not be delivered."),
        ErrorCode.STORAGE_UNAVAILABLE: HTTPErrorSpec(
            503, _NONE, "Authentication storage is unavailable."
        ),
        ErrorCode.AUTH_ERROR: HTTPErrorSpec(401, _CHALLENGE, "Authentication failed."),
    }
)

_INVALID_EMAIL_MESSAGE: Final = "Invalid e-mail address."


def _spec(code: str) -> HTTPErrorSpec:
    # Fail closed: a code this table does not know yet is an authentication failure.
    return ERROR_TABLE.get(code) or ERROR_TABLE[ErrorCode.AUTH_ERROR]


def _headers(spec: HTTPErrorSpec, retry_after: int | None) -> dict[str, str]:
    headers = dict(spec.headers)
    if retry_after is not None:
        headers["Retry-After"] = str(max(0, int(retry_after)))
    return headers


def _log(exc: OTPAuthError) -> None:
    if exc.code == ErrorCode.STORAGE_UNAVAILABLE:
        # The driver's message can quote statement parameters (e-mails, hashes): log its
        # type only, for the operator; the client sees the fixed message.
        cause = exc.__cause__
        logger.error("otpcore storage unavailable (%s)", type(cause).__name__ if cause else "-")


def error_response(code: str, message: str, retry_after: int | None = None) -> JSONResponse:
    """The response for one refusal: table status and headers, ``{"detail", "code"}`` body."""
    spec = _spec(code)
    return JSONResponse(
        {"detail": message, "code": code},
        status_code=spec.status,
        headers=_headers(spec, retry_after),
    )


class OTPAuthHTTPException(HTTPException):
    """An :class:`HTTPException` that remembers the stable ``code`` it was made from."""

    def __init__(self, code: str, message: str, retry_after: int | None = None) -> None:
        spec = _spec(code)
        super().__init__(spec.status, detail=message, headers=_headers(spec, retry_after))
        self.code = code
        self.retry_after = retry_after


def http_exception(exc: OTPAuthError) -> OTPAuthHTTPException:
    """Translate a core refusal for raising from a dependency."""
    _log(exc)
    return OTPAuthHTTPException(exc.code, exc.message, exc.retry_after)


def _response_for(exc: Exception) -> Response | None:
    if isinstance(exc, OTPAuthError):
        _log(exc)
        return error_response(exc.code, exc.message, exc.retry_after)
    if isinstance(exc, OTPAuthHTTPException):
        return error_response(exc.code, str(exc.detail), exc.retry_after)
    if isinstance(exc, InvalidEmail):
        # Fixed text: the validator's explanation varies between its releases.
        return error_response(ErrorCode.INVALID_EMAIL, _INVALID_EMAIL_MESSAGE)
    return None


class OTPAuthRoute(APIRoute):
    """An :class:`APIRoute` that answers otpcore refusals from the table, whatever app hosts it.

    The auth router uses it, so the mapping travels with ``include_router`` and needs no
    application-level exception handler.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler so refusals become table responses."""
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except (OTPAuthError, OTPAuthHTTPException, InvalidEmail) as exc:
                response = _response_for(exc)
                assert response is not None
                return response

        return guarded


async def _handle(request: Request, exc: Exception) -> Response:
    response = _response_for(exc)
    if response is None:  # pragma: no cover - registered only for the types above
        raise exc
    return response


def install_error_handlers(app: FastAPI) -> None:
    """Render refusals from dependencies on the app's own routes with their ``code`` too.

    Optional: without it those refusals keep FastAPI's ``{"detail": …}`` body (status and
    headers are the same either way).
    """
    app.add_exception_handler(OTPAuthHTTPException, _handle)
    app.add_exception_handler(OTPAuthError, _handle)
    app.add_exception_handler(InvalidEmail, _handle)


def openapi_responses(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for the refusals an endpoint can send, grouped by status."""
    grouped: dict[int, list[ErrorCode]] = {}
    for code in codes:
        grouped.setdefault(ERROR_TABLE[code].status, []).append(code)
    responses: dict[int | str, dict[str, Any]] = {}
    for status, members in sorted(grouped.items()):
        lines = [f"`{code.value}`: {ERROR_TABLE[code].description}" for code in members]
        if status == 422:
            lines.append("Or a validation error: malformed JSON, missing or oversized fields.")
        # FastAPI documents its own 422 only when the route does not; ours covers both.
        model = UnprocessableResponse if status == 422 else ErrorResponse
        entry: dict[str, Any] = {"model": model, "description": " ".join(lines)}
        headers: dict[str, Any] = {}
        if status == 401:
            headers["WWW-Authenticate"] = {
                "description": 'Bearer, with error="invalid_token" for a refused token.',
                "schema": {"type": "string"},
            }
        if status == 429:
            headers["Retry-After"] = {
                "description": "Seconds until the request may succeed, when known.",
                "schema": {"type": "integer"},
            }
        if headers:
            entry["headers"] = headers
        responses[status] = entry
    return responses
