"""E-mail normalization: the one key every account is looked up by."""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email

__all__ = ["InvalidEmail", "normalize_email"]

MAX_EMAIL_LENGTH = 254  # RFC 5321 §4.5.3.1.3 path limit, minus the angle brackets


class InvalidEmail(ValueError):
    """The input is not an address we accept; the message is safe to show."""


def normalize_email(raw: str) -> str:
    """Return the canonical form of ``raw`` or raise :class:`InvalidEmail`.

    Policy: surrounding whitespace (a pasted trailing newline included) is trimmed; the
    domain is lowercased and IDNA-encoded forms are turned into Unicode by
    ``email-validator``; the local part is NFC-normalized
    and lowercased, because users expect ``Alice@x`` and ``alice@x`` to be the same account
    (almost every provider treats local parts case-insensitively). CR, LF and every other
    control character left inside the address are refused rather than stripped, so no header
    injection can ride on an address.
    """
    candidate = raw.strip()
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in candidate):
        raise InvalidEmail("e-mail address contains control characters")
    if not candidate or len(candidate) > MAX_EMAIL_LENGTH:
        raise InvalidEmail("e-mail address is empty or too long")
    try:
        checked = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(f"invalid e-mail address: {exc}") from None
    local = unicodedata.normalize("NFC", checked.local_part).lower()
    return f"{local}@{checked.domain.lower()}"
