"""The magic link's token and keyed hash (issue 9): pure functions of otpcore.domain.links."""

from __future__ import annotations

import secrets

import pytest

from otpcore.domain import limits as rules
from otpcore.domain.links import (
    LINK_SECRET_BITS,
    LinkParts,
    check_link_base,
    link_hash,
    link_url,
    new_link,
    parse_link,
)

SECRET = b"links-unit-secret-0123456789abcdef"
KEY = rules.challenge_key(SECRET, "a-challenge-id")


def test_a_link_draws_128_bits_from_the_injected_source() -> None:
    asked: list[int] = []

    def randbelow(n: int) -> int:
        asked.append(n)
        return n - 1

    token, stored = new_link(SECRET, KEY, "bob@example.com", randbelow)
    assert asked == [1 << LINK_SECRET_BITS]
    parts = parse_link(token)
    assert parts == LinkParts(KEY, "_" * 21 + "w", "bob@example.com")
    assert stored == link_hash(SECRET, parts)
    assert stored not in token


def test_fresh_links_differ_and_hash_apart() -> None:
    one, hash_one = new_link(SECRET, KEY, "bob@example.com", secrets.randbelow)
    two, hash_two = new_link(SECRET, KEY, "bob@example.com", secrets.randbelow)
    assert one != two
    assert hash_one != hash_two


def test_the_hash_binds_record_address_and_secret() -> None:
    parts = LinkParts(KEY, "s" * 22, "bob@example.com")
    base = link_hash(SECRET, parts)
    assert link_hash(SECRET, LinkParts("k" * 43, "s" * 22, "bob@example.com")) != base
    assert link_hash(SECRET, LinkParts(KEY, "t" * 22, "bob@example.com")) != base
    assert link_hash(SECRET, LinkParts(KEY, "s" * 22, "eve@example.com")) != base
    assert link_hash(SECRET + b"x", parts) != base


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b.c",
        f"{KEY}.{'s' * 22}",
        f"{KEY}.{'s' * 21}.Ym9iQGV4YW1wbGUuY29t",
        f"{KEY}.{'s' * 22}.Ym9iQGV4YW1wbGUuY29t.extra",
        f"{KEY}.{'s' * 22}.//8",  # not base64url
        f"{KEY}.{'s' * 22}.__79",  # not UTF-8
        f"{KEY}.{'s' * 22}." + "A" * 600,
    ],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    assert parse_link(token) is None


def test_the_url_keeps_the_base_and_its_parameters() -> None:
    assert link_url("https://a.example/auth/magic", "x.y.z") == (
        "https://a.example/auth/magic?t=x.y.z"
    )
    assert link_url("https://a.example/m?lang=de", "x.y.z") == "https://a.example/m?lang=de&t=x.y.z"


@pytest.mark.parametrize(
    "base", ["/auth/magic", "ftp://a.example/m", "https:///m", "https://a.example/m#f"]
)
def test_bad_bases_are_refused(base: str) -> None:
    with pytest.raises(ValueError, match="magic link base URL"):
        check_link_base(base)
