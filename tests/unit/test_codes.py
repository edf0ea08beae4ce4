"""Code generation, keyed hashing and comparison (otpcore.domain.codes)."""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Callable

import pytest

from otpcore.domain.codes import generate_code, hash_code, hashes_equal

SECRET = b"k" * 32
OTHER_SECRET = b"j" * 32
HEX64 = re.compile(r"[0-9a-f]{64}")


def scripted(values: list[int]) -> tuple[Callable[[int], int], list[int]]:
    """A randbelow stand-in that replays ``values`` and records the bounds it was asked for."""
    source = iter(values)
    bounds: list[int] = []

    def randbelow(bound: int) -> int:
        bounds.append(bound)
        return next(source)

    return randbelow, bounds


def test_generate_code_uses_injected_randbelow_deterministically() -> None:
    randbelow, bounds = scripted([3, 1, 4, 1, 5, 9])
    assert generate_code(6, randbelow, developer_mode=False) == "314159"
    assert bounds == [10] * 6


def test_generate_code_keeps_leading_zeros() -> None:
    randbelow, _ = scripted([0, 0, 7, 0])
    assert generate_code(4, randbelow, developer_mode=False) == "0070"


def test_generate_code_same_source_same_code() -> None:
    digits = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    first, _ = scripted(digits)
    second, _ = scripted(digits)
    assert generate_code(10, first, developer_mode=False) == generate_code(
        10, second, developer_mode=False
    )


def test_developer_mode_is_all_zeros_and_draws_nothing() -> None:
    randbelow, bounds = scripted([])
    assert generate_code(6, randbelow, developer_mode=True) == "000000"
    assert generate_code(8, randbelow, developer_mode=True) == "00000000"
    assert bounds == []


@pytest.mark.parametrize("length", range(4, 11))
def test_generated_code_has_requested_length_of_digits(length: int) -> None:
    cycle = itertools.cycle(range(10))
    code = generate_code(length, lambda bound: next(cycle) % bound, developer_mode=False)
    assert len(code) == length
    assert code.isdigit()
    assert code == "".join(str(i % 10) for i in range(length))
    assert generate_code(length, secrets.randbelow, developer_mode=True) == "0" * length


@pytest.mark.parametrize("length", range(4, 11))
def test_real_randomness_gives_decimal_digits(length: int) -> None:
    code = generate_code(length, secrets.randbelow, developer_mode=False)
    assert re.fullmatch(rf"[0-9]{{{length}}}", code)


def test_hash_is_64_lowercase_hex() -> None:
    digest = hash_code(SECRET, "alice@example.com", "123456")
    assert HEX64.fullmatch(digest)


def test_hash_is_deterministic() -> None:
    assert hash_code(SECRET, "alice@example.com", "123456") == hash_code(
        SECRET, "alice@example.com", "123456"
    )


def test_hash_matches_documented_construction() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET, b"alice@example.com\x00123456", hashlib.sha256).hexdigest()
    assert hash_code(SECRET, "alice@example.com", "123456") == expected


def test_hash_does_not_contain_the_code() -> None:
    digest = hash_code(SECRET, "alice@example.com", "123456")
    assert "123456" not in digest


def test_hash_is_bound_to_email() -> None:
    assert hash_code(SECRET, "alice@example.com", "123456") != hash_code(
        SECRET, "bob@example.com", "123456"
    )


def test_hash_binding_is_not_ambiguous_at_the_separator() -> None:
    # "a" + "12" vs "a1" + "2" must not collide: the NUL separator keeps them apart.
    assert hash_code(SECRET, "a@example.com1", "2") != hash_code(SECRET, "a@example.com", "12")


def test_hash_is_keyed_by_secret() -> None:
    assert hash_code(SECRET, "alice@example.com", "123456") != hash_code(
        OTHER_SECRET, "alice@example.com", "123456"
    )


def test_hash_depends_on_code() -> None:
    assert hash_code(SECRET, "alice@example.com", "123456") != hash_code(
        SECRET, "alice@example.com", "123457"
    )


def test_hashes_equal_true_for_same_hash() -> None:
    digest = hash_code(SECRET, "alice@example.com", "123456")
    assert hashes_equal(digest, hash_code(SECRET, "alice@example.com", "123456")) is True


def test_hashes_equal_false_for_other_hash() -> None:
    digest = hash_code(SECRET, "alice@example.com", "123456")
    assert hashes_equal(digest, hash_code(SECRET, "alice@example.com", "654321")) is False
    assert hashes_equal(digest, digest[:-1]) is False
    assert hashes_equal(digest, "") is False
