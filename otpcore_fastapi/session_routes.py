"""The auth router's session endpoints: list the user's sessions, end one, end the others.

Each takes the bearer access token and calls one :class:`~otpcore.service.OTPAuth` method
(``list_sessions``, ``revoke_session``, ``revoke_other_sessions``); the core decides whose
sessions the token may see and end. :func:`~otpcore_fastapi.get_auth_router` adds them.
"""

# No `from __future__ import annotations`: FastAPI reads these endpoint annotations at
# runtime, and they name closure variables (the application's get_otp_db).

from collections.abc import Callable
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials

from otpcore.domain import errors as core
from otpcore_fastapi.config import OTPAuthConfig
from otpcore_fastapi.dependencies import Bearer
from otpcore_fastapi.http_errors import TokenMissing, openapi_responses
from otpcore_fastapi.schemas import SessionItem, SessionsEnded

__all__ = ["SESSION_ID_MAX_LENGTH", "add_session_routes"]

#: Longest session id ``DELETE /sessions/{id}`` accepts (issued ids are 22 characters).
SESSION_ID_MAX_LENGTH: Final = 128
_SESSION_ID_PATTERN: Final = r"^[A-Za-z0-9_-]+$"
_ENDED_OTHERS: Final = "Successfully logged out of all other sessions"
_TOKEN_REFUSALS: Final = (TokenMissing, core.TokenInvalid, core.TokenExpired, core.TokenRevoked)
# DELETE /sessions/{id} is two path segments below the router's prefix.
_ID_SEGMENTS: Final = 2


def _access_token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None:
        raise TokenMissing()
    return credentials.credentials


def add_session_routes(
    router: APIRouter, get_otp_db: Callable[..., Any], config: OTPAuthConfig
) -> None:
    """Add ``GET /sessions``, ``DELETE /sessions/{id}`` and ``POST /logout-others``.

    Args:
        router: The auth router (its route class answers refusals from the error table).
        get_otp_db: The application's store dependency.
        config: The configuration; read per request.
    """
    Db = Annotated[Any, Depends(get_otp_db)]
    SessionId = Annotated[
        str,
        Path(
            min_length=1,
            max_length=SESSION_ID_MAX_LENGTH,
            pattern=_SESSION_ID_PATTERN,
            description="A session `id` from `GET /sessions`.",
        ),
    ]

    @router.get(
        "/sessions",
        response_model=list[SessionItem],
        summary="List sessions",
        description="The bearer token's user's active sessions, newest first: one per login "
        "on a device, until it is logged out, ended, or reaches its idle or absolute end. "
        "`current` marks the session of the bearer token.",
        responses=openapi_responses(*_TOKEN_REFUSALS, core.StorageError),
    )
    async def list_sessions(db: Db, credentials: Bearer) -> list[SessionItem]:
        views = await config.auth.with_store(db).list_sessions(_access_token(credentials))
        return [
            SessionItem(
                id=view.id,
                current=view.current,
                created_at=view.created_at,
                last_used_at=view.last_used_at,
                user_agent=view.user_agent,
                ip=view.ip,
            )
            for view in views
        ]

    @router.delete(
        "/sessions/{id}",
        status_code=status.HTTP_204_NO_CONTENT,
        response_class=Response,
        summary="End a session",
        description="End one of the bearer token's user's sessions (a lost device, say). Its "
        "refresh token is refused from now on, its access tokens at once by current-user "
        "routes and within `revocation_mirror_interval` by claims-only routes. Ending the "
        "bearer token's own session also clears the refresh cookie. 404 `session_not_found` "
        "for an id that is not one of this user's active sessions.",
        responses=openapi_responses(*_TOKEN_REFUSALS, core.SessionNotFound, core.StorageError),
    )
    async def revoke_session(
        id: SessionId,
        request: Request,
        db: Db,
        credentials: Bearer,
    ) -> Response:
        own = await config.auth.with_store(db).revoke_session(_access_token(credentials), id)
        response = Response(status_code=status.HTTP_204_NO_CONTENT)
        if own:
            config.transport.clear(request, response, segments=_ID_SEGMENTS)
        return response

    @router.post(
        "/logout-others",
        response_model=SessionsEnded,
        summary="Logout other sessions",
        description="End every session of the bearer token's user except the token's own "
        "(every other device). Their refresh tokens are refused from now on, their access "
        "tokens at once by current-user routes and within `revocation_mirror_interval` by "
        "claims-only routes.",
        responses=openapi_responses(*_TOKEN_REFUSALS, core.StorageError),
    )
    async def logout_others(db: Db, credentials: Bearer) -> SessionsEnded:
        token = _access_token(credentials)
        ended = await config.auth.with_store(db).revoke_other_sessions(token)
        return SessionsEnded(message=_ENDED_OTHERS, ended=ended)
