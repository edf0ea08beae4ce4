"""Cross-process proof on one PostgreSQL database: four worker processes, each with its own
engine and one session per task, hammer one account through :class:`otpcore.service.OTPAuth`:
per code at most ``max_attempts`` bound guesses (presenting the requester's binding) plus
``max_attempts`` unbound guesses (the address only) are evaluated, read back from the
``<blacklist>_challenges`` table (issue 8); codes are redeemed once; and (issue 10) concurrent
refreshes of one token share one successor inside the grace window while the store rotates
exactly once; after the window the same token ends the session.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from multiprocessing.managers import SyncManager
from typing import Any

import jwt
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from otpcore.domain.errors import AccountLocked, TokenRevoked
from otpcore.domain.records import SessionRecord
from otpcore.service import Login
from otpcore.stores.sqlalchemy import SQLAlchemyAdapter
from tests.backends.postgres import postgres_schema, postgres_url
from tests.backends.sql_models import Base, Blacklist, User
from tests.contract import sql_workers
from tests.contract.sql_workers import CORRECT_CODE, WRONG_CODE, Job, make_auth

pytestmark = [pytest.mark.postgres, pytest.mark.multiprocess]

WORKERS = 4
EMAIL = "target@example.com"


def _spread(total: int) -> list[int]:
    return [total // WORKERS + (index < total % WORKERS) for index in range(WORKERS)]


@pytest.fixture(scope="module")
def workers() -> Iterator[tuple[ProcessPoolExecutor, SyncManager]]:
    """Four spawned worker processes (started once for the module) and a barrier factory."""
    postgres_url()  # skip (or fail under CI) before spending time on spawning
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(WORKERS, mp_context=context) as pool:
        yield pool, manager


def _spawn(workers: tuple[ProcessPoolExecutor, SyncManager], jobs: list[Job]) -> list[str]:
    pool, manager = workers
    barrier = manager.Barrier(len(jobs))
    futures = [pool.submit(sql_workers.run, job, barrier) for job in jobs]
    outcomes = [outcome for future in futures for outcome in future.result(timeout=180)]
    crashes = [outcome for outcome in outcomes if outcome.startswith("crash")]
    assert not crashes, crashes[0]
    return outcomes


@asynccontextmanager
async def _schema() -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], str]]:
    async with postgres_schema((Base, User, Blacklist)) as (engine, schema):
        yield async_sessionmaker(engine, expire_on_commit=False), schema


async def _run(
    workers: tuple[ProcessPoolExecutor, SyncManager],
    schema: str,
    action: str,
    value: str,
    total: int,
    *,
    challenge_id: str | None = None,
    bound: int = 0,
) -> Counter[str]:
    """``total`` calls spread over the workers, the first ``bound`` of each worker's share
    presenting ``challenge_id``; the outcomes by kind (``"bound "`` + kind for bound ones)."""
    jobs = [
        Job(
            postgres_url(),
            schema,
            action,
            EMAIL,
            value,
            mine + unbound,
            challenge_id=challenge_id,
            bound=mine,
        )
        for mine, unbound in zip(_spread(bound), _spread(total - bound), strict=True)
    ]
    outcomes = await asyncio.to_thread(_spawn, workers, jobs)
    assert len(outcomes) == total
    return Counter(outcome.partition(":")[0] for outcome in outcomes)


async def _request(sessions: async_sessionmaker[AsyncSession]) -> str:
    """Ask for a code for :data:`EMAIL`; the requester's binding."""
    async with sessions() as session:
        auth = make_auth(SQLAlchemyAdapter(session, User, Blacklist))
        return (await auth.request_code(EMAIL)).challenge_id


async def _challenge_rows(
    sessions: async_sessionmaker[AsyncSession],
) -> list[tuple[str | None, int, int, int]]:
    """Every row of ``<blacklist>_challenges``: code hash, bound attempts, unbound attempts
    and the binding's failures, as stored."""
    table = Base.metadata.tables[f"{Blacklist.__tablename__}_challenges"]
    c = table.c
    async with sessions() as session:
        result = await session.execute(
            select(c.code_hash, c.attempts, c.unbound_attempts, c.failures)
        )
        return [(row[0], row[1], row[2], row[3]) for row in result]


