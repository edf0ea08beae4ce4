"""Units of work over the adapter's ``AsyncSession``: when a call commits, and who may write.

Outside :meth:`SQLUnits.transaction` every adapter call is its own unit of work, committed
before it returns. Inside one, the calls share one database transaction, committed when the
block ends and rolled back if it raises: one commit (on SQLite one fsync in rollback-journal
mode) instead of one per call.

SQLite has one writer at a time. Writers that meet inside SQLite wait in its busy handler,
which sleeps and polls (up to 100 ms a nap): with ten concurrent requests, a convoy. So on
SQLite every write, a unit or a lone write call, first takes an ``asyncio.Lock`` per engine
(and event loop): within a process writers queue on the loop, in order, and SQLite's lock
is always free when one gets there. Reads take no lock (in WAL mode they never wait for the
writer). On :func:`~otpcore.stores.sqlalchemy.sqlite.create_sqlite_engine`'s engines a unit
also begins with ``BEGIN IMMEDIATE`` (the engine's ``begin`` listener, asked for by the
:data:`WRITE_OPTION` execution option): the write lock is taken before the unit's first read,
so a unit never has to upgrade a read snapshot another process has since written past
(``SQLITE_BUSY_SNAPSHOT``), and writers of other processes wait at the ``BEGIN``.

On PostgreSQL a unit costs two round-trips (``BEGIN``, ``COMMIT``) beside its statements,
while a lone statement runs in autocommit, so a unit that need not be atomic
(``atomic=False``) runs its calls one by one there.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Final

from sqlalchemy.engine import Engine, Result
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable

from otpcore.domain.errors import StorageError
from otpcore.stores.sqlalchemy._aiosqlite import adapt_engine

__all__ = ["WRITE_OPTION", "SQLCalls", "SQLUnits", "commit_keeping_loaded", "has_pending"]

#: Execution option a unit on SQLite sets on its connection: the transaction will write.
#: ``create_sqlite_engine``'s ``begin`` listener answers it with ``BEGIN IMMEDIATE``.
WRITE_OPTION: Final = "otpcore_write"
#: Dialects whose drivers switch to autocommit without a round-trip. There a one-statement
#: call costs one round-trip instead of three (BEGIN, statement, COMMIT). Not SQLite: pysqlite
#: never opens a transaction for a SELECT, so there is nothing to save, while aiosqlite would
#: spend five extra thread hops per call switching the isolation level and back.
_FREE_AUTOCOMMIT: Final = frozenset({"postgresql"})
_AUTOCOMMIT: Final = {"isolation_level": "AUTOCOMMIT"}

_LOCKS: weakref.WeakKeyDictionary[
    Engine, weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]
] = weakref.WeakKeyDictionary()


def writer_lock(engine: Engine) -> asyncio.Lock:
    """The lock this process's writers to ``engine`` queue on (one per event loop: an
    ``asyncio.Lock`` belongs to one)."""
    loop = asyncio.get_running_loop()
    per_loop = _LOCKS.get(engine)
    if per_loop is None:
        per_loop = _LOCKS[engine] = weakref.WeakKeyDictionary()
    lock = per_loop.get(loop)
    if lock is None:
        lock = per_loop[loop] = asyncio.Lock()
    return lock


def has_pending(session: Session) -> bool:
    """Whether ``session`` holds changes not yet flushed: new, changed or deleted objects."""
    return bool(session.new or session.dirty or session.deleted)


def commit_keeping_loaded(session: Session) -> None:
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


class SQLCalls:
    """What the adapter's store mixins (sessions, challenges, limits, revocations) call
    around their statements; :class:`SQLUnits` provides it."""

    session: AsyncSession
    #: Inside :meth:`SQLUnits.transaction`: calls neither commit nor switch to autocommit.
    _in_unit: bool = False
    #: What the session is told when the adapter asks for its connection: the user model,
    #: so that a session made with ``binds=`` finds its engine.
    _bind_arguments: dict[str, Any]
    #: The database has ``INSERT … RETURNING`` (not SQLite before 3.35).
    _insert_returning: bool

    async def _execute(self, statement: Executable, params: Any = None) -> Result[*tuple[Any, ...]]:
        """Run ``statement`` on the session's connection for the user model's engine (a
        session made with ``binds=`` knows no engine for the companion tables)."""
        return await self.session.execute(statement, params, bind_arguments=self._bind_arguments)

    async def _one_statement(self) -> None:
        """Autocommit where one statement is the whole call."""
        raise NotImplementedError

    async def _writing(self) -> None:
        """Queue for the writer lock where the database needs one."""
        raise NotImplementedError

    async def _commit(self) -> None:
        """End the call's unit of work."""
        raise NotImplementedError

    async def _rollback(self) -> None:
        """Undo the unit of work so far."""
        raise NotImplementedError


