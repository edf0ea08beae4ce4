"""Issue 8: an app whose user model auto-creation cannot fill fails at startup, naming the hook.

With ``auto_create_user`` on and no ``new_user_fields`` hook, a required column (SQL) or
field (MongoDB) otpcore cannot fill is found by the auth router's lifespan, which FastAPI runs
inside the app's own: the server refuses to start instead of failing at the first login of a
new address. Driven here through the ASGI lifespan protocol as a server sends it, and once
through uvicorn itself.
"""

# No `from __future__ import annotations`: FastAPI reads the local get_otp_db signatures.

import asyncio
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Header
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from otpcore.domain.errors import ConfigurationError
from otpcore.stores.memory import MemoryStore
from otpcore.stores.mongodb import BaseOTPUserDocument, MongoDBAdapter
from otpcore.stores.sqlalchemy import SQLAlchemyAdapter
from otpcore_fastapi import get_auth_router
from tests.backends.mongodb import mongodb_database
from tests.backends.sql_models import Blacklist, StrictBlacklist, StrictUser, User
from tests.http.conftest import RecordingConfig
from tests.http.test_readme_quickstart import quickstart_code
from tests.net import free_port

STARTUP_SECONDS = 30


async def drive_lifespan(app: Any) -> tuple[list[dict[str, Any]], BaseException | None]:
    """Start and stop ``app`` through the ASGI lifespan protocol, as uvicorn does: the
    messages the app sent and what it raised."""
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await incoming.put({"type": "lifespan.startup"})
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "lifespan.startup.complete":
            await incoming.put({"type": "lifespan.shutdown"})

    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    try:
        await app(scope, incoming.get, send)
    except Exception as error:
        return sent, error
    return sent, None


