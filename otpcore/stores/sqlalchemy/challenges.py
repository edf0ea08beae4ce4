"""Pending challenges in SQL: the statements, built once per revocation model, and the
:class:`otpcore.ports.ChallengeStore` methods :class:`SQLAlchemyAdapter` mixes in.

The table is ``<revocation table>_challenges``, declared by
:mod:`otpcore.stores.sqlalchemy.models` when the application's :class:`TokenBlacklist`
subclass is mapped. Statements per call:

- ``create_challenge``: one ``INSERT``; ``find_challenge``: one ``SELECT`` by primary key;
- ``newest_challenge``: one ``SELECT … ORDER BY last_request_at DESC, issue_order DESC,
  id DESC LIMIT 1`` on the ``(subject, last_request_at)`` index;
- ``update_challenge``: one ``UPDATE … WHERE id = :id AND version = :expected`` (setting
  ``issue_order`` too when a code was issued), decided by its row count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import (
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

from otpcore.domain.records import ChallengeState, PendingChallenge
from otpcore.stores.sqlalchemy.models import UTCDateTime, companion_table
from otpcore.stores.sqlalchemy.units import SQLCalls

__all__ = ["ChallengePlan", "SQLChallenges", "challenge_plan"]

#: ChallengeState field -> column of the challenges table (the same names).
_STATE: Final = (
    "code_hash",
    "issued_at",
    "attempts",
    "unbound_attempts",
    "failures",
    "last_request_at",
    "last_failure_at",
    "version",
    "link_hash",
)
_COLUMNS: Final = ("id", "subject", *_STATE, "expires_at", "issue_order")


@dataclass(frozen=True, slots=True)
class ChallengePlan:
    """Every pending-challenge statement for one revocation model, built once per process."""

    table: Table
    insert: Insert
    find: Select[Any]
    newest: Select[Any]
    update: Update
    update_issued: Update
    purge: Delete


_PLANS: dict[type, ChallengePlan] = {}


def challenge_plan(blacklist_model: type) -> ChallengePlan:
    """The plan for ``blacklist_model``'s challenges table, built on first use.

    Raises:
        ConfigurationError: ``blacklist_model`` is not a mapped ``TokenBlacklist`` subclass.
    """
    plan = _PLANS.get(blacklist_model)
    if plan is None:
        plan = _PLANS[blacklist_model] = _build(companion_table(blacklist_model, "challenges"))
    return plan


def _build(table: Table) -> ChallengePlan:
    c = table.c
    columns = [c[name] for name in _COLUMNS]
    state = {name: bindparam(f"p_{name}", type_=c[name].type) for name in _STATE}
    update_state = (
        update(table)
        .where(
            c.id == bindparam("p_id", type_=c.id.type),
            c.version == bindparam("p_expected", type_=Integer()),
        )
        .values(**state, expires_at=bindparam("p_expires", type_=UTCDateTime()))
    )
    return ChallengePlan(
        table=table,
        insert=insert(table),
        find=select(*columns).where(c.id == bindparam("p_id", type_=c.id.type)),
        # Only records holding a code: a consumed one never hides a pending one.
        newest=select(*columns)
        .where(
            c.subject == bindparam("p_subject", type_=c.subject.type),
            c.code_hash.is_not(None),
        )
        .order_by(c.last_request_at.desc(), c.issue_order.desc(), c.id.desc())
        .limit(1),
        update=update_state,
        update_issued=update_state.values(
            issue_order=bindparam("p_order", type_=c.issue_order.type)
        ),
        purge=delete(table).where(c.expires_at <= bindparam("p_now", type_=UTCDateTime())),
    )


def _record(row: Any) -> PendingChallenge:
    values = dict(zip(_COLUMNS, row, strict=True))
    return PendingChallenge(
        id=values["id"],
        subject=values["subject"],
        state=ChallengeState(**{name: values[name] for name in _STATE}),
        expires_at=values["expires_at"],
        order=values["issue_order"],
    )


class SQLChallenges(SQLCalls):
    """The :class:`otpcore.ports.ChallengeStore` methods over the adapter's ``AsyncSession``.

    Each call is one unit of work, committed before it returns, as every adapter call is.
    """

    blacklist_model: type

    async def create_challenge(self, challenge: PendingChallenge) -> None:
        """See :meth:`otpcore.ports.ChallengeStore.create_challenge`. One ``INSERT``.

        Raises:
            ValueError: ``challenge.state.last_request_at`` is not set (every record has it).
        """
        if challenge.state.last_request_at is None:
            raise ValueError("a pending challenge needs state.last_request_at")
        values: dict[str, object] = {name: getattr(challenge.state, name) for name in _STATE}
        values.update(
            id=challenge.id,
            subject=challenge.subject,
            expires_at=challenge.expires_at,
            issue_order=challenge.order,
        )
        await self._writing()
        await self._one_statement()
        await self._execute(challenge_plan(self.blacklist_model).insert, values)
        await self._commit()

    async def find_challenge(self, challenge_id: str) -> PendingChallenge | None:
        """See :meth:`otpcore.ports.ChallengeStore.find_challenge`. One ``SELECT``."""
        return await self._one_challenge(
            challenge_plan(self.blacklist_model).find, {"p_id": challenge_id}
        )

    async def newest_challenge(self, subject: str) -> PendingChallenge | None:
        """See :meth:`otpcore.ports.ChallengeStore.newest_challenge`. One ``SELECT``."""
        return await self._one_challenge(
            challenge_plan(self.blacklist_model).newest, {"p_subject": subject}
        )

    async def _one_challenge(
        self, statement: Select[Any], params: dict[str, object]
    ) -> PendingChallenge | None:
        await self._one_statement()
        result = await self._execute(statement, params)
        row = result.first()
        await self._commit()
        return None if row is None else _record(row)

    async def update_challenge(
        self,
        challenge_id: str,
        *,
        expected_version: int,
        state: ChallengeState,
        expires_at: datetime,
        order: int | None = None,
    ) -> bool:
        """See :meth:`otpcore.ports.ChallengeStore.update_challenge`. One conditional
        ``UPDATE``; its row count says whether this call won."""
        params: dict[str, object] = {f"p_{name}": getattr(state, name) for name in _STATE}
        params.update(p_id=challenge_id, p_expected=expected_version, p_expires=expires_at)
        plan = challenge_plan(self.blacklist_model)
        statement = plan.update
        if order is not None:
            statement = plan.update_issued
            params["p_order"] = order
        await self._writing()
        await self._one_statement()
        result = cast(CursorResult[Any], await self._execute(statement, params))
        await self._commit()
        return result.rowcount == 1

    async def _purge_challenges(self, now: datetime) -> None:
        """Delete records whose ``expires_at <= now``; one ``DELETE``.

        Part of ``purge_expired``, in the same unit of work.
        """
        await self._execute(challenge_plan(self.blacklist_model).purge, {"p_now": now})
