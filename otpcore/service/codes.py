"""Codes over the store: issue one to its requester's binding, redeem one for a session.

Every decision is :mod:`otpcore.domain.challenge`'s or :mod:`otpcore.domain.limits`';
this module loads the binding, hits the limits, writes the state a decision carries with a
compare-and-set, and turns refusals into errors. A lost compare-and-set reloads and decides
again, at most ``max_retries`` times.

Known and unknown addresses take the same path (the same store calls in the same order,
the same answers); only delivery differs, and delivery runs as a task the request never
waits for, whose outcome changes no state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, NoReturn, TypeVar, assert_never

from otpcore.delivery import CodeMail
from otpcore.domain import challenge
from otpcore.domain import limits as rules
from otpcore.domain.codes import generate_code, hash_code
from otpcore.domain.emails import normalize_email
from otpcore.domain.errors import (
    AccountLocked,
    CodeCooldown,
    CodeExpired,
    CodeInvalid,
    ContentionError,
    OTPAuthError,
    StorageError,
    UserNotFound,
)
from otpcore.domain.events import (
    CodeRequested,
    GuessFailed,
    LoginSucceeded,
    OTPLocked,
)
from otpcore.domain.links import link_url, new_link
from otpcore.domain.records import Account, ChallengeState, PendingChallenge
from otpcore.ports import LimitStore, Store
from otpcore.service.context import Settings, emit
from otpcore.service.limits import check_rate, failure_lock, send_limits
from otpcore.service.ordering import next_order
from otpcore.service.results import CodeRequest, Login
from otpcore.service.sessions import open_session

__all__ = ["account_for", "deferred", "log_in", "request_code", "verify_code"]

U = TypeVar("U")
T = TypeVar("T")

logger = logging.getLogger("otpcore")


def _seconds(delta: Any) -> int:
    return max(0, int(delta.total_seconds()))


async def request_code(
    s: Settings[U],
    store: Store[U],
    email: str,
    *,
    ip: str | None = None,
    challenge_id: str | None = None,
    device: str | None = None,
    languages: Sequence[str] = (),
    accept_language: str | None = None,
) -> CodeRequest:
    """Issue a code for ``email`` to the requester's binding; see :meth:`OTPAuth.request_code`."""
    email = normalize_email(email)
    now = s.clock()
    secret = s.policy.secret
    subject = rules.subject_key(secret, email)

    binding: PendingChallenge | None = None
    if challenge_id:
        found = await store.find_challenge(rules.challenge_key(secret, challenge_id))
        if found is not None and found.subject == subject:
            binding = found
    if binding is None:
        challenge_id = s.new_id()

    code = generate_code(s.policy.code_length, s.randbelow, developer_mode=s.policy.developer_mode)
    code_hash = hash_code(secret, email, code)
    assert challenge_id is not None
    key = rules.challenge_key(secret, challenge_id)
    link: str | None = None
    link_hash: str | None = None
    if s.magic_link_url is not None:
        # Drawn for unknown addresses too: the same work whether or not mail is sent.
        token, link_hash = new_link(secret, key, email, s.randbelow)
        link = link_url(s.magic_link_url, token)
    before = binding.state if binding is not None else ChallengeState()
    # The binding's own cooldown first: a resend refused by it spends no send budget.
    outcome = challenge.request_code(
        before, code_hash=code_hash, link_hash=link_hash, now=now, policy=s.policy
    )
    _raise_issue_refusal(s, email, outcome, now)

    # An outbox slot before the account lookup: a full outbox refuses every address alike.
    with s.outbox.reserve() as ticket:
        # The lookup is a read: outside the unit, which on SQLite holds the write lock.
        known = await store.find_by_email(email)
        # One unit of work: the limit hits and the stored code (on SQLite one write lock
        # and one commit). A refusal is raised once what it counted is stored.
        async with store.transaction(atomic=False):
            result = await deferred(
                _issue(s, store, key, subject, binding, outcome, (code_hash, link_hash), now,
                       email, ip=ip, device=device, account=known)
            )  # fmt: skip
        if isinstance(result, OTPAuthError):
            raise result
        account, issued = result
        user_id = account.user_id if account is not None else None
        emit(s, CodeRequested(at=now, email=email, user_id=user_id, outcome="issued"))
        if account is not None or s.auto_create_user:
            ticket.submit(
                CodeMail(
                    email=email,
                    code=code,
                    expires_at=now + s.policy.code_lifetime,
                    user_id=user_id,
                    binding=key,
                    languages=tuple(languages),
                    accept_language=accept_language,
                    link=link,
                )
            )
    # Let the delivery task start: an in-process sender that does no I/O has delivered by
    # the time the caller answers, and a slow mailer is never waited for.
    await asyncio.sleep(0)
    return CodeRequest(
        challenge_id=challenge_id,
        resend_after=_seconds(challenge.resend_wait(issued.failures, policy=s.policy)),
        expires_in=_seconds(s.policy.code_lifetime),
    )


