"""One regression test per known JWT attack (in the style of pyjwt's tests/test_advisory.py).

Every refusal must be a ``TokenInvalid`` (or ``TokenExpired``) with a fixed message: no other
exception type, and no pyjwt text, ever reaches the caller.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from otpcore.domain.errors import TokenExpired, TokenInvalid
from otpcore.domain.policy import Policy
from otpcore.domain.records import TokenKind
from otpcore.tokens import KeySet, SigningKey, TokenCodec, VerificationKey

SECRET = b"k" * 32
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
T0 = int(NOW.timestamp())
# The refresh-token key, derived here independently of the codec (RFC 5869 HKDF-SHA256).
REFRESH_KEY = HKDF(
    algorithm=SHA256(), length=32, salt=None, info=b"otpcore refresh-token signing v1"
).derive(SECRET)
GENERIC = r"^Invalid token\.$"
WRONG_KIND = r"^Token has the wrong type\.$"
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def codec() -> TokenCodec:
    return TokenCodec(KeySet.symmetric(SECRET), Policy(secret=SECRET))


@pytest.fixture(scope="module")
def rotating_codec() -> TokenCodec:
    """Several keys: the verifier must pick one by ``kid`` before checking anything."""
    return TokenCodec(
        KeySet(
            SigningKey(algorithm="HS256", key=SECRET, kid="current"),
            [VerificationKey(algorithm="HS256", key=b"o" * 32, kid="previous")],
        ),
        Policy(secret=SECRET),
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


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
    return {name: value for name, value in payload.items() if value is not None}


def forge(payload: dict[str, Any], *, typ: str = "at+jwt", key: bytes = SECRET, **hdr: Any) -> str:
    """A correctly HS256-signed token with any header and payload."""
    return jwt.encode(payload, key, algorithm="HS256", headers={"typ": typ, **hdr})


def sign_raw(header: dict[str, Any], payload: dict[str, Any], key: bytes = SECRET) -> str:
    """HS256 by hand, for headers and claims that pyjwt refuses to encode."""
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def issue(codec: TokenCodec, kind: TokenKind = "access") -> str:
    return codec.issue(kind=kind, subject="user-1", sid="sid-1", jti="jti-1", auth_time=T0, now=NOW)


def assert_refused(codec: TokenCodec, token: str, kind: TokenKind = "access") -> None:
    with pytest.raises(TokenInvalid, match=GENERIC) as caught:
        codec.verify(token, kind=kind, now=NOW)
    assert type(caught.value) is TokenInvalid
    # `from None`: no pyjwt exception is chained for a log or a debug page to show.
    error = caught.value
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


def test_control_forged_tokens_verify_when_well_formed(codec: TokenCodec) -> None:
    """Guards every test below: `forge` and `claims` produce a token the codec accepts."""
    assert codec.verify(forge(claims()), kind="access", now=NOW).sub == "user-1"


def test_tampered_signature(codec: TokenCodec) -> None:
    head, body, signature = issue(codec).split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    assert_refused(codec, f"{head}.{body}.{flipped}")
    assert_refused(codec, f"{head}.{body}.")


def test_tampered_payload(codec: TokenCodec) -> None:
    head, _, signature = issue(codec).split(".")
    assert_refused(codec, f"{head}.{b64json(claims(sub='admin'))}.{signature}")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none(codec: TokenCodec, alg: str) -> None:
    head = b64json({"alg": alg, "typ": "at+jwt"})
    body = b64json(claims())
    real_signature = issue(codec).split(".")[2]
    assert_refused(codec, f"{head}.{body}.")
    assert_refused(codec, f"{head}.{body}.{real_signature}")


def test_hs256_signed_with_rsa_public_key_pem_key_confusion(rsa_key: rsa.RSAPrivateKey) -> None:
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    codecs = [
        TokenCodec(KeySet(SigningKey(algorithm="RS256", key=rsa_key)), Policy(secret=SECRET)),
        TokenCodec(
            KeySet(
                SigningKey(algorithm="RS256", key=rsa_key, kid="rsa"),
                [VerificationKey(algorithm="HS256", key=SECRET, kid="hs")],
            ),
            Policy(secret=SECRET),
        ),
    ]
    for target in codecs:
        # pyjwt refuses a PEM as an HMAC key, so the attacker's token is signed by hand.
        signing_input = (
            f"{b64json({'alg': 'HS256', 'typ': 'at+jwt', 'kid': 'rsa'})}.{b64json(claims())}"
        )
        mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
        assert_refused(target, f"{signing_input}.{b64(mac)}")
        assert target.verify(issue(target), kind="access", now=NOW).sub == "user-1"


def test_rs256_token_presented_to_hs256_keyset(
    codec: TokenCodec, rsa_key: rsa.RSAPrivateKey
) -> None:
    assert_refused(
        codec, jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"typ": "at+jwt"})
    )


def test_embedded_jwk_header_is_not_trusted() -> None:
    """CVE-2018-0114 style: the attacker signs with their own key and ships it in the header."""
    ours = ed25519.Ed25519PrivateKey.generate()
    attacker = ed25519.Ed25519PrivateKey.generate()
    target = TokenCodec(KeySet(SigningKey(algorithm="EdDSA", key=ours)), Policy(secret=SECRET))
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(attacker.public_key()))
    token = jwt.encode(claims(), attacker, algorithm="EdDSA", headers={"typ": "at+jwt", "jwk": jwk})
    assert_refused(target, token)


def test_wrong_kid(rotating_codec: TokenCodec) -> None:
    assert_refused(rotating_codec, forge(claims(), kid="unknown"))
    assert_refused(rotating_codec, forge(claims()))  # several keys and no kid: no guessing
    assert_refused(rotating_codec, forge(claims(), kid="previous"))  # names the other key
    assert_refused(rotating_codec, sign_raw({"alg": "HS256", "kid": ["current"]}, claims()))


def test_kid_mismatch_with_a_single_key() -> None:
    single = TokenCodec(
        KeySet(SigningKey(algorithm="HS256", key=SECRET, kid="only")), Policy(secret=SECRET)
    )
    assert single.verify(forge(claims(), kid="only"), kind="access", now=NOW).sub == "user-1"
    assert_refused(single, forge(claims(), kid="other"))


def test_expired_token(codec: TokenCodec) -> None:
    token = issue(codec)
    # Issue 10: the default leeway is 30 s (clock skew between hosts).
    leeway = Policy(secret=SECRET).leeway
    with pytest.raises(TokenExpired, match=r"^Token has expired\.$") as caught:
        codec.verify(token, kind="access", now=NOW + timedelta(hours=1) + leeway)
    assert caught.value.__cause__ is None


def test_nbf_in_the_future(codec: TokenCodec) -> None:
    token = forge(claims(nbf=T0 + 60))
    with pytest.raises(TokenInvalid, match=r"^Token is not yet valid\.$"):
        codec.verify(token, kind="access", now=NOW)


def test_iat_in_the_future(codec: TokenCodec) -> None:
    with pytest.raises(TokenInvalid, match=r"^Token is not yet valid\.$"):
        codec.verify(forge(claims(iat=T0 + 60)), kind="access", now=NOW)


def test_wrong_issuer() -> None:
    ours = TokenCodec(KeySet.symmetric(SECRET), Policy(secret=SECRET, issuer="https://ours"))
    theirs = TokenCodec(KeySet.symmetric(SECRET), Policy(secret=SECRET, issuer="https://theirs"))
    assert_refused(ours, issue(theirs))
    assert_refused(ours, sign_raw({"alg": "HS256", "typ": "at+jwt"}, claims(iss=["https://ours"])))


def test_wrong_audience() -> None:
    ours = TokenCodec(KeySet.symmetric(SECRET), Policy(secret=SECRET, audience="api"))
    theirs = TokenCodec(KeySet.symmetric(SECRET), Policy(secret=SECRET, audience="billing"))
    assert_refused(ours, issue(theirs))
    assert_refused(ours, forge(claims(aud=["billing", "api"])))  # only the exact audience


def test_audience_token_presented_where_no_audience_is_configured(codec: TokenCodec) -> None:
    assert_refused(codec, forge(claims(aud="api")))


def test_refresh_token_presented_as_access(codec: TokenCodec) -> None:
    # Issue 10: signed with the derived refresh key, which access verification never uses
    # (it was "wrong type" while both kinds shared a key).
    assert_refused(codec, issue(codec, "refresh"), "access")


def test_access_token_presented_as_refresh(codec: TokenCodec) -> None:
    assert_refused(codec, issue(codec, "access"), "refresh")


def test_refresh_token_is_signed_with_the_derived_key(codec: TokenCodec) -> None:
    token = issue(codec, "refresh")
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "rt+jwt"}
    jwt.PyJWS().decode(token, REFRESH_KEY, algorithms=["HS256"])
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.PyJWS().decode(token, SECRET, algorithms=["HS256"])
    assert (
        codec.verify(
            forge(claims(type="refresh", gen=0), typ="rt+jwt", key=REFRESH_KEY),
            kind="refresh",
            now=NOW,
        ).gen
        == 0
    )
    assert_refused(codec, forge(claims(type="refresh", gen=0), typ="rt+jwt"), "refresh")


@pytest.mark.parametrize(
    ("typ", "claim"),
    [("at+jwt", "refresh"), ("rt+jwt", "access"), ("JWT", "access"), ("JWT", "refresh")],
)
@pytest.mark.parametrize("kind", ["access", "refresh"])
def test_typ_header_and_type_claim_must_both_match(
    codec: TokenCodec, typ: str, claim: str, kind: TokenKind
) -> None:
    # Signed with the key of the kind expected, so only the kind is wrong.
    key, gen = (SECRET, None) if kind == "access" else (REFRESH_KEY, 0)
    with pytest.raises(TokenInvalid, match=WRONG_KIND):
        codec.verify(forge(claims(type=claim, gen=gen), typ=typ, key=key), kind=kind, now=NOW)


def test_missing_typ_header(codec: TokenCodec) -> None:
    with pytest.raises(TokenInvalid, match=WRONG_KIND):
        codec.verify(sign_raw({"alg": "HS256"}, claims()), kind="access", now=NOW)


def test_token_signed_with_another_secret(codec: TokenCodec) -> None:
    other = TokenCodec(KeySet.symmetric(b"z" * 32), Policy(secret=b"z" * 32))
    assert_refused(codec, issue(other))


@pytest.mark.parametrize("missing", ["sub", "iat", "nbf", "exp", "jti", "type", "sid", "auth_time"])
def test_missing_reserved_claim(codec: TokenCodec, missing: str) -> None:
    payload = claims()
    del payload[missing]
    with pytest.raises(TokenInvalid):
        codec.verify(forge(payload), kind="access", now=NOW)


@pytest.mark.parametrize(
    "override",
    [
        {"exp": str(T0 + 3600)},
        {"exp": T0 + 3600.5},
        {"exp": True},
        {"iat": str(T0)},
        {"nbf": [T0]},
        {"sid": 1},
        {"sub": 1},
        {"jti": {"x": 1}},
        {"auth_time": "yesterday"},
        {"auth_time": True},
        {"type": ["access"]},
    ],
)
def test_claim_of_the_wrong_json_type(codec: TokenCodec, override: dict[str, Any]) -> None:
    with pytest.raises(TokenInvalid):
        codec.verify(forge(claims(**override)), kind="access", now=NOW)


GARBAGE = [
    "",
    ".",
    "..",
    "...",
    "a.b.c",
    "not a token",
    "Bearer x.y.z",
    "\x00",
    "ééé.ééé.ééé",
    "\ud800.\ud800.\ud800",  # lone surrogates cannot even be UTF-8 encoded
    "eyJhbGciOiJIUzI1NiJ9",
    "eyJhbGciOiJIUzI1NiJ9..",
    "W10.e30.",  # header is a JSON list
    "bnVsbA.e30.",  # header is null
    f"{b64json({'alg': 'HS256', 'kid': 'current'})}.!!!!.AAAA",
    # A key is chosen from the header segment alone; the rest must still be refused.
    b64json({"alg": "HS256", "kid": "current"}),
    f"{b64json({'alg': 'HS256', 'kid': 'current'})}.",
    f"{b64json({'alg': 'HS256', 'kid': 'current'})}..",
    f"{b64json({'alg': 'HS256', 'kid': 'current'})}.{b64json(claims())}",
    f"{b64json({'alg': 'HS256', 'kid': 'current'})}.{b64json(claims())}.!!!!",
    f"{b64json({'alg': 'HS256', 'kid': 'current'})}.{b64json(claims())}.AAAA.AAAA",
    "a" * 20_000,
    f"{b64json({'alg': 'HS256', 'typ': 'at+jwt'})}.{'A' * 20_000}.",
]


@pytest.mark.parametrize("token", GARBAGE)
def test_garbage_is_refused_with_token_invalid_only(
    codec: TokenCodec, rotating_codec: TokenCodec, token: str
) -> None:
    assert_refused(codec, token)
    assert_refused(rotating_codec, token)


def test_oversized_token_is_refused_even_when_correctly_signed(codec: TokenCodec) -> None:
    token = codec.issue(
        kind="access",
        subject="user-1",
        sid="sid-1",
        jti="jti-1",
        auth_time=T0,
        now=NOW,
        extra={"blob": "x" * 20_000},
    )
    assert_refused(codec, token)


def test_non_string_token_is_refused(codec: TokenCodec) -> None:
    for value in (None, 1, b"a.b.c", ["a", "b", "c"]):
        assert_refused(codec, value)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    token=st.one_of(
        st.text(),
        st.text(alphabet=B64URL + ".=", max_size=200),
        st.builds(
            lambda header, rest: f"{b64json(header)}.{rest}",
            st.dictionaries(
                st.sampled_from(["alg", "typ", "kid", "crit", "b64", "jwk"]),
                st.recursive(
                    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: (
                        st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=4), inner, max_size=3)
                    ),
                    max_leaves=6,
                ),
            ),
            st.text(alphabet=B64URL + ".", max_size=80),
        ),
    )
)
def test_arbitrary_text_only_ever_raises_token_invalid(token: str) -> None:
    for target in (
        TokenCodec(KeySet.symmetric(SECRET), Policy(secret=SECRET)),
        ROTATING,
    ):
        with pytest.raises(TokenInvalid):
            target.verify(token, kind="access", now=NOW)


ROTATING = TokenCodec(
    KeySet(
        SigningKey(algorithm="HS256", key=SECRET, kid="current"),
        [VerificationKey(algorithm="HS256", key=b"o" * 32, kid="previous")],
    ),
    Policy(secret=SECRET),
)
