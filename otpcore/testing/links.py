"""The magic-link contract (issue 9): a link and its code spend one challenge, on every store.

:class:`LinkContract` holds each store to the link's guarantees through the service: the
link's keyed hash is kept with the pending code; a link logs in once, and of any number of
concurrent redeems and right guesses exactly one logs in; a wrong link counts nothing and
changes nothing; the link expires with its code and dies with a resend. Subclass it in a
pytest module with a ``backend`` fixture, as for :class:`otpcore.testing.contract.StoreContract`.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest

from otpcore.delivery import CodeMail
from otpcore.domain import limits as rules
from otpcore.domain.errors import CodeExpired, CodeInvalid, LinkInvalid
from otpcore.domain.policy import Policy
from otpcore.domain.records import ChallengeState, PendingChallenge
from otpcore.ports import ChallengeStore
from otpcore.service import Login, OTPAuth
from otpcore.testing.clock import FakeClock
from otpcore.testing.contract import Backend

__all__ = ["LinkContract", "LinkInbox", "link_token"]

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
_SECRET = b"link-contract-secret-0123456789abcdef"
_BASE = "https://app.example.com/auth/magic"


class LinkInbox:
    """A mailer that keeps every :class:`CodeMail` it is given, link included."""

    def __init__(self) -> None:
        self.mails: list[CodeMail] = []

    @property
    def domain(self) -> str:
        """``example.com``."""
        return "example.com"

    async def deliver(self, mail: CodeMail, *, now: datetime) -> None:
        """Keep ``mail``."""
        self.mails.append(mail)

    async def aclose(self) -> None:
        """Nothing to close."""

    def last(self, email: str) -> CodeMail:
        """The newest mail to ``email``."""
        return [mail for mail in self.mails if mail.email == email][-1]


def link_token(mail: CodeMail) -> str:
    """The ``t`` parameter of the mail's link."""
    assert mail.link is not None
    [token] = parse_qs(urlsplit(mail.link).query)["t"]
    return token


def _wrong_secret(token: str) -> str:
    key, secret, address = token.split(".")
    flipped = ("A" if secret[0] != "A" else "B") + secret[1:]
    return f"{key}.{flipped}.{address}"


