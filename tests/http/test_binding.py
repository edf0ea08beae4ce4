"""A code bound to whoever asked for it, over HTTP (issue 8, item 4).

request-otp hands the requester a binding: ``challenge_id`` in the body (always) and an
HTTP-only cookie (cookie and both modes). verify-otp takes it from the body or the cookie;
without one a guess is unbound. A login leaves a device allowance (cookie, or ``device`` in
body mode) that gives the client its own share of the mailbox budget.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from http.cookies import SimpleCookie

import httpx
import pytest

from tests.http.conftest import BASE_URL, EMAIL, Harness, HarnessFactory

WRONG = "000000"


@pytest.fixture
async def clients() -> AsyncIterator[list[httpx.AsyncClient]]:
    """Clients made by :func:`client_at`, closed afterwards."""
    made: list[httpx.AsyncClient] = []
    yield made
    for client in made:
        await client.aclose()


def client_at(h: Harness, ip: str, made: list[httpx.AsyncClient]) -> httpx.AsyncClient:
    """A client of ``h``'s app with its own cookie jar, whose requests come from ``ip``."""
    transport = httpx.ASGITransport(app=h.app, client=(ip, 40_000))
    client = httpx.AsyncClient(transport=transport, base_url=BASE_URL)
    made.append(client)
    return client


def cookies_set(response: httpx.Response) -> dict[str, dict[str, str | bool]]:
    """Every ``Set-Cookie`` of ``response``: name -> attributes (``value`` included)."""
    found: dict[str, dict[str, str | bool]] = {}
    for header in response.headers.get_list("set-cookie"):
        parsed: SimpleCookie = SimpleCookie()
        parsed.load(header)
        for name, morsel in parsed.items():
            attributes: dict[str, str | bool] = {
                key: value for key, value in morsel.items() if value
            }
            attributes["value"] = morsel.value
            found[name] = attributes
    return found


def wrong_code(right: str) -> str:
    """A code of the same length that is not ``right``."""
    return WRONG if right != WRONG else "111111"


async def test_request_otp_sets_the_challenge_cookie_in_cookie_and_both_modes(
    make_harness: HarnessFactory, delivery: str
) -> None:
    h = await make_harness(refresh_token_delivery=delivery, cookie_samesite="strict")
    response = await h.request_code()
    challenge_id = response.json()["challenge_id"]
    assert challenge_id
    cookies = cookies_set(response)
    if delivery == "body":
        assert cookies == {}
        return
    cookie = cookies["otp_challenge"]
    assert cookie["value"] == challenge_id
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "strict"
    assert cookie["path"] == "/auth"
    assert "secure" not in cookie  # the harness sets cookie_secure=False (plain http)
    assert int(str(cookie["max-age"])) == int(h.config.otp_expiry.total_seconds())


async def test_the_challenge_cookie_is_secure_by_default_and_follows_the_prefix(
    make_harness: HarnessFactory,
) -> None:
    h = await make_harness(cookie_secure=True, prefix="/api/v1/auth")
    response = await h.request_code()
    cookie = cookies_set(response)["otp_challenge"]
    assert cookie["secure"] is True
    assert cookie["path"] == "/api/v1/auth"


async def test_unknown_addresses_get_a_binding_too(make_harness: HarnessFactory) -> None:
    h = await make_harness(auto_create_user=False)
    response = await h.request_code("nobody@example.com")
    assert response.status_code == 200
    assert len(response.json()["challenge_id"]) >= 16
    assert "otp_challenge" in cookies_set(response)


async def test_the_cookie_binds_the_guess_and_is_cleared_by_the_login(
    make_harness: HarnessFactory,
) -> None:
    h = await make_harness(max_otp_attempts=2)
    assert (await h.request_code()).status_code == 200
    code = h.config.last_code()
    # The browser's bound budget: one wrong guess, then the right one.
    wrong = await h.client.post("/auth/verify-otp", json={"email": EMAIL, "code": WRONG})
    assert wrong.status_code == 401
    verified = await h.client.post("/auth/verify-otp", json={"email": EMAIL, "code": code})
    assert verified.status_code == 200, verified.text
    cookies = cookies_set(verified)
    assert cookies["otp_challenge"]["max-age"] == "0"  # cleared
    assert "otp_challenge" not in h.client.cookies
    device = cookies["otp_device"]
    assert device["httponly"] is True
    assert device["path"] == "/auth"
    assert int(str(device["max-age"])) == int(h.config.device_cookie_lifetime.total_seconds())