class SQLUnits(SQLCalls):
    """When the adapter commits, and the SQLite writer lock; mixed into the adapter."""

    _dialect: str | None
    driver_errors: ClassVar[tuple[type[BaseException], ...]]
    #: This adapter holds its engine's writer lock (SQLite).
    _holding: asyncio.Lock | None = None

    def _init_units(self, engine: Engine | None) -> None:
        """Set up for ``engine``, the one the session uses for the adapter's tables."""
        self._autocommit = self._dialect in _FREE_AUTOCOMMIT
        self._engine = engine if self._dialect == "sqlite" else None
        if self._engine is not None:
            adapt_engine(self._engine)

    @contextlib.asynccontextmanager
    async def transaction(self, *, atomic: bool = True) -> AsyncIterator[None]:
        """See :meth:`otpcore.ports.UnitOfWork.transaction`: one database transaction,
        committed when the block ends, rolled back if it raises (atomic on every dialect).
        On PostgreSQL ``atomic=False`` runs the calls one by one, each in autocommit, the
        fewer round-trips.

        Raises:
            RuntimeError: A unit is already open on this adapter.
            StorageError: The commit failed (then nothing of the unit was kept).
        """
        if self._in_unit:
            raise RuntimeError("units of work do not nest")
        if not atomic and self._autocommit:
            yield
            return
        await self._writing()
        session = self.session
        if self._engine is not None and not session.in_transaction():
            # BEGIN IMMEDIATE on create_sqlite_engine's engines; nothing elsewhere.
            await session.connection(
                bind_arguments=self._bind_arguments, execution_options={WRITE_OPTION: True}
            )
        self._in_unit = True
        try:
            yield
        except BaseException:
            self._in_unit = False
            await self._rollback()
            raise
        self._in_unit = False
        try:
            await self._commit()
        except BaseException as error:
            with contextlib.suppress(Exception):
                await self.session.rollback()
            if isinstance(error, self.driver_errors):
                raise StorageError() from error
            raise

    async def _writing(self) -> None:
        """Call before a write: on SQLite, queue for the engine's writer lock (held until
        the unit of work ends)."""
        if self._engine is None or self._in_unit or self._holding is not None:
            return
        lock = writer_lock(self._engine)
        await lock.acquire()
        self._holding = lock

    def _release(self) -> None:
        lock, self._holding = self._holding, None
        if lock is not None:
            lock.release()

    async def _commit(self) -> None:
        """End the call's unit of work (nothing inside :meth:`transaction`)."""
        if self._in_unit:
            return
        try:
            await self.session.run_sync(commit_keeping_loaded)
        finally:
            self._release()

    async def _rollback(self) -> None:
        """Undo the unit of work so far (all of it inside :meth:`transaction`)."""
        try:
            await self.session.rollback()
        finally:
            if not self._in_unit:
                self._release()

    async def _recover(self) -> None:
        # The original error is what the caller needs; if the rollback fails too, the pool
        # invalidates the connection.
        with contextlib.suppress(Exception):
            await self._rollback()

    async def _one_statement(self) -> None:
        """Call before a call's only statement: on a clean session, run it in autocommit.

        One statement is atomic on its own, so this changes no outcome. Sessions with pending
        changes or an open transaction, and calls inside :meth:`transaction`, keep their
        transaction, which the call (or the unit) then commits.
        """
        session = self.session
        if (
            self._autocommit
            and not self._in_unit
            and not session.in_transaction()
            and not has_pending(session.sync_session)
        ):
            await session.connection(
                bind_arguments=self._bind_arguments, execution_options=_AUTOCOMMIT
            )
