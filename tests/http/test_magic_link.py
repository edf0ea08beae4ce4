"""The magic link over HTTP (issue 9): the page a scanner may fetch, its button, the JSON
redeem, the settings and their OpenAPI description, through the real ASGI app."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from otpcore.delivery import Message
from otpcore.domain.errors import ConfigurationError
from otpcore_fastapi import OTPAuthConfig
from tests.http.conftest import BASE_URL, EMAIL, Harness, HarnessFactory, RecordingConfig

LINK = re.compile(r"http://testserver/auth/magic\?t=([A-Za-z0-9._-]+)")


class Sent:
    """A message sender that keeps what it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def send(self, message: Message) -> None:
        self.messages.append(message)

    async def aclose(self) -> None:
        return None


class LinkConfig(RecordingConfig):
    """Sends rendered e-mails (with the magic link) to :class:`Sent`; limits off."""

    send_otp = OTPAuthConfig.send_otp  # not overridden: the mail settings send
    mail_from = "Example <login@example.com>"
    magic_link_url = f"{BASE_URL}/auth/magic"
    send_limit_per_client = None
    send_limit_per_mailbox = None
    verify_limit_per_client = None

    def __init__(self, **settings: Any) -> None:
        self.sent = Sent()
        settings.setdefault("mail_sender", self.sent)
        super().__init__(**settings)

    def last_message(self, email: str = EMAIL) -> Message:
        return [m for m in self.sent.messages if m.recipient == email][-1]


async def _mailed(harness: Harness, email: str = EMAIL) -> tuple[str, str, str]:
    """Request a code; its challenge_id, the link's token and the code."""
    response = await harness.request_code(email)
    assert response.status_code == 200, response.text
    config = harness.config
    assert isinstance(config, LinkConfig)
    message = config.last_message(email)
    match = LINK.search(message.text)
    assert match, message.text
    code = re.search(r"\b(\d{6})\b", message.text)
    assert code
    return response.json()["challenge_id"], match.group(1), code.group(1)


def _state(harness: Harness) -> Any:
    """Everything the memory store holds."""
    memory = harness.memory
    return copy.deepcopy(
        (
            memory._challenges,
            memory._counters,
            memory._users,
            memory._by_email,
            memory._revocations,
            memory._sessions,
        )
    )


async def test_the_mail_carries_the_link_in_both_parts(make_harness: HarnessFactory) -> None:
    harness = await make_harness(config_class=LinkConfig)
    _, token, _ = await _mailed(harness)
    assert isinstance(harness.config, LinkConfig)
    message = harness.config.last_message()
    assert message.html is not None
    assert f'href="{BASE_URL}/auth/magic?t={token}"' in message.html
    assert len(token.split(".")[1]) == 22  # 128 random bits


async def test_opening_the_link_shows_a_page_and_changes_nothing(
    make_harness: HarnessFactory,
) -> None:
    harness = await make_harness(config_class=LinkConfig)
    _, token, _ = await _mailed(harness)
    before = _state(harness)
    for _ in range(3):  # scanners, previews, the reader
        page = await harness.client.get("/auth/magic", params={"t": token})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert "set-cookie" not in page.headers
        assert '<html lang="en">' in page.text
        assert '<form method="post" action="magic">' in page.text
        assert f'<input type="hidden" name="t" value="{token}">' in page.text
    assert _state(harness) == before
    bad = await harness.client.get("/auth/magic", params={"t": "<script>"})
    assert bad.status_code == 400
    assert "<script>" not in bad.text
    assert bad.headers["referrer-policy"] == "no-referrer"
    assert _state(harness) == before


async def test_the_button_logs_in_like_verify_otp_and_redirects(
    make_harness: HarnessFactory,
) -> None:
    harness = await make_harness(config_class=LinkConfig)
    challenge_id, token, code = await _mailed(harness)
    response = await harness.client.post("/auth/magic", data={"t": token})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/"
    assert response.headers["referrer-policy"] == "no-referrer"
    cookies = response.headers.get_list("set-cookie")
    refresh = next(c for c in cookies if c.startswith("refresh_token="))
    assert "HttpOnly" in refresh
    assert "Path=/auth" in refresh
    assert any(c.startswith("otp_device=") for c in cookies)
    # The cookie it set is a real session.
    refreshed = await harness.client.post("/auth/refresh")
    assert refreshed.status_code == 200, refreshed.text
    me = await harness.client.get(
        "/me", headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    )
    assert me.json()["email"] == EMAIL
    # Code and link were one challenge: both are spent now.
    again = await harness.client.post("/auth/magic", data={"t": token})
    assert again.status_code == 400
    assert "cannot be used" in again.text
    verify = await harness.client.post(
        "/auth/verify-otp", json={"email": EMAIL, "code": code, "challenge_id": challenge_id}
    )
    assert verify.status_code == 401


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 303),  # not a browser cross-origin request
        ({"Origin": BASE_URL}, 303),
        ({"Origin": BASE_URL, "Sec-Fetch-Site": "same-origin"}, 303),
        ({"Origin": "https://evil.example"}, 403),
        ({"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
    ],
)
async def test_the_button_has_the_origin_check_of_a_cookie_refresh(
    make_harness: HarnessFactory, headers: dict[str, str], status: int
) -> None:
    harness = await make_harness(config_class=LinkConfig)
    _, token, _ = await _mailed(harness)
    before = _state(harness)
    response = await harness.client.post("/auth/magic", data={"t": token}, headers=headers)
    assert response.status_code == status, response.text
    if status == 403:
        assert "set-cookie" not in response.headers
        assert _state(harness) == before  # refused before anything was read
        retried = await harness.client.post("/auth/magic", data={"t": token})
        assert retried.status_code == 303


