"""Where the current-user route's time above the unauthenticated route goes.

Run: python bench/run.py profile   or   python -m bench.bench_profile [--requests 2000]

The ``bench_http`` demo app on a SQLite file (``create_sqlite_engine``), driven in-process
through its ASGI interface (no HTTP parsing, no sockets: what remains is the app's own work),
with extra routes that each add one step of what ``/me`` does:

====================  =========================================================================
``/ping``             nothing (the baseline)
``/claims``           + the bearer check (signature, claims) and the mirror lookup
``/ladder/yield``     the claims check + an empty ``yield`` dependency (FastAPI's part of the next)
``/ladder/session``   + the store dependency: an ``AsyncSession`` and the adapter, opened and
                      closed by FastAPI's ``yield`` dependency machinery; no query
``/ladder/select1``   + one ``SELECT 1`` through the session: pool checkout, greenlet, the
                      aiosqlite thread hops, pool return
``/ladder/core-user`` the session step + the user's row by primary key (Core, no ORM entity)
``/me``               the session step + the real thing: the user as an ORM entity left-joined
                      to its revocations in one ``run_sync``, the verdict, the commit
``/ladder/one-hop``   an option: the session step + the user's row through the aiosqlite
                      connection under the session (``execute_fetchall``: one thread hop)
``/ladder/inline``    an option, not a step: the claims check plus the user's row read by the
                      stdlib ``sqlite3`` driver on the event loop's thread (no thread hop)
====================  =========================================================================

Each route is timed sequentially (one request at a time: microseconds per request) and with
32 concurrent requests (as ``wrk -c32`` loads one worker: microseconds per request from the
throughput), routes taking turns over rounds, medians. Then ``/me`` under cProfile (32
concurrent), its own time grouped by package, and the aiosqlite thread hops per request
counted (each is a queue put, a wake-up of the connection's thread, and a
``call_soon_threadsafe`` back to the loop).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
from fastapi import Depends, FastAPI
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import async_sessionmaker

from otpcore.domain.records import Claims
from otpcore.stores.sqlalchemy import SQLAlchemyAdapter
from otpcore_fastapi.demo import DemoBlacklist, DemoUser, create_app
from otpcore_fastapi.dependencies import get_principal_dependency

__all__ = ["LADDER", "main", "make_ladder_app", "run"]

#: The routes, in the order each adds one step; ``/ladder/inline`` is the option.
LADDER = (
    "/ping",
    "/claims",
    "/ladder/yield",
    "/ladder/session",
    "/ladder/select1",
    "/ladder/core-user",
    "/me",
    "/ladder/one-hop",
    "/ladder/inline",
)
#: What each route's step is measured against.
STEP_FROM = {
    "/claims": "/ping",
    "/ladder/yield": "/claims",
    "/ladder/session": "/claims",
    "/ladder/select1": "/ladder/session",
    "/ladder/core-user": "/ladder/session",
    "/me": "/ladder/session",
    "/ladder/one-hop": "/ladder/session",
    "/ladder/inline": "/claims",
}
CONCURRENCY = 32

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


def make_ladder_app(database: Path, codes: dict[str, str]) -> FastAPI:
    """The demo app on ``database`` with the ladder's routes; codes sent land in ``codes``."""

    async def remember(email: str, code: str) -> None:
        codes[email] = code

    app = create_app(database_url=f"sqlite+aiosqlite:///{database}", sender=remember)
    config = app.state.config
    sessions = async_sessionmaker(app.state.engine, expire_on_commit=False)
    principal = Depends(get_principal_dependency(config))
    users = DemoUser.__table__
    inline = sqlite3.connect(database, check_same_thread=False, isolation_level=None)

    async def get_otp_db() -> AsyncIterator[SQLAlchemyAdapter[DemoUser]]:
        # The demo's own store dependency, written out again (it is a closure there).
        async with sessions() as session:
            yield SQLAlchemyAdapter(session, DemoUser, DemoBlacklist)

    store = Depends(get_otp_db)

    async def nothing() -> AsyncIterator[None]:
        yield None

    @app.get("/ladder/yield")
    async def yield_only(token: Claims = principal, _: None = Depends(nothing)) -> dict[str, str]:
        return {"sub": token.sub}

    @app.get("/ladder/one-hop")
    async def one_hop(
        token: Claims = principal, db: SQLAlchemyAdapter[DemoUser] = store
    ) -> dict[str, Any]:
        connection = await db.session.connection()
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        rows = await driver.execute_fetchall(
            "SELECT id, email FROM users WHERE id = ?", (int(token.sub),)
        )
        found = next(iter(rows))
        return {"id": found[0], "email": found[1]}

    @app.get("/ladder/session")
    async def session_only(
        token: Claims = principal, db: SQLAlchemyAdapter[DemoUser] = store
    ) -> dict[str, str]:
        return {"sub": token.sub}

    @app.get("/ladder/select1")
    async def select_one(
        token: Claims = principal, db: SQLAlchemyAdapter[DemoUser] = store
    ) -> dict[str, Any]:
        one = (await db.session.execute(text("SELECT 1"))).scalar_one()
        return {"sub": token.sub, "one": one}

    @app.get("/ladder/core-user")
    async def core_user(
        token: Claims = principal, db: SQLAlchemyAdapter[DemoUser] = store
    ) -> dict[str, Any]:
        statement = select(users.c.id, users.c.email).where(users.c.id == int(token.sub))
        row = (await db.session.execute(statement)).one()
        return {"id": row.id, "email": row.email}

    @app.get("/ladder/inline")
    async def inline_user(token: Claims = principal) -> dict[str, Any]:
        row = inline.execute("SELECT id, email FROM users WHERE id = ?", (int(token.sub),))
        found = row.fetchone()
        return {"id": found[0], "email": found[1]}

    return app


