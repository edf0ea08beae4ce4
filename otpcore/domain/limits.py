"""Send and guess limits: every rule about who may ask how often lives here.

Pure: the clock reading and the stored counts come in, decisions go out. The service hits
one counter per limit through :class:`otpcore.ports.LimitStore` with the
:class:`~otpcore.domain.records.LimitWindow` computed here, and turns a refusal into
:class:`~otpcore.domain.errors.RateLimited` with :func:`retry_after`.

Counters are sliding-window counters (the previous fixed window weighted by its overlap,
as Cloudflare's and the ``limits`` library's): for a rate of ``n`` per ``L`` no span of
``d <= L`` ever sees more than ``n * (1 + d / L)`` hits. The defaults are sized on that
bound, so one client asking for 300 addresses within any minute gets at most 30 codes, and
one mailbox at most 5 (see :class:`Limits`).

Keys are keyed hashes (HMAC-SHA256 under the server secret, one label per purpose), never
an address: a leaked counter table names no one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from otpcore.domain.records import LimitHit, LimitWindow

__all__ = [
    "GMAIL_DOMAINS",
    "HOUR",
    "Limits",
    "Rate",
    "canonical_mailbox",
    "challenge_key",
    "client_scope",
    "device_key",
    "device_token",
    "keyed_hash",
    "limit_key",
    "retry_after",
    "subject_key",
    "valid_device",
    "window_at",
]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: One hour: the global budget's window.
HOUR: Final = timedelta(hours=1)

#: Domains whose mailboxes ignore dots in the local part (and are one provider).
GMAIL_DOMAINS: Final = frozenset({"gmail.com", "googlemail.com"})


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` events per sliding ``per``; validated at construction."""

    limit: int
    per: timedelta

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"a rate limit must be at least 1, got {self.limit}")
        if self.per < timedelta(seconds=1):
            raise ValueError("a rate window must be at least one second")


def _default_client() -> Rate:
    return Rate(25, timedelta(minutes=5))


def _default_mailbox() -> Rate:
    return Rate(5, timedelta(hours=1))


def _default_verify_client() -> Rate:
    return Rate(30, timedelta(minutes=5))


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """The send and guess limits, on by default; ``None`` turns one off.

    Attributes:
        per_client: Codes per client address (IPv6 by /64). Default 25 per 5 minutes:
            Supabase Auth allows 30 per 5 minutes per IP, django-allauth 20 per minute; 25
            keeps any single minute at most 30 under the sliding-window bound.
        per_mailbox: Codes per mailbox (case-folded, ``+tag`` removed, gmail dots folded).
            Default 5 per hour: any minute sees at most 5 (django-allauth: 3 per minute per
            address). A client holding a device allowance for the address has its own
            budget of the same size, which strangers cannot spend.
        global_per_hour: The deployment's code budget per hour; off by default (Supabase
            Auth caps a project's e-mails per hour).
        verify_per_client: Guesses per client address on verify, across all addresses
            (guess spraying). Default 30 per 5 minutes, Supabase Auth's token-verification
            limit.
    """

    per_client: Rate | None = field(default_factory=_default_client)
    per_mailbox: Rate | None = field(default_factory=_default_mailbox)
    global_per_hour: int | None = None
    verify_per_client: Rate | None = field(default_factory=_default_verify_client)

    def __post_init__(self) -> None:
        if self.global_per_hour is not None and self.global_per_hour < 1:
            raise ValueError("global_per_hour must be at least 1, or None for no budget")

    @classmethod
    def unlimited(cls) -> Limits:
        """No limit at all (benchmarks and tests that say so explicitly)."""
        return cls(per_client=None, per_mailbox=None, verify_per_client=None)


# -- keys ----------------------------------------------------------------------------------


def keyed_hash(secret: bytes, purpose: str, value: str) -> str:
    """HMAC-SHA256 of ``value`` under ``secret``, labelled by ``purpose``; 43 URL-safe
    characters (256 bits)."""
    message = purpose.encode() + b"\x00" + value.encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def subject_key(secret: bytes, email: str) -> str:
    """The key pending codes for the normalized ``email`` are found by (known or not)."""
    return keyed_hash(secret, "otpcore subject v1", email)


def challenge_key(secret: bytes, challenge_id: str) -> str:
    """The store key of a binding: the ``challenge_id`` itself is never stored."""
    return keyed_hash(secret, "otpcore challenge v1", challenge_id)


def limit_key(secret: bytes, kind: str, value: str) -> str:
    """A counter key: ``kind`` in the clear (for operators), the value keyed-hashed."""
    return f"{kind}:{keyed_hash(secret, 'otpcore limit v1 ' + kind, value)}"


def canonical_mailbox(email: str) -> str:
    """The mailbox a normalized address delivers to: case-folded, ``+tag`` removed, and for
    gmail.com/googlemail.com dots removed and the two domains made one."""
    local, _, domain = email.casefold().rpartition("@")
    local = local.split("+", 1)[0]
    if domain in GMAIL_DOMAINS:
        local = local.replace(".", "")
        domain = "gmail.com"
    return f"{local}@{domain}"


def client_scope(ip: str) -> str:
    """What a client address is counted as: an IPv4 address, the /64 of an IPv6 address
    (one subscriber is usually given a whole /64), or the text itself if it is no address."""
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


# -- device allowances -----------------------------------------------------------------------


def device_token(secret: bytes, subject: str, nonce: str) -> str:
    """The device allowance for ``subject`` (see :func:`subject_key`) named by ``nonce``:
    ``nonce.mac``, verifiable without storage."""
    return f"{nonce}.{keyed_hash(secret, 'otpcore device v1', subject + chr(0) + nonce)}"


def valid_device(secret: bytes, subject: str, token: str | None) -> str | None:
    """The nonce of ``token`` if it is an allowance for ``subject``, else ``None``."""
    if not token or len(token) > 128:
        return None
    nonce, dot, _mac = token.partition(".")
    if not dot or not nonce:
        return None
    expected = device_token(secret, subject, nonce)
    return nonce if hmac.compare_digest(expected.encode(), token.encode()) else None


def device_key(mailbox: str, nonce: str) -> str:
    """The value a device's own mailbox budget is keyed by (then hashed by
    :func:`limit_key`)."""
    return f"{mailbox}\x00{nonce}"


# -- windows --------------------------------------------------------------------------------


def window_at(now: datetime, length: timedelta) -> LimitWindow:
    """Where ``now`` falls for a sliding window of ``length`` (epoch-aligned fixed windows)."""
    elapsed = now - _EPOCH
    start = _EPOCH + (elapsed // length) * length
    weight = 1.0 - (now - start) / length
    return LimitWindow(
        length=length,
        start=start,
        previous_start=start - length,
        weight=weight,
        expires_at=start + 2 * length,
    )


def retry_after(hit: LimitHit, *, limit: int, window: LimitWindow, now: datetime) -> int:
    """Whole seconds until a hit refused as ``hit`` would be allowed (at least 1)."""
    length = window.length.total_seconds()
    into = (now - window.start).total_seconds()
    if hit.count + 1 <= limit:
        # Allowed once the previous window's weight drops: prev * w + count + 1 <= limit.
        room = limit - 1 - hit.count
        needed_weight = room / hit.previous_count if hit.previous_count else 1.0
        wait = length * (1.0 - needed_weight) - into
    else:
        # Only in the next window, once this window's weight there has dropped enough.
        needed_weight = (limit - 1) / hit.count
        wait = (length - into) + length * (1.0 - needed_weight)
    return max(1, math.ceil(wait))
