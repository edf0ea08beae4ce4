"""A runnable demo: ``python -m otpcore_fastapi.demo [--host 127.0.0.1] [--port 8000]``.

An embedded SQLite file (``./otpcore-demo.db``, or ``--db`` / ``OTPCORE_DEMO_DB``), a console
"mailer" that prints each code to the terminal (the documented developer-facing behaviour of
this demo, nothing more: a real app sends e-mail), a page at ``/`` that walks through the
whole flow in a browser in cookie mode, and the API docs at ``/docs`` (Swagger UI served by
the demo itself, so they work offline).

Not developer mode: codes are real random codes, and the secret is a strong one generated
for this process only (so tokens stop working when the demo restarts, which is fine here).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Final

from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse
from sqlalchemy import Integer
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from otpcore.domain.records import Claims
from otpcore.stores.sqlalchemy import (
    BaseOTPUserTable,
    SQLAlchemyAdapter,
    TokenBlacklist,
    create_sqlite_engine,
)
from otpcore_fastapi.config import OTPAuthConfig
from otpcore_fastapi.dependencies import get_current_user_dependency, get_principal_dependency
from otpcore_fastapi.docs_ui import offline_docs
from otpcore_fastapi.router import get_auth_router

__all__ = ["DemoBase", "DemoBlacklist", "DemoConfig", "DemoUser", "create_app", "main"]

logger = logging.getLogger("otpcore_fastapi.demo")

DEFAULT_DB: Final = "otpcore-demo.db"
DB_ENV: Final = "OTPCORE_DEMO_DB"

Sender = Callable[[str, str], Awaitable[None]]


class DemoBase(DeclarativeBase):
    """The demo's tables."""


class DemoUser(BaseOTPUserTable[int], DemoBase):
    """A user: the OTP columns from the mixin and an integer key."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)


class DemoBlacklist(TokenBlacklist, DemoBase):
    """Revocations: rotated refresh tokens, ended sessions, logout-all cutoffs."""


async def print_code(email: str, code: str) -> None:
    """The demo's "mailer": print the code where the developer running the demo sees it."""
    print(f"[otpcore demo] code for {email}: {code}", flush=True)


class DemoConfig(OTPAuthConfig):
    """The demo's settings."""

    # Plain http://127.0.0.1 is not https, and not every browser keeps (or sends back) a
    # Secure cookie over plain http; a real deployment keeps the default, True.
    cookie_secure = False
    refresh_token_delivery = "cookie"  # noqa: S105 - the delivery mode, not a secret

    def __init__(self, sender: Sender = print_code) -> None:
        # A strong secret for this process only: the demo has nothing to keep across restarts.
        self.secret_key = secrets.token_hex(32)
        self._sender = sender
        super().__init__()

    async def send_otp(self, email: str, code: str) -> None:
        """Hand the code to the demo's sender (by default: print it)."""
        await self._sender(email, code)

    def get_additional_claims(self, user: DemoUser) -> dict[str, Any]:
        """One custom claim, to show the claims-only route."""
        return {"email": user.email}


def _index_html() -> str:
    return (resources.files("otpcore_fastapi") / "static" / "index.html").read_text("utf-8")


def create_app(
    database: str | Path | None = None,
    *,
    database_url: str | None = None,
    sender: Sender = print_code,
) -> FastAPI:
    """The demo app; its tables are created at startup.

    Args:
        database: The SQLite file (default: ``$OTPCORE_DEMO_DB`` or ``./otpcore-demo.db``).
        database_url: Any SQLAlchemy async URL instead (the benchmark uses PostgreSQL).
        sender: Receives ``(email, code)``; by default the code is printed.
    """
    if database_url is None:
        path = Path(database or os.environ.get(DB_ENV) or DEFAULT_DB)
        database_url = f"sqlite+aiosqlite:///{path}"
    # SQLite as the adapter's documentation recommends (WAL, reset only what is open).
    if make_url(database_url).get_backend_name() == "sqlite":
        engine = create_sqlite_engine(database_url)
    else:
        engine = create_async_engine(database_url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    config = DemoConfig(sender)

    async def get_otp_db() -> AsyncIterator[SQLAlchemyAdapter[DemoUser]]:
        # One dependency for session and adapter: the demo has no other use for the session,
        # and every dependency level costs FastAPI work on each protected request.
        async with sessions() as session:
            yield SQLAlchemyAdapter(session, DemoUser, DemoBlacklist)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as connection:
            await connection.run_sync(DemoBase.metadata.create_all)
        yield
        await engine.dispose()

    app = FastAPI(
        title="otpcore demo",
        description="Passwordless e-mail codes. Codes are printed in the demo's terminal.",
        lifespan=lifespan,
        docs_url=None,  # offline_docs serves /docs with local assets (no CDN)
        redoc_url=None,
    )
    offline_docs(app)
    app.state.config = config
    app.state.engine = engine
    app.include_router(get_auth_router(get_otp_db, config), prefix="/auth", tags=["auth"])
    current_user = Depends(get_current_user_dependency(get_otp_db, config))
    principal = Depends(get_principal_dependency(config))
    page = _index_html()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/ping", tags=["demo"], summary="Unauthenticated")
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/me", tags=["demo"], summary="Current user (one database query)")
    async def me(user: DemoUser = current_user) -> dict[str, Any]:
        return {"id": user.id, "email": user.email, "is_verified": user.is_verified}

    @app.get("/claims", tags=["demo"], summary="Claims only (no database query)")
    async def claims(token: Claims = principal) -> dict[str, Any]:
        return {"sub": token.sub, "sid": token.sid, "exp": token.exp, "custom": dict(token.extra)}

    return app


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the demo with uvicorn."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m otpcore_fastapi.demo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--db", default=None, help=f"SQLite file (default ${DB_ENV} or ./{DEFAULT_DB})"
    )
    args = parser.parse_args(argv)
    app = create_app(args.db)
    print(
        f"otpcore demo on http://{args.host}:{args.port}/ (API docs: /docs). "
        "Codes are printed here.",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