async def test_body_mode_clients_send_the_challenge_id_and_keep_the_device(
    make_harness: HarnessFactory, clients: list[httpx.AsyncClient]
) -> None:
    h = await make_harness(refresh_token_delivery="body", max_otp_attempts=1)
    phone = client_at(h, "198.51.100.10", clients)
    requested = await phone.post("/auth/request-otp", json={"email": EMAIL})
    challenge_id = requested.json()["challenge_id"]
    code = h.config.last_code()
    # A stranger's unbound wrong guess spends the unbound budget, not the phone's.
    stranger = client_at(h, "203.0.113.66", clients)
    body = {"email": EMAIL, "code": wrong_code(code)}
    assert (await stranger.post("/auth/verify-otp", json=body)).status_code == 401
    verified = await phone.post(
        "/auth/verify-otp", json={"email": EMAIL, "code": code, "challenge_id": challenge_id}
    )
    assert verified.status_code == 200, verified.text
    assert cookies_set(verified).keys() == set()
    device = verified.json()["device"]
    assert device
    again = await phone.post("/auth/request-otp", json={"email": EMAIL, "device": device})
    assert again.status_code == 200


async def test_a_bound_guess_is_checked_against_its_own_code_only(
    make_harness: HarnessFactory, clients: list[httpx.AsyncClient]
) -> None:
    h = await make_harness()
    owner, stranger = client_at(h, "198.51.100.1", clients), client_at(h, "203.0.113.5", clients)
    assert (await owner.post("/auth/request-otp", json={"email": EMAIL})).status_code == 200
    owners_code = h.config.last_code()
    assert (await stranger.post("/auth/request-otp", json={"email": EMAIL})).status_code == 200
    # The stranger's binding with the owner's code: not that binding's code.
    if h.config.last_code() != owners_code:
        body = {"email": EMAIL, "code": owners_code}
        assert (await stranger.post("/auth/verify-otp", json=body)).status_code == 401
    verified = await owner.post("/auth/verify-otp", json={"email": EMAIL, "code": owners_code})
    assert verified.status_code == 200


async def test_a_malformed_challenge_id_is_422_and_a_malformed_cookie_is_ignored(
    make_harness: HarnessFactory,
) -> None:
    h = await make_harness()
    for bad in ("a" * 129, "not base64!", ""):
        body = {"email": EMAIL, "code": WRONG, "challenge_id": bad}
        response = await h.client.post("/auth/verify-otp", json=body)
        assert response.status_code == 422, bad
    assert (await h.request_code()).status_code == 200
    h.client.cookies.set("otp_challenge", "x" * 500, path="/auth")
    # Unbound, then: the right code still logs in.
    body = {"email": EMAIL, "code": h.config.last_code()}
    assert (await h.client.post("/auth/verify-otp", json=body)).status_code == 200


async def test_a_stranger_cannot_lock_the_owner_out(
    make_harness: HarnessFactory, clients: list[httpx.AsyncClient]
) -> None:
    """20 wrong guesses and 3 code requests by a stranger; the owner logs in, 10 of 10."""
    h = await make_harness()
    owner = client_at(h, "198.51.100.1", clients)  # a browser: keeps its cookies
    logins = 0
    for round_ in range(10):
        stranger = client_at(h, f"203.0.113.{round_ + 1}", clients)
        assert (await owner.post("/auth/request-otp", json={"email": EMAIL})).status_code == 200
        code = h.config.last_code()
        wrong = wrong_code(code)
        for attempt in range(20):
            if attempt in (0, 7, 14):
                # The stranger's requests open bindings of its own (or are refused by the
                # mailbox limit); neither replaces the owner's code or starts its cooldown.
                refused = await stranger.post("/auth/request-otp", json={"email": EMAIL})
                assert refused.status_code in (200, 429)
            # Alternately bound (the stranger's own binding, from its cookie) and unbound.
            guesser = stranger if attempt % 2 else client_at(h, "203.0.113.200", clients)
            response = await guesser.post("/auth/verify-otp", json={"email": EMAIL, "code": wrong})
            assert response.status_code in (401, 429)
        h.clock.advance(timedelta(seconds=30))
        verified = await owner.post("/auth/verify-otp", json={"email": EMAIL, "code": code})
        logins += verified.status_code == 200
        h.clock.advance(timedelta(hours=1))
    assert logins == 10


async def test_a_stranger_cannot_spend_the_owners_mailbox_budget(
    make_harness: HarnessFactory, clients: list[httpx.AsyncClient]
) -> None:
    h = await make_harness()
    owner = client_at(h, "198.51.100.1", clients)
    await owner.post("/auth/request-otp", json={"email": EMAIL})
    body = {"email": EMAIL, "code": h.config.last_code()}
    assert (await owner.post("/auth/verify-otp", json=body)).status_code == 200
    assert "otp_device" in owner.cookies
    h.clock.advance(timedelta(minutes=2))
    # Strangers from many addresses spend the mailbox's budget (5 per hour by default).
    statuses = [
        (
            await client_at(h, f"203.0.113.{i + 1}", clients).post(
                "/auth/request-otp", json={"email": EMAIL}
            )
        ).status_code
        for i in range(8)
    ]
    assert statuses.count(429) >= 3
    # The owner's browser has its own share.
    sent = len(h.config.outbox)
    again = await owner.post("/auth/request-otp", json={"email": EMAIL})
    assert again.status_code == 200, again.text
    assert len(h.config.outbox) == sent + 1
    body = {"email": EMAIL, "code": h.config.last_code()}
    assert (await owner.post("/auth/verify-otp", json=body)).status_code == 200