async def deferred(work: Awaitable[T]) -> T | OTPAuthError:
    """``work``'s result, or the refusal it raised (a storage failure or contention is
    raised): inside a unit of work a refusal must not undo what was counted before it."""
    try:
        return await work
    except (StorageError, ContentionError):
        raise
    except OTPAuthError as refusal:
        return refusal


async def _issue(
    s: Settings[U],
    store: Store[U],
    key: str,
    subject: str,
    binding: PendingChallenge | None,
    outcome: challenge.IssueOutcome,
    hashes: tuple[str, str | None],
    now: datetime,
    email: str,
    *,
    ip: str | None,
    device: str | None,
    account: Account[U] | None,
) -> tuple[Account[U] | None, ChallengeState]:
    """The limits, then the refusal of an unknown address or the stored code."""
    await send_limits(
        s, _limit_store(s, store), email=email, subject=subject, ip=ip, device=device, now=now
    )
    if account is None and not s.auto_create_user and s.reveal_unknown_users:
        emit(s, CodeRequested(at=now, email=email, user_id=None, outcome="unknown_user"))
        raise UserNotFound()
    issued = await _store_issued(s, store, key, subject, binding, outcome, hashes, now, email)
    return account, issued


def _raise_issue_refusal(
    s: Settings[Any], email: str, outcome: challenge.IssueOutcome, now: datetime
) -> None:
    match outcome:
        case challenge.Cooldown(retry_after=retry_after):
            emit(s, CodeRequested(at=now, email=email, user_id=None, outcome="cooldown"))
            raise CodeCooldown(retry_after=retry_after)
        case challenge.LockedOut(retry_after=retry_after):
            emit(s, CodeRequested(at=now, email=email, user_id=None, outcome="locked"))
            raise AccountLocked(retry_after=retry_after)
        case challenge.Issued():
            return
        case unreachable:
            assert_never(unreachable)


async def _store_issued(
    s: Settings[Any],
    store: Store[Any],
    key: str,
    subject: str,
    binding: PendingChallenge | None,
    outcome: challenge.IssueOutcome,
    hashes: tuple[str, str | None],
    now: datetime,
    email: str,
) -> ChallengeState:
    """Write the issued state: a new record, or a compare-and-set on the binding's."""
    assert isinstance(outcome, challenge.Issued)
    # Of two codes issued in the same instant, the later is the address's newest.
    order = next_order()
    if binding is None:
        state = outcome.state
        await store.create_challenge(
            PendingChallenge(
                id=key,
                subject=subject,
                state=state,
                expires_at=challenge.keep_until(state, policy=s.policy),
                order=order,
            )
        )
        return state
    for _ in range(s.max_retries):
        state = outcome.state
        if await store.update_challenge(
            key,
            expected_version=binding.state.version,
            state=state,
            expires_at=challenge.keep_until(state, policy=s.policy),
            order=order,
        ):
            return state
        reloaded = await store.find_challenge(key)
        if reloaded is None:
            raise ContentionError()
        binding = reloaded
        code_hash, link_hash = hashes
        outcome = challenge.request_code(
            binding.state, code_hash=code_hash, link_hash=link_hash, now=now, policy=s.policy
        )
        _raise_issue_refusal(s, email, outcome, now)
        assert isinstance(outcome, challenge.Issued)
    raise ContentionError()


