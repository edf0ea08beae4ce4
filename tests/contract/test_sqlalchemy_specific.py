"""What only the SQLAlchemy store promises, on SQLite and (when available) PostgreSQL.

Model configuration errors, the reference's adapter methods, statement counts on the hot
paths (observed with ``before_cursor_execute``) and, on SQLite, the driver's commits and
rollbacks behind them, rollback on failure, the wrapping of storage failures, and the
recommended SQLite engine. SQLite runs on a plain engine and on ``create_sqlite_engine``.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Engine, Integer, String, event, func, insert, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from otpcore.domain.codes import hash_code
from otpcore.domain.errors import ConfigurationError, StorageError
from otpcore.domain.policy import Policy
from otpcore.domain.records import ChallengeState, Revocation, RevocationKind, session_key, user_key
from otpcore.service import OTPAuth
from otpcore.stores.sqlalchemy import SQLAlchemyAdapter, UTCDateTime, create_sqlite_engine
from otpcore.testing.clock import FakeClock
from tests.backends.postgres import postgres_schema
from tests.backends.sql_models import (
    Base,
    Blacklist,
    StrictBase,
    StrictBlacklist,
    StrictUser,
    User,
    UuidBase,
    UuidBlacklist,
    UuidUser,
)
from tests.backends.sqlite import SQLModels, sqlite_database
from tests.net import free_port

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
HASH = hash_code(b"k" * 32, "a@example.com", "123456")
DIALECTS = ["sqlite", "sqlite-recommended", pytest.param("postgres", marks=pytest.mark.postgres)]


class _OtherBase(DeclarativeBase):
    pass


class _Plain(_OtherBase):
    """A user model that forgot the mixin."""

    __tablename__ = "plain"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(255))


@dataclass(slots=True)
class Database:
    """An engine over fresh tables, and sessions on it."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @asynccontextmanager
    async def adapter(self, **options: Any) -> AsyncIterator[SQLAlchemyAdapter[User]]:
        async with self.sessions() as session:
            yield SQLAlchemyAdapter(session, User, Blacklist, **options)

    @asynccontextmanager
    async def adapter_for(self, models: SQLModels) -> AsyncIterator[SQLAlchemyAdapter[Any]]:
        async with self.sessions() as session:
            yield SQLAlchemyAdapter(session, models[1], models[2])

    async def scalar(self, statement: Any) -> Any:
        async with self.sessions() as session:
            return (await session.execute(statement)).scalar()


@asynccontextmanager
async def _database(dialect: str, models: SQLModels) -> AsyncIterator[Database]:
    if dialect.startswith("sqlite"):
        async with sqlite_database(models, recommended=dialect == "sqlite-recommended") as engine:
            yield Database(engine, async_sessionmaker(engine, expire_on_commit=False))
    else:
        async with postgres_schema(models) as (engine, _):
            yield Database(engine, async_sessionmaker(engine, expire_on_commit=False))


