"""Issue 10: tokens with out-of-range numbers, signed with the real key, are 401 never 500.

Every token here carries a valid signature (the service's own key: the secret for access
tokens, the HKDF-derived key for refresh tokens), so nothing but the claim checks stands
between such a number and the datetime arithmetic that used to overflow into a 500. Each is
sent to every route that reads a token: refresh, a current-user route, the claims-only
routes, logout, logout-all and the session endpoints.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from otpcore_fastapi import install_error_handlers
from tests.http.conftest import SECRET, Harness, HarnessFactory, make_harness

__all__ = ["make_harness"]  # the fixture, imported so pytest finds it here

REFRESH_KEY = HKDF(
    algorithm=SHA256(), length=32, salt=None, info=b"otpcore refresh-token signing v1"
).derive(SECRET.encode())

#: Claim overrides no accepted token may carry, each with what it exercises.
OUT_OF_RANGE: dict[str, dict[str, Any]] = {
    "exp-1e20": {"exp": 10**20},
    "exp-2^63": {"exp": 2**63},
    "exp-negative-huge": {"exp": -(10**20)},
    "exp-float-1e308": {"exp": 1e308},
    "exp-bool": {"exp": True},
    "iat-1e20": {"iat": 10**20},
    "iat-negative": {"iat": -1},
    "iat-bool": {"iat": True},
    "nbf-1e20": {"nbf": 10**20},
    "nbf-bool": {"nbf": False},
    "auth_time-nan": {"auth_time": math.nan},
    "auth_time-inf": {"auth_time": math.inf},
    "auth_time-1e308": {"auth_time": 1e308},
    "auth_time-negative": {"auth_time": -1},
    "auth_time-bool": {"auth_time": True},
    "auth_time-string": {"auth_time": "0"},
}
#: Only for refresh tokens: the session generation.
BAD_GENERATIONS: dict[str, dict[str, Any]] = {
    "gen-1e20": {"gen": 10**20},
    "gen-2^31": {"gen": 2**31},
    "gen-negative": {"gen": -1},
    "gen-bool": {"gen": True},
    "gen-float": {"gen": 1.0},
    "gen-string": {"gen": "0"},
    "gen-missing": {"gen": None},
}


def _payload(token: str) -> dict[str, Any]:
    payload: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return payload


def _resign(token: str, overrides: dict[str, Any], *, key: bytes, typ: str) -> str:
    """``token`` with ``overrides`` applied (``None`` drops a claim), signed with ``key``."""
    payload = {**_payload(token), **overrides}
    payload = {name: value for name, value in payload.items() if value is not None}
    # pyjwt serializes NaN and Infinity as JSON's non-standard literals, which Python reads.
    return jwt.encode(payload, key, algorithm="HS256", headers={"typ": typ})


def access_with(token: str, overrides: dict[str, Any]) -> str:
    return _resign(token, overrides, key=SECRET.encode(), typ="at+jwt")


def refresh_with(token: str, overrides: dict[str, Any]) -> str:
    return _resign(token, overrides, key=REFRESH_KEY, typ="rt+jwt")


async def _logged_in(make_harness: HarnessFactory) -> tuple[Harness, dict[str, Any]]:
    h = await make_harness(refresh_token_delivery="body")
    install_error_handlers(h.app)  # so app routes answer with the stable code too
    return h, await h.login()


def assert_token_invalid(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "Invalid token.", "code": "token_invalid"}
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_the_forged_tokens_are_signed_with_the_real_keys() -> None:
    """Guards the tests below: the helpers' tokens verify when nothing is out of range."""
    from otpcore.domain.policy import Policy
    from otpcore.testing import FakeClock
    from otpcore.tokens import KeySet, TokenCodec

    now = FakeClock()()
    codec = TokenCodec(KeySet.symmetric(SECRET), Policy(secret=SECRET.encode()))
    args: dict[str, Any] = {"subject": "1", "sid": "s", "jti": "j", "auth_time": 0, "now": now}
    access = codec.issue(kind="access", **args)
    refresh = codec.issue(kind="refresh", generation=3, **args)
    assert codec.verify(access_with(access, {}), kind="access", now=now).sub == "1"
    assert codec.verify(refresh_with(refresh, {}), kind="refresh", now=now).gen == 3
    # The literals this file relies on really reach the verifier.
    assert "NaN" in json.dumps(math.nan)


@pytest.mark.parametrize("case", sorted({**OUT_OF_RANGE, **BAD_GENERATIONS}))
async def test_out_of_range_refresh_token_is_401_on_refresh(
    make_harness: HarnessFactory, case: str
) -> None:
    h, login = await _logged_in(make_harness)
    token = refresh_with(login["refresh_token"], {**OUT_OF_RANGE, **BAD_GENERATIONS}[case])
    response = await h.client.post("/auth/refresh", json={"refresh_token": token})
    assert_token_invalid(response)
    # The genuine token is untouched by the refusal.
    again = await h.client.post("/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert again.status_code == 200, again.text


ACCESS_CASES = {**OUT_OF_RANGE, "gen-on-access-token": {"gen": 0}}


@pytest.mark.parametrize("case", sorted(ACCESS_CASES))
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/me"),
        ("GET", "/verified"),
        ("GET", "/claims"),
        ("GET", "/principal"),
        ("POST", "/auth/logout-all"),
        ("GET", "/auth/sessions"),
        ("DELETE", "/auth/sessions/some-session"),
        ("POST", "/auth/logout-others"),
    ],
)
async def test_out_of_range_access_token_is_401(
    make_harness: HarnessFactory, case: str, method: str, path: str
) -> None:
    h, login = await _logged_in(make_harness)
    token = access_with(login["access_token"], ACCESS_CASES[case])
    response = await h.client.request(method, path, headers={"Authorization": f"Bearer {token}"})
    assert_token_invalid(response)
    # Nothing was revoked: the genuine access token still works everywhere.
    me = await h.client.get("/me", headers={"Authorization": f"Bearer {login['access_token']}"})
    assert me.status_code == 200, me.text


@pytest.mark.parametrize("case", sorted(OUT_OF_RANGE))
async def test_out_of_range_tokens_at_logout_are_ignored_not_500(
    make_harness: HarnessFactory, case: str
) -> None:
    """Logout answers 200 for any token it cannot use (its documented contract), never 500,
    and a token it cannot verify revokes nothing."""
    h, login = await _logged_in(make_harness)
    overrides = OUT_OF_RANGE[case]
    response = await h.client.post(
        "/auth/logout",
        json={"refresh_token": refresh_with(login["refresh_token"], overrides)},
        headers={"Authorization": f"Bearer {access_with(login['access_token'], overrides)}"},
    )
    assert response.status_code == 200, response.text
    again = await h.client.post("/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert again.status_code == 200, again.text
