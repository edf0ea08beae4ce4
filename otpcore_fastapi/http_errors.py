"""The one table from exception classes to HTTP responses, and the ways it is applied.

Every refusal the binding sends is ``{"detail": <message>, "code": <stable code>}`` with the
status and headers :data:`ERROR_TABLE` gives the exception's class (the nearest class in its
MRO that the table lists, as fastapi-users' ``ErrorCode`` table is read): 401s carry
``WWW-Authenticate: Bearer`` (with ``error="invalid_token"`` for token refusals, RFC 6750
§3.1), 429s carry ``Retry-After`` when the core knows it. The auth router applies it through
:class:`OTPAuthRoute`, which also caps request bodies and keeps FastAPI's 422 answerable for
any input; dependencies on the application's own routes raise :class:`OTPAuthHTTPException`,
which FastAPI's default handler renders as ``{"detail": …}`` and
:func:`install_error_handlers` renders with the code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.types import Message, Receive, Scope, Send

from otpcore.domain import errors
from otpcore.domain.emails import InvalidEmail
from otpcore.domain.errors import OTPAuthError
from otpcore_fastapi.schemas import ErrorResponse, UnprocessableResponse

__all__ = [
    "ERROR_TABLE",
    "MAX_BODY_BYTES",
    "TABLE_ERRORS",
    "BodyTooLarge",
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
    "spec_for",
]

logger = logging.getLogger("otpcore_fastapi")

#: The largest request body the auth router reads. Its bodies are a few hundred bytes; the
#: longest field (a token) is bounded at 16 KiB.
MAX_BODY_BYTES: Final = 64 * 1024


class ErrorCode(StrEnum):
    """Every ``code`` a response body can carry; stable across releases."""

    OTP_INVALID = "otp_invalid"
    OTP_EXPIRED = "otp_expired"
    OTP_LOCKED = "otp_locked"
    OTP_COOLDOWN = "otp_cooldown"
    LINK_INVALID = "link_invalid"
    RATE_LIMITED = "rate_limited"
    BUSY = "busy"
    TOKEN_MISSING = "token_missing"  # noqa: S105 - an error code, not a secret
    TOKEN_INVALID = "token_invalid"  # noqa: S105 - an error code, not a secret
    TOKEN_EXPIRED = "token_expired"  # noqa: S105 - an error code, not a secret
    TOKEN_REVOKED = "token_revoked"  # noqa: S105 - an error code, not a secret
    REFRESH_REUSED = "refresh_reused"
    USER_NOT_VERIFIED = "user_not_verified"
    CSRF_REFUSED = "csrf_refused"
    USER_NOT_FOUND = "user_not_found"
    SESSION_NOT_FOUND = "session_not_found"
    INVALID_EMAIL = "invalid_email"
    BODY_TOO_LARGE = "body_too_large"
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


class BodyTooLarge(OTPAuthError):
    """The request body is larger than :data:`MAX_BODY_BYTES`."""

    code = ErrorCode.BODY_TOO_LARGE.value
    default_message = "Request body too large."


@dataclass(frozen=True, slots=True)
class HTTPErrorSpec:
    """How one exception class is sent: code, status, fixed headers, OpenAPI description."""

    code: ErrorCode
    status: int
    headers: Mapping[str, str]
    description: str


# RFC 6750 §3: a request without credentials gets the bare challenge; a refused token gets
# error="invalid_token" so clients know to refresh or log in again rather than retry.
_CHALLENGE: Final = MappingProxyType({"WWW-Authenticate": "Bearer"})
_INVALID_TOKEN: Final = MappingProxyType({"WWW-Authenticate": 'Bearer error="invalid_token"'})
_NONE: Final[Mapping[str, str]] = MappingProxyType({})

E = ErrorCode

#: The one table: exception class -> code, status, headers, description. A class it does not
#: list is answered as its nearest listed base; :class:`OTPAuthError` itself is the fallback.
ERROR_TABLE: Final[Mapping[type[Exception], HTTPErrorSpec]] = MappingProxyType(
    {
        errors.CodeInvalid: HTTPErrorSpec(
            E.OTP_INVALID, 401, _CHALLENGE, "The code is wrong or none is pending."
        ),
        errors.CodeExpired: HTTPErrorSpec(E.OTP_EXPIRED, 401, _CHALLENGE, "The code has expired."),
        errors.LinkInvalid: HTTPErrorSpec(
            E.LINK_INVALID,
            400,
            _NONE,
            "The magic link is malformed, unknown, used, or replaced by a newer code "
            "(not counted as a guess).",
        ),
        errors.AccountLocked: HTTPErrorSpec(E.OTP_LOCKED, 429, _NONE, "Too many failed attempts."),
        errors.CodeCooldown: HTTPErrorSpec(
            E.OTP_COOLDOWN, 429, _NONE, "A code was requested too recently."
        ),
        errors.RateLimited: HTTPErrorSpec(
            E.RATE_LIMITED,
            429,
            _NONE,
            "A send or guess limit (per client address, per mailbox or the global budget) "
            "refused the request.",
        ),
        errors.ContentionError: HTTPErrorSpec(
            E.BUSY, 429, _NONE, "Too many concurrent requests; retry."
        ),
        errors.DeliveryBusy: HTTPErrorSpec(
            E.BUSY, 429, _NONE, "Too many codes are waiting to be sent; retry shortly."
        ),
        TokenMissing: HTTPErrorSpec(E.TOKEN_MISSING, 401, _CHALLENGE, "No token was presented."),
        errors.TokenInvalid: HTTPErrorSpec(
            E.TOKEN_INVALID, 401, _INVALID_TOKEN, "The token is invalid."
        ),
        errors.TokenExpired: HTTPErrorSpec(
            E.TOKEN_EXPIRED, 401, _INVALID_TOKEN, "The token has expired."
        ),
        errors.TokenRevoked: HTTPErrorSpec(
            E.TOKEN_REVOKED, 401, _INVALID_TOKEN, "The token was revoked."
        ),
        errors.RefreshReused: HTTPErrorSpec(
            E.REFRESH_REUSED,
            401,
            _INVALID_TOKEN,
            "A rotated refresh token was reused; the session is revoked.",
        ),
        errors.UserNotVerified: HTTPErrorSpec(
            E.USER_NOT_VERIFIED, 403, _NONE, "The user is not verified."
        ),
        CSRFRefused: HTTPErrorSpec(
            E.CSRF_REFUSED, 403, _NONE, "Cross-site cookie request refused."
        ),
        errors.UserNotFound: HTTPErrorSpec(E.USER_NOT_FOUND, 404, _NONE, "No such user."),
        errors.SessionNotFound: HTTPErrorSpec(
            E.SESSION_NOT_FOUND, 404, _NONE, "No such active session of this user."
        ),
        BodyTooLarge: HTTPErrorSpec(
            E.BODY_TOO_LARGE, 413, _NONE, f"The body is over {MAX_BODY_BYTES} bytes."
        ),
        InvalidEmail: HTTPErrorSpec(
            E.INVALID_EMAIL, 422, _NONE, "The e-mail address is not valid."
        ),
        errors.DeliveryError: HTTPErrorSpec(
            E.DELIVERY_FAILED, 502, _NONE, "The code could not be delivered."
        ),
        errors.StorageError: HTTPErrorSpec(
            E.STORAGE_UNAVAILABLE, 503, _NONE, "Authentication storage is unavailable."
        ),
        OTPAuthError: HTTPErrorSpec(E.AUTH_ERROR, 401, _CHALLENGE, "Authentication failed."),
    }
)

#: The exceptions the table answers (every class it lists derives from one of these).
TABLE_ERRORS: Final = (OTPAuthError, InvalidEmail)

# Fixed text: the e-mail validator's explanation varies between its releases.
_INVALID_EMAIL_MESSAGE: Final = "Invalid e-mail address."
_SPEC_CACHE: dict[type[Exception], HTTPErrorSpec] = {}


def spec_for(error: type[Exception]) -> HTTPErrorSpec:
    """The table's entry for ``error``: its own, else its nearest listed base class.

    Fails closed: an :class:`OTPAuthError` subclass the table does not know yet is an
    authentication failure (401).
    """
    spec = _SPEC_CACHE.get(error)
    if spec is None:
        spec = next(
            (ERROR_TABLE[cls] for cls in error.__mro__ if cls in ERROR_TABLE),
            ERROR_TABLE[OTPAuthError],
        )
        _SPEC_CACHE[error] = spec
    return spec


def _headers(spec: HTTPErrorSpec, retry_after: int | None) -> dict[str, str]:
    headers = dict(spec.headers)
    if retry_after is not None:
        headers["Retry-After"] = str(max(0, int(retry_after)))
    return headers


def _message_and_retry(error: Exception) -> tuple[str, int | None]:
    if isinstance(error, OTPAuthError):
        return error.message, error.retry_after
    return _INVALID_EMAIL_MESSAGE, None


def _log(error: Exception) -> None:
    if isinstance(error, errors.StorageError):
        # The driver's message can quote statement parameters (e-mails, hashes): log its
        # type only, for the operator; the client sees the fixed message.
        cause = error.__cause__
        logger.error("otpcore storage unavailable (%s)", type(cause).__name__ if cause else "-")


def error_response(error: OTPAuthError | InvalidEmail) -> JSONResponse:
    """The response for one refusal: table status and headers, ``{"detail", "code"}`` body."""
    _log(error)
    spec = spec_for(type(error))
    message, retry_after = _message_and_retry(error)
    return JSONResponse(
        {"detail": message, "code": spec.code.value},
        status_code=spec.status,
        headers=_headers(spec, retry_after),
    )


class OTPAuthHTTPException(HTTPException):
    """An :class:`HTTPException` made from a refusal; remembers its stable ``code``.

    Args:
        error: The refusal; status and headers come from :data:`ERROR_TABLE`.
    """

    def __init__(self, error: OTPAuthError | InvalidEmail) -> None:
        spec = spec_for(type(error))
        message, retry_after = _message_and_retry(error)
        super().__init__(spec.status, detail=message, headers=_headers(spec, retry_after))
        self.error = error
        self.code = spec.code.value
        self.retry_after = retry_after


def http_exception(error: OTPAuthError | InvalidEmail) -> OTPAuthHTTPException:
    """Translate a core refusal for raising from a dependency."""
    _log(error)
    return OTPAuthHTTPException(error)


def _readable(value: Any) -> Any:
    # A lone surrogate ("\ud800" from a JSON escape) cannot be encoded as UTF-8, so FastAPI's
    # 422 handler would fail echoing it back: show such text with backslash escapes instead.
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode()
        return value
    if isinstance(value, dict):
        return {_readable(key): _readable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_readable(item) for item in value)
    return value


def _capped(receive: Receive) -> Receive:
    read = 0

    async def capped_receive() -> Message:
        nonlocal read
        message = await receive()
        if message["type"] == "http.request":
            read += len(message.get("body", b""))
            if read > MAX_BODY_BYTES:
                # An HTTPException: FastAPI re-raises it from its body parsing unchanged.
                raise OTPAuthHTTPException(BodyTooLarge())
        return message

    return capped_receive


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class OTPAuthRoute(APIRoute):
    """An :class:`APIRoute` that answers refusals from the table, whatever app hosts it.

    It also reads at most :data:`MAX_BODY_BYTES` of a request body (413 ``body_too_large``,
    by ``Content-Length`` or by counting a streamed body, on every supported FastAPI), and
    makes FastAPI's validation errors renderable whatever the input held. The auth router
    uses it, so all of this travels with ``include_router`` and needs no app-level handler.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse an oversized body before anything reads it; count a streamed one."""
        if scope["type"] == "http":
            declared = _declared_length(scope)
            if declared is not None and declared > MAX_BODY_BYTES:
                await error_response(BodyTooLarge())(scope, receive, send)
                return
            receive = _capped(receive)
        await super().handle(scope, receive, send)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler so refusals become table responses."""
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except TABLE_ERRORS as exc:
                return error_response(exc)
            except OTPAuthHTTPException as exc:
                return error_response(exc.error)
            except RequestValidationError as exc:
                # Re-raised for the app's own handler, with text it can encode.
                raise RequestValidationError(
                    _readable(exc.errors()), body=_readable(exc.body)
                ) from None

        return guarded


