"""Limit counters in SQL: the upsert, built once per revocation model and dialect, and the
:class:`otpcore.ports.LimitStore` method :class:`SQLAlchemyAdapter` mixes in.

The table is ``<revocation table>_limits``, declared by
:mod:`otpcore.stores.sqlalchemy.models` when the application's :class:`TokenBlacklist`
subclass is mapped. A hit is one statement::

    INSERT INTO <t>_limits (key, window_start, count, previous_count, expires_at)
    VALUES (:key, :start, 1, 0, :expires)
    ON CONFLICT (key) DO UPDATE SET <the counter rolled to :start, count + 1>
    WHERE <rolled previous_count> * :weight + <rolled count> + 1 <= :limit
    RETURNING count, previous_count

A refused hit returns no row; only then a second, read-only ``SELECT`` reads the counter to
report the counts the refusal was decided on. Concurrent hits on one key serialize on its
row (PostgreSQL locks the conflicting row and re-evaluates the ``WHERE`` on its latest
version; SQLite has one writer at a time), so the limit is never exceeded.

``INSERT … ON CONFLICT`` is PostgreSQL's and SQLite's (3.24+) syntax; ``RETURNING`` needs
SQLite 3.35+. On an older SQLite the upsert runs alone and a ``SELECT`` in the same
transaction reads the counts. Other dialects have no limit store here (a
:class:`~otpcore.domain.errors.ConfigurationError` says so).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    Delete,
    Float,
    Integer,
    Select,
    Table,
    bindparam,
    case,
    delete,
    literal,
    select,
)
from sqlalchemy.sql.dml import Insert

from otpcore.domain.errors import ConfigurationError
from otpcore.domain.records import LimitHit, LimitWindow
from otpcore.stores._counter import refused
from otpcore.stores.sqlalchemy.models import UTCDateTime, companion_table
from otpcore.stores.sqlalchemy.statements import UPSERTS
from otpcore.stores.sqlalchemy.units import SQLCalls

__all__ = ["LimitPlan", "SQLLimits", "limit_plan"]


@dataclass(frozen=True, slots=True)
class LimitPlan:
    """Every limit-counter statement for one revocation model and dialect."""

    table: Table
    #: The upsert with ``RETURNING count, previous_count``.
    hit: Insert
    #: The same upsert without ``RETURNING`` (SQLite before 3.35): decided by row count.
    hit_plain: Insert
    read: Select[Any]
    purge: Delete


_PLANS: dict[tuple[type, str], LimitPlan] = {}


def limit_plan(blacklist_model: type, dialect: str | None) -> LimitPlan:
    """The plan for ``blacklist_model``'s limits table on ``dialect``, built on first use.

    Raises:
        ConfigurationError: ``blacklist_model`` is not a mapped ``TokenBlacklist`` subclass,
            or the dialect has no ``INSERT … ON CONFLICT`` (neither PostgreSQL nor SQLite).
    """
    name = dialect or "sqlite"
    plan = _PLANS.get((blacklist_model, name))
    if plan is None:
        upsert = UPSERTS.get(name)
        if upsert is None:
            raise ConfigurationError(
                f"limit counters need PostgreSQL or SQLite (INSERT … ON CONFLICT), not {name}; "
                "keep them in Redis (otpcore.stores.redis) or in the memory store"
            )
        table = companion_table(blacklist_model, "limits")
        plan = _PLANS[(blacklist_model, name)] = _build(table, upsert)
    return plan


def _build(table: Table, upsert: Callable[[Table], Any]) -> LimitPlan:
    c = table.c
    key = bindparam("p_key", type_=c["key"].type)
    start = bindparam("p_start", type_=UTCDateTime())
    previous_start = bindparam("p_previous_start", type_=UTCDateTime())
    expires = bindparam("p_expires", type_=UTCDateTime())
    weight = bindparam("p_weight", type_=Float())
    limit = bindparam("p_limit", type_=Integer())
    # Step 1 of LimitStore.hit: the stored counter rolled to the caller's window.
    current = c.window_start >= start
    rolled_count = case((current, c["count"]), else_=literal(0))
    rolled_previous = case(
        (current, c.previous_count), (c.window_start == previous_start, c["count"]), else_=0
    )
    statement = (
        upsert(table)
        .values(key=key, window_start=start, count=1, previous_count=0, expires_at=expires)
        .on_conflict_do_update(
            index_elements=[c["key"]],
            set_={
                "count": rolled_count + 1,
                "previous_count": rolled_previous,
                # Never moved back, e.g. by a host whose clock lags.
                "window_start": case((current, c.window_start), else_=start),
                "expires_at": case((c.expires_at > expires, c.expires_at), else_=expires),
            },
            where=rolled_previous * weight + rolled_count + 1 <= limit,
        )
    )
    return LimitPlan(
        table=table,
        hit=statement.returning(c["count"], c.previous_count),
        hit_plain=statement,
        read=select(c.window_start, c["count"], c.previous_count).where(c["key"] == key),
        purge=delete(table).where(c.expires_at <= bindparam("p_now", type_=UTCDateTime())),
    )


class SQLLimits(SQLCalls):
    """The :class:`otpcore.ports.LimitStore` method over the adapter's ``AsyncSession``.

    Each call is one unit of work, committed before it returns, as every adapter call is.
    """

    blacklist_model: type
    _dialect: str | None

    async def hit(self, key: str, *, limit: int, window: LimitWindow) -> LimitHit:
        """See :meth:`otpcore.ports.LimitStore.hit`. One upsert; a refusal reads the
        counter with one more ``SELECT``."""
        plan = limit_plan(self.blacklist_model, self._dialect)
        params: dict[str, object] = {
            "p_key": key,
            "p_start": window.start,
            "p_previous_start": window.previous_start,
            "p_expires": window.expires_at,
            "p_weight": window.weight,
            "p_limit": limit,
        }
        await self._writing()
        row: Sequence[Any] | None
        if self._insert_returning:
            await self._one_statement()
            row = (await self._execute(plan.hit, params)).first()
        else:
            result = cast(CursorResult[Any], await self._execute(plan.hit_plain, params))
            row = None
            if result.rowcount == 1:
                stored = (await self._execute(plan.read, params)).first()
                row = None if stored is None else stored[1:]
        if row is not None:
            await self._commit()
            return LimitHit(allowed=True, count=row[0], previous_count=row[1])
        stored = (await self._execute(plan.read, params)).first()
        await self._commit()
        counter = None if stored is None else (stored[0], stored[1], stored[2])
        return refused(counter, window=window)[1]

    async def _purge_limits(self, now: datetime) -> None:
        """Delete counters whose ``expires_at <= now``; one ``DELETE``.

        Part of ``purge_expired``, in the same unit of work.
        """
        await self._execute(limit_plan(self.blacklist_model, self._dialect).purge, {"p_now": now})
