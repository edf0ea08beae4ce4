"""Every endpoint in every refresh-token delivery mode: login, rotation, reuse, logout."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.http.conftest import EMAIL, Harness, HarnessFactory

COOKIE = "refresh_token"


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


def refresh_token_of(h: Harness, response: httpx.Response) -> str:
    """The refresh token a verify/refresh response delivered, by cookie or body."""
    mode = h.config.refresh_token_delivery
    body = response.json()
    if mode == "cookie":
        assert "refresh_token" not in body
        token = response.cookies.get(COOKIE)
    else:
        token = body["refresh_token"]
        if mode == "both":
            assert response.cookies.get(COOKIE) == token
        else:
            assert COOKIE not in response.cookies
    assert isinstance(token, str)
    assert token
    return token


async def present(h: Harness, path: str, token: str) -> httpx.Response:
    """POST ``token`` to ``path`` the way the mode expects: cookie, or body."""
    h.client.cookies.clear()
    if h.config.refresh_token_delivery == "cookie":
        return await h.client.post(f"{h.prefix}{path}", headers={"Cookie": f"{COOKIE}={token}"})
    return await h.client.post(f"{h.prefix}{path}", json={"refresh_token": token})


async def login(h: Harness, email: str = EMAIL) -> tuple[str, str]:
    """Log in; the access and refresh token."""
    await h.request_code(email)
    response = await h.client.post(
        f"{h.prefix}/verify-otp", json={"email": email, "code": h.config.last_code(email)}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    return body["access_token"], refresh_token_of(h, response)


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    """``response`` is the table's refusal for ``code``."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert isinstance(body["detail"], str)


async def test_request_otp_answers_the_reference_message(
    make_harness: HarnessFactory, delivery: str
) -> None:
    h = await make_harness(refresh_token_delivery=delivery)
    response = await h.request_code()
    assert response.status_code == 200
    # Issue 8 adds the binding to the reference's shape; the message is unchanged.
    body = response.json()
    assert set(body) == {"message", "challenge_id"}
    assert body["message"] == "OTP code has been sent to your email"
    assert body["challenge_id"]
    assert [email for email, _ in h.config.outbox] == [EMAIL]


async def test_verify_returns_the_reference_shape(
    make_harness: HarnessFactory, delivery: str
) -> None:
    h = await make_harness(refresh_token_delivery=delivery)
    await h.request_code()
    response = await h.client.post(
        "/auth/verify-otp", json={"email": EMAIL, "code": h.config.last_code()}
    )
    assert response.status_code == 200
    expected = {"access_token", "token_type"} | (
        {"refresh_token"} if delivery != "cookie" else set()
    )
    # Issue 8: body-only clients also get their device allowance (browsers: a cookie).
    expected |= {"device"} if delivery == "body" else set()
    assert set(response.json()) == expected
    refresh_token_of(h, response)


async def test_the_access_token_opens_every_dependency(
    make_harness: HarnessFactory, delivery: str
) -> None:
    h = await make_harness(refresh_token_delivery=delivery)
    access, _ = await login(h)
    for path in ("/me", "/verified", "/claims", "/principal"):
        response = await h.client.get(path, headers=bearer(access))
        assert response.status_code == 200, (path, response.text)
    assert (await h.client.get("/me", headers=bearer(access))).json()["email"] == EMAIL


async def test_refresh_rotates_and_the_new_pair_works(
    make_harness: HarnessFactory, delivery: str
) -> None:
    h = await make_harness(refresh_token_delivery=delivery)
    _, first = await login(h)
    h.clock.advance(5)
    response = await present(h, "/refresh", first)
    assert response.status_code == 200, response.text
    second = refresh_token_of(h, response)
    assert second != first
    access = response.json()["access_token"]
    assert (await h.client.get("/me", headers=bearer(access))).status_code == 200
    third = refresh_token_of(h, await present(h, "/refresh", second))
    assert third not in (first, second)


