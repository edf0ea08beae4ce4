"""Validation of the binding's cookie and limit settings, kept apart from the config class.

Called by :class:`~otpcore_fastapi.config.OTPAuthConfig` whenever it (re)builds, so a bad
value fails at construction or assignment, never on a request.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Final

from otpcore.domain.errors import ConfigurationError
from otpcore.domain.limits import Limits, Rate
from otpcore.domain.policy import is_production

if TYPE_CHECKING:  # the config calls these: a runtime import would be circular
    from otpcore_fastapi.config import OTPAuthConfig

__all__ = ["build_limits", "check_cookie_settings"]

_DELIVERY_MODES: Final = frozenset({"cookie", "body", "both"})
_SAMESITE: Final = frozenset({"lax", "strict", "none"})


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
