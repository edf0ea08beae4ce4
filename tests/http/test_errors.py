"""The error table as clients see it: status, headers and ``{"detail", "code"}`` bodies."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import Request

from otpcore.domain import errors
from otpcore.domain.emails import InvalidEmail
from otpcore.domain.errors import StorageError
from otpcore.stores._base import PORT_METHODS
from otpcore.stores.memory import MemoryStore
from otpcore_fastapi import bearer_scheme, install_error_handlers
from otpcore_fastapi.http_errors import (
    ERROR_TABLE,
    BodyTooLarge,
    CSRFRefused,
    ErrorCode,
    TokenMissing,
    spec_for,
)
from tests.http.conftest import EMAIL, HarnessFactory, RecordingConfig

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class FaultyStore(MemoryStore):
    """A memory store that can be told to fail like a database that went away.

    Fault injection: a real database cannot be made to fail on demand mid-test.
    """

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.lose_races = False

    def __getattribute__(self, name: str) -> Any:
        attribute = super().__getattribute__(name)
        if name in PORT_METHODS and object.__getattribute__(self, "down"):

            async def unavailable(*args: object, **kwargs: object) -> Any:
                raise StorageError() from ConnectionRefusedError("db.internal:5432 refused")

            return unavailable
        return attribute

    async def save_challenge(self, user_id: str, **kwargs: Any) -> bool:
        if self.lose_races:
            return False
        return await super().save_challenge(user_id, **kwargs)

    async def update_challenge(self, challenge_id: str, **kwargs: Any) -> bool:
        if self.lose_races:
            return False
        return await super().update_challenge(challenge_id, **kwargs)


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


def assert_body(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the table's refusal for ``code``; its body."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"detail", "code"}
    assert body["code"] == code
    return body


async def snapshot(store: MemoryStore, email: str = EMAIL) -> tuple[Any, ...]:
    """Everything a request could have changed, read through the public ports."""
    account = await store.find_by_email(email)
    revocations = await store.revocations_since(EPOCH, now=EPOCH)
    return (account, sorted(r.key for r in revocations))


async def test_wrong_code_is_401_with_a_challenge(make_harness: HarnessFactory) -> None:
    h = await make_harness()
    await h.request_code()
    wrong = "111111" if h.config.last_code() != "111111" else "222222"
    response = await h.client.post("/auth/verify-otp", json={"email": EMAIL, "code": wrong})
    assert_body(response, 401, "otp_invalid")
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_no_pending_code_is_401(make_harness: HarnessFactory) -> None:
    h = await make_harness()
    await h.request_code()
    code = h.config.last_code()
    assert (await h.client.post("/auth/verify-otp", json={"email": EMAIL, "code": code})).is_success
    again = await h.client.post("/auth/verify-otp", json={"email": EMAIL, "code": code})
    assert_body(again, 401, "otp_invalid")


async def test_expired_code_is_401(make_harness: HarnessFactory) -> None:
    h = await make_harness()
    await h.request_code()
    h.clock.advance(h.config.otp_expiry + timedelta(seconds=1))
    response = await h.client.post(
        "/auth/verify-otp", json={"email": EMAIL, "code": h.config.last_code()}
    )
    assert_body(response, 401, "otp_expired")


async def test_cooldown_is_429_with_retry_after(make_harness: HarnessFactory) -> None:
    h = await make_harness(otp_rate_limit_seconds=60)
    await h.request_code()
    h.clock.advance(15)
    response = await h.request_code()
    assert_body(response, 429, "otp_cooldown")
    assert response.headers["Retry-After"] == "45"
    h.clock.advance(45)
    assert (await h.request_code()).status_code == 200


async def test_too_many_guesses_lock_the_code(make_harness: HarnessFactory) -> None:
    h = await make_harness(max_otp_attempts=2)
    await h.request_code()
    code = h.config.last_code()
    wrong = "0" * 6 if code != "0" * 6 else "1" * 6
    for _ in range(2):
        response = await h.client.post("/auth/verify-otp", json={"email": EMAIL, "code": wrong})
        assert_body(response, 401, "otp_invalid")
    locked = await h.client.post("/auth/verify-otp", json={"email": EMAIL, "code": code})
    assert_body(locked, 429, "otp_locked")
    if "Retry-After" in locked.headers:
        assert int(locked.headers["Retry-After"]) >= 0


async def test_lost_races_beyond_the_bound_are_429_busy(make_harness: HarnessFactory) -> None:
    store = FaultyStore()
    h = await make_harness(store=store)
    # Issue 8: a request opens its own binding (an insert, no race to lose); a guess is a
    # compare-and-set on the binding, and losing it every time is what 429 busy answers.
    assert (await h.request_code()).status_code == 200
    store.lose_races = True
    guess = await h.client.post(
        "/auth/verify-otp", json={"email": EMAIL, "code": h.config.last_code()}
    )
    assert_body(guess, 429, "busy")


@pytest.mark.parametrize(
    "email", ["not-an-email", "a@b", "alice@@example.com", " ", "a\r\nb@x.com"]
)
async def test_invalid_email_is_422_with_a_stable_detail(
    make_harness: HarnessFactory, email: str
) -> None:
    h = await make_harness()
    for path, body in (
        ("/auth/request-otp", {"email": email}),
        ("/auth/verify-otp", {"email": email, "code": "123456"}),
    ):
        response = await h.client.post(path, json=body)
        assert assert_body(response, 422, "invalid_email")["detail"] == "Invalid e-mail address."
    assert h.config.outbox == []


async def test_missing_bearer_is_401_without_an_error_code(make_harness: HarnessFactory) -> None:
    h = await make_harness()
    for path in ("/me", "/verified", "/claims", "/principal"):
        response = await h.client.get(path)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json() == {"detail": "Not authenticated."}
    # Another scheme is no bearer token either.
    basic = await h.client.get("/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401


#: Authorization header templates ({} is a valid access token), as FastAPI's HTTPBearer
#: would read them: the dependencies parse the header themselves and must agree with it.
AUTHORIZATION_FORMS = [
    "Bearer {}",
    "bearer {}",
    "BEARER {}",
    "Bearer  {}  ",
    "Bearer {} trailing",
    "Bearer",
    "Bearer ",
    "Bearer    ",
    " Bearer {}",
    "Basic {}",
    "Token {}",
    "{}",
    "",
]


@pytest.mark.parametrize("form", AUTHORIZATION_FORMS)
async def test_the_bearer_header_is_read_as_fastapi_httpbearer_reads_it(
    make_harness: HarnessFactory, form: str
) -> None:
    h = await make_harness()
    access = (await h.login())["access_token"]
    header = form.format(access)
    scope = {"type": "http", "headers": [(b"authorization", header.encode())]}
    credentials = await bearer_scheme(Request(scope))
    for path in ("/me", "/verified", "/claims", "/principal"):
        response = await h.client.get(path, headers={"Authorization": header})
        if credentials is None:
            assert response.status_code == 401, path
            assert response.json() == {"detail": "Not authenticated."}
            assert response.headers["WWW-Authenticate"] == "Bearer"
        elif credentials.credentials == access:
            assert response.status_code == 200, path
        else:  # the scheme found a token, just not this one (e.g. "<token> trailing")
            assert response.status_code == 401, path
            assert response.json() == {"detail": "Invalid token."}


@pytest.mark.parametrize(
    "token", ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", "x" * 20_000]
)
async def test_bad_tokens_are_401_invalid_token_without_internals(
    make_harness: HarnessFactory, token: str
) -> None:
    h = await make_harness()
    for path in ("/me", "/claims"):
        response = await h.client.get(path, headers=bearer(token))
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert response.json() == {"detail": "Invalid token."}


async def test_a_refresh_token_is_not_an_access_token(make_harness: HarnessFactory) -> None:
    h = await make_harness(refresh_token_delivery="body")
    body = await h.login()
    response = await h.client.get("/me", headers=bearer(body["refresh_token"]))
    assert response.status_code == 401
    refused = await h.client.post("/auth/refresh", json={"refresh_token": body["access_token"]})
    assert_body(refused, 401, "token_invalid")


async def test_expired_access_token_is_401_token_expired(make_harness: HarnessFactory) -> None:
    h = await make_harness()
    access = (await h.login())["access_token"]
    # Issue 10: past exp by more than the clock-skew leeway.
    h.clock.advance(
        h.config.access_token_lifetime + h.config.clock_skew_leeway + timedelta(seconds=1)
    )
    for path in ("/me", "/claims"):
        response = await h.client.get(path, headers=bearer(access))
        assert response.status_code == 401
        assert response.json() == {"detail": "Token has expired."}
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_unverified_user_is_403_on_verified_routes_only(make_harness: HarnessFactory) -> None:
    h = await make_harness()
    # A user that never completed a verification, holding a valid access token.
    account = await h.memory.create(EMAIL, {})
    assert not account.is_verified
    access = h.config.auth.codec.issue(
        kind="access",
        subject=account.user_id,
        sid="s",
        jti="j",
        auth_time=h.clock().timestamp(),
        now=h.clock(),
    )
    assert (await h.client.get("/me", headers=bearer(access))).status_code == 200
    response = await h.client.get("/verified", headers=bearer(access))
    assert response.status_code == 403
    assert response.json() == {"detail": "User has not completed OTP verification."}


async def test_install_error_handlers_adds_the_code_on_app_routes(
    make_harness: HarnessFactory,
) -> None:
    h = await make_harness()
    install_error_handlers(h.app)
    missing = await h.client.get("/me")
    assert_body(missing, 401, "token_missing")
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    invalid = await h.client.get("/claims", headers=bearer("garbage"))
    assert_body(invalid, 401, "token_invalid")
    assert invalid.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_storage_failure_is_503_without_a_traceback(
    make_harness: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    store = FaultyStore()
    h = await make_harness(store=store, refresh_token_delivery="both")
    install_error_handlers(h.app)
    body = await h.login()
    await h.client.get("/claims", headers=bearer(body["access_token"]))  # mirror warm
    store.down = True
    h.clock.advance(h.config.revocation_mirror_interval)  # and now stale
    caplog.set_level(logging.ERROR, logger="otpcore_fastapi")
    responses = [
        await h.client.post("/auth/request-otp", json={"email": "bob@example.com"}),
        await h.client.post("/auth/verify-otp", json={"email": EMAIL, "code": "123456"}),
        await h.client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]}),
        await h.client.post("/auth/logout", json={"refresh_token": body["refresh_token"]}),
        await h.client.post("/auth/logout-all", headers=bearer(body["access_token"])),
        await h.client.get("/me", headers=bearer(body["access_token"])),
        await h.client.get("/claims", headers=bearer(body["access_token"])),
    ]
    for response in responses:
        assert response.json() == {
            "detail": "Authentication storage is unavailable. Please retry.",
            "code": "storage_unavailable",
        }
        assert response.status_code == 503
        assert "Traceback" not in response.text
    # The operator learns the driver error's type, never its message (it may quote data).
    assert "ConnectionRefusedError" in caplog.text
    assert "db.internal" not in caplog.text


async def test_delivery_failure_is_logged_masked_and_answered_like_a_delivery(
    make_harness: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 8: the request never waits for the mailer, and whether delivery worked must not
    # show in any answer (an unknown address is never mailed): 200, then the binding's
    # cooldown, exactly as after a delivered code. The operator gets a masked log line.
    class BrokenMailer(RecordingConfig):
        async def send_otp(self, email: str, code: str) -> None:
            self.outbox.append((email, code))
            raise ConnectionError(f"smtp down sending {code} to {email}")

    h = await make_harness(config_class=BrokenMailer)
    caplog.set_level(logging.WARNING, logger="otpcore")
    first = await h.request_code()
    assert first.status_code == 200
    assert set(first.json()) == {"message", "challenge_id"}
    assert_body(await h.request_code(), 429, "otp_cooldown")
    code = h.config.last_code()
    assert EMAIL not in caplog.text
    assert code not in caplog.text
    assert "a***@example.com" in caplog.text
    assert "ConnectionError" in caplog.text


MALFORMED: list[tuple[str, dict[str, Any]]] = [
    ("/auth/request-otp", {"content": b"{not json"}),
    ("/auth/request-otp", {"content": b""}),
    ("/auth/request-otp", {"json": {}}),
    ("/auth/request-otp", {"json": {"email": 42}}),
    ("/auth/request-otp", {"json": {"email": "a" * 250 + "@example.com"}}),
    ("/auth/request-otp", {"json": ["alice@example.com"]}),
    ("/auth/verify-otp", {"content": b'{"email": "alice@example.com", "code": '}),
    ("/auth/verify-otp", {"json": {"email": EMAIL}}),
    ("/auth/verify-otp", {"json": {"email": EMAIL, "code": "12ab56"}}),
    ("/auth/verify-otp", {"json": {"email": EMAIL, "code": "123"}}),
    ("/auth/verify-otp", {"json": {"email": EMAIL, "code": "12345678901"}}),
    ("/auth/verify-otp", {"json": {"email": EMAIL, "code": 123456}}),
    ("/auth/verify-otp", {"json": {"email": "a" * 300, "code": "123456"}}),
    ("/auth/refresh", {"content": b"{oops"}),
    ("/auth/refresh", {"json": {"refresh_token": "x" * 16_385}}),
    ("/auth/logout", {"content": b"[1,"}),
    ("/auth/logout", {"json": {"refresh_token": "x" * 16_385}}),
]


@pytest.mark.parametrize(("path", "request_kwargs"), MALFORMED)
async def test_malformed_or_oversized_input_is_422_and_changes_nothing(
    make_harness: HarnessFactory, path: str, request_kwargs: dict[str, Any]
) -> None:
    h = await make_harness(refresh_token_delivery="body")
    body = await h.login()
    await h.request_code("bob@example.com")
    h.clock.advance(h.config.otp_rate_limit_seconds)
    await h.request_code()  # a pending code with a guess budget that must not move
    before = await snapshot(h.memory)
    outbox = list(h.config.outbox)
    headers = {"Content-Type": "application/json"}
    response = await h.client.post(path, headers=headers, **request_kwargs)
    assert response.status_code == 422, response.text
    assert await snapshot(h.memory) == before
    assert h.config.outbox == outbox
    # The session is still alive.
    assert (await h.client.get("/me", headers=bearer(body["access_token"]))).status_code == 200


async def test_a_huge_body_is_refused_before_parsing(make_harness: HarnessFactory) -> None:
    h = await make_harness()
    response = await h.client.post(
        "/auth/request-otp",
        content=b'{"email": "' + b"a" * 200_000 + b'@example.com"}',
        headers={"Content-Type": "application/json"},
    )
    # 413 on every supported FastAPI: the route class caps bodies itself.
    assert_body(response, 413, "body_too_large")
    assert await h.memory.find_by_email(EMAIL) is None


def test_every_error_class_has_its_own_row() -> None:
    core = {
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.OTPAuthError)
    }
    assert core | {TokenMissing, CSRFRefused, BodyTooLarge, InvalidEmail} <= set(ERROR_TABLE)
    assert set(ErrorCode) == {spec.code for spec in ERROR_TABLE.values()}
    for cls, spec in ERROR_TABLE.items():
        if issubclass(cls, errors.OTPAuthError):
            assert spec.code == cls.code, cls  # the row agrees with the class's own code


def test_a_class_the_table_does_not_list_is_answered_as_its_nearest_base() -> None:
    class SignatureMismatch(errors.TokenInvalid):
        pass

    class SomethingNew(errors.OTPAuthError):
        code = "something_new"

    assert spec_for(SignatureMismatch) is ERROR_TABLE[errors.TokenInvalid]
    # Fail closed: an unknown refusal is an authentication failure.
    assert spec_for(SomethingNew) is ERROR_TABLE[errors.OTPAuthError]
    assert spec_for(SomethingNew).status == 401