def _limit_store(s: Settings[Any], store: Store[Any]) -> LimitStore:
    return s.limit_store if s.limit_store is not None else store


def _refused(
    s: Settings[Any], email: str, user_id: str | None, error: OTPAuthError, now: datetime
) -> NoReturn:
    emit(s, GuessFailed(at=now, email=email, user_id=user_id, reason=error.code))
    raise error


async def verify_code(
    s: Settings[U],
    store: Store[U],
    email: str,
    code: str,
    *,
    challenge_id: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    device: str | None = None,
) -> Login[U]:
    """Redeem ``code`` for ``email``, opening a session; see :meth:`OTPAuth.verify_code`.

    Each attempt is one unit of work: the limit hits, the guess's compare-and-set and, for a
    right code, the account (created if missing), its verified mark and the new session,
    all committed together (one transaction on SQL stores). A refusal is raised after the
    unit commits what was counted; an attempt that lost the compare-and-set commits its
    hits and decides again.
    """
    email = normalize_email(email)
    secret = s.policy.secret
    subject = rules.subject_key(secret, email)
    guess = _Guess(
        email=email,
        subject=subject,
        now=s.clock(),
        device_nonce=rules.valid_device(secret, subject, device),
        presented=hash_code(secret, email, code),
        key=rules.challenge_key(secret, challenge_id) if challenge_id else None,
        ip=ip,
        user_agent=user_agent,
    )
    limiter = _limit_store(s, store)
    counted = _Counted()
    for _ in range(s.max_retries):
        before = replace(counted)
        # The reads before the unit, which on SQLite holds the write lock: its
        # compare-and-set finds out whether the record changed since.
        unknown = (
            s.reveal_unknown_users
            and not s.auto_create_user
            and await store.find_by_email(email) is None
        )
        key = guess.key
        record = await (store.find_challenge(key) if key else store.newest_challenge(subject))
        try:
            async with store.transaction():
                result = await deferred(
                    _attempt(s, store, limiter, guess, counted, record, unknown=unknown)
                )
        except ContentionError:
            # The unit was undone (a new account's e-mail race on SQL): so were its hits,
            # unless the counters live elsewhere.
            if limiter is store:
                counted = before
            continue
        if isinstance(result, OTPAuthError):
            raise result
        if result is not None:
            return result
    raise ContentionError()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Guess:
    email: str
    subject: str
    now: datetime
    device_nonce: str | None
    presented: str
    key: str | None
    ip: str | None
    user_agent: str | None


@dataclass(slots=True)
class _Counted:
    """Which of a verify's limit hits are stored (each counted once across its attempts)."""

    client: bool = False
    lock: bool = False


