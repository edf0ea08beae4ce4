"""``OTPAuthConfig``: the application's settings and hooks, turned into one ``OTPAuth``.

Subclass it with class attributes, as in ``fastapi-otp-authentication``; every attribute of
the reference keeps its name and meaning. Construction validates everything and builds the
service once, so a misconfiguration fails at startup, never on a request.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final, Literal

from otpcore.domain.errors import ConfigurationError
from otpcore.domain.policy import Policy
from otpcore.ports import RevocationStore
from otpcore.service import OTPAuth
from otpcore.tokens import KeySet, SigningKey, VerificationKey
from otpcore_fastapi.resolver import StoreResolver, current_request

__all__ = ["OTPAuthConfig"]

logger = logging.getLogger("otpcore_fastapi")

_PRODUCTION_NAMES: Final = frozenset({"production", "prod"})
_ENV_VARIABLES: Final = ("OTPCORE_ENV", "ENVIRONMENT")
_DELIVERY_MODES: Final = frozenset({"cookie", "body", "both"})
_SAMESITE: Final = frozenset({"lax", "strict", "none"})
_SYMMETRIC: Final = frozenset({"HS256", "HS384", "HS512"})


def _utc_now() -> datetime:
    return datetime.now(UTC)


class OTPAuthConfig(ABC):
    """Settings and hooks for the FastAPI binding; subclass and set class attributes.

    Attributes mirror ``fastapi-otp-authentication``'s ``OTPAuthConfig`` (``secret_key``,
    ``developer_mode``, ``cookie_secure``, lifetimes, ``otp_length``, ``otp_expiry``,
    ``max_otp_attempts``, ``otp_rate_limit_seconds``, ``auto_create_user``, ``algorithm``,
    ``refresh_token_delivery``), plus the safe-by-default settings documented in
    ``docs/fastapi.md``.

    Raises:
        ConfigurationError: At construction, for any setting that cannot work (a short
            secret outside developer mode, developer mode in production, a bad key, …).
    """

    # -- the reference's settings ----------------------------------------------------------
    secret_key: str
    developer_mode: bool = False
    cookie_secure: bool = True
    refresh_token_delivery: Literal["cookie", "body", "both"] = "cookie"  # noqa: S105
    access_token_lifetime: timedelta = timedelta(hours=1)
    refresh_token_lifetime: timedelta = timedelta(days=7)
    otp_length: int = 6
    otp_expiry: timedelta = timedelta(minutes=10)
    max_otp_attempts: int = 5
    #: Minimum seconds between two codes for one e-mail (the policy's resend cooldown).
    otp_rate_limit_seconds: int = 60
    auto_create_user: bool = True
    algorithm: str = "HS256"

    # -- beyond the reference ----------------------------------------------------------------
    issuer: str | None = None
    audience: str | None = None
    #: PEM private key for RS256/ES256/EdDSA tokens (set ``algorithm`` to match).
    private_key: str | None = None
    #: ``kid`` of ``private_key``; required once ``public_keys`` lists other keys.
    key_id: str | None = None
    #: Further verification keys, ``kid -> PEM``, e.g. the previous key during rotation.
    public_keys: Mapping[str, str] = MappingProxyType({})
    cookie_name: str = "refresh_token"
    #: Cookie path; ``None`` derives the router's prefix (e.g. ``/auth``) from the request.
    cookie_path: str | None = None
    cookie_domain: str | None = None
    cookie_samesite: Literal["lax", "strict", "none"] = "lax"
    #: Answer 404 for unknown e-mails instead of exactly as for known ones (reveals accounts).
    reveal_unknown_users: bool = False
    #: Longest a claims-only check trusts this worker's revocation mirror.
    revocation_mirror_interval: timedelta = timedelta(seconds=1)
    #: Origins (``scheme://host[:port]``) besides the request's own allowed to send
    #: cookie-authenticated ``/refresh`` and ``/logout``.
    trusted_origins: Sequence[str] = ()

    def __init__(self) -> None:
        """Validate every setting and build the service."""
        self._check_environment()
        self.validate_secret()
        self._check_cookie_settings()
        try:
            self._policy = Policy(
                secret=self.secret_key.encode(),
                code_length=self.otp_length,
                code_lifetime=self.otp_expiry,
                max_attempts=self.max_otp_attempts,
                resend_cooldown=timedelta(seconds=self.otp_rate_limit_seconds),
                access_lifetime=self.access_token_lifetime,
                refresh_lifetime=self.refresh_token_lifetime,
                issuer=self.issuer,
                audience=self.audience,
                developer_mode=self.developer_mode,
            )
            self._keys = self._build_keys()
            self._auth: OTPAuth[Any] = OTPAuth(
                policy=self._policy,
                store=None,
                sender=self.send_otp,
                keys=self._keys,
                clock=self._clock(),
                auto_create_user=self.auto_create_user,
                reveal_unknown_users=self.reveal_unknown_users,
                new_user_fields=self._hook("new_user_fields"),
                claims_for=self._hook("get_additional_claims"),
                mirror_interval=self.revocation_mirror_interval,
                revocation_source=self._open_revocations,
            )
        except ConfigurationError:
            raise
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        self._resolver: StoreResolver | None = None
        if self.developer_mode:
            logger.warning(
                "otpcore_fastapi: DEVELOPER MODE IS ON: every code is %s and short secrets "
                "are accepted. Never run this in production.",
                "0" * self.otp_length,
            )

    # -- hooks -------------------------------------------------------------------------------

    @abstractmethod
    async def send_otp(self, email: str, code: str) -> None:
        """Deliver ``code`` to ``email`` (e-mail, SMS, …). Raising means not delivered."""

    def get_additional_claims(self, user: Any) -> dict[str, Any]:
        """Custom access-token claims for ``user``; none of the reserved names (``sub``, …)."""
        return {}

    def new_user_fields(self, email: str) -> dict[str, Any]:
        """Values for the user model's other required fields when a user is auto-created."""
        return {}

    def now(self) -> datetime:
        """The current aware-UTC time; override to inject a test clock."""
        return _utc_now()

    def validate_secret(self) -> None:
        """Refuse a missing secret, and one under 32 characters outside developer mode.

        Raises:
            ConfigurationError: The secret is missing or too short.
        """
        secret = getattr(self, "secret_key", None)
        if not isinstance(secret, str) or not secret:
            raise ConfigurationError(
                "secret_key must be set. Generate one with: openssl rand -hex 32"
            )
        if not self.developer_mode and len(secret) < 32:
            raise ConfigurationError(
                "secret_key must be at least 32 characters long. "
                "Generate one with: openssl rand -hex 32"
            )

    # -- what the router and dependencies use --------------------------------------------------

    @property
    def auth(self) -> OTPAuth[Any]:
        """The service, without a store; per request use ``auth.with_store(db)``."""
        return self._auth

    @property
    def policy(self) -> Policy:
        """The validated policy."""
        return self._policy

    @property
    def key_set(self) -> KeySet:
        """The token keys."""
        return self._keys

    def jwks(self) -> dict[str, Any] | None:
        """The public keys as a JWK Set, or ``None`` when tokens use a shared secret."""
        return self._keys.jwks() if self.private_key is not None else None

    def record_store_dependency(
        self, get_otp_db: Callable[..., Any], *, replace: bool = True
    ) -> None:
        """Remember where revocations live, for claims-only dependencies.

        Raises:
            ConfigurationError: ``get_otp_db`` cannot be called outside FastAPI's DI.
        """
        if self._resolver is not None and not replace:
            return
        if self._resolver is not None and self._resolver.dependency is get_otp_db:
            return
        self._resolver = StoreResolver(get_otp_db)

    # -- construction helpers ----------------------------------------------------------------

    def _check_environment(self) -> None:
        if not self.developer_mode:
            return
        for variable in _ENV_VARIABLES:
            value = os.environ.get(variable, "").strip().lower()
            if value in _PRODUCTION_NAMES:
                raise ConfigurationError(
                    f"developer_mode is on but {variable}={value!r}: refusing to start. "
                    "Developer mode makes every code zeros."
                )

    def _check_cookie_settings(self) -> None:
        if self.refresh_token_delivery not in _DELIVERY_MODES:
            raise ConfigurationError(
                "refresh_token_delivery must be 'cookie', 'body' or 'both', "
                f"got {self.refresh_token_delivery!r}"
            )
        if self.cookie_samesite not in _SAMESITE:
            raise ConfigurationError(
                f"cookie_samesite must be 'lax', 'strict' or 'none', got {self.cookie_samesite!r}"
            )
        if self.cookie_samesite == "none" and not self.cookie_secure:
            raise ConfigurationError("cookie_samesite='none' requires cookie_secure=True")
        if self.cookie_path is not None and not self.cookie_path.startswith("/"):
            raise ConfigurationError(f"cookie_path must start with '/', got {self.cookie_path!r}")
        if not self.cookie_name:
            raise ConfigurationError("cookie_name must not be empty")
        for origin in self.trusted_origins:
            if "://" not in origin or origin.endswith("/"):
                raise ConfigurationError(
                    f"trusted_origins entries look like 'https://app.example.com', got {origin!r}"
                )

    def _build_keys(self) -> KeySet:
        if self.private_key is None:
            if self.public_keys:
                raise ConfigurationError("public_keys needs private_key (the key that signs)")
            if self.algorithm not in _SYMMETRIC:
                raise ConfigurationError(
                    f"algorithm {self.algorithm!r} needs private_key; without one use "
                    f"{', '.join(sorted(_SYMMETRIC))}"
                )
            return KeySet.symmetric(self.secret_key.encode(), self.algorithm)
        if self.algorithm in _SYMMETRIC:
            raise ConfigurationError(
                "private_key needs an asymmetric algorithm: set algorithm to "
                "'RS256', 'ES256' or 'EdDSA'"
            )
        signing = SigningKey(algorithm=self.algorithm, key=self.private_key, kid=self.key_id)
        others = [
            VerificationKey(algorithm=self.algorithm, key=pem, kid=kid)
            for kid, pem in self.public_keys.items()
            if kid != self.key_id  # the signing key's own public half is already in the set
        ]
        return KeySet(signing, others)

    def _clock(self) -> Callable[[], datetime]:
        # The bound method only when a subclass overrides it: one call less per request.
        return self.now if type(self).now is not OTPAuthConfig.now else _utc_now

    def _hook(self, name: str) -> Any:
        # An hook left at its default returns {}: pass None so the core skips the call.
        overridden = getattr(type(self), name) is not getattr(OTPAuthConfig, name)
        return getattr(self, name) if overridden else None

    def _open_revocations(self) -> AbstractAsyncContextManager[RevocationStore]:
        resolver = self._resolver
        if resolver is None:
            raise ConfigurationError(
                "claims-only dependencies need to know the store: build "
                "get_auth_router(get_otp_db, config) (or a current-user dependency) first"
            )
        return resolver.open(current_request.get())