class LinkContract:
    """Magic links, as every store must keep them."""

    def _service(self, clock: FakeClock, inbox: LinkInbox, **overrides: Any) -> OTPAuth[Any]:
        settings: dict[str, Any] = {
            "policy": Policy(secret=_SECRET, max_attempts=5),
            "store": None,
            "sender": inbox,
            "clock": clock,
            "magic_link_url": _BASE,
        }
        settings.update(overrides)
        return OTPAuth(**settings)

    async def _pending(self, backend: Backend, challenge_id: str) -> PendingChallenge:
        async with backend.store() as store:
            found = await cast(ChallengeStore, store).find_challenge(
                rules.challenge_key(_SECRET, challenge_id)
            )
        assert found is not None
        return found

    async def test_the_link_hash_is_kept_with_the_pending_code(self, backend: Backend) -> None:
        state = ChallengeState(
            code_hash="h" * 64, issued_at=T0, last_request_at=T0, version=1, link_hash="l" * 43
        )
        record = PendingChallenge(id="k-link", subject="s", state=state, expires_at=T0)
        async with backend.store() as store:
            codes = cast(ChallengeStore, store)
            await codes.create_challenge(record)
            assert await codes.find_challenge("k-link") == record
            spent = replace(state, code_hash=None, link_hash=None, version=2)
            assert await codes.update_challenge(
                "k-link", expected_version=1, state=spent, expires_at=T0
            )
            found = await codes.find_challenge("k-link")
            assert found is not None
            assert found.state == spent

    async def test_a_link_logs_in_once_and_spends_its_code(self, backend: Backend) -> None:
        clock, inbox = FakeClock(T0), LinkInbox()
        auth = self._service(clock, inbox)
        email = "link-once@example.com"
        async with backend.store() as store:
            request = await auth.with_store(store).request_code(email)
        mail = inbox.last(email)
        assert mail.link is not None
        assert mail.link.startswith(_BASE + "?t=")
        token = link_token(mail)
        assert request.challenge_id not in token  # the binding never travels in the mail
        pending = await self._pending(backend, request.challenge_id)
        assert pending.state.link_hash is not None
        assert pending.state.link_hash not in mail.link  # only a keyed hash is stored
        async with backend.store() as store:
            # Another device: no binding, no cookie; the token names the challenge.
            login = await auth.with_store(store).redeem_link(token, user_agent="phone")
        assert isinstance(login, Login)
        assert login.device is not None
        async with backend.store() as store:
            with pytest.raises(LinkInvalid):
                await auth.with_store(store).redeem_link(token)
            with pytest.raises(CodeInvalid):
                await auth.with_store(store).verify_code(
                    email, mail.code, challenge_id=request.challenge_id
                )
        spent = await self._pending(backend, request.challenge_id)
        assert (spent.state.code_hash, spent.state.link_hash) == (None, None)

    async def test_concurrent_redeems_and_right_codes_log_in_exactly_once(
        self, backend: Backend
    ) -> None:
        clock, inbox = FakeClock(T0), LinkInbox()
        auth = self._service(clock, inbox)
        for round_no in range(3):
            email = f"link-race{round_no}@example.com"
            async with backend.store() as store:
                request = await auth.with_store(store).request_code(email)
            mail = inbox.last(email)
            token = link_token(mail)

            outcomes = await self._race(
                backend, auth, email, request.challenge_id, mail.code, token
            )
            logins = [o for o in outcomes if isinstance(o, Login)]
            assert len(logins) == 1, outcomes
            assert all(isinstance(o, Login | LinkInvalid | CodeInvalid) for o in outcomes)

    async def _race(
        self,
        backend: Backend,
        auth: OTPAuth[Any],
        email: str,
        challenge_id: str,
        code: str,
        token: str,
    ) -> list[object]:
        """24 handles at once: a third redeem the link, a third guess the right code bound,
        a third unbound."""

        async def attempt(index: int) -> object:
            async with backend.store() as store:
                service = auth.with_store(store)
                try:
                    if index % 3 == 0:
                        return await service.redeem_link(token)
                    bound = challenge_id if index % 3 == 1 else None
                    return await service.verify_code(email, code, challenge_id=bound)
                except (LinkInvalid, CodeInvalid) as refused:
                    return refused

        return list(await asyncio.gather(*(attempt(i) for i in range(24))))

    async def test_a_wrong_link_counts_nothing_and_changes_nothing(self, backend: Backend) -> None:
        clock, inbox = FakeClock(T0), LinkInbox()
        auth = self._service(clock, inbox)
        email = "link-wrong@example.com"
        async with backend.store() as store:
            request = await auth.with_store(store).request_code(email)
        token = link_token(inbox.last(email))
        before = await self._pending(backend, request.challenge_id)
        key, secret, address = token.split(".")
        other = rules.challenge_key(_SECRET, "someone-else")
        wrong = [
            _wrong_secret(token),
            f"{other}.{secret}.{address}",  # another record
            f"{key}.{secret}.{address[:-2]}xx",  # another address
            token[:-1],
            "not-a-link",
            "",
            "a" * 5000,
        ]
        async with backend.store() as store:
            service = auth.with_store(store)
            for _ in range(10):
                for presented in wrong:
                    with pytest.raises(LinkInvalid):
                        await service.redeem_link(presented)
        assert await self._pending(backend, request.challenge_id) == before
        async with backend.store() as store:
            assert isinstance(await auth.with_store(store).redeem_link(token), Login)

    async def test_the_link_expires_with_its_code(self, backend: Backend) -> None:
        clock, inbox = FakeClock(T0), LinkInbox()
        auth = self._service(clock, inbox)
        email = "link-expiry@example.com"
        async with backend.store() as store:
            request = await auth.with_store(store).request_code(email)
        token = link_token(inbox.last(email))
        clock.advance(auth.policy.code_lifetime.total_seconds())
        before = await self._pending(backend, request.challenge_id)
        async with backend.store() as store:
            with pytest.raises(CodeExpired):
                await auth.with_store(store).redeem_link(token)
        assert await self._pending(backend, request.challenge_id) == before

    async def test_a_resend_replaces_the_link(self, backend: Backend) -> None:
        clock, inbox = FakeClock(T0), LinkInbox()
        auth = self._service(clock, inbox)
        email = "link-resend@example.com"
        async with backend.store() as store:
            request = await auth.with_store(store).request_code(email)
        first = link_token(inbox.last(email))
        clock.advance(auth.policy.resend_cooldown.total_seconds())
        async with backend.store() as store:
            await auth.with_store(store).request_code(email, challenge_id=request.challenge_id)
        second = link_token(inbox.last(email))
        assert first != second
        async with backend.store() as store:
            with pytest.raises(LinkInvalid):
                await auth.with_store(store).redeem_link(first)
            assert isinstance(await auth.with_store(store).redeem_link(second), Login)

    async def test_codes_carry_no_link_unless_configured(self, backend: Backend) -> None:
        clock, inbox = FakeClock(T0), LinkInbox()
        auth = self._service(clock, inbox, magic_link_url=None)
        async with backend.store() as store:
            request = await auth.with_store(store).request_code("no-link@example.com")
        assert inbox.last("no-link@example.com").link is None
        assert (await self._pending(backend, request.challenge_id)).state.link_hash is None
