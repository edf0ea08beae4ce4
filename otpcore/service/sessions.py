"""Sessions over the store: open one, rotate its refresh token, end it, list them.

Every decision is :mod:`otpcore.domain.sessions`' (when a session ends, whether a refresh
that lost its rotation gets the same successor or is reuse, which revocations refuse a
token) or the token codec's; this module loads what they need and writes what they say.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar, assert_never

from otpcore.domain import sessions as rules
from otpcore.domain.errors import (
    OTPAuthError,
    RefreshReused,
    SessionNotFound,
    TokenExpired,
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
from otpcore.service.results import Login, Principal, SessionView

__all__ = [
    "authenticate",
    "issue",
    "list_sessions",
    "logout",
    "logout_all",
    "open_session",
    "refresh",
    "revoke_other_sessions",
    "revoke_session",
]

U = TypeVar("U")


def issue(
    s: Settings[U],
    account: Account[U],
    *,
    sid: str,
    auth_time: float,
    now: datetime,
    generation: int,
    session_expires_at: datetime,
) -> Login[U]:
    """A new access token and the refresh token of ``generation`` for session ``sid``.

    Neither outlives the session (``session_expires_at``); the refresh token's ``jti`` is
    derived (:func:`~otpcore.domain.sessions.successor_jti`), so every process names the
    same one for the same generation.
    """
    extra = s.claims_for(account.user) if s.claims_for is not None else None
    access_expires = rules.token_expiry(
        s.policy.access_lifetime, session_expires_at=session_expires_at, now=now
    )
    refresh_expires = rules.token_expiry(
        s.policy.refresh_lifetime, session_expires_at=session_expires_at, now=now
    )
    access = s.codec.issue(
        kind="access",
        subject=account.user_id,
        sid=sid,
        jti=s.new_id(),
        auth_time=auth_time,
        now=now,
        extra=extra,
        expires_at=access_expires,
    )
    refresh_token = s.codec.issue(
        kind="refresh",
        subject=account.user_id,
        sid=sid,
        jti=rules.successor_jti(s.policy.secret, sid, generation),
        auth_time=auth_time,
        now=now,
        generation=generation,
        expires_at=refresh_expires,
    )
    return Login(
        access_token=access,
        refresh_token=refresh_token,
        user=account.user,
        user_id=account.user_id,
        sid=sid,
        access_expires_at=access_expires,
        refresh_expires_at=refresh_expires,
    )


async def open_session(
    s: Settings[U],
    store: Store[U],
    account: Account[U],
    *,
    now: datetime,
    user_agent: str | None,
    ip: str | None,
) -> Login[U]:
    """Record a new session for ``account`` (a code was just redeemed) and issue its pair."""
    session = rules.new_session(
        sid=s.new_id(),
        user_id=account.user_id,
        now=now,
        policy=s.policy,
        user_agent=user_agent,
        ip=ip,
    )
    await store.open_session(session)
    return issue(
        s,
        account,
        sid=session.sid,
        auth_time=rules.session_start(now),
        now=now,
        generation=session.generation,
        session_expires_at=session.expires_at,
    )


async def _end(
    s: Settings[Any],
    store: Store[Any],
    user_id: str,
    now: datetime,
    *,
    only: str | None = None,
    keep: str | None = None,
) -> list[str]:
    """End sessions of ``user_id`` (``only`` one, all but ``keep``, else all) and revoke
    their access tokens on every worker; the ids this call ended."""
    async with store.transaction(atomic=False):
        ended = await store.end_sessions(user_id, now=now, only=only, keep=keep)
        if ended:
            await store.revoke_many(
                [rules.session_revocation(sid, now=now, policy=s.policy) for sid in ended]
            )
    return ended


async def refresh(s: Settings[U], store: Store[U], refresh_token: str) -> Login[U]:
    """Rotate ``refresh_token``; see :meth:`OTPAuth.refresh`."""
    now = s.clock()
    claims = s.codec.verify(refresh_token, kind="refresh", now=now)
    if claims.gen is None:
        raise TokenInvalid()
    account, found = await store.load_principal(claims.sub, rules.revocation_keys(claims))
    if not isinstance(rules.revocation_verdict(claims, found), rules.Valid):
        raise TokenRevoked()
    if account is None:
        raise TokenInvalid()
    expires_at = rules.session_expiry(claims.auth_time, now=now, policy=s.policy)
    if await store.rotate_session(
        claims.sid, expected_generation=claims.gen, now=now, expires_at=expires_at
    ):
        login = issue(
            s,
            account,
            sid=claims.sid,
            auth_time=claims.auth_time,
            now=now,
            generation=claims.gen + 1,
            session_expires_at=expires_at,
        )
        emit(s, RefreshRotated(at=now, user_id=claims.sub, sid=claims.sid))
        return login
    # Not rotated: a concurrent presentation won, or the session is over. One read decides.
    session = await store.find_session(claims.sid)
    match rules.refresh_verdict(claims, session, now=now, policy=s.policy):
        case rules.Grace(generation=generation, expires_at=session_expires_at):
            return issue(
                s,
                account,
                sid=claims.sid,
                auth_time=claims.auth_time,
                now=now,
                generation=generation,
                session_expires_at=session_expires_at,
            )
        case rules.Revoked():
            raise TokenRevoked()
        case rules.Expired():
            raise TokenExpired()
        case rules.Reused():
            async with store.transaction(atomic=False):
                await store.end_sessions(claims.sub, now=now, only=claims.sid)
                # Written even if the session ended meanwhile: the insert is idempotent.
                revocation = rules.session_revocation(claims.sid, now=now, policy=s.policy)
                await store.revoke(revocation)
            emit(s, RefreshReuseDetected(at=now, user_id=claims.sub, sid=claims.sid))
            raise RefreshReused()
        case unreachable:
            assert_never(unreachable)


async def logout(
    s: Settings[U], store: Store[U], refresh_token: str | None, access_token: str | None
) -> bool:
    """End the sessions and revoke the tokens presented; see :meth:`OTPAuth.logout`."""
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
    if not presented:
        return False
    by_sid: dict[str, Claims] = {}
    for claims in presented:
        by_sid.setdefault(claims.sid, claims)
    sessions = list(by_sid.values())
    # One unit of work: on SQLite one write lock and one commit for the whole logout. The
    # revocations are one multi-row insert: the sessions', and each token's own jti too, so
    # that the reference API's is_blacklisted(jti) says so.
    async with store.transaction(atomic=False):
        ended = [
            bool(await store.end_sessions(claims.sub, now=now, only=claims.sid))
            for claims in sessions
        ]
        inserted = await store.revoke_many(
            [rules.session_revocation(claims.sid, now=now, policy=s.policy) for claims in sessions]
            + [rules.token_revocation(claims, now=now, policy=s.policy) for claims in presented]
        )
    ended_sids = [
        claims
        for claims, was_ended, was_inserted in zip(
            sessions, ended, inserted[: len(sessions)], strict=True
        )
        if was_ended or was_inserted
    ]
    for claims in ended_sids:
        emit(s, LoggedOut(at=now, user_id=claims.sub, sid=claims.sid))
    return bool(ended_sids)


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
    """End every session of the token's own user; see :meth:`OTPAuth.logout_all`."""
    now = s.clock()
    principal = await _principal(s, store, access_token, now, require_verified=False)
    user_id = principal.account.user_id
    cutoff, keep_until = rules.logout_all_cutoff(now=now, policy=s.policy)
    await store.revoke_user(user_id, at=cutoff, expires_at=keep_until)
    # Each session ended by id as well: the cutoff compares this host's clock with the
    # clocks of the hosts the sessions began on, the session ids compare nothing.
    await _end(s, store, user_id, now)
    emit(s, LoggedOutEverywhere(at=now, user_id=user_id))


