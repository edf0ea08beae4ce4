"""otpcore on Starlette, without FastAPI: request a code, verify it, call a protected route,
refresh, log out. The proof that the core needs no particular framework.

Run: python examples/starlette_app.py [--host 127.0.0.1] [--port 8001] [--db FILE]

With ``--db`` the state lives in that SQLite file (one database session per request);
without it, in memory. The secret comes from ``OTP_SECRET_KEY`` (or one is made per process).
Codes are printed to this terminal; a real application e-mails them.

    curl -s localhost:8001/auth/request-otp -d '{"email": "me@example.com"}'
    curl -s localhost:8001/auth/verify-otp -d '{"email": "me@example.com", "code": "…"}'
    curl -s localhost:8001/me -H "Authorization: Bearer <access_token>"
    curl -s localhost:8001/auth/refresh -d '{"refresh_token": "…"}'
    curl -s localhost:8001/auth/logout -d '{"refresh_token": "…"}'

A refresh token is spent by its refresh. Presented again within ``Policy.refresh_grace``
(10 s: a second tab, a retry after a lost response) it gets the same successor; after that,
the reuse ends the session (401 ``refresh_reused``).
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Integer
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from otpcore import InvalidEmail, Login, OTPAuth, OTPAuthError, Policy
from otpcore.ports import Store
from otpcore.stores.memory import MemoryStore
from otpcore.stores.sqlalchemy import (
    BaseOTPUserTable,
    SQLAlchemyAdapter,
    TokenBlacklist,
    create_sqlite_engine,
)

Sender = Callable[[str, str], Awaitable[None]]

#: HTTP status per error code; anything else otpcore refuses is a 401.
STATUS: Final[Mapping[str, int]] = {
    "otp_locked": 429,
    "otp_cooldown": 429,
    "busy": 429,
    "user_not_verified": 403,
    "user_not_found": 404,
    "delivery_failed": 502,
    "storage_unavailable": 503,
}


class Base(DeclarativeBase):
    """This example's tables."""


class User(BaseOTPUserTable[int], Base):
    """A user: the OTP columns from the mixin and an integer key."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)


class Blacklist(TokenBlacklist, Base):
    """Revoked tokens and sessions."""


async def print_code(email: str, code: str) -> None:
    """This example's "mailer": print the code for the person running it."""
    print(f"[otpcore starlette] code for {email}: {code}", flush=True)


class BadRequest(Exception):
    """The body is not the JSON object a route expects."""


