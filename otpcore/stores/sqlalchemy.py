"""SQLAlchemy (asyncio) storage: the reference's models and adapter, with compare-and-set writes.

Define the tables by mixing the two bases into the application's declarative ``Base``::

    class User(BaseOTPUserTable[int], Base):
        __tablename__ = "users"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)

    class Blacklist(TokenBlacklist, Base):
        pass  # table "token_blacklist" and its id column come from the mixin

    store = SQLAlchemyAdapter(session, User, Blacklist)

Session handling: the adapter works on the application's ``AsyncSession`` (one per request).
Every call is its own unit of work. It commits when it succeeds, reads included, so no
transaction (and on SQLite no lock) outlives the call; as in the reference, that commit also
commits whatever the application had pending in the same session. It rolls back when it
fails, so nothing is left half-applied and the session stays usable. The adapter's commits
never expire loaded objects, since what it returns is already current and an async session
cannot lazy-load; sessions work with either ``expire_on_commit`` setting. A rollback expires
them, as SQLAlchemy always does. On PostgreSQL, a call that is one statement (every read,
``save_challenge``, ``revoke``, ``purge_expired``) runs in autocommit when the session has no
open transaction and no pending changes: one round-trip instead of BEGIN, statement, COMMIT.
On SQLite a read already is one statement and no transaction (pysqlite begins one only
before a write), so it stays as it is: switching aiosqlite to autocommit costs more thread
hops than it saves. The hot-path reads bind their keys to a fixed number of parameters, so
their SQL is compiled once, never re-rendered per call.

SQLite engines: :func:`create_sqlite_engine` sets one up as recommended (WAL, a pool that
rolls back only connections SQLite reports in a transaction, and keeps the connections it
opens); with aiosqlite that saves a thread hop on every request, and, under load, reopening
connections (each one a thread) all the time.

Concurrency: every state change is one conditional statement (``UPDATE … WHERE id = :id AND
otp_version = :expected``, checked by ``rowcount``; an INSERT under a unique key), so any
number of processes may share the database. Driver and connection failures surface as
:class:`otpcore.domain.errors.StorageError` with the driver's exception as ``__cause__``.

Upgrading from the reference's tables: ``otp_code`` now holds a 64-character HMAC (it was
``VARCHAR(20)``), and ``otp_failures``, ``otp_last_failure_at`` and ``otp_version`` are new
(with server defaults, so ``ALTER TABLE … ADD COLUMN`` fills existing rows).
"""

from __future__ import annotations

import contextlib
import functools
import re
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Concatenate, Generic, Literal, ParamSpec, TypeVar, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    CursorResult,
    Delete,
    Insert,
    Integer,
    Select,
    SmallInteger,
    String,
    Table,
    Update,
    bindparam,
    case,
    delete,
    event,
    false,
    insert,
    inspect,
    select,
    text,
    types,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Mapped, Mapper, Session, mapped_column
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState
from sqlalchemy.sql.expression import BindParameter

from otpcore.domain.errors import ConfigurationError, ContentionError, StorageError
from otpcore.domain.records import Account, ChallengeState, Revocation, RevocationKind, user_key
from otpcore.stores._record import challenge_of

__all__ = [
    "BaseOTPUserTable",
    "SQLAlchemyAdapter",
    "TokenBlacklist",
    "UTCDateTime",
    "create_sqlite_engine",
]

IdType = TypeVar("IdType")
UserT = TypeVar("UserT", bound="BaseOTPUserTable[Any]")
_AdapterT = TypeVar("_AdapterT", bound="SQLAlchemyAdapter[Any]")
_P = ParamSpec("_P")
_R = TypeVar("_R")

