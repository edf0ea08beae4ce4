"""``otpcore check --app``: findings for secret, developer mode, issuer/audience, cookies and
pool sizing, and an exit code a deployment script can act on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import Run

APPS = "tests.cli.apps"


def _check(
    cli: Run, app: str, *args: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, str]]:
    """Exit code and ``{id: level}`` of ``otpcore check --json``."""
    result = cli("check", "--app", f"{APPS}:{app}", "--json", *args, env=env)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, {f["id"]: f["level"] for f in json.loads(result.stdout)}


def test_a_production_config_passes(cli: Run) -> None:
    result = cli("check", "--app", f"{APPS}:production_auth")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "0 error(s), 0 warning(s)"
    assert "ok      secret:" in result.stdout


def test_developer_mode_short_secret_and_no_issuer_fail(cli: Run) -> None:
    code, findings = _check(cli, "developer_auth")
    assert code == 1
    assert {
        k: findings[k] for k in ("developer-mode", "secret", "issuer-missing", "audience-missing")
    } == dict.fromkeys(("developer-mode", "secret", "issuer-missing", "audience-missing"), "error")


def test_a_long_secret_of_few_characters_fails(cli: Run) -> None:
    code, findings = _check(cli, "repetitive_auth")
    assert (code, findings["secret-low-entropy"]) == (1, "error")


def test_cookie_flags_of_a_binding_config(cli: Run) -> None:
    code, findings = _check(cli, "insecure_config")
    assert (code, findings["cookie-insecure"]) == (1, "error")
    # A config class is a zero-argument factory: the CLI instantiates it.
    code, findings = _check(cli, "ProductionConfig")
    assert (code, findings["cookie"]) == (0, "ok")
    assert "cookie-insecure" not in findings


@pytest.mark.parametrize(
    ("app", "workers", "max_connections", "expected"),
    [
        # SQLAlchemy's default pool: 5 + 10 overflow per worker; 7 workers exceed 97.
        ("postgres_target", "7", "97", ("pool-exhaustion", "error")),
        ("postgres_target", "6", "97", ("pool", "ok")),
        ("small_pool", "20", "100", ("pool", "ok")),
        ("small_pool", "21", "100", ("pool-exhaustion", "error")),
        ("unbounded_pool", "1", "97", ("pool-unbounded", "error")),
    ],
)
def test_pool_sizes_against_the_servers_connections(
    cli: Run, app: str, workers: str, max_connections: str, expected: tuple[str, str]
) -> None:
    code, findings = _check(cli, app, "--workers", workers, "--max-connections", max_connections)
    finding, level = expected
    assert findings[finding] == level
    assert code == (1 if level == "error" else 0)


def test_workers_default_to_web_concurrency(cli: Run) -> None:
    code, findings = _check(cli, "postgres_target", env={"WEB_CONCURRENCY": "7"})
    assert (code, findings["pool-exhaustion"]) == (1, "error")


def test_sqlite_is_a_warning_that_strict_turns_into_a_failure(cli: Run, tmp_path: Path) -> None:
    env = {"OTPCORE_CLI_TEST_DB": str(tmp_path / "app.db")}
    args = ("--ignore", "issuer-missing", "--ignore", "audience-missing")
    code, findings = _check(cli, "sqlite_app", *args, env=env)
    assert (code, findings["sqlite-single-host"]) == (0, "warning")
    assert "issuer-missing" not in findings
    strict, _ = _check(cli, "sqlite_app", *args, "--strict", env=env)
    assert strict == 1


def test_the_engine_is_found_through_a_configs_revocation_source(cli: Run, tmp_path: Path) -> None:
    env = {"OTPCORE_CLI_TEST_DB": str(tmp_path / "app.db")}
    code, findings = _check(cli, "SourcedConfig", env=env)
    assert (code, findings["sqlite-single-host"], findings["cookie"]) == (0, "warning", "ok")


def test_bad_numbers_are_a_usage_error(cli: Run) -> None:
    result = cli("check", "--app", f"{APPS}:production_auth", "--workers", "0")
    assert result.returncode == 2
