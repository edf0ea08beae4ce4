"""``get_auth_router``: the auth endpoints, mountable under any prefix.

Each endpoint parses the request, calls one :class:`~otpcore.service.OTPAuth` method and maps
the result; refusals are answered from the one error table by :class:`OTPAuthRoute`.
"""

# No `from __future__ import annotations`: FastAPI reads these endpoint annotations at
# runtime, and they name closure variables (the application's get_otp_db) that a string
# annotation could not be resolved against.

import inspect
import json
from collections.abc import Callable
from typing import Annotated, Any, Final

from fastapi import APIRouter, Body, Depends, Request, Response, status

from otpcore.domain.errors import TokenInvalid
from otpcore_fastapi.config import OTPAuthConfig
from otpcore_fastapi.dependencies import Bearer
from otpcore_fastapi.http_errors import ErrorCode, OTPAuthRoute, TokenMissing, openapi_responses
from otpcore_fastapi.schemas import (
    JWKSet,
    LogoutRequest,
    MessageResponse,
    OTPRequest,
    OTPVerify,
    RefreshRequest,
    TokenResponse,
)
from otpcore_fastapi.transport import RefreshTransport

__all__ = ["get_auth_router"]

E = ErrorCode
_SENT: Final = "OTP code has been sent to your email"
_LOGGED_OUT: Final = "Successfully logged out"
_LOGGED_OUT_ALL: Final = "Successfully logged out of all sessions"
# Bodies are a few hundred bytes; anything far larger is refused before it is parsed.
_MAX_BODY_BYTES: Final = 64 * 1024
# Recent FastAPI releases take a per-router body limit; older ones (still allowed) do not.
_BODY_LIMIT: Final[dict[str, Any]] = (
    {"max_body_size": _MAX_BODY_BYTES}
    if "max_body_size" in inspect.signature(APIRouter).parameters
    else {}
)
_CSRF_NOTE: Final = (
    " A token from the cookie is honoured only for same-site requests "
    "(`Sec-Fetch-Site`, else `Origin`); a cross-site one gets 403 `csrf_refused`."
)