#: What a broken or unreachable database raises; anything else is a programming error.
_DRIVER_ERRORS = (sa_exc.DBAPIError, sa_exc.TimeoutError, OSError, ConnectionError)
_CODE_HASH = re.compile(r"[0-9a-f]{64}")
_CUTOFF_RETRIES = 3
_CUTOFF_KIND = RevocationKind.USER.value
#: Dialects whose drivers switch to autocommit without a round-trip. There a one-statement
#: call costs one round-trip instead of three (BEGIN, statement, COMMIT). Not SQLite: pysqlite
#: never opens a transaction for a SELECT, so there is nothing to save, while aiosqlite would
#: spend five extra thread hops per call switching the isolation level and back.
_FREE_AUTOCOMMIT = frozenset({"postgresql"})
_AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}
#: Revocation keys are bound as this many fixed parameters, unused ones NULL (which matches
#: nothing), so the hot-path SQL is the same compiled text on every call: an expanding ``IN``
#: would be re-rendered per call. Longer key lists fall back to an expanding parameter.
_KEY_SLOTS = 4
_KEY_NAMES = tuple(f"p_key{index}" for index in range(_KEY_SLOTS))


class UTCDateTime(types.TypeDecorator[datetime]):
    """A ``DateTime`` stored as naive UTC and always returned timezone-aware in UTC.

    Naive values given to it are taken to be UTC already. SQLite keeps no offset, so without
    this a value would come back naive and compare unequal to the aware one stored.
    """

    impl = types.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to naive UTC for storage."""
        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class BaseOTPUserTable(Generic[IdType]):
    """Mixin for the application's user model: e-mail, verification and code state.

    The application declares the primary key (``id``, of type ``IdType``: an integer, a UUID,
    …) and any other columns. ``otp_code`` holds the HMAC of the pending code, never the code.
    """

    email: Mapped[str] = mapped_column(String(255), unique=True, index=True, nullable=False)
    is_verified: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), nullable=False
    )
    otp_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    otp_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    otp_attempts: Mapped[int] = mapped_column(
        Integer, default=0, server_default=text("0"), nullable=False
    )
    last_otp_request_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    otp_failures: Mapped[int] = mapped_column(
        Integer, default=0, server_default=text("0"), nullable=False
    )
    otp_last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    otp_version: Mapped[int] = mapped_column(
        Integer, default=0, server_default=text("0"), nullable=False
    )


class TokenBlacklist:
    """Mixin for the revocation table (``token_blacklist``).

    ``jti`` holds token ids, revoked sessions (``sid:<sid>``) and logout-all cutoffs
    (``user:<id>``); ``token_type`` their kind; ``blacklisted_at`` when they were revoked
    (for a cutoff: the cutoff itself).
    """

    __tablename__ = "token_blacklist"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    jti: Mapped[str] = mapped_column(String(255), unique=True, nullable=False, index=True)
    token_type: Mapped[str] = mapped_column(String(10), nullable=False)
    blacklisted_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _parse_int(text: str, bits: int) -> int | None:
    if not 0 < len(text) <= 20:
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    # Only the canonical spelling: "007" or " 7" must not alias user 7.
    if str(value) != text or not -(2**bits) <= value < 2**bits:
        return None
    return value


def _parse_uuid(text: str) -> uuid.UUID | None:
    try:
        value = uuid.UUID(text)
    except ValueError:
        return None
    return value if str(value) == text else None


def _int_bits(column_type: types.TypeEngine[Any], dialect: str | None) -> int:
    if isinstance(column_type, BigInteger) or dialect == "sqlite":
        return 63
    if isinstance(column_type, SmallInteger):
        return 15
    return 31


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything about one (User, Blacklist) pair that can be built once per process."""

    mapper: Mapper[Any]
    pk_key: str
    pk_python_type: type
    pk_type: types.TypeEngine[Any]
    attributes: frozenset[str]
    required: tuple[str, ...]
    null_by_default: frozenset[str]
    server_filled: frozenset[str]
    by_email: Select[Any]
    by_id: Select[Any]
    principal: Select[Any]
    principal_many: Select[Any]
    revocations: Select[Any]
    revocations_many: Select[Any]
    since: Select[Any]
    save: Update
    save_verified: Update
    insert_revocation: Insert
    raise_cutoff: Update
    purge: Delete
    set_code: Update
    add_attempt: Update
    verified: Update
    cleared: Update
    otp_columns: Select[Any]


_PLANS: dict[tuple[type, type], _Plan] = {}