async def test_the_redirect_target_is_configurable(make_harness: HarnessFactory) -> None:
    harness = await make_harness(config_class=LinkConfig, magic_link_redirect="/welcome?x=1")
    _, token, _ = await _mailed(harness)
    response = await harness.client.post("/auth/magic", data={"t": token})
    assert response.headers["location"] == "/welcome?x=1"


@pytest.mark.parametrize("body", [b"", b"t=", b"x=1", b"t=a&t=b", b"t=%ff%fe", b"\xff\xfe"])
async def test_a_malformed_form_is_a_refused_link(
    make_harness: HarnessFactory, body: bytes
) -> None:
    harness = await make_harness(config_class=LinkConfig)
    response = await harness.client.post(
        "/auth/magic",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")


async def test_json_redeem_answers_like_verify_otp(
    make_harness: HarnessFactory, delivery: str
) -> None:
    harness = await make_harness(config_class=LinkConfig, refresh_token_delivery=delivery)
    _, token, _ = await _mailed(harness)
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    for presented in (wrong, "nonsense", token.split(".")[0]):
        refused = await harness.client.post("/auth/magic-link", json={"token": presented})
        assert refused.status_code == 400
        assert refused.json()["code"] == "link_invalid"
    response = await harness.client.post("/auth/magic-link", json={"token": token})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["access_token"].startswith("ey")
    assert ("refresh_token" in body) is (delivery != "cookie")
    assert ("device" in body) is (delivery == "body")
    has_cookie = any(
        c.startswith("refresh_token=") for c in response.headers.get_list("set-cookie")
    )
    assert has_cookie is (delivery != "body")
    second = await harness.client.post("/auth/magic-link", json={"token": token})
    assert second.status_code == 400
    assert second.json()["code"] == "link_invalid"


async def test_wrong_links_count_no_guess(make_harness: HarnessFactory) -> None:
    harness = await make_harness(config_class=LinkConfig, max_otp_attempts=3)
    challenge_id, token, code = await _mailed(harness)
    before = _state(harness)
    key, secret, address = token.split(".")
    for n in range(20):
        forged = f"{key}.{secret[:-2]}{n:02d}.{address}"
        refused = await harness.client.post("/auth/magic-link", json={"token": forged})
        assert refused.json()["code"] == "link_invalid"
    assert _state(harness) == before
    verify = await harness.client.post(
        "/auth/verify-otp", json={"email": EMAIL, "code": code, "challenge_id": challenge_id}
    )
    assert verify.status_code == 200


async def test_an_expired_link_is_refused_as_expired(make_harness: HarnessFactory) -> None:
    harness = await make_harness(config_class=LinkConfig)
    _, token, _ = await _mailed(harness)
    harness.clock.advance(harness.config.otp_expiry.total_seconds())
    page = await harness.client.post("/auth/magic", data={"t": token})
    assert page.status_code == 401
    assert "expired" in page.text
    response = await harness.client.post("/auth/magic-link", json={"token": token})
    assert response.status_code == 401
    assert response.json()["code"] == "otp_expired"


async def test_the_page_needs_cookies(make_harness: HarnessFactory) -> None:
    harness = await make_harness(config_class=LinkConfig, refresh_token_delivery="body")
    _, token, _ = await _mailed(harness)
    assert (await harness.client.get("/auth/magic", params={"t": token})).status_code == 404
    assert (await harness.client.post("/auth/magic", data={"t": token})).status_code == 404
    response = await harness.client.post("/auth/magic-link", json={"token": token})
    assert response.status_code == 200


async def test_without_magic_link_url_no_link_is_sent(make_harness: HarnessFactory) -> None:
    harness = await make_harness(config_class=LinkConfig, magic_link_url=None)
    assert (await harness.request_code()).status_code == 200
    assert isinstance(harness.config, LinkConfig)
    assert "/auth/magic" not in harness.config.last_message().text
    paths = harness.app.openapi()["paths"]
    assert "/auth/magic-link" not in paths
    assert "/auth/magic" not in paths


async def test_openapi_documents_the_link_endpoints(make_harness: HarnessFactory) -> None:
    harness = await make_harness(config_class=LinkConfig)
    paths = harness.app.openapi()["paths"]
    redeem = paths["/auth/magic-link"]["post"]
    assert "link_invalid" in redeem["responses"]["400"]["description"]
    assert "otp_expired" in redeem["responses"]["401"]["description"]
    assert "Referrer-Policy" in paths["/auth/magic"]["get"]["description"]
    form = paths["/auth/magic"]["post"]
    assert "303" in form["responses"]
    assert "application/x-www-form-urlencoded" in form["requestBody"]["content"]


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("magic_link_url", "ftp://app.example.com/magic"),
        ("magic_link_url", "/auth/magic"),
        ("magic_link_url", "https://app.example.com/magic#t"),
        ("magic_link_redirect", "//evil.example/"),
        ("magic_link_redirect", "/\\evil.example/"),
        ("magic_link_redirect", "javascript:alert(1)"),
        ("magic_link_redirect", ""),
        ("magic_link_redirect", "/a b"),
    ],
)
def test_bad_settings_fail_at_construction(setting: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=setting):
        LinkConfig(**{setting: value})


def test_good_settings_are_taken() -> None:
    config = LinkConfig(
        magic_link_url="https://app.example.com/auth/magic?lang=de",
        magic_link_redirect="https://app.example.com/home",
    )
    assert config.magic_link_redirect == "https://app.example.com/home"
