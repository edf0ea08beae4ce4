"""``SQLAlchemyAdapter``: the storage ports over the application's ``AsyncSession``.

Session handling: every call is its own unit of work, unless the service groups calls with
:meth:`~otpcore.stores.sqlalchemy.units.SQLUnits.transaction` (one transaction for a
step; on SQLite every write also queues on a per-engine lock first: see
:mod:`otpcore.stores.sqlalchemy.units`). A call commits when it succeeds, reads
included, so no transaction (and on SQLite no lock) outlives the call; as in the reference,
that commit also commits whatever the application had pending in the same session. When it
fails, :class:`~otpcore.stores._base.StoreBase` rolls it back, so nothing is left half-applied
and the session stays usable. The adapter's commits never expire loaded objects, since what
it returns is already current and an async session cannot lazy-load; sessions work with
either ``expire_on_commit`` setting. A rollback expires them, as SQLAlchemy always does. On
PostgreSQL, a call that is one statement (every read, ``save_challenge``, ``revoke``,
``purge_expired``) runs in autocommit when the session has no open transaction and no
pending changes: one round-trip instead of BEGIN, statement, COMMIT. On SQLite a read
already is one statement and no transaction (pysqlite begins one only before a write), so
it stays as it is: switching aiosqlite to autocommit costs more thread hops than it saves.

Concurrency: every state change is one conditional statement (``UPDATE … WHERE id = :id AND
otp_version = :expected``, checked by ``rowcount``; an INSERT under a unique key), so any
number of processes may share the database.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar, cast

from sqlalchemy import CursorResult, Select, inspect
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from otpcore.domain.errors import ConfigurationError, ContentionError, StorageError
from otpcore.domain.records import Account, ChallengeState, Revocation
from otpcore.stores._base import StoreBase
from otpcore.stores._record import challenge_of
from otpcore.stores._reference import ReferenceAPI
from otpcore.stores.sqlalchemy.challenges import SQLChallenges
from otpcore.stores.sqlalchemy.ids import parse_id
from otpcore.stores.sqlalchemy.limits import SQLLimits
from otpcore.stores.sqlalchemy.models import BaseOTPUserTable, TokenBlacklist
from otpcore.stores.sqlalchemy.principal import persistent, principal_row, row_is_enough
from otpcore.stores.sqlalchemy.revocations import SQLRevocations
from otpcore.stores.sqlalchemy.sessions import SQLSessions, session_plan
from otpcore.stores.sqlalchemy.statements import (
    STATE_COLUMNS,
    key_params,
    plan_for,
    revocation_of,
)
from otpcore.stores.sqlalchemy.units import SQLUnits, commit_keeping_loaded

__all__ = ["SQLAlchemyAdapter"]

UserT = TypeVar("UserT", bound=BaseOTPUserTable[Any])


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _refuse_missing(model: str, missing: list[str]) -> None:
    if missing:
        raise ConfigurationError(
            f"{model} has NOT NULL column(s) without a default that otpcore cannot fill: "
            f"{', '.join(missing)}. Return values for them from the `new_user_fields` "
            "hook (called with the e-mail of each new user), or give the column(s) a "
            "default or server_default."
        )


class SQLAlchemyAdapter(
    SQLUnits,
    StoreBase,
    ReferenceAPI,
    SQLSessions,
    SQLChallenges,
    SQLLimits,
    SQLRevocations,
    Generic[UserT],
):
    """The storage ports, and the reference's adapter methods, over one ``AsyncSession``.

    Sessions live in ``<revocation table>_sessions``, declared on the revocation model's
    ``MetaData`` (see :mod:`otpcore.stores.sqlalchemy.sessions`); pending challenges and
    limit counters in ``<revocation table>_challenges`` and ``_limits`` beside it
    (:mod:`~otpcore.stores.sqlalchemy.challenges`, :mod:`~otpcore.stores.sqlalchemy.limits`).

    Args:
        session: The application's session (one per request).
        user_model: The user model, inheriting :class:`BaseOTPUserTable`.
        blacklist_model: The revocation model, inheriting :class:`TokenBlacklist`.
        clock: Current time for the reference methods that stamp rows (``update_otp``,
            ``add_to_blacklist``, ``cleanup_blacklist``, …).

    Raises:
        ConfigurationError: The models lack the mixins' columns or a single primary key.
    """

    #: What a broken or unreachable database raises; anything else is a programming error.
    driver_errors: ClassVar[tuple[type[BaseException], ...]] = (
        sa_exc.DBAPIError,
        sa_exc.TimeoutError,
        OSError,
        ConnectionError,
    )

    def __init__(
        self,
        session: AsyncSession,
        user_model: type[UserT],
        blacklist_model: type[TokenBlacklist],
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.session = session
        self.user_model = user_model
        self.blacklist_model = blacklist_model
        self._clock = clock
        self._plan = plan_for(user_model, blacklist_model)
        self._session_plan = session_plan(blacklist_model)
        # A session made with binds= has no bind of its own: ask it which engine it uses for
        # the user model (the adapter's tables share one database).
        self._bind_arguments = {"mapper": self._plan.mapper}
        try:
            bind = session.sync_session.get_bind(mapper=self._plan.mapper)
        except sa_exc.UnboundExecutionError:
            bind = None
        self._dialect = None if bind is None else bind.dialect.name
        # SQLite before 3.35 has no UPDATE … RETURNING; end_sessions then reads first.
        self._returning = bind is None or bind.dialect.update_returning
        self._insert_returning = bind is None or bind.dialect.insert_returning
        self._init_units(None if bind is None else bind.engine)

    # -- plumbing -------------------------------------------------------------------------

    def _parse_id(self, user_id: str) -> object | None:
        plan = self._plan
        return parse_id(user_id, plan.pk_python_type, plan.pk_type, self._dialect)

    def _account(self, user: UserT) -> Account[UserT]:
        return Account(
            user_id=str(getattr(user, self._plan.pk_key)),
            email=user.email,
            is_verified=user.is_verified,
            challenge=challenge_of(user),
            user=user,
        )

    def _sync(self, user: object | None, values: Mapping[str, object]) -> None:
        """Show a conditional write on the in-session object without marking it dirty."""
        if user is None:
            return
        for key, value in values.items():
            set_committed_value(user, key, value)

    def _loaded(self, pk: object) -> object | None:
        identity = self._plan.mapper.identity_key_from_primary_key((pk,))
        return self.session.identity_map.get(identity)

    async def _user_where(self, column: str, value: object) -> UserT | None:
        statement = self._plan.by_email if column == "email" else self._plan.by_id
        await self._one_statement()
        result = await self._execute(statement, {f"p_{column}": value})
        user: UserT | None = result.scalars().first()
        return user

    def _reference_id(self, user: UserT) -> str:
        pk = getattr(user, self._plan.pk_key)
        if pk is None:
            raise ValueError("the user has no id; load or create it through the adapter first")
        return str(pk)

    def _show(self, user: UserT, state: ChallengeState, verified: bool) -> None:
        values: dict[str, object] = {
            column: getattr(state, field) for field, column in STATE_COLUMNS.items()
        }
        values["is_verified"] = verified
        self._sync(user, values)

    # -- AccountStore ---------------------------------------------------------------------

    async def find_by_email(self, email: str) -> Account[UserT] | None:
        """See :meth:`otpcore.ports.AccountStore.find_by_email`."""
        user = await self._user_where("email", email)
        account = None if user is None else self._account(user)
        await self._commit()
        return account

    async def find_by_id(self, user_id: str) -> Account[UserT] | None:
        """See :meth:`otpcore.ports.AccountStore.find_by_id`."""
        pk = self._parse_id(user_id)
        if pk is None:
            return None
        user = await self._user_where("id", pk)
        account = None if user is None else self._account(user)
        await self._commit()
        return account

    async def create(
        self, email: str, fields: Mapping[str, object], *, verified: bool = False
    ) -> Account[UserT]:
        """See :meth:`otpcore.ports.AccountStore.create`.

        Raises:
            ConfigurationError: The model has NOT NULL columns without a default that
                ``fields`` does not fill, or ``fields`` names attributes it does not have.
        """
        return self._account(await self._insert_user(email, fields, verified=verified))

    def check_auto_create(self) -> None:
        """Refuse a user model that a new user cannot be made of from its e-mail alone (what
        auto-creation without a ``new_user_fields`` hook does); no I/O. The FastAPI binding
        calls it at startup.

        Raises:
            ConfigurationError: The model has NOT NULL columns without a default besides
                the mixin's; the message names them and the ``new_user_fields`` hook.
        """
        _refuse_missing(self.user_model.__name__, list(self._plan.required))

    async def _insert_user(
        self, email: str, fields: Mapping[str, object], *, verified: bool = False
    ) -> UserT:
        plan = self._plan
        name = self.user_model.__name__
        unknown = sorted(set(fields) - plan.attributes)
        if unknown:
            raise ConfigurationError(
                f"new user fields name no attribute of {name}: {', '.join(unknown)}"
            )
        _refuse_missing(name, [column for column in plan.required if column not in fields])
        user = cast(Callable[..., UserT], self.user_model)(email=email, **fields)
        if verified:
            user.is_verified = True
        await self._writing()
        self.session.add(user)
        try:
            await self.session.flush()
        except sa_exc.IntegrityError as error:
            if self._in_unit:
                # The unit's transaction is lost (PostgreSQL aborts it): the caller undoes
                # the unit and tries again, and then finds the account the race created.
                raise ContentionError() from error
            await self._rollback()
            existing = await self._user_where("email", email)
            if existing is None:
                # Another unique or NOT NULL constraint failed, not the e-mail race.
                raise StorageError("The new user violates a database constraint.") from error
            await self._commit()
            return existing
        # Columns left out of the INSERT are not loaded after a flush, and an async session
        # cannot load them on access: NULL ones are known, server-filled ones need a reload.
        unloaded = inspect(user).unloaded
        self._sync(user, dict.fromkeys(unloaded & plan.null_by_default))
        if unloaded & plan.server_filled:
            await self.session.refresh(user)
        await self._commit()
        return user

    async def save_challenge(
        self,
        user_id: str,
        *,
        expected_version: int,
        state: ChallengeState,
        mark_verified: bool = False,
    ) -> bool:
        """See :meth:`otpcore.ports.AccountStore.save_challenge`."""
        pk = self._parse_id(user_id)
        if pk is None:
            return False
        values = {
            column: _utc(getattr(state, field)) if column.endswith("_at") else getattr(state, field)
            for field, column in STATE_COLUMNS.items()
        }
        params: dict[str, object] = {f"p_{column}": value for column, value in values.items()}
        params["p_id"] = pk
        params["p_expected"] = expected_version
        statement = self._plan.save_verified if mark_verified else self._plan.save
        await self._writing()
        await self._one_statement()
        result = cast(CursorResult[Any], await self._execute(statement, params))
        saved = result.rowcount == 1
        if saved:
            if mark_verified:
                values["is_verified"] = True
            self._sync(self._loaded(pk), values)
        await self._commit()
        return saved

    async def load_principal(
        self, user_id: str, keys: Sequence[str]
    ) -> tuple[Account[UserT] | None, list[Revocation]]:
        """See :meth:`otpcore.ports.AccountStore.load_principal`.

        One ``SELECT``: the user, left-joined to the revocations among ``keys``. For a user
        model whose instances are their table's row and nothing more (no relationships,
        inheritance, deferred columns or load listeners), in a session with nothing pending
        and no hooks on ORM queries or loaded instances, the row is read through Core and
        the instance filled from it: the same persistent, loaded object the ORM would give,
        without the ORM's per-query work on the protected-request path.
        """
        pk = self._parse_id(user_id)
        if pk is None:
            return None, await self._find_revocations(keys)
        fixed, params = key_params(keys)
        params["p_id"] = pk
        plan = self._plan
        rows = plan.principal_rows if fixed else plan.principal_rows_many
        if rows is not None and not row_is_enough(plan, self.session.sync_session):
            rows = None
        await self._one_statement()
        # The statement, the rows and the commit in one pass through SQLAlchemy's sync core.
        if rows is not None:
            return await self.session.run_sync(self._principal_from_row, rows, params, keys)
        statement = plan.principal if fixed else plan.principal_many
        return await self.session.run_sync(self._load_principal, statement, params, keys)

    def _load_principal(
        self,
        session: Session,
        statement: Select[Any],
        params: Mapping[str, object],
        keys: Sequence[str],
    ) -> tuple[Account[UserT] | None, list[Revocation]]:
        user: UserT | None = None
        found = {}
        for row in session.execute(statement, params, bind_arguments=self._bind_arguments):
            user = row[0]
            if row[1] is not None:
                found[row[1]] = revocation_of(row[1:])
        return self._principal_found(session, user, found, keys)

    def _principal_from_row(
        self,
        session: Session,
        statement: Select[Any],
        params: Mapping[str, object],
        keys: Sequence[str],
    ) -> tuple[Account[UserT] | None, list[Revocation]]:
        values, found = principal_row(session, self._plan, statement, params)
        user = None if values is None else cast(UserT, persistent(session, self._plan, values))
        return self._principal_found(session, user, found, keys)

    def _principal_found(
        self,
        session: Session,
        user: UserT | None,
        found: Mapping[str, Revocation],
        keys: Sequence[str],
    ) -> tuple[Account[UserT] | None, list[Revocation]]:
        account = None if user is None else self._account(user)
        if not self._in_unit:
            commit_keeping_loaded(session)
        return account, [found[key] for key in dict.fromkeys(keys) if key in found]

    async def purge_expired(self, now: datetime) -> int:
        """See :meth:`otpcore.ports.RevocationStore.purge_expired`. One ``DELETE`` for the
        revocations, one each for the sessions, pending challenges and limit counters."""
        await self._writing()
        await self._one_statement()
        result = cast(CursorResult[Any], await self._execute(self._plan.purge, {"p_now": now}))
        await self._purge_sessions(now)
        await self._purge_challenges(now)
        await self._purge_limits(now)
        await self._commit()
        return result.rowcount
