"""Session records in SQL: the statements, built once per revocation model, and the
:class:`otpcore.ports.SessionStore` methods :class:`SQLAlchemyAdapter` mixes in.

The table is ``<revocation table>_sessions``, declared by :mod:`otpcore.stores.sqlalchemy.models`
when the application's :class:`TokenBlacklist` subclass is mapped. Statements per call:

- ``open_session``: one ``INSERT``; ``find_session``: one ``SELECT`` by primary key;
- ``rotate_session``: one conditional ``UPDATE``, decided by its row count;
- ``list_sessions``: one ``SELECT`` on the ``(user_id, expires_at)`` index;
- ``end_sessions``: one ``UPDATE … RETURNING sid`` (SQLite 3.35+, PostgreSQL). Where the
  database has no ``RETURNING`` (SQLite before 3.35), a ``SELECT`` of the candidates and one
  conditional ``UPDATE`` each, so that the ids returned are still exactly those this call
  ended. Ending also sets ``expires_at = now``;
- the purge: one ``DELETE … WHERE expires_at <= now``, a range of the ``(expires_at)`` index
  (an ended session's ``expires_at`` is its end, so no ``ended_at`` test is needed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Delete,
    Insert,
    Integer,
    Select,
    Table,
    Update,
    bindparam,
    delete,
    insert,
    select,
    update,
)

from otpcore.domain.records import SessionRecord
from otpcore.stores.sqlalchemy.models import (
    IP_LENGTH,
    USER_AGENT_LENGTH,
    UTCDateTime,
    sessions_table,
)
from otpcore.stores.sqlalchemy.units import SQLCalls

__all__ = ["SQLSessions", "SessionPlan", "session_plan"]

_COLUMNS: Final = (
    "sid",
    "user_id",
    "created_at",
    "last_used_at",
    "rotated_at",
    "generation",
    "user_agent",
    "ip",
    "expires_at",
    "ended_at",
)
#: Which of ``only`` / ``keep`` an ``end_sessions`` call gives: one statement each.
_ENDINGS: Final = ((False, False), (True, False), (False, True), (True, True))


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """Every sessions statement for one revocation model, built once per process."""

    table: Table
    insert: Insert
    find: Select[Any]
    rotate: Update
    active: Select[Any]
    #: ``UPDATE … RETURNING sid`` per ending: whether ``only``, ``keep`` are given.
    end: Mapping[tuple[bool, bool], Update]
    #: Without ``RETURNING``: the candidates per ending, and the conditional end of one.
    candidates: Mapping[tuple[bool, bool], Select[Any]]
    end_one: Update
    purge: Delete


_PLANS: dict[type, SessionPlan] = {}


def session_plan(blacklist_model: type) -> SessionPlan:
    """The plan for ``blacklist_model``'s sessions table, built on first use.

    Raises:
        ConfigurationError: ``blacklist_model`` is not a mapped ``TokenBlacklist`` subclass.
    """
    plan = _PLANS.get(blacklist_model)
    if plan is None:
        plan = _PLANS[blacklist_model] = _build(sessions_table(blacklist_model))
    return plan


def _build(table: Table) -> SessionPlan:
    c = table.c
    sid = bindparam("p_sid", type_=c.sid.type)
    user = bindparam("p_user", type_=c.user_id.type)
    now = bindparam("p_now", type_=UTCDateTime())
    active: tuple[ColumnElement[bool], ...] = (c.ended_at.is_(None), c.expires_at > now)
    mine = (c.user_id == user, *active)
    only = c.sid == bindparam("p_only", type_=c.sid.type)
    keep = c.sid != bindparam("p_keep", type_=c.sid.type)

    def chosen(ending: tuple[bool, bool]) -> tuple[ColumnElement[bool], ...]:
        return (*mine, *((only,) if ending[0] else ()), *((keep,) if ending[1] else ()))

    # Only active sessions (expires_at > now) are ended, so expires_at = now is
    # min(expires_at, now): the purge then finds ended sessions by expires_at alone.
    ended = {"ended_at": now, "expires_at": now}

    columns = [c[name] for name in _COLUMNS]
    return SessionPlan(
        table=table,
        insert=insert(table),
        find=select(*columns).where(c.sid == sid),
        rotate=update(table)
        .where(
            c.sid == sid,
            c.generation == bindparam("p_expected", type_=Integer()),
            *active,
        )
        .values(
            generation=c.generation + 1,
            rotated_at=now,
            last_used_at=now,
            expires_at=bindparam("p_expires", type_=UTCDateTime()),
        ),
        active=select(*columns).where(*mine).order_by(c.created_at.desc(), c.sid),
        end={
            ending: update(table).where(*chosen(ending)).values(ended).returning(c.sid)
            for ending in _ENDINGS
        },
        candidates={ending: select(c.sid).where(*chosen(ending)) for ending in _ENDINGS},
        end_one=update(table).where(c.sid == sid, *mine).values(ended),
        purge=delete(table).where(c.expires_at <= now),
    )


def _record(row: Any) -> SessionRecord:
    return SessionRecord(**dict(zip(_COLUMNS, row, strict=True)))


def _clip(value: str | None, length: int) -> str | None:
    return None if value is None else value[:length]


class SQLSessions(SQLCalls):
    """The :class:`otpcore.ports.SessionStore` methods over the adapter's ``AsyncSession``.

    Each call is one unit of work, committed before it returns, as every adapter call is.
    """

    _session_plan: SessionPlan
    _returning: bool

    async def open_session(self, session: SessionRecord) -> None:
        """See :meth:`otpcore.ports.SessionStore.open_session`. One ``INSERT``."""
        values = {name: getattr(session, name) for name in _COLUMNS}
        values["user_agent"] = _clip(session.user_agent, USER_AGENT_LENGTH)
        values["ip"] = _clip(session.ip, IP_LENGTH)
        await self._writing()
        await self._one_statement()
        await self._execute(self._session_plan.insert, values)
        await self._commit()

    async def find_session(self, sid: str) -> SessionRecord | None:
        """See :meth:`otpcore.ports.SessionStore.find_session`. One ``SELECT``."""
        await self._one_statement()
        result = await self._execute(self._session_plan.find, {"p_sid": sid})
        row = result.first()
        await self._commit()
        return None if row is None else _record(row)

    async def rotate_session(
        self, sid: str, *, expected_generation: int, now: datetime, expires_at: datetime
    ) -> bool:
        """See :meth:`otpcore.ports.SessionStore.rotate_session`. One conditional
        ``UPDATE``; its row count says whether this call won."""
        params = {"p_sid": sid, "p_expected": expected_generation, "p_now": now}
        params["p_expires"] = expires_at
        await self._writing()
        await self._one_statement()
        result = cast(CursorResult[Any], await self._execute(self._session_plan.rotate, params))
        await self._commit()
        return result.rowcount == 1

    async def list_sessions(self, user_id: str, *, now: datetime) -> list[SessionRecord]:
        """See :meth:`otpcore.ports.SessionStore.list_sessions`. One ``SELECT``."""
        await self._one_statement()
        result = await self._execute(self._session_plan.active, {"p_user": user_id, "p_now": now})
        found = [_record(row) for row in result]
        await self._commit()
        return found

    async def end_sessions(
        self,
        user_id: str,
        *,
        now: datetime,
        only: str | None = None,
        keep: str | None = None,
    ) -> list[str]:
        """See :meth:`otpcore.ports.SessionStore.end_sessions`. One ``UPDATE … RETURNING``
        (both ``only`` and ``keep`` given: ``only``, unless it is ``keep``)."""
        ending = (only is not None, keep is not None)
        params = {"p_user": user_id, "p_now": now, "p_only": only, "p_keep": keep}
        plan = self._session_plan
        await self._writing()
        if self._returning:
            await self._one_statement()
            result = await self._execute(plan.end[ending], params)
            ended = [row[0] for row in result]
        else:
            result = await self._execute(plan.candidates[ending], params)
            ended = []
            for (sid,) in result.all():
                won = cast(
                    CursorResult[Any],
                    await self._execute(plan.end_one, {**params, "p_sid": sid}),
                )
                if won.rowcount == 1:
                    ended.append(sid)
        await self._commit()
        return ended

    async def _purge_sessions(self, now: datetime) -> None:
        """Delete sessions whose ``expires_at <= now`` (ended ones included: ending sets it);
        one ``DELETE`` on the ``(expires_at)`` index.

        Part of ``purge_expired``, in the same unit of work.
        """
        await self._execute(self._session_plan.purge, {"p_now": now})
