"""The magic link's endpoints: a page that spends nothing, its button, and a JSON redeem.

Mail scanners fetch every link in a message before its reader does, so opening the link
(``GET /magic?t=…``) only shows a confirmation page: no store access, no state change. The
page's button posts the token back (``POST /magic``), under the same Origin check as a
cookie refresh, and logs in exactly like verify-otp (the refresh cookie, the device cookie)
before a 303 to ``magic_link_redirect``. Single-page and mobile apps take the token from
their own page and call ``POST /magic-link`` with JSON instead, answered like verify-otp.

The page and its button need cookies (a redirect cannot carry the tokens), so in ``body``
delivery mode they answer 404 and the app uses ``POST /magic-link``.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime.

import html
from collections.abc import Callable
from string import Template
from typing import Annotated, Any, Final
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from otpcore.domain import errors as core
from otpcore.domain.errors import OTPAuthError
from otpcore.domain.links import MAX_LINK_LENGTH, parse_link
from otpcore.service import Login
from otpcore_fastapi.config import OTPAuthConfig
from otpcore_fastapi.http_errors import CSRFRefused, openapi_responses, spec_for
from otpcore_fastapi.schemas import MagicLinkRedeem, TokenResponse
from otpcore_fastapi.transport import client_address

__all__ = ["PAGE_HEADERS", "add_magic_link_routes", "finish_login"]

#: Sent with the page and with every answer to its button. ``no-referrer``: the token in the
#: page's URL never leaves in a ``Referer``; ``no-store``: no cache keeps the page (or the
#: token in it); the CSP lets the page load nothing and post only to its own origin, and be
#: framed by no one (a framed button could be clicked by a trick).
PAGE_HEADERS: Final = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex",
}

_PAGE: Final = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex">
<title>$title</title>
<style>
  :root { color-scheme: light dark; font-family: system-ui, sans-serif; }
  body { max-width: 30rem; margin: 3rem auto; padding: 0 1rem; line-height: 1.5; }
  h1 { font-size: 1.5rem; }
  button { font: inherit; font-weight: 600; padding: 0.75rem 1.5rem; border: 0;
    border-radius: 6px; background: #1a56db; color: #fff; cursor: pointer; }
  button:focus-visible { outline: 3px solid #f59e0b; outline-offset: 2px; }
  .hint { font-size: 0.9rem; opacity: 0.85; }
</style>
</head>
<body>
<main>
<h1>$title</h1>
$body
</main>
</body>
</html>
""")

_CONFIRM: Final = Template("""<p>You opened a sign-in link. Press the button to sign in on this
device.</p>
<form method="post" action="$action">
<input type="hidden" name="t" value="$token">
<button type="submit">Sign in</button>
</form>
<p class="hint">Did not ask to sign in? Close this page: nothing happens until the button is
pressed.</p>""")

_REFUSED: Final = Template("""<p role="alert">$message</p>
<p class="hint">Ask for a new code where you signed in, and use the newest e-mail.</p>""")

_FORM_OPENAPI: Final = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {"t": {"type": "string", "maxLength": MAX_LINK_LENGTH}},
                    "required": ["t"],
                }
            }
        },
    }
}
_HTML_ONLY: Final[dict[int | str, dict[str, Any]]] = {
    200: {"content": {"text/html": {}}, "description": "The confirmation page."},
    400: {"content": {"text/html": {}}, "description": "The link is malformed."},
    404: {"description": "`body` delivery mode: use `POST /magic-link`."},
}


