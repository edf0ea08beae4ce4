"""One-time codes: generation from an injected random source, keyed hashing, comparison."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

__all__ = ["generate_code", "hash_code", "hashes_equal"]


def generate_code(length: int, randbelow: Callable[[int], int], *, developer_mode: bool) -> str:
    """Return ``length`` decimal digits drawn from ``randbelow`` (``secrets.randbelow`` in prod).

    In developer mode the code is all zeros, so tests and local runs need no inbox.
    """
    if developer_mode:
        return "0" * length
    return "".join(str(randbelow(10)) for _ in range(length))


def hash_code(secret: bytes, email: str, code: str) -> str:
    """HMAC-SHA256 of the code bound to the normalized e-mail, as 64 hex characters.

    Binding the e-mail means a hash copied to another account's row never verifies there.
    The code is short, so only a keyed hash stops offline guessing from a leaked row.
    """
    message = email.encode() + b"\x00" + code.encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def hashes_equal(stored: str, presented: str) -> bool:
    """Constant-time comparison of two code hashes."""
    return hmac.compare_digest(stored.encode(), presented.encode())
