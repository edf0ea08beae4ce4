"""What older pyjwt accepts, refused by otpcore itself, one test per gap (issue 11).

``pyjwt[crypto]>=2.8`` is allowed, and pyjwt before 2.13 takes an empty HMAC secret, signs
ES256 with a P-384 key and lets a non-string ``sub`` through; before 2.11 it ignores ``crit``.
Each rule lives in ``otpcore.tokens``, so these pass on every allowed pyjwt version. The
codec also uses pyjwt's signature layer only: the claims checks below are otpcore's own, and
would be gone if a check were dropped or the private ``PyJWT._jws`` hook came back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from otpcore.domain.errors import TokenInvalid
from otpcore.domain.policy import Policy, check_secret
from otpcore.tokens import KeySet, SigningKey, TokenCodec, VerificationKey

SECRET = b"k" * 32
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
T0 = int(NOW.timestamp())
GENERIC = r"^Invalid token\.$"
PLACEHOLDER = "your-secret-key-generate-with-openssl-rand-hex-32"


def claims(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "sub": "user-1",
        "iat": T0,
        "nbf": T0,
        "exp": T0 + 3600,
        "jti": "jti-1",
        "type": "access",
        "sid": "sid-1",
        "auth_time": T0 - 30.0,
    }
    payload.update(overrides)
    return payload


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_raw(header: dict[str, Any], body: bytes, key: bytes = SECRET) -> str:
    """HS256 over any payload bytes: a correct signature on whatever pyjwt would not encode."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(body)}"
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


HEADER = {"alg": "HS256", "typ": "at+jwt"}


def codec(**policy: Any) -> TokenCodec:
    return TokenCodec(KeySet.symmetric(SECRET), Policy(secret=SECRET, **policy))


def assert_refused(target: TokenCodec, token: str) -> None:
    with pytest.raises(TokenInvalid, match=GENERIC) as caught:
        target.verify(token, kind="access", now=NOW)
    assert caught.value.__cause__ is None


def test_control_a_raw_signed_token_verifies() -> None:
    """Guards the tests below: `sign_raw` with good claims is accepted."""
    token = sign_raw(HEADER, json.dumps(claims()).encode())
    assert codec().verify(token, kind="access", now=NOW).sub == "user-1"


# -- empty HMAC secret (pyjwt < 2.13 signs with b"") ------------------------------------------


@pytest.mark.parametrize("secret", [b"", ""])
@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_empty_hmac_secret_is_refused_at_key_load(secret: bytes | str, algorithm: str) -> None:
    with pytest.raises(ValueError, match="secret must be set"):
        KeySet.symmetric(secret, algorithm)
    with pytest.raises(ValueError, match="secret must be set"):
        KeySet(
            SigningKey(algorithm="HS256", key=SECRET, kid="a"),
            [VerificationKey(algorithm=algorithm, key=secret, kid="b")],
        )


def test_empty_hmac_secret_is_refused_even_in_developer_mode() -> None:
    with pytest.raises(ValueError, match="secret must be set"):
        check_secret(b"", developer_mode=True)
    with pytest.raises(ValueError, match="secret must be set"):
        KeySet(SigningKey(algorithm="HS256", key=b""))


# -- ES256 on another curve (pyjwt < 2.13 signs ES256 with P-384 or P-521) ----------------------


@pytest.mark.parametrize("curve", [ec.SECP384R1(), ec.SECP521R1(), ec.SECP256K1()])
def test_es256_key_on_another_curve_is_refused(curve: ec.EllipticCurve) -> None:
    private = ec.generate_private_key(curve)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # Newer pyjwt refuses these too, in its own words; older pyjwt leaves it to otpcore.
    with pytest.raises(ValueError, match="curve"):
        KeySet(SigningKey(algorithm="ES256", key=private))
    p256 = ec.generate_private_key(ec.SECP256R1())
    for key in (private.public_key(), public_pem, private):
        with pytest.raises(ValueError, match="curve"):
            KeySet(
                SigningKey(algorithm="ES256", key=p256, kid="a"),
                [VerificationKey(algorithm="ES256", key=key, kid="b")],
            )


# -- non-string sub and jti (pyjwt < 2.10 does not check them) -----------------------------------


@pytest.mark.parametrize("claim", ["sub", "jti"])
@pytest.mark.parametrize("value", [1, 1.5, True, ["user-1"], {"id": "user-1"}])
def test_non_string_sub_or_jti_is_refused(claim: str, value: Any) -> None:
    assert_refused(codec(), sign_raw(HEADER, json.dumps(claims(**{claim: value})).encode()))