# ChallengeState field -> user column, and the statement parameter that carries it.
_STATE_COLUMNS = {
    "code_hash": "otp_code",
    "issued_at": "otp_created_at",
    "attempts": "otp_attempts",
    "failures": "otp_failures",
    "last_request_at": "last_otp_request_at",
    "last_failure_at": "otp_last_failure_at",
    "version": "otp_version",
}
_OTP_COLUMNS = ("is_verified", *_STATE_COLUMNS.values())


def _table(mapper: Mapper[Any], role: str) -> Table:
    table = mapper.local_table
    if not isinstance(table, Table):
        raise ConfigurationError(f"{role} model {mapper.class_.__name__} must map one table")
    return table


def _required_attributes(mapper: Mapper[Any], table: Table) -> tuple[str, ...]:
    required = []
    for prop in mapper.column_attrs:
        for column in prop.columns:
            if not isinstance(column, Column) or column.table is not table:
                continue
            if (
                column.nullable
                or column.default is not None
                or column.server_default is not None
                or column.computed is not None
                or column.identity is not None
                or column is table.autoincrement_column
            ):
                continue
            required.append(prop.key)
    return tuple(sorted(set(required) - {"email"}))


def _insert_outcome(mapper: Mapper[Any], table: Table) -> tuple[frozenset[str], frozenset[str]]:
    """Column attributes that an INSERT leaving them out sets to NULL, and that the server
    fills (and so only a reload can tell)."""
    null, server = set(), set()
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        if not isinstance(column, Column) or column.table is not table:
            continue
        if column.server_default is not None or column.computed is not None:
            server.add(prop.key)
        elif (
            column.default is None and column.nullable and column is not table.autoincrement_column
        ):
            null.add(prop.key)
    return frozenset(null), frozenset(server)


