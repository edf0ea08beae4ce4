"""``create_sqlite_engine``: an async SQLite engine set up as the adapter recommends.

WAL; a pool that rolls back only connections SQLite reports in a transaction and keeps the
connections it opens; commits and rollbacks that go to aiosqlite's thread only when SQLite
has a transaction open; one trip to that thread per statement instead of four, and none for
the adapter's point reads. With aiosqlite each saves thread hops on every request and,
under load, reopening connections (each one a thread) all the time.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState

from otpcore.domain.errors import ConfigurationError
from otpcore.stores.sqlalchemy._aiosqlite import one_trip_cursors
from otpcore.stores.sqlalchemy.units import WRITE_OPTION

__all__ = ["create_sqlite_engine"]


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
    - No thread hop for a commit or rollback with nothing to end. ``sqlite3``'s ``commit()``
      and ``rollback()`` do nothing when no transaction is open (after a read: pysqlite
      begins one only before a write), but aiosqlite sends each to its thread first; on
      this engine's connections they return at once in that case, so the commit ending a
      read-only call (the current-user route's one ``SELECT``) costs no trip.
    - One trip to aiosqlite's thread per statement: SQLAlchemy's aiosqlite adaptation makes
      four (cursor, execute, fetch, close); this engine's connections execute and fetch the
      first 256 rows in one (longer results, streamed ones included, are fetched as read).
      The adapter's point reads (the current user and its revocations, on every protected
      request) make none: they run on the event loop's thread, with SQLite's busy handler
      off, and go to aiosqlite's thread only if SQLite would make them wait. For that the
      connections are opened with ``check_same_thread=False``; passing
      ``connect_args={"check_same_thread": True}`` keeps every read on aiosqlite's thread.
    - ``BEGIN IMMEDIATE`` for the adapter's units of work that write: the write lock is
      taken when the transaction begins, not at its first write (reads still take none).
      Within a process the adapter queues writers on an ``asyncio.Lock`` first, so none of
      them sleeps in SQLite's busy handler; across processes they wait at the ``BEGIN``.
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
    # The adapter's point reads may run on the event loop's thread (see reading_inline);
    # the pool and aiosqlite still hand each connection to one user at a time.
    connect_args = {"check_same_thread": False, **options.pop("connect_args", {})}
    if _is_file_db(parsed) and not {"poolclass", "pool"} & options.keys():
        defaults |= {"pool_size": 15, "max_overflow": 0}
    engine = create_async_engine(url, connect_args=connect_args, **(defaults | options))

    def tune(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
        finally:
            cursor.close()
        if engine.dialect.driver == "aiosqlite":
            _end_only_open_transactions(record.driver_connection)
            one_trip_cursors(record.driver_connection, inline=True)

    event.listen(engine.sync_engine, "connect", tune)
    event.listen(engine.sync_engine, "reset", _reset_sqlite)
    event.listen(engine.sync_engine, "begin", _begin_writes_immediately)
    return engine


def _begin_writes_immediately(connection: Connection) -> None:
    """``BEGIN IMMEDIATE`` for a transaction the adapter says will write (SQLAlchemy's
    ``begin`` event recipe for pysqlite, applied to write transactions only).

    The write lock is taken at the start, before the transaction's first read, so it never
    has to upgrade a read snapshot that another process has written past since
    (``SQLITE_BUSY_SNAPSHOT``, which no wait can cure), and a writer of another process waits
    at the ``BEGIN``. Reads keep pysqlite's default: no transaction, so in WAL mode they
    never wait for a writer. pysqlite (its legacy transaction control, which this engine
    keeps) sees the open transaction and adds no ``BEGIN`` of its own; ``COMMIT`` ends it.
    """
    if connection.get_execution_options().get(WRITE_OPTION):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _end_only_open_transactions(driver: Any) -> None:
    """Make the aiosqlite connection's ``commit`` and ``rollback`` return at once, without the
    trip to its thread, when SQLite has no transaction open: what ``sqlite3`` would then do
    (nothing) once there. The class's methods are looked up per call.
    """

    async def commit() -> None:
        if _open(driver):
            await type(driver).commit(driver)

    async def rollback() -> None:
        if _open(driver):
            await type(driver).rollback(driver)

    driver.commit = commit
    driver.rollback = rollback


def _open(driver: Any) -> bool:
    """Whether SQLite reports a transaction open; when it cannot tell, assume one is."""
    try:
        return bool(driver.in_transaction)
    except Exception:
        return True  # let the real call run, and fail as it would


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
