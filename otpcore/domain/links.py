"""Magic links: the token a code's e-mail carries, and the keyed hash its challenge keeps.

A link token is three URL-safe parts joined by dots::

    <challenge key>.<secret>.<address>

- the challenge key: the pending record's id (a keyed hash of the requester's
  ``challenge_id``). It names the record, so a link works on any device, and grants
  nothing by itself: every other endpoint takes the ``challenge_id``, never the key;
- the secret: 128 bits from the injected random source;
- the normalized address, base64url: a pending record keeps only a keyed hash of it, and a
  login needs it (to find the account, or create it with ``auto_create_user``).

The record keeps only :func:`link_hash` of all three (HMAC-SHA256 under the server secret),
so a leaked table holds no usable link, and a link copied onto another record or address
matches nothing. Pure: the random source comes in, nothing is stored or logged here.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from otpcore.domain.limits import keyed_hash

__all__ = [
    "LINK_SECRET_BITS",
    "MAX_LINK_LENGTH",
    "LinkParts",
    "check_link_base",
    "link_hash",
    "link_url",
    "new_link",
    "parse_link",
]

#: Random bits in every link (NIST SP 800-63B §3.1.3: a look-up secret of at least 64 bits;
#: issue 9 asks for 128).
LINK_SECRET_BITS: Final = 128
#: The longest token accepted (a 254-character address is 340 base64 characters).
MAX_LINK_LENGTH: Final = 512
_TOKEN: Final = re.compile(r"([A-Za-z0-9_-]{43})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{4,400})")


@dataclass(frozen=True, slots=True)
class LinkParts:
    """A well-formed link token, taken apart (nothing here is checked against a record)."""

    challenge_key: str
    secret: str = field(repr=False)
    email: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def link_hash(secret: bytes, parts: LinkParts) -> str:
    """What a record keeps of a link: HMAC-SHA256 over all three parts (43 characters)."""
    value = f"{parts.challenge_key}\x00{parts.email}\x00{parts.secret}"
    return keyed_hash(secret, "otpcore link v1", value)


def new_link(
    secret: bytes, challenge_key: str, email: str, randbelow: Callable[[int], int]
) -> tuple[str, str]:
    """A fresh link for the challenge ``challenge_key`` sent to ``email`` (normalized):
    ``(token, link_hash)``. ``randbelow`` is the random source (``secrets.randbelow``)."""
    drawn = randbelow(1 << LINK_SECRET_BITS).to_bytes(LINK_SECRET_BITS // 8, "big")
    parts = LinkParts(challenge_key, _b64(drawn), email)
    token = f"{challenge_key}.{parts.secret}.{_b64(email.encode())}"
    return token, link_hash(secret, parts)


def parse_link(token: str) -> LinkParts | None:
    """The parts of a well-formed token, or ``None`` (too long, wrong shape, an address
    that is not UTF-8)."""
    if len(token) > MAX_LINK_LENGTH:
        return None
    match = _TOKEN.fullmatch(token)
    if match is None:
        return None
    key, drawn, encoded = match.groups()
    try:
        email = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return LinkParts(key, drawn, email)


def check_link_base(base: str) -> None:
    """Refuse a magic-link base URL that cannot work: it must be an absolute ``https://``
    (or, for development, ``http://``) URL without a fragment.

    Raises:
        ValueError: Naming what is wrong.
    """
    if not isinstance(base, str):
        raise ValueError(f"a magic link base URL must be a string, got {base!r}")
    parts = urlsplit(base)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ValueError(
            f"a magic link base URL must be absolute, e.g. 'https://app.example.com/auth/magic'; "
            f"got {base!r}"
        )
    if parts.fragment:
        raise ValueError(f"a magic link base URL may not have a fragment, got {base!r}")


def link_url(base: str, token: str) -> str:
    """``base`` with the token added as the ``t`` query parameter (other parameters kept)."""
    parts = urlsplit(base)
    query = [*parse_qsl(parts.query, keep_blank_values=True), ("t", token)]
    return urlunsplit(parts._replace(query=urlencode(query)))