async def _login(sessions: async_sessionmaker[AsyncSession]) -> Login[User]:
    async with sessions() as session:
        auth = make_auth(SQLAlchemyAdapter(session, User, Blacklist))
        await auth.request_code(EMAIL)
        login: Login[User] = await auth.verify_code(EMAIL, CORRECT_CODE)
        return login


async def test_200_wrong_guesses_from_4_processes_evaluate_at_most_max_attempts(
    workers: tuple[ProcessPoolExecutor, SyncManager],
) -> None:
    """100 bound and 100 unbound wrong guesses at one code, at once from 4 processes: each
    lane evaluates exactly ``max_attempts`` (issue 8), the table holds both counts, and the
    code is dead on both lanes afterwards."""
    async with _schema() as (sessions, schema):
        challenge_id = await _request(sessions)
        outcomes = await _run(
            workers, schema, "verify", WRONG_CODE, 200, challenge_id=challenge_id, bound=100
        )
        rows = await _challenge_rows(sessions)
        async with sessions() as session:
            auth = make_auth(SQLAlchemyAdapter(session, User, Blacklist))
            for binding in (challenge_id, None):
                with pytest.raises(AccountLocked):
                    await auth.verify_code(EMAIL, CORRECT_CODE, challenge_id=binding)
            users = await session.scalar(select(func.count()).select_from(User))
    max_attempts = auth.policy.max_attempts
    assert outcomes == {
        "bound CodeInvalid": max_attempts,
        "bound AccountLocked": 100 - max_attempts,
        "CodeInvalid": max_attempts,
        "AccountLocked": 100 - max_attempts,
    }
    assert len(rows) == 1
    code_hash, attempts, unbound_attempts, failures = rows[0]
    assert code_hash is not None
    assert (attempts, unbound_attempts) == (max_attempts, max_attempts)
    # Only bound guesses are the binding's failures (unbound ones never lock anyone out).
    assert failures == max_attempts
    assert users == 0  # no account before a verified login


async def test_unbound_wrong_guesses_from_4_processes_leave_the_bound_budget(
    workers: tuple[ProcessPoolExecutor, SyncManager],
) -> None:
    """200 unbound wrong guesses from 4 processes evaluate ``max_attempts`` and spend nothing
    of the binding's budget: the requester's code still logs in."""
    async with _schema() as (sessions, schema):
        challenge_id = await _request(sessions)
        outcomes = await _run(workers, schema, "verify", WRONG_CODE, 200)
        rows = await _challenge_rows(sessions)
        async with sessions() as session:
            auth = make_auth(SQLAlchemyAdapter(session, User, Blacklist))
            login = await auth.verify_code(EMAIL, CORRECT_CODE, challenge_id=challenge_id)
    max_attempts = auth.policy.max_attempts
    assert outcomes == {"CodeInvalid": max_attempts, "AccountLocked": 200 - max_attempts}
    assert len(rows) == 1
    code_hash, attempts, unbound_attempts, failures = rows[0]
    assert code_hash is not None
    assert (attempts, unbound_attempts, failures) == (0, max_attempts, 0)
    assert login.refresh_token


async def test_50_correct_submissions_from_4_processes_yield_one_login(
    workers: tuple[ProcessPoolExecutor, SyncManager],
) -> None:
    """25 bound and 25 unbound right codes at once from 4 processes: one login in all."""
    async with _schema() as (sessions, schema):
        challenge_id = await _request(sessions)
        outcomes = await _run(
            workers, schema, "verify", CORRECT_CODE, 50, challenge_id=challenge_id, bound=25
        )
        rows = await _challenge_rows(sessions)
        async with sessions() as session:
            user = await session.scalar(select(User))
            opened = await session.scalar(
                select(func.count()).select_from(
                    Base.metadata.tables[f"{Blacklist.__tablename__}_sessions"]
                )
            )
    assert outcomes["ok"] + outcomes["bound ok"] == 1
    assert set(outcomes) <= {"ok", "bound ok", "CodeInvalid", "bound CodeInvalid"}
    assert len(rows) == 1
    code_hash, attempts, unbound_attempts, failures = rows[0]
    # Consumed by exactly one evaluated guess, on whichever lane won.
    assert (code_hash, attempts + unbound_attempts, failures) == (None, 1, 0)
    assert user is not None
    assert user.is_verified is True
    assert user.otp_code is None
    assert opened == 1


def _claims(token: str) -> dict[str, Any]:
    # Only reads what the workers were given; the service verified it.
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


