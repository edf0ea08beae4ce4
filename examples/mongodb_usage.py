"""The MongoDB Quick Start as one runnable app: ``python examples/mongodb_usage.py``.

It is the reference README's MongoDB Quick Start with the import changed to
``otpcore_fastapi``, plus what running it locally needs: the server from ``MONGODB_URI``
(default ``mongodb://localhost:27017``) and the database from ``MONGODB_DATABASE``
(``myapp``); the secret from ``OTP_SECRET_KEY`` (the reference's placeholder is refused);
indexes made at startup by ``ensure_indexes()`` (the adapter would also make
them before its first write); a ``new_user_fields`` hook for the required ``username`` of
auto-created users; and ``cookie_secure = False`` because http://127.0.0.1 is not https.
Codes are printed to the terminal. Then open http://127.0.0.1:8000/docs
(``--host`` and ``--port`` change where it listens).

Without a MongoDB at hand: ``source scripts/mongodb.sh && start_mongodb`` starts a
MongoDB-wire test server and exports ``MONGODB_URI``.
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
from motor.motor_asyncio import AsyncIOMotorClient
from pydantic import Field

from otpcore_fastapi import (
    BaseOTPUserDocument,
    MongoDBAdapter,
    OTPAuthConfig,
    TokenBlacklistDocument,
    get_auth_router,
    get_current_user_dependency,
    get_custom_claims_dependency,
    get_verified_user_dependency,
)

# 1. Models


class User(BaseOTPUserDocument):
    """User model with custom fields."""

    username: str = Field(..., max_length=50)
    full_name: str | None = Field(default=None, max_length=100)


class Blacklist(TokenBlacklistDocument):
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
        """``username`` is required; auto-created users get the e-mail's local part."""
        return {"username": email.split("@")[0][:50]}


# 3. MongoDB and dependencies

client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(
    os.environ.get("MONGODB_URI", "mongodb://localhost:27017")
)
database = client[os.environ.get("MONGODB_DATABASE", "myapp")]


async def get_otp_db() -> MongoDBAdapter[User]:
    return MongoDBAdapter(
        database=database,
        user_collection_name="users",
        blacklist_collection_name="token_blacklist",
        user_model_class=User,
    )


# 4. Indexes at startup, then the app and router


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    # Unique e-mail, unique jti, TTL on expires_at, and blacklisted_at; idempotent.
    await (await get_otp_db()).ensure_indexes()
    yield
    client.close()


app = FastAPI(lifespan=lifespan)
config = MyOTPConfig()
app.include_router(get_auth_router(get_otp_db, config), prefix="/auth", tags=["auth"])

# 5. Protected routes

current_user = Depends(get_current_user_dependency(get_otp_db, config))
verified_user = Depends(get_verified_user_dependency(get_otp_db, config))
custom_claims = Depends(get_custom_claims_dependency(config))


@app.get("/protected")
async def protected_route(user: User = current_user) -> dict[str, Any]:
    return {"user_id": str(user.id), "email": user.email}


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
