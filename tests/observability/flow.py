"""One flow that produces every audit event, and the secrets it handled along the way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from otpcore import OTPAuth
from otpcore.domain.errors import CodeInvalid, OTPAuthError, RefreshReused
from otpcore.ports import Store
from otpcore.testing.contract import Backend

SECRET = b"observability-test-secret-0123456789"
ALICE, BOB, CAROL, BOUNCE = (
    "alice.liddell@example.com",
    "bob.builder@example.com",
    "carol.danvers@example.com",
    "bounce.back@example.com",
)


@dataclass
class Inbox:
    """A sender that keeps every code it is handed and refuses :data:`BOUNCE`."""

    codes: dict[str, str] = field(default_factory=dict)
    handled: list[str] = field(default_factory=list)

    async def __call__(self, email: str, code: str) -> None:
        self.handled.append(code)
        if email == BOUNCE:
            raise ConnectionError(f"SMTP refused {email}: code {code}")
        self.codes[email] = code


@dataclass
class Secrets:
    """Everything that must never reach a log record or telemetry."""

    codes: list[str]
    tokens: list[str]
    emails: tuple[str, ...] = (ALICE, BOB, CAROL, BOUNCE)

    def all(self) -> list[str]:
        return [*self.codes, *self.tokens, *self.emails]


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


async def walk(
    backend: Backend, auth: OTPAuth[Any], inbox: Inbox, wrap: Callable[[Store[Any]], Any]
) -> Secrets:
    """Alice logs in (after a wrong guess), refreshes, and replays her old refresh token; Bob
    exhausts his code; Carol logs in and out; a code to ``BOUNCE`` is not delivered.

    ``auth`` must allow two guesses per code. Each call runs on a fresh store handle passed
    through ``wrap``.
    """
    tokens: list[str] = []

    async def call(method: str, *args: Any) -> Any:
        async with backend.store() as store:
            return await getattr(auth.with_store(wrap(store)), method)(*args)

    await call("request_code", ALICE)
    with pytest.raises(CodeInvalid):
        await call("verify_code", ALICE, _wrong(inbox.codes[ALICE]))
    login = await call("verify_code", ALICE, inbox.codes[ALICE])
    rotated = await call("refresh", login.refresh_token)
    with pytest.raises(RefreshReused):
        await call("refresh", login.refresh_token)
    tokens += [login.access_token, login.refresh_token, rotated.access_token]
    tokens.append(rotated.refresh_token)

    await call("request_code", BOB)
    wrong = _wrong(inbox.codes[BOB])
    for _ in range(2):
        with pytest.raises(OTPAuthError):
            await call("verify_code", BOB, wrong)

    await call("request_code", CAROL)
    carol = await call("verify_code", CAROL, inbox.codes[CAROL])
    await call("logout", carol.refresh_token)
    tokens += [carol.access_token, carol.refresh_token]

    # Issue 8: the request never waits for the mailer; the bounce is logged, not raised.
    await call("request_code", BOUNCE)
    return Secrets(codes=[*inbox.handled, wrong], tokens=tokens)