def get_auth_router(get_otp_db: Callable[..., Any], config: OTPAuthConfig) -> APIRouter:
    """Build the router: request-otp, verify-otp, refresh, logout, logout-all (and JWKS).

    Args:
        get_otp_db: Dependency yielding the store adapter (e.g. ``SQLAlchemyAdapter``). It is
            recorded on ``config`` so claims-only dependencies can refresh their mirror.
        config: The configuration.

    Returns:
        An ``APIRouter`` to include under any prefix, e.g. ``prefix="/auth"``.

    Raises:
        ConfigurationError: ``get_otp_db`` cannot be resolved outside FastAPI's DI.
    """
    config.record_store_dependency(get_otp_db)
    auth = config.auth
    transport = RefreshTransport(config)
    router = APIRouter(route_class=OTPAuthRoute, **_BODY_LIMIT)
    sent = MessageResponse(
        message=f"Developer mode: OTP code is {'0' * config.otp_length}"
        if config.developer_mode
        else _SENT
    )
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
    Db = Annotated[Any, Depends(get_otp_db)]

    @router.post(
        "/request-otp",
        response_model=MessageResponse,
        status_code=status.HTTP_200_OK,
        summary="Request OTP code",
        description="Generate a code and send it to the e-mail address. Unknown addresses get "
        "the same answer as known ones unless `reveal_unknown_users` is set.",
        responses=openapi_responses(
            E.INVALID_EMAIL,
            E.OTP_COOLDOWN,
            E.OTP_LOCKED,
            E.BUSY,
            E.USER_NOT_FOUND,
            E.DELIVERY_FAILED,
            E.STORAGE_UNAVAILABLE,
        ),
    )
    async def request_otp(body: OTPRequest, db: Db) -> MessageResponse:
        await auth.with_store(db).request_code(body.email)
        return sent

    @router.post(
        "/verify-otp",
        response_model=TokenResponse,
        response_model_exclude_none=True,
        status_code=status.HTTP_200_OK,
        summary="Verify OTP code",
        description=f"Redeem the code for an access token. {delivery}",
        responses=openapi_responses(
            E.OTP_INVALID,
            E.OTP_EXPIRED,
            E.INVALID_EMAIL,
            E.OTP_LOCKED,
            E.BUSY,
            E.USER_NOT_FOUND,
            E.STORAGE_UNAVAILABLE,
        ),
    )
    async def verify_otp(
        body: OTPVerify, request: Request, response: Response, db: Db
    ) -> TokenResponse:
        login = await auth.with_store(db).verify_code(body.email, body.code)
        return transport.deliver(login, request, response)

    async def refresh(
        request: Request, response: Response, db: Any, body_token: str | None
    ) -> TokenResponse:
        token, from_cookie = transport.read(request, body_token)
        if token is None:
            raise TokenMissing("Refresh token not found.")
        if from_cookie:
            transport.check_same_site(request)
        login = await auth.with_store(db).refresh(token)
        return transport.deliver(login, request, response)

    async def logout(
        request: Request,
        response: Response,
        db: Any,
        body_token: str | None,
        access_token: str | None,
    ) -> MessageResponse:
        token, from_cookie = transport.read(request, body_token)
        if from_cookie:
            transport.check_same_site(request)
        service = auth.with_store(db)
        try:
            if token is not None:
                await service.logout(token)
            elif access_token is not None:
                await service.logout(access_token=access_token)
        except TokenInvalid:
            pass  # nothing we issued, so nothing to revoke; still clear the cookie
        transport.clear(request, response)
        return MessageResponse(message=_LOGGED_OUT)

    refresh_route: dict[str, Any] = {
        "response_model": TokenResponse,
        "response_model_exclude_none": True,
        "summary": "Refresh access token",
        "description": f"Rotate the refresh token into a new pair. {accepts} {delivery} "
        "Presenting an already-rotated refresh token revokes its whole session."
        + (_CSRF_NOTE if transport.in_cookie else ""),
        "responses": openapi_responses(
            E.TOKEN_MISSING,
            E.TOKEN_INVALID,
            E.TOKEN_EXPIRED,
            E.TOKEN_REVOKED,
            E.REFRESH_REUSED,
            E.CSRF_REFUSED,
            E.USER_NOT_FOUND,
            E.STORAGE_UNAVAILABLE,
        ),
        "name": "refresh",
    }
    logout_route: dict[str, Any] = {
        "response_model": MessageResponse,
        "summary": "Logout",
        "description": "Revoke the session of the presented refresh token (or, without one, "
        "of the bearer access token): its refresh and access tokens stop working. Clears the "
        "cookie. Answers 200 for an invalid or expired token too."
        + (_CSRF_NOTE if transport.in_cookie else ""),
        "responses": openapi_responses(E.CSRF_REFUSED, E.STORAGE_UNAVAILABLE),
        "name": "logout",
    }
    if transport.in_body:

        @router.post("/refresh", **refresh_route)
        async def refresh_from_body_or_cookie(
            request: Request,
            response: Response,
            db: Db,
            body: Annotated[RefreshRequest | None, Body()] = None,
        ) -> TokenResponse:
            return await refresh(request, response, db, body.refresh_token if body else None)

        @router.post("/logout", **logout_route)
        async def logout_from_body_or_cookie(
            request: Request,
            response: Response,
            db: Db,
            credentials: Bearer,
            body: Annotated[LogoutRequest | None, Body()] = None,
        ) -> MessageResponse:
            body_token = body.refresh_token if body else None
            access = credentials.credentials if credentials is not None else None
            return await logout(request, response, db, body_token, access)

    else:

        @router.post("/refresh", **refresh_route)
        async def refresh_from_cookie(
            request: Request, response: Response, db: Db
        ) -> TokenResponse:
            return await refresh(request, response, db, None)

        @router.post("/logout", **logout_route)
        async def logout_from_cookie(
            request: Request,
            response: Response,
            db: Db,
            credentials: Bearer,
        ) -> MessageResponse:
            access = credentials.credentials if credentials is not None else None
            return await logout(request, response, db, None, access)

    @router.post(
        "/logout-all",
        response_model=MessageResponse,
        summary="Logout everywhere",
        description="Revoke every session of the bearer token's user, on every device.",
        responses=openapi_responses(
            E.TOKEN_MISSING,
            E.TOKEN_INVALID,
            E.TOKEN_EXPIRED,
            E.TOKEN_REVOKED,
            E.USER_NOT_FOUND,
            E.STORAGE_UNAVAILABLE,
        ),
    )
    async def logout_all(
        request: Request,
        response: Response,
        db: Db,
        credentials: Bearer,
    ) -> MessageResponse:
        if credentials is None:
            raise TokenMissing()
        service = auth.with_store(db)
        principal = await service.authenticate(credentials.credentials)
        await service.logout_all(principal.account.user_id)
        transport.clear(request, response)
        return MessageResponse(message=_LOGGED_OUT_ALL)

    jwks = config.jwks()
    if jwks is not None:
        document = json.dumps(jwks).encode()
        jwks_headers = {"Cache-Control": "public, max-age=300"}

        @router.get(
            "/.well-known/jwks.json",
            response_model=JWKSet,
            summary="JSON Web Key Set",
            description="The public keys access tokens are signed with (RFC 7517), for "
            "resource servers that verify tokens themselves.",
        )
        async def jwks_document() -> Response:
            return Response(document, media_type="application/json", headers=jwks_headers)

    return router
