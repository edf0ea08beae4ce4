"""Trips to aiosqlite's thread on ``create_sqlite_engine``, and the principal built from its row.

A trip is one call of aiosqlite's ``Connection._execute`` (a queue hand-off to the
connection's thread and the loop's wake-up when it answers), counted here by wrapping it.
The recommended engine makes one per statement (SQLAlchemy's adaptation alone makes four)
and none for the adapter's principal read, which runs on the loop's thread unless SQLite
would make it wait. Results must be what the plain engine gives: rows, row counts, new ids,
long and streamed results, errors.
"""

from __future__ import annotations

import sqlite3
import tempfile
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import ForeignKey, Integer, String, event, func, insert, inspect, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    mapped_column,
    reconstructor,
    relationship,
    with_loader_criteria,
)

from otpcore.domain.records import session_key, user_key
from otpcore.stores.sqlalchemy import (
    BaseOTPUserTable,
    SQLAlchemyAdapter,
    TokenBlacklist,
    _aiosqlite,
    create_sqlite_engine,
)
from tests.backends.sql_models import Base, Blacklist, User
from tests.backends.sqlite import sqlite_database


@contextmanager
def trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Trips to aiosqlite's threads while the block runs, by the function sent."""
    seen: Counter[str] = Counter()
    original: Any = aiosqlite.Connection._execute  # untyped in aiosqlite

    async def counted(connection: aiosqlite.Connection, fn: Any, *args: Any, **kw: Any) -> Any:
        seen[getattr(fn, "__name__", "?")] += 1
        seen["all"] += 1
        return await original(connection, fn, *args, **kw)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    try:
        yield seen
    finally:
        monkeypatch.undo()


@asynccontextmanager
async def recommended() -> AsyncIterator[AsyncEngine]:
    async with sqlite_database((Base, User, Blacklist), recommended=True) as engine:
        yield engine


async def _user(engine: AsyncEngine, email: str = "a@example.com") -> str:
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        account = await SQLAlchemyAdapter(session, User, Blacklist).create(email, {})
    return account.user_id


