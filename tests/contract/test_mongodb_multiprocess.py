"""The service's concurrency promises on MongoDB: many tasks, and several worker processes.

Every task opens its own adapter (an app's per-request handle); the worker processes each
open their own client, half through PyMongo and half through Motor, and hammer one account:
per code at most ``max_attempts`` bound guesses (presenting the requester's binding) plus
``max_attempts`` unbound guesses (the address only) are evaluated, read back from the
``<blacklist>_challenges`` collection (issue 8); codes are redeemed once; and (issue 10)
concurrent refreshes of one token share one successor inside the grace window while the
store rotates exactly once; after the window the same token ends the session.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
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

CHALLENGES = f"{BLACKLIST}_challenges"

pytestmark = [pytest.mark.mongodb, pytest.mark.multiprocess]

EMAIL = "target@example.com"
RIGHT = "000000"  # developer mode: every code is zeros
WRONG = "999999"
ROOT = Path(__file__).resolve().parents[2]


async def _silent(email: str, code: str) -> None:
    pass


def _auth(*, offset: float = 0.0, grace: float = 10.0) -> OTPAuth[BaseOTPUserDocument]:
    """The service: ``offset`` seconds added to the wall clock, a ``grace`` s refresh window."""

    def clock() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=offset)

    policy = Policy(
        secret=b"test-secret", developer_mode=True, refresh_grace=timedelta(seconds=grace)
    )
    return OTPAuth(policy=policy, store=None, sender=_silent, clock=clock)


def _claims(token: str) -> dict[str, Any]:
    # Only reads what the service issued and verified.
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


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


async def _stored_challenges(database: Any) -> list[tuple[str | None, int, int, int]]:
    """Every document of ``<blacklist>_challenges``: code hash, bound attempts, unbound
    attempts and the binding's failures, as stored."""
    docs = await database[CHALLENGES].find({}).to_list(None)
    return [
        (doc["code_hash"], doc["attempts"], doc["unbound_attempts"], doc["failures"])
        for doc in docs
    ]


async def test_concurrent_wrong_guesses_evaluate_at_most_max_attempts(database: Any) -> None:
    """100 bound and 100 unbound wrong guesses at once: each lane evaluates exactly
    ``max_attempts`` (issue 8), the collection holds both counts, the code is dead."""
    auth = _auth()
    binding = (await auth.with_store(_adapter(database)).request_code(EMAIL)).challenge_id

    async def guess(index: int) -> Login[BaseOTPUserDocument]:
        view = auth.with_store(_adapter(database))
        return await view.verify_code(EMAIL, WRONG, challenge_id=binding if index % 2 else None)

    wins, errors = await _outcomes(200, guess)
    max_attempts = auth.policy.max_attempts
    assert wins == []
    assert errors[CodeInvalid.code] == 2 * max_attempts
    assert errors[AccountLocked.code] >= 1
    assert set(errors) <= {CodeInvalid.code, AccountLocked.code, ContentionError.code}
    # Only bound guesses are the binding's failures (unbound ones never lock anyone out).
    [(code_hash, *counts)] = await _stored_challenges(database)
    assert code_hash is not None
    assert counts == [max_attempts, max_attempts, max_attempts]
    for challenge_id in (binding, None):
        with pytest.raises(AccountLocked):
            await auth.with_store(_adapter(database)).verify_code(
                EMAIL, RIGHT, challenge_id=challenge_id
            )
    assert await _adapter(database).find_by_email(EMAIL) is None  # no account before login


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


async def test_concurrent_refreshes_share_one_successor_inside_the_grace_window(
    database: Any,
) -> None:
    auth = _auth()
    await auth.with_store(_adapter(database)).request_code(EMAIL)
    login = await auth.with_store(_adapter(database)).verify_code(EMAIL, RIGHT)
    sid = _claims(login.refresh_token)["sid"]

    async def rotate(_: int) -> Login[BaseOTPUserDocument]:
        return await auth.with_store(_adapter(database)).refresh(login.refresh_token)

    wins, errors = await _outcomes(20, rotate)
    assert errors == Counter()
    successors = [_claims(win.refresh_token) for win in wins]
    assert {(claims["sid"], claims["gen"]) for claims in successors} == {(sid, 1)}
    assert len({claims["jti"] for claims in successors}) == 1
    stored = await _adapter(database).find_session(sid)
    assert stored is not None
    assert (stored.generation, stored.ended_at) == (1, None)


