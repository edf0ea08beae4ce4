"""Codes over the store: issue one and hand it to the sender, redeem one for a session.

Every decision is :mod:`otpcore.domain.challenge`'s; this module loads the account, writes
the state a decision carries with a compare-and-set, and turns refusals into errors. A lost
compare-and-set reloads and decides again, at most ``max_retries`` times.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NoReturn, TypeVar, assert_never

from otpcore.domain import challenge
from otpcore.domain.codes import generate_code, hash_code
from otpcore.domain.emails import normalize_email
from otpcore.domain.errors import (
    AccountLocked,
    CodeCooldown,
    CodeExpired,
    CodeInvalid,
    ContentionError,
    DeliveryError,
    OTPAuthError,
    UserNotFound,
)
from otpcore.domain.events import (
    CodeRequested,
    CodeSent,
    GuessFailed,
    LoginSucceeded,
    OTPLocked,
)
from otpcore.domain.records import Account
from otpcore.ports import Store
from otpcore.service.context import Settings, emit
from otpcore.service.results import Login
from otpcore.service.sessions import open_session

__all__ = ["request_code", "verify_code"]

U = TypeVar("U")


async def _reload(store: Store[U], account: Account[U]) -> Account[U]:
    fresh = await store.find_by_id(account.user_id)
    if fresh is None:
        raise CodeInvalid()
    return fresh


def _request_refused(
    s: Settings[Any], email: str, account: Account[Any], outcome: str, now: datetime
) -> None:
    emit(s, CodeRequested(at=now, email=email, user_id=account.user_id, outcome=outcome))


async def request_code(s: Settings[U], store: Store[U], email: str) -> None:
    """Issue a code for ``email`` and send it; see :meth:`OTPAuth.request_code`."""
    email = normalize_email(email)
    now = s.clock()
    account = await store.find_by_email(email)
    if account is None:
        if not s.auto_create_user:
            emit(s, CodeRequested(at=now, email=email, user_id=None, outcome="unknown_user"))
            if s.reveal_unknown_users:
                raise UserNotFound()
            return
        fields = s.new_user_fields(email) if s.new_user_fields is not None else {}
        account = await store.create(email, fields)

    for _ in range(s.max_retries):
        code = generate_code(
            s.policy.code_length, s.randbelow, developer_mode=s.policy.developer_mode
        )
        before = account.challenge
        code_hash = hash_code(s.policy.secret, email, code)
        match challenge.request_code(before, code_hash=code_hash, now=now, policy=s.policy):
            case challenge.Cooldown(retry_after=retry_after):
                _request_refused(s, email, account, "cooldown", now)
                raise CodeCooldown(retry_after=retry_after)
            case challenge.LockedOut(retry_after=retry_after):
                _request_refused(s, email, account, "locked", now)
                raise AccountLocked(retry_after=retry_after)
            case challenge.Issued(state=issued):
                if await store.save_challenge(
                    account.user_id, expected_version=before.version, state=issued
                ):
                    break
                account = await _reload(store, account)
            case unreachable:
                assert_never(unreachable)
    else:
        raise ContentionError()

    emit(s, CodeRequested(at=now, email=email, user_id=account.user_id, outcome="issued"))
    try:
        await s.sender(email, code)
    except Exception as exc:
        await store.save_challenge(
            account.user_id,
            expected_version=issued.version,
            state=challenge.withdraw(before, issued),
        )
        raise DeliveryError() from exc
    emit(s, CodeSent(at=now, email=email, user_id=account.user_id))


def _refused(
    s: Settings[Any], email: str, account: Account[Any], error: OTPAuthError, now: datetime
) -> NoReturn:
    emit(s, GuessFailed(at=now, email=email, user_id=account.user_id, reason=error.code))
    raise error


async def verify_code(
    s: Settings[U],
    store: Store[U],
    email: str,
    code: str,
    *,
    user_agent: str | None = None,
    ip: str | None = None,
) -> Login[U]:
    """Redeem ``code`` for ``email``, opening a session; see :meth:`OTPAuth.verify_code`."""
    email = normalize_email(email)
    now = s.clock()
    account = await store.find_by_email(email)
    if account is None:
        emit(s, GuessFailed(at=now, email=email, user_id=None, reason="unknown_user"))
        if s.reveal_unknown_users:
            raise UserNotFound()
        raise CodeInvalid()
    presented = hash_code(s.policy.secret, email, code)

    for _ in range(s.max_retries):
        before = account.challenge
        decision = challenge.submit_guess(
            before, presented_hash=presented, now=now, policy=s.policy
        )
        match decision:
            case challenge.NoChallenge():
                _refused(s, email, account, CodeInvalid(), now)
            case challenge.Expired():
                _refused(s, email, account, CodeExpired(), now)
            case challenge.CodeSpent():
                _refused(s, email, account, AccountLocked(), now)
            case challenge.LockedOut(retry_after=retry_after):
                _refused(s, email, account, AccountLocked(retry_after=retry_after), now)
            case challenge.Rejected(
                state=counted, remaining_attempts=remaining, ends_guessing=ends_guessing
            ):
                if await store.save_challenge(
                    account.user_id, expected_version=before.version, state=counted
                ):
                    emit(
                        s,
                        GuessFailed(
                            at=now,
                            email=email,
                            user_id=account.user_id,
                            reason=CodeInvalid.code,
                            remaining_attempts=remaining,
                        ),
                    )
                    if ends_guessing:
                        emit(
                            s,
                            OTPLocked(
                                at=now,
                                email=email,
                                user_id=account.user_id,
                                failures=counted.failures,
                            ),
                        )
                    raise CodeInvalid(remaining_attempts=remaining)
            case challenge.Accepted(state=consumed):
                if await store.save_challenge(
                    account.user_id,
                    expected_version=before.version,
                    state=consumed,
                    mark_verified=True,
                ):
                    login = await open_session(
                        s, store, account, now=now, user_agent=user_agent, ip=ip
                    )
                    emit(s, LoginSucceeded(at=now, user_id=account.user_id, sid=login.sid))
                    return login
            case unreachable:
                assert_never(unreachable)
        account = await _reload(store, account)
    raise ContentionError()
