"""Validation of the binding's cookie, limit, key and magic-link settings, kept apart from
the config class.

Called by :class:`~otpcore_fastapi.config.OTPAuthConfig` whenever it (re)builds, so a bad
value fails at construction or assignment, never on a request.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from otpcore.domain.errors import ConfigurationError
from otpcore.domain.limits import Limits, Rate
from otpcore.domain.links import check_link_base
from otpcore.domain.policy import HMAC_MIN_BYTES, is_production
from otpcore.tokens import KeySet, SigningKey, VerificationKey

if TYPE_CHECKING:  # the config calls these: a runtime import would be circular
    from otpcore_fastapi.config import OTPAuthConfig

__all__ = [
    "build_keys",
    "build_limits",
    "check_client_id",
    "check_cookie_settings",
    "check_magic_link",
]

_DELIVERY_MODES: Final = frozenset({"cookie", "body", "both"})
_SAMESITE: Final = frozenset({"lax", "strict", "none"})
_SYMMETRIC: Final = frozenset(HMAC_MIN_BYTES)


def check_cookie_settings(config: OTPAuthConfig, environment: str | None) -> None:
    """Refuse cookie settings browsers would not honour, or that leak the refresh cookie.

    Raises:
        ConfigurationError: Naming the setting.
    """
    if config.refresh_token_delivery not in _DELIVERY_MODES:
        raise ConfigurationError(
            "refresh_token_delivery must be 'cookie', 'body' or 'both', "
            f"got {config.refresh_token_delivery!r}"
        )
    if config.cookie_samesite not in _SAMESITE:
        raise ConfigurationError(
            f"cookie_samesite must be 'lax', 'strict' or 'none', got {config.cookie_samesite!r}"
        )
    if config.cookie_samesite == "none" and not config.cookie_secure:
        raise ConfigurationError("cookie_samesite='none' requires cookie_secure=True")
    if config.cookie_path is not None and not config.cookie_path.startswith("/"):
        raise ConfigurationError(f"cookie_path must start with '/', got {config.cookie_path!r}")
    names = ("cookie_name", "challenge_cookie_name", "device_cookie_name")
    for setting in names:
        _check_cookie_name(config, setting, getattr(config, setting))
    if len({getattr(config, setting) for setting in names}) < len(names):
        raise ConfigurationError(
            "cookie_name, challenge_cookie_name and device_cookie_name must differ"
        )
    if (
        not isinstance(config.device_cookie_lifetime, timedelta)
        or config.device_cookie_lifetime <= timedelta(0)
        or config.device_cookie_lifetime > timedelta(days=400)
    ):
        # RFC 6265bis §5.5: browsers cap a cookie's lifetime at 400 days.
        raise ConfigurationError(
            "device_cookie_lifetime must be a timedelta above 0 and at most 400 days"
        )
    uses_cookie = config.refresh_token_delivery in ("cookie", "both")
    if uses_cookie and not config.cookie_secure and is_production(environment):
        raise ConfigurationError(
            f"cookie_secure=False in production (environment {environment!r}): the "
            "refresh cookie would travel over plain HTTP. Set cookie_secure=True."
        )
    for origin in config.trusted_origins:
        if "://" not in origin or origin.endswith("/"):
            raise ConfigurationError(
                f"trusted_origins entries look like 'https://app.example.com', got {origin!r}"
            )


def _check_cookie_name(config: OTPAuthConfig, setting: str, name: object) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{setting} must not be empty")
    # RFC 6265bis §4.1.3: browsers drop cookies whose prefix promises what they lack.
    if name.startswith(("__Secure-", "__Host-")) and not config.cookie_secure:
        raise ConfigurationError(
            f"{setting} {name!r} needs cookie_secure=True (browsers refuse "
            "a __Secure- or __Host- cookie without Secure)"
        )
    if name.startswith("__Host-") and (
        config.cookie_path != "/" or config.cookie_domain is not None
    ):
        raise ConfigurationError(
            f"{setting} {name!r} needs cookie_path='/' and no cookie_domain "
            "(browsers refuse a __Host- cookie otherwise)"
        )


def _rate(config: OTPAuthConfig, setting: str) -> Rate | None:
    limit, per = getattr(config, setting), getattr(config, f"{setting}_window")
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigurationError(f"{setting} must be a whole number >= 1, or None for off")
    if not isinstance(per, timedelta) or per < timedelta(seconds=1):
        raise ConfigurationError(f"{setting}_window must be a timedelta of at least 1 s")
    return Rate(limit, per)


def build_limits(config: OTPAuthConfig) -> Limits:
    """The send and guess limits the settings describe (``None`` turns one off).

    Raises:
        ConfigurationError: A limit is not a whole number >= 1, or a window under 1 s.
    """
    budget = config.send_limit_global_per_hour
    if budget is not None and (
        isinstance(budget, bool) or not isinstance(budget, int) or budget < 1
    ):
        raise ConfigurationError(
            "send_limit_global_per_hour must be a whole number >= 1, or None for off"
        )
    return Limits(
        per_client=_rate(config, "send_limit_per_client"),
        per_mailbox=_rate(config, "send_limit_per_mailbox"),
        global_per_hour=budget,
        verify_per_client=_rate(config, "verify_limit_per_client"),
    )


def build_keys(config: OTPAuthConfig) -> KeySet:
    """The token keys: HMAC with ``secret_key``, or ``private_key`` (and ``public_keys``).

    Raises:
        ConfigurationError: The algorithm does not fit the keys given.
    """
    if config.private_key is None:
        if config.public_keys:
            raise ConfigurationError("public_keys needs private_key (the key that signs)")
        if config.algorithm not in _SYMMETRIC:
            raise ConfigurationError(
                f"algorithm {config.algorithm!r} needs private_key; without one use "
                f"{', '.join(sorted(_SYMMETRIC))}"
            )
        return KeySet.symmetric(config.secret_key.encode(), config.algorithm)
    if config.algorithm in _SYMMETRIC:
        raise ConfigurationError(
            "private_key needs an asymmetric algorithm: set algorithm to "
            "'RS256', 'ES256' or 'EdDSA'"
        )
    signing = SigningKey(algorithm=config.algorithm, key=config.private_key, kid=config.key_id)
    others = [
        VerificationKey(algorithm=config.algorithm, key=pem, kid=kid)
        for kid, pem in config.public_keys.items()
        if kid != config.key_id  # the signing key's own public half is already in the set
    ]
    return KeySet(signing, others)


def check_client_id(value: object) -> str | None:
    """``client_id`` as written into access tokens: a non-empty string, or ``None``.

    Raises:
        ConfigurationError: Anything else.
    """
    # Written into every access token as is: only text, never a number or an empty string.
    if value is None or (isinstance(value, str) and value):
        return value
    raise ConfigurationError(f"client_id must be a non-empty string or None, got {value!r}")


def check_magic_link(config: OTPAuthConfig) -> str | None:
    """``magic_link_url`` once checked, with ``magic_link_redirect``.

    Raises:
        ConfigurationError: The link is not an absolute http(s) URL, or the redirect is
            neither a path on this site (``/…``, not ``//…``) nor an absolute http(s) URL.
    """
    base = config.magic_link_url
    if base is not None:
        try:
            check_link_base(base)
        except ValueError as exc:
            raise ConfigurationError(f"magic_link_url: {exc}") from None
    target = config.magic_link_redirect
    if not isinstance(target, str) or not target:
        raise ConfigurationError("magic_link_redirect must be a path or an http(s) URL")
    parts = urlsplit(target)
    on_this_site = target.startswith("/") and not target.startswith(("//", "/\\"))
    absolute = parts.scheme in ("http", "https") and bool(parts.netloc)
    if not (on_this_site or absolute) or any(ord(c) < 0x21 for c in target):
        raise ConfigurationError(
            f"magic_link_redirect must be a path like '/' or an http(s) URL, got {target!r}"
        )
    return base
