"""Bad input gets a clear 4xx: lone surrogates, oversized bodies, impossible cookie settings."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import pytest

from otpcore.domain.errors import ConfigurationError
from otpcore_fastapi.http_errors import MAX_BODY_BYTES
from tests.http.conftest import EMAIL, HarnessFactory, RecordingConfig

JSON = {"Content-Type": "application/json"}
#: Raw JSON texts whose strings hold a lone surrogate (valid JSON, not encodable as UTF-8).
SURROGATE_BODIES = [
    b'{"email": "\\ud800"}',
    b'{"email": "\\ud800", "code": "\\ud800"}',
    b'{"refresh_token": "\\ud800"}',
    b'{"refresh_token": "a.\\ud800.b"}',
    b'["\\ud800"]',
]
#: Endpoints that read a JSON body in the "body" delivery mode.
BODY_ENDPOINTS = ["/auth/request-otp", "/auth/verify-otp", "/auth/refresh", "/auth/logout"]


@pytest.mark.parametrize("content", SURROGATE_BODIES)
async def test_a_lone_surrogate_is_a_422_on_every_endpoint_that_reads_a_body(
    make_harness: HarnessFactory, content: bytes
) -> None:
    h = await make_harness(refresh_token_delivery="body")
    for path in BODY_ENDPOINTS:
        response = await h.client.post(path, content=content, headers=JSON)
        assert response.status_code == 422, (path, response.text)
        assert isinstance(response.json()["detail"], list | str)
    assert h.config.outbox == []


async def test_a_lone_surrogate_in_the_code_is_a_422(make_harness: HarnessFactory) -> None:
    h = await make_harness()
    content = b'{"email": "alice@example.com", "code": "\\udfff"}'
    response = await h.client.post("/auth/verify-otp", content=content, headers=JSON)
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("content", SURROGATE_BODIES)
async def test_a_lone_surrogate_is_never_a_server_error_elsewhere(
    make_harness: HarnessFactory, content: bytes
) -> None:
    h = await make_harness(refresh_token_delivery="cookie")
    for path in ("/auth/refresh", "/auth/logout", "/auth/logout-all"):
        response = await h.client.post(path, content=content, headers=JSON)
        assert response.status_code < 500, (path, response.text)


async def test_the_validation_error_echoes_the_input_readably(
    make_harness: HarnessFactory,
) -> None:
    h = await make_harness()
    response = await h.client.post(
        "/auth/verify-otp", content=b'{"email": "\\ud800"}', headers=JSON
    )
    assert response.status_code == 422
    assert "\\\\ud800" in response.text  # escaped text, not an unencodable character


class Chunks:
    """A streamed request body of ``total`` bytes; counts the chunks the server pulled."""

    def __init__(self, total: int, chunk: int = 1024 * 1024) -> None:
        self.total = total
        self.chunk = chunk
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = 0
        while sent < self.total:
            self.pulled += 1
            sent += self.chunk
            yield b" " * self.chunk


@pytest.mark.parametrize("path", BODY_ENDPOINTS)
async def test_a_declared_oversized_body_is_refused_unread(
    make_harness: HarnessFactory, path: str
) -> None:
    h = await make_harness(refresh_token_delivery="body")
    body = Chunks(400 * 1024 * 1024)
    headers = {**JSON, "Content-Length": str(body.total)}
    response = await h.client.post(path, content=body, headers=headers)
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large.", "code": "body_too_large"}
    assert body.pulled <= 1  # the transport may start one chunk; the app read none


@pytest.mark.parametrize("path", BODY_ENDPOINTS)
async def test_a_streamed_oversized_body_is_cut_off_in_small_memory(
    make_harness: HarnessFactory, path: str
) -> None:
    h = await make_harness(refresh_token_delivery="body")
    body = Chunks(400 * 1024 * 1024, chunk=16 * 1024)  # chunked: no Content-Length
    tracemalloc.start()
    try:
        response = await h.client.post(path, content=body, headers=JSON)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "body_too_large"
    # Reading stops just past the cap: a few chunks, never the 400 MB.
    assert body.pulled * body.chunk <= MAX_BODY_BYTES + 2 * body.chunk
    assert peak < 8 * 1024 * 1024, peak


async def test_a_body_at_the_cap_is_read(make_harness: HarnessFactory) -> None:
    h = await make_harness()
    padding = b" " * (MAX_BODY_BYTES - 64)
    content = b'{"email": "' + EMAIL.encode() + b'"}' + padding
    response = await h.client.post("/auth/request-otp", content=content, headers=JSON)
    assert response.status_code == 200, response.text


# -- cookie settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"cookie_name": "__Host-refresh", "cookie_secure": False, "cookie_path": "/"}, "Secure"),
        ({"cookie_name": "__Host-refresh", "cookie_secure": True}, "cookie_path='/'"),
        (
            {
                "cookie_name": "__Host-refresh",
                "cookie_secure": True,
                "cookie_path": "/",
                "cookie_domain": "example.com",
            },
            "no cookie_domain",
        ),
        ({"cookie_name": "__Secure-refresh", "cookie_secure": False}, "Secure"),
    ],
)
def test_cookie_prefixes_need_what_browsers_require(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RecordingConfig(**settings)


async def test_a_host_prefixed_cookie_is_set_as_browsers_require(
    make_harness: HarnessFactory,
) -> None:
    h = await make_harness(cookie_name="__Host-refresh", cookie_secure=True, cookie_path="/")
    await h.request_code()
    verified = await h.client.post(
        "/auth/verify-otp", json={"email": EMAIL, "code": h.config.last_code()}
    )
    set_cookie = verified.headers["set-cookie"]
    assert set_cookie.startswith("__Host-refresh=")
    assert "Secure" in set_cookie
    assert "Path=/;" in set_cookie
    assert "Domain" not in set_cookie
    RecordingConfig(cookie_name="__Secure-refresh", cookie_secure=True)  # fine as well


@pytest.mark.parametrize("variable", ["OTPCORE_ENV", "ENVIRONMENT"])
def test_production_requires_secure_cookies(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.delenv("OTPCORE_ENV", raising=False)
    monkeypatch.delenv("ENVIRONMENT", raising=False)
    monkeypatch.setenv(variable, "production")
    with pytest.raises(ConfigurationError, match="cookie_secure"):
        RecordingConfig(cookie_secure=False)
    config = RecordingConfig(cookie_secure=True)
    with pytest.raises(ConfigurationError, match="cookie_secure"):
        config.cookie_secure = False
    assert config.cookie_secure is True
    # Without a refresh cookie there is nothing to protect.
    RecordingConfig(cookie_secure=False, refresh_token_delivery="body")