async def test_strict_concurrent_refresh_rotates_once_then_revokes_the_session(
    database: Any,
) -> None:
    """With no grace window (``refresh_grace=0``), the strict rule of before issue 10."""
    auth = _auth(grace=0)
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


async def _hammer(
    driver: str,
    db_name: str,
    action: str,
    value: str,
    count: int,
    offset: float,
    grace: float,
    binding: str,
    bound: int,
) -> dict[str, Any]:
    async with DRIVERS[driver](os.environ["MONGODB_URI"], 5000) as client:
        database = client[db_name]
        auth = _auth(offset=offset, grace=grace)

        async def attempt(index: int) -> str:
            view = auth.with_store(_adapter(database))
            if action == "verify":
                challenge_id = binding if index < bound else None
                login = await view.verify_code(EMAIL, value, challenge_id=challenge_id)
            else:
                login = await view.refresh(value)
            return login.refresh_token

        await client.admin.command("ping")
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        results = await asyncio.gather(
            *(attempt(index) for index in range(count)), return_exceptions=True
        )
        lanes: list[Counter[str]] = [Counter(), Counter()]  # unbound, bound
        tokens = []
        for index, result in enumerate(results):
            if isinstance(result, OTPAuthError):
                lanes[index < bound][result.code] += 1
            elif isinstance(result, BaseException):
                raise result
            else:
                lanes[index < bound]["ok"] += 1
                tokens.append(result)
        errors = lanes[0] + lanes[1]
        del errors["ok"]
        return {
            "wins": len(tokens),
            "errors": dict(errors),
            "lanes": {"unbound": dict(lanes[0]), "bound": dict(lanes[1])},
            "tokens": tokens,
        }


def worker_main() -> None:
    """Entry point of one worker process: ``driver db_name action value count offset grace
    binding bound`` in ``argv`` (``action`` is ``verify``, with a code, or ``refresh``, with a
    token; the first ``bound`` verifications present the ``binding``)."""
    driver, db_name, action, value, count, offset, grace, binding, bound = sys.argv[1:10]
    report = _hammer(
        driver,
        db_name,
        action,
        value,
        int(count),
        float(offset),
        float(grace),
        binding,
        int(bound),
    )
    print(json.dumps(asyncio.run(report)), flush=True)


def _run_workers(
    db_name: str,
    action: str,
    value: str,
    *,
    workers: int,
    each: int,
    offset: float = 0.0,
    grace: float = 10.0,
    binding: str = "",
    bound: int = 0,
) -> list[dict[str, Any]]:
    """Start ``workers`` processes making ``each`` calls at once, the first ``bound`` of each
    presenting ``binding``; their reports."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    launch = f"from {__name__} import worker_main; worker_main()"
    drivers = [list(DRIVERS)[index % len(DRIVERS)] for index in range(workers)]
    arguments = [action, value, str(each), str(offset), str(grace), binding, str(bound)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", launch, driver, db_name, *arguments],
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


def _setup(db_name: str) -> str:
    """Ask for a code for :data:`EMAIL` in a new database; the requester's binding."""

    async def run() -> str:
        async with DRIVERS["pymongo"](mongodb_uri(), 5000) as client:
            view = _auth().with_store(_adapter(client[db_name]))
            return (await view.request_code(EMAIL)).challenge_id

    return asyncio.run(run())


def _lanes(reports: list[dict[str, Any]]) -> dict[str, Counter[str]]:
    """The outcomes of every worker, by lane (``bound``, ``unbound``) and kind."""
    lanes: dict[str, Counter[str]] = {"bound": Counter(), "unbound": Counter()}
    for report in reports:
        for lane, outcomes in report["lanes"].items():
            lanes[lane].update(outcomes)
    return lanes


