"""``otpcore cleanup --app``: purges expired revocations from the app's real store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from otpcore.domain.records import Revocation, RevocationKind
from otpcore.stores.sqlalchemy import SQLAlchemyAdapter, create_sqlite_engine
from tests.backends.sql_models import Base, Blacklist, User
from tests.cli.conftest import Run

APP = "tests.cli.apps:sqlite_app"


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[tuple[Path, AsyncEngine]]:
    """A SQLite file with the tables, three expired revocations and one live one."""
    path = tmp_path / "app.db"
    engine = create_sqlite_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    now = datetime.now(UTC)
    async with async_sessionmaker(engine)() as session:
        store = SQLAlchemyAdapter(session, User, Blacklist)
        for key, expires in [("old-1", -3), ("old-2", -2), ("old-3", -1), ("live", 1)]:
            await store.revoke(
                Revocation(
                    key=key,
                    kind=RevocationKind.REFRESH,
                    revoked_at=now - timedelta(days=10),
                    expires_at=now + timedelta(days=expires),
                )
            )
    yield path, engine
    await engine.dispose()


async def _remaining(engine: AsyncEngine) -> list[str]:
    async with async_sessionmaker(engine)() as session:
        store = SQLAlchemyAdapter(session, User, Blacklist)
        found = await store.find_revocations(["old-1", "old-2", "old-3", "live"])
    return sorted(r.key for r in found)


@pytest.mark.parametrize("script", [False, True], ids=["python-m", "console-script"])
async def test_cleanup_purges_expired_entries_only(
    cli: Run, database: tuple[Path, AsyncEngine], script: bool
) -> None:
    path, engine = database
    env = {"OTPCORE_CLI_TEST_DB": str(path)}
    result = cli("cleanup", "--app", APP, env=env, script=script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "purged 3 expired entries"
    assert await _remaining(engine) == ["live"]

    again = cli("cleanup", "--app", APP, env=env, script=script)
    assert (again.returncode, again.stdout.strip()) == (0, "purged 0 expired entries")


async def test_a_binding_config_is_cleaned_through_its_revocation_source(
    cli: Run, database: tuple[Path, AsyncEngine]
) -> None:
    path, engine = database
    result = cli(
        "cleanup", "--app", "tests.cli.apps:SourcedConfig", env={"OTPCORE_CLI_TEST_DB": str(path)}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "purged 3 expired entries"
    assert await _remaining(engine) == ["live"]


def test_a_failing_store_exits_1_without_a_traceback(cli: Run, tmp_path: Path) -> None:
    # A database without the tables: the store fails, the command says so.
    result = cli("cleanup", "--app", APP, env={"OTPCORE_CLI_TEST_DB": str(tmp_path / "empty.db")})
    assert result.returncode == 1
    assert "cleanup failed" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_app_without_a_store_is_refused(cli: Run) -> None:
    result = cli("cleanup", "--app", "tests.cli.apps:insecure_config")
    assert result.returncode == 2
    assert "no store to clean" in result.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tests.cli.apps", "takes module:attr"),
        ("tests.cli.no_such_module:app", "cannot import"),
        ("tests.cli.apps:missing", "has no attribute"),
        ("tests.cli.apps:not_an_app", "is a int, not an OTPAuth"),
    ],
)
def test_unusable_app_is_a_usage_error(cli: Run, spec: str, message: str) -> None:
    result = cli("cleanup", "--app", spec)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
