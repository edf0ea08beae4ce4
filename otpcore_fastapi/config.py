"""``OTPAuthConfig``: the application's settings and hooks, turned into one ``OTPAuth``.

Subclass it with class attributes, as in ``fastapi-otp-authentication``; every attribute of
the reference keeps its name and meaning. Construction validates everything and builds the
service, so a misconfiguration fails at startup, never on a request. A setting assigned on
the instance afterwards (``config.otp_length = 8``) is validated on assignment and rebuilds
the service; routers and dependencies read ``config.auth`` per request, so it takes effect
for those already built too.
"""

from __future__ import annotations

import logging
import os
from abc import ABC
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal

from otpcore.delivery import MessageSender
from otpcore.domain.errors import ConfigurationError
from otpcore.domain.policy import HMAC_MIN_BYTES, Policy, check_secret
from otpcore.ports import RevocationStore
from otpcore.service import OTPAuth
from otpcore.tokens import KeySet
from otpcore_fastapi.mail import build_mailer, outbox_options
from otpcore_fastapi.schemas import CHALLENGE_ID_MAX_LENGTH, DEVICE_MAX_LENGTH
from otpcore_fastapi.settings import (
    build_keys,
    build_limits,
    check_client_id,
    check_cookie_settings,
    check_magic_link,
)
from otpcore_fastapi.store_source import StoreSource, current_request
from otpcore_fastapi.transport import BindingCookie, RefreshTransport

__all__ = ["OTPAuthConfig", "RevocationSource"]

logger = logging.getLogger("otpcore_fastapi")

#: Opens a revocation store for a claims-only mirror refresh: an async context manager.
RevocationSource = Callable[[], AbstractAsyncContextManager[RevocationStore]]

_ENV_VARIABLES: Final = ("OTPCORE_ENV", "ENVIRONMENT")
#: Overridable methods whose instance assignment rebuilds the service, like a setting's.
_HOOKS: Final = frozenset({"send_otp", "get_additional_claims", "new_user_fields", "now"})


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _environment() -> str | None:
    # The first variable set wins, as documented for deployments.
    for variable in _ENV_VARIABLES:
        value = os.environ.get(variable)
        if value:
            return value
    return None


