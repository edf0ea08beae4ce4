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


def one_trip_cursors(driver: Any, *, inline: bool) -> None:
    """Give the aiosqlite connection ``driver`` cursors that make one trip per statement.

    Args:
        driver: The aiosqlite connection.
        inline: Whether :func:`reading_inline` may run its reads on the calling thread (the
            connection must then be opened with ``check_same_thread=False``).
    """
    if callable(getattr(driver, "_execute", None)) and hasattr(driver, "_conn"):
        driver.cursor = _CursorFactory(driver, inline)


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
        one_trip_cursors(driver, inline=False)


@contextlib.contextmanager
def reading_inline(connection: Connection) -> Iterator[None]:
    """Within the block, a read on ``connection`` runs on the calling thread (the event
    loop's) instead of making the trip to the aiosqlite connection's thread; connections
    set up without inline reads are left as they are.

    For point reads by key only: a few pages, which a warm cache serves in microseconds,
    where the trip costs far more. Such a read does not wait: in WAL mode readers never
    wait for the writer, SQLite's busy handler is off while it runs, and a read SQLite
    refuses as busy or locked (another connection holding an exclusive lock or recovering
    the WAL) goes to the connection's thread as usual, where it may wait.
    """
    driver = connection.connection.driver_connection
    factory = getattr(driver, "__dict__", {}).get("cursor")
    if not isinstance(factory, _CursorFactory) or not factory.inline:
        yield
        return
    setattr(driver, _INLINE, True)
    try:
        yield
    finally:
        setattr(driver, _INLINE, False)


class _CursorFactory:
    """An aiosqlite connection's ``cursor()``, giving :class:`_OneTripCursor` s."""

    __slots__ = ("driver", "inline")

    def __init__(self, driver: Any, inline: bool) -> None:
        self.driver = driver
        self.inline = inline

    def __call__(self) -> _OneTripCursor:
        return _OneTripCursor(self.driver, self.inline)


def _run(
    connection: sqlite3.Connection, sql: str, parameters: Any, many: bool, row_factory: Any
) -> _Outcome:
    """On the connection's thread: the statement, and what SQLAlchemy reads after it."""
    cursor = connection.cursor()
    try:
        if row_factory is not None:
            cursor.row_factory = row_factory
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
    connection: sqlite3.Connection, sql: str, parameters: Any, row_factory: Any
) -> _Outcome | None:
    """The statement run on this thread with SQLite's busy handler off, or None when it
    cannot run here (SQLite busy or locked, or a connection bound to its own thread):
    nothing read. The busy timeout is put back as it was."""
    try:
        busy_ms = int(connection.execute("PRAGMA busy_timeout").fetchone()[0])
    except sqlite3.ProgrammingError:  # check_same_thread: not this thread's to use
        return None
    connection.execute("PRAGMA busy_timeout = 0")
    try:
        return _run(connection, sql, parameters, False, row_factory)
    except sqlite3.OperationalError as error:
        # Python reports the extended code (SQLITE_BUSY_RECOVERY, …); its low byte is the kind.
        if (error.sqlite_errorcode & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return None
        raise
    finally:
        connection.execute(f"PRAGMA busy_timeout = {busy_ms:d}")


def _fetch(cursor: sqlite3.Cursor, size: int | None) -> tuple[list[Any], int]:
    """On the connection's thread: more rows of a long result (all when ``size`` is None),
    and the row count so far; the cursor is closed once the result is exhausted."""
    rows = cursor.fetchall() if size is None else cursor.fetchmany(size)
    if size is None or len(rows) < size:
        cursor.close()
    return rows, cursor.rowcount


class _OneTripCursor:
    """An aiosqlite cursor: one trip per ``execute``, the first :data:`CHUNK` rows included."""

    __slots__ = (
        "_driver",
        "_inline",
        "_open",
        "_rows",
        "arraysize",
        "description",
        "lastrowid",
        "row_factory",
        "rowcount",
    )

    def __init__(self, driver: Any, inline: bool) -> None:
        self._driver = driver
        self._inline = inline
        self._rows: list[Any] = []
        self._open: sqlite3.Cursor | None = None
        self.arraysize = 1
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.row_factory: Any = None

    @property
    def connection(self) -> sqlite3.Connection:
        """The ``sqlite3`` connection, as on aiosqlite's cursors."""
        conn: sqlite3.Connection = self._driver._conn
        return conn

    def __await__(self) -> Generator[Any, None, _OneTripCursor]:
        # ``await connection.cursor()`` works, as on aiosqlite's own cursors.
        yield from ()
        return self

    async def __aenter__(self) -> _OneTripCursor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Any = None) -> _OneTripCursor:
        await self.close()  # a result still open from the previous statement
        driver = self._driver
        parameters = () if parameters is None else parameters
        outcome = None
        if self._inline and getattr(driver, _INLINE, False):
            outcome = _read_inline(driver._conn, sql, parameters, self.row_factory)
        if outcome is None:
            outcome = await driver._execute(
                _run, driver._conn, sql, parameters, False, self.row_factory
            )
        self._took(outcome)
        return self

    async def executemany(self, sql: str, parameters: Any) -> _OneTripCursor:
        await self.close()
        driver = self._driver
        self._took(
            await driver._execute(_run, driver._conn, sql, parameters, True, self.row_factory)
        )
        return self

    async def executescript(self, sql_script: str) -> _OneTripCursor:
        await self.close()
        driver = self._driver
        self._took(await driver._execute(_script, driver._conn, sql_script))
        return self

    def _took(self, outcome: _Outcome) -> None:
        self.description, self.rowcount, self.lastrowid, self._rows, self._open = outcome

    async def _more(self, size: int | None) -> None:
        """Move more rows from the open ``sqlite3`` cursor into the buffer (all if None)."""
        cursor = self._open
        assert cursor is not None
        rows, self.rowcount = await self._driver._execute(_fetch, cursor, size)
        if size is None or len(rows) < size:
            self._open = None
        self._rows += rows

    async def fetchall(self) -> list[Any]:
        if self._open is not None:
            await self._more(None)
        rows, self._rows = self._rows, []
        return rows

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = self.arraysize if size is None else size
        while len(self._rows) < count and self._open is not None:
            await self._more(max(CHUNK, count - len(self._rows)))
        rows, self._rows = self._rows[:count], self._rows[count:]
        return rows

    async def fetchone(self) -> Any:
        rows = await self.fetchmany(1)
        return rows[0] if rows else None

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        chunk = getattr(self._driver, "_iter_chunk_size", CHUNK)
        while rows := await self.fetchmany(chunk):
            for row in rows:
                yield row

    async def close(self) -> None:
        self._rows = []
        if self._open is not None:
            cursor, self._open = self._open, None
            await self._driver._execute(cursor.close)


def _script(connection: sqlite3.Connection, sql_script: str) -> _Outcome:
    """On the connection's thread: a script, as ``sqlite3``'s ``executescript``."""
    cursor = connection.cursor()
    try:
        cursor.executescript(sql_script)
        return (cursor.description, cursor.rowcount, cursor.lastrowid, [], None)
    finally:
        cursor.close()
