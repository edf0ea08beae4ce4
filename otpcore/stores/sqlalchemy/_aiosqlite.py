"""One trip to aiosqlite's thread per statement, and point reads that make none.

aiosqlite runs each ``sqlite3`` call on the connection's own thread: a queue hand-off, a
wake-up of that thread, and one of the event loop when the result comes back. SQLAlchemy's
aiosqlite adaptation makes four such trips per statement (open a cursor, execute, fetch,
close). :func:`one_trip_cursors` gives a connection cursors that make one: the adapter
asks for them on the aiosqlite engines it is used with (:func:`adapt_engine`), and
:func:`~otpcore.stores.sqlalchemy.create_sqlite_engine` on its own connections, where
:func:`reading_inline` also lets the adapter's point reads run on the loop's thread.

These use aiosqlite's queueing method (``Connection._execute``) and its ``sqlite3``
connection (``_conn``), as SQLAlchemy's own aiosqlite dialect does; a connection from an
aiosqlite without them keeps its own cursors.
"""

from __future__ import annotations

import contextlib
import sqlite3
import weakref
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

__all__ = ["adapt_engine", "one_trip_cursors", "reading_inline"]

#: Rows fetched with the statement; a longer result (a streamed one, say) stays on the
#: ``sqlite3`` cursor and is fetched in further trips as it is read, never all at once.
CHUNK: Final = 256

#: Set on an aiosqlite connection while :func:`reading_inline` lets its reads skip the trip.
_INLINE: Final = "_otpcore_read_inline"

_Outcome = tuple[Any, int, "int | None", list[Any], "sqlite3.Cursor | None"]


def one_trip_cursors(driver: Any, busy_ms: int | None) -> None:
    """Give the aiosqlite connection ``driver`` cursors that make one trip per statement.

    Args:
        driver: The aiosqlite connection.
        busy_ms: Its busy timeout (``PRAGMA busy_timeout``), restored after inline reads;
            None: no read on this connection runs inline.
    """
    if callable(getattr(driver, "_execute", None)) and hasattr(driver, "_conn"):
        driver.cursor = _CursorFactory(driver, busy_ms)


_ADAPTED: weakref.WeakSet[Engine] = weakref.WeakSet()


def adapt_engine(engine: Engine) -> None:
    """One trip per statement on the aiosqlite connections ``engine`` hands out from now on
    (the adapter's engines; :func:`~otpcore.stores.sqlalchemy.create_sqlite_engine` sets up
    its own at connect, with inline reads). Results are the same as through SQLAlchemy's
    own cursors: rows, row counts, new row ids, errors; only the trips differ."""
    if engine.dialect.driver != "aiosqlite" or engine in _ADAPTED:
        return
    _ADAPTED.add(engine)
    event.listen(engine, "checkout", _one_trip_on_checkout)


def _one_trip_on_checkout(
    dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
) -> None:
    driver = record.driver_connection
    if not isinstance(getattr(driver, "__dict__", {}).get("cursor"), _CursorFactory):
        one_trip_cursors(driver, None)


@contextlib.contextmanager
def reading_inline(connection: Connection) -> Iterator[None]:
    """Within the block, a read on ``connection`` runs on the calling thread (the event
    loop's) instead of making the trip to the aiosqlite connection's thread; connections
    without :func:`one_trip_cursors` are left as they are.

    For point reads by key only: a few pages, which a warm cache serves in microseconds,
    where the trip costs far more. Such a read does not wait: in WAL mode readers never
    wait for the writer, SQLite's busy handler is off while it runs, and a read SQLite
    refuses as busy (another connection holding an exclusive lock or recovering the WAL)
    goes to the connection's thread as usual, where it may wait.
    """
    driver = connection.connection.driver_connection
    factory = getattr(driver, "__dict__", {}).get("cursor")
    if not isinstance(factory, _CursorFactory) or factory.busy_ms is None:
        yield
        return
    setattr(driver, _INLINE, True)
    try:
        yield
    finally:
        setattr(driver, _INLINE, False)