def test_wrong_guesses_from_four_processes_evaluate_at_most_max_attempts() -> None:
    """100 bound and 100 unbound wrong guesses at one code from 4 processes (PyMongo and
    Motor): each lane evaluates exactly ``max_attempts`` (issue 8), and the challenges
    collection holds both counts; the code is dead on both lanes afterwards."""
    db_name = f"otpcore_test_mp_{os.urandom(6).hex()}"
    try:
        binding = _setup(db_name)
        reports = _run_workers(
            db_name, "verify", WRONG, workers=4, each=50, binding=binding, bound=25
        )
        lanes = _lanes(reports)
        max_attempts = Policy(secret=b"x", developer_mode=True).max_attempts
        assert sum(report["wins"] for report in reports) == 0
        for lane in ("bound", "unbound"):
            assert lanes[lane][CodeInvalid.code] == max_attempts, lane
            assert lanes[lane][AccountLocked.code] >= 1, lane
            assert set(lanes[lane]) <= {CodeInvalid.code, AccountLocked.code, ContentionError.code}

        async def after(database: Any) -> list[tuple[str | None, int, int, int]]:
            for challenge_id in (binding, None):
                with pytest.raises(AccountLocked):
                    await (
                        _auth()
                        .with_store(_adapter(database))
                        .verify_code(EMAIL, RIGHT, challenge_id=challenge_id)
                    )
            assert await _adapter(database).find_by_email(EMAIL) is None
            return await _stored_challenges(database)

        [(code_hash, *counts)] = _in_client(db_name, after)
        assert code_hash is not None
        # Only bound guesses are the binding's failures (unbound ones never lock anyone out).
        assert counts == [max_attempts, max_attempts, max_attempts]
    finally:
        _drop(db_name)


def test_unbound_wrong_guesses_from_four_processes_leave_the_bound_budget() -> None:
    """200 unbound wrong guesses from 4 processes evaluate ``max_attempts`` and spend nothing
    of the binding's budget: the requester's code still logs in."""
    db_name = f"otpcore_test_mp_{os.urandom(6).hex()}"
    try:
        binding = _setup(db_name)
        reports = _run_workers(db_name, "verify", WRONG, workers=4, each=50)
        lanes = _lanes(reports)
        max_attempts = Policy(secret=b"x", developer_mode=True).max_attempts
        assert lanes["bound"] == Counter()
        assert lanes["unbound"][CodeInvalid.code] == max_attempts
        assert set(lanes["unbound"]) <= {
            CodeInvalid.code,
            AccountLocked.code,
            ContentionError.code,
        }

        async def after(database: Any) -> tuple[list[Any], Login[BaseOTPUserDocument]]:
            stored = await _stored_challenges(database)
            view = _auth().with_store(_adapter(database))
            return stored, await view.verify_code(EMAIL, RIGHT, challenge_id=binding)

        [(code_hash, *counts)], login = _in_client(db_name, after)
        assert code_hash is not None
        assert counts == [0, max_attempts, 0]
        assert login.refresh_token
    finally:
        _drop(db_name)


def test_correct_code_from_four_processes_is_redeemed_once() -> None:
    """20 bound and 20 unbound right codes at once from 4 processes: one login in all."""
    db_name = f"otpcore_test_mp_{os.urandom(6).hex()}"
    try:
        binding = _setup(db_name)
        reports = _run_workers(
            db_name, "verify", RIGHT, workers=4, each=10, binding=binding, bound=5
        )
        assert sum(report["wins"] for report in reports) == 1
        errors: Counter[str] = Counter()
        for report in reports:
            errors.update(report["errors"])
        assert set(errors) <= {CodeInvalid.code, ContentionError.code}

        async def after(database: Any) -> tuple[list[Any], Any, int]:
            account = await _adapter(database).find_by_email(EMAIL)
            sessions = await database[f"{BLACKLIST}_sessions"].count_documents({})
            return await _stored_challenges(database), account, sessions

        [(code_hash, attempts, unbound_attempts, failures)], account, sessions = _in_client(
            db_name, after
        )
        # Consumed by exactly one evaluated guess, on whichever lane won.
        assert (code_hash, attempts + unbound_attempts, failures) == (None, 1, 0)
        assert account is not None
        assert account.is_verified is True
        assert sessions == 1
    finally:
        _drop(db_name)


