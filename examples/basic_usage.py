"""The SQLAlchemy Quick Start as one runnable app: ``python examples/basic_usage.py``.

It is the reference README's Quick Start with the import changed to ``otpcore_fastapi``,
plus what running it locally needs: the secret from ``OTP_SECRET_KEY`` (the reference's
placeholder is refused), tables created at startup, a ``new_user_fields`` hook for the
required ``username`` of auto-created users, and ``cookie_secure = False`` because
http://127.0.0.1 is not https. Codes are printed to the terminal. Then open
http://127.0.0.1:8000/docs (``--host`` and ``--port`` change where it listens).
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI
from sqlalchemy import Integer, String
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from otpcore_fastapi import (
    BaseOTPUserTable,
    OTPAuthConfig,
    SQLAlchemyAdapter,
    TokenBlacklist,
    get_auth_router,
    get_current_user_dependency,
    get_custom_claims_dependency,
    get_verified_user_dependency,
)

# 1. Models


class Base(DeclarativeBase):
    pass


class User(BaseOTPUserTable[int], Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(255), unique=True)


class Blacklist(TokenBlacklist, Base):
    pass


# 2. Configuration


class MyOTPConfig(OTPAuthConfig):
    # From the environment (openssl rand -hex 32), the same on every host; without it a
    # secret made for this process only, so tokens stop working when it restarts.
    secret_key = os.environ.get("OTP_SECRET_KEY") or secrets.token_hex(32)
    developer_mode = False
    cookie_secure = False  # local http only; keep the default (True) behind https

    access_token_lifetime = timedelta(hours=1)
    refresh_token_lifetime = timedelta(days=7)

    otp_length = 6
    otp_expiry = timedelta(minutes=10)
    max_otp_attempts = 5

    async def send_otp(self, email: str, code: str) -> None:
        """Deliver the code; here, print it."""
        print(f"OTP for {email}: {code}")

    def get_additional_claims(self, user: User) -> dict[str, Any]:
        """Custom claims in every access token."""
        return {"username": user.username}

    def new_user_fields(self, email: str) -> dict[str, Any]:
        """``username`` is required; auto-created users get their e-mail."""
        return {"username": email}


# 3. Database and dependencies

engine = create_async_engine("sqlite+aiosqlite:///./app.db")
async_session_maker = async_sessionmaker(engine, expire_on_commit=False)


async def get_async_session() -> AsyncIterator[AsyncSession]:
    async with async_session_maker() as session:
        yield session


async def get_otp_db(
    session: AsyncSession = Depends(get_async_session),  # noqa: B008 - FastAPI's idiom
) -> AsyncIterator[SQLAlchemyAdapter[User]]:
    yield SQLAlchemyAdapter(session, User, Blacklist)


# 4. App and router


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)
config = MyOTPConfig()
app.include_router(get_auth_router(get_otp_db, config), prefix="/auth", tags=["auth"])

# 5. Protected routes

current_user = Depends(get_current_user_dependency(get_otp_db, config))
verified_user = Depends(get_verified_user_dependency(get_otp_db, config))
custom_claims = Depends(get_custom_claims_dependency(config))


@app.get("/protected")
async def protected_route(user: User = current_user) -> dict[str, Any]:
    return {"user_id": user.id, "email": user.email}


@app.get("/verified-only")
async def verified_only(user: User = verified_user) -> dict[str, str]:
    return {"message": "Access granted to verified user"}


@app.get("/check-claims")
async def check_claims(claims: dict[str, Any] = custom_claims) -> dict[str, Any]:
    return {"custom_claims": claims}


def main() -> None:
    """Serve the app: ``--host`` (default 127.0.0.1) and ``--port`` (default 8000)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