class _Driver:
    """Calls an ASGI app directly: one GET with the bearer token, the status checked."""

    def __init__(self, app: FastAPI, token: str) -> None:
        self.app = app
        self.headers = [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode())]

    async def get(self, path: str) -> None:
        scope: Scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": self.headers, "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 80), "state": {},
        }  # fmt: skip
        status: list[int] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await self.app(scope, receive, send)
        if status != [200]:
            raise RuntimeError(f"{path} answered {status}")

    async def per_request_us(self, path: str, count: int, concurrency: int) -> float:
        """Microseconds per request: ``count`` requests, ``concurrency`` at a time."""

        async def worker(share: int) -> None:
            for _ in range(share):
                await self.get(path)

        start = time.perf_counter()
        await asyncio.gather(*(worker(count // concurrency) for _ in range(concurrency)))
        return (time.perf_counter() - start) / (count // concurrency * concurrency) * 1e6


async def _log_in(app: FastAPI, codes: dict[str, str]) -> str:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        email = "ladder@example.com"
        (await client.post("/auth/request-otp", json={"email": email})).raise_for_status()
        verified = await client.post(
            "/auth/verify-otp", json={"email": email, "code": codes[email]}
        )
        verified.raise_for_status()
        token: str = verified.json()["access_token"]
        return token


def _package(filename: str) -> str:
    """The package a profiled function belongs to, for grouping."""
    path = filename.replace("\\", "/")
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    for ours in ("otpcore_fastapi", "otpcore", "bench"):
        if f"/{ours}/" in path:
            return ours
    if path.startswith("<") or "/lib/python3" in path:
        name = path.rsplit("/", 1)[-1].removesuffix(".py")
        return "stdlib asyncio" if "/asyncio/" in path else f"stdlib {name}"
    return "other"


def _profile_by_package(profile: cProfile.Profile) -> list[tuple[str, float]]:
    stats = pstats.Stats(profile)
    totals: Counter[str] = Counter()
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    functions: Counter[str] = Counter()
    for (filename, line, name), (_, _, tottime, _, _) in raw.items():
        package = "C functions" if filename == "~" else _package(filename)
        totals[package] += tottime
        where = name if filename == "~" else f"{package}:{Path(filename).name}:{line}({name})"
        functions[where] += tottime
    whole = sum(totals.values())
    return [(name, seconds / whole) for name, seconds in totals.most_common(12)] + [
        (f"  {name}", seconds / whole) for name, seconds in functions.most_common(12)
    ]


def _count_hops() -> Counter[str]:
    """Count aiosqlite's trips to its connection thread from now on, by the call made."""
    import aiosqlite.core

    original: Callable[..., Awaitable[Any]] = aiosqlite.core.Connection._execute
    counts: Counter[str] = Counter()

    async def counted(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        counts[getattr(fn, "__name__", repr(fn))] += 1
        return await original(self, fn, *args, **kwargs)

    aiosqlite.core.Connection._execute = counted  # type: ignore[method-assign]
    return counts


async def _run(requests: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="otpcore-bench-") as directory:
        codes: dict[str, str] = {}
        app = make_ladder_app(Path(directory) / "ladder.db", codes)
        async with app.router.lifespan_context(app):
            driver = _Driver(app, await _log_in(app, codes))
            for path in LADDER:  # warm-up: statements compiled, connections opened
                await driver.per_request_us(path, 200, CONCURRENCY)
            sequential: dict[str, list[float]] = {path: [] for path in LADDER}
            concurrent: dict[str, list[float]] = {path: [] for path in LADDER}
            for _ in range(rounds):
                for path in LADDER:
                    sequential[path].append(await driver.per_request_us(path, requests, 1))
                    concurrent[path].append(
                        await driver.per_request_us(path, requests, CONCURRENCY)
                    )
            hops = _count_hops()
            hop_counts = {}
            for path in LADDER:
                hops.clear()
                await driver.per_request_us(path, 320, CONCURRENCY)
                hop_counts[path] = hops.total() / 320
                if path == "/me":
                    me_hops = {name: count / 320 for name, count in hops.items()}
            profile = cProfile.Profile()
            profile.enable()
            await driver.per_request_us("/me", requests, CONCURRENCY)
            profile.disable()
    return {
        "sequential": {path: statistics.median(v) for path, v in sequential.items()},
        "concurrent": {path: statistics.median(v) for path, v in concurrent.items()},
        "hops": hop_counts,
        "me_hops": me_hops,
        "profile": _profile_by_package(profile),
    }


def run(requests: int = 2000, rounds: int = 5) -> dict[str, Any]:
    """Microseconds per request per route, hops per request, and /me's profile by package."""
    return asyncio.run(_run(requests, rounds))


def main(argv: list[str] | None = None) -> None:
    """Run and print the ladder and the profile."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per turn (2000)")
    parser.add_argument("--rounds", type=int, default=5, help="turns per route (5)")
    args = parser.parse_args([] if argv is None else argv)
    results = run(args.requests, args.rounds)
    print(
        f"in-process ASGI, one event loop, SQLite (create_sqlite_engine); {args.requests} "
        f"requests per turn, {args.rounds} turns, medians; us = microseconds per request"
    )
    print(
        f"  {'route':<18} {'us c=1':>8} {'step':>7} {f'us c={CONCURRENCY}':>9} {'step':>7} "
        f"{'hops':>5}"
    )
    for path in LADDER:
        one, many = results["sequential"][path], results["concurrent"][path]
        base = STEP_FROM.get(path)
        steps = (0.0, 0.0)
        if base is not None:
            steps = (one - results["sequential"][base], many - results["concurrent"][base])
        print(
            f"  {path:<18} {one:>8.0f} {steps[0]:>+7.0f} {many:>9.0f} {steps[1]:>+7.0f} "
            f"{results['hops'][path]:>5.1f}"
        )
    ping, me = results["concurrent"]["/ping"], results["concurrent"]["/me"]
    print(f"  /me above /ping at c={CONCURRENCY}: {me - ping:.0f} us per request")
    print("  step: against " + ", ".join(f"{k} -> {v}" for k, v in STEP_FROM.items()))
    calls = ", ".join(f"{name} {count:.1f}" for name, count in results["me_hops"].items())
    print(f"  /me's aiosqlite hops per request: {calls}")
    print(f"/me under cProfile, c={CONCURRENCY}: own time by package, then the top functions")
    for name, share in results["profile"]:
        print(f"  {name:<60} {share:>6.1%}")


if __name__ == "__main__":
    main(sys.argv[1:])
