"""The config's delivery settings, validated and turned into a mailer and outbox options.

Called by :class:`~otpcore_fastapi.config.OTPAuthConfig` whenever it (re)builds, so a bad
value fails at construction or assignment, never on a request. Which mailer, in order:

1. an overridden ``send_otp`` (the reference's hook) always wins;
2. ``mail_sender`` (any :class:`~otpcore.delivery.MessageSender`), with the templates;
3. ``smtp_url``, with the templates;
4. none of these: a :class:`ConfigurationError` naming all three.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otpcore.delivery import (
    CallbackMailer,
    CodeMail,
    Mailer,
    MessageSender,
    RetryPolicy,
    SMTPSender,
    TemplateMailer,
    Templates,
)
from otpcore.domain.errors import ConfigurationError

if TYPE_CHECKING:  # the config calls these: a runtime import would be circular
    from otpcore_fastapi.config import OTPAuthConfig

__all__ = ["build_mailer", "outbox_options"]


def _positive_int(config: OTPAuthConfig, setting: str) -> int:
    value = getattr(config, setting)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{setting} must be a whole number >= 1, got {value!r}")
    return value


def _duration(config: OTPAuthConfig, setting: str) -> timedelta:
    value = getattr(config, setting)
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise ConfigurationError(f"{setting} must be a timedelta above 0, got {value!r}")
    return value


def _text(config: OTPAuthConfig, setting: str) -> str | None:
    value = getattr(config, setting)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigurationError(f"{setting} must be a non-empty string or None")
    return value


def outbox_options(config: OTPAuthConfig) -> dict[str, Any]:
    """``OTPAuth`` keyword arguments for the outbox: capacity, concurrency, retry policy.

    Raises:
        ConfigurationError: A size below 1, or a delay that is not a positive timedelta.
    """
    first = _duration(config, "delivery_retry_delay")
    longest = _duration(config, "delivery_retry_max_delay")
    if longest < first:
        raise ConfigurationError("delivery_retry_max_delay must be >= delivery_retry_delay")
    return {
        "outbox_capacity": _positive_int(config, "outbox_size"),
        "outbox_concurrency": _positive_int(config, "outbox_concurrency"),
        "retry": RetryPolicy(first_delay=first, max_delay=longest),
    }


def build_mailer(config: OTPAuthConfig, send_otp_overridden: bool) -> Mailer:
    """The mailer the settings describe (see the module for the order).

    Raises:
        ConfigurationError: Naming the setting that cannot work.
    """
    smtp_url = _text(config, "smtp_url")
    sender = config.mail_sender
    if send_otp_overridden:
        return CallbackMailer(config.send_otp)
    if sender is None and smtp_url is None:
        raise ConfigurationError(
            "no way to send codes: set smtp_url (or mail_sender), or override send_otp"
        )
    if sender is not None and not isinstance(sender, MessageSender):
        raise ConfigurationError(
            f"mail_sender must be an otpcore.delivery message sender, got {sender!r}"
        )
    mail_from = _text(config, "mail_from")
    if mail_from is None:
        raise ConfigurationError("mail_from must be set to send mail, e.g. 'login@example.com'")
    if sender is None:
        assert smtp_url is not None
        try:
            sender = SMTPSender.from_url(
                smtp_url,
                timeout=_duration(config, "smtp_timeout").total_seconds(),
                connections=_positive_int(config, "outbox_concurrency"),
                **_password(config),
            )
        except ValueError as exc:
            # The URL may hold a password: never quote it back.
            raise ConfigurationError(f"smtp_url: {exc}") from None
    try:
        return TemplateMailer(
            sender,
            mail_from=mail_from,
            templates=_templates(config),
            locale=_locale_hook(config),
        )
    except ValueError as exc:
        raise ConfigurationError(f"mail settings: {exc}") from exc


def _password(config: OTPAuthConfig) -> dict[str, str]:
    password = _text(config, "smtp_password")
    return {} if password is None else {"password": password}


def _templates(config: OTPAuthConfig) -> Templates:
    directory = config.mail_templates_dir
    if directory is not None and not isinstance(directory, str | Path):
        raise ConfigurationError("mail_templates_dir must be a path or None")
    overrides = dict(config.mail_templates)
    subject = _text(config, "mail_subject")
    if subject is not None:
        overrides["subject.txt"] = subject
    app_name = _text(config, "mail_app_name") or "your account"
    try:
        return Templates(directory, overrides=overrides, app_name=app_name)
    except ValueError as exc:
        raise ConfigurationError(f"mail templates: {exc}") from exc


def _locale_hook(config: OTPAuthConfig) -> Any:
    hook = config.mail_locale
    if hook is None:
        return None
    # A plain function set as a class attribute comes back bound to the instance.
    if getattr(hook, "__self__", None) is config:
        hook = hook.__func__  # type: ignore[attr-defined]
    if not callable(hook):
        raise ConfigurationError("mail_locale must be a callable (email, accept_language)")

    def choose(mail: CodeMail) -> str | None:
        chosen = hook(mail.email, mail.accept_language)
        return chosen if isinstance(chosen, str) and chosen else None

    return choose
