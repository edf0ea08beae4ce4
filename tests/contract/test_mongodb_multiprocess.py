"""The service's concurrency promises on MongoDB: many tasks, and several worker processes.

Every task opens its own adapter (an app's per-request handle); the worker processes each
open their own client, half through PyMongo and half through Motor, and hammer one account.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from otpcore.domain.errors import (
    AccountLocked,
    CodeInvalid,
    ContentionError,
    OTPAuthError,
    RefreshReused,
    TokenRevoked,
)
from otpcore.domain.policy import Policy
from otpcore.service import Login, OTPAuth
from otpcore.stores.mongodb import BaseOTPUserDocument, MongoDBAdapter
from tests.backends.mongodb import BLACKLIST, DRIVERS, USERS, mongodb_database, mongodb_uri

pytestmark = [pytest.mark.mongodb, pytest.mark.multiprocess]

EMAIL = "target@example.com"
RIGHT = "000000"  # developer mode: every code is zeros
WRONG = "999999"
ROOT = Path(__file__).resolve().parents[2]


async def _silent(email: str, code: str) -> None:
    pass


def _auth() -> OTPAuth[BaseOTPUserDocument]:
    return OTPAuth(
        policy=Policy(secret=b"test-secret", developer_mode=True), store=None, sender=_silent
    )


def _adapter(database: Any) -> MongoDBAdapter[BaseOTPUserDocument]:
    return MongoDBAdapter(database, USERS, BLACKLIST, BaseOTPUserDocument)


async def _outcomes(
    count: int, attempt: Callable[[int], Awaitable[Any]]
) -> tuple[list[Any], Counter[str]]:
    """Run ``count`` attempts at once; the results, and the error codes of the failures."""
    results = await asyncio.gather(*(attempt(i) for i in range(count)), return_exceptions=True)
    errors: Counter[str] = Counter()
    wins = []
    for result in results:
        if isinstance(result, OTPAuthError):
            errors[result.code] += 1
        elif isinstance(result, BaseException):
            raise result
        else:
            wins.append(result)
    return wins, errors


@pytest.fixture(params=list(DRIVERS), ids=[f"mongodb-{name}" for name in DRIVERS])
async def database(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """An empty database through each driver."""
    async with mongodb_database(request.param) as db:
        yield db


async def test_concurrent_wrong_guesses_evaluate_at_most_max_attempts(database: Any) -> None:
    auth = _auth()
    await auth.with_store(_adapter(database)).request_code(EMAIL)

    async def guess(_: int) -> Login[BaseOTPUserDocument]:
        return await auth.with_store(_adapter(database)).verify_code(EMAIL, WRONG)

    wins, errors = await _outcomes(200, guess)
    assert wins == []
    assert errors[CodeInvalid.code] == auth.policy.max_attempts
    assert errors[AccountLocked.code] >= 1
    assert set(errors) <= {CodeInvalid.code, AccountLocked.code, ContentionError.code}
    account = await _adapter(database).find_by_email(EMAIL)
    assert account is not None
    assert account.challenge.attempts == auth.policy.max_attempts
    assert account.challenge.failures == auth.policy.max_attempts
    with pytest.raises(AccountLocked):
        await auth.with_store(_adapter(database)).verify_code(EMAIL, RIGHT)


async def test_concurrent_correct_codes_yield_one_token_pair(database: Any) -> None:
    auth = _auth()
    await auth.with_store(_adapter(database)).request_code(EMAIL)

    async def redeem(_: int) -> Login[BaseOTPUserDocument]:
        return await auth.with_store(_adapter(database)).verify_code(EMAIL, RIGHT)

    wins, errors = await _outcomes(50, redeem)
    assert len(wins) == 1
    assert sum(errors.values()) == 49
    assert set(errors) <= {CodeInvalid.code, ContentionError.code}
    principal = await auth.with_store(_adapter(database)).authenticate(wins[0].access_token)
    assert principal.user.email == EMAIL
    assert principal.account.is_verified is True


async def test_concurrent_refresh_rotates_once_then_revokes_the_session(database: Any) -> None:
    auth = _auth()
    await auth.with_store(_adapter(database)).request_code(EMAIL)
    login = await auth.with_store(_adapter(database)).verify_code(EMAIL, RIGHT)

    async def rotate(_: int) -> Login[BaseOTPUserDocument]:
        return await auth.with_store(_adapter(database)).refresh(login.refresh_token)

    wins, errors = await _outcomes(20, rotate)
    assert len(wins) == 1
    assert sum(errors.values()) == 19
    assert set(errors) <= {RefreshReused.code, TokenRevoked.code}
    # Reuse was detected, so the session of the one rotation is revoked too.
    with pytest.raises((TokenRevoked, RefreshReused)):
        await auth.with_store(_adapter(database)).refresh(wins[0].refresh_token)
    with pytest.raises(TokenRevoked):
        await auth.with_store(_adapter(database)).authenticate(wins[0].access_token)


async def test_ids_round_trip_through_tokens(database: Any) -> None:
    auth = _auth()
    await database[USERS].insert_one({"_id": "legacy-7", "email": "legacy@example.com"})
    for email in ("legacy@example.com", "fresh@example.com"):
        await auth.with_store(_adapter(database)).request_code(email)
        login = await auth.with_store(_adapter(database)).verify_code(email, RIGHT)
        principal = await auth.with_store(_adapter(database)).authenticate(login.access_token)
        assert principal.claims.sub == login.user_id == principal.account.user_id
        assert principal.user.id == login.user_id
        assert principal.user.email == email
        rotated = await auth.with_store(_adapter(database)).refresh(login.refresh_token)
        assert rotated.user_id == login.user_id
        await auth.with_store(_adapter(database)).logout_all(rotated.access_token)
        with pytest.raises(TokenRevoked):
            await auth.with_store(_adapter(database)).authenticate(rotated.access_token)
    assert (await _adapter(database).find_by_id("legacy-7")) is not None


# -- several processes -----------------------------------------------------------------------


async def _hammer(driver: str, db_name: str, code: str, count: int) -> dict[str, Any]:
    async with DRIVERS[driver](os.environ["MONGODB_URI"], 5000) as client:
        database = client[db_name]
        auth = _auth()

        async def attempt(_: int) -> str:
            login = await auth.with_store(_adapter(database)).verify_code(EMAIL, code)
            return login.refresh_token

        await client.admin.command("ping")
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        wins, errors = await _outcomes(count, attempt)
        return {"wins": len(wins), "errors": dict(errors)}


def worker_main() -> None:
    """Entry point of one worker process: ``driver db_name code count`` in ``argv``."""
    driver, db_name, code, count = sys.argv[1:5]
    print(json.dumps(asyncio.run(_hammer(driver, db_name, code, int(count)))), flush=True)


def _run_workers(db_name: str, code: str, *, workers: int, each: int) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    launch = f"from {__name__} import worker_main; worker_main()"
    drivers = [list(DRIVERS)[index % len(DRIVERS)] for index in range(workers)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", launch, driver, db_name, code, str(each)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for driver in drivers
    ]
    try:
        for proc in procs:  # every worker connected before any starts
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        outputs = [proc.communicate("go\n", timeout=300)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [proc.returncode for proc in procs] == [0] * workers
    return [json.loads(output.strip().splitlines()[-1]) for output in outputs]


def _setup(db_name: str) -> None:
    async def run() -> None:
        async with DRIVERS["pymongo"](mongodb_uri(), 5000) as client:
            await _auth().with_store(_adapter(client[db_name])).request_code(EMAIL)

    asyncio.run(run())


def _account_state(db_name: str) -> tuple[int, int, bool]:
    async def run() -> tuple[int, int, bool]:
        async with DRIVERS["pymongo"](mongodb_uri(), 5000) as client:
            account = await _adapter(client[db_name]).find_by_email(EMAIL)
            await client.drop_database(db_name)
        assert account is not None
        return account.challenge.attempts, account.challenge.failures, account.is_verified

    return asyncio.run(run())


def test_wrong_guesses_from_four_processes_evaluate_at_most_max_attempts() -> None:
    db_name = f"otpcore_test_mp_{os.urandom(6).hex()}"
    _setup(db_name)
    reports = _run_workers(db_name, WRONG, workers=4, each=50)
    invalid = sum(report["errors"].get(CodeInvalid.code, 0) for report in reports)
    max_attempts = Policy(secret=b"x", developer_mode=True).max_attempts
    assert sum(report["wins"] for report in reports) == 0
    assert invalid == max_attempts
    assert _account_state(db_name) == (max_attempts, max_attempts, False)


def test_correct_code_from_four_processes_is_redeemed_once() -> None:
    db_name = f"otpcore_test_mp_{os.urandom(6).hex()}"
    _setup(db_name)
    reports = _run_workers(db_name, RIGHT, workers=4, each=10)
    assert sum(report["wins"] for report in reports) == 1
    attempts, failures, verified = _account_state(db_name)
    assert (attempts, failures, verified) == (1, 0, True)