def _build_plan(user_model: type, blacklist_model: type) -> _Plan:
    mapper: Mapper[Any] = inspect(user_model)
    users = _table(mapper, "User")
    blacklist = _table(inspect(blacklist_model), "Blacklist")
    missing = [name for name in ("email", *_OTP_COLUMNS) if name not in users.c]
    if missing:
        raise ConfigurationError(
            f"{user_model.__name__} lacks column(s) {', '.join(missing)}: "
            "inherit from BaseOTPUserTable"
        )
    if [n for n in ("jti", "token_type", "blacklisted_at", "expires_at") if n not in blacklist.c]:
        raise ConfigurationError(f"{blacklist_model.__name__} must inherit from TokenBlacklist")
    if len(mapper.primary_key) != 1:
        raise ConfigurationError(f"{user_model.__name__} must have a single-column primary key")
    pk = mapper.primary_key[0]
    try:
        pk_python_type = pk.type.python_type
    except NotImplementedError:
        pk_python_type = str
    u, b = users.c, blacklist.c
    user_pk = bindparam("p_id", type_=pk.type)
    otp = {name: getattr(u, name) for name in _OTP_COLUMNS}

    def bound(name: str) -> Any:
        return bindparam(f"p_{name}", type_=otp[name].type)

    state_values = {column: bound(column) for column in _STATE_COLUMNS.values()}
    save = (
        update(users)
        .where(pk == user_pk, u.otp_version == bindparam("p_expected", type_=Integer()))
        .values(state_values)
    )
    revocation_columns = (b.jti, b.token_type, b.blacklisted_at, b.expires_at)
    slots = b.jti.in_([bindparam(name, type_=b.jti.type) for name in _KEY_NAMES])
    many: BindParameter[Any] = bindparam("p_keys", expanding=True)
    # A one-row anchor, so that revocations come back even when the user does not exist.
    anchor = select(user_pk.label("pid")).subquery("principal_id")

    def principal(matches: Any) -> Select[Any]:
        return (
            select(user_model, *revocation_columns)
            .select_from(anchor)
            .outerjoin(user_model, pk == anchor.c.pid)
            .outerjoin(blacklist, matches)
            .execution_options(populate_existing=True)
        )

    at, until = bindparam("p_at", type_=UTCDateTime()), bindparam("p_until", type_=UTCDateTime())
    now = bindparam("p_now", type_=UTCDateTime())
    reset = {"otp_code": None, "otp_created_at": None, "otp_attempts": 0}
    bump = {"otp_version": u.otp_version + 1}
    null_by_default, server_filled = _insert_outcome(mapper, users)
    return _Plan(
        mapper=mapper,
        null_by_default=null_by_default,
        server_filled=server_filled,
        pk_key=mapper.get_property_by_column(pk).key,
        pk_python_type=pk_python_type,
        pk_type=pk.type,
        attributes=frozenset(mapper.attrs.keys()),
        required=_required_attributes(mapper, users),
        by_email=select(user_model)
        .where(u.email == bindparam("p_email", type_=u.email.type))
        .execution_options(populate_existing=True),
        by_id=select(user_model).where(pk == user_pk).execution_options(populate_existing=True),
        principal=principal(slots),
        principal_many=principal(b.jti.in_(many)),
        revocations=select(*revocation_columns).where(slots),
        revocations_many=select(*revocation_columns).where(b.jti.in_(many)),
        since=select(*revocation_columns)
        .where(b.blacklisted_at >= at, b.expires_at > now)
        .order_by(*blacklist.primary_key.columns),
        save=save,
        save_verified=save.values(is_verified=True),
        insert_revocation=insert(blacklist),
        raise_cutoff=update(blacklist)
        .where(b.jti == bindparam("p_key", type_=b.jti.type))
        .values(
            token_type=_CUTOFF_KIND,
            blacklisted_at=case((b.blacklisted_at < at, at), else_=b.blacklisted_at),
            expires_at=case((b.expires_at < until, until), else_=b.expires_at),
        ),
        purge=delete(blacklist).where(b.expires_at <= now),
        set_code=update(users)
        .where(pk == user_pk)
        .values(
            otp_code=bound("otp_code"),
            otp_created_at=now,
            otp_attempts=0,
            last_otp_request_at=now,
            **bump,
        ),
        add_attempt=update(users)
        .where(pk == user_pk)
        .values(otp_attempts=u.otp_attempts + 1, **bump),
        verified=update(users)
        .where(pk == user_pk)
        .values(is_verified=True, otp_failures=0, otp_last_failure_at=None, **reset, **bump),
        cleared=update(users).where(pk == user_pk).values(**reset, **bump),
        otp_columns=select(*otp.values()).where(pk == user_pk),
    )


def _plan(user_model: type, blacklist_model: type) -> _Plan:
    key = (user_model, blacklist_model)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = _build_plan(user_model, blacklist_model)
    return plan


