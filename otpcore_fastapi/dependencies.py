"""Dependencies that protect the application's routes.

- current user / verified user: :meth:`OTPAuth.authenticate`, one signature check and one
  store round-trip (revocations and the user in one query);
- custom claims / principal: :meth:`OTPAuth.authenticate_claims`, no round-trip at all except
  the revocation-mirror refresh, at most once per ``revocation_mirror_interval`` per worker.

The service is read from the config per request (one attribute read), so settings assigned
on the config after the dependency was created apply; per request there is one
``with_store`` view and the check itself.
"""

# No `from __future__ import annotations`: FastAPI reads these endpoint annotations at
# runtime, and they name closure variables (the application's get_otp_db) that a string
# annotation could not be resolved against.

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.base import SecurityBase
from fastapi.security.utils import get_authorization_scheme_param

from otpcore.domain.errors import OTPAuthError
from otpcore.domain.records import Claims
from otpcore_fastapi.config import OTPAuthConfig
from otpcore_fastapi.http_errors import TokenMissing, http_exception
from otpcore_fastapi.store_source import current_request

__all__ = [
    "Bearer",
    "bearer_scheme",
    "get_current_user_dependency",
    "get_custom_claims_dependency",
    "get_principal_dependency",
    "get_verified_user_dependency",
]

#: The ``Authorization: Bearer`` scheme; shown in OpenAPI. Missing credentials are answered
#: by our own 401 (with ``WWW-Authenticate``), hence ``auto_error=False``.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="OTPBearer",
    description="The access token from `POST /verify-otp` or `POST /refresh`.",
)

Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


def _bearer_token(request: Request) -> str:
    """The token of an ``Authorization: Bearer`` header, read as :data:`bearer_scheme` reads it.

    The same parse as ``HTTPBearer.__call__`` (FastAPI's own helper, the same refusals),
    without awaiting the scheme and building its ``HTTPAuthorizationCredentials`` model on
    every protected request.

    Raises:
        HTTPException: 401 with ``WWW-Authenticate: Bearer`` when there is no bearer token.
    """
    authorization = request.headers.get("Authorization")
    scheme, credentials = get_authorization_scheme_param(authorization)
    if not (authorization and scheme and credentials) or scheme.lower() != "bearer":
        raise http_exception(TokenMissing())
    return credentials


class _BearerDependency(SecurityBase):
    """A dependency that is itself the bearer security scheme.

    FastAPI documents any ``SecurityBase`` dependency in OpenAPI, so the dependency reads
    the header itself (as :data:`bearer_scheme` would) instead of declaring the scheme as a
    sub-dependency: one dependency less to solve on every protected request.
    """

    def __init__(self, config: OTPAuthConfig) -> None:
        self.model = bearer_scheme.model
        self.scheme_name = bearer_scheme.scheme_name
        self._config = config

    async def _claims(self, request: Request) -> Claims:
        token = _bearer_token(request)
        # A stale mirror is refreshed through get_otp_db, with this request's app overrides.
        marker = current_request.set(request)
        try:
            return await self._config.auth.authenticate_claims(token)
        except OTPAuthError as exc:
            raise http_exception(exc) from None
        finally:
            current_request.reset(marker)


def _user_dependency(
    get_otp_db: Callable[..., Any], config: OTPAuthConfig, *, verified: bool
) -> Callable[..., Awaitable[Any]]:
    config.record_store_dependency(get_otp_db, replace=False)

    class CurrentUser(_BearerDependency):
        async def __call__(self, request: Request, db: Annotated[Any, Depends(get_otp_db)]) -> Any:
            token = _bearer_token(request)
            try:
                principal = await self._config.auth.with_store(db).authenticate(
                    token, require_verified=verified
                )
            except OTPAuthError as exc:
                raise http_exception(exc) from None
            return principal.user

    return CurrentUser(config)


def get_current_user_dependency(
    get_otp_db: Callable[..., Any], config: OTPAuthConfig
) -> Callable[..., Awaitable[Any]]:
    """A dependency returning the user of a valid, unrevoked bearer access token.

    Args:
        get_otp_db: The application's store dependency (the one given to the router).
        config: The configuration.

    Returns:
        The dependency; it answers 401 for a missing, invalid, expired or revoked token.
    """
    return _user_dependency(get_otp_db, config, verified=False)


def get_verified_user_dependency(
    get_otp_db: Callable[..., Any], config: OTPAuthConfig
) -> Callable[..., Awaitable[Any]]:
    """Like :func:`get_current_user_dependency`, and 403 unless the user is verified."""
    return _user_dependency(get_otp_db, config, verified=True)


class _Principal(_BearerDependency):
    # FastAPI calls the check itself: no wrapper coroutine per request.
    __call__ = _BearerDependency._claims


class _CustomClaims(_BearerDependency):
    async def __call__(self, request: Request) -> dict[str, Any]:
        return dict((await self._claims(request)).extra)


def get_principal_dependency(config: OTPAuthConfig) -> Callable[..., Awaitable[Claims]]:
    """A dependency returning the verified :class:`~otpcore.tokens.Claims` of the access token.

    No database round-trip: revocation is checked against this worker's mirror, refreshed
    at most every ``config.revocation_mirror_interval``. The mirror reads the store through
    ``config.revocation_source`` when set, else through the ``get_otp_db`` recorded by
    :func:`~otpcore_fastapi.get_auth_router` (solved for the current request, so the app's
    ``dependency_overrides`` apply).
    """
    return _Principal(config)


def get_custom_claims_dependency(
    config: OTPAuthConfig,
) -> Callable[..., Awaitable[dict[str, Any]]]:
    """A dependency returning only the custom claims of the access token.

    Every reserved claim (``sub``, ``exp``, ``sid``, ``iss``, …) is excluded. Revocation is
    enforced as for :func:`get_principal_dependency`, with no database round-trip.
    """
    return _CustomClaims(config)
