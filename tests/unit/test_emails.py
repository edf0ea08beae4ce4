"""E-mail normalization policy and refusals (otpcore.domain.emails)."""

from __future__ import annotations

import pytest

from otpcore.domain.emails import MAX_EMAIL_LENGTH, InvalidEmail, normalize_email


def _address_of_length(length: int) -> str:
    """A syntactically valid address of exactly ``length`` characters (64-char local part)."""
    local = "a" * 64
    tail = ".com"
    # Domain labels of at most 63 characters, joined by dots, filling the remaining room.
    room = length - len(local) - 1 - len(tail)
    labels: list[str] = []
    while room > 0:
        size = min(63, room)
        labels.append("b" * size)
        room -= size + 1
    domain = ".".join(labels) + tail
    address = f"{local}@{domain}"
    assert len(address) == length
    return address


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("alice@example.com", "alice@example.com"),
        ("  alice@example.com  ", "alice@example.com"),
        ("\talice@example.com\t", "alice@example.com"),
        ("Alice@Example.COM", "alice@example.com"),
        ("ALICE.SMITH+Tag@EXAMPLE.ORG", "alice.smith+tag@example.org"),
        ("a@xn--mnchen-3ya.de", "a@m\u00fcnchen.de"),
        ("a@XN--MNCHEN-3YA.DE", "a@m\u00fcnchen.de"),
        ("a@M\u00dcNCHEN.de", "a@m\u00fcnchen.de"),
        ("a@mu\u0308nchen.de", "a@m\u00fcnchen.de"),
        ("e\u0301@example.com", "\u00e9@example.com"),
        ("E\u0301@example.com", "\u00e9@example.com"),
        ("\u00c9@example.com", "\u00e9@example.com"),
    ],
)
def test_normalization(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


def test_idna_and_unicode_forms_are_the_same_account() -> None:
    assert normalize_email("Bob@xn--mnchen-3ya.de") == normalize_email("bob@münchen.de")


def test_decomposed_and_composed_local_parts_are_the_same_account() -> None:
    assert normalize_email("jose\u0301@example.com") == normalize_email("jos\u00e9@example.com")


def test_normalization_is_idempotent() -> None:
    once = normalize_email("  J\u00d6RG@XN--MNCHEN-3YA.DE ")
    assert once == "j\u00f6rg@m\u00fcnchen.de"
    assert normalize_email(once) == once


def test_trailing_line_break_is_trimmed_and_never_kept() -> None:
    # Surrounding whitespace (including a pasted trailing CRLF) is trimmed; what comes out
    # has no line break left in it to inject a header with.
    result = normalize_email("alice@example.com\r\n")
    assert result == "alice@example.com"
    assert "\r" not in result
    assert "\n" not in result


@pytest.mark.parametrize(
    "raw",
    [
        "alice@example.com\r\nBcc: victim@example.com",
        "alice\r@example.com",
        "alice\n@example.com",
        "ali\r\nce@example.com",
        "alice@exa\nmple.com",
        "alice\x00@example.com",
        "alice@example.com\x00",
        "ali\tce@example.com",
        "alice@exam\tple.com",
        "alice\u200b@example.com",  # zero-width space (Cf)
        "alice\u2028@example.com",  # line separator (Zl)
        "alice\x7f@example.com",
    ],
)
def test_control_characters_are_refused(raw: str) -> None:
    with pytest.raises(InvalidEmail, match="control characters"):
        normalize_email(raw)


@pytest.mark.parametrize("raw", ["", "   ", "\t \t"])
def test_empty_is_refused(raw: str) -> None:
    with pytest.raises(InvalidEmail, match="empty"):
        normalize_email(raw)


@pytest.mark.parametrize("raw", ["alice.example.com", "alice", "example.com"])
def test_missing_at_sign_is_refused(raw: str) -> None:
    with pytest.raises(InvalidEmail, match="@"):
        normalize_email(raw)


@pytest.mark.parametrize(
    "raw",
    ["@example.com", "alice@", "alice@@example.com", "alice@example", "alice@exa mple.com"],
)
def test_malformed_is_refused(raw: str) -> None:
    with pytest.raises(InvalidEmail, match="invalid e-mail address"):
        normalize_email(raw)


def test_longest_allowed_address_is_accepted() -> None:
    address = _address_of_length(MAX_EMAIL_LENGTH)
    assert MAX_EMAIL_LENGTH == 254
    assert normalize_email(address) == address


def test_over_254_characters_is_refused() -> None:
    address = _address_of_length(MAX_EMAIL_LENGTH + 1)
    with pytest.raises(InvalidEmail, match="too long"):
        normalize_email(address)


def test_length_limit_applies_after_trimming() -> None:
    address = _address_of_length(MAX_EMAIL_LENGTH)
    assert normalize_email(f"   {address}   ") == address


def test_invalid_email_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="@"):
        normalize_email("no-at-sign")