async def _attempt(
    s: Settings[U],
    store: Store[U],
    limiter: LimitStore,
    g: _Guess,
    counted: _Counted,
    record: PendingChallenge | None,
    *,
    unknown: bool,
) -> Login[U] | None:
    """One attempt at a guess on ``record`` (as read just before); ``None`` when its
    compare-and-set lost (read and decide again)."""
    now, email = g.now, g.email
    if not counted.client and g.ip is not None and s.limits.verify_per_client is not None:
        await check_rate(
            s, limiter, "verify-client", rules.client_scope(g.ip), s.limits.verify_per_client, now
        )
        counted.client = True
    if unknown:
        emit(s, GuessFailed(at=now, email=email, user_id=None, reason="unknown_user"))
        raise UserNotFound()
    bound = g.key is not None
    if record is None or record.subject != g.subject:
        _refused(s, email, None, CodeInvalid(), now)
    before = record.state
    evaluate = challenge.submit_guess if bound else challenge.submit_unbound_guess
    decision = evaluate(before, presented_hash=g.presented, now=now, policy=s.policy)
    match decision:
        case challenge.NoChallenge():
            _refused(s, email, None, CodeInvalid(), now)
        case challenge.Expired():
            _refused(s, email, None, CodeExpired(), now)
        case challenge.CodeSpent():
            _refused(s, email, None, AccountLocked(), now)
        case challenge.LockedOut(retry_after=retry_after):
            _refused(s, email, None, AccountLocked(retry_after=retry_after), now)
        case challenge.Rejected() | challenge.Accepted():
            pass
        case unreachable:
            assert_never(unreachable)
    if bound and g.device_nonce is None and not counted.lock:
        # Bound guesses from clients without an allowance share the account-wide cap
        # (NIST SP 800-63B §5.2.2: at most policy.max_failures per lockout period),
        # counted before the guess is evaluated.
        await failure_lock(s, limiter, g.subject, now)
        counted.lock = True
    account = None
    if isinstance(decision, challenge.Accepted):
        # Before the code is spent: an account that cannot be created (a required column
        # and no new_user_fields hook) leaves the code for another try.
        account = await account_for(s, store, email)
    if not await store.update_challenge(
        record.id,
        expected_version=before.version,
        state=decision.state,
        expires_at=challenge.keep_until(decision.state, policy=s.policy),
    ):
        return None
    if isinstance(decision, challenge.Rejected):
        _rejected(s, email, decision, now)
    if account is None:  # only a lucky guess on a code that was never sent
        _refused(s, email, None, CodeInvalid(), now)
    return await log_in(s, store, account, g.subject, g.device_nonce, now, g.user_agent, g.ip)


def _rejected(
    s: Settings[Any], email: str, decision: challenge.Rejected, now: datetime
) -> NoReturn:
    remaining = decision.remaining_attempts
    emit(
        s,
        GuessFailed(
            at=now,
            email=email,
            user_id=None,
            reason=CodeInvalid.code,
            remaining_attempts=remaining,
        ),
    )
    if decision.ends_guessing:
        emit(s, OTPLocked(at=now, email=email, user_id=None, failures=decision.state.failures))
    raise CodeInvalid(remaining_attempts=remaining)


async def account_for(s: Settings[U], store: Store[U], email: str) -> Account[U] | None:
    """The account a right code logs in: found, or created with ``auto_create_user``."""
    account = await store.find_by_email(email)
    if account is None and s.auto_create_user:
        fields = s.new_user_fields(email) if s.new_user_fields is not None else {}
        # The address was just proven: the new account is verified from its first write.
        account = await store.create(email, fields, verified=True)
    return account


async def log_in(
    s: Settings[U],
    store: Store[U],
    account: Account[U],
    subject: str,
    device_nonce: str | None,
    now: datetime,
    user_agent: str | None,
    ip: str | None,
) -> Login[U]:
    """The code was consumed: mark the account verified, open a session."""
    account = await _mark_verified(s, store, account)
    login = await open_session(s, store, account, now=now, user_agent=user_agent, ip=ip)
    emit(s, LoginSucceeded(at=now, user_id=account.user_id, sid=login.sid))
    nonce = device_nonce if device_nonce is not None else s.new_id()
    return replace(login, device=rules.device_token(s.policy.secret, subject, nonce))


async def _mark_verified(s: Settings[U], store: Store[U], account: Account[U]) -> Account[U]:
    for _ in range(s.max_retries):
        if account.is_verified:
            return account
        state = replace(account.challenge, version=account.challenge.version + 1)
        if await store.save_challenge(
            account.user_id,
            expected_version=account.challenge.version,
            state=state,
            mark_verified=True,
        ):
            return replace(account, is_verified=True, challenge=state)
        fresh = await store.find_by_id(account.user_id)
        if fresh is None:
            raise CodeInvalid()
        account = fresh
    raise ContentionError()
