"""The reference README's SQLAlchemy Quick Start, steps 1-5, as published.

Only the import changed (``fastapi_otp_authentication`` -> ``otpcore_fastapi``), and the two
imports the README leaves out were added where a user would add them (``Any``, and
``Depends`` before step 3 uses it). ``tests/http/test_quickstart.py`` imports this module
afresh inside a temporary directory, so ``./app.db`` lands there.
"""

# Kept as published: untyped helpers, a bare ``dict`` annotation, imports where each step
# has them, ``Depends`` in defaults.
# mypy: disable-error-code="no-untyped-def,type-arg"
# ruff: noqa: E402, B008, I001

# ---- README Quick Start (SQLAlchemy) begins ----------------------------------------------
from typing import Any

from fastapi import Depends

# 1. Create Your User Model and Register Blacklist table
from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from otpcore_fastapi import BaseOTPUserTable
from otpcore_fastapi import TokenBlacklist


class Base(DeclarativeBase):
    pass


class User(BaseOTPUserTable[int], Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(50), unique=True)


class Blacklist(TokenBlacklist, Base):
    pass


# 2. Configure OTP Authentication
from datetime import timedelta
from otpcore_fastapi import OTPAuthConfig


class MyOTPConfig(OTPAuthConfig):
    # Security - REQUIRED
    secret_key = "your-secret-key-generate-with-openssl-rand-hex-32"

    # Optional: Developer mode for testing (default: False)
    developer_mode = False

    cookie_secure = True  # Use secure cookies (https) in production

    # Token lifetimes
    access_token_lifetime = timedelta(hours=1)
    refresh_token_lifetime = timedelta(days=7)

    # OTP settings
    otp_length = 6
    otp_expiry = timedelta(minutes=10)
    max_otp_attempts = 5

    async def send_otp(self, email: str, code: str) -> None:
        """Implement your OTP delivery method."""
        # Send via email, SMS, etc.
        print(f"OTP for {email}: {code}")

    def get_additional_claims(self, user: User) -> dict[str, Any]:
        """Add custom claims to JWT tokens."""
        return {"username": user.username}


# 3. Set Up Database and Dependencies
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from otpcore_fastapi import SQLAlchemyAdapter

# Database setup
engine = create_async_engine("sqlite+aiosqlite:///./app.db")
async_session_maker = async_sessionmaker(engine, expire_on_commit=False)


async def get_async_session():
    async with async_session_maker() as session:
        yield session


async def get_otp_db(session: AsyncSession = Depends(get_async_session)):
    yield SQLAlchemyAdapter(session, User, Blacklist)


# 4. Register Authentication Router
from fastapi import FastAPI
from otpcore_fastapi import get_auth_router

app = FastAPI()
config = MyOTPConfig()

auth_router = get_auth_router(get_otp_db, config)
app.include_router(auth_router, prefix="/auth", tags=["auth"])

# 5. Protect Your Routes
from fastapi import Depends
from otpcore_fastapi import (
    get_current_user_dependency,
    get_verified_user_dependency,
    get_custom_claims_dependency,
)

# Create dependencies
current_user = Depends(get_current_user_dependency(get_otp_db, config))
verified_user = Depends(get_verified_user_dependency(get_otp_db, config))
custom_claims = Depends(get_custom_claims_dependency(config))


@app.get("/protected")
async def protected_route(user: User = current_user):
    return {"user_id": user.id, "email": user.email}


@app.get("/verified-only")
async def verified_only(user: User = verified_user):
    return {"message": "Access granted to verified user"}


@app.get("/check-claims")
async def check_claims(claims: dict = custom_claims):
    return {"custom_claims": claims}


# ---- README Quick Start ends ---------------------------------------------------------------
