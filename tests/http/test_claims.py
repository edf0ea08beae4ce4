"""Custom claims: returned without any reserved claim; a reserved name is a programming error."""

from __future__ import annotations

from typing import Any

import pytest

from otpcore.domain.errors import ReservedClaimError
from otpcore.domain.records import RESERVED_CLAIMS
from tests.http.conftest import EMAIL, HarnessFactory, RecordingConfig


class ClaimsConfig(RecordingConfig):
    """Adds ``extra_claims`` (a setting) to every access token."""

    extra_claims: dict[str, Any] = {}  # noqa: RUF012 - replaced per instance, never mutated

    def get_additional_claims(self, user: Any) -> dict[str, Any]:
        return dict(self.extra_claims)


CUSTOM = {"role": "admin", "permissions": ["read", "write"], "org": {"id": 7}}


async def test_custom_claims_are_exactly_the_custom_ones(make_harness: HarnessFactory) -> None:
    h = await make_harness(
        config_class=ClaimsConfig,
        extra_claims=CUSTOM,
        issuer="https://auth.example.com",
        audience="api.example.com",
    )
    access = (await h.login())["access_token"]
    headers = {"Authorization": f"Bearer {access}"}
    response = await h.client.get("/claims", headers=headers)
    assert response.status_code == 200
    assert response.json() == CUSTOM
    assert not RESERVED_CLAIMS & set(response.json())

    principal = (await h.client.get("/principal", headers=headers)).json()
    assert principal["extra"] == CUSTOM
    assert principal["sub"] == (await h.memory.find_by_email(EMAIL)).user.id  # type: ignore[union-attr]
    assert principal["sid"]


async def test_claims_are_refreshed_with_the_token(make_harness: HarnessFactory) -> None:
    h = await make_harness(
        config_class=ClaimsConfig, extra_claims={"role": "user"}, refresh_token_delivery="body"
    )
    body = await h.login()
    h.config.extra_claims = {"role": "admin"}  # type: ignore[attr-defined]
    refreshed = await h.client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    headers = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    assert (await h.client.get("/claims", headers=headers)).json() == {"role": "admin"}


async def test_no_custom_claims_is_an_empty_dict(make_harness: HarnessFactory) -> None:
    h = await make_harness()
    access = (await h.login())["access_token"]
    response = await h.client.get("/claims", headers={"Authorization": f"Bearer {access}"})
    assert response.json() == {}


@pytest.mark.parametrize("name", sorted(RESERVED_CLAIMS))
async def test_a_reserved_custom_claim_is_refused(make_harness: HarnessFactory, name: str) -> None:
    h = await make_harness(config_class=ClaimsConfig, extra_claims={name: "forged", "ok": 1})
    await h.request_code()
    with pytest.raises(ReservedClaimError) as raised:
        await h.client.post("/auth/verify-otp", json={"email": EMAIL, "code": h.config.last_code()})
    assert raised.value.names == frozenset({name})
