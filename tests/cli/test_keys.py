"""``otpcore keys generate``: the key loads in otpcore, and its JWK verifies otpcore's tokens."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import jwt
import pytest

from otpcore import KeySet, OTPAuth, Policy, SigningKey
from otpcore.cli.keys import jwk_thumbprint
from otpcore.stores.memory import MemoryStore
from tests.cli.conftest import CONSOLE_SCRIPT, Run

SECRET = b"k" * 16 + b"0123456789abcdef"


async def _access_token(keys: KeySet) -> str:
    inbox: dict[str, str] = {}

    async def send(email: str, code: str) -> None:
        inbox[email] = code

    auth: OTPAuth[Any] = OTPAuth(
        policy=Policy(secret=SECRET, issuer="https://id.example", audience="api"),
        store=MemoryStore(),
        sender=send,
        keys=keys,
    )
    await auth.request_code("key@example.com")
    login = await auth.verify_code("key@example.com", inbox["key@example.com"])
    return login.access_token


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "RS256"])
async def test_generated_key_signs_tokens_that_its_jwk_verifies(cli: Run, alg: str) -> None:
    result = cli("keys", "generate", "--alg", alg, "--kid", "2026-01", "--rsa-bits", "2048")
    assert result.returncode == 0, result.stderr
    generated = json.loads(result.stdout)
    jwk = generated["public_jwk"]
    assert (generated["alg"], generated["kid"], jwk["kid"], jwk["alg"]) == (
        alg,
        "2026-01",
        "2026-01",
        alg,
    )
    assert "d" not in jwk, "the JWK must hold only the public key"

    keys = KeySet(SigningKey(algorithm=alg, key=generated["private_key_pem"], kid="2026-01"))
    assert keys.jwks() == {"keys": [jwk]}
    token = await _access_token(keys)
    assert jwt.get_unverified_header(token)["kid"] == "2026-01"
    claims = jwt.decode(
        token, jwt.PyJWK(jwk), algorithms=[alg], audience="api", issuer="https://id.example"
    )
    assert claims["type"] == "access"


def test_kid_defaults_to_the_rfc7638_thumbprint(cli: Run) -> None:
    result = cli("keys", "generate", "--alg", "ES256")
    assert result.returncode == 0, result.stderr
    generated = json.loads(result.stdout)
    assert generated["kid"] == jwk_thumbprint(generated["public_jwk"])
    assert len(generated["kid"]) == 43  # base64url of a SHA-256 digest, unpadded


def test_thumbprint_matches_the_rfc7638_example() -> None:
    # RFC 7638 §3.1: the example RSA key and its SHA-256 thumbprint.
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6t"
        "Soc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65Y"
        "GjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdk"
        "t-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqD"
        "Kgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_private_key_out_writes_an_owner_only_file_once(cli: Run, tmp_path: Path) -> None:
    target = tmp_path / "signing.pem"
    result = cli("keys", "generate", "--alg", "EdDSA", "--private-key-out", str(target))
    assert result.returncode == 0, result.stderr
    generated = json.loads(result.stdout)
    assert "private_key_pem" not in generated
    assert "PRIVATE KEY" not in result.stdout
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    keys = KeySet(SigningKey(algorithm="EdDSA", key=target.read_text(), kid=generated["kid"]))
    assert keys.jwks()["keys"] == [generated["public_jwk"]]

    again = cli("keys", "generate", "--alg", "EdDSA", "--private-key-out", str(target))
    assert again.returncode == 2
    assert "cannot write" in again.stderr
    assert keys.jwks()["keys"] == [
        KeySet(SigningKey(algorithm="EdDSA", key=target.read_text())).jwks()["keys"][0]
        | {"kid": generated["kid"]}
    ], "an existing key file must never be replaced"


def test_unknown_algorithm_is_a_usage_error(cli: Run) -> None:
    result = cli("keys", "generate", "--alg", "HS256")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_console_script_is_installed(cli: Run) -> None:
    assert CONSOLE_SCRIPT.exists(), "pip install -e . creates the otpcore console script"
    result = cli("keys", "generate", "--alg", "ES256", script=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["public_jwk"]["crv"] == "P-256"
