"""Frozen, validated settings for codes, backoff and token lifetimes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Final

__all__ = [
    "HMAC_MIN_BYTES",
    "MAX_CODE_LENGTH",
    "MIN_CODE_LENGTH",
    "MIN_SECRET_BYTES",
    "Policy",
    "check_secret",
    "is_production",
]

#: Digits a code may have (the request schemas bound a presented code by the same numbers).
MIN_CODE_LENGTH: Final = 4
MAX_CODE_LENGTH: Final = 10

#: Shortest secret per HMAC algorithm outside developer mode (RFC 7518 §3.2: a key at least
#: as long as the hash output).
HMAC_MIN_BYTES: Final[Mapping[str, int]] = MappingProxyType({"HS256": 32, "HS384": 48, "HS512": 64})
#: The shortest :attr:`Policy.secret` (it keys HMAC-SHA256) outside developer mode.
MIN_SECRET_BYTES: Final = HMAC_MIN_BYTES["HS256"]
# The reference README's example value: published, so it keys nothing outside developer mode.
_PLACEHOLDER_SECRETS: Final = frozenset({b"your-secret-key-generate-with-openssl-rand-hex-32"})


def check_secret(secret: bytes | str, *, algorithm: str = "HS256", developer_mode: bool) -> None:
    """Refuse a secret that may not key ``algorithm`` (HMAC): the one rule for secrets.

    Never empty; outside developer mode also at least the hash length (RFC 7518 §3.2:
    32/48/64 bytes for HS256/384/512) and not the reference README's placeholder.

    Args:
        secret: The secret; a ``str`` counts as its UTF-8 bytes.
        algorithm: The HMAC algorithm it keys: HS256, HS384 or HS512.
        developer_mode: Whether short and placeholder secrets are allowed.

    Raises:
        ValueError: The secret is refused; the message says how to generate a good one.
    """
    minimum = HMAC_MIN_BYTES.get(algorithm)
    if minimum is None:
        raise ValueError(f"algorithm must be one of {sorted(HMAC_MIN_BYTES)}, got {algorithm!r}")
    raw = secret.encode() if isinstance(secret, str) else secret
    hint = f"generate one with: openssl rand -hex {minimum}"
    if not raw:
        raise ValueError(f"secret must be set; {hint}")
    if developer_mode:
        return
    if len(raw) < minimum:
        raise ValueError(
            f"secret must be at least {minimum} bytes outside developer mode for {algorithm} "
            f"(RFC 7518 §3.2); {hint}"
        )
    if raw.strip() in _PLACEHOLDER_SECRETS:
        raise ValueError(
            "secret is the published placeholder from the reference README, refused outside "
            f"developer mode; {hint}"
        )


# Upper bound of the clock-skew leeway and the refresh grace window: beyond a few minutes
# either stops being tolerance and becomes a second token lifetime.
_MAX_SKEW: Final = timedelta(minutes=5)

#: Deployment names on which developer mode is refused (compared stripped, case-folded).
_PRODUCTION_NAMES: Final = frozenset({"production", "prod"})


def is_production(environment: str | None) -> bool:
    """Whether ``environment`` names a production deployment (``production`` or ``prod``)."""
    return environment is not None and environment.strip().casefold() in _PRODUCTION_NAMES


def _default_backoff() -> tuple[tuple[int, timedelta], ...]:
    # Stepped resend backoff keyed on consecutive failures across codes. Every step is below
    # NIST SP 800-63B's ceiling of 100 consecutive failures; at that ceiling issuing stops
    # for `lockout_duration`.
    return (
        (0, timedelta(0)),
        (5, timedelta(minutes=1)),
        (10, timedelta(minutes=5)),
        (20, timedelta(minutes=15)),
        (50, timedelta(hours=1)),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """Every number that decides whether someone gets in, validated at construction.

    Attributes:
        secret: Server secret keying the code HMAC (and HS256 tokens by default).
        code_length: Digits per code, 4-10.
        code_lifetime: How long an issued code can be redeemed.
        max_attempts: Guesses evaluated per code before it is dead.
        resend_cooldown: Minimum gap between two codes for one e-mail.
        backoff: ``(failures, extra_wait)`` steps: once an account has that many consecutive
            failures, the resend gap grows by ``extra_wait``. Sorted by failures.
        max_failures: Consecutive failures after which no code is issued for
            ``lockout_duration`` (NIST SP 800-63B rev 4 §3.2.2: at most 100).
        lockout_duration: How long issuing stops once ``max_failures`` is reached.
        access_lifetime: Access-token lifetime.
        refresh_lifetime: Lifetime of one refresh token; each refresh issues a new one.
        session_lifetime: Absolute session lifetime: no refresh extends a session past its
            login plus this (NIST SP 800-63B: at AAL1, reauthenticate at least every 30
            days).
        idle_timeout: A session not refreshed for this long ends; ``None`` means
            ``refresh_lifetime`` (see :attr:`session_idle_timeout`).
        refresh_grace: How long after a refresh the token it replaced still yields the same
            successor instead of counting as reuse (0 = strict, 0-5 min).
        issuer: ``iss`` claim to set and require, if any.
        audience: ``aud`` claim to set and require, if any.
        client_id: RFC 9068 ``client_id`` claim for access tokens, if any.
        leeway: Clock skew tolerated between hosts when checking ``exp``/``nbf``/``iat``,
            and how far back the revocation mirror looks (0-5 min).
        developer_mode: Codes are all zeros and short secrets are accepted. Never in production.
        environment: The deployment's name (e.g. ``OTPCORE_ENV``), passed in by the caller;
            ``developer_mode`` is refused when it is ``production`` or ``prod``.
    """

    secret: bytes = field(repr=False)
    code_length: int = 6
    code_lifetime: timedelta = timedelta(minutes=10)
    max_attempts: int = 5
    resend_cooldown: timedelta = timedelta(seconds=60)
    backoff: tuple[tuple[int, timedelta], ...] = field(default_factory=_default_backoff)
    max_failures: int = 100
    lockout_duration: timedelta = timedelta(hours=24)
    access_lifetime: timedelta = timedelta(hours=1)
    refresh_lifetime: timedelta = timedelta(days=7)
    session_lifetime: timedelta = timedelta(days=30)
    idle_timeout: timedelta | None = None
    refresh_grace: timedelta = timedelta(seconds=10)
    issuer: str | None = None
    audience: str | None = None
    client_id: str | None = None
    leeway: timedelta = timedelta(seconds=30)
    developer_mode: bool = False
    environment: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.secret, str):
            object.__setattr__(self, "secret", self.secret.encode())
        check_secret(self.secret, developer_mode=self.developer_mode)
        if self.developer_mode and is_production(self.environment):
            raise ValueError(
                f"developer_mode is on but the environment is {self.environment!r}: refusing "
                "to start, because developer mode makes every code zeros. Turn developer_mode "
                "off, or name a non-production environment."
            )
        if not MIN_CODE_LENGTH <= self.code_length <= MAX_CODE_LENGTH:
            raise ValueError(
                f"code_length must be between {MIN_CODE_LENGTH} and {MAX_CODE_LENGTH}, "
                f"got {self.code_length}"
            )
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if not 1 <= self.max_failures <= 100:
            raise ValueError(f"max_failures must be between 1 and 100, got {self.max_failures}")
        for name in (
            "code_lifetime",
            "access_lifetime",
            "refresh_lifetime",
            "session_lifetime",
            "lockout_duration",
        ):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be positive")
        if self.idle_timeout is not None and self.idle_timeout <= timedelta(0):
            raise ValueError("idle_timeout must be positive")
        if not timedelta(0) <= self.refresh_grace <= _MAX_SKEW:
            raise ValueError("refresh_grace must be between 0 and 5 minutes")
        if self.client_id is not None and not self.client_id:
            raise ValueError("client_id must not be empty")
        if self.resend_cooldown < timedelta(0):
            raise ValueError("resend_cooldown must not be negative")
        if not timedelta(0) <= self.leeway <= _MAX_SKEW:
            raise ValueError("leeway must be between 0 and 5 minutes")
        thresholds = [step for step, _ in self.backoff]
        if thresholds != sorted(thresholds) or any(w < timedelta(0) for _, w in self.backoff):
            raise ValueError("backoff must be sorted by failures with non-negative waits")
        if self.refresh_lifetime < self.access_lifetime:
            raise ValueError("refresh_lifetime must not be shorter than access_lifetime")
        if self.session_idle_timeout < self.access_lifetime:
            # A client refreshes when its access token runs out; a shorter idle timeout would
            # end every session before its first refresh.
            raise ValueError("idle_timeout must not be shorter than access_lifetime")

    @property
    def session_idle_timeout(self) -> timedelta:
        """The idle timeout in force: :attr:`idle_timeout`, else :attr:`refresh_lifetime`."""
        return self.refresh_lifetime if self.idle_timeout is None else self.idle_timeout
