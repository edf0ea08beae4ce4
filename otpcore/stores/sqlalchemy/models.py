"""The tables: the mixins for the application's user and revocation models, and their types.

The sessions, pending-challenge and limit-counter tables have no mixin of their own: they are
declared next to the application's revocation table (``<table>_sessions``,
``<table>_challenges``, ``<table>_limits``), on that table's ``MetaData``, as soon as a
:class:`TokenBlacklist` subclass is mapped (whatever the mapping style). So the
``Base.metadata.create_all`` an application already runs, and Alembic's autogenerate, see
them without more models.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, Generic, TypeVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    String,
    Table,
    event,
    false,
    inspect,
    text,
    types,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, Mapper, mapped_column
from sqlalchemy.schema import SchemaItem

from otpcore.domain.errors import ConfigurationError

__all__ = [
    "COMPANION_TABLES",
    "BaseOTPUserTable",
    "TokenBlacklist",
    "UTCDateTime",
    "companion_table",
    "sessions_table",
]

#: Column widths of the sessions table; longer values are cut to them before they are stored.
USER_AGENT_LENGTH: Final = 256
IP_LENGTH: Final = 64

IdType = TypeVar("IdType")


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


def _companion_key(blacklist: Table, suffix: str) -> str:
    name = f"{blacklist.name}_{suffix}"
    return name if blacklist.schema is None else f"{blacklist.schema}.{name}"


def _sessions_columns(name: str) -> tuple[SchemaItem, ...]:
    return (
        Column("sid", String(64), primary_key=True),
        # Text whatever the user key's type (integer, UUID, …): what tokens carry in ``sub``.
        Column("user_id", String(255), nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("last_used_at", UTCDateTime, nullable=False),
        Column("rotated_at", UTCDateTime, nullable=False),
        Column("expires_at", UTCDateTime, nullable=False),
        Column("generation", Integer, nullable=False, default=0, server_default=text("0")),
        Column("user_agent", String(USER_AGENT_LENGTH), nullable=True),
        Column("ip", String(IP_LENGTH), nullable=True),
        Column("ended_at", UTCDateTime, nullable=True),
        # A user's active sessions (list, end) and the purge, each one index range.
        Index(f"ix_{name}_user_id_expires_at", "user_id", "expires_at"),
        Index(f"ix_{name}_expires_at", "expires_at"),
    )


def _challenges_columns(name: str) -> tuple[SchemaItem, ...]:
    # Pending codes, one row per requester binding (otpcore.ports.ChallengeStore). ``id`` and
    # ``subject`` are keyed hashes (of the binding, of the address), never the values.
    return (
        Column("id", String(64), primary_key=True),
        Column("subject", String(64), nullable=False),
        Column("code_hash", String(64), nullable=True),
        Column("issued_at", UTCDateTime, nullable=True),
        Column("attempts", Integer, nullable=False, default=0, server_default=text("0")),
        Column("unbound_attempts", Integer, nullable=False, default=0, server_default=text("0")),
        Column("failures", Integer, nullable=False, default=0, server_default=text("0")),
        Column("last_request_at", UTCDateTime, nullable=False),
        Column("last_failure_at", UTCDateTime, nullable=True),
        Column("version", Integer, nullable=False, default=0, server_default=text("0")),
        Column("expires_at", UTCDateTime, nullable=False),
        # Ties of last_request_at (two codes in one instant): the later issue is the newest.
        Column("issue_order", BigInteger, nullable=False, default=0, server_default=text("0")),
        # The keyed hash of the magic link sent with the pending code (issue 9), if any.
        Column("link_hash", String(64), nullable=True),
        # The subject's newest record (unbound guesses), and the purge: one index range each.
        Index(f"ix_{name}_subject_last_request_at", "subject", "last_request_at"),
        Index(f"ix_{name}_expires_at", "expires_at"),
    )


def _limits_columns(name: str) -> tuple[SchemaItem, ...]:
    # Sliding-window counters (otpcore.ports.LimitStore); ``key`` is a keyed hash.
    return (
        Column("key", String(64), primary_key=True),
        Column("window_start", UTCDateTime, nullable=False),
        Column("count", Integer, nullable=False),
        Column("previous_count", Integer, nullable=False),
        Column("expires_at", UTCDateTime, nullable=False),
        Index(f"ix_{name}_expires_at", "expires_at"),
    )


#: The tables declared beside every revocation table, by name suffix: ``<table>_<suffix>``.
COMPANION_TABLES: Final[dict[str, Callable[[str], tuple[SchemaItem, ...]]]] = {
    "sessions": _sessions_columns,
    "challenges": _challenges_columns,
    "limits": _limits_columns,
}


def _declare_companion_tables(mapper: Mapper[Any], class_: type) -> None:
    """Declare the :data:`COMPANION_TABLES` on the revocation table's ``MetaData``, once.

    Runs when a :class:`TokenBlacklist` subclass is mapped (declarative, legacy
    ``declarative_base()``, ``registry.mapped``, imperative); inheriting mappers share the
    tables and find them declared.
    """
    blacklist = mapper.local_table
    if not isinstance(blacklist, Table):
        return
    for suffix, columns in COMPANION_TABLES.items():
        if _companion_key(blacklist, suffix) in blacklist.metadata.tables:
            continue
        name = f"{blacklist.name}_{suffix}"
        Table(name, blacklist.metadata, *columns(name), schema=blacklist.schema)


event.listen(TokenBlacklist, "after_mapper_constructed", _declare_companion_tables, propagate=True)


def companion_table(blacklist_model: type, suffix: str) -> Table:
    """The ``<revocation table>_<suffix>`` table declared for ``blacklist_model``.

    Raises:
        ConfigurationError: ``blacklist_model`` is not a mapped :class:`TokenBlacklist`
            subclass.
    """
    mapper: Mapper[Any] | None = inspect(blacklist_model, raiseerr=False)
    blacklist = None if mapper is None else mapper.local_table
    if (
        mapper is None
        or not isinstance(blacklist, Table)
        or not issubclass(blacklist_model, TokenBlacklist)
    ):
        raise ConfigurationError(
            f"{getattr(blacklist_model, '__name__', blacklist_model)!s} must be a mapped "
            "subclass of TokenBlacklist"
        )
    return blacklist.metadata.tables[_companion_key(blacklist, suffix)]


def sessions_table(blacklist_model: type) -> Table:
    """The sessions table declared for ``blacklist_model``'s revocation table.

    Raises:
        ConfigurationError: ``blacklist_model`` is not a mapped :class:`TokenBlacklist`
            subclass.
    """
    return companion_table(blacklist_model, "sessions")