async def _handle(request: Request, exc: Exception) -> Response:
    if isinstance(exc, OTPAuthHTTPException):
        return error_response(exc.error)
    if isinstance(exc, TABLE_ERRORS):
        return error_response(exc)
    raise exc  # pragma: no cover - registered only for the types above


def install_error_handlers(app: FastAPI) -> None:
    """Render refusals from dependencies on the app's own routes with their ``code`` too.

    Optional: without it those refusals keep FastAPI's ``{"detail": …}`` body (status and
    headers are the same either way).
    """
    app.add_exception_handler(OTPAuthHTTPException, _handle)
    for error in TABLE_ERRORS:
        app.add_exception_handler(error, _handle)


def openapi_responses(
    *refusals: type[Exception], body: bool = False
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for the refusals an endpoint can send, grouped by status.

    Args:
        refusals: The exception classes the endpoint can answer with.
        body: The endpoint reads a JSON body, so FastAPI's validation error (422) and
            ``body_too_large`` (413) belong to it too.
    """
    specs = [spec_for(error) for error in refusals]
    if body:
        specs.append(ERROR_TABLE[BodyTooLarge])
    grouped: dict[int, list[HTTPErrorSpec]] = {}
    for spec in specs:
        members = grouped.setdefault(spec.status, [])
        if spec not in members:
            members.append(spec)
    if body:
        grouped.setdefault(422, [])
    responses: dict[int | str, dict[str, Any]] = {}
    for status, members in sorted(grouped.items()):
        lines = [f"`{spec.code.value}`: {spec.description}" for spec in members]
        if status == 422:
            lines.append(
                "Or FastAPI's validation error (`detail` is a list): malformed JSON, missing "
                "or oversized fields."
            )
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
