"""Issue 10 over HTTP: the session endpoints, the grace window, and the session settings.

``GET /auth/sessions``, ``DELETE /auth/sessions/{id}`` and ``POST /auth/logout-others``,
each with the bearer access token; what an ended session's tokens get afterwards on every
kind of route; the refresh grace window; and the settings that shape sessions.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import jwt
import pytest

from otpcore.domain.errors import ConfigurationError
from otpcore_fastapi import install_error_handlers
from tests.http.conftest import EMAIL, Harness, HarnessFactory
from tests.http.test_flow import COOKIE, assert_refused, bearer, login, present

OTHER = "bob@example.com"


async def device(h: Harness, user_agent: str, email: str = EMAIL) -> tuple[str, str]:
    """Log in from a client announcing ``user_agent``; its access and refresh token.

    The clock moves past the resend cooldown first, so each login is its own code.
    """
    h.clock.advance(timedelta(seconds=h.config.otp_rate_limit_seconds + 1))
    h.client.headers["User-Agent"] = user_agent
    try:
        return await login(h, email)
    finally:
        del h.client.headers["User-Agent"]


async def sessions(h: Harness, access: str) -> list[dict[str, Any]]:
    response = await h.client.get(f"{h.prefix}/sessions", headers=bearer(access))
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()
    return listed


def sid_of(token: str) -> str:
    sid: str = jwt.decode(token, options={"verify_signature": False})["sid"]
    return sid


async def test_sessions_lists_each_login_with_its_device(
    make_harness: HarnessFactory, delivery: str
) -> None:
    h = await make_harness(refresh_token_delivery=delivery)
    laptop, _ = await device(h, "Laptop/1.0")
    h.clock.advance(timedelta(minutes=5))
    phone, _ = await device(h, "Phone/2.0")

    listed = await sessions(h, laptop)
    assert [item["user_agent"] for item in listed] == ["Phone/2.0", "Laptop/1.0"]  # newest first
    assert [item["current"] for item in listed] == [False, True]
    assert [item["id"] for item in listed] == [sid_of(phone), sid_of(laptop)]
    for item in listed:
        assert set(item) == {"id", "current", "created_at", "last_used_at", "user_agent", "ip"}
        assert item["ip"] == "127.0.0.1"  # httpx's ASGI transport's client address
        assert datetime.fromisoformat(item["created_at"]) == datetime.fromisoformat(
            item["last_used_at"]
        )
    # The other device sees the same sessions with its own marked current.
    assert [item["current"] for item in await sessions(h, phone)] == [True, False]


async def test_refresh_moves_last_used_at_and_an_access_does_not(
    make_harness: HarnessFactory,
) -> None:
    h = await make_harness(refresh_token_delivery="body")
    access, refresh = await device(h, "Laptop/1.0")
    (before,) = await sessions(h, access)
    h.clock.advance(timedelta(minutes=10))
    assert (await h.client.get("/me", headers=bearer(access))).status_code == 200
    assert await sessions(h, access) == [before]
    rotated = await present(h, "/refresh", refresh)
    assert rotated.status_code == 200
    (after,) = await sessions(h, rotated.json()["access_token"])
    assert after["created_at"] == before["created_at"]
    assert datetime.fromisoformat(after["last_used_at"]) - datetime.fromisoformat(
        before["last_used_at"]
    ) == timedelta(minutes=10)


async def test_sessions_of_other_users_are_not_listed(make_harness: HarnessFactory) -> None:
    h = await make_harness()
    alice, _ = await device(h, "Laptop/1.0")
    await device(h, "Intruder/1.0", email=OTHER)
    assert [item["user_agent"] for item in await sessions(h, alice)] == ["Laptop/1.0"]


async def test_deleting_another_session_ends_it_on_every_route(
    make_harness: HarnessFactory, delivery: str
) -> None:
    h = await make_harness(refresh_token_delivery=delivery)
    laptop, laptop_refresh = await device(h, "Laptop/1.0")
    stolen, stolen_refresh = await device(h, "Stolen/1.0")
    # Warm this worker's mirror, so the claims-only check below runs from it.
    assert (await h.client.get("/claims", headers=bearer(stolen))).status_code == 200

    response = await h.client.delete(
        f"{h.prefix}/sessions/{sid_of(stolen)}", headers=bearer(laptop)
    )
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert "set-cookie" not in response.headers  # not the caller's own session

    # The ended session: its refresh token refused; its access token at once on
    # current-user routes, and on claims-only routes once the mirror interval has passed.
    assert_refused(await present(h, "/refresh", stolen_refresh), 401, "token_revoked")
    assert (await h.client.get("/me", headers=bearer(stolen))).status_code == 401
    h.clock.advance(h.config.revocation_mirror_interval)
    for path in ("/claims", "/principal"):
        assert (await h.client.get(path, headers=bearer(stolen))).status_code == 401
    assert_refused(
        await h.client.get(f"{h.prefix}/sessions", headers=bearer(stolen)), 401, "token_revoked"
    )
    # The caller's own session is untouched.
    assert [item["user_agent"] for item in await sessions(h, laptop)] == ["Laptop/1.0"]
    assert (await h.client.get("/claims", headers=bearer(laptop))).status_code == 200
    assert (await present(h, "/refresh", laptop_refresh)).status_code == 200


async def test_deleting_an_unknown_or_foreign_session_is_404(
    make_harness: HarnessFactory,
) -> None:
    h = await make_harness(refresh_token_delivery="body")
    alice, _ = await device(h, "Laptop/1.0")
    bob, bob_refresh = await device(h, "Bob/1.0", email=OTHER)
    for sid in (sid_of(bob), "no-such-session-000000"):
        response = await h.client.delete(f"{h.prefix}/sessions/{sid}", headers=bearer(alice))
        assert_refused(response, 404, "session_not_found")
        assert response.json()["detail"] == "Session not found."
    # Bob's session lives on.
    assert (await h.client.get("/me", headers=bearer(bob))).status_code == 200
    assert (await present(h, "/refresh", bob_refresh)).status_code == 200
    # An ended session is not found either, the second time.
    own = sid_of(alice)
    assert (
        await h.client.delete(f"{h.prefix}/sessions/{own}", headers=bearer(bob))
    ).status_code == 404
    # And an id no session can have is FastAPI's 422, before any store access.
    for junk in ("a" * 129, "has%20space", "semi;colon"):
        response = await h.client.delete(f"{h.prefix}/sessions/{junk}", headers=bearer(alice))
        assert response.status_code == 422, (junk, response.text)


async def test_deleting_the_current_session_clears_the_refresh_cookie(
    make_harness: HarnessFactory, delivery: str
) -> None:
    h = await make_harness(refresh_token_delivery=delivery)
    access, refresh = await device(h, "Laptop/1.0")
    response = await h.client.delete(
        f"{h.prefix}/sessions/{sid_of(access)}", headers=bearer(access)
    )
    assert response.status_code == 204, response.text
    cleared = response.headers.get_list("set-cookie")
    if delivery == "body":
        assert cleared == []
    else:
        (cookie,) = cleared
        # Expires the cookie where it was set: the router's prefix, not /auth/sessions.
        assert cookie.startswith(f'{COOKIE}=""; ')
        assert "Max-Age=0" in cookie
        assert "Path=/auth;" in cookie or cookie.endswith("Path=/auth")
        assert "HttpOnly" in cookie
    assert_refused(await present(h, "/refresh", refresh), 401, "token_revoked")
    assert (await h.client.get("/me", headers=bearer(access))).status_code == 401


async def test_logout_others_keeps_only_the_current_session(
    make_harness: HarnessFactory, delivery: str
) -> None:
    h = await make_harness(refresh_token_delivery=delivery)
    laptop, laptop_refresh = await device(h, "Laptop/1.0")
    others = [await device(h, f"Other/{n}") for n in range(2)]
    bob, _ = await device(h, "Bob/1.0", email=OTHER)
    for access, _ in others:
        assert (await h.client.get("/claims", headers=bearer(access))).status_code == 200

    response = await h.client.post(f"{h.prefix}/logout-others", headers=bearer(laptop))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "message": "Successfully logged out of all other sessions",
        "ended": 2,
    }
    assert "set-cookie" not in response.headers

    for access, refresh in others:
        assert_refused(await present(h, "/refresh", refresh), 401, "token_revoked")
        assert (await h.client.get("/me", headers=bearer(access))).status_code == 401
    h.clock.advance(h.config.revocation_mirror_interval)
    for access, _ in others:
        assert (await h.client.get("/claims", headers=bearer(access))).status_code == 401
    assert [item["user_agent"] for item in await sessions(h, laptop)] == ["Laptop/1.0"]
    assert (await present(h, "/refresh", laptop_refresh)).status_code == 200
    # Another user's sessions are not touched.
    assert (await h.client.get("/me", headers=bearer(bob))).status_code == 200
    again = await h.client.post(f"{h.prefix}/logout-others", headers=bearer(laptop))
    assert again.json()["ended"] == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/sessions"), ("DELETE", "/sessions/abc"), ("POST", "/logout-others")],
)
async def test_session_endpoints_need_a_valid_access_token(
    make_harness: HarnessFactory, method: str, path: str
) -> None:
    h = await make_harness(refresh_token_delivery="body")
    access, refresh = await device(h, "Laptop/1.0")
    missing = await h.client.request(method, f"{h.prefix}{path}")
    assert_refused(missing, 401, "token_missing")
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    for token in ("garbage", refresh):  # a refresh token is no access token
        refused = await h.client.request(method, f"{h.prefix}{path}", headers=bearer(token))
        assert_refused(refused, 401, "token_invalid")
    h.clock.advance(h.config.access_token_lifetime + h.config.clock_skew_leeway)
    expired = await h.client.request(method, f"{h.prefix}{path}", headers=bearer(access))
    assert_refused(expired, 401, "token_expired")


async def test_session_endpoints_are_documented_in_openapi(make_harness: HarnessFactory) -> None:
    h = await make_harness()
    paths = (await h.client.get("/openapi.json")).json()["paths"]
    listing = paths["/auth/sessions"]["get"]
    assert listing["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"
    assert {"401", "503"} <= set(listing["responses"])
    deleting = paths["/auth/sessions/{id}"]["delete"]
    assert {"204", "401", "404", "422", "503"} <= set(deleting["responses"])
    assert "session_not_found" in deleting["responses"]["404"]["description"]
    assert deleting["parameters"][0]["name"] == "id"
    others = paths["/auth/logout-others"]["post"]
    assert {"200", "401", "503"} <= set(others["responses"])
    for operation in (listing, deleting, others):
        assert operation["security"] == [{"OTPBearer": []}]


# -- the refresh grace window ------------------------------------------------------------


async def test_concurrent_refreshes_of_one_token_all_succeed_and_the_session_lives_on(
    make_harness: HarnessFactory,
) -> None:
    """Two tabs (here five) refreshing with the same token at once: none is logged out."""
    h = await make_harness(refresh_token_delivery="body")
    install_error_handlers(h.app)
    _, refresh = await device(h, "Laptop/1.0")
    answers = await asyncio.gather(
        *(h.client.post(f"{h.prefix}/refresh", json={"refresh_token": refresh}) for _ in range(5))
    )
    assert [answer.status_code for answer in answers] == [200] * 5, [a.text for a in answers]
    successors = {answer.json()["refresh_token"] for answer in answers}
    # Every answer names the same successor (same session, generation and jti).
    claims = [jwt.decode(token, options={"verify_signature": False}) for token in successors]
    assert len({(c["sid"], c["gen"], c["jti"]) for c in claims}) == 1
    assert claims[0]["gen"] == 1
    successor = successors.pop()
    h.clock.advance(timedelta(seconds=5))
    assert (await present(h, "/refresh", successor)).status_code == 200


async def test_the_same_token_after_the_grace_window_revokes_the_session(
    make_harness: HarnessFactory,
) -> None:
    h = await make_harness(refresh_token_delivery="body")
    access, refresh = await device(h, "Laptop/1.0")
    first = await present(h, "/refresh", refresh)
    assert first.status_code == 200
    h.clock.advance(timedelta(seconds=12))
    assert_refused(await present(h, "/refresh", refresh), 401, "refresh_reused")
    assert_refused(
        await present(h, "/refresh", first.json()["refresh_token"]), 401, "token_revoked"
    )
    assert (await h.client.get("/me", headers=bearer(access))).status_code == 401


async def test_refresh_grace_period_zero_is_strict(make_harness: HarnessFactory) -> None:
    h = await make_harness(refresh_token_delivery="body", refresh_grace_period=timedelta(0))
    _, refresh = await device(h, "Laptop/1.0")
    assert (await present(h, "/refresh", refresh)).status_code == 200
    assert_refused(await present(h, "/refresh", refresh), 401, "refresh_reused")


# -- settings -------------------------------------------------------------------------------


async def test_session_settings_reach_the_policy(make_harness: HarnessFactory) -> None:
    h = await make_harness(
        session_lifetime=timedelta(days=14),
        session_idle_timeout=timedelta(days=2),
        refresh_grace_period=timedelta(seconds=3),
        clock_skew_leeway=timedelta(seconds=5),
        client_id="web-app",
    )
    policy = h.config.policy
    assert policy.session_lifetime == timedelta(days=14)
    assert policy.idle_timeout == timedelta(days=2)
    assert policy.refresh_grace == timedelta(seconds=3)
    assert policy.leeway == timedelta(seconds=5)
    assert policy.client_id == "web-app"


async def test_session_setting_defaults(make_harness: HarnessFactory) -> None:
    h = await make_harness()
    policy = h.config.policy
    assert policy.session_lifetime == timedelta(days=30)
    assert policy.idle_timeout is None
    assert policy.session_idle_timeout == h.config.refresh_token_lifetime
    assert policy.refresh_grace == timedelta(seconds=10)
    assert policy.leeway == timedelta(seconds=30)
    assert policy.client_id is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("session_lifetime", timedelta(0)),
        ("session_lifetime", 30),
        ("session_idle_timeout", timedelta(seconds=-1)),
        ("session_idle_timeout", "7d"),
        ("refresh_grace_period", timedelta(seconds=-1)),
        ("refresh_grace_period", timedelta(minutes=6)),
        ("clock_skew_leeway", timedelta(seconds=-1)),
        ("clock_skew_leeway", timedelta(minutes=6)),
        ("clock_skew_leeway", 30),
        ("client_id", ""),
        ("client_id", 42),
    ],
)
async def test_session_settings_are_validated_on_assignment(
    make_harness: HarnessFactory, name: str, value: object
) -> None:
    h = await make_harness()
    before = h.config.policy
    with pytest.raises(ConfigurationError):
        setattr(h.config, name, value)
    assert h.config.policy is before  # the previous settings stay in force


async def test_client_id_is_written_into_access_tokens_only(make_harness: HarnessFactory) -> None:
    h = await make_harness(refresh_token_delivery="body", client_id="web-app")
    access, refresh = await device(h, "Laptop/1.0")
    assert jwt.decode(access, options={"verify_signature": False})["client_id"] == "web-app"
    assert "client_id" not in jwt.decode(refresh, options={"verify_signature": False})
    # A reserved claim: not among the custom claims.
    assert (await h.client.get("/claims", headers=bearer(access))).json() == {}
    principal = await h.client.get("/principal", headers=bearer(access))
    assert principal.json()["extra"] == {}
    # Assigning it later applies to tokens issued afterwards.
    h.config.client_id = None
    later, _ = await device(h, "Laptop/1.0")
    assert "client_id" not in jwt.decode(later, options={"verify_signature": False})


async def test_clock_skew_leeway_accepts_tokens_from_a_fast_host(
    make_harness: HarnessFactory,
) -> None:
    """A host whose clock is 2 s fast issues tokens the others take (issue 10)."""
    for leeway, status in ((timedelta(seconds=30), 200), (timedelta(0), 401)):
        h = await make_harness(clock_skew_leeway=leeway)
        access, _ = await device(h, "Laptop/1.0")
        claims = jwt.decode(access, options={"verify_signature": False})
        fast = h.config.auth.codec.issue(
            kind="access",
            subject=claims["sub"],
            sid=claims["sid"],
            jti="from-the-fast-host",
            auth_time=claims["auth_time"],
            now=h.clock() + timedelta(seconds=2),
        )
        assert (await h.client.get("/me", headers=bearer(fast))).status_code == status
