# mypy: ignore-errors
# ruff: noqa: B008 - Depends() defaults, as the README writes them
# Runs in the project's venv and in the baseline worktree's venv (bench/.venv-baseline), whose
# otpcore may predate names this module could otherwise import: public names only.
"""otpcore as an application wires it, for the flow benchmark (``bench/bench_flows.py``).

``BENCH_WIRING`` picks the store:

- ``readme-sqlite``: the README's Quick Start as written: plain
  ``create_async_engine("sqlite+aiosqlite:///…")``, a session dependency, an adapter
  dependency over it;
- ``sqlite-wal``: the same with the recommended ``create_sqlite_engine`` (WAL,
  ``synchronous=NORMAL``, a pool of 15 kept connections, reset only when a transaction is
  open);
- ``postgres``: ``create_async_engine`` on ``BENCH_DATABASE_URL`` (asyncpg);
- ``mongodb``: ``MongoDBAdapter`` over PyMongo's ``AsyncMongoClient`` (``BENCH_DATABASE_URL``
  is the server's URI, ``BENCH_MONGO_DB`` the database).

Settings beside the README's: the refresh token travels in the body
(``refresh_token_delivery = "body"``: the benchmark's client speaks plain http, where a
``Secure`` cookie would not come back), the secret comes from ``BENCH_SECRET``. The send and
guess limits keep their defaults (on: their counters are written as in production); the
benchmark sends each flow from its own loopback address (127.x.y.z), so none is throttled.
``send_otp`` is the README's: it prints the code, and the benchmark reads it from the
server's standard output (a pipe; ``PYTHONUNBUFFERED=1``).

Served by ``python -m uvicorn otpcore_app:make_app --factory --app-dir bench/flow_apps``.
"""

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import _instrument
from fastapi import Depends, FastAPI

from otpcore_fastapi import OTPAuthConfig, get_auth_router, get_current_user_dependency


class BenchConfig(OTPAuthConfig):
    secret_key = os.environ["BENCH_SECRET"]
    access_token_lifetime = timedelta(hours=1)
    refresh_token_delivery = "body"

    async def send_otp(self, email: str, code: str) -> None:
        # The README's sender, as one write: with --workers several processes share the
        # pipe, and print's separate write of the newline would let their lines interleave.
        print(f"OTP for {email}: {code}\n", end="")


def _sqlalchemy(wiring: str, url: str):
    from sqlalchemy import Integer
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

    from otpcore_fastapi import BaseOTPUserTable, SQLAlchemyAdapter, TokenBlacklist

    class Base(DeclarativeBase):
        pass

    class User(BaseOTPUserTable[int], Base):
        __tablename__ = "users"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)

    class Blacklist(TokenBlacklist, Base):
        pass

    if wiring == "sqlite-wal":
        from otpcore.stores.sqlalchemy import create_sqlite_engine

        engine = create_sqlite_engine(url)
    else:
        engine = create_async_engine(url)
    async_session_maker = async_sessionmaker(engine, expire_on_commit=False)

    async def get_async_session() -> AsyncIterator[AsyncSession]:
        async with async_session_maker() as session:
            yield session

    async def get_otp_db(
        session: AsyncSession = Depends(get_async_session),
    ) -> AsyncIterator[SQLAlchemyAdapter[User]]:
        yield SQLAlchemyAdapter(session, User, Blacklist)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for attempt in range(10):
            try:
                async with engine.begin() as connection:
                    await connection.run_sync(Base.metadata.create_all)
                break
            except Exception:  # --workers: another worker is creating the tables too
                if attempt == 9:
                    raise
                await asyncio.sleep(0.1 * (attempt + 1))
        yield
        await engine.dispose()

    return get_otp_db, lifespan, engine


def _mongodb(uri: str, name: str):
    from pymongo import AsyncMongoClient

    from otpcore_fastapi import BaseOTPUserDocument, MongoDBAdapter, TokenBlacklistDocument

    class User(BaseOTPUserDocument):
        pass

    class Blacklist(TokenBlacklistDocument):
        pass

    listeners = [_instrument.mongo_listener()] if _instrument.ENABLED else []
    client = AsyncMongoClient(uri, event_listeners=listeners)
    database = client[name]

    async def get_otp_db() -> MongoDBAdapter:
        return MongoDBAdapter(
            database=database,
            user_collection_name="users",
            blacklist_collection_name="token_blacklist",
            user_model_class=User,
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await client.close()

    return get_otp_db, lifespan, None


def make_app() -> FastAPI:
    """The app for ``BENCH_WIRING`` on ``BENCH_DATABASE_URL``."""
    wiring, url = os.environ["BENCH_WIRING"], os.environ["BENCH_DATABASE_URL"]
    if wiring == "mongodb":
        get_otp_db, lifespan, engine = _mongodb(url, os.environ["BENCH_MONGO_DB"])
    else:
        get_otp_db, lifespan, engine = _sqlalchemy(wiring, url)
    app = FastAPI(lifespan=lifespan)
    config = BenchConfig()
    app.include_router(get_auth_router(get_otp_db, config), prefix="/auth", tags=["auth"])
    current_user = Depends(get_current_user_dependency(get_otp_db, config))

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/me")
    async def me(user: Any = current_user) -> dict[str, Any]:
        return {"user_id": str(user.id), "email": user.email}

    _instrument.add_routes(app, "otpcore", engine)
    return app