def _unit_of_work(
    method: Callable[Concatenate[_AdapterT, _P], Coroutine[Any, Any, _R]],
) -> Callable[Concatenate[_AdapterT, _P], Coroutine[Any, Any, _R]]:
    """Roll back on any failure, and turn database failures into :class:`StorageError`.

    Arguments refused before any statement runs (:class:`ConfigurationError`, ``ValueError``)
    leave the session, and the application's pending changes in it, untouched.
    """

    @functools.wraps(method)
    async def guarded(self: _AdapterT, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return await method(self, *args, **kwargs)
        except (ConfigurationError, ValueError):
            raise
        except _DRIVER_ERRORS as error:
            await self._rollback()
            raise StorageError() from error
        except Exception:
            await self._rollback()
            raise

    return guarded


def _revocation(row: Any) -> Revocation:
    return Revocation(
        key=row[0], kind=RevocationKind.parse(row[1]), revoked_at=row[2], expires_at=row[3]
    )


def _key_params(keys: Sequence[str]) -> tuple[bool, dict[str, object]]:
    """Whether ``keys`` fit the fixed slots, and the parameters binding them."""
    unique = tuple(dict.fromkeys(keys))
    if len(unique) > _KEY_SLOTS:
        return False, {"p_keys": unique}
    return True, dict(zip(_KEY_NAMES, unique + (None,) * (_KEY_SLOTS - len(unique)), strict=True))


def _commit_keeping_loaded(session: Session) -> None:
    """Commit without expiring loaded objects.

    What the adapter loaded or wrote is current, and an async session cannot reload expired
    attributes lazily, so its commits keep objects loaded whatever ``expire_on_commit`` says.
    """
    expire = session.expire_on_commit
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = expire


class SQLAlchemyAdapter(Generic[UserT]):
    """The storage ports, and the reference's adapter methods, over one ``AsyncSession``.

    Args:
        session: The application's session (one per request).
        user_model: The user model, inheriting :class:`BaseOTPUserTable`.
        blacklist_model: The revocation model, inheriting :class:`TokenBlacklist`.
        clock: Current time for the reference methods that stamp rows (``update_otp``,
            ``add_to_blacklist``, ``cleanup_blacklist``).

    Raises:
        ConfigurationError: The models lack the mixins' columns or a single primary key.
    """

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
        self._plan = _plan(user_model, blacklist_model)
        bind = session.bind
        self._dialect = None if bind is None else bind.dialect.name
        self._autocommit = self._dialect in _FREE_AUTOCOMMIT

    # -- plumbing -------------------------------------------------------------------------

    async def _rollback(self) -> None:
        # The original error is what the caller needs; if the rollback fails too, the pool
        # invalidates the connection.
        with contextlib.suppress(Exception):
            await self.session.rollback()

    async def _commit(self) -> None:
        await self.session.run_sync(_commit_keeping_loaded)

    async def _one_statement(self) -> None:
        """Call before a call's only statement: on a clean session, run it in autocommit.

        One statement is atomic on its own, so this changes no outcome. Sessions with pending
        changes or an open transaction keep their transaction, which the call then commits.
        """
        session = self.session
        if (
            self._autocommit
            and not session.in_transaction()
            and not (session.new or session.dirty or session.deleted)
        ):
            await session.connection(execution_options=_AUTOCOMMIT)

    def _parse_id(self, user_id: str) -> object | None:
        python_type = self._plan.pk_python_type
        if python_type is str:
            return user_id
        if issubclass(python_type, int) and python_type is not bool:
            return _parse_int(user_id, _int_bits(self._plan.pk_type, self._dialect))
        if issubclass(python_type, uuid.UUID):
            return _parse_uuid(user_id)
        construct: Callable[[str], object] = python_type
        try:
            value = construct(user_id)
        except (TypeError, ValueError):
            return None
        return value if str(value) == user_id else None

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
        result = await self.session.execute(statement, {f"p_{column}": value})
        user: UserT | None = result.scalars().first()
        return user

    async def _refresh_otp(self, user: UserT, pk: object) -> None:
        row = (await self.session.execute(self._plan.otp_columns, {"p_id": pk})).first()
        if row is not None:
            self._sync(user, dict(zip(_OTP_COLUMNS, row, strict=True)))

    # -- AccountStore ---------------------------------------------------------------------

    @_unit_of_work
    async def find_by_email(self, email: str) -> Account[UserT] | None:
        """See :meth:`otpcore.ports.AccountStore.find_by_email`."""
        user = await self._user_where("email", email)
        account = None if user is None else self._account(user)
        await self._commit()
        return account

    @_unit_of_work
    async def find_by_id(self, user_id: str) -> Account[UserT] | None:
        """See :meth:`otpcore.ports.AccountStore.find_by_id`."""
        pk = self._parse_id(user_id)
        if pk is None:
            return None
        user = await self._user_where("id", pk)
        account = None if user is None else self._account(user)
        await self._commit()
        return account

    @_unit_of_work
    async def create(self, email: str, fields: Mapping[str, object]) -> Account[UserT]:
        """See :meth:`otpcore.ports.AccountStore.create`.

        Raises:
            ConfigurationError: The model has NOT NULL columns without a default that
                ``fields`` does not fill, or ``fields`` names attributes it does not have.
        """
        return self._account(await self._insert_user(email, fields))

    async def _insert_user(self, email: str, fields: Mapping[str, object]) -> UserT:
        plan = self._plan
        name = self.user_model.__name__
        unknown = sorted(set(fields) - plan.attributes)
        if unknown:
            raise ConfigurationError(
                f"new user fields name no attribute of {name}: {', '.join(unknown)}"
            )
        missing = [column for column in plan.required if column not in fields]
        if missing:
            raise ConfigurationError(
                f"{name} has NOT NULL column(s) without a default that otpcore cannot fill: "
                f"{', '.join(missing)}. Return values for them from the `new_user_fields` "
                "hook (called with the e-mail of each new user), or give the column(s) a "
                "default or server_default."
            )
        user = cast(Callable[..., UserT], self.user_model)(email=email, **fields)
        self.session.add(user)
        try:
            await self.session.flush()
        except sa_exc.IntegrityError as error:
            await self.session.rollback()
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

    @_unit_of_work
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
            for field, column in _STATE_COLUMNS.items()
        }
        params: dict[str, object] = {f"p_{column}": value for column, value in values.items()}
        params["p_id"] = pk
        params["p_expected"] = expected_version
        statement = self._plan.save_verified if mark_verified else self._plan.save
        await self._one_statement()
        result = cast(CursorResult[Any], await self.session.execute(statement, params))
        saved = result.rowcount == 1
        if saved:
            if mark_verified:
                values["is_verified"] = True
            self._sync(self._loaded(pk), values)
        await self._commit()
        return saved

    @_unit_of_work
    async def load_principal(
        self, user_id: str, keys: Sequence[str]
    ) -> tuple[Account[UserT] | None, list[Revocation]]:
        """See :meth:`otpcore.ports.AccountStore.load_principal`.

        One ``SELECT``: the user, left-joined to the revocations among ``keys``.
        """
        pk = self._parse_id(user_id)
        if pk is None:
            return None, await self._find_revocations(keys)
        fixed, params = _key_params(keys)
        params["p_id"] = pk
        statement = self._plan.principal if fixed else self._plan.principal_many
        await self._one_statement()
        # The statement, the rows and the commit in one pass through SQLAlchemy's sync core.
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
        for row in session.execute(statement, params):
            user = row[0]
            if row[1] is not None:
                found[row[1]] = _revocation(row[1:])
        account = None if user is None else self._account(user)
        _commit_keeping_loaded(session)
        return account, [found[key] for key in dict.fromkeys(keys) if key in found]

    # -- RevocationStore ------------------------------------------------------------------

    @_unit_of_work
    async def revoke(self, revocation: Revocation) -> bool:
        """See :meth:`otpcore.ports.RevocationStore.revoke`."""
        await self._one_statement()
        try:
            await self.session.execute(
                self._plan.insert_revocation,
                {
                    "jti": revocation.key,
                    "token_type": revocation.kind,
                    "blacklisted_at": revocation.revoked_at,
                    "expires_at": revocation.expires_at,
                },
            )
            await self._commit()
        except sa_exc.IntegrityError:
            await self.session.rollback()
            return False
        return True

    @_unit_of_work
    async def revoke_user(self, user_id: str, *, at: datetime, expires_at: datetime) -> None:
        """See :meth:`otpcore.ports.RevocationStore.revoke_user`.

        Raises:
            ContentionError: The cutoff row kept vanishing between attempts (a purge racing).
        """
        key = user_key(user_id)
        params = {"p_key": key, "p_at": at, "p_until": expires_at}
        for _ in range(_CUTOFF_RETRIES):
            # Raising in place is one atomic statement (CASE keeps the later value); only a
            # user's first cutoff needs the INSERT, and losing that race means updating.
            result = cast(
                CursorResult[Any], await self.session.execute(self._plan.raise_cutoff, params)
            )
            if result.rowcount == 1:
                await self._commit()
                return
            try:
                await self.session.execute(
                    self._plan.insert_revocation,
                    {
                        "jti": key,
                        "token_type": _CUTOFF_KIND,
                        "blacklisted_at": at,
                        "expires_at": expires_at,
                    },
                )
                await self._commit()
            except sa_exc.IntegrityError:
                await self.session.rollback()
                continue
            return
        raise ContentionError()

    async def _find_revocations(self, keys: Sequence[str]) -> list[Revocation]:
        if not keys:
            return []
        fixed, params = _key_params(keys)
        statement = self._plan.revocations if fixed else self._plan.revocations_many
        await self._one_statement()
        return await self.session.run_sync(self._revocations, statement, params, keys)

    @staticmethod
    def _revocations(
        session: Session, statement: Select[Any], params: Mapping[str, object], keys: Sequence[str]
    ) -> list[Revocation]:
        found = {row[0]: _revocation(row) for row in session.execute(statement, params)}
        _commit_keeping_loaded(session)
        return [found[key] for key in dict.fromkeys(keys) if key in found]

    @_unit_of_work
    async def find_revocations(self, keys: Sequence[str]) -> list[Revocation]:
        """See :meth:`otpcore.ports.RevocationStore.find_revocations`."""
        return await self._find_revocations(keys)

    @_unit_of_work
    async def revocations_since(self, cursor: datetime, *, now: datetime) -> list[Revocation]:
        """See :meth:`otpcore.ports.RevocationStore.revocations_since`."""
        await self._one_statement()
        result = await self.session.execute(self._plan.since, {"p_at": cursor, "p_now": now})
        found = [_revocation(row) for row in result]
        await self._commit()
        return found

    @_unit_of_work
    async def purge_expired(self, now: datetime) -> int:
        """See :meth:`otpcore.ports.RevocationStore.purge_expired`. One ``DELETE``."""
        await self._one_statement()
        result = cast(
            CursorResult[Any], await self.session.execute(self._plan.purge, {"p_now": now})
        )
        await self._commit()
        return result.rowcount

    # -- the reference's adapter methods ---------------------------------------------------

    @_unit_of_work
    async def get_by_email(self, email: str) -> UserT | None:
        """The user with exactly this e-mail, or ``None``."""
        user = await self._user_where("email", email)
        await self._commit()
        return user

    @_unit_of_work
    async def get_by_id(self, user_id: object) -> UserT | None:
        """The user with this primary key (text is parsed like token subjects), or ``None``."""
        pk = self._parse_id(user_id) if isinstance(user_id, str) else user_id
        if pk is None:
            return None
        user = await self._user_where("id", pk)
        await self._commit()
        return user

    @_unit_of_work
    async def create_user(self, /, email: str, **kwargs: object) -> UserT:
        """Insert a user (or return the one a concurrent call inserted); see :meth:`create`."""
        return await self._insert_user(email, kwargs)

    async def _write_user(self, user: UserT, statement: Update, **params: object) -> None:
        pk = getattr(user, self._plan.pk_key)
        await self.session.execute(statement, {"p_id": pk, **params})
        await self._refresh_otp(user, pk)
        await self._commit()

    @_unit_of_work
    async def update_otp(self, user: UserT, code_hash: str) -> None:
        """Store a new code's hash, stamped now, with a fresh attempt budget.

        Raises:
            ValueError: ``code_hash`` is not 64 lowercase hex characters, e.g. a plaintext
                code; codes are stored only as ``otpcore.domain.codes.hash_code(...)``.
        """
        if not isinstance(code_hash, str) or _CODE_HASH.fullmatch(code_hash) is None:
            raise ValueError(
                "update_otp stores a code hash (64 lowercase hex characters from "
                "otpcore.domain.codes.hash_code), never the code itself"
            )
        await self._write_user(user, self._plan.set_code, p_otp_code=code_hash, p_now=self._clock())

    @_unit_of_work
    async def increment_otp_attempts(self, user: UserT) -> None:
        """Count one attempt against the pending code, atomically."""
        await self._write_user(user, self._plan.add_attempt)

    @_unit_of_work
    async def verify_user(self, user: UserT) -> None:
        """Mark the user verified, clear the pending code and reset consecutive failures."""
        await self._write_user(user, self._plan.verified)

    @_unit_of_work
    async def clear_otp(self, user: UserT) -> None:
        """Clear the pending code without marking the user verified."""
        await self._write_user(user, self._plan.cleared)

    async def add_to_blacklist(self, jti: str, token_type: str, expires_at: datetime) -> None:
        """Revoke ``jti`` now until ``expires_at``; revoking it again changes nothing."""
        await self.revoke(
            Revocation(
                key=jti,
                kind=RevocationKind.parse(token_type),
                revoked_at=self._clock(),
                expires_at=expires_at,
            )
        )

    async def is_blacklisted(self, jti: str) -> bool:
        """Whether ``jti`` is revoked."""
        return bool(await self.find_revocations([jti]))

    async def cleanup_blacklist(self) -> int:
        """Delete every expired entry in one statement; the number removed."""
        return await self.purge_expired(self._clock())