@dataclass(frozen=True, slots=True)
class _Built:
    # Everything derived from the settings, swapped in as one value so a failed rebuild
    # leaves the previous one whole.
    policy: Policy
    keys: KeySet
    auth: OTPAuth[Any]
    transport: RefreshTransport
    challenge: BindingCookie
    device: BindingCookie
    source: RevocationSource | None


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
    #: Cookie carrying request-otp's binding to verify-otp (cookie and both modes); same
    #: path, domain, ``Secure`` and ``SameSite`` as the refresh cookie.
    challenge_cookie_name: str = "otp_challenge"
    #: Cookie keeping a logged-in client's device allowance (its own share of the address's
    #: send budget) in cookie and both modes.
    device_cookie_name: str = "otp_device"
    #: How long the device cookie is kept (at most 400 days, browsers' cap).
    device_cookie_lifetime: timedelta = timedelta(days=365)
    #: Answer 404 for unknown e-mails instead of exactly as for known ones (reveals accounts).
    reveal_unknown_users: bool = False
    #: Longest a claims-only check trusts this worker's revocation mirror.
    revocation_mirror_interval: timedelta = timedelta(seconds=1)
    #: Origins (``scheme://host[:port]``) besides the request's own allowed to send
    #: cookie-authenticated ``/refresh`` and ``/logout``.
    trusted_origins: Sequence[str] = ()
    #: Where claims-only dependencies read revocations: a zero-argument callable returning an
    #: async context manager that yields a ``RevocationStore``, e.g.
    #: ``revocation_source = staticmethod(open_store)``. ``None`` (the default) opens the
    #: ``get_otp_db`` given to ``get_auth_router``, through FastAPI's dependency injection.
    revocation_source: RevocationSource | None = None
    #: Absolute session lifetime: no refresh extends a session past its login plus this
    #: (NIST SP 800-63B rev 4 §2.2.3: reauthenticate at AAL1 at least every 30 days).
    session_lifetime: timedelta = timedelta(days=30)
    #: A session not refreshed for this long ends; ``None`` means ``refresh_token_lifetime``.
    session_idle_timeout: timedelta | None = None
    #: How long after a refresh the replaced refresh token still yields the same new pair
    #: (two tabs, a retried request) instead of counting as reuse; 0 is strict, at most 5 min.
    refresh_grace_period: timedelta = timedelta(seconds=10)
    #: Clock difference tolerated between hosts when checking token times (and how far back
    #: the revocation mirror looks); at most 5 min. Keep hosts on NTP all the same.
    clock_skew_leeway: timedelta = timedelta(seconds=30)
    #: RFC 9068 ``client_id`` claim written into access tokens; ``None`` writes none.
    client_id: str | None = None

    # -- abuse protection: sliding-window limits; None turns one off (docs/abuse.md) ----------
    #: Codes per client address (IPv6 counted by /64) per ``send_limit_per_client_window``.
    #: Default 25 per 5 minutes, so no single minute sends more than 30 (Supabase Auth: 30
    #: per 5 minutes per IP; django-allauth: 20 per minute per IP).
    send_limit_per_client: int | None = 25
    #: Window of ``send_limit_per_client``.
    send_limit_per_client_window: timedelta = timedelta(minutes=5)
    #: Codes per mailbox (case-folded, ``+tag`` removed, gmail dots folded) per
    #: ``send_limit_per_mailbox_window``. Default 5 per hour (django-allauth: 3 per minute per
    #: address); a client that has logged in as the address has its own budget of this size.
    send_limit_per_mailbox: int | None = 5
    #: Window of ``send_limit_per_mailbox``.
    send_limit_per_mailbox_window: timedelta = timedelta(hours=1)
    #: Codes per hour for the whole deployment; off by default (Supabase Auth caps a
    #: project's e-mails per hour).
    send_limit_global_per_hour: int | None = None
    #: Guesses per client address on verify-otp, across every address (guess spraying), per
    #: ``verify_limit_per_client_window``. Default 30 per 5 minutes (Supabase Auth's
    #: verification limit).
    verify_limit_per_client: int | None = 30
    #: Window of ``verify_limit_per_client``.
    verify_limit_per_client_window: timedelta = timedelta(minutes=5)

    # -- delivery: an overridden send_otp wins over all of these (docs/delivery.md) ----------
    #: ``smtp://[user@]host[:port]`` (STARTTLS required; none to a loopback host) or ``smtps://``.
    smtp_url: str | None = None
    #: SMTP AUTH password (else the URL's); read it from the environment.
    smtp_password: str | None = None
    #: Longest one SMTP command (or connecting) may take.
    smtp_timeout: timedelta = timedelta(seconds=10)
    #: Any ``otpcore.delivery`` message sender (e.g. ``ConsoleSender()``) instead of ``smtp_url``.
    mail_sender: MessageSender | None = None
    #: ``From`` of the code e-mails, e.g. ``"Example <login@example.com>"``; required to send.
    mail_from: str | None = None
    #: Subject line, a ``string.Template`` (``$code``, ``$app_name``, …); ``None``: the template's.
    mail_subject: str | None = None
    #: How the e-mails name the application (``$app_name``).
    mail_app_name: str = "your account"
    #: Directory of template overrides: ``body.html`` for every locale, ``de/body.html`` for one.
    mail_templates_dir: str | None = None
    #: Template overrides as text, keyed like the files; they win over ``mail_templates_dir``.
    mail_templates: Mapping[str, str] = MappingProxyType({})
    #: ``(email, accept_language) -> locale or None`` picks an e-mail's template locale.
    mail_locale: Callable[[str, str | None], str | None] | None = None
    #: Codes waiting for delivery at most; when full, request-otp answers 429 ``busy``.
    outbox_size: int = 1000
    #: Deliveries running at once (and SMTP connections kept open).
    outbox_concurrency: int = 4
    #: Wait before retrying a transient delivery failure; doubles per failure, with jitter.
    delivery_retry_delay: timedelta = timedelta(seconds=2)
    #: Longest wait between two retries (retries stop when the code expires).
    delivery_retry_max_delay: timedelta = timedelta(seconds=60)

    # -- magic link: a link beside the code in each e-mail (docs/delivery.md) ---------------
    #: The link's page, e.g. ``"https://app.example.com/auth/magic"`` (the router's
    #: ``GET /magic``); each e-mail links ``<magic_link_url>?t=<token>``. ``None``: no link.
    magic_link_url: str | None = None
    #: Where the link's page sends the browser after logging in (a 303): a path on this
    #: site, or an absolute http(s) URL.
    magic_link_redirect: str = "/"

    _current: _Built

    def __init__(self) -> None:
        """Validate every setting and build the service."""
        self._install(self._build())
        object.__setattr__(self, "_built_once", True)

    if not TYPE_CHECKING:  # hidden from type checkers, which then still catch typos

        def __setattr__(self, name: str, value: Any) -> None:
            """Assign; a setting or hook is validated and the service rebuilt at once.

            Raises:
                ConfigurationError: The new value cannot work; the previous one is kept.
            """
            _assign(self, name, value)

        def __delattr__(self, name: str) -> None:
            """Delete an instance value; a setting falls back to the class's, revalidated."""
            _delete(self, name)

    def _rebuild_or_restore(self, name: str, previous: object, missing: object) -> None:
        try:
            built = self._build()
        except BaseException:
            if previous is missing:
                object.__delattr__(self, name)
            else:
                object.__setattr__(self, name, previous)
            raise
        self._install(built)

    # -- hooks -------------------------------------------------------------------------------

    async def send_otp(self, email: str, code: str) -> None:
        """Deliver ``code`` to ``email`` (e-mail, SMS, …); overriding it wins over the mail
        settings. Raising means not delivered (``TransientFailure``: retry it)."""
        raise NotImplementedError  # never called: build_mailer uses the settings instead

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
        """Refuse a missing secret; outside developer mode also a short or placeholder one.

        The rule is :func:`otpcore.domain.policy.check_secret` (at least 32 bytes for HS256,
        48/64 for HS384/HS512, never the reference README's placeholder).

        Raises:
            ConfigurationError: The secret is missing, too short or the placeholder.
        """
        secret = getattr(self, "secret_key", None)
        if not isinstance(secret, str) or not secret:
            raise ConfigurationError(
                "secret_key must be set. Generate one with: openssl rand -hex 32"
            )
        algorithm = self.algorithm if self.algorithm in HMAC_MIN_BYTES else "HS256"
        try:
            check_secret(secret, algorithm=algorithm, developer_mode=self.developer_mode)
        except ValueError as exc:
            raise ConfigurationError(f"secret_key: {exc}") from exc

    # -- what the router and dependencies use --------------------------------------------------

    @property
    def auth(self) -> OTPAuth[Any]:
        """The service, without a store; per request use ``auth.with_store(db)``.

        Rebuilt when a setting is assigned, so read it per request rather than keeping it.
        """
        return self._current.auth

    @property
    def policy(self) -> Policy:
        """The validated policy."""
        return self._current.policy

    @property
    def key_set(self) -> KeySet:
        """The token keys."""
        return self._current.keys

    @property
    def transport(self) -> RefreshTransport:
        """How the refresh token travels (cookie, body or both) and the CSRF check."""
        return self._current.transport

    @property
    def challenge_cookie(self) -> BindingCookie:
        """The cookie carrying request-otp's binding to verify-otp (cookie and both modes)."""
        return self._current.challenge

    @property
    def device_cookie(self) -> BindingCookie:
        """The cookie keeping a logged-in client's device allowance (cookie and both modes)."""
        return self._current.device

    def jwks(self) -> dict[str, Any] | None:
        """The public keys as a JWK Set, or ``None`` when tokens use a shared secret."""
        return self._current.keys.jwks() if self.private_key is not None else None

    def record_store_dependency(
        self, get_otp_db: Callable[..., Any], *, replace: bool = True
    ) -> None:
        """Remember where revocations live, for claims-only dependencies.

        Not needed when ``revocation_source`` is set, which then takes precedence.

        Raises:
            ConfigurationError: ``get_otp_db`` cannot be solved on an arbitrary route.
        """
        recorded = self.__dict__.get("_store_source")
        if recorded is not None and (not replace or recorded.dependency is get_otp_db):
            return
        object.__setattr__(self, "_store_source", StoreSource(get_otp_db))

    # -- construction helpers ----------------------------------------------------------------

    def _build(self) -> _Built:
        self.validate_secret()
        environment = _environment()
        try:
            policy = Policy(
                secret=self.secret_key.encode(),
                code_length=self.otp_length,
                code_lifetime=self.otp_expiry,
                max_attempts=self.max_otp_attempts,
                resend_cooldown=timedelta(seconds=self.otp_rate_limit_seconds),
                access_lifetime=self.access_token_lifetime,
                refresh_lifetime=self.refresh_token_lifetime,
                issuer=self.issuer,
                audience=self.audience,
                session_lifetime=self.session_lifetime,
                idle_timeout=self.session_idle_timeout,
                refresh_grace=self.refresh_grace_period,
                leeway=self.clock_skew_leeway,
                client_id=check_client_id(self.client_id),
                developer_mode=self.developer_mode,
                environment=environment,
            )
            check_cookie_settings(self, environment)
            keys = build_keys(self)
            source = self._explicit_source()
            auth: OTPAuth[Any] = OTPAuth(
                policy=policy,
                store=None,
                sender=build_mailer(self, self._overridden("send_otp")),
                keys=keys,
                clock=self._clock(),
                auto_create_user=self.auto_create_user,
                reveal_unknown_users=self.reveal_unknown_users,
                new_user_fields=self._hook("new_user_fields"),
                claims_for=self._hook("get_additional_claims"),
                mirror_interval=self.revocation_mirror_interval,
                revocation_source=source or self._open_recorded_source,
                limits=build_limits(self),
                magic_link_url=check_magic_link(self),
                **outbox_options(self),
            )
            transport = RefreshTransport(self)
            challenge = BindingCookie(
                self,
                name=self.challenge_cookie_name,
                max_age=self.otp_expiry,
                max_length=CHALLENGE_ID_MAX_LENGTH,
            )
            device = BindingCookie(
                self,
                name=self.device_cookie_name,
                max_age=self.device_cookie_lifetime,
                max_length=DEVICE_MAX_LENGTH,
            )
        except ConfigurationError:
            raise
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(str(exc)) from exc
        return _Built(
            policy=policy,
            keys=keys,
            auth=auth,
            transport=transport,
            challenge=challenge,
            device=device,
            source=source,
        )

    def _install(self, built: _Built) -> None:
        was_developer = "_current" in self.__dict__ and self._current.policy.developer_mode
        object.__setattr__(self, "_current", built)
        if built.policy.developer_mode and not was_developer:
            logger.warning(
                "otpcore_fastapi: DEVELOPER MODE IS ON: every code is %s and short secrets "
                "are accepted. Never run this in production.",
                "0" * built.policy.code_length,
            )

    def _explicit_source(self) -> RevocationSource | None:
        source = self.revocation_source
        if source is None:
            return None
        # A plain function set as a class attribute comes back bound to this instance.
        if getattr(source, "__self__", None) is self:
            source = source.__func__  # type: ignore[attr-defined]
        if not callable(source):
            raise ConfigurationError(
                f"revocation_source must be a callable returning an async context manager, "
                f"got {source!r}"
            )
        return source

    def _overridden(self, name: str) -> bool:
        return name in self.__dict__ or getattr(type(self), name) is not getattr(
            OTPAuthConfig, name
        )

    def _clock(self) -> Callable[[], datetime]:
        # The bound method only when overridden: one call less per request.
        return self.now if self._overridden("now") else _utc_now

    def _hook(self, name: str) -> Any:
        # A hook left at its default returns {}: pass None so the core skips the call.
        return getattr(self, name) if self._overridden(name) else None

    def _open_recorded_source(self) -> AbstractAsyncContextManager[RevocationStore]:
        recorded: StoreSource | None = self.__dict__.get("_store_source")
        if recorded is None:
            raise ConfigurationError(
                "claims-only dependencies need to know the store: build "
                "get_auth_router(get_otp_db, config) (or a current-user dependency) first, "
                "or set revocation_source"
            )
        return recorded.open(current_request.get())


def _assign(config: OTPAuthConfig, name: str, value: Any) -> None:
    if name not in _REBUILT_BY or not config.__dict__.get("_built_once", False):
        object.__setattr__(config, name, value)
        return
    missing = object()
    previous = config.__dict__.get(name, missing)
    object.__setattr__(config, name, value)
    config._rebuild_or_restore(name, previous, missing)


def _delete(config: OTPAuthConfig, name: str) -> None:
    missing = object()
    previous = config.__dict__.get(name, missing)
    object.__delattr__(config, name)
    if name in _REBUILT_BY and config.__dict__.get("_built_once", False):
        config._rebuild_or_restore(name, previous, missing)


#: Every setting (each annotated attribute, including those added later) and hook.
_REBUILT_BY: Final = (
    frozenset(name for name in OTPAuthConfig.__annotations__ if not name.startswith("_")) | _HOOKS
)