def _page(title: str, body: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return HTMLResponse(
        _PAGE.substitute(title=html.escape(title), body=body),
        status_code=status,
        headers={**PAGE_HEADERS, **(headers or {})},
    )


def _refused(error: OTPAuthError) -> Response:
    spec = spec_for(type(error))
    headers = {} if error.retry_after is None else {"Retry-After": str(error.retry_after)}
    body = _REFUSED.substitute(message=html.escape(error.message))
    return _page("This sign-in link cannot be used", body, spec.status, headers)


def _not_found() -> Response:
    return Response(b'{"detail":"Not Found"}', status_code=404, media_type="application/json")


def _form_token(raw: bytes) -> str | None:
    # The standard library's application/x-www-form-urlencoded parser, at most two fields.
    try:
        fields = parse_qs(raw.decode("ascii"), max_num_fields=2, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return None
    values = fields.get("t", [])
    return values[0] if len(values) == 1 else None


def finish_login(
    config: OTPAuthConfig, login: Login[Any], request: Request, response: Response
) -> Any:
    """How a login answers (verify-otp and the magic link): the tokens (and the refresh
    cookie), the challenge cookie cleared, the device cookie."""
    delivered = config.transport.deliver(login, request, response)
    config.challenge_cookie.clear(request, response)
    if login.device is not None:
        config.device_cookie.set(request, response, login.device)
    return delivered


def add_magic_link_routes(
    router: APIRouter, get_otp_db: Callable[..., Any], config: OTPAuthConfig
) -> None:
    """Add ``GET /magic`` (the page), ``POST /magic`` (its button) and ``POST /magic-link``
    (JSON) to the auth router. Documented in OpenAPI when ``magic_link_url`` is set."""
    Db = Annotated[Any, Depends(get_otp_db)]
    documented = config.magic_link_url is not None

    @router.get(
        "/magic",
        response_class=HTMLResponse,
        summary="Magic link: confirmation page",
        description="What the link in the e-mail opens. Shows a button and changes nothing "
        "(mail scanners fetch links before their reader does). `Referrer-Policy: "
        "no-referrer`, `Cache-Control: no-store`.",
        responses=_HTML_ONLY,
        include_in_schema=documented,
    )
    async def magic_page(request: Request, t: str = "") -> Response:
        if not config.transport.in_cookie:
            return _not_found()
        if parse_link(t) is None:
            return _refused(core.LinkInvalid())
        action = request.url.path.rsplit("/", 1)[-1]  # relative: right under any prefix
        body = _CONFIRM.substitute(action=html.escape(action), token=html.escape(t))
        return _page("Sign in", body, 200)

    @router.post(
        "/magic",
        response_class=HTMLResponse,
        status_code=303,
        summary="Magic link: log in from the page",
        description="The page's button. Same-site requests only (`Sec-Fetch-Site`, else "
        "`Origin`, as for a cookie refresh). Logs in like verify-otp (the refresh cookie, "
        "the device cookie) and answers 303 to `magic_link_redirect`; a refusal is an HTML "
        "page with the status of the error table (`link_invalid` 400, `otp_expired` 401, "
        "`csrf_refused` 403, `otp_locked` 429).",
        responses={
            303: {"description": "Logged in; `Location` is `magic_link_redirect`."},
            400: {"content": {"text/html": {}}, "description": "`link_invalid`."},
            401: {"content": {"text/html": {}}, "description": "`otp_expired`."},
            403: {"content": {"text/html": {}}, "description": "`csrf_refused`."},
            404: {"description": "`body` delivery mode: use `POST /magic-link`."},
            429: {"content": {"text/html": {}}, "description": "`otp_locked`, `busy`."},
        },
        openapi_extra=_FORM_OPENAPI,
        include_in_schema=documented,
    )
    async def magic_confirm(request: Request, db: Db) -> Response:
        if not config.transport.in_cookie:
            return _not_found()
        try:
            config.transport.check_same_site(request)
            token = _form_token(await request.body())
            if token is None:
                raise core.LinkInvalid()
            login = await config.auth.with_store(db).redeem_link(
                token,
                ip=client_address(request),
                user_agent=request.headers.get("user-agent"),
                device=config.device_cookie.read(request),
            )
        except (OTPAuthError, CSRFRefused) as refused:
            return _refused(refused)
        response = RedirectResponse(config.magic_link_redirect, status_code=303)
        response.headers.update(PAGE_HEADERS)
        finish_login(config, login, request, response)
        return response

    @router.post(
        "/magic-link",
        response_model=TokenResponse,
        response_model_exclude_none=True,
        summary="Magic link: redeem (JSON)",
        description="For single-page and mobile apps that open the link in their own page: "
        "the link's `t` logs in like verify-otp (same answer and cookies). The link spends "
        "the same code as verify-otp, once; a wrong link is not counted as a guess.",
        responses=openapi_responses(
            core.LinkInvalid,
            core.CodeExpired,
            core.AccountLocked,
            core.ContentionError,
            core.StorageError,
            body=True,
        ),
        include_in_schema=documented,
    )
    async def magic_link(
        body: MagicLinkRedeem, request: Request, response: Response, db: Db
    ) -> TokenResponse:
        login = await config.auth.with_store(db).redeem_link(
            body.token,
            ip=client_address(request),
            user_agent=request.headers.get("user-agent"),
            device=config.device_cookie.read(request),
        )
        delivered: TokenResponse = finish_login(config, login, request, response)
        return delivered
