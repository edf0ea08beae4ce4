"""Fixture applications the CLI tests name with ``--app tests.cli.apps:NAME``.

Each attribute is one of the kinds ``--app`` accepts. The SQLite file comes from
``$OTPCORE_CLI_TEST_DB`` so that a test can seed it before running the command.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from otpcore import OTPAuth, Policy
from otpcore.cli import AppTarget
from otpcore.stores.memory import MemoryStore
from otpcore.stores.sqlalchemy import SQLAlchemyAdapter, create_sqlite_engine
from otpcore_fastapi import OTPAuthConfig
from tests.backends.sql_models import Blacklist, User

STRONG_SECRET = "9f2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c"  # 32 hex digits, 16 distinct characters


async def _drop(email: str, code: str) -> None:
    """A sender for apps that never send."""


def _auth(**policy: Any) -> OTPAuth[Any]:
    return OTPAuth(policy=Policy(**policy), store=MemoryStore(), sender=_drop)


#: Fit for production: strong secret, issuer and audience.
production_auth = _auth(secret=STRONG_SECRET.encode(), issuer="https://id.example", audience="api")

#: Developer mode with a short secret, no issuer or audience.
developer_auth = _auth(secret=b"dev", developer_mode=True)

#: Long enough, but made of two characters.
repetitive_auth = _auth(secret=b"ab" * 20, issuer="i", audience="a")


class InsecureCookieConfig(OTPAuthConfig):
    """A FastAPI binding config whose refresh cookie would travel over plain http."""

    secret_key = STRONG_SECRET
    issuer = "https://id.example"
    audience = "api"
    cookie_secure = False

    async def send_otp(self, email: str, code: str) -> None:
        """Never called."""


class ProductionConfig(InsecureCookieConfig):
    """The same config with the default (secure) cookie."""

    cookie_secure = True


insecure_config = InsecureCookieConfig()


def postgres_target(pool_size: int = 5, max_overflow: int = 10) -> AppTarget:
    """A production auth and a PostgreSQL engine (never connected: the check only sizes it)."""
    engine = create_async_engine(
        "postgresql+asyncpg://app@127.0.0.1:1/app", pool_size=pool_size, max_overflow=max_overflow
    )
    return AppTarget(auth=production_auth, engine=engine)


def small_pool() -> AppTarget:
    """Five connections per worker at most."""
    return postgres_target(pool_size=4, max_overflow=1)


async def unbounded_pool() -> AppTarget:
    """``max_overflow=-1``: no bound per worker (an async factory, to cover that kind)."""
    return postgres_target(max_overflow=-1)


@asynccontextmanager
async def sqlite_app() -> AsyncIterator[AppTarget]:
    """The SQLite file of ``$OTPCORE_CLI_TEST_DB``, opened per command and disposed after."""
    engine = create_sqlite_engine(f"sqlite+aiosqlite:///{os.environ['OTPCORE_CLI_TEST_DB']}")
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def get_otp_db() -> AsyncIterator[SQLAlchemyAdapter[User]]:
        async with sessions() as session:
            yield SQLAlchemyAdapter(session, User, Blacklist)

    auth: OTPAuth[User] = OTPAuth(
        policy=Policy(secret=STRONG_SECRET.encode()), store=None, sender=_drop
    )
    try:
        yield AppTarget(auth=auth, open_store=get_otp_db)
    finally:
        await engine.dispose()


not_an_app = 42


@asynccontextmanager
async def open_revocations() -> AsyncIterator[SQLAlchemyAdapter[User]]:
    """The store of ``$OTPCORE_CLI_TEST_DB``, outside any request (engine disposed after)."""
    engine = create_sqlite_engine(f"sqlite+aiosqlite:///{os.environ['OTPCORE_CLI_TEST_DB']}")
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            yield SQLAlchemyAdapter(session, User, Blacklist)
    finally:
        await engine.dispose()


class SourcedConfig(ProductionConfig):
    """A binding config that names its store for claims-only checks: what cleanup uses."""

    revocation_source = staticmethod(open_revocations)
