"""Issue 10: a refresh token must not pass as an access token at a service using the JWKS.

A resource server that verifies access tokens itself is configured from the published JWKS
only, with an independent library (joserfc), the way its documentation shows. It accepts
our access tokens. Refresh tokens are signed with HS256 under a key derived from the secret
that no JWKS lists, so it refuses them however its algorithms are configured, whether or
not it looks at ``typ`` (joserfc does not, nor do authlib, jwcrypto, python-jose or
PyJWKClient by default). The control test shows the hole this closes: a refresh token
signed the way it used to be, with the published key, is accepted by the same verifier.
"""

from __future__ import annotations

import json
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from joserfc import jwt as joserfc_jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet as JoseKeySet

from tests.http.conftest import Harness, HarnessFactory, make_harness

__all__ = ["make_harness"]  # the fixture, imported so pytest finds it here

KID = "access-2026"
# joserfc warns that RFC 9864 deprecates the polymorphic "EdDSA" name; the suite turns
# warnings into errors, and that advice is about naming, not about this test.
_EDDSA_NAMING = pytest.mark.filterwarnings("ignore:EdDSA is deprecated:Warning")
ALGORITHMS = [
    pytest.param("ES256", lambda: ec.generate_private_key(ec.SECP256R1()), id="ES256"),
    pytest.param("EdDSA", ed25519.Ed25519PrivateKey.generate, id="EdDSA", marks=_EDDSA_NAMING),
]


def _pem(key: PrivateKeyTypes) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


async def _asymmetric_app(
    make_harness: HarnessFactory, algorithm: str, key: PrivateKeyTypes
) -> tuple[Harness, dict[str, Any], JoseKeySet]:
    """An app signing access tokens with ``key``, a login, and a verifier built from the
    JWKS the app publishes (nothing else)."""
    h = await make_harness(
        algorithm=algorithm, private_key=_pem(key), key_id=KID, refresh_token_delivery="body"
    )
    login = await h.login()
    published = await h.client.get("/auth/.well-known/jwks.json")
    assert published.status_code == 200
    document = published.json()
    # Only the access-token key is published, and only its public half.
    assert [entry["kid"] for entry in document["keys"]] == [KID]
    assert all(entry["kty"] != "oct" and "d" not in entry for entry in document["keys"])
    return h, login, JoseKeySet.import_key_set(document)


def _resource_server_accepts(
    token: str, keys: JoseKeySet, algorithms: list[str] | None, *, now: int
) -> bool:
    """What a resource server following joserfc's documentation does with a bearer token
    (at ``now``, the app's fake time)."""
    try:
        decoded = joserfc_jwt.decode(token, keys, algorithms=algorithms)
        joserfc_jwt.JWTClaimsRegistry(
            now=now, exp={"essential": True}, sub={"essential": True}
        ).validate(decoded.claims)
    except JoseError:
        return False
    return True


@pytest.mark.parametrize(("algorithm", "factory"), ALGORITHMS)
@pytest.mark.parametrize("configured", ["pinned", "also-HS256"])
async def test_jwks_verifier_accepts_access_and_refuses_refresh(
    make_harness: HarnessFactory, algorithm: str, factory: Any, configured: str
) -> None:
    h, login, keys = await _asymmetric_app(make_harness, algorithm, factory())
    now = int(h.clock().timestamp())
    # Pinned to the JWKS's algorithm, or also taking HS256 (as a service that verifies
    # other tokens with a shared secret would): refused either way.
    algorithms = [algorithm] if configured == "pinned" else [algorithm, "HS256"]
    assert _resource_server_accepts(login["access_token"], keys, algorithms, now=now)
    assert not _resource_server_accepts(login["refresh_token"], keys, algorithms, now=now)
    # And the refresh token still does its job here.
    rotated = await h.client.post("/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert rotated.status_code == 200, rotated.text
    assert not _resource_server_accepts(rotated.json()["refresh_token"], keys, algorithms, now=now)


@pytest.mark.parametrize(("algorithm", "factory"), ALGORITHMS)
async def test_control_a_refresh_token_signed_with_the_published_key_was_accepted(
    make_harness: HarnessFactory, algorithm: str, factory: Any
) -> None:
    """Before issue 10 refresh tokens were signed like access tokens: this verifier took them.

    The same claims and header our refresh token has, signed as the codec used to sign it
    (the access key, its ``kid``, ``typ: rt+jwt``), pass the verifier above: only the
    unpublished key makes the difference.
    """
    key = factory()
    h, login, keys = await _asymmetric_app(make_harness, algorithm, key)
    now = int(h.clock().timestamp())
    claims = pyjwt.decode(login["refresh_token"], options={"verify_signature": False})
    assert claims["type"] == "refresh"
    old_style = pyjwt.encode(
        claims, key, algorithm=algorithm, headers={"typ": "rt+jwt", "kid": KID}
    )
    for algorithms in ([algorithm], [algorithm, "HS256"]):
        assert _resource_server_accepts(old_style, keys, algorithms, now=now)
        decoded = joserfc_jwt.decode(old_style, keys, algorithms=algorithms)
        assert decoded.claims["type"] == "refresh"
        assert json.loads(json.dumps(decoded.header))["typ"] == "rt+jwt"
