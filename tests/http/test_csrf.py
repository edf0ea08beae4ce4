"""Cookie-authenticated /refresh and /logout refuse cross-site requests; body tokens do not."""

from __future__ import annotations

import httpx
import pytest

from tests.http.conftest import EMAIL, Harness, HarnessFactory

COOKIE = "refresh_token"


async def cookie_session(h: Harness) -> str:
    """Log in in cookie mode; the refresh token (also left in the client's jar)."""
    await h.request_code()
    response = await h.client.post(
        "/auth/verify-otp", json={"email": EMAIL, "code": h.config.last_code()}
    )
    token = response.cookies.get(COOKIE)
    assert token is not None
    return token


def refused(response: httpx.Response) -> bool:
    """Whether this is the CSRF refusal."""
    return response.status_code == 403 and response.json()["code"] == "csrf_refused"


@pytest.mark.parametrize("path", ["/refresh", "/logout"])
@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "http://testserver.evil.example"},
        {"Origin": "https://testserver"},  # another scheme is another origin
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://testserver"},
    ],
    ids=["foreign", "lookalike", "scheme", "null", "fetch-cross-site", "fetch-wins"],
)
async def test_cross_site_cookie_requests_are_refused(
    make_harness: HarnessFactory, path: str, headers: dict[str, str]
) -> None:
    h = await make_harness()
    token = await cookie_session(h)
    response = await h.client.post(f"/auth{path}", headers=headers)
    assert refused(response), response.text
    assert "set-cookie" not in response.headers
    # Nothing was revoked or rotated: the same token still refreshes from the same site.
    h.client.cookies.clear()
    ok = await h.client.post(
        "/auth/refresh", headers={"Cookie": f"{COOKIE}={token}", "Origin": "http://testserver"}
    )
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("path", ["/refresh", "/logout"])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "http://testserver"},
        {"Origin": "http://TESTSERVER:80"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "none"},
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"},
    ],
    ids=["no-headers", "origin", "origin-default-port", "same-origin", "same-site", "none", "both"],
)
async def test_same_site_cookie_requests_pass(
    make_harness: HarnessFactory, path: str, headers: dict[str, str]
) -> None:
    h = await make_harness()
    await cookie_session(h)
    response = await h.client.post(f"/auth{path}", headers=headers)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("fetch_site", [None, "cross-site", "same-site"])
async def test_trusted_origins_are_allowed(
    make_harness: HarnessFactory, fetch_site: str | None
) -> None:
    h = await make_harness(trusted_origins=("https://app.example.com",))
    await cookie_session(h)
    extra = {} if fetch_site is None else {"Sec-Fetch-Site": fetch_site}
    response = await h.client.post(
        "/auth/refresh", headers={"Origin": "https://APP.example.com:443", **extra}
    )
    assert response.status_code == 200
    other = await h.client.post(
        "/auth/refresh",
        headers={"Origin": "https://other.example.com", "Sec-Fetch-Site": "cross-site"},
    )
    assert refused(other)


@pytest.mark.parametrize("path", ["/refresh", "/logout"])
async def test_body_tokens_are_not_subject_to_the_check(
    make_harness: HarnessFactory, path: str
) -> None:
    h = await make_harness(refresh_token_delivery="body")
    await h.request_code()
    verified = await h.client.post(
        "/auth/verify-otp", json={"email": EMAIL, "code": h.config.last_code()}
    )
    token = verified.json()["refresh_token"]
    response = await h.client.post(
        f"/auth{path}",
        json={"refresh_token": token},
        headers={"Origin": "https://native-app.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == 200, response.text


async def test_body_token_in_both_mode_is_not_checked(make_harness: HarnessFactory) -> None:
    h = await make_harness(refresh_token_delivery="both")
    await h.request_code()
    verified = await h.client.post(
        "/auth/verify-otp", json={"email": EMAIL, "code": h.config.last_code()}
    )
    token = verified.json()["refresh_token"]
    h.client.cookies.clear()
    response = await h.client.post(
        "/auth/refresh", json={"refresh_token": token}, headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 200