# -- the claims checks pyjwt's claims layer did, now otpcore's own ---------------------------------


@pytest.mark.parametrize("claim", ["sub", "iat", "nbf", "exp", "jti", "type", "sid", "auth_time"])
def test_required_claim_that_is_null_is_refused(claim: str) -> None:
    assert_refused(codec(), sign_raw(HEADER, json.dumps(claims(**{claim: None})).encode()))


@pytest.mark.parametrize(
    "body",
    [b"[]", b'"user-1"', b"1", b"null", b"true", b"{", b"\xff\xfe", b"", b"[" * 5000 + b"]" * 5000],
)
def test_correctly_signed_payload_that_is_not_a_json_object_is_refused(body: bytes) -> None:
    assert_refused(codec(), sign_raw(HEADER, body))


@pytest.mark.parametrize("iss", [None, "", "https://other", ["https://ours"], 1, {"a": 1}])
def test_issuer_must_be_the_configured_string(iss: Any) -> None:
    payload = claims() if iss is None else claims(iss=iss)
    ours = codec(issuer="https://ours")
    assert_refused(ours, sign_raw(HEADER, json.dumps(payload).encode()))
    good = sign_raw(HEADER, json.dumps(claims(iss="https://ours")).encode())
    assert ours.verify(good, kind="access", now=NOW).sub == "user-1"


@pytest.mark.parametrize("aud", [None, "", "other", ["api"], ["api", "other"], 1, {"api": 1}])
def test_audience_is_strict_one_string_exactly_equal(aud: Any) -> None:
    payload = claims() if aud is None else claims(aud=aud)
    ours = codec(audience="api")
    assert_refused(ours, sign_raw(HEADER, json.dumps(payload).encode()))
    good = sign_raw(HEADER, json.dumps(claims(aud="api")).encode())
    assert ours.verify(good, kind="access", now=NOW).sub == "user-1"


@pytest.mark.parametrize("aud", ["api", ["api"], 1])
def test_audience_present_where_none_is_configured_is_refused(aud: Any) -> None:
    assert_refused(codec(), sign_raw(HEADER, json.dumps(claims(aud=aud)).encode()))


@pytest.mark.parametrize(
    "crit",
    [["exp"], ["b64"], [], "b64", [1]],
)
def test_crit_header_is_refused(crit: Any) -> None:
    """RFC 7515 §4.1.11: otpcore understands no extension (pyjwt < 2.11 ignores ``crit``)."""
    header = {**HEADER, "crit": crit, "exp": T0}
    assert_refused(codec(), sign_raw(header, json.dumps(claims()).encode()))


def test_detached_payload_header_is_refused() -> None:
    header = {**HEADER, "b64": False, "crit": ["b64"]}
    signing_input = f"{b64(json.dumps(header).encode())}.{json.dumps(claims())}"
    mac = hmac.new(SECRET, signing_input.encode(), hashlib.sha256).digest()
    assert_refused(codec(), f"{b64(json.dumps(header).encode())}..{b64(mac)}")


def test_codec_uses_pyjwt_signature_layer_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The claims layer (``PyJWT``) is not used: the private ``_jws`` hook needed it."""

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("otpcore must not go through PyJWT")

    monkeypatch.setattr(jwt.api_jwt.PyJWT, "__init__", forbidden)
    monkeypatch.setattr(jwt.api_jwt.PyJWT, "encode", forbidden)
    monkeypatch.setattr(jwt.api_jwt.PyJWT, "decode_complete", forbidden)
    target = codec()
    token = target.issue(kind="access", subject="u", sid="s", jti="j", auth_time=T0, now=NOW)
    assert target.verify(token, kind="access", now=NOW).sub == "u"


# -- the reference README's placeholder secret ---------------------------------------------


def test_reference_readme_placeholder_secret_is_refused_outside_developer_mode() -> None:
    for secret in (PLACEHOLDER, PLACEHOLDER.encode(), f" {PLACEHOLDER}\n"):
        with pytest.raises(ValueError, match="placeholder"):
            Policy(secret=secret)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="placeholder"):
            TokenCodec(KeySet.symmetric(secret), Policy(secret=SECRET))
    dev = Policy(secret=PLACEHOLDER.encode(), developer_mode=True)
    TokenCodec(KeySet.symmetric(PLACEHOLDER), dev)
