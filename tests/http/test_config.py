"""Configuration: validation at construction, developer mode, keys and JWKS, lazy exports."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
from datetime import timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

import otpcore_fastapi
from otpcore.domain.errors import ConfigurationError
from otpcore.stores import mongodb, sqlalchemy
from otpcore.stores.memory import MemoryStore
from otpcore_fastapi import OTPAuthConfig
from tests.http.conftest import EMAIL, SECRET, HarnessFactory, RecordingConfig, build_app


def pem_pair(algorithm: str) -> tuple[str, str]:
    """A fresh private and public key (PEM) for ``algorithm``."""
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    key = (
        ec.generate_private_key(ec.SECP256R1())
        if algorithm == "ES256"
        else (ed25519.Ed25519PrivateKey.generate())
    )
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def header_of(token: str) -> dict[str, Any]:
    """A JWT's header (unverified, for assertions)."""
    head = token.split(".")[0]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    return decoded


# -- validation ---------------------------------------------------------------------------------


def test_a_short_secret_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        RecordingConfig(secret_key="too-short")


def test_a_missing_secret_is_refused() -> None:
    class NoSecret(OTPAuthConfig):
        async def send_otp(self, email: str, code: str) -> None:
            pass

    with pytest.raises(ConfigurationError, match="secret_key must be set"):
        NoSecret()


def test_send_otp_or_a_mail_setting_is_required() -> None:
    # Issue 9: send_otp is no longer abstract (smtp_url or mail_sender can deliver instead),
    # so a config with neither fails at construction with a message naming all three.
    class NoSender(OTPAuthConfig):
        secret_key = SECRET

    with pytest.raises(ConfigurationError, match=r"smtp_url.*mail_sender.*send_otp"):
        NoSender()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"refresh_token_delivery": "header"}, "refresh_token_delivery"),
        ({"cookie_samesite": "none", "cookie_secure": False}, "requires cookie_secure"),
        ({"cookie_samesite": "sometimes"}, "cookie_samesite"),
        ({"cookie_path": "auth"}, "cookie_path"),
        ({"cookie_name": ""}, "cookie_name"),
        ({"trusted_origins": ("app.example.com",)}, "trusted_origins"),
        ({"otp_length": 3}, "code_length"),
        ({"max_otp_attempts": 0}, "max_attempts"),
        ({"revocation_mirror_interval": timedelta(0)}, "interval"),
        ({"access_token_lifetime": timedelta(days=30)}, "refresh_lifetime"),
        ({"algorithm": "RS256"}, "needs private_key"),
        ({"algorithm": "none"}, "needs private_key"),
        ({"public_keys": {"old": "pem"}}, "public_keys needs private_key"),
        ({"private_key": "pem"}, "asymmetric algorithm"),
        ({"private_key": "not a pem", "algorithm": "ES256"}, "key does not fit"),
    ],
)
def test_bad_settings_fail_at_construction(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RecordingConfig(**settings)


# -- developer mode ------------------------------------------------------------------------------


async def test_developer_mode_uses_zero_codes_and_warns(
    make_harness: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="otpcore_fastapi")
    h = await make_harness(developer_mode=True, secret_key="dev", otp_length=8)
    assert "DEVELOPER MODE" in caplog.text
    response = await h.request_code()
    assert response.json()["message"] == "Developer mode: OTP code is 00000000"
    assert h.config.last_code() == "00000000"
    verified = await h.client.post("/auth/verify-otp", json={"email": EMAIL, "code": "00000000"})
    assert verified.status_code == 200


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTPCORE_ENV", "production"),
        ("OTPCORE_ENV", "prod"),
        ("ENVIRONMENT", "Production"),
        ("ENVIRONMENT", " PROD "),
    ],
)
def test_developer_mode_refuses_to_start_in_production(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match="developer_mode"):
        RecordingConfig(developer_mode=True)
    # Production without developer mode is, of course, fine (with Secure cookies).
    RecordingConfig(cookie_secure=True)


def test_developer_mode_starts_outside_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTPCORE_ENV", "staging")
    monkeypatch.delenv("ENVIRONMENT", raising=False)
    assert RecordingConfig(developer_mode=True, secret_key="x").developer_mode


# -- keys, issuer, audience, JWKS ------------------------------------------------------------