# -- SQLite engines ---------------------------------------------------------------------------


def create_sqlite_engine(
    url: str | URL,
    *,
    synchronous: Literal["NORMAL", "FULL", "EXTRA"] = "NORMAL",
    **options: Any,
) -> AsyncEngine:
    """An async engine on a SQLite file, set up as this adapter recommends.

    - ``PRAGMA journal_mode=WAL``: readers and the writer do not block each other, so several
      workers can share the file.
    - ``PRAGMA synchronous=NORMAL`` (in WAL mode): a commit does not wait for an fsync. The
      database stays consistent; a power loss or OS crash (not an application crash) can
      lose the last commits before it. Pass ``synchronous="FULL"`` to keep every commit.
    - Reset on return only when there is something to reset. SQLAlchemy rolls back every
      connection returned to its pool; with aiosqlite each rollback is a thread hop, on every
      request, though after a read SQLite has no transaction open (pysqlite begins one only
      before a write). This engine rolls back a returned connection when SQLite reports a
      transaction open, which is all a rollback could undo: SQLAlchemy's "custom reset
      scheme" (``pool_reset_on_return=None`` and a ``reset`` event listener).
    - Keep the connections it opens: ``pool_size=15, max_overflow=0``, the same 15 at most
      as SQLAlchemy's default (5 kept, 10 more on demand), opened as needed. With the default,
      beyond 5 concurrent requests every returned connection is closed and the next one
      opened again, and each aiosqlite connection is a thread.

    Args:
        url: A ``sqlite+aiosqlite://`` URL.
        synchronous: The ``PRAGMA synchronous`` level.
        **options: More :func:`~sqlalchemy.ext.asyncio.create_async_engine` arguments; they
            override these defaults.

    Raises:
        ConfigurationError: ``url`` is not a SQLite URL, or ``synchronous`` is not a level.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # Only the backend's name: the URL may hold a password.
        raise ConfigurationError(
            f"create_sqlite_engine needs a SQLite URL, not a {parsed.get_backend_name()} one"
        )
    if synchronous not in ("NORMAL", "FULL", "EXTRA"):
        raise ConfigurationError(f"synchronous must be NORMAL, FULL or EXTRA, not {synchronous!r}")
    defaults: dict[str, Any] = {"pool_reset_on_return": None}
    if _is_file_db(parsed) and not {"poolclass", "pool"} & options.keys():
        defaults |= {"pool_size": 15, "max_overflow": 0}
    engine = create_async_engine(url, **(defaults | options))

    def tune(dbapi_connection: Any, _: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
        finally:
            cursor.close()

    event.listen(engine.sync_engine, "connect", tune)
    event.listen(engine.sync_engine, "reset", _reset_sqlite)
    return engine


def _is_file_db(url: URL) -> bool:
    # As SQLAlchemy decides between a queue pool (files) and a static pool (memory).
    return url.database not in (None, "", ":memory:") and url.query.get("mode") != "memory"


def _reset_sqlite(
    dbapi_connection: Any, record: ConnectionPoolEntry, state: PoolResetState
) -> None:
    """Roll back a connection returned to the pool, unless SQLite has no transaction open.

    Otherwise what SQLAlchemy's default reset does: nothing where it may not touch the
    connection (``asyncio_safe`` false).
    """
    if not state.asyncio_safe:
        return
    try:
        open_transaction = bool(record.driver_connection.in_transaction)  # type: ignore[union-attr]
    except Exception:
        open_transaction = True  # cannot tell: roll back, and let a failure invalidate it
    if open_transaction:
        dbapi_connection.rollback()