def started(sent: list[dict[str, Any]]) -> bool:
    return [message["type"] for message in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


def failure(sent: list[dict[str, Any]]) -> str:
    """The message of the app's ``lifespan.startup.failed``."""
    assert [message["type"] for message in sent] == ["lifespan.startup.failed"]
    text: str = sent[0]["message"]
    return text


def username_of(email: str) -> dict[str, Any]:
    """A ``new_user_fields`` hook filling the reference README's ``username``."""
    return {"username": email.split("@")[0]}


def sql_app(model: type, blacklist: type, config: RecordingConfig) -> FastAPI:
    """An app over an in-memory SQLite engine, with a lifespan of its own (as the README's)."""
    engine = create_async_engine("sqlite+aiosqlite://")
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    events: list[str] = []

    async def get_otp_db() -> AsyncIterator[SQLAlchemyAdapter[Any]]:
        async with sessions() as session:
            yield SQLAlchemyAdapter(session, model, blacklist)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events.append("app started")
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    app.include_router(get_auth_router(get_otp_db, config), prefix="/auth")
    app.state.events = events
    return app


async def test_a_required_column_without_the_hook_fails_at_startup() -> None:
    app = sql_app(StrictUser, StrictBlacklist, RecordingConfig())
    sent, error = await drive_lifespan(app)
    assert isinstance(error, ConfigurationError)
    assert "new_user_fields" in str(error)
    assert "username" in str(error)
    assert "new_user_fields" in failure(sent)
    assert app.state.events == ["app started"]  # the app's own lifespan ran first


async def test_the_hook_lets_it_start() -> None:
    config = RecordingConfig()
    config.new_user_fields = username_of  # type: ignore[method-assign]
    sent, error = await drive_lifespan(sql_app(StrictUser, StrictBlacklist, config))
    assert error is None
    assert started(sent)


async def test_without_auto_creation_there_is_nothing_to_check() -> None:
    sent, error = await drive_lifespan(
        sql_app(StrictUser, StrictBlacklist, RecordingConfig(auto_create_user=False))
    )
    assert error is None
    assert started(sent)


async def test_a_model_auto_creation_can_fill_starts() -> None:
    # The README Quick Start's case: auto_create_user on, no required extra column.
    app = sql_app(User, Blacklist, RecordingConfig())
    sent, error = await drive_lifespan(app)
    assert error is None
    assert started(sent)
    assert app.state.events == ["app started"]


async def test_the_store_checked_is_the_one_the_app_overrides_get_otp_db_with() -> None:
    config = RecordingConfig()
    engine = create_async_engine("sqlite+aiosqlite://")

    async def get_otp_db() -> AsyncIterator[SQLAlchemyAdapter[Any]]:
        async with AsyncSession(engine) as session:
            yield SQLAlchemyAdapter(session, User, Blacklist)

    async def strict_db() -> AsyncIterator[SQLAlchemyAdapter[Any]]:
        async with AsyncSession(engine) as session:
            yield SQLAlchemyAdapter(session, StrictUser, StrictBlacklist)

    app = FastAPI()
    app.include_router(get_auth_router(get_otp_db, config), prefix="/auth")
    app.dependency_overrides[get_otp_db] = strict_db
    sent, error = await drive_lifespan(app)
    assert isinstance(error, ConfigurationError)
    assert "new_user_fields" in failure(sent)
    await engine.dispose()


async def test_a_get_otp_db_that_needs_the_request_skips_the_check(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = create_async_engine("sqlite+aiosqlite://")

    async def get_otp_db(x_tenant: str = Header()) -> AsyncIterator[SQLAlchemyAdapter[Any]]:
        async with AsyncSession(engine) as session:
            yield SQLAlchemyAdapter(session, StrictUser, StrictBlacklist)

    app = FastAPI()
    app.include_router(get_auth_router(get_otp_db, RecordingConfig()), prefix="/auth")
    with caplog.at_level(logging.WARNING, logger="otpcore_fastapi"):
        sent, error = await drive_lifespan(app)
    assert error is None
    assert started(sent)
    assert "startup check of auto_create_user skipped" in caplog.text
    await engine.dispose()


async def test_a_store_without_the_check_is_not_checked() -> None:
    store = MemoryStore()

    async def get_otp_db() -> MemoryStore:
        return store

    app = FastAPI()
    app.include_router(get_auth_router(get_otp_db, RecordingConfig()), prefix="/auth")
    sent, error = await drive_lifespan(app)
    assert error is None
    assert started(sent)


class StrictDocument(BaseOTPUserDocument):
    """The reference README's MongoDB user: ``username`` is required."""

    username: str = Field(..., max_length=50)


@pytest.mark.mongodb
@pytest.mark.parametrize("hook", [False, True], ids=["no-hook", "hook"])
async def test_a_required_mongodb_field_without_the_hook_fails_at_startup(hook: bool) -> None:
    async with mongodb_database("pymongo") as database:

        async def get_otp_db() -> MongoDBAdapter[StrictDocument]:
            return MongoDBAdapter(database, "users", "token_blacklist", StrictDocument)

        config = RecordingConfig()
        if hook:
            config.new_user_fields = username_of  # type: ignore[method-assign]
        app = FastAPI()
        app.include_router(get_auth_router(get_otp_db, config), prefix="/auth")
        sent, error = await drive_lifespan(app)
        if hook:
            assert error is None
            assert started(sent)
        else:
            assert isinstance(error, ConfigurationError)
            assert "username" in str(error)
            assert "new_user_fields" in failure(sent)
        # The check is static: it wrote nothing.
        assert await database.list_collection_names() == []


def test_check_auto_create_names_the_columns_and_the_hook() -> None:
    engine = create_async_engine("sqlite+aiosqlite://")
    session = AsyncSession(engine)
    SQLAlchemyAdapter(session, User, Blacklist).check_auto_create()
    with pytest.raises(ConfigurationError, match=r"username.*`new_user_fields`"):
        SQLAlchemyAdapter(session, StrictUser, StrictBlacklist).check_auto_create()


# -- served by uvicorn -------------------------------------------------------------------------

#: The README Quick Start's User with one more NOT NULL column no library can fill.
_ID_LINE = "    id: Mapped[int] = mapped_column(Integer, primary_key=True)\n"
_HOOK = """
    def new_user_fields(self, email: str) -> dict[str, Any]:
        return {"team": 7}
"""


def serve(directory: Path, *, hook: bool) -> tuple[subprocess.Popen[str], str]:
    """``uvicorn app:app`` on the README Quick Start with a required ``team`` column."""
    code = quickstart_code()
    assert code.count(_ID_LINE) == 1
    code = code.replace(_ID_LINE, _ID_LINE + "    team: Mapped[int] = mapped_column(Integer)\n")
    if hook:
        anchor = '        print(f"OTP for {email}: {code}")  # replace with your e-mail sender\n'
        assert code.count(anchor) == 1
        code = code.replace(anchor, anchor + _HOOK)
    (directory / "app.py").write_text(code, encoding="utf-8")
    port = free_port()
    env = {**os.environ, "OTP_SECRET_KEY": secrets.token_hex(32), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1"]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, f"http://127.0.0.1:{port}"


def test_uvicorn_refuses_to_start_the_app_without_the_hook(tmp_path: Path) -> None:
    process, _ = serve(tmp_path, hook=False)
    try:
        output, _ = process.communicate(timeout=STARTUP_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode != 0
    assert "Application startup failed" in output
    assert "ConfigurationError" in output
    assert "team" in output
    assert "new_user_fields" in output


def test_uvicorn_starts_the_app_with_the_hook(tmp_path: Path) -> None:
    process, url = serve(tmp_path, hook=True)
    try:
        for _ in range(STARTUP_SECONDS * 10):
            assert process.poll() is None, process.communicate()[0]
            try:
                response = httpx.post(f"{url}/auth/request-otp", json={"email": "a@example.com"})
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            assert response.status_code == 200, response.text
            break
        else:
            pytest.fail(f"not serving after {STARTUP_SECONDS} s")
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "Application startup complete" in output