@pytest.fixture(params=DIALECTS)
async def db(request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    """Integer-key tables (``User``, ``Blacklist``)."""
    async with _database(request.param, (Base, User, Blacklist)) as database:
        yield database


@pytest.fixture(params=DIALECTS)
async def strict_db(request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    """The reference README's tables, whose ``username`` is required."""
    async with _database(request.param, (StrictBase, StrictUser, StrictBlacklist)) as database:
        yield database


@pytest.fixture(params=DIALECTS)
async def uuid_db(request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    """UUID-key tables."""
    async with _database(request.param, (UuidBase, UuidUser, UuidBlacklist)) as database:
        yield database


@contextmanager
def statements(engine: AsyncEngine, isolation: list[str] | None = None) -> Iterator[list[str]]:
    """Every SQL statement sent to the database while the block runs.

    Args:
        engine: The engine to watch.
        isolation: Receives the isolation level each statement ran under ("" for default).
    """
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])
        if isolation is not None:
            isolation.append(args[0].get_execution_options().get("isolation_level", ""))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


@contextmanager
def driver_calls(monkeypatch: pytest.MonkeyPatch, engine: AsyncEngine) -> Iterator[Counter[str]]:
    """What reaches aiosqlite while the block runs: statements, commits, rollbacks.

    Each is a hop to the connection's thread. ``commit open`` counts the commits made while
    SQLite had a transaction open: the others are no-ops in ``sqlite3`` (it checks first).
    """
    calls: Counter[str] = Counter()
    commit, rollback = aiosqlite.Connection.commit, aiosqlite.Connection.rollback

    async def counted_commit(connection: aiosqlite.Connection) -> None:
        calls["commit"] += 1
        calls["commit open"] += connection.in_transaction
        await commit(connection)

    async def counted_rollback(connection: aiosqlite.Connection) -> None:
        calls["rollback"] += 1
        await rollback(connection)

    def execute(*args: Any) -> None:
        calls["statement"] += 1

    monkeypatch.setattr(aiosqlite.Connection, "commit", counted_commit)
    monkeypatch.setattr(aiosqlite.Connection, "rollback", counted_rollback)
    event.listen(engine.sync_engine, "before_cursor_execute", execute)
    try:
        yield calls
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", execute)
        monkeypatch.undo()


def _revocation(
    key: str, *, at: float = 0, ttl: float = 3600, kind: RevocationKind = RevocationKind.ACCESS
) -> Revocation:
    return Revocation(
        key=key,
        kind=kind,
        revoked_at=T0 + timedelta(seconds=at),
        expires_at=T0 + timedelta(seconds=at + ttl),
    )


async def _no_send(email: str, code: str) -> None:
    return None


# -- creating users --------------------------------------------------------------------------


async def test_required_column_without_hook_is_a_configuration_error(strict_db: Database) -> None:
    async with strict_db.adapter_for((StrictBase, StrictUser, StrictBlacklist)) as store:
        with pytest.raises(ConfigurationError, match="username") as raised:
            await store.create("a@example.com", {})
        assert "new_user_fields" in str(raised.value)
        auth = OTPAuth(
            policy=Policy(secret=b"dev", developer_mode=True), store=store, sender=_no_send
        )
        # Issue 8: a request creates no user; the first right code finds out, before the
        # code is spent (so the same code fails the same way, not as otp_invalid).
        request = await auth.request_code("b@example.com")
        for _ in range(2):
            with pytest.raises(ConfigurationError, match="new_user_fields"):
                await auth.verify_code("b@example.com", "000000", challenge_id=request.challenge_id)
    assert await strict_db.scalar(select(func.count()).select_from(StrictUser)) == 0


async def test_new_user_fields_hook_fills_required_columns(strict_db: Database) -> None:
    sent: list[str] = []

    async def send(email: str, code: str) -> None:
        sent.append(email)

    async with strict_db.adapter_for((StrictBase, StrictUser, StrictBlacklist)) as store:
        auth = OTPAuth(
            policy=Policy(secret=b"dev", developer_mode=True, resend_cooldown=timedelta(0)),
            store=store,
            sender=send,
            new_user_fields=lambda email: {"username": email.partition("@")[0]},
        )
        await auth.request_code("Carol@Example.com")
        login = await auth.verify_code("carol@example.com", "000000")
        created = await store.create("dave@example.com", {"username": "dave"})
    assert sent == ["carol@example.com"]
    assert isinstance(login.user, StrictUser)
    assert login.user.username == "carol"
    assert login.user.is_verified is True
    assert created.user.username == "dave"


async def test_fields_naming_no_attribute_are_a_configuration_error(db: Database) -> None:
    async with db.adapter() as store:
        with pytest.raises(ConfigurationError, match="nickname"):
            await store.create("a@example.com", {"nickname": "x"})


async def test_create_returns_the_application_model(uuid_db: Database) -> None:
    async with uuid_db.adapter_for((UuidBase, UuidUser, UuidBlacklist)) as store:
        account = await store.create("u@example.com", {})
        assert isinstance(account.user, UuidUser)
        # Filled by the server: reloaded after the INSERT, not lazily (impossible in async).
        assert account.user.role == "member"
        assert account.user_id == str(account.user.id)
        assert (await store.find_by_id(account.user_id)) is not None
        assert await store.find_by_id(account.user_id.upper()) is None
        assert await store.find_by_id(account.user_id.replace("-", "")) is None


async def test_only_canonical_integer_ids_are_found(db: Database) -> None:
    async with db.adapter() as store:
        account = await store.create("a@example.com", {})
        assert account.user_id == "1"
        assert await store.find_by_id("1") is not None
        for alias in ("01", " 1", "1 ", "+1", "1_0", "\u0661", "1.0", "9" * 30, "-" * 3):
            assert await store.find_by_id(alias) is None, alias
        # Beyond 32 bits is the wrong shape for an INTEGER key on PostgreSQL, not an error.
        assert await store.find_by_id(str(2**40)) is None
        assert await store.get_by_id("01") is None


# -- the reference's adapter methods ---------------------------------------------------------


async def test_update_otp_refuses_anything_but_a_code_hash(db: Database) -> None:
    async with db.adapter() as store:
        user = await store.create_user("a@example.com")
        user.username = "pending"
        for plaintext in ("123456", HASH.upper(), HASH[:-1], HASH + "0", "g" * 64, ""):
            with pytest.raises(ValueError, match="hash"):
                await store.update_otp(user, plaintext)
        # Refused before touching the database: the application's pending change survives.
        assert user in store.session.dirty
    assert await db.scalar(select(User.otp_code)) is None


async def test_reference_methods_write_atomically_and_bump_the_version(db: Database) -> None:
    clock = FakeClock()
    async with db.adapter(clock=clock) as store:
        user = await store.create_user("a@example.com", username="alice")
        assert user.username == "alice"
        assert await store.get_by_email("a@example.com") is user
        assert await store.get_by_email("nobody@example.com") is None
        assert await store.get_by_id(user.id) is user
        assert await store.get_by_id(str(user.id)) is user
        assert await store.get_by_id(999) is None

        await store.update_otp(user, HASH)
        assert (user.otp_code, user.otp_created_at, user.last_otp_request_at) == (HASH, T0, T0)
        assert (user.otp_attempts, user.otp_version) == (0, 1)
        await store.increment_otp_attempts(user)
        await store.increment_otp_attempts(user)
        assert (user.otp_attempts, user.otp_version) == (2, 3)
        await store.clear_otp(user)
        assert (user.otp_code, user.otp_created_at, user.otp_attempts) == (None, None, 0)
        assert (user.is_verified, user.otp_version) == (False, 4)
        await store.update_otp(user, HASH)
        await store.verify_user(user)
        assert (user.is_verified, user.otp_code, user.otp_version) == (True, None, 6)

    async with db.adapter() as fresh:
        account = await fresh.find_by_email("a@example.com")
    assert account is not None
    assert account.is_verified is True
    assert account.challenge == ChallengeState(
        attempts=0, last_request_at=T0, version=6, failures=0
    )


async def test_increments_from_many_sessions_are_never_lost(db: Database) -> None:
    async with db.adapter() as store:
        await store.create_user("a@example.com")

    async def increment() -> None:
        async with db.adapter() as store:
            user = await store.get_by_email("a@example.com")
            assert user is not None
            await store.increment_otp_attempts(user)

    await asyncio.gather(*(increment() for _ in range(20)))
    assert await db.scalar(select(User.otp_attempts)) == 20
    assert await db.scalar(select(User.otp_version)) == 20


async def test_blacklist_methods(db: Database) -> None:
    clock = FakeClock()
    async with db.adapter(clock=clock) as store:
        await store.add_to_blacklist("jti-1", "access", T0 + timedelta(seconds=10))
        await store.add_to_blacklist("jti-1", "access", T0 + timedelta(seconds=10))
        await store.add_to_blacklist("jti-2", "refresh", T0 + timedelta(seconds=100))
        assert await store.is_blacklisted("jti-1") is True
        assert await store.is_blacklisted("jti-3") is False
        [entry] = await store.find_revocations(["jti-1"])
        assert entry == Revocation(
            key="jti-1",
            kind=RevocationKind.ACCESS,
            revoked_at=T0,
            expires_at=T0 + timedelta(seconds=10),
        )
        assert await store.cleanup_blacklist() == 0
        clock.advance(10)
        assert await store.cleanup_blacklist() == 1
        clock.advance(1000)
        assert await store.cleanup_blacklist() == 1
        assert await store.is_blacklisted("jti-2") is False


# -- statement counts -------------------------------------------------------------------------


async def test_cleanup_is_one_delete_statement_per_table(db: Database) -> None:
    async with db.sessions() as session:
        await session.execute(
            insert(Blacklist),
            [
                {
                    "jti": f"j{index}",
                    "token_type": "access",
                    "blacklisted_at": T0,
                    "expires_at": T0 + timedelta(seconds=index % 2),
                }
                for index in range(500)
            ],
        )
        await session.commit()
    async with db.adapter(clock=lambda: T0) as store:
        with statements(db.engine) as seen:
            removed = await store.cleanup_blacklist()
    assert removed == 250
    # Issue 10: ended and expired sessions are purged too, by one more DELETE; issue 8:
    # expired pending challenges and limit counters, by one more each.
    assert len(seen) == 4
    assert all(statement.lstrip().upper().startswith("DELETE") for statement in seen)
    assert "token_blacklist_sessions" in seen[1]
    assert "token_blacklist_challenges" in seen[2]
    assert "token_blacklist_limits" in seen[3]


async def test_load_principal_is_one_statement(db: Database) -> None:
    async with db.adapter() as store:
        account = await store.create("a@example.com", {})
        await store.revoke(_revocation(session_key("s1")))
        await store.revoke(_revocation(user_key(account.user_id), kind=RevocationKind.USER))
        keys = ["j1", session_key("s1"), user_key(account.user_id)]
        isolation: list[str] = []
        with statements(db.engine, isolation) as seen:
            found, revoked = await store.load_principal(account.user_id, keys)
            missing, still_revoked = await store.load_principal("424242", keys)
            clean, nothing = await store.load_principal(account.user_id, ["j2"])
    assert len(seen) == 3
    assert all(statement.lstrip().upper().startswith("SELECT") for statement in seen)
    # On PostgreSQL no BEGIN/COMMIT round-trips either: one statement runs in autocommit.
    expected = "AUTOCOMMIT" if db.engine.dialect.name == "postgresql" else ""
    assert isolation == [expected] * 3
    assert found is not None
    assert found.user is account.user
    assert [entry.key for entry in revoked] == keys[1:]
    # Like the memory store, revocations are reported even when the user is gone.
    assert missing is None
    assert [entry.key for entry in still_revoked] == keys[1:]
    assert clean is not None
    assert nothing == []


@pytest.mark.parametrize("recommended", [False, True], ids=["plain-engine", "recommended-engine"])
async def test_sqlite_principal_is_one_statement_and_no_transaction_work(
    recommended: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The current-user hot path on SQLite with a clean session: one SELECT, and the commit
    ending the session's transaction is a no-op in sqlite3. On the recommended engine that
    commit never reaches aiosqlite (no thread hop), and the pool's reset-on-return rollback
    is skipped too: nothing is open to commit or roll back."""
    async with sqlite_database((Base, User, Blacklist), recommended=recommended) as engine:
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        async with sessions() as session:
            account = await SQLAlchemyAdapter(session, User, Blacklist).create("a@example.com", {})
        keys = ["j1", session_key("s1"), user_key(account.user_id)]
        for _ in range(2):  # the first call may open the connection and compile
            isolation: list[str] = []
            with (
                driver_calls(monkeypatch, engine) as calls,
                statements(engine, isolation) as seen,
            ):
                async with sessions() as session:
                    store = SQLAlchemyAdapter(session, User, Blacklist)
                    found, revoked = await store.load_principal(account.user_id, keys)
                    assert not session.in_transaction()
            assert found is not None
            assert revoked == []
            assert [statement.split()[0] for statement in seen] == ["SELECT"]
            assert isolation == [""]  # no switch to autocommit and back: hops on aiosqlite
            expected = {
                "statement": 1,
                "commit": 0 if recommended else 1,
                "rollback": 0 if recommended else 1,
            }
            assert {name: calls[name] for name in expected} == expected
            assert calls["commit open"] == 0


async def test_hot_path_sql_is_compiled_once(db: Database) -> None:
    """The revocation keys are fixed parameters: the SQL sent is the compiled text itself,
    never re-rendered per call (as an expanding ``IN`` would be), whatever the key count."""
    sent: list[tuple[str, str]] = []

    def record(*args: Any) -> None:
        sent.append((args[2], args[4].compiled.string))

    async with db.adapter() as store:
        account = await store.create("a@example.com", {})
        for key in ("a", "b", "c", "d", "e"):
            await store.revoke(_revocation(key))
        event.listen(db.engine.sync_engine, "before_cursor_execute", record)
        try:
            for count in range(1, 5):
                keys = ["a", "x", "b", "y"][:count]
                _, revoked = await store.load_principal(account.user_id, keys)
                assert [entry.key for entry in revoked] == [k for k in keys if k in "ab"]
                found = await store.find_revocations(keys)
                assert [entry.key for entry in found] == [k for k in keys if k in "ab"]
        finally:
            event.remove(db.engine.sync_engine, "before_cursor_execute", record)
        # More keys than slots, and repeated keys, still work (an expanding IN).
        many = ["e", "a", "z", "e", "b", "q", "d", "c"]
        _, revoked = await store.load_principal(account.user_id, many)
        assert [entry.key for entry in revoked] == ["e", "a", "b", "d", "c"]
        found = await store.find_revocations(many)
        assert [entry.key for entry in found] == ["e", "a", "b", "d", "c"]
        _, revoked = await store.load_principal(account.user_id, ["a", "a", "a", "a", "a"])
        assert [entry.key for entry in revoked] == ["a"]
    assert len(sent) == 8
    assert all(statement == compiled for statement, compiled in sent)
    principal = {statement for statement, _ in sent[0::2]}
    revocations = {statement for statement, _ in sent[1::2]}
    assert len(principal) == len(revocations) == 1


async def test_revocation_check_is_one_in_query(db: Database) -> None:
    async with db.adapter() as store:
        for key in ("a", "b", "c"):
            await store.revoke(_revocation(key))
        with statements(db.engine) as seen:
            found = await store.find_revocations(["c", "x", "a"])
            assert await store.find_revocations([]) == []
    assert [entry.key for entry in found] == ["c", "a"]
    assert len(seen) == 1
    assert " IN " in seen[0].upper()


async def test_save_challenge_is_one_conditional_update(db: Database) -> None:
    async with db.adapter() as store:
        account = await store.create("a@example.com", {})
        state = ChallengeState(code_hash=HASH, issued_at=T0, version=1)
        with statements(db.engine) as seen:
            assert await store.save_challenge(account.user_id, expected_version=0, state=state)
    assert len(seen) == 1
    assert "otp_version" in seen[0].partition("WHERE")[2]


# -- sessions ---------------------------------------------------------------------------------


async def test_loaded_objects_stay_usable_under_expire_on_commit(db: Database) -> None:
    sessions = async_sessionmaker(db.engine, expire_on_commit=True)
    async with sessions() as session:
        store = SQLAlchemyAdapter(session, User, Blacklist)
        account = await store.create("a@example.com", {"username": "alice"})
        state = ChallengeState(code_hash=HASH, issued_at=T0, attempts=1, version=1)
        assert await store.save_challenge(
            account.user_id, expected_version=0, state=state, mark_verified=True
        )
        assert not session.in_transaction()
        user = account.user
        # Attribute access would raise MissingGreenlet if any of these had been expired.
        assert (user.username, user.is_verified, user.otp_code, user.otp_version) == (
            "alice",
            True,
            HASH,
            1,
        )
        assert user not in session.dirty
        reloaded = await store.find_by_email("a@example.com")
        assert reloaded is not None
        assert reloaded.challenge == state


async def test_reads_see_writes_from_other_sessions(db: Database) -> None:
    async with db.adapter() as mine, db.adapter() as theirs:
        account = await mine.create("a@example.com", {})
        assert account.challenge.version == 0
        state = ChallengeState(code_hash=HASH, issued_at=T0, version=1)
        assert await theirs.save_challenge(account.user_id, expected_version=0, state=state)
        again = await mine.find_by_id(account.user_id)
        # Reads end their transaction too: on SQLite a held one would block other writers.
        assert not mine.session.in_transaction()
        assert again is not None
        assert again.challenge.version == 1
        assert again.user is account.user
        principal, _ = await mine.load_principal(account.user_id, [])
        assert principal is not None
        assert principal.challenge == state


async def test_pending_changes_are_flushed_and_committed_in_one_transaction(
    db: Database,
) -> None:
    async with db.sessions() as session:
        store = SQLAlchemyAdapter(session, User, Blacklist)
        session.add(User(email="pending@example.com", username="p"))
        isolation: list[str] = []
        with statements(db.engine, isolation) as seen:
            found = await store.find_by_email("pending@example.com")
        assert found is not None
        assert [statement.split()[0] for statement in seen] == ["INSERT", "SELECT"]
        # Never autocommit while the application has pending changes.
        assert isolation == ["", ""]
        assert not session.in_transaction()
    assert await db.scalar(select(func.count()).select_from(User)) == 1


async def test_a_failed_write_rolls_back_and_leaves_the_session_usable(db: Database) -> None:
    async with db.adapter() as store:
        await store.create("a@example.com", {"username": "taken"})
        with pytest.raises(StorageError) as raised:
            await store.create("b@example.com", {"username": "taken"})
        assert raised.value.__cause__ is not None
        assert not store.session.in_transaction()
        # The application's own pending change fails at flush inside a call: same outcome.
        store.session.add(User(email="a@example.com"))
        with pytest.raises(StorageError):
            await store.find_by_email("a@example.com")
        assert not store.session.in_transaction()
        created = await store.create("c@example.com", {"username": "free"})
        assert created.user_id
    async with db.sessions() as session:
        emails = (await session.scalars(select(User.email).order_by(User.email))).all()
    assert emails == ["a@example.com", "c@example.com"]


async def test_concurrent_logout_all_keeps_the_latest_cutoff(db: Database) -> None:
    async def revoke_all(index: int) -> None:
        async with db.adapter() as store:
            await store.revoke_user(
                "7",
                at=T0 + timedelta(seconds=index),
                expires_at=T0 + timedelta(seconds=1000 - index),
            )

    order = [5, 19, 0, 11, 3, 17, 8, 14, 1, 12, 6, 18, 2, 9, 16, 4, 13, 10, 15, 7]
    await asyncio.gather(*(revoke_all(index) for index in order))
    async with db.adapter() as store:
        [entry] = await store.find_revocations([user_key("7")])
    assert (entry.kind, entry.revoked_at, entry.expires_at) == (
        "user",
        T0 + timedelta(seconds=19),
        T0 + timedelta(seconds=1000),
    )


async def test_datetimes_are_stored_as_utc_whatever_the_offset(db: Database) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = T0.astimezone(plus_two)
    naive = T0.replace(tzinfo=None)
    async with db.adapter() as store:
        await store.revoke(
            Revocation(key="tz", kind=RevocationKind.ACCESS, revoked_at=local, expires_at=naive)
        )
        [entry] = await store.find_revocations(["tz"])
    assert entry.revoked_at == T0
    assert entry.expires_at == T0
    assert entry.revoked_at.tzinfo is UTC
    assert entry.expires_at.tzinfo is UTC
    assert UTCDateTime().process_result_value(local, db.engine.dialect) == T0


# -- storage failures -------------------------------------------------------------------------


async def _join_new_aiosqlite_threads(before: set[threading.Thread]) -> None:
    """Wait until the aiosqlite worker threads started since ``before`` have exited.

    A failed aiosqlite connect stops its worker thread without awaiting it (aiosqlite 0.22,
    ``Connection._connect``): the thread later hands its last result to the loop that asked.
    Once the test's loop is closed, that hand-over raises inside the thread, and pytest fails
    whichever test runs at that moment (it happened in CI). Joined here, it lands while this
    test's loop still runs."""
    started = [
        t
        for t in threading.enumerate()
        if t not in before and "_connection_worker_thread" in t.name
    ]
    for thread in started:
        await asyncio.to_thread(thread.join, 10)
    assert not [t for t in started if t.is_alive()]
    await asyncio.sleep(0)  # run the callbacks the threads scheduled


@pytest.mark.parametrize("target", ["postgres-unreachable", "sqlite-missing-directory"])
async def test_storage_failure_is_a_storage_error_with_its_cause(target: str) -> None:
    threads = set(threading.enumerate())
    with tempfile.TemporaryDirectory() as directory:
        if target == "postgres-unreachable":
            url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/postgres"
        else:
            url = f"sqlite+aiosqlite:///{Path(directory) / 'gone' / 'otp.db'}"
        engine = create_engine(url)
        try:
            async with async_sessionmaker(engine)() as session:
                store = SQLAlchemyAdapter(session, User, Blacklist)
                with pytest.raises(StorageError) as raised:
                    await store.find_by_email("a@example.com")
                assert raised.value.__cause__ is not None
                assert raised.value.code == "storage_unavailable"
                with pytest.raises(StorageError):
                    await store.revoke(_revocation("x"))
        finally:
            await engine.dispose()
            await _join_new_aiosqlite_threads(threads)


async def test_sqlite_error_cause_is_the_driver_error() -> None:
    with tempfile.TemporaryDirectory() as directory:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(directory) / 'otp.db'}")
        try:
            async with engine.begin() as connection:
                await connection.execute(text("CREATE TABLE users (id INTEGER PRIMARY KEY)"))
            async with async_sessionmaker(engine)() as session:
                store = SQLAlchemyAdapter(session, User, Blacklist)
                with pytest.raises(StorageError) as raised:
                    await store.find_by_email("a@example.com")
            assert isinstance(raised.value.__cause__, OperationalError)
        finally:
            await engine.dispose()


def test_models_without_the_mixins_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="BaseOTPUserTable"):
        SQLAlchemyAdapter(AsyncSession(), _Plain, Blacklist)  # type: ignore[type-var]


