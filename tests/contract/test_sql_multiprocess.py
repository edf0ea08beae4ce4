"""Cross-process proof on one PostgreSQL database: four worker processes, each with its own
engine and one session per task, hammer one account through :class:`otpcore.service.OTPAuth`.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from multiprocessing.managers import SyncManager

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from otpcore.domain.errors import TokenRevoked
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
) -> Counter[str]:
    jobs = [Job(postgres_url(), schema, action, EMAIL, value, tasks) for tasks in _spread(total)]
    outcomes = await asyncio.to_thread(_spawn, workers, jobs)
    assert len(outcomes) == total
    return Counter(outcome.partition(":")[0] for outcome in outcomes)


async def _login(sessions: async_sessionmaker[AsyncSession]) -> Login[User]:
    async with sessions() as session:
        auth = make_auth(SQLAlchemyAdapter(session, User, Blacklist))
        await auth.request_code(EMAIL)
        login: Login[User] = await auth.verify_code(EMAIL, CORRECT_CODE)
        return login


async def test_200_wrong_guesses_from_4_processes_evaluate_at_most_max_attempts(
    workers: tuple[ProcessPoolExecutor, SyncManager],
) -> None:
    async with _schema() as (sessions, schema):
        async with sessions() as session:
            auth = make_auth(SQLAlchemyAdapter(session, User, Blacklist))
            await auth.request_code(EMAIL)
        outcomes = await _run(workers, schema, "verify", WRONG_CODE, 200)
        async with sessions() as session:
            attempts = await session.scalar(select(User.otp_attempts))
    max_attempts = auth.policy.max_attempts
    assert outcomes == {"CodeInvalid": max_attempts, "AccountLocked": 200 - max_attempts}
    assert attempts == max_attempts


async def test_50_correct_submissions_from_4_processes_yield_one_login(
    workers: tuple[ProcessPoolExecutor, SyncManager],
) -> None:
    async with _schema() as (sessions, schema):
        async with sessions() as session:
            await make_auth(SQLAlchemyAdapter(session, User, Blacklist)).request_code(EMAIL)
        outcomes = await _run(workers, schema, "verify", CORRECT_CODE, 50)
        async with sessions() as session:
            user = await session.scalar(select(User))
    assert outcomes == {"ok": 1, "CodeInvalid": 49}
    assert user is not None
    assert user.is_verified is True
    assert user.otp_code is None


async def test_concurrent_refreshes_from_4_processes_rotate_once(
    workers: tuple[ProcessPoolExecutor, SyncManager],
) -> None:
    async with _schema() as (sessions, schema):
        login = await _login(sessions)
        jobs = [
            Job(postgres_url(), schema, "refresh", EMAIL, login.refresh_token, tasks)
            for tasks in _spread(40)
        ]
        outcomes = await asyncio.to_thread(_spawn, workers, jobs)
        winners = [outcome.partition(":")[2] for outcome in outcomes if outcome.startswith("ok")]
        losers = Counter(outcome for outcome in outcomes if not outcome.startswith("ok"))
        assert len(winners) == 1
        assert set(losers) <= {"RefreshReused", "TokenRevoked"}
        assert losers["RefreshReused"] >= 1
        # Reuse revoked the whole session, so the winner's new token is dead too.
        async with sessions() as session:
            auth = make_auth(SQLAlchemyAdapter(session, User, Blacklist))
            with pytest.raises(TokenRevoked):
                await auth.refresh(winners[0])
