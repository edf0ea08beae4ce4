"""The one secret rule (otpcore.domain.policy.check_secret), and that each user applies it."""

from __future__ import annotations

import pytest

from otpcore.domain.policy import HMAC_MIN_BYTES, MIN_SECRET_BYTES, Policy, check_secret
from otpcore.tokens import KeySet, SigningKey, TokenCodec, VerificationKey

SECRET = b"k" * 32
PLACEHOLDER = "your-secret-key-generate-with-openssl-rand-hex-32"


@pytest.mark.parametrize(("algorithm", "minimum"), [("HS256", 32), ("HS384", 48), ("HS512", 64)])
def test_minimum_is_the_hash_length(algorithm: str, minimum: int) -> None:
    assert HMAC_MIN_BYTES[algorithm] == minimum
    check_secret(b"s" * minimum, algorithm=algorithm, developer_mode=False)
    with pytest.raises(ValueError, match=rf"at least {minimum} bytes .* {algorithm} \(RFC 7518"):
        check_secret(b"s" * (minimum - 1), algorithm=algorithm, developer_mode=False)
    check_secret(b"s", algorithm=algorithm, developer_mode=True)


def test_default_algorithm_is_hs256_like_the_policy_secret() -> None:
    assert HMAC_MIN_BYTES["HS256"] == MIN_SECRET_BYTES
    check_secret(b"s" * 32, developer_mode=False)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        check_secret(b"s" * 31, developer_mode=False)


@pytest.mark.parametrize(("algorithm", "hex_bytes"), [("HS256", 32), ("HS384", 48), ("HS512", 64)])
def test_refusal_says_how_to_generate_one(algorithm: str, hex_bytes: int) -> None:
    for secret in (b"", b"short"):
        with pytest.raises(ValueError, match=rf"openssl rand -hex {hex_bytes}$"):
            check_secret(secret, algorithm=algorithm, developer_mode=False)


def test_str_counts_as_its_utf8_bytes() -> None:
    check_secret("é" * 16, developer_mode=False)  # 32 bytes, 16 characters
    with pytest.raises(ValueError, match="at least 32 bytes"):
        check_secret("s" * 31, developer_mode=False)


def test_unknown_algorithm_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="algorithm must be one of"):
        check_secret(SECRET, algorithm="RS256", developer_mode=False)


@pytest.mark.parametrize("secret", [PLACEHOLDER, PLACEHOLDER.encode(), f"{PLACEHOLDER}\n"])
def test_placeholder_refused_outside_developer_mode_only(secret: str | bytes) -> None:
    with pytest.raises(ValueError, match="placeholder from the reference README"):
        check_secret(secret, developer_mode=False)
    check_secret(secret, developer_mode=True)


def test_a_longer_secret_containing_the_placeholder_is_not_the_placeholder() -> None:
    check_secret(PLACEHOLDER + "-and-then-some-real-entropy", developer_mode=False)


@pytest.mark.parametrize("secret", [b"", b"s" * 31, PLACEHOLDER.encode()])
def test_policy_and_codec_give_the_rule_s_own_refusal(secret: bytes) -> None:
    """One rule: Policy, KeySet and TokenCodec refuse with check_secret's own message."""
    with pytest.raises(ValueError, match="openssl rand") as expected:
        check_secret(secret, developer_mode=False)
    with pytest.raises(ValueError, match="openssl rand") as policy:
        Policy(secret=secret)
    assert str(policy.value) == str(expected.value)
    with pytest.raises(ValueError, match="openssl rand") as codec:
        TokenCodec(KeySet.symmetric(secret), Policy(secret=SECRET))
    assert str(expected.value) in str(codec.value)


def test_codec_checks_every_hmac_key_not_only_the_signing_key() -> None:
    keys = KeySet(
        SigningKey(algorithm="HS256", key=SECRET, kid="new"),
        [VerificationKey(algorithm="HS512", key=b"s" * 63, kid="old")],
    )
    with pytest.raises(ValueError, match="at least 64 bytes outside developer mode for HS512"):
        TokenCodec(keys, Policy(secret=SECRET))
    TokenCodec(keys, Policy(secret=SECRET, developer_mode=True))
