"""Token issue and verification, key sets and JWKS (otpcore.tokens)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from otpcore.domain.errors import ReservedClaimError, TokenExpired, TokenInvalid
from otpcore.domain.policy import Policy
from otpcore.domain.records import RESERVED_CLAIMS, Claims
from otpcore.tokens import KeySet, SigningKey, TokenCodec, VerificationKey

SECRET = b"k" * 32
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
T0 = int(NOW.timestamp())
AUTH_TIME = T0 - 30.0
PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
ASYMMETRIC = ["RS256", "ES256", "EdDSA"]

KeyFactory = Callable[[], PrivateKeyTypes]
FACTORIES: dict[str, KeyFactory] = {
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
}


@pytest.fixture(scope="module")
def private_keys() -> dict[str, list[PrivateKeyTypes]]:
    """Two fresh private keys per asymmetric algorithm (RSA generation is slow: once)."""
    return {alg: [factory(), factory()] for alg, factory in FACTORIES.items()}


def policy(**overrides: Any) -> Policy:
    return Policy(secret=SECRET, **overrides)


def keyset_for(algorithm: str, private_keys: dict[str, list[PrivateKeyTypes]]) -> KeySet:
    if algorithm == "HS256":
        return KeySet.symmetric(SECRET)
    return KeySet(SigningKey(algorithm=algorithm, key=private_keys[algorithm][0]))


def issue(codec: TokenCodec, *, kind: Any = "access", now: datetime = NOW, **kw: Any) -> str:
    args: dict[str, Any] = {"subject": "user-1", "sid": "sid-1", "jti": "jti-1"}
    args.update(kw)
    return codec.issue(kind=kind, auth_time=AUTH_TIME, now=now, **args)


def pem(key: PrivateKeyTypes, *, public: bool) -> bytes:
    if public:
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# -- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["HS256", *ASYMMETRIC])
@pytest.mark.parametrize(
    ("kind", "typ", "lifetime"), [("access", "at+jwt", 3600), ("refresh", "rt+jwt", 7 * 86400)]
)
def test_round_trip(
    algorithm: str,
    kind: Any,
    typ: str,
    lifetime: int,
    private_keys: dict[str, list[PrivateKeyTypes]],
) -> None:
    codec = TokenCodec(keyset_for(algorithm, private_keys), policy())
    token = issue(codec, kind=kind)

    header = jwt.get_unverified_header(token)
    # Refresh tokens are HS256 under the derived, never-published key, whatever the key set.
    assert header == {"alg": algorithm if kind == "access" else "HS256", "typ": typ}
    assert codec.verify(token, kind=kind, now=NOW) == Claims(
        sub="user-1",
        jti="jti-1",
        sid="sid-1",
        type=kind,
        iat=T0,
        nbf=T0,
        exp=T0 + lifetime,
        auth_time=AUTH_TIME,
        gen=0 if kind == "refresh" else None,
        extra={},
    )


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
def test_pem_keys_load_and_verify(
    algorithm: str, private_keys: dict[str, list[PrivateKeyTypes]]
) -> None:
    key = private_keys[algorithm][0]
    signer = TokenCodec(
        KeySet(SigningKey(algorithm=algorithm, key=pem(key, public=False).decode())), policy()
    )
    token = issue(signer)
    verifier_keys = KeySet(
        SigningKey(algorithm=algorithm, key=private_keys[algorithm][1], kid="other"),
        [VerificationKey(algorithm=algorithm, key=pem(key, public=True), kid="pem")],
    )
    # The signer wrote no kid, and the verifier has two keys: it cannot choose.
    with pytest.raises(TokenInvalid):
        TokenCodec(verifier_keys, policy()).verify(token, kind="access", now=NOW)
    kid_signer = TokenCodec(
        KeySet(SigningKey(algorithm=algorithm, key=pem(key, public=False), kid="pem")), policy()
    )
    claims = TokenCodec(verifier_keys, policy()).verify(issue(kid_signer), kind="access", now=NOW)
    assert claims.sub == "user-1"


def test_str_secret_equals_bytes_secret() -> None:
    token = issue(TokenCodec(KeySet.symmetric(SECRET.decode()), policy()))
    assert TokenCodec(KeySet.symmetric(SECRET), policy()).verify(token, kind="access", now=NOW)


@pytest.mark.parametrize(("algorithm", "length"), [("HS384", 48), ("HS512", 64)])
def test_longer_hmac_algorithms_round_trip(algorithm: str, length: int) -> None:
    codec = TokenCodec(KeySet.symmetric(b"s" * length, algorithm), policy())
    token = issue(codec)
    assert jwt.get_unverified_header(token)["alg"] == algorithm
    assert codec.verify(token, kind="access", now=NOW).sub == "user-1"


def test_extra_claims_round_trip_and_are_read_only() -> None:
    codec = TokenCodec(KeySet.symmetric(SECRET), policy())
    extra = {"role": "admin", "scopes": ["read", "write"], "org": {"id": 7}}
    claims = codec.verify(issue(codec, extra=extra), kind="access", now=NOW)
    assert claims.extra == extra
    assert extra == {"role": "admin", "scopes": ["read", "write"], "org": {"id": 7}}
    with pytest.raises(TypeError):
        claims.extra["role"] = "root"  # type: ignore[index]


def test_auth_time_is_kept_to_the_millisecond() -> None:
    codec = TokenCodec(KeySet.symmetric(SECRET), policy())
    token = codec.issue(
        kind="access", subject="u", sid="s", jti="j", auth_time=1767268800.1234567, now=NOW
    )
    assert jwt.decode(token, options={"verify_signature": False})["auth_time"] == 1767268800.123
    assert codec.verify(token, kind="access", now=NOW).auth_time == 1767268800.123


def test_iat_truncates_fractional_now() -> None:
    codec = TokenCodec(KeySet.symmetric(SECRET), policy())
    claims = codec.verify(
        issue(codec, now=NOW + timedelta(microseconds=999_999)), kind="access", now=NOW
    )
    assert (claims.iat, claims.nbf, claims.exp) == (T0, T0, T0 + 3600)


def test_naive_now_is_refused() -> None:
    codec = TokenCodec(KeySet.symmetric(SECRET), policy())
    with pytest.raises(ValueError, match="timezone-aware"):
        issue(codec, now=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="timezone-aware"):
        codec.verify(issue(codec), kind="access", now=NOW.replace(tzinfo=None))


def test_unknown_kind_is_a_programming_error() -> None:
    codec = TokenCodec(KeySet.symmetric(SECRET), policy())
    with pytest.raises(ValueError, match="kind"):
        issue(codec, kind="id")
    with pytest.raises(ValueError, match="kind"):
        codec.verify(issue(codec), kind="id", now=NOW)  # type: ignore[arg-type]


# -- reserved claims and Claims --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(RESERVED_CLAIMS))
def test_extra_may_not_set_a_reserved_claim(name: str) -> None:
    codec = TokenCodec(KeySet.symmetric(SECRET), policy())
    with pytest.raises(ReservedClaimError) as caught:
        issue(codec, extra={"role": "admin", name: "forged"})
    assert caught.value.names == frozenset({name})


def test_reserved_claim_error_lists_every_clash() -> None:
    codec = TokenCodec(KeySet.symmetric(SECRET), policy())
    with pytest.raises(ReservedClaimError) as caught:
        issue(codec, extra={"sub": "admin", "exp": 1, "ok": True})
    assert caught.value.names == frozenset({"sub", "exp"})


def test_reserved_claims_are_exactly_the_documented_set() -> None:
    assert (
        frozenset(
            {
                "sub",
                "iat",
                "nbf",
                "exp",
                "jti",
                "type",
                "sid",
                "iss",
                "aud",
                "auth_time",
                "gen",
                "client_id",
            }
        )
        == RESERVED_CLAIMS
    )


def test_claims_as_dict_is_the_token_payload_without_iss_and_aud() -> None:
    codec = TokenCodec(KeySet.symmetric(SECRET), policy(issuer="https://a", audience="api"))
    token = issue(codec, extra={"role": "admin"})
    payload = jwt.decode(token, options={"verify_signature": False})
    del payload["iss"], payload["aud"]
    assert codec.verify(token, kind="access", now=NOW).as_dict() == payload


def test_claims_as_dict_reserved_fields_win_over_extra() -> None:
    claims = Claims(
        sub="u",
        jti="j",
        sid="s",
        type="access",
        iat=1,
        nbf=1,
        exp=2,
        auth_time=0.5,
        extra={"sub": "forged", "role": "x"},
    )
    assert claims.as_dict() == {
        "sub": "u",
        "jti": "j",
        "sid": "s",
        "type": "access",
        "iat": 1,
        "nbf": 1,
        "exp": 2,
        "auth_time": 0.5,
        "role": "x",
    }


def test_claims_is_frozen() -> None:
    claims = Claims(sub="u", jti="j", sid="s", type="access", iat=1, nbf=1, exp=2, auth_time=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        claims.sub = "v"  # type: ignore[misc]
    assert claims.extra == {}


# -- times and leeway --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leeway", "after_exp", "expired"),
    [
        (0, -0.001, False),
        (0, 0, True),
        (5, 4.999, False),
        (5, 5, True),
    ],
)
def test_exp_boundary_with_leeway(leeway: int, after_exp: float, expired: bool) -> None:
    codec = TokenCodec(KeySet.symmetric(SECRET), policy(leeway=timedelta(seconds=leeway)))
    token = issue(codec)
    at = NOW + timedelta(hours=1, seconds=after_exp)
    if expired:
        with pytest.raises(TokenExpired, match=r"^Token has expired\.$"):
            codec.verify(token, kind="access", now=at)
    else:
        assert codec.verify(token, kind="access", now=at).exp == T0 + 3600


@pytest.mark.parametrize(
    ("leeway", "before_nbf", "valid"),
    [
        (0, 0, True),
        (0, 0.001, False),
        (5, 5, True),
        (5, 5.001, False),
    ],
)
def test_nbf_boundary_with_leeway(leeway: int, before_nbf: float, valid: bool) -> None:
    codec = TokenCodec(KeySet.symmetric(SECRET), policy(leeway=timedelta(seconds=leeway)))
    # iat far in the past, so only nbf can decide.
    token = forge_hs256({**payload_at(T0 - 100), "nbf": T0}, headers={"typ": "at+jwt"})
    at = NOW - timedelta(seconds=before_nbf)
    if valid:
        assert codec.verify(token, kind="access", now=at).nbf == T0
    else:
        with pytest.raises(TokenInvalid, match=r"^Token is not yet valid\.$"):
            codec.verify(token, kind="access", now=at)


@pytest.mark.parametrize(
    ("leeway", "before_iat", "valid"),
    [
        (0, 0, True),
        (0, 0.001, False),
        (5, 5, True),
        (5, 5.001, False),
    ],
)
def test_iat_boundary_with_leeway(leeway: int, before_iat: float, valid: bool) -> None:
    codec = TokenCodec(KeySet.symmetric(SECRET), policy(leeway=timedelta(seconds=leeway)))
    # nbf far in the past, so only iat can decide.
    token = forge_hs256({**payload_at(T0), "nbf": T0 - 100}, headers={"typ": "at+jwt"})
    at = NOW - timedelta(seconds=before_iat)
    if valid:
        assert codec.verify(token, kind="access", now=at).iat == T0
    else:
        with pytest.raises(TokenInvalid, match=r"^Token is not yet valid\.$"):
            codec.verify(token, kind="access", now=at)


def payload_at(iat: int, lifetime: int = 3600) -> dict[str, Any]:
    return {
        "sub": "user-1",
        "iat": iat,
        "nbf": iat,
        "exp": iat + lifetime,
        "jti": "jti-1",
        "type": "access",
        "sid": "sid-1",
        "auth_time": AUTH_TIME,
    }


def forge_hs256(payload: dict[str, Any], headers: dict[str, Any]) -> str:
    return jwt.encode(payload, SECRET, algorithm="HS256", headers=headers)


# -- iss and aud -------------------------------------------------------------------------------


def test_iss_and_aud_are_set_when_configured() -> None:
    codec = TokenCodec(KeySet.symmetric(SECRET), policy(issuer="https://auth", audience="api"))
    token = issue(codec)
    payload = jwt.decode(token, options={"verify_signature": False})
    assert (payload["iss"], payload["aud"]) == ("https://auth", "api")
    assert codec.verify(token, kind="access", now=NOW).sub == "user-1"


def test_iss_and_aud_are_absent_when_not_configured() -> None:
    token = issue(TokenCodec(KeySet.symmetric(SECRET), policy()))
    assert {"iss", "aud"}.isdisjoint(jwt.decode(token, options={"verify_signature": False}))


@pytest.mark.parametrize("setting", ["issuer", "audience"])
def test_configured_iss_or_aud_is_required(setting: str) -> None:
    bare = issue(TokenCodec(KeySet.symmetric(SECRET), policy()))
    strict = TokenCodec(KeySet.symmetric(SECRET), policy(**{setting: "x"}))
    with pytest.raises(TokenInvalid, match=r"^Invalid token\.$"):
        strict.verify(bare, kind="access", now=NOW)


# -- key sets, rotation, validation ----------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["HS256", *ASYMMETRIC])
def test_rotation_old_key_verifies_new_key_signs(
    algorithm: str, private_keys: dict[str, list[PrivateKeyTypes]]
) -> None:
    if algorithm == "HS256":
        old_key: Any = SECRET
        new_key: Any = b"n" * 32
    else:
        old_key, new_key = private_keys[algorithm]
    old = TokenCodec(KeySet(SigningKey(algorithm=algorithm, key=old_key, kid="2025")), policy())
    rotated = TokenCodec(
        KeySet(
            SigningKey(algorithm=algorithm, key=new_key, kid="2026"),
            [VerificationKey(algorithm=algorithm, key=old_key, kid="2025")],
        ),
        policy(),
    )
    old_token, new_token = issue(old), issue(rotated)

    assert jwt.get_unverified_header(new_token)["kid"] == "2026"
    assert rotated.verify(old_token, kind="access", now=NOW).sub == "user-1"
    assert rotated.verify(new_token, kind="access", now=NOW).sub == "user-1"
    with pytest.raises(TokenInvalid):
        old.verify(new_token, kind="access", now=NOW)


def test_unknown_kid_is_refused(private_keys: dict[str, list[PrivateKeyTypes]]) -> None:
    first, second = private_keys["ES256"]
    stranger = TokenCodec(KeySet(SigningKey(algorithm="ES256", key=second, kid="c")), policy())
    codec = TokenCodec(
        KeySet(
            SigningKey(algorithm="ES256", key=first, kid="a"),
            [VerificationKey(algorithm="ES256", key=second.public_key(), kid="b")],
        ),
        policy(),
    )
    with pytest.raises(TokenInvalid, match=r"^Invalid token\.$"):
        codec.verify(issue(stranger), kind="access", now=NOW)


def test_mixed_algorithms_are_pinned_per_kid(
    private_keys: dict[str, list[PrivateKeyTypes]],
) -> None:
    hs_signer = TokenCodec(KeySet(SigningKey(algorithm="HS256", key=SECRET, kid="hs")), policy())
    codec = TokenCodec(
        KeySet(
            SigningKey(algorithm="EdDSA", key=private_keys["EdDSA"][0], kid="ed"),
            [VerificationKey(algorithm="HS256", key=SECRET, kid="hs")],
        ),
        policy(),
    )
    assert codec.verify(issue(hs_signer), kind="access", now=NOW).sub == "user-1"
    assert codec.verify(issue(codec), kind="access", now=NOW).sub == "user-1"


@pytest.mark.parametrize(
    ("signing", "verification", "message"),
    [
        (SigningKey(algorithm="none", key=SECRET), [], "algorithm must be one of"),
        (SigningKey(algorithm="PS256", key=SECRET), [], "algorithm must be one of"),
        (SigningKey(algorithm="hs256", key=SECRET), [], "algorithm must be one of"),
        (
            SigningKey(algorithm="HS256", key=SECRET),
            [VerificationKey(algorithm="HS256", key=b"o" * 32)],
            "every key needs a kid",
        ),
        (
            SigningKey(algorithm="HS256", key=SECRET, kid="a"),
            [VerificationKey(algorithm="HS256", key=b"o" * 32)],
            "every key needs a kid",
        ),
        (
            SigningKey(algorithm="HS256", key=SECRET, kid="a"),
            [VerificationKey(algorithm="HS256", key=b"o" * 32, kid="a")],
            "unique",
        ),
        (SigningKey(algorithm="HS256", key=SECRET, kid=""), [], "kid"),
        (SigningKey(algorithm="HS256", key=b""), [], "HS256"),
    ],
)
def test_keyset_refuses_bad_configuration(
    signing: SigningKey, verification: list[VerificationKey], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        KeySet(signing, verification)


def test_keyset_refuses_mismatched_keys(private_keys: dict[str, list[PrivateKeyTypes]]) -> None:
    rsa_key = private_keys["RS256"][0]
    cases: list[tuple[SigningKey, str]] = [
        (SigningKey(algorithm="ES256", key=rsa_key), "ES256"),
        (SigningKey(algorithm="EdDSA", key=private_keys["ES256"][0]), "EdDSA"),
        (SigningKey(algorithm="ES256", key=ec.generate_private_key(ec.SECP384R1())), "curve"),
        (SigningKey(algorithm="RS256", key=rsa_key.public_key()), "private key"),  # type: ignore[arg-type]
        (SigningKey(algorithm="HS256", key=rsa_key), "secret"),
        (SigningKey(algorithm="HS256", key=pem(rsa_key, public=True)), "asymmetric"),
        (SigningKey(algorithm="RS256", key="not a pem"), "RS256"),
    ]
    for signing, message in cases:
        with pytest.raises(ValueError, match=message):
            KeySet(signing)


def test_keyset_refuses_short_rsa_keys() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the refusal is the point
    with pytest.raises(ValueError, match="2048"):
        KeySet(SigningKey(algorithm="RS256", key=weak))


def test_symmetric_refuses_asymmetric_algorithm() -> None:
    with pytest.raises(ValueError, match="symmetric"):
        KeySet.symmetric(SECRET, "RS256")


@pytest.mark.parametrize(("algorithm", "length"), [("HS256", 31), ("HS384", 47), ("HS512", 63)])
def test_short_hmac_secret_refused_outside_developer_mode(algorithm: str, length: int) -> None:
    keys = KeySet.symmetric(b"s" * length, algorithm)
    with pytest.raises(ValueError, match="RFC 7518"):
        TokenCodec(keys, policy())


def test_short_hmac_secret_in_developer_mode_works_without_warnings() -> None:
    # pytest runs with filterwarnings=error: an InsecureKeyLengthWarning would fail this test.
    dev = Policy(secret=b"dev", developer_mode=True)
    codec = TokenCodec(KeySet.symmetric(b"dev"), dev)
    assert codec.verify(issue(codec), kind="access", now=NOW).sub == "user-1"


def test_signing_key_repr_hides_the_secret() -> None:
    assert "kkkk" not in repr(SigningKey(algorithm="HS256", key=SECRET))
    assert "kkkk" not in repr(VerificationKey(algorithm="HS256", key=SECRET, kid="a"))


# -- JWKS --------------------------------------------------------------------------------------


def test_jwks_never_publishes_symmetric_secrets() -> None:
    assert KeySet.symmetric(SECRET).jwks() == {"keys": []}
    assert KeySet(
        SigningKey(algorithm="HS256", key=SECRET, kid="a"),
        [VerificationKey(algorithm="HS384", key=b"s" * 48, kid="b")],
    ).jwks() == {"keys": []}


@pytest.mark.parametrize(
    ("algorithm", "kty", "crv"),
    [("RS256", "RSA", None), ("ES256", "EC", "P-256"), ("EdDSA", "OKP", "Ed25519")],
)
def test_jwks_publishes_public_keys_that_verify_tokens(
    algorithm: str,
    kty: str,
    crv: str | None,
    private_keys: dict[str, list[PrivateKeyTypes]],
) -> None:
    key = private_keys[algorithm][0]
    keys = KeySet(SigningKey(algorithm=algorithm, key=key, kid="k1"))
    jwks = keys.jwks()

    [jwk] = jwks["keys"]
    assert PRIVATE_JWK_MEMBERS.isdisjoint(jwk)
    assert (jwk["kty"], jwk.get("crv"), jwk["alg"], jwk["kid"], jwk["use"]) == (
        kty,
        crv,
        algorithm,
        "k1",
        "sig",
    )
    token = issue(TokenCodec(keys, policy()))
    pyjwk = jwt.PyJWK(jwks["keys"][0])
    assert pyjwk.key_id == "k1"
    payload = jwt.decode(
        token,
        pyjwk.key,  # the key object, not the PyJWK: jwt.decode takes a PyJWK only from 2.9
        algorithms=[algorithm],
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert payload["sub"] == "user-1"


def test_jwks_lists_every_asymmetric_verification_key(
    private_keys: dict[str, list[PrivateKeyTypes]],
) -> None:
    keys = KeySet(
        SigningKey(algorithm="RS256", key=private_keys["RS256"][1], kid="new"),
        [
            VerificationKey(algorithm="RS256", key=private_keys["RS256"][0], kid="old"),
            VerificationKey(algorithm="HS256", key=SECRET, kid="hs"),
            VerificationKey(algorithm="EdDSA", key=private_keys["EdDSA"][0], kid="ed"),
        ],
    )
    jwks = keys.jwks()
    assert [(k["kid"], k["alg"]) for k in jwks["keys"]] == [
        ("new", "RS256"),
        ("old", "RS256"),
        ("ed", "EdDSA"),
    ]
    assert all(PRIVATE_JWK_MEMBERS.isdisjoint(k) for k in jwks["keys"])
    assert "key_ops" not in jwks["keys"][0]


# -- issue 10: refresh generations, the refresh key, expires_at, client_id -------------------


@pytest.mark.parametrize("generation", [0, 1, 41, 2**31 - 1])
def test_refresh_tokens_carry_their_generation(generation: int) -> None:
    codec = TokenCodec(KeySet.symmetric(SECRET), policy())
    token = issue(codec, kind="refresh", generation=generation)
    assert codec.verify(token, kind="refresh", now=NOW).gen == generation
    assert jwt.decode(token, options={"verify_signature": False})["gen"] == generation


def test_a_refresh_token_without_a_generation_is_generation_zero() -> None:
    codec = TokenCodec(KeySet.symmetric(SECRET), policy())
    assert codec.verify(issue(codec, kind="refresh"), kind="refresh", now=NOW).gen == 0


@pytest.mark.parametrize("generation", [-1, 2**31, True, 1.0])
def test_issue_refuses_a_generation_out_of_range(generation: Any) -> None:
    codec = TokenCodec(KeySet.symmetric(SECRET), policy())
    with pytest.raises(ValueError, match="generation"):
        issue(codec, kind="refresh", generation=generation)


def test_access_tokens_carry_no_generation() -> None:
    codec = TokenCodec(KeySet.symmetric(SECRET), policy())
    with pytest.raises(ValueError, match="refresh tokens only"):
        issue(codec, kind="access", generation=0)
    claims = codec.verify(issue(codec), kind="access", now=NOW)
    assert claims.gen is None
    assert "gen" not in claims.as_dict()


@pytest.mark.parametrize("algorithm", ["HS384", *ASYMMETRIC])
def test_refresh_tokens_use_the_derived_key_whatever_the_key_set(
    algorithm: str, private_keys: dict[str, list[PrivateKeyTypes]]
) -> None:
    keys = (
        KeySet.symmetric(b"h" * 48, "HS384")
        if algorithm == "HS384"
        else keyset_for(algorithm, private_keys)
    )
    codec = TokenCodec(keys, policy())
    token = issue(codec, kind="refresh", generation=2)
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "rt+jwt"}
    # Another key set over the same secret takes it: only the secret keys refresh tokens.
    assert (
        TokenCodec(KeySet.symmetric(SECRET), policy()).verify(token, kind="refresh", now=NOW).gen
        == 2
    )
    # Another secret does not.
    other = Policy(secret=b"o" * 32)
    with pytest.raises(TokenInvalid):
        TokenCodec(keys, other).verify(token, kind="refresh", now=NOW)


def test_the_refresh_key_is_not_the_secret_and_not_in_the_jwks(
    private_keys: dict[str, list[PrivateKeyTypes]],
) -> None:
    codec = TokenCodec(KeySet.symmetric(SECRET), policy())
    token = issue(codec, kind="refresh")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.PyJWS().decode(token, SECRET, algorithms=["HS256"])
    jwks = keyset_for("ES256", private_keys).jwks()
    assert all(key["kty"] != "oct" for key in jwks["keys"])


def test_expires_at_ends_a_token_earlier_never_later() -> None:
    codec = TokenCodec(KeySet.symmetric(SECRET), policy())
    early = issue(codec, kind="refresh", expires_at=NOW + timedelta(hours=2))
    assert codec.verify(early, kind="refresh", now=NOW).exp == T0 + 7200
    late = issue(codec, kind="refresh", expires_at=NOW + timedelta(days=365))
    assert codec.verify(late, kind="refresh", now=NOW).exp == T0 + 7 * 86400


def test_client_id_is_set_on_access_tokens_only() -> None:
    codec = TokenCodec(KeySet.symmetric(SECRET), policy(client_id="web-app"))
    access = codec.verify(issue(codec), kind="access", now=NOW)
    assert access.client_id == "web-app"
    assert access.as_dict()["client_id"] == "web-app"
    assert "client_id" not in access.extra
    refresh = codec.verify(issue(codec, kind="refresh"), kind="refresh", now=NOW)
    assert refresh.client_id is None
    plain = TokenCodec(KeySet.symmetric(SECRET), policy())
    assert plain.verify(issue(plain), kind="access", now=NOW).client_id is None
    with pytest.raises(ReservedClaimError):
        issue(codec, extra={"client_id": "forged"})
