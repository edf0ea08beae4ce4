"""SQLite file databases through aiosqlite, one fresh file per test.

The integer-key backend runs on a plain ``create_async_engine`` (what an application has
before reading our docs), the UUID one on :func:`create_sqlite_engine` (what they recommend).
Also home of :class:`SQLBackend`, which the PostgreSQL backends reuse: every ``store()``
handle is a new ``AsyncSession``, as a web app opens one per request.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from otpcore.ports import Store
from otpcore.stores.sqlalchemy import (
    BaseOTPUserTable,
    SQLAlchemyAdapter,
    TokenBlacklist,
    create_sqlite_engine,
)
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
    async def store(
        self, *, clock: Callable[[], datetime] | None = None
    ) -> AsyncIterator[Store[Any]]:
        options = {} if clock is None else {"clock": clock}
        async with self.sessions() as session:
            yield SQLAlchemyAdapter(session, self.user_model, self.blacklist_model, **options)


def sqlite_engine(path: Path, *, recommended: bool = False) -> AsyncEngine:
    """An async engine on the SQLite file at ``path``: plain, or the recommended one."""
    url = f"sqlite+aiosqlite:///{path}"
    return create_sqlite_engine(url) if recommended else create_async_engine(url)


@asynccontextmanager
async def sqlite_database(
    models: SQLModels, *, recommended: bool = False
) -> AsyncIterator[AsyncEngine]:
    """An engine on a new SQLite file holding the models' tables, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="otpcore-sqlite-") as directory:
        engine = sqlite_engine(Path(directory) / "otp.db", recommended=recommended)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(models[0].metadata.create_all)
            yield engine
        finally:
            await engine.dispose()


def _opener(
    name: str, models: SQLModels, *, expire_on_commit: bool, recommended: bool
) -> Callable[[], AbstractAsyncContextManager[Backend]]:
    @asynccontextmanager
    async def open_backend() -> AsyncIterator[Backend]:
        async with sqlite_database(models, recommended=recommended) as engine:
            yield SQLBackend(name, engine, models, expire_on_commit=expire_on_commit)

    return open_backend


# The integer-key variant uses SQLAlchemy's default expire_on_commit=True and engine, the
# UUID variant the README's False and the recommended engine: the adapter must work under all.
BACKENDS = [
    BackendSpec(
        "sqlite",
        _opener("sqlite", (Base, User, Blacklist), expire_on_commit=True, recommended=False),
    ),
    BackendSpec(
        "sqlite-uuid",
        _opener(
            "sqlite-uuid",
            (UuidBase, UuidUser, UuidBlacklist),
            expire_on_commit=False,
            recommended=True,
        ),
    ),
]
