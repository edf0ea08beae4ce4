"""A magic link is redeemed in one unit of work on SQL, as a right code is: the new account,
the spent link and the session are written together or not at all (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from otpcore.domain.errors import StorageError
from otpcore.domain.policy import Policy
from otpcore.domain.records import SessionRecord
from otpcore.service import OTPAuth
from otpcore.service.results import Login
from otpcore.stores.sqlalchemy import SQLAlchemyAdapter
from otpcore.testing.clock import FakeClock
from otpcore.testing.links import LinkInbox, link_token
from tests.backends.postgres import postgres_schema
from tests.backends.sql_models import Base, Blacklist, User
from tests.backends.sqlite import sqlite_database

DIALECTS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
EMAIL = "unit-link@example.com"


class _SessionsDown(SQLAlchemyAdapter[User]):
    """Fault injection: the session insert fails as a dropped connection would (a real
    database cannot be made to fail at that one statement on demand)."""

    async def open_session(self, session: SessionRecord) -> None:
        raise sa_exc.OperationalError("INSERT INTO sessions", {}, ConnectionError("gone"))


@asynccontextmanager
async def _engine(dialect: str) -> AsyncIterator[AsyncEngine]:
    if dialect == "sqlite":
        async with sqlite_database((Base, User, Blacklist), recommended=True) as engine:
            yield engine
    else:
        async with postgres_schema((Base, User, Blacklist)) as (engine, _):
            yield engine


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_failed_redeem_leaves_no_account_and_the_link_usable(dialect: str) -> None:
    inbox = LinkInbox()
    auth: OTPAuth[Any] = OTPAuth(
        policy=Policy(secret=b"s" * 32),
        store=None,
        sender=inbox,
        clock=FakeClock(),
        magic_link_url="https://app.example.com/auth/magic",
    )
    async with _engine(dialect) as engine:
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        async with sessions() as session:
            await auth.with_store(SQLAlchemyAdapter(session, User, Blacklist)).request_code(EMAIL)
        token = link_token(inbox.last(EMAIL))
        async with sessions() as session:
            with pytest.raises(StorageError):
                await auth.with_store(_SessionsDown(session, User, Blacklist)).redeem_link(token)
        async with sessions() as session:
            store = SQLAlchemyAdapter(session, User, Blacklist)
            assert await store.find_by_email(EMAIL) is None
            login = await auth.with_store(store).redeem_link(token)
            account = await store.find_by_email(EMAIL)
        assert isinstance(login, Login)
        assert account is not None
        assert account.is_verified is True
        assert login.user_id == account.user_id
