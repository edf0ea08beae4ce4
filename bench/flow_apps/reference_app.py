# mypy: ignore-errors
# ruff: noqa: B008 - Depends() defaults, as the README writes them
# Runs only in bench/.venv-reference (Python 3.12, fastapi-otp-authentication 0.2.0), so the
# project's mypy run cannot resolve these imports.
"""The reference library, fastapi-otp-authentication 0.2.0, on its README's SQLAlchemy wiring.

Its Quick Start's steps as published (a ``BaseOTPUserTable[int]`` user, the blacklist table,
plain ``create_async_engine("sqlite+aiosqlite:///…")``, a session dependency, an adapter
dependency, the router under ``/auth``, a route behind ``get_current_user_dependency``),
with what the benchmark needs changed: no ``username`` column (the reference's
auto-creation cannot fill it: the Quick Start's model fails its own first request-otp), the
refresh token in the body (``refresh_token_delivery = "body"``: plain http), the secret from
``BENCH_SECRET``. Its ``send_otp`` prints the code, as its README's does. The reference has
no send limits besides its 60 s per-user cooldown (every flow uses a new address).

Served by ``python -m uvicorn reference_app:make_app --factory --app-dir bench/flow_apps``.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import _instrument
from fastapi import Depends, FastAPI
from fastapi_otp_authentication import (
    BaseOTPUserTable,
    OTPAuthConfig,
    SQLAlchemyAdapter,
    TokenBlacklist,
    get_auth_router,
    get_current_user_dependency,
)
from sqlalchemy import Integer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(BaseOTPUserTable[int], Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)


class Blacklist(TokenBlacklist, Base):
    pass


class MyOTPConfig(OTPAuthConfig):
    secret_key = os.environ["BENCH_SECRET"]
    developer_mode = False
    refresh_token_delivery = "body"
    access_token_lifetime = timedelta(hours=1)
    refresh_token_lifetime = timedelta(days=7)
    otp_length = 6
    otp_expiry = timedelta(minutes=10)
    max_otp_attempts = 5

    async def send_otp(self, email: str, code: str) -> None:
        print(f"OTP for {email}: {code}")


def make_app() -> FastAPI:
    """The reference app on ``BENCH_DATABASE_URL`` (a SQLite file)."""
    engine = create_async_engine(os.environ["BENCH_DATABASE_URL"])
    async_session_maker = async_sessionmaker(engine, expire_on_commit=False)

    async def get_async_session() -> AsyncIterator[AsyncSession]:
        async with async_session_maker() as session:
            yield session

    async def get_otp_db(session: AsyncSession = Depends(get_async_session)):
        yield SQLAlchemyAdapter(session, User, Blacklist)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    config = MyOTPConfig()
    app.include_router(get_auth_router(get_otp_db, config), prefix="/auth", tags=["auth"])
    current_user = Depends(get_current_user_dependency(get_otp_db, config))

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/me")
    async def me(user: Any = current_user) -> dict[str, Any]:
        return {"user_id": str(user.id), "email": user.email}

    _instrument.add_routes(app, "fastapi_otp_authentication", engine)
    return app
