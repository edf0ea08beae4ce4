"""``get_auth_router``: the auth endpoints, mountable under any prefix.

Each endpoint parses the request, calls one :class:`~otpcore.service.OTPAuth` method and maps
the result; refusals are answered from the one error table by :class:`OTPAuthRoute`. The
service and the refresh-token transport are read from the config per request (one attribute
read each), so a setting assigned on the config after the router was built takes effect.
"""

# No `from __future__ import annotations`: FastAPI reads these endpoint annotations at
# runtime, and they name closure variables (the application's get_otp_db) that a string
# annotation could not be resolved against.

import json
from collections.abc import Callable
from typing import Annotated, Any, Final, TypeVar

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from otpcore.domain import errors as core
from otpcore.domain.emails import InvalidEmail
from otpcore_fastapi.config import OTPAuthConfig
from otpcore_fastapi.dependencies import Bearer
from otpcore_fastapi.http_errors import (
    CSRFRefused,
    OTPAuthRoute,
    TokenMissing,
    openapi_responses,
)
from otpcore_fastapi.languages import accept_languages
from otpcore_fastapi.magic_link import add_magic_link_routes, finish_login
from otpcore_fastapi.schemas import (
    JWKSet,
    LogoutRequest,
    MessageResponse,
    OTPRequest,
    OTPRequested,
    OTPVerify,
    RefreshRequest,
    TokenResponse,
)
from otpcore_fastapi.session_routes import add_session_routes
from otpcore_fastapi.startup import startup_check
from otpcore_fastapi.transport import client_address

__all__ = ["get_auth_router"]

_SENT: Final = "OTP code has been sent to your email"
_LOGGED_OUT: Final = "Successfully logged out"
_LOGGED_OUT_ALL: Final = "Successfully logged out of all sessions"
_CSRF_NOTE: Final = (
    " A token from the cookie is honoured only for same-site requests "
    "(`Sec-Fetch-Site`, else `Origin`); a cross-site one gets 403 `csrf_refused`."
)
_JWKS_HEADERS: Final = {"Cache-Control": "public, max-age=300"}

M = TypeVar("M", bound=BaseModel)


async def _optional_body(request: Request, model: type[M]) -> M | None:
    """The JSON body as ``model``, or ``None`` without one; FastAPI's 422 when malformed.

    The refresh and logout routes read their body themselves, so that switching
    ``refresh_token_delivery`` on a built router takes effect; the body is read through
    :class:`OTPAuthRoute`'s cap.
    """
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        ) from None


