"""Revoked token ids, session ids and logout-all cutoffs in SQL: the
:class:`otpcore.ports.RevocationStore` methods :class:`SQLAlchemyAdapter` mixes in.

The table is the application's :class:`~otpcore.stores.sqlalchemy.models.TokenBlacklist`
model's, its statements in the adapter's :class:`~otpcore.stores.sqlalchemy.statements.Plan`.
A key already present is a conflict the statement skips (``ON CONFLICT DO NOTHING``), never
an error that would abort the unit of work around it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Insert, Select, Table
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from otpcore.domain.errors import ContentionError
from otpcore.domain.records import Revocation, user_key
from otpcore.stores._revocations import distinct, inserted_answers
from otpcore.stores.sqlalchemy.statements import (
    CUTOFF_KIND,
    UPSERTS,
    Plan,
    key_params,
    revocation_of,
)
from otpcore.stores.sqlalchemy.units import SQLCalls, commit_keeping_loaded

__all__ = ["SQLRevocations"]

_CUTOFF_RETRIES = 3

_IF_ABSENT: dict[tuple[type, str | None, bool], Insert | None] = {}


def _if_absent(
    blacklist_model: type, plan: Plan, dialect: str | None, *, returning: bool
) -> Insert | None:
    """``INSERT … ON CONFLICT DO NOTHING`` into the revocations table (``RETURNING jti``
    with ``returning``), or ``None`` where the dialect has no such clause."""
    key = (blacklist_model, dialect, returning)
    if key not in _IF_ABSENT:
        table = cast(Table, plan.insert_revocation.table)
        upsert = UPSERTS.get(dialect or "")
        statement = None if upsert is None else upsert(table).on_conflict_do_nothing()
        if statement is not None and returning:
            statement = statement.returning(table.c.jti)
        _IF_ABSENT[key] = statement
    return _IF_ABSENT[key]


def _row(revocation: Revocation) -> dict[str, object]:
    return {
        "jti": revocation.key,
        "token_type": revocation.kind,
        "blacklisted_at": revocation.revoked_at,
        "expires_at": revocation.expires_at,
    }


class SQLRevocations(SQLCalls):
    """The :class:`otpcore.ports.RevocationStore` methods over the adapter's ``AsyncSession``.

    Each call is one unit of work, committed before it returns, as every adapter call is.
    """

    blacklist_model: type
    _plan: Plan
    _dialect: str | None

    async def revoke(self, revocation: Revocation) -> bool:
        """See :meth:`otpcore.ports.RevocationStore.revoke`. One ``INSERT … ON CONFLICT DO
        NOTHING`` (PostgreSQL, SQLite), decided by its row count, so that a key already
        present aborts nothing: inside a unit of work the other writes stay."""
        await self._writing()
        await self._one_statement()
        statement = _if_absent(self.blacklist_model, self._plan, self._dialect, returning=False)
        if statement is not None:
            result = cast(CursorResult[Any], await self._execute(statement, _row(revocation)))
            await self._commit()
            return result.rowcount == 1
        try:
            await self._execute(self._plan.insert_revocation, _row(revocation))
            await self._commit()
        except sa_exc.IntegrityError:
            await self._rollback()
            return False
        return True

    async def revoke_many(self, revocations: Sequence[Revocation]) -> list[bool]:
        """See :meth:`otpcore.ports.RevocationStore.revoke_many`. One multi-row ``INSERT …
        ON CONFLICT DO NOTHING RETURNING jti`` (PostgreSQL, SQLite 3.35+); elsewhere one
        :meth:`revoke` per key."""
        first = distinct(revocations)
        statement = _if_absent(self.blacklist_model, self._plan, self._dialect, returning=True)
        if statement is None or not first or not self._insert_returning:
            inserted = {key for key, entry in first.items() if await self.revoke(entry)}
        else:
            await self._writing()
            await self._one_statement()
            # In key order: two calls sharing keys lock their rows in one order, never
            # waiting on each other (PostgreSQL would kill one as a deadlock).
            rows = [_row(first[key]) for key in sorted(first)]
            result = await self._execute(statement, rows)
            inserted = set(result.scalars())
            await self._commit()
        return inserted_answers(revocations, inserted)

    async def revoke_user(self, user_id: str, *, at: datetime, expires_at: datetime) -> None:
        """See :meth:`otpcore.ports.RevocationStore.revoke_user`.

        Raises:
            ContentionError: The cutoff row kept vanishing between attempts (a purge racing).
        """
        key = user_key(user_id)
        params = {"p_key": key, "p_at": at, "p_until": expires_at}
        await self._writing()
        for _ in range(_CUTOFF_RETRIES):
            # Raising in place is one atomic statement (CASE keeps the later value); only a
            # user's first cutoff needs the INSERT, and losing that race means updating.
            result = cast(CursorResult[Any], await self._execute(self._plan.raise_cutoff, params))
            if result.rowcount == 1:
                await self._commit()
                return
            try:
                await self._execute(
                    self._plan.insert_revocation,
                    {
                        "jti": key,
                        "token_type": CUTOFF_KIND,
                        "blacklisted_at": at,
                        "expires_at": expires_at,
                    },
                )
                await self._commit()
            except sa_exc.IntegrityError:
                await self._rollback()
                await self._writing()
                continue
            return
        raise ContentionError()

    async def _find_revocations(self, keys: Sequence[str]) -> list[Revocation]:
        if not keys:
            return []
        fixed, params = key_params(keys)
        statement = self._plan.revocations if fixed else self._plan.revocations_many
        await self._one_statement()
        return await self.session.run_sync(self._revocations, statement, params, keys)

    def _revocations(
        self,
        session: Session,
        statement: Select[Any],
        params: Mapping[str, object],
        keys: Sequence[str],
    ) -> list[Revocation]:
        found = {
            row[0]: revocation_of(row)
            for row in session.execute(statement, params, bind_arguments=self._bind_arguments)
        }
        if not self._in_unit:
            commit_keeping_loaded(session)
        return [found[key] for key in dict.fromkeys(keys) if key in found]

    async def find_revocations(self, keys: Sequence[str]) -> list[Revocation]:
        """See :meth:`otpcore.ports.RevocationStore.find_revocations`."""
        return await self._find_revocations(keys)

    async def revocations_since(self, cursor: datetime, *, now: datetime) -> list[Revocation]:
        """See :meth:`otpcore.ports.RevocationStore.revocations_since`."""
        await self._one_statement()
        result = await self._execute(self._plan.since, {"p_at": cursor, "p_now": now})
        found = [revocation_of(row) for row in result]
        await self._commit()
        return found
