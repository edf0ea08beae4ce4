"""How the refresh token travels: HTTP-only cookie, JSON body, or both; and the CSRF check.

Browsers attach cookies to cross-site requests, so a refresh token that came from the cookie
is only honoured for requests from the app's own site: ``Sec-Fetch-Site`` when the browser
sends it, else ``Origin`` against the request's own origin and ``trusted_origins``. Tokens
from the body cannot be attached by another site and need no such check.

Also here: the binding cookies, which carry request-otp's ``challenge_id`` and a logged-in
client's device allowance between the auth endpoints in a browser, and the client address
the send and guess limits are keyed by.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from fastapi import Request, Response

from otpcore.service import Login
from otpcore_fastapi.http_errors import CSRFRefused
from otpcore_fastapi.schemas import OPAQUE_VALUE_PATTERN, TokenResponse

if TYPE_CHECKING:  # the config builds its transport: a runtime import would be circular
    from otpcore_fastapi.config import OTPAuthConfig

__all__ = ["BindingCookie", "RefreshTransport", "client_address"]

# Fetch Metadata (W3C): "none" is a user-initiated navigation, e.g. a bookmark.
_SAME_SITE_FETCH: Final = frozenset({"same-origin", "same-site", "none"})
_DEFAULT_PORTS: Final = {"http": ":80", "https": ":443"}
_OPAQUE: Final = re.compile(OPAQUE_VALUE_PATTERN)


def client_address(request: Request) -> str | None:
    """The client's address as the ASGI server reports it (``scope["client"]``).

    Behind a reverse proxy this is the proxy, unless the server is told to trust its
    forwarding headers (uvicorn ``--proxy-headers --forwarded-allow-ips=<proxy>``): the
    binding never reads ``X-Forwarded-For`` itself, which any client can send.
    """
    client = request.client
    return client.host if client is not None else None


def _prefix_path(request: Request, configured: str | None, segments: int = 1) -> str:
    if configured is not None:
        return configured
    # The router's endpoints are one segment under its prefix: "/auth/verify-otp" ->
    # "/auth", so a cookie travels only to the auth endpoints. An endpoint with a path
    # parameter is deeper ("/auth/sessions/{id}": two segments).
    return request.url.path.rsplit("/", segments)[0] or "/"


def _origin(scheme: str, host: str) -> str:
    scheme, host = scheme.lower(), host.lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default is not None and host.endswith(default):
        host = host[: -len(default)]
    return f"{scheme}://{host}"


def _normalized(origin: str) -> str:
    scheme, sep, host = origin.partition("://")
    return _origin(scheme, host) if sep else origin.lower()


class RefreshTransport:
    """Reads, writes and clears the refresh token per ``refresh_token_delivery``.

    Built by :class:`~otpcore_fastapi.OTPAuthConfig` from its settings (and rebuilt when
    one is assigned); read per request as ``config.transport``.
    """

    __slots__ = (
        "_domain",
        "_max_age",
        "_name",
        "_path",
        "_samesite",
        "_secure",
        "_trusted",
        "in_body",
        "in_cookie",
    )

    def __init__(self, config: OTPAuthConfig) -> None:
        mode = config.refresh_token_delivery
        self.in_cookie = mode in ("cookie", "both")
        self.in_body = mode in ("body", "both")
        self._name = config.cookie_name
        self._path = config.cookie_path
        self._domain = config.cookie_domain
        self._secure = config.cookie_secure
        self._samesite = config.cookie_samesite
        self._max_age = int(config.refresh_token_lifetime.total_seconds())
        self._trusted = frozenset(_normalized(origin) for origin in config.trusted_origins)

    def read(self, request: Request, body_token: str | None) -> tuple[str | None, bool]:
        """The presented refresh token and whether it came from the cookie (which wins)."""
        if self.in_cookie:
            cookie = request.cookies.get(self._name)
            if cookie:
                return cookie, True
        if self.in_body and body_token:
            return body_token, False
        return None, False

    def check_same_site(self, request: Request) -> None:
        """Refuse a cross-site request.

        Raises:
            CSRFRefused: ``Origin`` is not trusted, and ``Sec-Fetch-Site`` is cross-site (or,
                without it, ``Origin`` is not the request's own origin).
        """
        headers = request.headers
        origin = headers.get("origin")
        presented = _normalized(origin) if origin is not None else None
        if presented is not None and presented in self._trusted:
            # Checked first: a trusted origin on another site is exactly what browsers
            # label "cross-site", and they all send Sec-Fetch-Site now.
            return
        fetch_site = headers.get("sec-fetch-site")
        if fetch_site is not None:
            if fetch_site.lower() not in _SAME_SITE_FETCH:
                raise CSRFRefused()
            return
        if presented is None:
            return  # not a browser cross-origin request: browsers send Origin on POST
        host = headers.get("host")
        if host is None or presented != _origin(request.url.scheme, host):
            raise CSRFRefused()

    def _cookie_path(self, request: Request, segments: int = 1) -> str:
        return _prefix_path(request, self._path, segments)

    def deliver(self, login: Login[object], request: Request, response: Response) -> TokenResponse:
        """Set the cookie and/or build the body for a new token pair."""
        if self.in_cookie:
            response.set_cookie(
                self._name,
                login.refresh_token,
                max_age=self._max_age,
                path=self._cookie_path(request),
                domain=self._domain,
                secure=self._secure,
                httponly=True,
                samesite=self._samesite,
            )
        return TokenResponse(
            access_token=login.access_token,
            token_type=login.token_type,
            refresh_token=login.refresh_token if self.in_body else None,
            # Browsers keep the device allowance as a cookie; body-only clients keep it here.
            device=login.device if not self.in_cookie else None,
        )

    def clear(self, request: Request, response: Response, *, segments: int = 1) -> None:
        """Expire the cookie (same name, path and domain as set).

        Args:
            request: The request being answered.
            response: The response to expire the cookie on.
            segments: How many path segments the endpoint is below the router's prefix
                (``DELETE /auth/sessions/{id}``: 2), to derive the path the cookie was set on.
        """
        if self.in_cookie:
            response.delete_cookie(
                self._name,
                path=self._cookie_path(request, segments),
                domain=self._domain,
                secure=self._secure,
                httponly=True,
                samesite=self._samesite,
            )


class BindingCookie:
    """An HTTP-only cookie carrying an opaque value of the core's between auth endpoints.

    Two are built from the settings: the challenge cookie (request-otp's ``challenge_id``,
    read back by verify-otp and by a resend; lives as long as a code) and the device cookie
    (:attr:`~otpcore.service.Login.device`, the allowance a client that has logged in keeps
    for its address). Both are set only in the ``cookie`` and ``both`` delivery modes
    (browser clients); ``body``-mode clients send the values in the JSON bodies instead. Same
    path, domain, ``Secure`` and ``SameSite`` as the refresh cookie.
    """

    __slots__ = (
        "_domain",
        "_max_age",
        "_max_length",
        "_name",
        "_path",
        "_samesite",
        "_secure",
        "enabled",
    )

    def __init__(
        self, config: OTPAuthConfig, *, name: str, max_age: timedelta, max_length: int
    ) -> None:
        self.enabled = config.refresh_token_delivery in ("cookie", "both")
        self._name = name
        self._path = config.cookie_path
        self._domain = config.cookie_domain
        self._secure = config.cookie_secure
        self._samesite = config.cookie_samesite
        self._max_age = max(1, int(max_age.total_seconds()))
        self._max_length = max_length

    def set(self, request: Request, response: Response, value: str) -> None:
        """Hand the value to the browser (in cookie and both modes)."""
        if self.enabled:
            response.set_cookie(
                self._name,
                value,
                max_age=self._max_age,
                path=_prefix_path(request, self._path),
                domain=self._domain,
                secure=self._secure,
                httponly=True,
                samesite=self._samesite,
            )

    def read(self, request: Request) -> str | None:
        """The value the browser presented; ``None`` without one or for a malformed one."""
        if not self.enabled:
            return None
        value = request.cookies.get(self._name)
        if not value or len(value) > self._max_length or not _OPAQUE.fullmatch(value):
            return None
        return value

    def clear(self, request: Request, response: Response) -> None:
        """Expire the cookie, when the request presented it."""
        if self.enabled and self._name in request.cookies:
            response.delete_cookie(
                self._name,
                path=_prefix_path(request, self._path),
                domain=self._domain,
                secure=self._secure,
                httponly=True,
                samesite=self._samesite,
            )
