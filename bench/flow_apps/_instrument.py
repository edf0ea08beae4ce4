# mypy: ignore-errors
# Runs inside the benchmark's server processes, in three different venvs (the project's, the
# baseline worktree's, the reference library's): standard library only at import time.
"""The flow benchmark's profiling mode: counts per step, read over a debug route.

Off unless ``BENCH_PROFILE=1``. Then every request is tagged with its step (a context
variable set by an ASGI middleware, which SQLAlchemy's greenlets and the tasks PyMongo runs
listeners in inherit), and these are counted per step:

- ``statements``: SQLAlchemy ``before_cursor_execute`` (by first keyword as well);
- ``begins`` / ``commits`` / ``rollbacks``: SQLAlchemy connection events (the ORM's and
  Core's transactions; a transaction SQLAlchemy does not see, such as pysqlite's implicit
  ``BEGIN``, is not counted here, which is why statements are counted too);
- ``checkouts`` / ``connects``: pool events (a connect is a new DBAPI connection: with
  aiosqlite a new thread);
- ``hops`` and ``hop_ms``: aiosqlite's ``Connection._execute``, each a trip to the
  connection's thread and back, and the time spent waiting for it (includes SQLite's busy
  handler sleeping on a lock held by another connection);
- ``commands``: PyMongo command-started events (MongoDB);
- ``requests`` and ``server_ms``: requests per step, time inside the app per step.

``GET /_bench/stats`` returns the counters; ``POST /_bench/reset`` zeroes them;
``POST /_bench/cprofile/start`` and ``POST /_bench/cprofile/stop?path=...`` run cProfile on
the event loop's thread and dump its stats.
"""

from __future__ import annotations

import contextvars
import os
import time
from collections import Counter, defaultdict

ENABLED = os.environ.get("BENCH_PROFILE") == "1"

STEPS = {
    ("POST", "/auth/request-otp"): "request-otp",
    ("POST", "/auth/verify-otp"): "verify-otp",
    ("GET", "/me"): "current-user",
    ("POST", "/auth/refresh"): "refresh",
    ("POST", "/auth/logout"): "logout",
}

_step: contextvars.ContextVar[str] = contextvars.ContextVar("bench_step", default="other")
_counts: defaultdict[str, Counter] = defaultdict(Counter)
_profiler = None


def count(name: str, amount: float = 1) -> None:
    """Add ``amount`` to counter ``name`` of the current request's step."""
    _counts[_step.get()][name] += amount


class StepMiddleware:
    """Tags each request with its step and times it (pure ASGI: no extra task)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        step = STEPS.get((scope["method"], scope["path"]), "other")
        token = _step.set(step)
        started = time.perf_counter()
        try:
            return await self.app(scope, receive, send)
        finally:
            count("requests")
            count("server_ms", (time.perf_counter() - started) * 1000)
            _step.reset(token)


def instrument_engine(engine) -> None:
    """Count statements, transactions and pool traffic of an (async) SQLAlchemy engine."""
    from sqlalchemy import event

    sync_engine = getattr(engine, "sync_engine", engine)

    @event.listens_for(sync_engine, "before_cursor_execute")
    def _statement(conn, cursor, statement, parameters, context, executemany):
        count("statements")
        count("sql:" + statement.lstrip().split(None, 1)[0].upper())

    for name in ("begin", "commit", "rollback"):
        event.listen(sync_engine, name, lambda conn, _n=name: count(_n + "s"))
    event.listen(sync_engine, "checkout", lambda *args: count("checkouts"))
    event.listen(sync_engine, "connect", lambda *args: count("connects"))


def instrument_aiosqlite() -> None:
    """Count and time aiosqlite's trips to its connection threads."""
    try:
        from aiosqlite import core
    except ImportError:
        return
    original = core.Connection._execute

    async def _execute(self, fn, *args, **kwargs):
        started = time.perf_counter()
        try:
            return await original(self, fn, *args, **kwargs)
        finally:
            count("hops")
            count("hop_ms", (time.perf_counter() - started) * 1000)

    core.Connection._execute = _execute


def mongo_listener():
    """A PyMongo command listener counting commands per step."""
    from pymongo import monitoring

    class _Listener(monitoring.CommandListener):
        def started(self, event):
            count("commands")
            count("mongo:" + event.command_name)

        def succeeded(self, event):
            pass

        def failed(self, event):
            count("command_failures")

    return _Listener()


def add_routes(app, library: str, engine=None) -> None:
    """Add ``/_bench/info`` (always) and, in profiling mode, the counters and cProfile routes.

    ``library`` names the package whose file ``/_bench/info`` reports, so the driver can
    check that a server runs the code it means to measure (the baseline worktree's, say).
    """
    import importlib

    module = importlib.import_module(library)

    @app.get("/_bench/info", include_in_schema=False)
    async def info() -> dict:
        return {"pid": os.getpid(), "library": library, "file": module.__file__}

    if not ENABLED:
        return
    if engine is not None:
        instrument_engine(engine)
        if engine.dialect.driver == "aiosqlite":
            instrument_aiosqlite()
    app.add_middleware(StepMiddleware)

    @app.get("/_bench/stats", include_in_schema=False)
    async def stats() -> dict:
        return {step: dict(values) for step, values in _counts.items()}

    @app.post("/_bench/reset", include_in_schema=False)
    async def reset() -> dict:
        _counts.clear()
        return {}

    @app.post("/_bench/cprofile/start", include_in_schema=False)
    async def cprofile_start() -> dict:
        global _profiler
        import cProfile

        _profiler = cProfile.Profile()
        _profiler.enable()
        return {}

    @app.post("/_bench/cprofile/stop", include_in_schema=False)
    async def cprofile_stop(path: str) -> dict:
        global _profiler
        if _profiler is not None:
            _profiler.disable()
            _profiler.dump_stats(path)
            _profiler = None
        return {}