# -- the recommended SQLite engine ------------------------------------------------------------


async def test_recommended_sqlite_engine_settings() -> None:
    with tempfile.TemporaryDirectory() as directory:
        engine = create_sqlite_engine(f"sqlite+aiosqlite:///{Path(directory) / 'otp.db'}")
        full = create_sqlite_engine(
            f"sqlite+aiosqlite:///{Path(directory) / 'full.db'}", synchronous="FULL"
        )
        try:
            async with engine.connect() as connection:
                mode = (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar()
                level = (await connection.exec_driver_sql("PRAGMA synchronous")).scalar()
            async with full.connect() as connection:
                full_level = (await connection.exec_driver_sql("PRAGMA synchronous")).scalar()
            assert (mode, level, full_level) == ("wal", 1, 2)  # NORMAL, FULL
            # The same 15 connections at most as SQLAlchemy's default, all of them kept.
            async with AsyncExitStack() as stack:
                for _ in range(15):
                    await stack.enter_async_context(engine.connect())
            assert (engine.pool.size(), engine.pool.checkedin()) == (15, 15)  # type: ignore[attr-defined]
        finally:
            await engine.dispose()
            await full.dispose()


async def test_recommended_sqlite_engine_still_rolls_back_an_open_transaction() -> None:
    """A connection returned with a transaction open (here: behind SQLAlchemy's back) is
    rolled back by the reset, and so releases SQLite's write lock."""
    async with sqlite_database((Base, User, Blacklist), recommended=True) as engine:
        drivers: list[aiosqlite.Connection] = []

        def leave_open(sync_engine: Engine) -> None:
            raw = sync_engine.raw_connection()
            cursor = raw.cursor()
            cursor.execute("INSERT INTO users (email) VALUES ('left@example.com')")
            cursor.close()
            drivers.append(raw.driver_connection)  # type: ignore[arg-type]
            assert drivers[0].in_transaction
            raw.close()  # back to the pool, uncommitted

        async with engine.connect() as connection:
            await connection.run_sync(lambda sync: leave_open(sync.engine))
        assert not drivers[0].in_transaction
        async with async_sessionmaker(engine)() as session:
            store = SQLAlchemyAdapter(session, User, Blacklist)
            await store.create("b@example.com", {})  # would wait on the lock otherwise
            count = await session.scalar(select(func.count()).select_from(User))
        assert count == 1


async def test_recommended_sqlite_engine_commits_and_rolls_back_only_open_transactions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its connections send a commit or a rollback to aiosqlite's thread only when SQLite has
    a transaction open: a read's end costs no trip, while a write still commits (seen from
    another connection) and a failed write still rolls back."""
    async with sqlite_database((Base, User, Blacklist), recommended=True) as engine:
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        async with sessions() as session:
            await session.execute(select(func.count()).select_from(User))
            await session.commit()
            await session.execute(select(func.count()).select_from(User))
            await session.rollback()
        with driver_calls(monkeypatch, engine) as calls:
            async with sessions() as session:  # a read, ended both ways: no trips
                await session.execute(select(func.count()).select_from(User))
                await session.commit()
                await session.execute(select(func.count()).select_from(User))
                await session.rollback()
            assert (calls["statement"], calls["commit"], calls["rollback"]) == (2, 0, 0)
            async with sessions() as session:  # a write: committed
                await session.execute(insert(User).values(email="kept@example.com"))
                await session.commit()
            assert (calls["commit"], calls["commit open"]) == (1, 1)
            async with sessions() as session:  # a write rolled back: gone
                await session.execute(insert(User).values(email="gone@example.com"))
                await session.rollback()
            assert calls["rollback"] == 1
        async with engine.connect() as other:
            emails = (await other.execute(select(User.email))).scalars().all()
        assert emails == ["kept@example.com"]


async def test_recommended_sqlite_engine_arguments() -> None:
    secret = "postgresql+asyncpg://user:hunter2@127.0.0.1/db"
    with pytest.raises(ConfigurationError, match="postgresql") as raised:
        create_sqlite_engine(secret)
    assert "hunter2" not in str(raised.value)
    with pytest.raises(ConfigurationError, match="synchronous"):
        create_sqlite_engine("sqlite+aiosqlite://", synchronous="OFF")  # type: ignore[arg-type]
    # In memory, SQLAlchemy picks a static pool, which has no size to set; options override.
    memory = create_sqlite_engine("sqlite+aiosqlite://")
    with tempfile.TemporaryDirectory() as directory:
        small = create_sqlite_engine(
            f"sqlite+aiosqlite:///{Path(directory) / 'otp.db'}", pool_size=2, max_overflow=1
        )
        try:
            async with memory.connect() as connection:
                assert (await connection.exec_driver_sql("SELECT 1")).scalar() == 1
            assert small.pool.size() == 2  # type: ignore[attr-defined]
        finally:
            await memory.dispose()
            await small.dispose()


async def test_a_session_bound_per_model_gets_the_dialects_statements(db: Database) -> None:
    """A session made with ``binds=`` (no ``bind``) is on the same database as one made with
    ``bind=``: conflicts are skipped by ``ON CONFLICT`` inside a unit instead of aborting
    it, and a lone read on PostgreSQL runs in autocommit."""
    per_model = async_sessionmaker(
        binds={User: db.engine, Blacklist: db.engine}, expire_on_commit=False
    )
    isolation: list[str] = []
    async with per_model() as session:
        store = SQLAlchemyAdapter(session, User, Blacklist)
        with statements(db.engine, isolation) as sent:
            async with store.transaction():
                assert await store.revoke(_revocation("first")) is True
                assert await store.revoke(_revocation("first", at=5)) is False
                assert await store.revoke_many([_revocation("second"), _revocation("first")]) == [
                    True,
                    False,
                ]
            assert await store.find_by_email("nobody@example.com") is None
    async with db.adapter() as store:
        found = await store.find_revocations(["first", "second"])
    assert sorted((entry.key, entry.revoked_at) for entry in found) == [
        ("first", T0),
        ("second", T0),
    ]
    assert sum("ON CONFLICT DO NOTHING" in statement for statement in sent) == 3
    if db.engine.dialect.name == "postgresql":
        assert isolation[-1] == "AUTOCOMMIT"


async def test_revoke_many_without_insert_returning_inserts_one_key_at_a_time(
    db: Database,
) -> None:
    """SQLite before 3.35 has no ``INSERT … RETURNING``: each key is its own conditional
    insert, so the answers stay exact."""
    db.engine.sync_engine.dialect.insert_returning = False  # as an old SQLite reports
    async with db.adapter() as store:
        assert await store.revoke(_revocation("held")) is True
        with statements(db.engine) as seen:
            answers = await store.revoke_many(
                [_revocation("new"), _revocation("held"), _revocation("new")]
            )
    inserts = [statement for statement in seen if statement.upper().startswith("INSERT")]
    assert answers == [True, False, False]
    assert len(inserts) == 2
    assert not any("RETURNING" in statement.upper() for statement in seen)


@pytest.mark.parametrize("per", ["model", "base"])
async def test_a_whole_login_runs_on_sessions_bound_per_model(db: Database, per: str) -> None:
    """``binds=`` names the models (or their declarative base), never the companion tables
    (sessions, pending codes, limit counters): the adapter runs those statements on the user
    model's engine."""
    binds: dict[Any, AsyncEngine] = (
        {User: db.engine, Blacklist: db.engine} if per == "model" else {Base: db.engine}
    )
    per_model = async_sessionmaker(binds=binds, expire_on_commit=False)
    auth: OTPAuth[Any] = OTPAuth(
        policy=Policy(secret=b"dev", developer_mode=True), store=None, sender=_no_send
    )

    @asynccontextmanager
    async def service() -> AsyncIterator[OTPAuth[Any]]:
        async with per_model() as session:
            yield auth.with_store(SQLAlchemyAdapter(session, User, Blacklist))

    async with service() as step:
        request = await step.request_code("bound@example.com", ip="192.0.2.1")
    async with service() as step:
        login = await step.verify_code(
            "bound@example.com", "000000", challenge_id=request.challenge_id, ip="192.0.2.1"
        )
    async with service() as step:
        renewed = await step.refresh(login.refresh_token)
    async with service() as step:
        assert await step.logout(renewed.refresh_token, access_token=renewed.access_token)
    async with db.adapter() as store:
        account = await store.find_by_email("bound@example.com")
        sessions = await store.list_sessions(login.user_id, now=datetime.now(UTC))
    assert account is not None
    assert account.is_verified is True
    assert sessions == []


async def test_concurrent_revoke_many_in_crossed_orders_never_deadlock(db: Database) -> None:
    """Two calls sharing keys, given in opposite orders: each key is written by exactly one,
    and neither waits on the other's rows (on PostgreSQL a deadlock would kill one). The
    sessions are connected first, so that both inserts reach the server together."""
    keys = [f"k-{index:03d}" for index in range(500)]
    for round_ in range(20):
        async with db.sessions() as first, db.sessions() as second:
            for session in (first, second):
                await session.execute(select(1))
                await session.commit()
            forward, backward = await asyncio.gather(
                *(
                    SQLAlchemyAdapter(session, User, Blacklist).revoke_many(
                        [_revocation(f"{round_}-{key}") for key in order]
                    )
                    for session, order in ((first, keys), (second, keys[::-1]))
                )
            )
        assert [a + b for a, b in zip(forward, backward[::-1], strict=True)] == [1] * len(keys)
