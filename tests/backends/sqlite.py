"""SQLite file databases through aiosqlite, one fresh file per test.

Also home of :class:`SQLBackend`, which the PostgreSQL backends reuse: every ``store()``
handle is a new ``AsyncSession``, as a web app opens one per request.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from otpcore.ports import Store
from otpcore.stores.sqlalchemy import BaseOTPUserTable, SQLAlchemyAdapter, TokenBlacklist
from otpcore.testing.contract import Backend
from tests.backends import BackendSpec
from tests.backends.sql_models import Base, Blacklist, User, UuidBase, UuidBlacklist, UuidUser

__all__ = ["BACKENDS", "SQLBackend", "SQLModels", "sqlite_database", "sqlite_engine"]

SQLModels = tuple[type[DeclarativeBase], type[BaseOTPUserTable[Any]], type[TokenBlacklist]]


class SQLBackend:
    """A database with the models' tables; each handle is an adapter over a new session."""

    def __init__(
        self,
        name: str,
        engine: AsyncEngine,
        models: SQLModels,
        *,
        expire_on_commit: bool = False,
    ) -> None:
        self.name = name
        self.engine = engine
        _, self.user_model, self.blacklist_model = models
        self.sessions = async_sessionmaker(engine, expire_on_commit=expire_on_commit)

    @asynccontextmanager
    async def store(self) -> AsyncIterator[Store[Any]]:
        async with self.sessions() as session:
            yield SQLAlchemyAdapter(session, self.user_model, self.blacklist_model)


def sqlite_engine(path: Path) -> AsyncEngine:
    """An async engine on the SQLite file at ``path``."""
    return create_async_engine(f"sqlite+aiosqlite:///{path}")


@asynccontextmanager
async def sqlite_database(models: SQLModels) -> AsyncIterator[AsyncEngine]:
    """An engine on a new SQLite file holding the models' tables, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="otpcore-sqlite-") as directory:
        engine = sqlite_engine(Path(directory) / "otp.db")
        try:
            async with engine.begin() as connection:
                await connection.run_sync(models[0].metadata.create_all)
            yield engine
        finally:
            await engine.dispose()


def _opener(
    name: str, models: SQLModels, *, expire_on_commit: bool
) -> Callable[[], AbstractAsyncContextManager[Backend]]:
    @asynccontextmanager
    async def open_backend() -> AsyncIterator[Backend]:
        async with sqlite_database(models) as engine:
            yield SQLBackend(name, engine, models, expire_on_commit=expire_on_commit)

    return open_backend


# The integer-key variant uses SQLAlchemy's default expire_on_commit=True, the UUID variant
# the README's False: the adapter must work under both.
BACKENDS = [
    BackendSpec("sqlite", _opener("sqlite", (Base, User, Blacklist), expire_on_commit=True)),
    BackendSpec(
        "sqlite-uuid",
        _opener("sqlite-uuid", (UuidBase, UuidUser, UuidBlacklist), expire_on_commit=False),
    ),
]