async def _refresh_everywhere(
    workers: tuple[ProcessPoolExecutor, SyncManager],
    schema: str,
    token: str,
    *,
    offset: float = 0.0,
    grace: float = 10.0,
) -> list[str]:
    jobs = [
        Job(postgres_url(), schema, "refresh", EMAIL, token, tasks, offset=offset, grace=grace)
        for tasks in _spread(40)
    ]
    return await asyncio.to_thread(_spawn, workers, jobs)


async def _stored_session(
    sessions: async_sessionmaker[AsyncSession], sid: str
) -> SessionRecord | None:
    async with sessions() as session:
        return await SQLAlchemyAdapter(session, User, Blacklist).find_session(sid)


async def test_refreshes_from_4_processes_share_one_successor_inside_the_grace_window(
    workers: tuple[ProcessPoolExecutor, SyncManager],
) -> None:
    """Issue 10: two tabs (here 40 tasks on 4 processes) refreshing one token at once all
    succeed, with one successor, and the store advanced the generation exactly once."""
    async with _schema() as (sessions, schema):
        login = await _login(sessions)
        sid = _claims(login.refresh_token)["sid"]
        outcomes = await _refresh_everywhere(workers, schema, login.refresh_token)
        assert [outcome.partition(":")[0] for outcome in outcomes] == ["ok"] * 40
        successors = [_claims(outcome.partition(":")[2]) for outcome in outcomes]
        assert {(claims["sid"], claims["gen"]) for claims in successors} == {(sid, 1)}
        assert len({claims["jti"] for claims in successors}) == 1
        stored = await _stored_session(sessions, sid)
        assert stored is not None
        assert (stored.generation, stored.ended_at) == (1, None)
        # The session lives on: the successor rotates once more.
        async with sessions() as session:
            auth = make_auth(SQLAlchemyAdapter(session, User, Blacklist))
            rotated = await auth.refresh(outcomes[0].partition(":")[2])
        assert _claims(rotated.refresh_token)["gen"] == 2


async def test_the_same_token_from_4_processes_after_the_window_ends_the_session(
    workers: tuple[ProcessPoolExecutor, SyncManager],
) -> None:
    async with _schema() as (sessions, schema):
        login = await _login(sessions)
        sid = _claims(login.refresh_token)["sid"]
        async with sessions() as session:
            successor = await make_auth(SQLAlchemyAdapter(session, User, Blacklist)).refresh(
                login.refresh_token
            )
        # 11 s later by every worker's clock: past the 10 s window, so reuse.
        outcomes = await _refresh_everywhere(workers, schema, login.refresh_token, offset=11)
        losers = Counter(outcome for outcome in outcomes)
        assert set(losers) <= {"RefreshReused", "TokenRevoked"}
        assert losers["RefreshReused"] >= 1
        stored = await _stored_session(sessions, sid)
        assert stored is not None
        assert stored.generation == 1
        assert stored.ended_at is not None
        # Reuse ended the whole session, so the successor is dead too.
        async with sessions() as session:
            auth = make_auth(SQLAlchemyAdapter(session, User, Blacklist), offset=11)
            with pytest.raises(TokenRevoked):
                await auth.refresh(successor.refresh_token)
            with pytest.raises(TokenRevoked):
                await auth.authenticate(successor.access_token)


async def test_strict_refreshes_from_4_processes_rotate_once(
    workers: tuple[ProcessPoolExecutor, SyncManager],
) -> None:
    """With no grace window (``refresh_grace=0``), the strict rule of before issue 10."""
    async with _schema() as (sessions, schema):
        login = await _login(sessions)
        outcomes = await _refresh_everywhere(workers, schema, login.refresh_token, grace=0)
        winners = [outcome.partition(":")[2] for outcome in outcomes if outcome.startswith("ok")]
        losers = Counter(outcome for outcome in outcomes if not outcome.startswith("ok"))
        assert len(winners) == 1
        assert set(losers) <= {"RefreshReused", "TokenRevoked"}
        assert losers["RefreshReused"] >= 1
        # Reuse revoked the whole session, so the winner's new token is dead too.
        async with sessions() as session:
            auth = make_auth(SQLAlchemyAdapter(session, User, Blacklist), grace=0)
            with pytest.raises(TokenRevoked):
                await auth.refresh(winners[0])