def _body_openapi(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


def _sent(config: OTPAuthConfig, challenge_id: str) -> OTPRequested:
    if config.developer_mode:
        message = f"Developer mode: OTP code is {'0' * config.otp_length}"
    else:
        message = _SENT
    return OTPRequested(message=message, challenge_id=challenge_id)


def get_auth_router(get_otp_db: Callable[..., Any], config: OTPAuthConfig) -> APIRouter:
    """Build the router: request-otp, verify-otp, refresh, logout, logout-all, the session
    endpoints (sessions, sessions/{id}, logout-others), the magic link's (magic, magic-link)
    and JWKS.

    Args:
        get_otp_db: Dependency yielding the store adapter (e.g. ``SQLAlchemyAdapter``). It is
            recorded on ``config`` so claims-only dependencies can refresh their mirror.
        config: The configuration; settings assigned on it later apply to this router too
            (OpenAPI describes the delivery mode and keys it had when the router was built).

    Returns:
        An ``APIRouter`` to include under any prefix, e.g. ``prefix="/auth"``. Its lifespan
        (run at the app's startup once included) refuses to start when ``auto_create_user``
        is on, no ``new_user_fields`` hook is set and the user model has a required column
        otpcore cannot fill: ``ConfigurationError`` naming the hook.

    Raises:
        ConfigurationError: ``get_otp_db`` cannot be solved outside its own routes.
    """
    config.record_store_dependency(get_otp_db)
    # Included with app.include_router, the router's lifespan runs at the app's startup: an
    # app whose user model auto-creation cannot fill refuses to start (startup.py).
    router = APIRouter(route_class=OTPAuthRoute, lifespan=startup_check(get_otp_db, config))
    built = config.transport  # for the OpenAPI text only; requests read config.transport
    delivery = {
        "cookie": "The refresh token is set as an HTTP-only cookie.",
        "body": "The refresh token is returned in the body.",
        "both": "The refresh token is set as an HTTP-only cookie and returned in the body.",
    }[config.refresh_token_delivery]
    accepts = {
        "cookie": "The refresh token is read from the cookie.",
        "body": "The refresh token is read from the JSON body.",
        "both": "The refresh token is read from the cookie, else from the JSON body.",
    }[config.refresh_token_delivery]
    csrf_note = _CSRF_NOTE if built.in_cookie else ""
    Db = Annotated[Any, Depends(get_otp_db)]

    @router.post(
        "/request-otp",
        response_model=OTPRequested,
        response_model_exclude_none=True,
        status_code=status.HTTP_200_OK,
        summary="Request OTP code",
        description="Generate a code bound to this client and start sending it to the e-mail "
        "address; the answer does not wait for the mailer. The body's `challenge_id` (also set "
        "as an HTTP-only cookie in cookie and both modes) binds the code to this client: send "
        "it back with verify-otp. Unknown addresses get the same answer as known ones unless "
        "`reveal_unknown_users` is set. Send limits per client address, per mailbox and "
        "(when configured) per deployment answer 429 `rate_limited` with `Retry-After`.",
        responses=openapi_responses(
            InvalidEmail,
            core.RateLimited,
            core.CodeCooldown,
            core.AccountLocked,
            core.ContentionError,
            core.DeliveryBusy,
            core.UserNotFound,
            core.StorageError,
            body=True,
        ),
    )
    async def request_otp(
        body: OTPRequest, request: Request, response: Response, db: Db
    ) -> OTPRequested:
        bound = config.challenge_cookie
        header = request.headers.get("accept-language")
        requested = await config.auth.with_store(db).request_code(
            body.email,
            ip=client_address(request),
            challenge_id=body.challenge_id or bound.read(request),
            device=body.device or config.device_cookie.read(request),
            languages=accept_languages(header),
            accept_language=header,
        )
        bound.set(request, response, requested.challenge_id)
        return _sent(config, requested.challenge_id)

    @router.post(
        "/verify-otp",
        response_model=TokenResponse,
        response_model_exclude_none=True,
        status_code=status.HTTP_200_OK,
        summary="Verify OTP code",
        description=f"Redeem the code for an access token. {delivery} With a "
        "`challenge_id` (body, else the challenge cookie) the guess is checked against that "
        "request's code only, under its own attempt budget; without one, against the newest "
        "code under a separate budget shared by every unbound guess. Guesses per client "
        "address are limited: 429 `rate_limited` with `Retry-After`.",
        responses=openapi_responses(
            core.CodeInvalid,
            core.CodeExpired,
            InvalidEmail,
            core.RateLimited,
            core.AccountLocked,
            core.ContentionError,
            core.UserNotFound,
            core.StorageError,
            body=True,
        ),
    )
    async def verify_otp(
        body: OTPVerify, request: Request, response: Response, db: Db
    ) -> TokenResponse:
        bound, device = config.challenge_cookie, config.device_cookie
        login = await config.auth.with_store(db).verify_code(
            body.email,
            body.code,
            challenge_id=body.challenge_id or bound.read(request),
            ip=client_address(request),
            user_agent=request.headers.get("user-agent"),
            device=body.device or device.read(request),
        )
        # The refresh cookie first: the reference's one Set-Cookie stays the first one.
        delivered: TokenResponse = finish_login(config, login, request, response)
        return delivered

    @router.post(
        "/refresh",
        response_model=TokenResponse,
        response_model_exclude_none=True,
        summary="Refresh access token",
        description=f"Rotate the refresh token into a new pair. {accepts} {delivery} "
        f"Presenting an already-rotated refresh token revokes its whole session.{csrf_note}",
        responses=openapi_responses(
            TokenMissing,
            core.TokenInvalid,
            core.TokenExpired,
            core.TokenRevoked,
            core.RefreshReused,
            CSRFRefused,
            core.StorageError,
            body=built.in_body,
        ),
        openapi_extra=_body_openapi(RefreshRequest) if built.in_body else None,
    )
    async def refresh(request: Request, response: Response, db: Db) -> TokenResponse:
        transport = config.transport
        body = await _optional_body(request, RefreshRequest) if transport.in_body else None
        token, from_cookie = transport.read(request, body.refresh_token if body else None)
        if token is None:
            raise TokenMissing("Refresh token not found.")
        if from_cookie:
            transport.check_same_site(request)
        login = await config.auth.with_store(db).refresh(token)
        return transport.deliver(login, request, response)

    @router.post(
        "/logout",
        response_model=MessageResponse,
        summary="Logout",
        description="Revoke the session of the presented refresh token and of the bearer "
        "access token: their refresh and access tokens stop working. Clears the cookie. "
        f"Answers 200 for a missing, invalid or expired token too.{csrf_note}",
        responses=openapi_responses(CSRFRefused, core.StorageError, body=built.in_body),
        openapi_extra=_body_openapi(LogoutRequest) if built.in_body else None,
    )
    async def logout(
        request: Request, response: Response, db: Db, credentials: Bearer
    ) -> MessageResponse:
        transport = config.transport
        body = await _optional_body(request, LogoutRequest) if transport.in_body else None
        token, from_cookie = transport.read(request, body.refresh_token if body else None)
        if from_cookie:
            transport.check_same_site(request)
        access = credentials.credentials if credentials is not None else None
        await config.auth.with_store(db).logout(token, access_token=access)
        transport.clear(request, response)
        return MessageResponse(message=_LOGGED_OUT)

    @router.post(
        "/logout-all",
        response_model=MessageResponse,
        summary="Logout everywhere",
        description="Revoke every session of the bearer token's user, on every device.",
        responses=openapi_responses(
            TokenMissing,
            core.TokenInvalid,
            core.TokenExpired,
            core.TokenRevoked,
            core.StorageError,
        ),
    )
    async def logout_all(
        request: Request, response: Response, db: Db, credentials: Bearer
    ) -> MessageResponse:
        if credentials is None:
            raise TokenMissing()
        await config.auth.with_store(db).logout_all(credentials.credentials)
        config.transport.clear(request, response)
        return MessageResponse(message=_LOGGED_OUT_ALL)

    @router.get(
        "/.well-known/jwks.json",
        response_model=JWKSet,
        summary="JSON Web Key Set",
        description="The public keys access tokens are signed with (RFC 7517), for resource "
        "servers that verify tokens themselves. 404 while tokens use a shared secret.",
        include_in_schema=config.jwks() is not None,
    )
    async def jwks_document() -> Response:
        jwks = config.jwks()
        if jwks is None:
            return Response(
                json.dumps({"detail": "Not Found"}).encode(),
                status_code=status.HTTP_404_NOT_FOUND,
                media_type="application/json",
            )
        return Response(
            json.dumps(jwks).encode(), media_type="application/json", headers=_JWKS_HEADERS
        )

    add_session_routes(router, get_otp_db, config)
    add_magic_link_routes(router, get_otp_db, config)
    return router