async def test_refresh_reuse_revokes_the_session(
    make_harness: HarnessFactory, delivery: str
) -> None:
    h = await make_harness(refresh_token_delivery=delivery)
    access, first = await login(h)
    rotated = await present(h, "/refresh", first)
    second = refresh_token_of(h, rotated)
    new_access = rotated.json()["access_token"]

    # Issue 10: within the grace window the same token gets the same successor; after it,
    # presenting it again is reuse.
    h.clock.advance(h.config.refresh_grace_period + timedelta(seconds=1))
    reused = await present(h, "/refresh", first)
    assert_refused(reused, 401, "refresh_reused")
    assert reused.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'

    assert_refused(await present(h, "/refresh", second), 401, "token_revoked")
    for token in (access, new_access):
        response = await h.client.get("/me", headers=bearer(token))
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_logout_revokes_the_session_and_clears_the_cookie(
    make_harness: HarnessFactory, delivery: str
) -> None:
    h = await make_harness(refresh_token_delivery=delivery)
    access, refresh = await login(h)
    # Warm this worker's mirror so the claims-only check below runs from it.
    assert (await h.client.get("/claims", headers=bearer(access))).status_code == 200

    response = await present(h, "/logout", refresh)
    assert response.status_code == 200
    assert response.json() == {"message": "Successfully logged out"}
    cleared = response.headers.get("set-cookie")
    if delivery == "body":
        assert cleared is None
    else:
        assert cleared is not None
        assert cleared.startswith(f'{COOKIE}="";')
        assert "Max-Age=0" in cleared
        assert "Path=/auth" in cleared

    assert_refused(await present(h, "/refresh", refresh), 401, "token_revoked")
    assert (await h.client.get("/me", headers=bearer(access))).status_code == 401
    # Claims-only: honoured once the mirror interval has passed, with no further logout.
    h.clock.advance(h.config.revocation_mirror_interval)
    for path in ("/claims", "/principal"):
        response = await h.client.get(path, headers=bearer(access))
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_logout_answers_200_for_invalid_expired_or_missing_tokens(
    make_harness: HarnessFactory, delivery: str
) -> None:
    h = await make_harness(refresh_token_delivery=delivery)
    _, refresh = await login(h)
    assert (await present(h, "/logout", "not-a-token")).status_code == 200
    h.client.cookies.clear()
    assert (await h.client.post("/auth/logout")).status_code == 200

    h.clock.advance(h.config.refresh_token_lifetime + timedelta(seconds=1))
    response = await present(h, "/logout", refresh)
    assert response.status_code == 200
    assert response.json() == {"message": "Successfully logged out"}


async def test_logout_with_only_the_access_token_revokes_its_session(
    make_harness: HarnessFactory, delivery: str
) -> None:
    h = await make_harness(refresh_token_delivery=delivery)
    access, refresh = await login(h)
    h.client.cookies.clear()
    response = await h.client.post("/auth/logout", headers=bearer(access))
    assert response.status_code == 200
    assert (await h.client.get("/me", headers=bearer(access))).status_code == 401
    assert_refused(await present(h, "/refresh", refresh), 401, "token_revoked")


async def test_logout_all_revokes_every_session_of_the_user(
    make_harness: HarnessFactory, delivery: str
) -> None:
    h = await make_harness(refresh_token_delivery=delivery)
    phone_access, phone_refresh = await login(h)
    h.clock.advance(h.config.otp_rate_limit_seconds)
    laptop_access, laptop_refresh = await login(h)
    h.clock.advance(1)
    other_access, _ = await login(h, "bob@example.com")

    response = await h.client.post("/auth/logout-all", headers=bearer(laptop_access))
    assert response.status_code == 200
    assert response.json() == {"message": "Successfully logged out of all sessions"}

    for access in (phone_access, laptop_access):
        assert (await h.client.get("/me", headers=bearer(access))).status_code == 401
    for refresh in (phone_refresh, laptop_refresh):
        assert_refused(await present(h, "/refresh", refresh), 401, "token_revoked")
    h.clock.advance(h.config.revocation_mirror_interval)
    assert (await h.client.get("/claims", headers=bearer(phone_access))).status_code == 401
    # Another user's session is untouched.
    assert (await h.client.get("/me", headers=bearer(other_access))).status_code == 200
    assert (await h.client.get("/claims", headers=bearer(other_access))).status_code == 200