class _CursorFactory:
    """An aiosqlite connection's ``cursor()``, giving :class:`_OneTripCursor` s."""

    __slots__ = ("busy_ms", "driver")

    def __init__(self, driver: Any, busy_ms: int | None) -> None:
        self.driver = driver
        self.busy_ms = busy_ms

    def __call__(self) -> _OneTripCursor:
        return _OneTripCursor(self.driver, self.busy_ms)


def _run(connection: sqlite3.Connection, sql: str, parameters: Any, many: bool) -> _Outcome:
    """On the connection's thread: the statement, and what SQLAlchemy reads after it."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        description = cursor.description
        rows = [] if description is None else cursor.fetchmany(CHUNK)
        outcome = (description, cursor.rowcount, cursor.lastrowid, rows)
    except BaseException:
        cursor.close()
        raise
    if len(rows) < CHUNK:
        cursor.close()
        return (*outcome, None)
    return (*outcome, cursor)


def _read_inline(
    connection: sqlite3.Connection, sql: str, parameters: Any, busy_ms: int
) -> _Outcome | None:
    """The statement run on this thread with SQLite's busy handler off, or None when it
    cannot run here (SQLite busy, or a connection bound to its own thread): nothing read."""
    try:
        connection.execute("PRAGMA busy_timeout = 0")
    except sqlite3.ProgrammingError:  # check_same_thread: not this thread's to use
        return None
    try:
        return _run(connection, sql, parameters, False)
    except sqlite3.OperationalError as error:
        if error.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return None
        raise
    finally:
        connection.execute(f"PRAGMA busy_timeout = {busy_ms:d}")


def _fetch(cursor: sqlite3.Cursor, size: int | None) -> list[Any]:
    """On the connection's thread: more rows of a long result (all when ``size`` is None),
    closing the cursor once it is exhausted."""
    rows = cursor.fetchall() if size is None else cursor.fetchmany(size)
    if size is None or len(rows) < size:
        cursor.close()
    return rows


class _OneTripCursor:
    """An aiosqlite cursor as SQLAlchemy uses it: one trip per ``execute``, the first
    :data:`CHUNK` rows included."""

    __slots__ = (
        "_busy_ms",
        "_driver",
        "_open",
        "_rows",
        "arraysize",
        "description",
        "lastrowid",
        "rowcount",
    )

    def __init__(self, driver: Any, busy_ms: int | None) -> None:
        self._driver = driver
        self._busy_ms = busy_ms
        self._rows: list[Any] = []
        self._open: sqlite3.Cursor | None = None
        self.arraysize = 1
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None

    def __await__(self) -> Generator[Any, None, _OneTripCursor]:
        # ``await connection.cursor()`` works, as on aiosqlite's own cursors.
        yield from ()
        return self

    async def __aenter__(self) -> _OneTripCursor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Any = ()) -> _OneTripCursor:
        driver = self._driver
        outcome = None
        if self._busy_ms is not None and getattr(driver, _INLINE, False):
            outcome = _read_inline(driver._conn, sql, parameters, self._busy_ms)
        if outcome is None:
            outcome = await driver._execute(_run, driver._conn, sql, parameters, False)
        return await self._took(outcome)

    async def executemany(self, sql: str, parameters: Any) -> _OneTripCursor:
        driver = self._driver
        return await self._took(await driver._execute(_run, driver._conn, sql, parameters, True))

    async def _took(self, outcome: _Outcome) -> _OneTripCursor:
        await self.close()  # a result still open from the previous statement
        self.description, self.rowcount, self.lastrowid, self._rows, self._open = outcome
        return self

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        if self._open is not None:
            cursor, self._open = self._open, None
            rows += await self._driver._execute(_fetch, cursor, None)
        return rows

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = self.arraysize if size is None else size
        if len(self._rows) < count and self._open is not None:
            more = await self._driver._execute(_fetch, self._open, CHUNK)
            if len(more) < CHUNK:
                self._open = None
            self._rows += more
        rows, self._rows = self._rows[:count], self._rows[count:]
        return rows

    async def fetchone(self) -> Any:
        rows = await self.fetchmany(1)
        return rows[0] if rows else None

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while rows := await self.fetchmany(CHUNK):
            for row in rows:
                yield row

    async def close(self) -> None:
        self._rows = []
        if self._open is not None:
            cursor, self._open = self._open, None
            await self._driver._execute(cursor.close)