async def list_sessions(s: Settings[U], store: Store[U], access_token: str) -> list[SessionView]:
    """The token's user's active sessions; see :meth:`OTPAuth.list_sessions`."""
    now = s.clock()
    principal = await _principal(s, store, access_token, now, require_verified=False)
    current = principal.claims.sid
    return [
        SessionView(
            id=session.sid,
            current=session.sid == current,
            created_at=session.created_at,
            last_used_at=session.last_used_at,
            user_agent=session.user_agent,
            ip=session.ip,
        )
        for session in await store.list_sessions(principal.account.user_id, now=now)
    ]


async def revoke_session(s: Settings[U], store: Store[U], access_token: str, sid: str) -> bool:
    """End one of the token's user's sessions; whether it was the token's own. See
    :meth:`OTPAuth.revoke_session`."""
    now = s.clock()
    principal = await _principal(s, store, access_token, now, require_verified=False)
    user_id = principal.account.user_id
    if not await _end(s, store, user_id, now, only=sid):
        raise SessionNotFound()
    emit(s, LoggedOut(at=now, user_id=user_id, sid=sid))
    return sid == principal.claims.sid


async def revoke_other_sessions(s: Settings[U], store: Store[U], access_token: str) -> int:
    """End every session of the token's user but its own; see
    :meth:`OTPAuth.revoke_other_sessions`."""
    now = s.clock()
    principal = await _principal(s, store, access_token, now, require_verified=False)
    user_id = principal.account.user_id
    ended = await _end(s, store, user_id, now, keep=principal.claims.sid)
    for sid in ended:
        emit(s, LoggedOut(at=now, user_id=user_id, sid=sid))
    return len(ended)