async def test_one_trip_per_statement_with_the_same_results(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with recommended() as engine:
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        async with sessions() as session:  # opens the connection (its own trips)
            await session.execute(select(func.count()).select_from(User))
        with trips(monkeypatch) as seen:
            async with sessions() as session:
                user = User(email="a@example.com")
                session.add(user)
                await session.flush()  # an INSERT: the new id comes back with it
                assert user.id is not None
                await session.execute(
                    insert(User), [{"email": f"u{n}@example.com"} for n in range(3)]
                )  # executemany
                result = await session.execute(
                    update(User).where(User.email.like("u%")).values(is_verified=True)
                )
                assert result.rowcount == 3  # type: ignore[attr-defined]
                emails = (await session.scalars(select(User.email).order_by(User.id))).all()
                await session.commit()
        assert emails == ["a@example.com", "u0@example.com", "u1@example.com", "u2@example.com"]
        # 4 statements, 1 trip each (the plain engine: 3 or 4 each), and the commit.
        assert seen["all"] == 5, seen
        assert seen["_run"] == 4


@pytest.mark.parametrize("recommended_engine", [False, True], ids=["plain", "recommended"])
async def test_long_and_streamed_results_are_whole(
    recommended_engine: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every row of a long result, however it is read: whole, streamed in partitions
    smaller and larger than a chunk, by fetchmany, and through the driver's own cursor."""
    total = 3000
    async with sqlite_database((Base, User, Blacklist), recommended=recommended_engine) as engine:
        await _user(engine)  # the adapter has seen the engine
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        async with sessions() as session:
            await session.execute(insert(User), [{"email": f"u{n}@x.org"} for n in range(total)])
            await session.commit()
        with trips(monkeypatch) as seen:
            async with sessions() as session:
                everything = (await session.scalars(select(User.id).order_by(User.id))).all()
        assert len(everything) == total + 1
        assert (seen["_run"], seen["_fetch"]) == (1, 1)  # the first chunk, then the rest
        for size in (50, 300, 1000):
            async with sessions() as session:
                streamed: list[int] = []
                stream = await session.stream_scalars(select(User.id).order_by(User.id))
                async for partition in stream.partitions(size):
                    streamed += partition
            assert streamed == everything, size
        async with engine.connect() as connection:
            result = await connection.stream(select(User.id).order_by(User.id))
            sizes = [len(batch) async for batch in result.partitions(1000)]
            assert sizes == [1000, 1000, 1000, 1]
            result = await connection.stream(select(User.id).order_by(User.id))
            first = await result.fetchmany(300)
            assert [row[0] for row in first] == everything[:300]
            await result.close()
        # The driver's cursor as aiosqlite's own is used: awaited, iterated, reused, closed.
        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            cursor = await raw.driver_connection.cursor()  # type: ignore[union-attr]
            await cursor.execute("SELECT id FROM users ORDER BY id", None)
            iterated = [row[0] async for row in cursor]
            await cursor.execute("SELECT id FROM users ORDER BY id")
            assert (await cursor.fetchone())[0] == everything[0]
            # The first result is still open on sqlite3's cursor: ended before the next.
            await cursor.executescript("CREATE TABLE scratch (x); DROP TABLE scratch;")
            cursor.row_factory = sqlite3.Row
            await cursor.execute("SELECT email FROM users WHERE id = ?", (everything[0],))
            row = await cursor.fetchone()
            await cursor.close()
        assert iterated == everything
        assert row["email"] == "a@example.com"


async def test_errors_are_the_drivers_and_leave_the_connection_usable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with recommended() as engine:
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        async with sessions() as session:
            session.add(User(email="a@example.com", username="taken"))
            await session.commit()
            session.add(User(email="b@example.com", username="taken"))
            with pytest.raises(IntegrityError) as raised:
                await session.commit()
            assert "UNIQUE constraint failed: users.username" in str(raised.value)
            await session.rollback()
            count = await session.scalar(select(func.count()).select_from(User))
        assert count == 1


@pytest.mark.parametrize("recommended_engine", [False, True], ids=["plain", "recommended"])
async def test_returning_counts_every_row(recommended_engine: bool) -> None:
    async with sqlite_database((Base, User, Blacklist), recommended=recommended_engine) as engine:
        await _user(engine)
        async with engine.begin() as connection:
            await connection.execute(insert(User), [{"email": f"u{n}@x.org"} for n in range(600)])
            result = await connection.execute(
                update(User).values(is_verified=True).returning(User.id)
            )
            ids = result.scalars().all()
            assert len(ids) == 601
            assert result.rowcount == 601


async def test_the_principal_read_makes_no_trip_and_keeps_the_busy_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with recommended() as engine:

        def patient(dbapi_connection: Any, record: Any) -> None:  # the application's own
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout = 30000")
            cursor.close()

        event.listen(engine.sync_engine, "connect", patient)
        await engine.dispose()  # new connections, with the listener
        user_id = await _user(engine)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        keys = ["j1", session_key("s1"), user_key(user_id)]
        with trips(monkeypatch) as seen:
            async with sessions() as session:
                store = SQLAlchemyAdapter(session, User, Blacklist)
                account, revoked = await store.load_principal(user_id, keys)
                connection = await session.connection()
                busy = (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar()
        assert account is not None
        assert account.email == "a@example.com"
        assert revoked == []
        assert seen["_run"] == 1  # the PRAGMA read above, not the principal
        assert busy == 30000  # as the application set it


@pytest.mark.parametrize(
    "code",
    [sqlite3.SQLITE_BUSY, 261, 517, sqlite3.SQLITE_LOCKED, 262],
    ids=["busy", "busy-recovery", "busy-snapshot", "locked", "locked-sharedcache"],
)
async def test_a_principal_read_sqlite_would_make_wait_goes_to_the_thread(
    code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLITE_BUSY for a WAL reader (another connection recovering the WAL, or holding the
    file in exclusive locking mode, which WAL connections' shared locks rule out here) cannot
    be produced on demand: injected, on the loop's thread only. The read then goes to
    aiosqlite's thread, succeeds there, and the busy timeout is as it was."""
    async with recommended() as engine:
        user_id = await _user(engine)
        loop_thread = threading.get_ident()
        run = _aiosqlite._run
        refused: list[str] = []

        def busy_on_the_loop(connection: sqlite3.Connection, *args: Any) -> Any:
            if threading.get_ident() == loop_thread:
                refused.append(args[0])
                error = sqlite3.OperationalError("database is locked")
                error.sqlite_errorcode = code
                raise error
            return run(connection, *args)

        monkeypatch.setattr(_aiosqlite, "_run", busy_on_the_loop)
        with trips(monkeypatch) as seen:
            async with async_sessionmaker(engine)() as session:
                store = SQLAlchemyAdapter(session, User, Blacklist)
                account, _ = await store.load_principal(user_id, ["j1"])
                connection = await session.connection()
                busy = (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar()
        assert account is not None
        assert account.email == "a@example.com"
        assert len(refused) == 1
        assert seen["busy_on_the_loop"] == 2  # the principal, then the PRAGMA
        assert busy == 5000


async def test_check_same_thread_keeps_every_read_on_the_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        engine = create_sqlite_engine(
            f"sqlite+aiosqlite:///{Path(directory) / 'otp.db'}",
            connect_args={"check_same_thread": True},
        )
        try:
            async with engine.begin() as connection:
                await connection.run_sync(Base.metadata.create_all)
            user_id = await _user(engine)
            with trips(monkeypatch) as seen:
                async with async_sessionmaker(engine)() as session:
                    account, _ = await SQLAlchemyAdapter(session, User, Blacklist).load_principal(
                        user_id, ["j1"]
                    )
            assert account is not None
            assert seen["_run"] == 1
        finally:
            await engine.dispose()


async def test_a_plain_engine_gets_one_trip_per_statement_and_no_inline_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The README's wiring (plain ``create_async_engine``): once an adapter has seen the
    engine, its connections make one trip per statement, the application's statements
    included, with the same results; reads stay on aiosqlite's thread (the engine keeps
    SQLite's defaults, where a reader can wait for a writer)."""
    async with sqlite_database((Base, User, Blacklist), recommended=False) as engine:
        user_id = await _user(engine)  # the adapter has seen the engine
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        with trips(monkeypatch) as seen:
            async with sessions() as session:
                account, _ = await SQLAlchemyAdapter(session, User, Blacklist).load_principal(
                    user_id, ["j1"]
                )
            async with sessions() as session:
                emails = (await session.scalars(select(User.email))).all()
        assert account is not None
        assert emails == ["a@example.com"]
        assert seen["_run"] == 2  # one each: the principal, the application's SELECT


# -- the principal's instance ------------------------------------------------------------------


async def test_the_principal_is_the_sessions_persistent_instance() -> None:
    async with recommended() as engine:
        user_id = await _user(engine)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        async with sessions() as session:
            store = SQLAlchemyAdapter(session, User, Blacklist)
            account, _ = await store.load_principal(user_id, ["j1"])
            assert account is not None
            user = account.user
            state = inspect(user)
            assert state.persistent
            assert not state.modified
            assert state.session is session.sync_session
            assert state.unloaded == set()  # every column loaded: nothing to lazy-load
            assert await session.get(User, int(user_id)) is user
            user.username = "renamed"  # the application's own change, flushed as usual
            await session.commit()
            # Already in the session: refreshed from the row, as populate_existing does.
            await session.execute(update(User).values(username="elsewhere"))
            await session.commit()
            again, _ = await store.load_principal(user_id, ["j1"])
            assert again is not None
            assert again.user is user
            assert user.username == "elsewhere"
        async with sessions() as session:
            assert await session.scalar(select(User.username)) == "elsewhere"


class _RichBase(DeclarativeBase):
    pass


class _Team(_RichBase):
    __tablename__ = "teams"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50), default="core")


class _RichUser(BaseOTPUserTable[int], _RichBase):
    """A model the ORM must load: an eager relationship and a reconstructor."""

    __tablename__ = "rich_users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))
    team: Mapped[_Team | None] = relationship(lazy="selectin")

    @reconstructor
    def _loaded(self) -> None:
        self.greeting = f"hello {self.email}"


class _RichBlacklist(TokenBlacklist, _RichBase):
    pass


class _SimpleUser(BaseOTPUserTable[int], _RichBase):
    __tablename__ = "simple_users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)


async def test_models_the_orm_must_load_are_loaded_by_it() -> None:
    loads: list[str] = []

    def on_load(target: Any, context: Any) -> None:
        loads.append(target.email)

    with tempfile.TemporaryDirectory() as directory:
        engine = create_sqlite_engine(f"sqlite+aiosqlite:///{Path(directory) / 'otp.db'}")
        try:
            async with engine.begin() as connection:
                await connection.run_sync(_RichBase.metadata.create_all)
            sessions = async_sessionmaker(engine, expire_on_commit=False)
            async with sessions() as session:
                session.add(_Team(id=1))
                session.add(_RichUser(id=5, email="a@example.com", team_id=1))
                session.add(_SimpleUser(id=6, email="b@example.com"))
                await session.commit()
            async with sessions() as session:
                rich, _ = await SQLAlchemyAdapter(
                    session, _RichUser, _RichBlacklist
                ).load_principal("5", ["j1"])
            assert rich is not None
            assert rich.user.greeting == "hello a@example.com"  # the reconstructor ran
            assert rich.user.team is not None  # eager
            assert rich.user.team.name == "core"
            # A listener added after the adapter first saw the model still hears the load.
            async with sessions() as session:
                store = SQLAlchemyAdapter(session, _SimpleUser, _RichBlacklist)
                assert (await store.load_principal("6", ["j1"]))[0] is not None
            event.listen(_SimpleUser, "load", on_load)
            try:
                async with sessions() as session:
                    store = SQLAlchemyAdapter(session, _SimpleUser, _RichBlacklist)
                    assert (await store.load_principal("6", ["j1"]))[0] is not None
            finally:
                event.remove(_SimpleUser, "load", on_load)
            assert loads == ["b@example.com"]
        finally:
            await engine.dispose()


class _NickBase(DeclarativeBase):
    pass


class _NickUser(BaseOTPUserTable[int], _NickBase):
    """A nullable column mapped before the primary key."""

    __tablename__ = "nick_users"
    nickname: Mapped[str | None] = mapped_column(String(50))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deleted: Mapped[bool] = mapped_column(default=False)


class _NickBlacklist(TokenBlacklist, _NickBase):
    pass


@asynccontextmanager
async def _nick_database() -> AsyncIterator[AsyncEngine]:
    with tempfile.TemporaryDirectory() as directory:
        engine = create_sqlite_engine(f"sqlite+aiosqlite:///{Path(directory) / 'otp.db'}")
        try:
            async with engine.begin() as connection:
                await connection.run_sync(_NickBase.metadata.create_all)
            async with async_sessionmaker(engine)() as session:
                session.add(_NickUser(id=7, email="a@example.com"))
                await session.commit()
            yield engine
        finally:
            await engine.dispose()


async def test_the_principal_is_found_whatever_column_comes_first() -> None:
    async with _nick_database() as engine, async_sessionmaker(engine)() as session:
        store = SQLAlchemyAdapter(session, _NickUser, _NickBlacklist)
        account, _ = await store.load_principal("7", ["j1"])
    assert account is not None
    assert account.user.nickname is None


async def test_the_principal_read_keeps_what_the_orm_query_would() -> None:
    """Pending changes are flushed first (the ORM query's autoflush), per-model binds are
    honoured, and session hooks that rewrite ORM queries (here a soft-delete filter with
    ``with_loader_criteria``) still apply: the user is then loaded by the ORM."""
    async with _nick_database() as engine:
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        async with sessions() as session:
            store = SQLAlchemyAdapter(session, _NickUser, _NickBlacklist)
            first, _ = await store.load_principal("7", ["j1"])
            assert first is not None
            first.user.nickname = "changed"  # not flushed
            again, _ = await store.load_principal("7", ["j1"])
            assert again is not None
            assert again.user.nickname == "changed"
        async with sessions() as session:
            assert await session.scalar(select(_NickUser.nickname)) == "changed"
        bound = async_sessionmaker(binds={_NickUser: engine, _NickBlacklist: engine})
        async with bound() as session:
            account, _ = await SQLAlchemyAdapter(session, _NickUser, _NickBlacklist).load_principal(
                "7", ["j1"]
            )
            assert account is not None
        async with sessions() as session:
            await session.execute(update(_NickUser).values(deleted=True))
            await session.commit()

        def hide_deleted(state: Any) -> None:
            if state.is_select:
                state.statement = state.statement.options(
                    with_loader_criteria(_NickUser, _NickUser.deleted.is_(False))
                )

        async with sessions() as session:
            event.listen(session.sync_session, "do_orm_execute", hide_deleted)
            account, _ = await SQLAlchemyAdapter(session, _NickUser, _NickBlacklist).load_principal(
                "7", ["j1"]
            )
        assert account is None  # the application's filter hid the deleted user