async def test_no_jwks_route_with_a_shared_secret(make_harness: HarnessFactory) -> None:
    h = await make_harness()
    assert (await h.client.get("/auth/.well-known/jwks.json")).status_code == 404


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
async def test_asymmetric_keys_sign_tokens_and_publish_a_jwks(
    make_harness: HarnessFactory, algorithm: str
) -> None:
    private, _ = pem_pair(algorithm)
    h = await make_harness(algorithm=algorithm, private_key=private, key_id="k1")
    jwks = await h.client.get("/auth/.well-known/jwks.json")
    assert jwks.status_code == 200
    assert jwks.headers["content-type"] == "application/json"
    assert "max-age" in jwks.headers["cache-control"]
    [key] = jwks.json()["keys"]
    assert key["kid"] == "k1"
    assert key["alg"] == algorithm
    assert key["use"] == "sig"
    assert "d" not in key  # never the private part

    access = (await h.login())["access_token"]
    assert header_of(access) == {"typ": "at+jwt", "alg": algorithm, "kid": "k1"}
    assert (await h.client.get("/me", headers={"Authorization": f"Bearer {access}"})).is_success


async def test_key_rotation_keeps_old_tokens_valid(make_harness: HarnessFactory) -> None:
    old_private, old_public = pem_pair("ES256")
    new_private, new_public = pem_pair("ES256")
    store = MemoryStore()
    before = await make_harness(
        store=store, algorithm="ES256", private_key=old_private, key_id="2025"
    )
    old_access = (await before.login())["access_token"]

    after = await make_harness(
        store=store,
        algorithm="ES256",
        private_key=new_private,
        key_id="2026",
        public_keys={"2025": old_public, "2026": new_public},
    )
    headers = {"Authorization": f"Bearer {old_access}"}
    assert (await after.client.get("/me", headers=headers)).status_code == 200
    kids = {
        key["kid"] for key in (await after.client.get("/auth/.well-known/jwks.json")).json()["keys"]
    }
    assert kids == {"2025", "2026"}
    after.clock.advance(after.config.otp_rate_limit_seconds)
    new_access = (await after.login())["access_token"]
    assert header_of(new_access)["kid"] == "2026"
    # The old deployment never trusted the new key.
    assert (
        await before.client.get("/me", headers={"Authorization": f"Bearer {new_access}"})
    ).status_code == 401


async def test_issuer_and_audience_are_enforced(make_harness: HarnessFactory) -> None:
    store = MemoryStore()
    api = await make_harness(store=store, issuer="https://auth.example", audience="api")
    other = await make_harness(store=store, issuer="https://auth.example", audience="billing")
    access = (await api.login())["access_token"]
    headers = {"Authorization": f"Bearer {access}"}
    assert (await api.client.get("/me", headers=headers)).status_code == 200
    assert (await other.client.get("/me", headers=headers)).status_code == 401
    assert (await other.client.get("/claims", headers=headers)).status_code == 401


async def test_the_rate_limit_setting_is_the_resend_cooldown(make_harness: HarnessFactory) -> None:
    h = await make_harness(otp_rate_limit_seconds=5)
    await h.request_code()
    assert (await h.request_code()).headers["Retry-After"] == "5"
    h.clock.advance(5)
    assert (await h.request_code()).status_code == 200


# -- exports -----------------------------------------------------------------------------------


def test_store_classes_are_re_exported() -> None:

    assert otpcore_fastapi.SQLAlchemyAdapter is sqlalchemy.SQLAlchemyAdapter
    assert otpcore_fastapi.BaseOTPUserTable is sqlalchemy.BaseOTPUserTable
    assert otpcore_fastapi.TokenBlacklist is sqlalchemy.TokenBlacklist
    assert otpcore_fastapi.MongoDBAdapter is mongodb.MongoDBAdapter
    assert otpcore_fastapi.BaseOTPUserDocument is mongodb.BaseOTPUserDocument
    assert otpcore_fastapi.TokenBlacklistDocument is mongodb.TokenBlacklistDocument
    assert "MongoDBAdapter" in dir(otpcore_fastapi)
    with pytest.raises(AttributeError):
        _ = otpcore_fastapi.NoSuchThing


@pytest.mark.parametrize(
    ("blocked", "name", "extra"),
    [("pymongo", "MongoDBAdapter", "mongodb"), ("sqlalchemy", "SQLAlchemyAdapter", "sqlalchemy")],
)
def test_a_missing_driver_names_the_extra(blocked: str, name: str, extra: str) -> None:
    script = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        "import otpcore_fastapi\n"
        "try:\n"
        f"    otpcore_fastapi.{name}\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert f"pip install 'otpcore[{extra}]'" in result.stdout


def test_the_app_without_any_store_extra_imports() -> None:
    script = (
        "import sys; sys.modules['sqlalchemy'] = None; sys.modules['pymongo'] = None\n"
        "import otpcore_fastapi\n"
        "print(otpcore_fastapi.get_auth_router.__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "get_auth_router"


async def test_a_config_serves_several_apps(make_harness: HarnessFactory) -> None:
    # One config (one OTPAuth) can back routers in several apps over one database.
    h = await make_harness()
    app, _ = build_app(h.config, h.store, prefix="/v2/auth")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as other:
        access = (await h.login())["access_token"]
        response = await other.get("/me", headers={"Authorization": f"Bearer {access}"})
        assert response.status_code == 200
