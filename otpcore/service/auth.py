"""The async facade any framework calls: :class:`OTPAuth`.

Nothing here decides whether someone gets in; :mod:`otpcore.domain.challenge`,
:mod:`otpcore.tokens` and :mod:`otpcore.domain.sessions` do. The flows live by concern:
:mod:`~otpcore.service.codes` (request and verify), :mod:`~otpcore.service.sessions`
(refresh, logout, authenticate) and :mod:`~otpcore.service.mirror` (claims-only checks).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from otpcore.delivery import CallbackMailer, Mailer, Outbox, RetryPolicy
from otpcore.domain.events import EventSink
from otpcore.domain.limits import Limits
from otpcore.domain.links import check_link_base
from otpcore.domain.policy import Policy
from otpcore.domain.records import Claims
from otpcore.domain.sessions import RevocationMirror
from otpcore.ports import LimitStore, Store
from otpcore.service import codes, links, mirror, sessions
from otpcore.service.context import (
    RevocationSource,
    Settings,
    emit,
    new_token_id,
    require_store,
    utc_now,
)
from otpcore.service.results import CodeRequest, Login, Principal, SessionView
from otpcore.tokens import KeySet, TokenCodec

__all__ = ["OTPAuth", "RevocationSource"]

U = TypeVar("U")


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
        sender: Callable[[str, str], Awaitable[None]] | Mailer,
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
        limits: Limits | None = None,
        limit_store: LimitStore | None = None,
        outbox_capacity: int = 1000,
        outbox_concurrency: int = 4,
        retry: RetryPolicy | None = None,
        magic_link_url: str | None = None,
    ) -> None:
        """Configure the service.

        Args:
            policy: Code, backoff and token settings.
            store: The storage handle this instance uses; ``None`` for an instance that only
                ever gets stores through :meth:`with_store`.
            sender: Delivers codes: a :class:`~otpcore.delivery.Mailer` (e.g.
                ``TemplateMailer(SMTPSender(...), mail_from=...)``), or the reference's
                ``async (email, code)`` callable. Either runs in the outbox, off the request.
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
            limits: Send and guess limits (:class:`~otpcore.domain.limits.Limits`; on by
                default, :meth:`Limits.unlimited` turns them off).
            limit_store: Where limit counters live when not in ``store`` (e.g. Redis, for
                counters on the server's clock).
            outbox_capacity: Codes waiting for delivery at most; beyond it request_code
                raises :class:`~otpcore.domain.errors.DeliveryBusy`.
            outbox_concurrency: Deliveries running at once.
            retry: When transient delivery failures are tried again.
            magic_link_url: Send each code with a magic link, ``<magic_link_url>?t=<token>``
                (e.g. ``"https://app.example.com/auth/magic"``), that :meth:`redeem_link`
                takes; ``None`` (the default) sends codes alone.

        Raises:
            ValueError: ``max_retries`` below 1, or ``magic_link_url`` not an absolute
                http(s) URL.
        """
        if max_retries < 1:
            raise ValueError("max_retries must be at least 1")
        if magic_link_url is not None:
            check_link_base(magic_link_url)
        mailer = sender if isinstance(sender, Mailer) else CallbackMailer(sender)
        outbox = Outbox(
            mailer,
            capacity=outbox_capacity,
            concurrency=outbox_concurrency,
            retry=retry,
            clock=clock,
            emit=lambda event: emit(self._s, event),
        )
        self._s: Settings[U] = Settings(
            policy=policy,
            codec=TokenCodec(keys or KeySet.symmetric(policy.secret), policy),
            outbox=outbox,
            clock=clock,
            randbelow=randbelow,
            new_id=new_id,
            events=events,
            auto_create_user=auto_create_user,
            reveal_unknown_users=reveal_unknown_users,
            new_user_fields=new_user_fields,
            claims_for=claims_for,
            max_retries=max_retries,
            mirror=RevocationMirror(interval=mirror_interval, leeway=policy.leeway),
            mirror_lock=asyncio.Lock(),
            revocation_source=revocation_source,
            limits=limits if limits is not None else Limits(),
            limit_store=limit_store,
            magic_link_url=magic_link_url,
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
    def outbox(self) -> Outbox:
        """This process's outbox: ``await auth.outbox.drain(timeout)`` at shutdown."""
        return self._s.outbox

    @property
    def mirror(self) -> RevocationMirror:
        """This process's revocation mirror."""
        return self._s.mirror

    # -- codes ---------------------------------------------------------------------------

    async def request_code(
        self,
        email: str,
        *,
        ip: str | None = None,
        challenge_id: str | None = None,
        device: str | None = None,
        languages: Sequence[str] = (),
        accept_language: str | None = None,
    ) -> CodeRequest:
        """Issue a code for ``email`` bound to this requester, and start its delivery.

        A request without ``challenge_id`` (or with one that is unknown, expired or for
        another address) opens a new binding; a stranger's request therefore never replaces
        another requester's code nor starts its cooldown. Known and unknown addresses get
        the same answer, after the same store calls; nothing waits for the mailer.

        Args:
            email: The address to send a code to.
            ip: The client address as the server sees it (behind a proxy: the trusted
                forwarded address); keys the per-client send limit (IPv6 by /64).
                ``None`` skips that limit.
            challenge_id: The binding of an earlier request, to resend on it.
            device: The :attr:`Login.device` allowance this client holds for the address.
            languages: The client's language tags, most wanted first (``["de-ch", "en"]``),
                to choose the mail's locale; a binding reads them from ``Accept-Language``.
            accept_language: The raw ``Accept-Language`` value, only carried to a mailer's
                locale hook (:attr:`CodeMail.accept_language`); the core does not parse it.

        Returns:
            The binding (``challenge_id``), returned for unknown addresses too.

        Raises:
            InvalidEmail: ``email`` is not an acceptable address.
            RateLimited: A send limit refused (``retry_after`` and ``limit`` set).
            CodeCooldown: This binding was sent a code too recently (``retry_after`` set).
            AccountLocked: Too many failures from clients without an allowance.
            UserNotFound: Unknown e-mail, only with ``reveal_unknown_users``.
            DeliveryBusy: The outbox is full (any address); retry after ``retry_after``.
        """
        return await codes.request_code(
            self._s,
            require_store(self.store),
            email,
            ip=ip,
            challenge_id=challenge_id,
            device=device,
            languages=languages,
            accept_language=accept_language,
        )

    async def verify_code(
        self,
        email: str,
        code: str,
        *,
        challenge_id: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        device: str | None = None,
    ) -> Login[U]:
        """Redeem ``code`` for ``email``: a new session and its token pair.

        The guess is stored as counted before the outcome is revealed, so across any
        number of processes at most ``policy.max_attempts`` bound plus ``max_attempts``
        unbound guesses are evaluated per code, and exactly one of several concurrent
        correct guesses wins. The winner opens a session record that its user can list and
        end (:meth:`list_sessions`); with ``auto_create_user`` the account is created here,
        never by a request. The returned :attr:`Login.device` is this client's allowance.

        Args:
            email: The address the code was sent to.
            code: The code as typed.
            challenge_id: The binding :meth:`request_code` returned, if the client kept it:
                the guess is then evaluated against that binding's code only, under its own
                budget of ``policy.max_attempts``. Without one it is evaluated against the
                address's newest code under one shared unbound budget of ``max_attempts``
                per code, which never touches a bound budget and never counts toward the
                account-wide failure lock.
            user_agent: The client's ``User-Agent``, kept on the session (256 characters).
            ip: The client's address, kept on the session; keys the per-client guess limit.
            device: The :attr:`Login.device` allowance this client holds, if any.

        Raises:
            InvalidEmail: ``email`` is not an acceptable address.
            RateLimited: The per-client guess limit refused (``retry_after`` set).
            CodeInvalid: Wrong code, or none pending (``remaining_attempts`` when known).
            CodeExpired: The code outlived its lifetime.
            AccountLocked: No guesses left on this code, or the account is locked.
            UserNotFound: Unknown e-mail, only with ``reveal_unknown_users``.
        """
        return await codes.verify_code(
            self._s,
            require_store(self.store),
            email,
            code,
            challenge_id=challenge_id,
            ip=ip,
            user_agent=user_agent,
            device=device,
        )

    async def redeem_link(
        self,
        token: str,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
        device: str | None = None,
    ) -> Login[U]:
        """Redeem a magic link (the ``t`` of ``<magic_link_url>?t=<token>``): a new session
        and its token pair, exactly as a right code gives.

        The link spends the same challenge as its code: of any number of concurrent
        redeems and right guesses, across processes, exactly one logs in, and the other
        way in is dead after it. It works on any device (the token names its challenge)
        and expires with the code. A wrong link is not a guess: it counts no attempt.

        Args:
            token: The link's token, as it came.
            ip: The client's address, kept on the session.
            user_agent: The client's ``User-Agent``, kept on the session (256 characters).
            device: The :attr:`Login.device` allowance this client holds, if any.

        Raises:
            LinkInvalid: Malformed, unknown, used, or replaced by a newer code.
            CodeExpired: The code (and so its link) outlived its lifetime.
            AccountLocked: The binding the link belongs to is locked.
        """
        return await links.redeem_link(
            self._s,
            require_store(self.store),
            token,
            ip=ip,
            user_agent=user_agent,
            device=device,
        )

    # -- tokens and sessions ---------------------------------------------------------------

    async def refresh(self, refresh_token: str) -> Login[U]:
        """Rotate ``refresh_token`` into a new pair in the same session.

        Exactly one presentation of a token rotates the session, across processes (a
        compare-and-set on the session's refresh generation). Another presentation of the
        same token within ``policy.refresh_grace`` of that rotation (a second tab, a retry
        after a lost response) gets a pair for the same successor and writes nothing; any
        later one is reuse, which ends the session. No refresh moves the session's end past
        ``policy.session_lifetime`` after login, nor past ``policy.session_idle_timeout``
        after this refresh.

        Raises:
            TokenInvalid: Malformed, wrongly signed or not a refresh token, or its user is gone.
            TokenExpired: The refresh token, or its session, expired.
            TokenRevoked: Its session was logged out, revoked or ended.
            RefreshReused: It was rotated longer ago than the grace window; the session has
                been ended.
        """
        return await sessions.refresh(self._s, require_store(self.store), refresh_token)

    async def logout(
        self, refresh_token: str | None = None, *, access_token: str | None = None
    ) -> bool:
        """Log out: end the session of each token given, and revoke each token itself.

        Logout always succeeds: a token that is missing, malformed, wrongly signed, expired
        or of the other kind is skipped, never raised. Each token that verifies has its own
        ``jti`` revoked too (until it expires), so the reference API's
        ``is_blacklisted(jti)`` reports it.

        Args:
            refresh_token: The session's refresh token, if the caller has it.
            access_token: An access token of the session, if the caller has it.

        Returns:
            ``True`` when this call revoked a session; ``False`` when there was nothing
            left to revoke (no valid token, or the session was already revoked).

        Raises:
            StorageError: The store failed; nothing else is raised.
        """
        return await sessions.logout(
            self._s, require_store(self.store), refresh_token, access_token
        )

    async def logout_all(self, access_token: str) -> None:
        """End every session, on every worker, that the token's user began up to now.

        The token is authenticated first (one store round-trip), so a caller can only ever
        log out its own user. Sessions are ended by id and by a cutoff time, so a host
        whose clock lags still ends every session.

        Raises:
            TokenInvalid, TokenExpired: The token does not verify, or its user is gone.
            TokenRevoked: The token, its session or its user's sessions were revoked.
        """
        await sessions.logout_all(self._s, require_store(self.store), access_token)

    async def list_sessions(self, access_token: str) -> list[SessionView]:
        """The active sessions of the token's user, newest first; ``current`` marks the
        token's own.

        Raises:
            TokenInvalid, TokenExpired: The token does not verify, or its user is gone.
            TokenRevoked: The token, its session or its user's sessions were revoked.
        """
        return await sessions.list_sessions(self._s, require_store(self.store), access_token)

    async def revoke_session(self, access_token: str, sid: str) -> bool:
        """End session ``sid`` of the token's user (the token's own session included).

        Its refresh token is refused from now on; its access tokens at once by
        :meth:`authenticate` and within ``mirror_interval`` by :meth:`authenticate_claims`.

        Returns:
            True when the session ended is the token's own (its ``sid``): a binding then
            clears that session's refresh cookie.

        Raises:
            TokenInvalid, TokenExpired: The token does not verify, or its user is gone.
            TokenRevoked: The token, its session or its user's sessions were revoked.
            SessionNotFound: ``sid`` is not an active session of this user (unknown,
                ended, expired, or another user's: the answer is the same).
        """
        return await sessions.revoke_session(self._s, require_store(self.store), access_token, sid)

    async def revoke_other_sessions(self, access_token: str) -> int:
        """End every session of the token's user except the token's own; how many ended.

        Raises:
            TokenInvalid, TokenExpired: The token does not verify, or its user is gone.
            TokenRevoked: The token, its session or its user's sessions were revoked.
        """
        return await sessions.revoke_other_sessions(
            self._s, require_store(self.store), access_token
        )

    async def authenticate(
        self, access_token: str, *, require_verified: bool = False
    ) -> Principal[U]:
        """Verify an access token and load its user: one signature check, one store round-trip.

        Args:
            access_token: The bearer access token.
            require_verified: Refuse a user that never completed a code verification.

        Raises:
            TokenInvalid, TokenExpired: The token does not verify, or its user is gone.
            TokenRevoked: The token, its session or its user's sessions were revoked.
            UserNotVerified: ``require_verified`` and the user is not verified.
        """
        return await sessions.authenticate(
            self._s, require_store(self.store), access_token, require_verified=require_verified
        )

    async def authenticate_claims(self, access_token: str) -> Claims:
        """Verify an access token against the revocation mirror, with no store round-trip
        unless the mirror is older than ``mirror_interval``.

        A revocation made on any worker is honoured here within that interval.

        Raises:
            TokenInvalid, TokenExpired: The token does not verify.
            TokenRevoked: The token, its session or its user's sessions were revoked.
            StorageError: The mirror is stale and could not be refreshed (fail closed).
        """
        return await mirror.authenticate_claims(self._s, self.store, access_token)

    async def refresh_mirror(self, *, force: bool = False) -> None:
        """Bring the revocation mirror up to date with one ``revocations_since`` query."""
        await mirror.refresh_mirror(self._s, self.store, force=force)

    async def purge_expired(self) -> int:
        """Delete expired revocations, ended or expired sessions, and pending challenges and
        limit counters that no longer matter; the number of revocations removed."""
        return await require_store(self.store).purge_expired(self._s.clock())