async def _fields(request: Request, *names: str) -> list[str]:
    """The string fields ``names`` of the request's JSON object body."""
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("The body must be JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    values = [body.get(name) for name in names]
    if not all(isinstance(value, str) and value for value in values):
        raise BadRequest(f"The body needs the string fields: {', '.join(names)}.")
    return [str(value) for value in values]


async def _optional(request: Request, name: str) -> str | None:
    """The optional string field ``name`` of the (already parsed) JSON body."""
    value = (await request.json()).get(name)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{name} must be a string.")
    return value or None


def _client(request: Request) -> str | None:
    """The client address as the server reports it (behind a proxy: run uvicorn with
    ``--proxy-headers --forwarded-allow-ips`` so this is the forwarded one)."""
    return request.client.host if request.client is not None else None


def _bearer(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (RFC 6750 §2.1), if any."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _tokens(login: Login[Any]) -> JSONResponse:
    return JSONResponse(
        {
            "access_token": login.access_token,
            "refresh_token": login.refresh_token,
            "token_type": login.token_type,
        },
        headers={"Cache-Control": "no-store"},  # RFC 6749 §5.1
    )


async def _refused(_: Request, exc: Exception) -> Response:
    if isinstance(exc, BadRequest):
        return JSONResponse({"detail": str(exc), "code": "invalid_body"}, status_code=422)
    if isinstance(exc, InvalidEmail):
        return JSONResponse(
            {"detail": "Invalid e-mail address.", "code": "invalid_email"}, status_code=422
        )
    assert isinstance(exc, OTPAuthError)
    status = STATUS.get(exc.code, 401)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    return JSONResponse({"detail": str(exc), "code": exc.code}, status_code=status, headers=headers)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    database: str | Path | None = None,
    *,
    sender: Sender = print_code,
    secret: str | None = None,
    clock: Callable[[], datetime] = _utc_now,
) -> Starlette:
    """The example app.

    Args:
        database: A SQLite file for the state (its tables are created at startup); ``None``
            keeps it in memory.
        sender: Receives ``(email, code)``; by default the code is printed.
        secret: The server secret (default ``$OTP_SECRET_KEY``, or one made now).
        clock: The current aware-UTC instant (tests pass a fake one to move time).
    """
    key = secret or os.environ.get("OTP_SECRET_KEY") or secrets.token_hex(32)
    auth: OTPAuth[Any] = OTPAuth(
        policy=Policy(secret=key.encode()), store=None, sender=sender, clock=clock
    )

    if database is None:
        memory = MemoryStore()

        @asynccontextmanager
        async def open_store() -> AsyncIterator[Store[Any]]:
            yield memory

        @asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            yield

    else:
        engine = create_sqlite_engine(f"sqlite+aiosqlite:///{database}")
        sessions = async_sessionmaker(engine, expire_on_commit=False)

        @asynccontextmanager
        async def open_store() -> AsyncIterator[Store[Any]]:
            async with sessions() as session:  # one database session per request
                yield SQLAlchemyAdapter(session, User, Blacklist)

        @asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            async with engine.begin() as connection:
                await connection.run_sync(Base.metadata.create_all)
            yield
            await engine.dispose()

    async def request_otp(request: Request) -> Response:
        [email] = await _fields(request, "email")
        challenge_id = await _optional(request, "challenge_id")  # to resend on the same code
        async with open_store() as store:
            sent = await auth.with_store(store).request_code(
                email, ip=_client(request), challenge_id=challenge_id
            )
        return JSONResponse(
            {
                "message": "If the address can receive codes, one was sent.",
                "challenge_id": sent.challenge_id,
            }
        )

    async def verify_otp(request: Request) -> Response:
        email, code = await _fields(request, "email", "code")
        challenge_id = await _optional(request, "challenge_id")
        async with open_store() as store:
            bound = auth.with_store(store)
            login = await bound.verify_code(
                email, code, challenge_id=challenge_id, ip=_client(request)
            )
            return _tokens(login)

    async def refresh(request: Request) -> Response:
        [token] = await _fields(request, "refresh_token")
        async with open_store() as store:
            return _tokens(await auth.with_store(store).refresh(token))

    async def logout(request: Request) -> Response:
        [token] = await _fields(request, "refresh_token")
        async with open_store() as store:
            await auth.with_store(store).logout(token, access_token=_bearer(request))
        return JSONResponse({"message": "Logged out."})

    async def me(request: Request) -> Response:
        token = _bearer(request)
        if token is None:
            return JSONResponse(
                {"detail": "No bearer token was presented.", "code": "token_missing"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        async with open_store() as store:
            principal = await auth.with_store(store).authenticate(token)
        return JSONResponse(
            {
                "id": principal.claims.sub,
                "email": principal.account.email,
                "is_verified": principal.account.is_verified,
                "sid": principal.claims.sid,
            }
        )

    return Starlette(
        routes=[
            Route("/auth/request-otp", request_otp, methods=["POST"]),
            Route("/auth/verify-otp", verify_otp, methods=["POST"]),
            Route("/auth/refresh", refresh, methods=["POST"]),
            Route("/auth/logout", logout, methods=["POST"]),
            Route("/me", me, methods=["GET"]),
        ],
        exception_handlers={
            OTPAuthError: _refused,
            InvalidEmail: _refused,
            BadRequest: _refused,
        },
        lifespan=lifespan,
    )


def main() -> None:
    """Serve the app with uvicorn: ``--host``, ``--port`` and ``--db``."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8001, help="port (default 8001)")
    parser.add_argument("--db", default=None, help="SQLite file (default: in memory)")
    args = parser.parse_args()
    print(f"otpcore on Starlette at http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(create_app(args.db), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
