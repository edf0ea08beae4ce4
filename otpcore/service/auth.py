"""The async orchestrator any framework calls: load through the ports, decide with the pure
core, write back with compare-and-set, and turn refusals into :mod:`otpcore.domain.errors`.

Nothing here decides whether someone gets in; :mod:`otpcore.domain.challenge`,
:mod:`otpcore.tokens` and :mod:`otpcore.domain.sessions` do. A lost compare-and-set means another
request changed the account first: the service reloads and decides again from the winner's
state, at most ``max_retries`` times.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, NoReturn, TypeVar, assert_never

from otpcore.domain import challenge, sessions
from otpcore.domain.codes import generate_code, hash_code
from otpcore.domain.emails import normalize_email
from otpcore.domain.errors import (
    AccountLocked,
    CodeCooldown,
    CodeExpired,
    CodeInvalid,
    ConfigurationError,
    ContentionError,
    DeliveryError,
    OTPAuthError,
    RefreshReused,
    TokenInvalid,
    TokenRevoked,
    UserNotFound,
)
from otpcore.domain.events import (
    AuthEvent,
    CodeRequested,
    CodeSent,
    EventSink,
    GuessFailed,
    LoggedOut,
    LoggedOutEverywhere,
    LoginSucceeded,
    OTPLocked,
    RefreshReuseDetected,
    RefreshRotated,
)
from otpcore.domain.policy import Policy
from otpcore.domain.records import Account, Claims, TokenKind
from otpcore.ports import RevocationStore, Store
from otpcore.service.results import Login, Principal
from otpcore.tokens import KeySet, TokenCodec

__all__ = ["OTPAuth", "RevocationSource"]

U = TypeVar("U")

logger = logging.getLogger("otpcore")


def utc_now() -> datetime:
    """The production clock."""
    return datetime.now(UTC)


def new_token_id() -> str:
    """A fresh 128-bit identifier for ``jti`` and ``sid``."""
    return secrets.token_urlsafe(16)


RevocationSource = Callable[[], AbstractAsyncContextManager[RevocationStore]]


@dataclass(slots=True, kw_only=True)
class _Settings(Generic[U]):
    policy: Policy
    codec: TokenCodec
    sender: Callable[[str, str], Awaitable[None]]
    clock: Callable[[], datetime]
    randbelow: Callable[[int], int]
    new_id: Callable[[], str]
    events: EventSink | None
    auto_create_user: bool
    reveal_unknown_users: bool
    new_user_fields: Callable[[str], Mapping[str, object]] | None
    claims_for: Callable[[U], Mapping[str, Any]] | None
    max_retries: int
    mirror: sessions.RevocationMirror
    mirror_lock: asyncio.Lock
    revocation_source: RevocationSource | None


class OTPAuth(Generic[U]):
    """Passwordless e-mail code authentication over one storage backend.

    Construct once per process; use :meth:`with_store` to get a view on another store handle
    (for example one database session per request) that shares everything else, including
    the revocation mirror.
    """

    __slots__ = ("_s", "store")

    def __init__(
        self,
        *,
        policy: Policy,
        store: Store[U] | None,
        sender: Callable[[str, str], Awaitable[None]],
        keys: KeySet | None = None,
        clock: Callable[[], datetime] = utc_now,
        randbelow: Callable[[int], int] = secrets.randbelow,
        new_id: Callable[[], str] = new_token_id,
        events: EventSink | None = None,
        auto_create_user: bool = True,
        reveal_unknown_users: bool = False,
        new_user_fields: Callable[[str], Mapping[str, object]] | None = None,
        claims_for: Callable[[U], Mapping[str, Any]] | None = None,
        max_retries: int = 32,
        mirror_interval: timedelta = timedelta(seconds=1),
        revocation_source: RevocationSource | None = None,
    ) -> None:
        """Configure the service.

        Args:
            policy: Code, backoff and token settings.
            store: The storage handle this instance uses; ``None`` for an instance that only
                ever gets stores through :meth:`with_store`.
            sender: ``await sender(email, code)`` delivers a code.
            keys: Token keys; HS256 with ``policy.secret`` when omitted.
            clock: Returns the current aware-UTC time.
            randbelow: Random source for codes (``secrets.randbelow``).
            new_id: Source of ``jti``/``sid`` values.
            events: Receives every :mod:`otpcore.domain.events` event.
            auto_create_user: Create an account for an unknown e-mail on request.
            reveal_unknown_users: Raise :class:`UserNotFound` for unknown e-mails instead of
                answering exactly as for a known one.
            new_user_fields: Extra column values for an auto-created user, given the e-mail.
            claims_for: Custom access-token claims for a user; reserved names are refused.
            max_retries: Bound on reload-and-decide rounds after a lost compare-and-set.
            mirror_interval: Longest a claims-only check may trust the revocation mirror.
            revocation_source: Opens a revocation store for mirror refreshes when this
                instance has no ``store``.
        """
        if max_retries < 1:
            raise ValueError("max_retries must be at least 1")
        self._s: _Settings[U] = _Settings(
            policy=policy,
            codec=TokenCodec(keys or KeySet.symmetric(policy.secret), policy),
            sender=sender,
            clock=clock,
            randbelow=randbelow,
            new_id=new_id,
            events=events,
            auto_create_user=auto_create_user,
            reveal_unknown_users=reveal_unknown_users,
            new_user_fields=new_user_fields,
            claims_for=claims_for,
            max_retries=max_retries,
            mirror=sessions.RevocationMirror(interval=mirror_interval),
            mirror_lock=asyncio.Lock(),
            revocation_source=revocation_source,
        )
        self.store = store

    def with_store(self, store: Store[U]) -> OTPAuth[U]:
        """This service over another store handle; settings and mirror are shared."""
        view: OTPAuth[U] = object.__new__(OTPAuth)
        view._s = self._s
        view.store = store
        return view

    @property
    def policy(self) -> Policy:
        """The policy this service enforces."""
        return self._s.policy

    @property
    def codec(self) -> TokenCodec:
        """The token codec (for JWKS and for tests)."""
        return self._s.codec

    @property
    def mirror(self) -> sessions.RevocationMirror:
        """This process's revocation mirror."""
        return self._s.mirror

    def _store(self) -> Store[U]:
        if self.store is None:
            raise ConfigurationError("this OTPAuth has no store; call with_store(store) first")
        return self.store

    def _emit(self, event: AuthEvent) -> None:
        if self._s.events is None:
            return
        try:
            self._s.events(event)
        except Exception:
            # An audit sink failure must not decide a login; it is reported, not raised.
            logger.exception("otpcore event sink failed on %s", type(event).__name__)

    async def _reload(self, account: Account[U]) -> Account[U]:
        fresh = await self._store().find_by_id(account.user_id)
        if fresh is None:
            raise CodeInvalid()
        return fresh

    # -- codes ---------------------------------------------------------------------------

    async def request_code(self, email: str) -> None:
        """Issue a code for ``email`` and hand it to the sender.

        Raises:
            InvalidEmail: ``email`` is not an acceptable address.
            CodeCooldown: A code was issued too recently (``retry_after`` set).
            AccountLocked: Too many consecutive failures; issuing is paused.
            UserNotFound: Unknown e-mail, only with ``reveal_unknown_users``.
            DeliveryError: The sender failed; the code was withdrawn.
        """
        s = self._s
        store = self._store()
        email = normalize_email(email)
        now = s.clock()
        account = await store.find_by_email(email)
        if account is None:
            if not s.auto_create_user:
                self._emit(CodeRequested(at=now, email=email, user_id=None, outcome="unknown_user"))
                if s.reveal_unknown_users:
                    raise UserNotFound()
                return
            fields = s.new_user_fields(email) if s.new_user_fields is not None else {}
            account = await store.create(email, fields)

        for _ in range(s.max_retries):
            code = generate_code(
                s.policy.code_length, s.randbelow, developer_mode=s.policy.developer_mode
            )
            code_hash = hash_code(s.policy.secret, email, code)
            before = account.challenge
            match challenge.request_code(before, code_hash=code_hash, now=now, policy=s.policy):
                case challenge.Cooldown(retry_after=retry_after, locked=locked):
                    outcome = "locked" if locked else "cooldown"
                    self._emit(
                        CodeRequested(at=now, email=email, user_id=account.user_id, outcome=outcome)
                    )
                    if locked:
                        raise AccountLocked(retry_after=retry_after)
                    raise CodeCooldown(retry_after=retry_after)
                case challenge.Issued(state=issued):
                    if await store.save_challenge(
                        account.user_id, expected_version=before.version, state=issued
                    ):
                        break
                    account = await self._reload(account)
                case unreachable:
                    assert_never(unreachable)
        else:
            raise ContentionError()

        self._emit(CodeRequested(at=now, email=email, user_id=account.user_id, outcome="issued"))
        try:
            await s.sender(email, code)
        except Exception as exc:
            await self._withdraw(account.user_id, before, issued)
            raise DeliveryError() from exc
        self._emit(CodeSent(at=now, email=email, user_id=account.user_id))

    async def _withdraw(
        self, user_id: str, before: challenge.ChallengeState, issued: challenge.ChallengeState
    ) -> None:
        # An undelivered code must not start a cooldown the user cannot see past. Restore the
        # earlier state under a newer version; if someone moved on already, theirs stands.
        restored = replace(before, version=issued.version + 1)
        await self._store().save_challenge(user_id, expected_version=issued.version, state=restored)

    async def verify_code(self, email: str, code: str) -> Login[U]:
        """Redeem ``code`` for ``email``: a new session and its token pair.

        The guess is stored as counted before the outcome is revealed, so no number of
        concurrent requests evaluates more than ``policy.max_attempts`` guesses per code,
        and exactly one of several concurrent correct guesses wins.

        Raises:
            InvalidEmail: ``email`` is not an acceptable address.
            CodeInvalid: Wrong code, or none pending (``remaining_attempts`` when known).
            CodeExpired: The code outlived its lifetime.
            AccountLocked: No guesses left on this code, or the account is locked.
            UserNotFound: Unknown e-mail, only with ``reveal_unknown_users``.
        """
        s = self._s
        store = self._store()
        email = normalize_email(email)
        now = s.clock()
        account = await store.find_by_email(email)
        if account is None:
            self._emit(GuessFailed(at=now, email=email, user_id=None, reason="unknown_user"))
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
                    self._refused(email, account, CodeInvalid(), now)
                case challenge.Expired():
                    self._refused(email, account, CodeExpired(), now)
                case challenge.Locked(retry_after=retry_after):
                    self._refused(email, account, AccountLocked(retry_after=retry_after), now)
                case challenge.Rejected(state=counted, remaining_attempts=remaining):
                    if await store.save_challenge(
                        account.user_id, expected_version=before.version, state=counted
                    ):
                        self._emit(
                            GuessFailed(
                                at=now,
                                email=email,
                                user_id=account.user_id,
                                reason=CodeInvalid.code,
                                remaining_attempts=remaining,
                            )
                        )
                        if remaining == 0 or counted.failures >= s.policy.max_failures:
                            self._emit(
                                OTPLocked(
                                    at=now,
                                    email=email,
                                    user_id=account.user_id,
                                    failures=counted.failures,
                                )
                            )
                        raise CodeInvalid(remaining_attempts=remaining)
                case challenge.Accepted(state=consumed):
                    if await store.save_challenge(
                        account.user_id,
                        expected_version=before.version,
                        state=consumed,
                        mark_verified=True,
                    ):
                        login = self._issue(
                            account, sid=s.new_id(), auth_time=now.timestamp(), now=now
                        )
                        self._emit(LoginSucceeded(at=now, user_id=account.user_id, sid=login.sid))
                        return login
                case unreachable:
                    assert_never(unreachable)
            account = await self._reload(account)
        raise ContentionError()

    def _refused(
        self, email: str, account: Account[U], error: OTPAuthError, now: datetime
    ) -> NoReturn:
        self._emit(GuessFailed(at=now, email=email, user_id=account.user_id, reason=error.code))
        raise error

    # -- tokens and sessions ---------------------------------------------------------------

    def _issue(self, account: Account[U], *, sid: str, auth_time: float, now: datetime) -> Login[U]:
        s = self._s
        extra = s.claims_for(account.user) if s.claims_for is not None else None
        # Millisecond precision, rounded down as every store (MongoDB included) truncates a
        # logout-all cutoff: a session begun before a cutoff must never compare after it.
        auth_time = math.floor(auth_time * 1000) / 1000
        access = s.codec.issue(
            kind="access",
            subject=account.user_id,
            sid=sid,
            jti=s.new_id(),
            auth_time=auth_time,
            now=now,
            extra=extra,
        )
        refresh = s.codec.issue(
            kind="refresh",
            subject=account.user_id,
            sid=sid,
            jti=s.new_id(),
            auth_time=auth_time,
            now=now,
        )
        return Login(
            access_token=access,
            refresh_token=refresh,
            user=account.user,
            user_id=account.user_id,
            sid=sid,
            access_expires_at=now + s.policy.access_lifetime,
            refresh_expires_at=now + s.policy.refresh_lifetime,
        )

    def _verify(self, token: str, kind: TokenKind, now: datetime) -> Claims:
        return self._s.codec.verify(token, kind=kind, now=now)

    async def refresh(self, refresh_token: str) -> Login[U]:
        """Rotate ``refresh_token`` into a new pair in the same session.

        Exactly one of several concurrent refreshes of one token succeeds; every other
        presentation of it is reuse, which revokes the session.

        Raises:
            TokenInvalid: Malformed, wrongly signed or not a refresh token, or its user is gone.
            TokenExpired: The refresh token expired.
            TokenRevoked: Its session was logged out or revoked.
            RefreshReused: It was already rotated; the session is now revoked.
        """
        s = self._s
        store = self._store()
        now = s.clock()
        claims = self._verify(refresh_token, "refresh", now)
        account, found = await store.load_principal(claims.sub, sessions.revocation_keys(claims))
        match sessions.revocation_verdict(claims, found):
            case sessions.Revoked():
                raise TokenRevoked()
            case sessions.Reused():
                await self._revoke_reused(claims, now)
            case sessions.Valid():
                pass
            case unreachable:
                assert_never(unreachable)
        if account is None:
            raise TokenInvalid()
        if not await store.revoke(sessions.rotation_marker(claims, now=now, policy=s.policy)):
            await self._revoke_reused(claims, now)
        login = self._issue(account, sid=claims.sid, auth_time=claims.auth_time, now=now)
        self._emit(RefreshRotated(at=now, user_id=claims.sub, sid=claims.sid))
        return login

    async def _revoke_reused(self, claims: Claims, now: datetime) -> NoReturn:
        await self._store().revoke(
            sessions.session_revocation(claims, now=now, policy=self._s.policy)
        )
        self._emit(RefreshReuseDetected(at=now, user_id=claims.sub, sid=claims.sid))
        raise RefreshReused()

    async def logout(
        self, refresh_token: str | None = None, *, access_token: str | None = None
    ) -> bool:
        """Revoke the session of the given token: its refresh token and its access tokens.

        An expired token has nothing left to revoke and returns ``False``, as does an
        already-revoked session; ``True`` when this call revoked it.

        Raises:
            TokenInvalid: The token is malformed or wrongly signed.
        """
        s = self._s
        now = s.clock()
        kind: TokenKind
        if refresh_token is not None:
            token, kind = refresh_token, "refresh"
        elif access_token is not None:
            token, kind = access_token, "access"
        else:
            raise TokenInvalid()
        try:
            claims = self._verify(token, kind, now)
        except OTPAuthError as exc:
            if exc.code == "token_expired":
                return False
            raise
        revoked = await self._store().revoke(
            sessions.session_revocation(claims, now=now, policy=s.policy)
        )
        if revoked:
            self._emit(LoggedOut(at=now, user_id=claims.sub, sid=claims.sid))
        return revoked

    async def logout_all(self, user_id: str) -> None:
        """Revoke every session of ``user_id`` that began up to now, on every worker."""
        s = self._s
        now = s.clock()
        cutoff, keep_until = sessions.logout_all_cutoff(now=now, policy=s.policy)
        await self._store().revoke_user(user_id, at=cutoff, expires_at=keep_until)
        self._emit(LoggedOutEverywhere(at=now, user_id=user_id))

    async def authenticate(self, access_token: str) -> Principal[U]:
        """Verify an access token and load its user: one signature check, one store round-trip.

        Raises:
            TokenInvalid, TokenExpired: The token does not verify.
            TokenRevoked: The token, its session or its user's sessions were revoked.
            UserNotFound: The token's user no longer exists.
        """
        now = self._s.clock()
        claims = self._verify(access_token, "access", now)
        account, found = await self._store().load_principal(
            claims.sub, sessions.revocation_keys(claims)
        )
        if not isinstance(sessions.revocation_verdict(claims, found), sessions.Valid):
            raise TokenRevoked()
        if account is None:
            raise UserNotFound()
        return Principal(claims=claims, account=account)

    async def authenticate_claims(self, access_token: str) -> Claims:
        """Verify an access token against the revocation mirror, with no store round-trip
        unless the mirror is older than ``mirror_interval``.

        A revocation made on any worker is honoured here within that interval.

        Raises:
            TokenInvalid, TokenExpired: The token does not verify.
            TokenRevoked: The token, its session or its user's sessions were revoked.
            StorageError: The mirror is stale and could not be refreshed (fail closed).
        """
        s = self._s
        now = s.clock()
        claims = self._verify(access_token, "access", now)
        if s.mirror.is_stale(now):
            await self.refresh_mirror()
        if not isinstance(s.mirror.verdict(claims), sessions.Valid):
            raise TokenRevoked()
        return claims

    async def refresh_mirror(self, *, force: bool = False) -> None:
        """Bring the revocation mirror up to date with one ``revocations_since`` query."""
        s = self._s
        async with s.mirror_lock:
            started = s.clock()
            if not force and not s.mirror.is_stale(started):
                return  # another task refreshed it while this one waited
            since = s.mirror.since() or datetime.fromtimestamp(0, tz=UTC)
            if self.store is not None:
                entries = await self.store.revocations_since(since, now=started)
            elif s.revocation_source is not None:
                async with s.revocation_source() as source:
                    entries = await source.revocations_since(since, now=started)
            else:
                raise ConfigurationError(
                    "claims-only authentication needs a store or a revocation_source"
                )
            s.mirror.apply(entries, started_at=started)

    async def purge_expired(self) -> int:
        """Delete expired revocations in one store operation; the number removed."""
        return await self._store().purge_expired(self._s.clock())
