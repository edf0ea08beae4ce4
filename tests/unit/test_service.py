"""OTPAuth on the memory store: behaviours beyond the cross-backend contract."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from otpcore.domain.emails import InvalidEmail
from otpcore.domain.errors import (
    AccountLocked,
    CodeCooldown,
    CodeExpired,
    CodeInvalid,
    ConfigurationError,
    OTPAuthError,
    RefreshReused,
    ReservedClaimError,
    StorageError,
    TokenExpired,
    TokenInvalid,
    TokenRevoked,
    UserNotFound,
    UserNotVerified,
)
from otpcore.domain.events import (
    AuthEvent,
    CodeRequested,
    CodeSent,
    GuessFailed,
    LoggedOut,
    LoggedOutEverywhere,
    LoginSucceeded,
    OTPLocked,
    RefreshReuseDetected,
    RefreshRotated,
)
from otpcore.domain.limits import challenge_key, subject_key
from otpcore.domain.policy import Policy
from otpcore.domain.records import RevocationKind, TokenKind
from otpcore.domain.sessions import session_start
from otpcore.service import OTPAuth
from otpcore.stores.memory import MemoryStore, MemoryUser
from otpcore.testing import FakeClock

SECRET = b"unit-test-secret-unit-test-secret"


class Inbox:
    def __init__(self) -> None:
        self.codes: dict[str, str] = {}
        self.sent = 0

    async def __call__(self, email: str, code: str) -> None:
        self.codes[email] = code
        self.sent += 1


class Harness:
    def __init__(self, **overrides: Any) -> None:
        self.clock = FakeClock()
        self.inbox = Inbox()
        self.store = MemoryStore()
        self.events: list[AuthEvent] = []
        settings: dict[str, Any] = {
            "policy": Policy(secret=SECRET),
            "store": self.store,
            "sender": self.inbox,
            "clock": self.clock,
            "events": self.events.append,
        }
        settings.update(overrides)
        self.auth: OTPAuth[MemoryUser] = OTPAuth(**settings)

    async def login(self, email: str = "user@example.com") -> Any:
        await self.auth.request_code(email)
        return await self.auth.verify_code(email, self.inbox.codes[email])


async def test_codes_are_stored_hashed_never_plain() -> None:
    # Issue 8: the code lives on the requester's binding, keyed by a keyed hash of its
    # challenge_id; a request creates no user row.
    h = Harness()
    request = await h.auth.request_code("user@example.com")
    assert await h.store.find_by_email("user@example.com") is None
    assert await h.store.find_challenge(request.challenge_id) is None  # never stored plain
    pending = await h.store.find_challenge(challenge_key(SECRET, request.challenge_id))
    assert pending is not None
    code = h.inbox.codes["user@example.com"]
    assert pending.state.code_hash is not None
    assert code not in pending.state.code_hash
    assert len(pending.state.code_hash) == 64
    assert "user@example.com" not in pending.subject


async def test_email_is_normalized_for_lookup_and_delivery() -> None:
    h = Harness()
    await h.auth.request_code("  Mixed.Case@EXAMPLE.com ")
    assert list(h.inbox.codes) == ["mixed.case@example.com"]
    login = await h.auth.verify_code(
        "MIXED.case@example.com", h.inbox.codes["mixed.case@example.com"]
    )
    assert login.user.email == "mixed.case@example.com"


async def test_invalid_email_is_refused_before_any_write() -> None:
    h = Harness()
    with pytest.raises(InvalidEmail):
        await h.auth.request_code("victim@example.com\r\nBcc: attacker@example.com")
    assert await h.store.find_by_email("victim@example.com") is None
    assert h.inbox.sent == 0


async def test_resend_inside_cooldown_is_refused_with_retry_after() -> None:
    # Issue 8: the cooldown belongs to the binding; a request without it opens another.
    h = Harness()
    first = await h.auth.request_code("user@example.com")
    assert first.resend_after == 60
    h.clock.advance(20)
    with pytest.raises(CodeCooldown) as refused:
        await h.auth.request_code("user@example.com", challenge_id=first.challenge_id)
    assert refused.value.retry_after == 40
    assert h.inbox.sent == 1
    h.clock.advance(40)
    again = await h.auth.request_code("user@example.com", challenge_id=first.challenge_id)
    assert again.challenge_id == first.challenge_id
    assert h.inbox.sent == 2


async def test_wrong_guesses_report_remaining_then_lock_the_code() -> None:
    h = Harness()
    await h.auth.request_code("user@example.com")
    code = h.inbox.codes["user@example.com"]
    wrong = "1" * 6 if code != "1" * 6 else "2" * 6
    remaining = []
    for _ in range(5):
        with pytest.raises(CodeInvalid) as refused:
            await h.auth.verify_code("user@example.com", wrong)
        remaining.append(refused.value.remaining_attempts)
    assert remaining == [4, 3, 2, 1, 0]
    with pytest.raises(AccountLocked):
        await h.auth.verify_code("user@example.com", code)
    assert sum(isinstance(e, OTPLocked) for e in h.events) == 1


async def test_new_code_does_not_reset_failures_and_backoff_grows() -> None:
    # Issue 8: failures and backoff are the binding's (bound guesses count them).
    h = Harness()
    bound = (await h.auth.request_code("user@example.com")).challenge_id
    for _ in range(5):
        with pytest.raises(CodeInvalid):
            await h.auth.verify_code(
                "user@example.com",
                "9" * 6 if h.inbox.codes["user@example.com"] != "9" * 6 else "8" * 6,
                challenge_id=bound,
            )
    h.clock.advance(60)
    with pytest.raises(CodeCooldown) as refused:
        await h.auth.request_code("user@example.com", challenge_id=bound)
    assert refused.value.retry_after == 60  # 60 s base + 1 min step at 5 failures
    h.clock.advance(60)
    await h.auth.request_code("user@example.com", challenge_id=bound)
    pending = await h.store.find_challenge(challenge_key(SECRET, bound))
    assert pending is not None
    assert pending.state.failures == 5
    assert pending.state.attempts == 0


async def test_expired_code_is_refused_and_not_counted() -> None:
    h = Harness()
    await h.auth.request_code("user@example.com")
    h.clock.advance(timedelta(minutes=10))
    with pytest.raises(CodeExpired):
        await h.auth.verify_code("user@example.com", h.inbox.codes["user@example.com"])
    pending = await h.store.newest_challenge(subject_key(SECRET, "user@example.com"))
    assert pending is not None
    assert pending.state.attempts == 0
    assert pending.state.unbound_attempts == 0


async def test_code_is_single_use() -> None:
    h = Harness()
    await h.login()
    with pytest.raises(CodeInvalid):
        await h.auth.verify_code("user@example.com", h.inbox.codes["user@example.com"])


async def test_unknown_email_without_auto_create_answers_like_a_known_one() -> None:
    h = Harness(auto_create_user=False)
    await h.auth.request_code("ghost@example.com")
    assert h.inbox.sent == 0
    assert await h.store.find_by_email("ghost@example.com") is None
    with pytest.raises(CodeInvalid) as refused:
        await h.auth.verify_code("ghost@example.com", "123456")
    assert refused.value.message == CodeInvalid().message


async def test_unknown_email_is_revealed_only_on_request() -> None:
    h = Harness(auto_create_user=False, reveal_unknown_users=True)
    with pytest.raises(UserNotFound):
        await h.auth.request_code("ghost@example.com")
    with pytest.raises(UserNotFound):
        await h.auth.verify_code("ghost@example.com", "123456")


async def test_new_user_fields_hook_fills_auto_created_users() -> None:
    def fields(email: str) -> Mapping[str, object]:
        return {"username": email.split("@")[0]}

    h = Harness(new_user_fields=fields)
    login = await h.login("carol@example.com")
    assert login.user.fields == {"username": "carol"}


async def test_failed_delivery_changes_nothing_and_is_logged_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Issue 8: the request never waits for the mailer, and delivery's outcome changes no
    # challenge state (the withdrawal of an undelivered code would tell known addresses
    # from unknown ones). The failure is logged with the address masked, never the code.
    attempts = []

    async def flaky(email: str, code: str) -> None:
        attempts.append(code)
        if len(attempts) == 1:
            raise ConnectionError("smtp down")

    h = Harness(sender=flaky)
    with caplog.at_level(logging.WARNING, logger="otpcore"):
        first = await h.auth.request_code("user@example.com")
    assert "u***@example.com" in caplog.text
    assert "user@example.com" not in caplog.text
    assert attempts[0] not in caplog.text
    assert not any(isinstance(e, CodeSent) for e in h.events)
    with pytest.raises(CodeCooldown):  # as if delivered: the binding keeps code and cooldown
        await h.auth.request_code("user@example.com", challenge_id=first.challenge_id)
    h.clock.advance(60)
    await h.auth.request_code("user@example.com", challenge_id=first.challenge_id)
    login = await h.auth.verify_code(
        "user@example.com", attempts[-1], challenge_id=first.challenge_id
    )
    assert login.user.email == "user@example.com"


async def test_reserved_custom_claim_is_refused() -> None:
    h = Harness(claims_for=lambda user: {"sub": "admin"})
    await h.auth.request_code("user@example.com")
    with pytest.raises(ReservedClaimError):
        await h.auth.verify_code("user@example.com", h.inbox.codes["user@example.com"])


async def test_custom_claims_reach_the_access_token_only() -> None:
    h = Harness(claims_for=lambda user: {"role": "admin"})
    login = await h.login()
    principal = await h.auth.authenticate(login.access_token)
    assert principal.claims.extra == {"role": "admin"}
    assert h.auth.codec.verify(login.refresh_token, kind="refresh", now=h.clock()).extra == {}


async def test_access_and_refresh_tokens_are_not_interchangeable() -> None:
    h = Harness()
    login = await h.login()
    with pytest.raises(TokenInvalid):
        await h.auth.authenticate(login.refresh_token)
    with pytest.raises(TokenInvalid):
        await h.auth.refresh(login.access_token)


async def test_expired_access_token_is_refused() -> None:
    h = Harness()
    login = await h.login()
    # Issue 10: the default clock-skew leeway is 30 s; expiry is checked past it.
    h.clock.advance(timedelta(hours=1) + h.auth.policy.leeway)
    with pytest.raises(TokenExpired):
        await h.auth.authenticate(login.access_token)


async def test_refresh_reuse_revokes_the_session_and_reports_it() -> None:
    h = Harness()
    login = await h.login()
    rotated = await h.auth.refresh(login.refresh_token)
    # Issue 10: inside the refresh grace window the same token gets the same successor.
    h.clock.advance(h.auth.policy.refresh_grace + timedelta(seconds=1))
    with pytest.raises(RefreshReused):
        await h.auth.refresh(login.refresh_token)
    with pytest.raises(TokenRevoked):
        await h.auth.authenticate(rotated.access_token)
    with pytest.raises(TokenRevoked):
        await h.auth.refresh(rotated.refresh_token)
    assert [type(e) for e in h.events if isinstance(e, RefreshRotated | RefreshReuseDetected)] == [
        RefreshRotated,
        RefreshReuseDetected,
    ]


async def test_logout_with_access_token_revokes_the_session() -> None:
    h = Harness()
    login = await h.login()
    assert await h.auth.logout(access_token=login.access_token) is True
    assert await h.auth.logout(login.refresh_token) is False
    with pytest.raises(TokenRevoked):
        await h.auth.refresh(login.refresh_token)
    assert sum(isinstance(e, LoggedOut) for e in h.events) == 1


async def test_logout_of_expired_token_or_garbage_is_a_no_op() -> None:
    # Issue 11: "logout always succeeds" is the core's rule now, not the router's, so garbage
    # and a missing token answer False instead of raising TokenInvalid.
    h = Harness()
    login = await h.login()
    h.clock.advance(timedelta(days=8))
    assert await h.auth.logout(login.refresh_token) is False
    assert await h.auth.logout("not-a-token") is False
    assert await h.auth.logout() is False


async def test_other_sessions_survive_a_logout() -> None:
    h = Harness(policy=Policy(secret=SECRET, resend_cooldown=timedelta(0)))
    first = await h.login()
    h.clock.advance(1)  # two codes issued in one instant are equally new (issue 8)
    second = await h.login()
    await h.auth.logout(first.refresh_token)
    assert (await h.auth.authenticate(second.access_token)).claims.sid == second.sid


async def test_events_never_carry_codes_or_tokens() -> None:
    h = Harness()
    login = await h.login()
    await h.auth.refresh(login.refresh_token)
    h.clock.advance(h.auth.policy.refresh_grace + timedelta(seconds=1))  # past the grace
    with pytest.raises(RefreshReused):
        await h.auth.refresh(login.refresh_token)
    code = h.inbox.codes["user@example.com"]
    dumped = " ".join(repr(e) for e in h.events)
    assert login.refresh_token not in dumped
    assert login.access_token not in dumped
    assert f"'{code}'" not in dumped
    kinds = {type(e) for e in h.events}
    assert {CodeRequested, CodeSent, LoginSucceeded, RefreshRotated, RefreshReuseDetected} <= kinds


async def test_failing_event_sink_does_not_decide_a_login(caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: AuthEvent) -> None:
        raise RuntimeError("audit database down")

    h = Harness(events=broken)
    with caplog.at_level(logging.ERROR, logger="otpcore"):
        login = await h.login()
    assert login.access_token
    assert "event sink failed" in caplog.text
    assert h.inbox.codes["user@example.com"] not in caplog.text


async def test_guess_failed_events_name_the_reason() -> None:
    h = Harness()
    await h.auth.request_code("user@example.com")
    h.clock.advance(timedelta(minutes=11))
    with pytest.raises(CodeExpired):
        await h.auth.verify_code("user@example.com", "000000")
    [failed] = [e for e in h.events if isinstance(e, GuessFailed)]
    assert failed.reason == "otp_expired"


async def test_service_without_store_says_so() -> None:
    h = Harness(store=None)
    with pytest.raises(ConfigurationError):
        await h.auth.request_code("user@example.com")


async def test_mirror_refresh_is_one_query_per_interval() -> None:
    h = Harness(mirror_interval=timedelta(seconds=1))
    login = await h.login()
    calls = 0
    original = h.store.revocations_since

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await original(*args, **kwargs)

    h.store.revocations_since = counting  # type: ignore[method-assign]
    for _ in range(50):
        await h.auth.authenticate_claims(login.access_token)
    assert calls == 1
    h.clock.advance(1)
    await h.auth.authenticate_claims(login.access_token)
    assert calls == 2


async def test_binding_lock_after_max_failures_stops_issuing_on_it() -> None:
    # Issue 8: a binding's own failures lock that binding (its holder made them); a request
    # without it opens another binding, and the address-wide cap is the failure lock's.
    policy = Policy(
        secret=SECRET,
        max_attempts=1,
        max_failures=3,
        resend_cooldown=timedelta(0),
        backoff=((0, timedelta(0)),),
        lockout_duration=timedelta(hours=1),
    )
    h = Harness(policy=policy)
    bound: str | None = None
    for _ in range(3):
        bound = (await h.auth.request_code("user@example.com", challenge_id=bound)).challenge_id
        code = h.inbox.codes["user@example.com"]
        with pytest.raises(CodeInvalid):
            await h.auth.verify_code(
                "user@example.com", "1" * 6 if code != "1" * 6 else "2" * 6, challenge_id=bound
            )
    with pytest.raises(AccountLocked) as refused:
        await h.auth.request_code("user@example.com", challenge_id=bound)
    assert refused.value.retry_after == 3600
    # Two hours on, the address-wide cap (the same 3 per hour here) has let go too.
    h.clock.advance(timedelta(hours=2))
    await h.auth.request_code("user@example.com", challenge_id=bound)
    login = await h.auth.verify_code(
        "user@example.com", h.inbox.codes["user@example.com"], challenge_id=bound
    )
    assert bound is not None
    pending = await h.store.find_challenge(challenge_key(SECRET, bound))
    assert pending is not None
    assert pending.state.failures == 0
    assert login.user.email == "user@example.com"


async def test_address_wide_failure_lock_spares_a_client_with_a_device_allowance() -> None:
    # Issue 8: bound guesses from clients without an allowance share a cap of max_failures
    # per lockout_duration for the address (NIST SP 800-63B §5.2.2); a client that logged
    # in before (its device allowance) is not stopped by it.
    policy = Policy(
        secret=SECRET,
        max_failures=4,
        resend_cooldown=timedelta(0),
        backoff=((0, timedelta(0)),),
        lockout_duration=timedelta(hours=1),
    )
    h = Harness(policy=policy)
    owner = await h.login()
    assert owner.device is not None
    h.clock.advance(1)
    stranger = (await h.auth.request_code("user@example.com")).challenge_id
    for _ in range(4):
        with pytest.raises(CodeInvalid):
            await h.auth.verify_code("user@example.com", "x", challenge_id=stranger)
    with pytest.raises(AccountLocked):
        await h.auth.verify_code("user@example.com", "x", challenge_id=stranger)
    mine = await h.auth.request_code("user@example.com", device=owner.device)
    login = await h.auth.verify_code(
        "user@example.com",
        h.inbox.codes["user@example.com"],
        challenge_id=mine.challenge_id,
        device=owner.device,
    )
    assert login.device == owner.device


async def test_logout_all_a_fraction_of_a_millisecond_later_still_revokes() -> None:
    # Stores keep cutoffs to the millisecond, truncated; auth_time must never round up past one.
    h = Harness()
    h.clock.advance(0.0006)
    login = await h.login()
    h.clock.advance(0.0002)
    await h.auth.logout_all(login.access_token)
    with pytest.raises(TokenRevoked):
        await h.auth.authenticate(login.access_token)


# --- issue 11: auth decisions in the core ----------------------------------------------------


def _mint(h: Harness, kind: TokenKind, subject: str, *, jti: str = "minted") -> str:
    """A correctly signed token for ``subject``, as if its user had logged in."""
    now = h.clock()
    return h.auth.codec.issue(
        kind=kind, subject=subject, sid="sid-minted", jti=jti, auth_time=now.timestamp(), now=now
    )


@pytest.mark.parametrize(
    "presented",
    [
        {},
        {"refresh_token": "not-a-token"},
        {"refresh_token": ""},
        {"refresh_token": "a.b.c"},
        {"refresh_token": "\ud800" * 3},
        {"refresh_token": "x" * 20_000},
        {"access_token": "not-a-token"},
        {"refresh_token": "garbage", "access_token": "garbage"},
    ],
    ids=["none", "garbage", "empty", "three-dots", "surrogates", "huge", "access-garbage", "both"],
)
async def test_logout_never_raises_for_a_bad_token(presented: dict[str, str]) -> None:
    h = Harness()
    await h.login()
    before = await h.store.revocations_since(h.clock() - timedelta(days=1), now=h.clock())
    assert await h.auth.logout(**presented) is False
    after = await h.store.revocations_since(h.clock() - timedelta(days=1), now=h.clock())
    assert after == before  # nothing written


async def test_logout_with_the_wrong_kind_of_token_is_a_no_op() -> None:
    h = Harness()
    login = await h.login()
    assert await h.auth.logout(login.access_token) is False  # an access token as refresh
    assert await h.auth.logout(access_token=login.refresh_token) is False
    assert (await h.auth.authenticate(login.access_token)).claims.sid == login.sid


async def test_logout_blacklists_the_presented_token_itself() -> None:
    # Drop-in fidelity (issue 11): the reference API's is_blacklisted(jti) is a lookup of jti.
    h = Harness()
    login = await h.login()
    refresh = h.auth.codec.verify(login.refresh_token, kind="refresh", now=h.clock())
    access = h.auth.codec.verify(login.access_token, kind="access", now=h.clock())
    assert await h.auth.logout(login.refresh_token) is True
    [entry] = await h.store.find_revocations([refresh.jti])
    assert entry.kind is RevocationKind.REFRESH
    # Kept until the token's expiry plus the clock-skew leeway (30 s by default, issue 10).
    assert entry.expires_at == datetime.fromtimestamp(refresh.exp, tz=UTC) + h.auth.policy.leeway
    assert await h.store.find_revocations([access.jti]) == []

    other = await h.login("other@example.com")
    other_access = h.auth.codec.verify(other.access_token, kind="access", now=h.clock())
    assert await h.auth.logout(access_token=other.access_token) is True
    [entry] = await h.store.find_revocations([other_access.jti])
    assert entry.kind is RevocationKind.ACCESS
    with pytest.raises(TokenRevoked):
        await h.auth.refresh(other.refresh_token)


async def test_logout_with_both_tokens_revokes_both_and_reports_one_logout() -> None:
    h = Harness()
    login = await h.login()
    assert await h.auth.logout(login.refresh_token, access_token=login.access_token) is True
    pairs: tuple[tuple[str, TokenKind], ...] = (
        (login.refresh_token, "refresh"),
        (login.access_token, "access"),
    )
    for token, kind in pairs:
        jti = h.auth.codec.verify(token, kind=kind, now=h.clock()).jti
        assert len(await h.store.find_revocations([jti])) == 1
    assert sum(isinstance(e, LoggedOut) for e in h.events) == 1
    assert await h.auth.logout(login.refresh_token, access_token=login.access_token) is False


async def test_logout_with_two_sessions_tokens_ends_both() -> None:
    # One token of each of two sessions: both end, both are revoked with both tokens' ids,
    # in one multi-row revocation, and each session's logout is reported once.
    h = Harness()
    first = await h.login()
    second = await h.login()
    assert first.sid != second.sid
    assert await h.auth.logout(first.refresh_token, access_token=second.access_token) is True
    assert sorted(e.sid for e in h.events if isinstance(e, LoggedOut)) == sorted(
        [first.sid, second.sid]
    )
    for login in (first, second):
        with pytest.raises(TokenRevoked):
            await h.auth.refresh(login.refresh_token)
        with pytest.raises(TokenRevoked):
            await h.auth.authenticate(login.access_token)
    # Again, nothing is left to end or revoke: no logout reported.
    assert await h.auth.logout(first.refresh_token, access_token=second.access_token) is False


async def test_logout_uses_whichever_token_verifies() -> None:
    h = Harness()
    login = await h.login()
    assert await h.auth.logout("garbage", access_token=login.access_token) is True
    with pytest.raises(TokenRevoked):
        await h.auth.refresh(login.refresh_token)


async def test_logout_propagates_storage_errors() -> None:
    h = Harness()
    login = await h.login()

    async def down(*args: Any, **kwargs: Any) -> bool:
        raise StorageError()

    h.store.revoke = down  # type: ignore[method-assign]
    with pytest.raises(StorageError):
        await h.auth.logout(login.refresh_token)


async def test_logout_all_takes_the_token_and_logs_out_only_its_own_user() -> None:
    h = Harness()
    alice = await h.login("alice@example.com")
    bob = await h.login("bob@example.com")
    await h.auth.logout_all(alice.access_token)
    with pytest.raises(TokenRevoked):
        await h.auth.authenticate(alice.access_token)
    assert (await h.auth.authenticate(bob.access_token)).account.user_id == bob.user_id
    [event] = [e for e in h.events if isinstance(e, LoggedOutEverywhere)]
    assert event.user_id == alice.user_id


async def test_logout_all_refuses_anything_but_a_valid_access_token() -> None:
    h = Harness()
    alice = await h.login("alice@example.com")
    bob = await h.login("bob@example.com")
    for token in (bob.user_id, "not-a-token", bob.refresh_token):  # a user id is no credential
        with pytest.raises(TokenInvalid):
            await h.auth.logout_all(token)
    with pytest.raises(TokenInvalid):
        await h.auth.logout_all(_mint(h, "access", "999"))  # a user that does not exist
    await h.auth.logout(access_token=alice.access_token)
    with pytest.raises(TokenRevoked):
        await h.auth.logout_all(alice.access_token)
    assert (await h.auth.authenticate(bob.access_token)).account.user_id == bob.user_id
    assert not any(isinstance(e, LoggedOutEverywhere) for e in h.events)


async def test_authenticate_can_require_a_verified_user() -> None:
    h = Harness()
    unverified = await h.store.create("new@example.com", {})
    token = _mint(h, "access", unverified.user_id)
    assert (await h.auth.authenticate(token)).account.user_id == unverified.user_id
    with pytest.raises(UserNotVerified):
        await h.auth.authenticate(token, require_verified=True)
    login = await h.login("new@example.com")  # verifying the code marks the user verified
    principal = await h.auth.authenticate(login.access_token, require_verified=True)
    assert principal.account.is_verified is True


async def test_a_revoked_token_is_refused_before_the_verified_check() -> None:
    h = Harness()
    unverified = await h.store.create("new@example.com", {})
    token = _mint(h, "access", unverified.user_id)
    await h.auth.logout(access_token=token)
    with pytest.raises(TokenRevoked):
        await h.auth.authenticate(token, require_verified=True)


async def test_a_deleted_user_gets_the_same_refusal_on_refresh_and_authenticate() -> None:
    # Issue 11: authenticate answered UserNotFound (404) where refresh answered TokenInvalid.
    h = Harness()
    login = await h.login()
    del h.store._users[login.user_id]  # the application deleted the user
    refusals = []
    for call in (
        h.auth.refresh(login.refresh_token),
        h.auth.authenticate(login.access_token),
        h.auth.authenticate(login.access_token, require_verified=True),
    ):
        with pytest.raises(OTPAuthError) as refused:
            await call
        refusals.append((type(refused.value), refused.value.code))
    assert refusals == [(TokenInvalid, "token_invalid")] * 3


async def test_verify_starts_the_session_at_the_floored_millisecond() -> None:
    h = Harness()
    h.clock.advance(0.0009)
    login = await h.login()
    claims = h.auth.codec.verify(login.access_token, kind="access", now=h.clock())
    assert claims.auth_time == session_start(h.clock())
    assert claims.auth_time <= h.clock().timestamp()
    h.clock.advance(1)
    rotated = await h.auth.refresh(login.refresh_token)
    again = h.auth.codec.verify(rotated.access_token, kind="access", now=h.clock())
    assert again.auth_time == claims.auth_time  # a rotation keeps when the session began


async def test_an_account_that_cannot_be_created_leaves_the_code_unspent() -> None:
    # Issue 8: accounts are created by the first successful verify; if that fails (a
    # required column without a new_user_fields hook), the code must survive for a retry.
    calls: list[str] = []

    def fields(email: str) -> Mapping[str, object]:
        calls.append(email)
        if len(calls) == 1:
            raise ConfigurationError("username is required; set new_user_fields")
        return {"username": "new"}

    h = Harness(new_user_fields=fields)
    request = await h.auth.request_code("new@example.com")
    code = h.inbox.codes["new@example.com"]
    with pytest.raises(ConfigurationError, match="new_user_fields"):
        await h.auth.verify_code("new@example.com", code, challenge_id=request.challenge_id)
    assert await h.store.find_by_email("new@example.com") is None
    login = await h.auth.verify_code("new@example.com", code, challenge_id=request.challenge_id)
    assert login.user.fields == {"username": "new"}
