"""The statement plan: every statement the adapter runs for one (User, Blacklist) pair.

Built once per pair and process from the mapped tables, so no statement is assembled per
call. The hot-path reads bind their revocation keys to :data:`KEY_SLOTS` fixed parameters
(unused ones NULL, which matches nothing), so their SQL is compiled once: an expanding
``IN`` would be re-rendered on every call. Longer key lists fall back to an expanding one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import (
    Column,
    Delete,
    Insert,
    Integer,
    Select,
    Table,
    Update,
    bindparam,
    case,
    delete,
    insert,
    inspect,
    select,
    types,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapper
from sqlalchemy.sql.expression import BindParameter

from otpcore.domain.errors import ConfigurationError
from otpcore.domain.records import Revocation, RevocationKind
from otpcore.stores.sqlalchemy.models import UTCDateTime

__all__ = [
    "CUTOFF_KIND",
    "OTP_COLUMNS",
    "STATE_COLUMNS",
    "UPSERTS",
    "Plan",
    "key_params",
    "plan_for",
    "revocation_of",
]

CUTOFF_KIND: Final = RevocationKind.USER.value
#: The dialects with ``INSERT … ON CONFLICT`` (``DO NOTHING``, ``DO UPDATE … WHERE``), and
#: their insert.
UPSERTS: Final[Mapping[str, Callable[[Table], Any]]] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
}
KEY_SLOTS: Final = 4
_KEY_NAMES = tuple(f"p_key{index}" for index in range(KEY_SLOTS))

#: ChallengeState field -> user column; the statements bind each as ``p_<column>``.
STATE_COLUMNS: Final = {
    "code_hash": "otp_code",
    "issued_at": "otp_created_at",
    "attempts": "otp_attempts",
    "failures": "otp_failures",
    "last_request_at": "last_otp_request_at",
    "last_failure_at": "otp_last_failure_at",
    "version": "otp_version",
}
OTP_COLUMNS: Final = ("is_verified", *STATE_COLUMNS.values())


@dataclass(frozen=True, slots=True)
class Plan:
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
    #: The principal reads as rows of the user's columns (in :attr:`row_attributes` order)
    #: and the revocation's, for models whose loading the ORM adds nothing to; else None.
    principal_rows: Select[Any] | None
    principal_rows_many: Select[Any] | None
    row_attributes: tuple[str, ...]
    #: Where the primary key is among :attr:`row_attributes`.
    pk_index: int
    revocations: Select[Any]
    revocations_many: Select[Any]
    since: Select[Any]
    save: Update
    save_verified: Update
    insert_revocation: Insert
    raise_cutoff: Update
    purge: Delete


_PLANS: dict[tuple[type, type], Plan] = {}


def plan_for(user_model: type, blacklist_model: type) -> Plan:
    """The plan for this pair of models, built on first use.

    Raises:
        ConfigurationError: The models lack the mixins' columns or a single primary key.
    """
    key = (user_model, blacklist_model)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = _build_plan(user_model, blacklist_model)
    return plan


def revocation_of(row: Any) -> Revocation:
    """A revocation from a ``(jti, token_type, blacklisted_at, expires_at)`` row."""
    return Revocation(
        key=row[0], kind=RevocationKind.parse(row[1]), revoked_at=row[2], expires_at=row[3]
    )


def key_params(keys: Sequence[str]) -> tuple[bool, dict[str, object]]:
    """Whether ``keys`` fit the fixed slots, and the parameters binding them."""
    unique = tuple(dict.fromkeys(keys))
    if len(unique) > KEY_SLOTS:
        return False, {"p_keys": unique}
    return True, dict(zip(_KEY_NAMES, unique + (None,) * (KEY_SLOTS - len(unique)), strict=True))


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


def _row_attributes(mapper: Mapper[Any], table: Table) -> tuple[str, ...] | None:
    """The user's attribute keys, if an instance is fully described by its table's row: one
    plain column per attribute, no relationship, inheritance or deferred column. Otherwise
    None: such models are loaded by the ORM. (Load listeners, which can be added at any
    time, are checked per call: :func:`~otpcore.stores.sqlalchemy.principal.row_is_enough`.)"""
    if mapper.relationships or mapper.inherits is not None or mapper.polymorphic_on is not None:
        return None
    keys = []
    for prop in mapper.column_attrs:
        column = prop.columns[0] if len(prop.columns) == 1 else None
        if column is None or not isinstance(column, Column) or column.table is not table:
            return None
        if prop.deferred or prop.expire_on_flush is False:
            return None
        keys.append(prop.key)
    if set(keys) != set(mapper.attrs.keys()):
        return None
    return tuple(keys)


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


def _build_plan(user_model: type, blacklist_model: type) -> Plan:
    mapper: Mapper[Any] = inspect(user_model)
    users = _table(mapper, "User")
    blacklist = _table(inspect(blacklist_model), "Blacklist")
    missing = [name for name in ("email", *OTP_COLUMNS) if name not in users.c]
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
    otp = {name: getattr(u, name) for name in OTP_COLUMNS}

    def bound(name: str) -> Any:
        return bindparam(f"p_{name}", type_=otp[name].type)

    state_values = {column: bound(column) for column in STATE_COLUMNS.values()}
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

    row_attributes = _row_attributes(mapper, users)

    def principal_rows(matches: Any) -> Select[Any] | None:
        if row_attributes is None:
            return None
        columns = [mapper.get_property(key).columns[0] for key in row_attributes]
        return (
            select(*columns, *revocation_columns)
            .select_from(anchor)
            .outerjoin(users, pk == anchor.c.pid)
            .outerjoin(blacklist, matches)
        )

    at, until = bindparam("p_at", type_=UTCDateTime()), bindparam("p_until", type_=UTCDateTime())
    now = bindparam("p_now", type_=UTCDateTime())
    null_by_default, server_filled = _insert_outcome(mapper, users)
    pk_key = mapper.get_property_by_column(pk).key
    return Plan(
        mapper=mapper,
        null_by_default=null_by_default,
        server_filled=server_filled,
        pk_key=pk_key,
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
        principal_rows=principal_rows(slots),
        principal_rows_many=principal_rows(b.jti.in_(many)),
        row_attributes=row_attributes or (),
        pk_index=row_attributes.index(pk_key) if row_attributes else -1,
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
            token_type=CUTOFF_KIND,
            blacklisted_at=case((b.blacklisted_at < at, at), else_=b.blacklisted_at),
            expires_at=case((b.expires_at < until, until), else_=b.expires_at),
        ),
        purge=delete(blacklist).where(b.expires_at <= now),
    )
