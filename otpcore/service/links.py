"""Magic links over the store: redeem one for a session, like a right code.

The link names its challenge (:mod:`otpcore.domain.links`), so it works on any device; the
decision is :func:`otpcore.domain.challenge.redeem_link`'s, written with the same
compare-and-set on the challenge's version as a guess. Code and link spend one challenge:
of any number of concurrent redeems and right guesses, across processes, exactly one logs
in. A wrong link counts nothing (it is no guess) and changes nothing.
"""

from __future__ import annotations

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
from otpcore.ports import Store
from otpcore.service.codes import account_for, log_in
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
    device_nonce = rules.valid_device(secret, subject, device)

    for _ in range(s.max_retries):
        record = await store.find_challenge(parts.challenge_key)
        if record is None or record.subject != subject:
            _refuse(LinkInvalid())
        before = record.state
        decision = challenge.redeem_link(before, presented_hash=presented, now=now, policy=s.policy)
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
        # Before the link is spent: an account that cannot be created leaves it for a retry.
        account = await account_for(s, store, email)
        if not await store.update_challenge(
            record.id,
            expected_version=before.version,
            state=decision.state,
            expires_at=challenge.keep_until(decision.state, policy=s.policy),
        ):
            continue  # a guess or another redeem moved the challenge: decide again
        if account is None:  # a link is sent only where an account is or may be created
            _refuse(LinkInvalid())
        return await log_in(s, store, account, subject, device_nonce, now, user_agent, ip)
    raise ContentionError()