async def test_logout_all_needs_a_valid_access_token(make_harness: HarnessFactory) -> None:
    h = await make_harness()
    missing = await h.client.post("/auth/logout-all")
    assert_refused(missing, 401, "token_missing")
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    invalid = await h.client.post("/auth/logout-all", headers=bearer("nope"))
    assert_refused(invalid, 401, "token_invalid")
    assert invalid.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_refresh_without_a_token_is_401(make_harness: HarnessFactory, delivery: str) -> None:
    h = await make_harness(refresh_token_delivery=delivery)
    response = await h.client.post("/auth/refresh")
    assert_refused(response, 401, "token_missing")
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_the_cookie_wins_over_the_body_in_both_mode(make_harness: HarnessFactory) -> None:
    h = await make_harness(refresh_token_delivery="both")
    _, refresh = await login(h)
    h.client.cookies.clear()
    cookie_valid = await h.client.post(
        "/auth/refresh",
        headers={"Cookie": f"{COOKIE}={refresh}"},
        json={"refresh_token": "garbage"},
    )
    assert cookie_valid.status_code == 200
    fresh = cookie_valid.json()["refresh_token"]
    h.client.cookies.clear()
    cookie_garbage = await h.client.post(
        "/auth/refresh",
        headers={"Cookie": f"{COOKIE}=garbage"},
        json={"refresh_token": fresh},
    )
    assert_refused(cookie_garbage, 401, "token_invalid")


async def test_a_body_token_is_ignored_in_cookie_mode(make_harness: HarnessFactory) -> None:
    h = await make_harness(refresh_token_delivery="cookie")
    _, refresh = await login(h)
    h.client.cookies.clear()
    response = await h.client.post("/auth/refresh", json={"refresh_token": refresh})
    assert_refused(response, 401, "token_missing")


async def test_a_cookie_is_ignored_in_body_mode(make_harness: HarnessFactory) -> None:
    h = await make_harness(refresh_token_delivery="body")
    _, refresh = await login(h)
    response = await h.client.post("/auth/refresh", headers={"Cookie": f"{COOKIE}={refresh}"})
    assert_refused(response, 401, "token_missing")


@pytest.mark.parametrize(
    ("prefix", "expected_path"), [("/auth", "/auth"), ("/api/v1/auth", "/api/v1/auth"), ("", "/")]
)
async def test_the_cookie_path_is_the_router_prefix(
    make_harness: HarnessFactory, prefix: str, expected_path: str
) -> None:
    h = await make_harness(prefix=prefix)
    await h.request_code()
    response = await h.client.post(
        f"{prefix}/verify-otp", json={"email": EMAIL, "code": h.config.last_code()}
    )
    cookie = response.headers["set-cookie"]
    assert f"Path={expected_path};" in cookie or cookie.endswith(f"Path={expected_path}")
    # The client sends it back to the auth endpoints, so refresh works without a body.
    assert (await h.client.post(f"{prefix}/refresh")).status_code == 200


async def test_cookie_attributes_follow_the_settings(make_harness: HarnessFactory) -> None:
    h = await make_harness(
        cookie_secure=True,
        cookie_name="rt",
        cookie_path="/custom",
        cookie_domain="testserver.local",
        cookie_samesite="strict",
    )
    await h.request_code()
    response = await h.client.post(
        "/auth/verify-otp", json={"email": EMAIL, "code": h.config.last_code()}
    )
    attributes = [part.strip() for part in response.headers["set-cookie"].split(";")]
    assert attributes[0].startswith("rt=")
    assert "HttpOnly" in attributes
    assert "Secure" in attributes
    assert "Path=/custom" in attributes
    assert "Domain=testserver.local" in attributes
    assert "SameSite=strict" in attributes
    assert f"Max-Age={int(h.config.refresh_token_lifetime.total_seconds())}" in attributes


async def test_the_default_cookie_is_secure_httponly_lax(make_harness: HarnessFactory) -> None:
    h = await make_harness(cookie_secure=True)
    await h.request_code()
    response = await h.client.post(
        "/auth/verify-otp", json={"email": EMAIL, "code": h.config.last_code()}
    )
    attributes = [part.strip() for part in response.headers["set-cookie"].split(";")]
    assert {"HttpOnly", "Secure", "SameSite=lax", "Path=/auth"} <= set(attributes)
