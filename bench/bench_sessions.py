"""The revocation mirror after many refreshes: its size and a fresh worker's first check.

Run: python bench/run.py sessions   or   python -m bench.bench_sessions [--refreshes 20000]

One user logs in, then refreshes ``--refreshes`` times in a row through
:class:`otpcore.service.OTPAuth` on a SQLite file (``create_sqlite_engine``, one session per
refresh, as one request each), always with the newest refresh token: what a long-lived client
does. Whatever the code does on a refresh is what is measured; up to issue 10 each rotation
left a marker in the revocation table, which every worker's mirror loads.

Then a fresh worker (a new process, cold: its own engine and :class:`OTPAuth`) makes its first
claims-only check (``authenticate_claims``, which loads the mirror), and the same again after
0 refreshes as the baseline:

- the first check's latency (median of ``--workers`` fresh processes), and the second's;
- the mirror's entries, and the Python memory the first check leaves allocated (tracemalloc,
  in a separate fresh process so tracing does not slow the timed one): mostly the mirror,
  plus the statement caches the baseline has too.

Targets (issue 10): no mirror growth beyond the sessions actually revoked, and the first
claims-only check under 50 ms, after 20,000 refreshes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from otpcore.domain.policy import Policy
from otpcore.service import OTPAuth
from otpcore.stores.sqlalchemy import (
    BaseOTPUserTable,
    SQLAlchemyAdapter,
    TokenBlacklist,
    create_sqlite_engine,
)

__all__ = ["main", "run"]

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"bench-sessions-secret-0123456789abcdef"
EMAIL = "refresher@example.com"


class _Base(DeclarativeBase):
    pass


class SessionsUser(BaseOTPUserTable[int], _Base):
    """Integer-key user, as in the reference README."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)


class SessionsBlacklist(TokenBlacklist, _Base):
    """The revocation table (and whatever the library declares beside it)."""


def _auth() -> OTPAuth[SessionsUser]:
    async def send(email: str, code: str) -> None:
        return None

    return OTPAuth(
        policy=Policy(secret=SECRET, developer_mode=True, resend_cooldown=timedelta(0)),
        store=None,
        sender=send,
    )


async def _refreshes(database: Path, count: int) -> dict[str, Any]:
    """Log in, refresh ``count`` times; the newest access token and the refresh timings."""
    engine = create_sqlite_engine(f"sqlite+aiosqlite:///{database}")
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_Base.metadata.create_all)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        auth = _auth()
        async with sessions() as session:
            await auth.with_store(
                SQLAlchemyAdapter(session, SessionsUser, SessionsBlacklist)
            ).request_code(EMAIL)
        async with sessions() as session:
            store = SQLAlchemyAdapter(session, SessionsUser, SessionsBlacklist)
            login = await auth.with_store(store).verify_code(EMAIL, "000000")
        samples = []
        started = time.perf_counter()
        for _ in range(count):
            begin = time.perf_counter()
            async with sessions() as session:
                store = SQLAlchemyAdapter(session, SessionsUser, SessionsBlacklist)
                login = await auth.with_store(store).refresh(login.refresh_token)
            samples.append(time.perf_counter() - begin)
        elapsed = time.perf_counter() - started
        rows = await _revocation_rows(engine)
    finally:
        await engine.dispose()
    return {
        "access_token": login.access_token,
        "refresh_ms_median": statistics.median(samples) * 1e3 if samples else 0.0,
        "refresh_seconds": elapsed,
        "revocation_rows": rows,
    }


async def _revocation_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        table = SessionsBlacklist.__table__
        count: int = (
            await connection.execute(select(func.count()).select_from(table))
        ).scalar_one()
        return count


async def _first_check(database: Path, token: str, *, trace: bool) -> dict[str, Any]:
    """A fresh worker's first and second claims-only checks (run in a new process)."""
    engine = create_sqlite_engine(f"sqlite+aiosqlite:///{database}")
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    auth = _auth()
    try:
        async with sessions() as session:
            view = auth.with_store(SQLAlchemyAdapter(session, SessionsUser, SessionsBlacklist))
            gc.collect()
            if trace:
                tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0] if trace else 0
            start = time.perf_counter()
            await view.authenticate_claims(token)
            first = time.perf_counter() - start
            gc.collect()
            retained = tracemalloc.get_traced_memory()[0] - before if trace else 0
            if trace:
                tracemalloc.stop()
            start = time.perf_counter()
            await view.authenticate_claims(token)
            second = time.perf_counter() - start
            try:
                entries: int | None = len(auth.mirror)
            except TypeError:
                entries = None
    finally:
        await engine.dispose()
    return {
        "first_ms": first * 1e3,
        "second_ms": second * 1e3,
        "mirror_entries": entries,
        "retained_kib": retained / 1024,
    }


def _fresh_worker(database: Path, token: str, *, trace: bool) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.bench_sessions", "--fresh-worker", str(database)]
    if trace:
        command.append("--trace")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_ACCESS_TOKEN": token}
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=300
    )
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def measure(refreshes: int, *, workers: int = 5) -> dict[str, float]:
    """Refresh ``refreshes`` times, then measure fresh workers' first checks."""
    with tempfile.TemporaryDirectory(prefix="otpcore-bench-") as directory:
        database = Path(directory) / "sessions.db"
        made = asyncio.run(_refreshes(database, refreshes))
        token = made["access_token"]
        timed = [_fresh_worker(database, token, trace=False) for _ in range(workers)]
        traced = _fresh_worker(database, token, trace=True)
    return {
        "refresh ms (median)": made["refresh_ms_median"],
        "revocation rows": made["revocation_rows"],
        "mirror entries": traced["mirror_entries"] if traced["mirror_entries"] is not None else -1,
        "mirror memory KiB (first check retains)": traced["retained_kib"],
        "first claims-only check ms (median)": statistics.median(t["first_ms"] for t in timed),
        "second check ms (median)": statistics.median(t["second_ms"] for t in timed),
    }


def run(refreshes: int = 20_000, workers: int = 5) -> dict[str, dict[str, float]]:
    """The measurements after 0 (baseline) and after ``refreshes`` refreshes."""
    return {"0": measure(0, workers=workers), str(refreshes): measure(refreshes, workers=workers)}


def main(argv: list[str] | None = None) -> None:
    """Run and print the table (or, with ``--fresh-worker``, be one fresh worker)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refreshes", type=int, default=20_000, help="refreshes (20000)")
    parser.add_argument("--workers", type=int, default=5, help="fresh workers timed (5)")
    parser.add_argument("--fresh-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args([] if argv is None else argv)
    if args.fresh_worker is not None:
        token = os.environ["BENCH_ACCESS_TOKEN"]
        answer = asyncio.run(_first_check(args.fresh_worker, token, trace=args.trace))
        print(json.dumps(answer))
        return
    results = run(args.refreshes, args.workers)
    names = list(next(iter(results.values())))
    width = max(len(name) for name in names)
    print("the revocation mirror after N refreshes (SQLite, create_sqlite_engine)")
    print(f"  {'measurement':<{width}} " + " ".join(f"{'N=' + n:>12}" for n in results))
    for name in names:
        values = " ".join(f"{results[n][name]:>12,.2f}" for n in results)
        print(f"  {name:<{width}} {values}")
    after = results[str(args.refreshes)]
    verdict = "holds" if after["first claims-only check ms (median)"] < 50 else "MISSED"
    print(f"  target: first claims-only check < 50 ms after {args.refreshes:,}: {verdict}")


if __name__ == "__main__":
    main(sys.argv[1:])
