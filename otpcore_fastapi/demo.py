"""A runnable demo: ``python -m otpcore_fastapi.demo [--host 127.0.0.1] [--port 8000]
[--smtp smtp://127.0.0.1:1025]``.

An embedded SQLite file (``./otpcore-demo.db``, or ``--db`` / ``OTPCORE_DEMO_DB``), a console
"mailer" that prints each code to the terminal (the documented developer-facing behaviour of
this demo, nothing more: a real app sends e-mail), a page at ``/`` that walks through the
whole flow in a browser in cookie mode, and the API docs at ``/docs`` (Swagger UI served by
the demo itself, so they work offline). With ``--smtp`` each code is sent as an e-mail
instead, through that SMTP server (e.g. a local catcher: ``python -m aiosmtpd -n -l
127.0.0.1:1025``), with a magic link back to the demo.

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

__all__ = [
    "DemoBase",
    "DemoBlacklist",
    "DemoConfig",
    "DemoMailConfig",
    "DemoUser",
    "create_app",
    "main",
]

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


class DemoMailConfig(DemoConfig):
    """The demo's settings with ``--smtp``: codes go out as e-mails with a magic link."""

    # Not overridden here: the mail settings send, and send_otp would win over them.
    send_otp = OTPAuthConfig.send_otp
    mail_from = "otpcore demo <demo@otpcore-demo.localhost>"
    mail_app_name = "the otpcore demo"
    # The page sees it and fetches an access token with the refresh cookie the link set.
    magic_link_redirect = "/?signed_in=link"

    def __init__(self, smtp_url: str, magic_link_url: str) -> None:
        self.smtp_url = smtp_url
        self.magic_link_url = magic_link_url
        super().__init__()


def _index_html() -> str:
    return (resources.files("otpcore_fastapi") / "static" / "index.html").read_text("utf-8")


def create_app(
    database: str | Path | None = None,
    *,
    database_url: str | None = None,
    sender: Sender = print_code,
    smtp_url: str | None = None,
    public_url: str = "http://127.0.0.1:8000",
) -> FastAPI:
    """The demo app; its tables are created at startup.

    Args:
        database: The SQLite file (default: ``$OTPCORE_DEMO_DB`` or ``./otpcore-demo.db``).
        database_url: Any SQLAlchemy async URL instead (the benchmark uses PostgreSQL).
        sender: Receives ``(email, code)``; by default the code is printed. Unused with
            ``smtp_url``.
        smtp_url: Send each code as an e-mail through this SMTP server instead, with a
            magic link to ``public_url``.
        public_url: Where browsers reach this demo (the magic link's origin).
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
    config: DemoConfig
    if smtp_url is None:
        config = DemoConfig(sender)
        told = "Codes are printed in the demo's terminal."
    else:
        config = DemoMailConfig(smtp_url, public_url.rstrip("/") + "/auth/magic")
        told = "Codes are sent by e-mail, with a magic link."

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
        await config.auth.outbox.drain(5)  # seconds: what is still being sent
        await config.auth.outbox.aclose()
        await engine.dispose()

    app = FastAPI(
        title="otpcore demo",
        description=f"Passwordless e-mail codes. {told}",
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
    parser.add_argument(
        "--smtp",
        default=None,
        metavar="URL",
        help="send codes as e-mails with a magic link through this SMTP server, e.g. "
        "smtp://127.0.0.1:1025 (a local catcher: python -m aiosmtpd -n -l 127.0.0.1:1025)",
    )
    args = parser.parse_args(argv)
    # The link must reach this server: a wildcard interface is reached on loopback.
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host  # noqa: S104
    host = f"[{host}]" if ":" in host else host
    public_url = f"http://{host}:{args.port}"
    app = create_app(args.db, smtp_url=args.smtp, public_url=public_url)
    where = "Codes are printed here." if args.smtp is None else f"Codes are mailed via {args.smtp}."
    print(
        f"otpcore demo on http://{args.host}:{args.port}/ (API docs: /docs). {where}",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
