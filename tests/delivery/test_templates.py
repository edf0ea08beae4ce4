"""Templates (locale choice, the link block, autoescape, checks at construction), the message
record, and the binding's mail settings."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otpcore.delivery import (
    CallbackMailer,
    CodeMail,
    ConsoleSender,
    Message,
    SMTPSender,
    TemplateMailer,
    Templates,
)
from otpcore.domain.errors import ConfigurationError
from otpcore_fastapi.languages import MAX_LANGUAGES, accept_languages
from tests.delivery.conftest import MailConfig
from tests.delivery.smtp_server import SMTPServer

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)


def mail(**fields: Any) -> CodeMail:
    return CodeMail(
        email="ada@example.com", code="428913", expires_at=NOW + timedelta(minutes=10), **fields
    )


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, ()),
        ("", ()),
        ("de-CH, de;q=0.9, en;q=0.8, *;q=0.5", ("de-ch", "de", "en")),
        ("en;q=0.2, fr", ("fr", "en")),
        ("fr;q=0, en", ("en",)),
        ("xx;q=abc, <script>, en-US", ("en-us",)),
        # The wildcard is the default locale's business, whatever its weight.
        ("*, de;q=0.5", ("de",)),
        # Weights outside RFC 9110's qvalue grammar are skipped (werkzeug >= 3.0).
        ("en;q=NaN, de;q=1e-1, fr;q=2, es;q=-0.5, it", ("it",)),
        # Ties keep the header's order; a repeat counts once, at its best.
        ("fr;q=0.5, de;q=0.5, en", ("en", "fr", "de")),
        ("de;q=0.4, DE, en;q=0.5", ("de", "en")),
        ("pt-BR , pt ; q=0.9", ("pt-br", "pt")),
    ],
)
def test_accept_language_is_read_by_weight(header: str | None, expected: tuple[str, ...]) -> None:
    assert accept_languages(header) == expected


@pytest.mark.parametrize(
    "header",
    [",,,", ";;;q=", 'en;q="0.5', '"unterminated, de', "en;q=", "\x00de", "=;=,=", "en-", "-",
     "de-" + "x" * 9, "a" * 100_000, ";q=1", "\u00e9n, d\u00e9"],
)  # fmt: skip
def test_a_malformed_accept_language_never_raises(header: str) -> None:
    tags = accept_languages(header)
    assert all(_looks_like_a_tag(tag) for tag in tags)


@given(st.text(max_size=300))
def test_any_accept_language_gives_a_few_lowercase_tags(header: str) -> None:
    tags = accept_languages(header)
    assert len(tags) <= MAX_LANGUAGES
    assert len(set(tags)) == len(tags)
    assert all(_looks_like_a_tag(tag) and tag == tag.lower() for tag in tags)


def test_a_long_accept_language_keeps_the_most_wanted_tags() -> None:
    header = ", ".join(f"l{index:03d};q=0.{index % 9 + 1}" for index in range(200))
    tags = accept_languages(header + ", de")
    assert len(tags) == MAX_LANGUAGES
    assert tags[0] == "de"
    assert tags[1:4] == ("l008", "l017", "l026")  # q=0.9, in header order


def _looks_like_a_tag(tag: str) -> bool:
    return bool(re.fullmatch(r"[a-z0-9]{1,8}(-[a-z0-9]{1,8})*", tag))


def test_locale_falls_back_from_region_to_language_to_default(tmp_path: Path) -> None:
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "subject.txt").write_text("Ihr Code", encoding="utf-8")
    (tmp_path / "pt-br").mkdir()
    (tmp_path / "pt-br" / "subject.txt").write_text("Seu código", encoding="utf-8")
    templates = Templates(tmp_path)
    assert templates.locales == {"en", "de", "pt-br"}
    assert templates.negotiate(["de-at"]) == "de"
    assert templates.negotiate(["en-GB", "de"]) == "en"  # en-GB -> en comes before de
    assert templates.negotiate(accept_languages("en-GB;q=0.5, de-CH")) == "de"
    assert templates.negotiate(accept_languages("pt-BR,pt;q=0.9")) == "pt-br"
    assert templates.negotiate(["ja", "<script>"]) == "en"
    assert templates.negotiate([]) == "en"
    rendered = templates.render(mail(languages=("de-at",)), now=NOW)
    assert (rendered.subject, rendered.locale) == ("Ihr Code", "de")
    # Only the subject is German: the bodies come from the defaults.
    assert "428913" in rendered.text
    assert "428913" in rendered.html
    # The raw header is not the core's to read: only the tags choose.
    assert templates.render(mail(accept_language="de"), now=NOW).locale == "en"


def test_negotiate_refuses_a_header_string() -> None:
    with pytest.raises(TypeError, match="not a header"):
        Templates().negotiate("de")


async def test_request_otp_mails_in_the_accept_language_of_the_request(
    smtp_server: SMTPServer, mail_app: Any
) -> None:
    seen: list[str | None] = []

    def locale(email: str, accept_language: str | None) -> str | None:
        seen.append(accept_language)
        return None

    client, config, _ = await mail_app(
        mail_templates={"de/subject.txt": "Ihr Code", "fr/subject.txt": "Votre code"},
        mail_locale=locale,
    )
    header = "it, fr;q=0.4, de-AT;q=0.8, *;q=0.9"
    for email, headers in (
        ("ada@example.com", {"Accept-Language": header}),
        ("bob@example.com", {"Accept-Language": 'q=;,,"'}),
        ("eve@example.com", {}),
    ):
        response = await client.post("/auth/request-otp", json={"email": email}, headers=headers)
        assert response.status_code == 200
    assert await config.auth.outbox.drain(5) == 0
    subjects = {
        r.rcpt_tos[0]: (r.message["Subject"], r.message["Content-Language"])
        for r in smtp_server.recorder.received
    }
    assert subjects == {
        "ada@example.com": ("Ihr Code", "de"),
        "bob@example.com": ("Your sign-in code", "en"),
        "eve@example.com": ("Your sign-in code", "en"),
    }
    # The mail_locale hook still gets the header itself, unchanged.
    assert sorted(seen, key=str) == sorted([header, 'q=;,,"', None], key=str)


def test_the_link_block_appears_only_with_a_link_and_is_escaped() -> None:
    templates = Templates()
    without = templates.render(mail(), now=NOW)
    assert "<a " not in without.html
    assert "link" not in without.text.lower()
    link = 'https://app.example.com/auth/magic?t=abc&x="1"'
    rendered = templates.render(mail(link=link), now=NOW)
    assert link in rendered.text
    assert 'href="https://app.example.com/auth/magic?t=abc&amp;x=&quot;1&quot;"' in rendered.html
    assert link not in rendered.html


def test_declared_variables_and_minutes() -> None:
    templates = Templates(
        overrides={"body.txt": "$code for $support in $minutes min"},
        variables={"support": "help@example.com"},
    )
    assert templates.render(mail(), now=NOW).text == "428913 for help@example.com in 10 min"
    later = templates.render(mail(variables={"support": "<desk>"}), now=NOW + timedelta(minutes=9))
    assert later.text == "428913 for <desk> in 1 min"
    assert "&lt;desk&gt;" not in later.text
    with pytest.raises(ValueError, match="undeclared"):
        templates.render(mail(variables={"other": "x"}), now=NOW)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"body.txt": "Your code is $cod"}, "unknown variable"),
        ({"body.txt": "Costs $5"}, "starts no variable"),
        ({"subject.txt": "$subject"}, "unknown variable"),
        ({"link.txt": "$link_block"}, "unknown variable"),
        ({"footer.txt": "x"}, "unknown template"),
        ({"de_DE!/body.txt": "x"}, "language tag"),
    ],
)
def test_bad_templates_fail_at_construction(overrides: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Templates(overrides=overrides)


def test_message_refuses_reserved_headers_and_keeps_content_headers() -> None:
    with pytest.raises(ValueError, match="subject"):
        Message(
            recipient="a@example.com",
            sender="b@example.com",
            subject="s",
            text="t",
            message_id="<1@example.com>",
            date=NOW,
            headers={"Subject": "x"},
        )
    message = Message(
        recipient="a@example.com",
        sender="Name <b@example.com>",
        subject="s",
        text="t",
        message_id="<1@example.com>",
        date=NOW,
        headers={"Content-Language": "de"},
    )
    assert message.envelope_sender == "b@example.com"
    assert message.to_email()["Content-Language"] == "de"
    assert "t" not in repr(message).split("recipient")[0]


async def test_the_console_sender_prints_the_message() -> None:
    stream = io.StringIO()
    mailer = TemplateMailer(ConsoleSender(stream), mail_from="dev@example.com")
    await mailer.deliver(mail(message_id="<x@example.com>"), now=NOW)
    printed = stream.getvalue()
    assert "To: ada@example.com" in printed
    assert "428913" in printed
    assert "Message-ID: <x@example.com>" in printed


def test_smtp_urls() -> None:
    sender = SMTPSender.from_url("smtps://user%40corp:p%3Ass@mail.example.com")
    assert (sender.host, sender.port, sender.tls) == ("mail.example.com", 465, "implicit")
    assert (sender.username, sender.password) == ("user@corp", "p:ss")
    assert "p:ss" not in repr(sender)
    assert SMTPSender.from_url("smtp://mail.example.com").tls == "starttls"
    assert SMTPSender.from_url("smtp://mail.example.com").port == 587
    local = SMTPSender.from_url("smtp://127.0.0.1:1025")
    assert (local.tls, local.port) == ("none", 1025)
    for bad in ("http://x", "smtp://", "smtp://host/path", "smtp://user@host"):
        with pytest.raises(ValueError, match=r"SMTP URL|username and password"):
            SMTPSender.from_url(bad)


def test_an_overridden_send_otp_wins_over_the_mail_settings() -> None:
    class Both(MailConfig):
        async def send_otp(self, email: str, code: str) -> None:
            pass

    config = Both(smtp_url="smtp://127.0.0.1:2525")
    assert isinstance(config.auth.outbox.mailer, CallbackMailer)
    plain = MailConfig(smtp_url="smtp://127.0.0.1:2525")
    assert isinstance(plain.auth.outbox.mailer, TemplateMailer)
    console = MailConfig(mail_sender=ConsoleSender())
    assert isinstance(console.auth.outbox.mailer, TemplateMailer)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"smtp_url": "http://mail.example.com"}, "smtp_url"),
        ({"smtp_url": "smtp://u:secret-pw@"}, "smtp_url"),
        ({"smtp_url": "smtp://127.0.0.1", "mail_from": None}, "mail_from"),
        ({"smtp_url": "smtp://127.0.0.1", "mail_from": "not an address"}, "mail"),
        ({"mail_sender": object()}, "mail_sender"),
        ({"smtp_url": "smtp://127.0.0.1", "outbox_size": 0}, "outbox_size"),
        ({"smtp_url": "smtp://127.0.0.1", "outbox_concurrency": True}, "outbox_concurrency"),
        ({"smtp_url": "smtp://127.0.0.1", "smtp_timeout": 5}, "smtp_timeout"),
        ({"smtp_url": "smtp://127.0.0.1", "delivery_retry_delay": timedelta(0)}, "retry"),
        (
            {"smtp_url": "smtp://127.0.0.1", "delivery_retry_max_delay": timedelta(seconds=1)},
            "delivery_retry_max_delay",
        ),
        ({"smtp_url": "smtp://127.0.0.1", "mail_templates": {"body.txt": "$nope"}}, "nope"),
        ({"smtp_url": "smtp://127.0.0.1", "mail_templates_dir": "/does/not/exist"}, "exist"),
        ({"smtp_url": "smtp://127.0.0.1", "mail_subject": "$oops"}, "oops"),
        ({"smtp_url": "smtp://127.0.0.1", "mail_locale": "de"}, "mail_locale"),
    ],
)
def test_bad_mail_settings_fail_at_construction(settings: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as refused:
        MailConfig(**settings)
    assert "secret-pw" not in str(refused.value)


def test_mail_settings_are_validated_on_assignment() -> None:
    config = MailConfig(smtp_url="smtp://127.0.0.1:2525")
    with pytest.raises(ConfigurationError, match="outbox_size"):
        config.outbox_size = -1
    assert config.auth.outbox.capacity == 1000
    config.outbox_size = 5
    assert config.auth.outbox.capacity == 5


def test_the_locale_hook_wins_over_the_languages() -> None:
    def locale(email: str, accept_language: str | None) -> str | None:
        return "de" if email.endswith(".de") else None

    config = MailConfig(
        smtp_url="smtp://127.0.0.1:2525",
        mail_locale=locale,
        mail_templates={"de/subject.txt": "Ihr Code"},
    )
    mailer = config.auth.outbox.mailer
    assert isinstance(mailer, TemplateMailer)
    german = CodeMail(
        email="ada@example.de", code="1", expires_at=NOW, languages=("en",), created_at=NOW
    )
    assert mailer.compose(german, now=NOW).subject == "Ihr Code"
    other = CodeMail(email="ada@example.com", code="1", expires_at=NOW, languages=("de",))
    assert mailer.compose(other, now=NOW).subject == "Ihr Code"
    english = CodeMail(email="ada@example.com", code="1", expires_at=NOW)
    assert mailer.compose(english, now=NOW).subject == "Your sign-in code"
