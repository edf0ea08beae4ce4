"""Magic links over the store: redeem one for a session, like a right code.

The link names its challenge (:mod:`otpcore.domain.links`), so it works on any device; the
decision is :func:`otpcore.domain.challenge.redeem_link`'s, written with the same
compare-and-set on the challenge's version as a guess. Code and link spend one challenge:
of any number of concurrent redeems and right guesses, across processes, exactly one logs
in. A wrong link counts nothing (it is no guess) and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn, TypeVar, assert_never

from otpcore.domain import challenge
from otpcore.domain import limits as rules
from otpcore.domain.emails import InvalidEmail, normalize_email
from otpcore.domain.errors import (
    AccountLocked,
    CodeExpired,
    ContentionError,
    LinkInvalid,
    OTPAuthError,
)
from otpcore.domain.links import link_hash, parse_link
from otpcore.domain.records import PendingChallenge
from otpcore.ports import Store
from otpcore.service.codes import account_for, deferred, log_in
from otpcore.service.context import Settings
from otpcore.service.results import Login

__all__ = ["redeem_link"]

U = TypeVar("U")


def _refuse(error: OTPAuthError) -> NoReturn:
    raise error


async def redeem_link(
    s: Settings[U],
    store: Store[U],
    token: str,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
    device: str | None = None,
) -> Login[U]:
    """Redeem a magic link's ``token``, opening a session; see :meth:`OTPAuth.redeem_link`."""
    now = s.clock()
    secret = s.policy.secret
    parts = parse_link(token) if isinstance(token, str) else None
    if parts is None:
        _refuse(LinkInvalid())
    try:
        email = normalize_email(parts.email)
    except InvalidEmail:
        _refuse(LinkInvalid())
    if email != parts.email:  # links carry the normalized address they were sent to
        _refuse(LinkInvalid())
    subject = rules.subject_key(secret, email)
    presented = link_hash(secret, parts)
    spend = _Spend(email, subject, rules.valid_device(secret, subject, device), user_agent, ip)
    for _ in range(s.max_retries):
        record = await store.find_challenge(parts.challenge_key)
        if record is None or record.subject != subject:
            _refuse(LinkInvalid())
        decision = challenge.redeem_link(
            record.state, presented_hash=presented, now=now, policy=s.policy
        )
        match decision:
            case challenge.WrongLink():
                _refuse(LinkInvalid())
            case challenge.Expired():
                _refuse(CodeExpired())
            case challenge.LockedOut(retry_after=retry_after):
                _refuse(AccountLocked(retry_after=retry_after))
            case challenge.Accepted():
                pass
            case unreachable:
                assert_never(unreachable)
        try:
            # One unit, as a right code's: the new account, the spent link and the session
            # are written together or not at all.
            async with store.transaction():
                result = await deferred(_spent(s, store, record, decision, spend, now))
        except ContentionError:
            continue  # the unit was undone (a new account's e-mail race on SQL)
        if isinstance(result, OTPAuthError):
            raise result
        if result is not None:
            return result
    raise ContentionError()


@dataclass(frozen=True, slots=True)
class _Spend:
    email: str
    subject: str
    device_nonce: str | None
    user_agent: str | None
    ip: str | None


async def _spent(
    s: Settings[U],
    store: Store[U],
    record: PendingChallenge,
    decision: challenge.Accepted,
    spend: _Spend,
    now: datetime,
) -> Login[U] | None:
    """Spend the link on ``record`` and log in; ``None`` when its compare-and-set lost (a
    guess or another redeem moved the challenge: read and decide again)."""
    # Before the link is spent: an account that cannot be created leaves it for a retry.
    account = await account_for(s, store, spend.email)
    if not await store.update_challenge(
        record.id,
        expected_version=record.state.version,
        state=decision.state,
        expires_at=challenge.keep_until(decision.state, policy=s.policy),
    ):
        return None
    if account is None:  # a link is sent only where an account is or may be created
        _refuse(LinkInvalid())
    return await log_in(
        s, store, account, spend.subject, spend.device_nonce, now, spend.user_agent, spend.ip
    )