def _login(db_name: str) -> Login[BaseOTPUserDocument]:
    async def run() -> Login[BaseOTPUserDocument]:
        async with DRIVERS["pymongo"](mongodb_uri(), 5000) as client:
            auth = _auth()
            await auth.with_store(_adapter(client[db_name])).request_code(EMAIL)
            return await auth.with_store(_adapter(client[db_name])).verify_code(EMAIL, RIGHT)

    return asyncio.run(run())


def _in_database(db_name: str, work: Callable[[MongoDBAdapter[BaseOTPUserDocument]], Any]) -> Any:
    async def run() -> Any:
        async with DRIVERS["pymongo"](mongodb_uri(), 5000) as client:
            return await work(_adapter(client[db_name]))

    return asyncio.run(run())


def _in_client(db_name: str, work: Callable[[Any], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        async with DRIVERS["pymongo"](mongodb_uri(), 5000) as client:
            return await work(client[db_name])

    return asyncio.run(run())


def _drop(db_name: str) -> None:
    async def run() -> None:
        async with DRIVERS["pymongo"](mongodb_uri(), 5000) as client:
            await client.drop_database(db_name)

    asyncio.run(run())


def test_refreshes_from_four_processes_share_one_successor_inside_the_grace_window() -> None:
    """Issue 10: 40 refreshes of one token from 4 processes (PyMongo and Motor) all succeed
    with one successor, and the store advanced the generation exactly once."""
    db_name = f"otpcore_test_mp_{os.urandom(6).hex()}"
    try:
        login = _login(db_name)
        sid = _claims(login.refresh_token)["sid"]
        reports = _run_workers(db_name, "refresh", login.refresh_token, workers=4, each=10)
        assert [report["errors"] for report in reports] == [{}] * 4
        successors = [_claims(token) for report in reports for token in report["tokens"]]
        assert len(successors) == 40
        assert {(claims["sid"], claims["gen"]) for claims in successors} == {(sid, 1)}
        assert len({claims["jti"] for claims in successors}) == 1
        stored = _in_database(db_name, lambda store: store.find_session(sid))
        assert (stored.generation, stored.ended_at) == (1, None)

        # The session lives on: the successor rotates once more.
        async def again(store: MongoDBAdapter[BaseOTPUserDocument]) -> Any:
            return await _auth().with_store(store).refresh(reports[0]["tokens"][0])

        assert _claims(_in_database(db_name, again).refresh_token)["gen"] == 2
    finally:
        _drop(db_name)


def test_the_same_token_from_four_processes_after_the_window_ends_the_session() -> None:
    db_name = f"otpcore_test_mp_{os.urandom(6).hex()}"
    try:
        login = _login(db_name)
        sid = _claims(login.refresh_token)["sid"]

        async def rotate(store: MongoDBAdapter[BaseOTPUserDocument]) -> Any:
            return await _auth().with_store(store).refresh(login.refresh_token)

        successor = _in_database(db_name, rotate)
        # 11 s later by every worker's clock: past the 10 s window, so reuse.
        reports = _run_workers(
            db_name, "refresh", login.refresh_token, workers=4, each=10, offset=11
        )
        errors: Counter[str] = Counter()
        for report in reports:
            assert report["wins"] == 0
            errors.update(report["errors"])
        assert set(errors) <= {RefreshReused.code, TokenRevoked.code}
        assert errors[RefreshReused.code] >= 1
        stored = _in_database(db_name, lambda store: store.find_session(sid))
        assert stored.generation == 1
        assert stored.ended_at is not None

        # Reuse ended the whole session, so the successor is dead too.
        async def successor_refused(store: MongoDBAdapter[BaseOTPUserDocument]) -> None:
            view = _auth(offset=11).with_store(store)
            with pytest.raises(TokenRevoked):
                await view.refresh(successor.refresh_token)
            with pytest.raises(TokenRevoked):
                await view.authenticate(successor.access_token)

        _in_database(db_name, successor_refused)
    finally:
        _drop(db_name)
