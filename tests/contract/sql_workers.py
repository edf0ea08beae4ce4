"""Worker processes for ``test_sql_multiprocess``: each has its own engine on one schema.

Every worker warms its connection pool, waits at a barrier shared with the other workers,
then runs its tasks concurrently (one ``AsyncSession`` each) and reports one outcome per task:
``"ok:<refresh token>"`` or the name of the exception raised, prefixed with ``"bound "`` for
the tasks that present the binding (issue 8: a bound and an unbound lane per code).
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from otpcore.domain.policy import Policy
from otpcore.ports import Store
from otpcore.service import OTPAuth
from otpcore.stores.sqlalchemy import SQLAlchemyAdapter
from tests.backends.sql_models import Blacklist, User

__all__ = ["Job", "make_auth", "run"]

CORRECT_CODE = "000000"
WRONG_CODE = "111111"


@dataclass(frozen=True, slots=True)
class Job:
    """What one worker process does.

    Attributes:
        url: PostgreSQL URL.
        schema: Schema holding the tables (the ``search_path`` of every connection).
        action: ``"verify"`` (``verify_code(email, value)``) or ``"refresh"``
            (``refresh(value)``).
        email: The account's e-mail.
        value: The code or the refresh token.
        tasks: How many concurrent calls this process makes.
        offset: Seconds added to the wall clock (a refresh "later" without sleeping).
        grace: The refresh grace window in seconds (``Policy.refresh_grace``).
        challenge_id: The binding ``request_code`` returned, for bound guesses.
        bound: How many of the ``tasks`` present ``challenge_id`` (bound guesses); the
            others send only the address and the code (unbound guesses).
    """

    url: str
    schema: str
    action: str
    email: str
    value: str
    tasks: int
    offset: float = 0.0
    grace: float = 10.0
    challenge_id: str | None = None
    bound: int = 0


def make_auth(
    store: Store[Any] | None, *, offset: float = 0.0, grace: float = 10.0
) -> OTPAuth[Any]:
    """The service every process runs: developer mode, so the right code is all zeros.

    Args:
        store: The storage handle, or ``None`` for a template to ``with_store``.
        offset: Seconds added to the wall clock.
        grace: The refresh grace window in seconds.
    """

    async def send(email: str, code: str) -> None:
        return None

    def clock() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=offset)

    policy = Policy(
        secret=b"multiprocess",
        developer_mode=True,
        resend_cooldown=timedelta(0),
        refresh_grace=timedelta(seconds=grace),
    )
    return OTPAuth(policy=policy, store=store, sender=send, clock=clock)


async def _work(job: Job, wait: Callable[[], Awaitable[object]]) -> list[str]:
    engine = create_async_engine(
        job.url,
        pool_size=job.tasks,
        max_overflow=0,
        connect_args={"server_settings": {"search_path": job.schema}},
    )
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    auth = make_auth(None, offset=job.offset, grace=job.grace)

    async def warm() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def one(index: int) -> str:
        binding = job.challenge_id if index < job.bound else None
        lane = "bound " if binding else ""
        async with sessions() as session:
            view = auth.with_store(SQLAlchemyAdapter(session, User, Blacklist))
            try:
                if job.action == "verify":
                    login = await view.verify_code(job.email, job.value, challenge_id=binding)
                else:
                    login = await view.refresh(job.value)
            except Exception as error:
                return lane + type(error).__name__
            return f"{lane}ok:{login.refresh_token}"

    try:
        await asyncio.gather(*(warm() for _ in range(job.tasks)))
        await wait()
        return list(await asyncio.gather(*(one(index) for index in range(job.tasks))))
    finally:
        await engine.dispose()


def run(job: Job, barrier: Any) -> list[str]:
    """Process entry point: the outcomes of ``job``, started together with the other workers.

    A crash is reported as a ``"crash: <traceback>"`` outcome rather than raised, so the test
    shows where it happened.
    """
    try:
        return asyncio.run(_work(job, lambda: asyncio.to_thread(barrier.wait, 60)))
    except BaseException:
        return ["crash: " + traceback.format_exc()]
