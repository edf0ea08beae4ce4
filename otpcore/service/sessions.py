"""Sessions over the store: issue a token pair, rotate it, log out, authenticate.

Every decision is :mod:`otpcore.domain.sessions`' (reuse, revocation, when a session
starts) or the token codec's; this module loads what they need and writes what they say.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar, assert_never

from otpcore.domain import sessions as rules
from otpcore.domain.errors import (
    OTPAuthError,
    RefreshReused,
    TokenInvalid,
    TokenRevoked,
    UserNotVerified,
)
from otpcore.domain.events import (
    LoggedOut,
    LoggedOutEverywhere,
    RefreshReuseDetected,
    RefreshRotated,
)
from otpcore.domain.records import Account, Claims, TokenKind
from otpcore.ports import Store
from otpcore.service.context import Settings, emit
from otpcore.service.results import Login, Principal

__all__ = ["authenticate", "issue", "logout", "logout_all", "refresh"]

U = TypeVar("U")


def issue(
    s: Settings[U], account: Account[U], *, sid: str, auth_time: float, now: datetime
) -> Login[U]:
    """A new access and refresh token for ``account`` in session ``sid``."""
    extra = s.claims_for(account.user) if s.claims_for is not None else None
    access = s.codec.issue(
        kind="access",
        subject=account.user_id,
        sid=sid,
        jti=s.new_id(),
        auth_time=auth_time,
        now=now,
        extra=extra,
    )
    refresh_token = s.codec.issue(
        kind="refresh",
        subject=account.user_id,
        sid=sid,
        jti=s.new_id(),
        auth_time=auth_time,
        now=now,
    )
    return Login(
        access_token=access,
        refresh_token=refresh_token,
        user=account.user,
        user_id=account.user_id,
        sid=sid,
        access_expires_at=now + s.policy.access_lifetime,
        refresh_expires_at=now + s.policy.refresh_lifetime,
    )


async def _settle(
    s: Settings[Any], store: Store[Any], claims: Claims, verdict: rules.Verdict, now: datetime
) -> None:
    """Carry out a refusing verdict: raise, after revoking the session on reuse."""
    match verdict:
        case rules.Valid():
            return
        case rules.Revoked():
            raise TokenRevoked()
        case rules.Reused():
            await store.revoke(rules.session_revocation(claims, now=now, policy=s.policy))
            emit(s, RefreshReuseDetected(at=now, user_id=claims.sub, sid=claims.sid))
            raise RefreshReused()
        case unreachable:
            assert_never(unreachable)


async def refresh(s: Settings[U], store: Store[U], refresh_token: str) -> Login[U]:
    """Rotate ``refresh_token``; see :meth:`OTPAuth.refresh`."""
    now = s.clock()
    claims = s.codec.verify(refresh_token, kind="refresh", now=now)
    account, found = await store.load_principal(claims.sub, rules.revocation_keys(claims))
    await _settle(s, store, claims, rules.revocation_verdict(claims, found), now)
    if account is None:
        raise TokenInvalid()
    # Only a token nothing refuses gets its rotation marker written. Whether that insert
    # won goes back to the same verdict: losing it means a concurrent call rotated first.
    won = await store.revoke(rules.rotation_marker(claims, now=now, policy=s.policy))
    await _settle(s, store, claims, rules.revocation_verdict(claims, found, rotation_won=won), now)
    login = issue(s, account, sid=claims.sid, auth_time=claims.auth_time, now=now)
    emit(s, RefreshRotated(at=now, user_id=claims.sub, sid=claims.sid))
    return login


async def logout(
    s: Settings[U], store: Store[U], refresh_token: str | None, access_token: str | None
) -> bool:
    """Revoke the sessions and the tokens presented; see :meth:`OTPAuth.logout`."""
    now = s.clock()
    presented: list[Claims] = []
    kinds: tuple[tuple[str | None, TokenKind], ...] = (
        (refresh_token, "refresh"),
        (access_token, "access"),
    )
    for token, kind in kinds:
        if token is None:
            continue
        try:
            presented.append(s.codec.verify(token, kind=kind, now=now))
        except OTPAuthError:
            continue  # invalid, expired or of the other kind: nothing of ours to revoke
    revoked = False
    seen: set[str] = set()
    for claims in presented:
        if claims.sid in seen:
            continue
        seen.add(claims.sid)
        if await store.revoke(rules.session_revocation(claims, now=now, policy=s.policy)):
            revoked = True
            emit(s, LoggedOut(at=now, user_id=claims.sub, sid=claims.sid))
    for claims in presented:
        # The token's own jti too, so the reference API's is_blacklisted(jti) says so.
        await store.revoke(rules.token_revocation(claims, now=now, policy=s.policy))
    return revoked


async def _principal(
    s: Settings[U], store: Store[U], access_token: str, now: datetime, *, require_verified: bool
) -> Principal[U]:
    claims = s.codec.verify(access_token, kind="access", now=now)
    account, found = await store.load_principal(claims.sub, rules.revocation_keys(claims))
    if not isinstance(rules.revocation_verdict(claims, found), rules.Valid):
        raise TokenRevoked()
    if account is None:
        raise TokenInvalid()  # the user is gone: the same refusal refresh gives
    if require_verified and not account.is_verified:
        raise UserNotVerified()
    return Principal(claims=claims, account=account)


async def authenticate(
    s: Settings[U], store: Store[U], access_token: str, *, require_verified: bool
) -> Principal[U]:
    """Verify ``access_token`` and load its user; see :meth:`OTPAuth.authenticate`."""
    return await _principal(s, store, access_token, s.clock(), require_verified=require_verified)


async def logout_all(s: Settings[U], store: Store[U], access_token: str) -> None:
    """Raise the cutoff of the token's own user; see :meth:`OTPAuth.logout_all`."""
    now = s.clock()
    principal = await _principal(s, store, access_token, now, require_verified=False)
    user_id = principal.account.user_id
    cutoff, keep_until = rules.logout_all_cutoff(now=now, policy=s.policy)
    await store.revoke_user(user_id, at=cutoff, expires_at=keep_until)
    emit(s, LoggedOutEverywhere(at=now, user_id=user_id))
