"""Login flows over real HTTP: otpcore's wirings beside the reference library and a baseline.

Run: python bench/run.py flows [--quick]   or   python -m bench.bench_flows [--rounds 5]
     [--flows 300] [--concurrency 10] [--baseline <commit>] [--current <commit>]
     [--no-profile] [--no-floor] [--quick]

A flow is one user logging in and out again: request-otp -> the code (read from the server's
standard output, where the apps' README ``send_otp`` prints it) -> verify-otp -> a
current-user route (``GET /me``) -> refresh -> logout. ``--concurrency`` flows run at once
(10), ``--flows`` per round (300), ``--rounds`` rounds (5); every wiring runs once per round,
wirings taking turns, so load on the shared machine falls on all of them alike. Reported:
flows per second (median of the rounds, and the range) and, per step, the median of the
rounds' p50 and p95 latencies as the client sees them.

Each server is one uvicorn worker (default loop and HTTP implementation, no access log) on
its own database. Each flow is a new client (its own TCP connection) bound to its own
loopback address (127.x.y.z), so the per-client send and guess limits (issue 8) see a new
client per flow and never throttle: the limits stay on, at their defaults, and their
counters are written as in production.

The wirings, all in one run (the apps are in ``bench/flow_apps/``):

- ``otpcore readme-sqlite``: the README's Quick Start (``create_async_engine`` on aiosqlite);
- ``otpcore sqlite-wal``: the recommended ``create_sqlite_engine`` (WAL);
- ``otpcore postgres``: ``create_async_engine`` with asyncpg, on a new database of the server
  at ``OTPCORE_POSTGRES_URL`` (dropped afterwards); skipped when it is unset;
- ``otpcore mongodb``: ``MongoDBAdapter`` over ``AsyncMongoClient`` at ``MONGODB_URI`` (a new
  database, dropped afterwards); skipped when it is unset;
- ``reference``: fastapi-otp-authentication 0.2.0 on its README wiring (SQLite through plain
  ``create_async_engine``), from ``bench/.venv-reference``, a Python 3.12 venv this script
  makes (pyenv's 3.12);
- ``floor`` (unless ``--no-floor``): the same routes, bodies and validation on FastAPI with
  nothing behind them (``floor_app``): the most any library reaches with this client here;
- ``otpcore`` is this checkout as it is (uncommitted edits included), or ``--current <commit>``
  installed like the baseline;
- ``baseline <wiring>``: each otpcore wiring again, at ``--baseline`` (a commit, default
  :data:`DEFAULT_BASELINE`), checked out in a git worktree of its own
  (``bench/.venv-at-<commit>/src``) and installed with ``pip install -e <worktree>[all]``
  into ``bench/.venv-at-<commit>``: one venv per commit, so runs at once never re-point each
  other's servers.

Both venvs pin the packages they share with the project's environment to its versions.
After the rounds, unless ``--no-profile``, each wiring is profiled (``bench_flows_profile``):
statements, transactions, pool checkouts, aiosqlite hops and MongoDB commands per step,
fsyncs and busy-handler sleeps (strace) and where the loop's thread spends its time
(cProfile).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import importlib.metadata
import itertools
import math
import os
import re
import secrets
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
FLOW_APPS = ROOT / "bench" / "flow_apps"
REFERENCE_VENV = ROOT / "bench" / ".venv-reference"
#: Commits measured from a worktree get a venv each: ``bench/.venv-at-<commit[:12]>``, the
#: worktree in its ``src``. One per commit, never re-pointed: two runs at once (one with
#: ``--baseline A``, one with ``--baseline B``) would otherwise check out each other's commit
#: under servers still running, and servers started later would import the other commit.
WORKTREE_VENVS = ROOT / "bench"
#: The project's commit before the issue-13 work (HEAD when the benchmark was written).
DEFAULT_BASELINE = "07ea6731ce746dc676554b353f69fbf25ee9898b"
REFERENCE_REQUIREMENTS = ("fastapi-otp-authentication[sqlalchemy]==0.2.0", "aiosqlite", "uvicorn")
#: Shared with the reference venv: pinned to the project environment's versions.
SHARED = (
    "fastapi", "starlette", "pydantic", "pydantic-core", "uvicorn", "h11", "anyio",
    "aiosqlite", "greenlet", "sqlalchemy", "cryptography", "email-validator",
)  # fmt: skip
STEPS = ("request-otp", "code", "verify-otp", "current-user", "refresh", "logout")
OTPCORE_WIRINGS = ("readme-sqlite", "sqlite-wal", "postgres", "mongodb")
_CODE_LINE = re.compile(r"OTP for (\S+): (\S+)")
_STAMP = ".otpcore-bench-requirements"

# -- the venvs ------------------------------------------------------------------------------


def python312() -> Path:
    """pyenv's Python 3.12 (``$(pyenv root)/versions/3.12*/bin/python3``)."""
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    if shutil.which("pyenv"):
        root = subprocess.run(
            ["pyenv", "root"], capture_output=True, text=True, check=True
        ).stdout.strip()
    found = sorted(glob.glob(f"{root}/versions/3.12*/bin/python3"))
    if not found:
        raise RuntimeError(f"no Python 3.12 under {root}/versions: pyenv install 3.12")
    return Path(found[-1])


def pins(names: Sequence[str] | None = None) -> list[str]:
    """``name==version`` for ``names`` (default: every package) of the project's environment."""
    installed = {
        dist.metadata["Name"].lower(): dist.version for dist in importlib.metadata.distributions()
    }
    chosen = installed.keys() if names is None else [name.lower() for name in names]
    return sorted(
        f"{name}=={installed[name]}" for name in chosen if name in installed and name != "otpcore"
    )


def _install(
    venv: Path, python: Path | str, requirements: Sequence[str], constraints: list[str]
) -> None:
    wanted = "\n".join([str(python), *requirements, *constraints]) + "\n"
    stamp = venv / _STAMP
    if (venv / "bin" / "python").exists() and stamp.exists() and stamp.read_text() == wanted:
        return
    with tempfile.TemporaryDirectory(prefix="otpcore-bench-") as directory:
        constraint_file = Path(directory) / "constraints.txt"
        constraint_file.write_text("\n".join(constraints) + "\n")
        commands = [
            [str(python), "-m", "venv", str(venv)],
            [
                str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                "--disable-pip-version-check", "--constraint", str(constraint_file),
                *requirements,
            ],
        ]  # fmt: skip
        for command in commands:
            print(f"  $ {' '.join(command)}", flush=True)
            subprocess.run(command, check=True)
    stamp.write_text(wanted)


def ensure_reference_venv() -> Path:
    """``bench/.venv-reference`` (Python 3.12, the reference library); its interpreter."""
    _install(REFERENCE_VENV, python312(), REFERENCE_REQUIREMENTS, pins(SHARED))
    return REFERENCE_VENV / "bin" / "python"


def worktree_venv(commit: str) -> Path:
    """The venv (and, in its ``src``, the worktree) that holds ``commit``."""
    resolved = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{commit}^{{commit}}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    return WORKTREE_VENVS / f".venv-at-{resolved[:12]}"


def ensure_worktree_venv(commit: str) -> Path:
    """``commit`` checked out in a git worktree of its own (:func:`worktree_venv` ``/src``)
    and installed editable into that venv; its interpreter."""
    venv = worktree_venv(commit)
    tree = venv / "src"
    if not (tree / ".git").exists():
        venv.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit],
            check=True,
        )
    _install(venv, sys.executable, ["-e", f"{tree}[all]"], pins())
    return venv / "bin" / "python"


# -- servers --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Wiring:
    """One server to measure: its label, the interpreter, the app module and its store."""

    label: str
    python: Path
    module: str  # in bench/flow_apps: otpcore_app, reference_app or floor_app
    store: str  # readme-sqlite, sqlite-wal, postgres, mongodb; none (the floor)
    library: str  # the package /_bench/info must report
    library_root: Path | None = None  # where that package must come from
    workers: int = 1  # uvicorn worker processes


@dataclass
class Server:
    """A running uvicorn process, and the codes its ``send_otp`` printed."""

    process: subprocess.Popen[str]
    base_url: str
    loop: asyncio.AbstractEventLoop
    waiting: dict[str, asyncio.Future[str]] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)

    def expect(self, email: str) -> asyncio.Future[str]:
        """A future the code printed for ``email`` will complete (ask before requesting it)."""
        future: asyncio.Future[str] = self.loop.create_future()
        self.waiting[email] = future
        return future

    def _deliver(self, email: str, code: str) -> None:
        future = self.waiting.pop(email, None)
        if future is not None and not future.done():
            future.set_result(code)

    def cpu_seconds(self) -> float:
        """User + system CPU seconds so far of the server's processes (uvicorn's and, with
        several workers, its children's; psutil), or NaN when psutil is missing."""
        try:
            import psutil
        except ImportError:
            return math.nan
        try:
            root = psutil.Process(self.process.pid)
            total = 0.0
            for process in [root, *root.children(recursive=True)]:
                times = process.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            return math.nan
        return total

    def pump(self) -> None:
        """Read the server's output (a thread): hand each code to its flow, keep the rest."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            match = _CODE_LINE.search(line)
            if match:
                self.loop.call_soon_threadsafe(self._deliver, match.group(1), match.group(2))
            elif len(self.output) < 200:
                self.output.append(line)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def server_command(wiring: Wiring, port: int) -> list[str]:
    """uvicorn serving the wiring's app: run from a scratch directory with ``--app-dir``
    ``bench/flow_apps`` only, so the interpreter's own otpcore (the baseline worktree's, in
    the baseline venv) is the one imported, never this checkout's."""
    return [
        str(wiring.python), "-m", "uvicorn", f"{wiring.module}:make_app", "--factory",
        "--app-dir", str(FLOW_APPS), "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(wiring.workers), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


@asynccontextmanager
async def serve(
    wiring: Wiring, env: Mapping[str, str], workdir: Path, prefix: Sequence[str] = ()
) -> AsyncIterator[Server]:
    """Run ``wiring``'s server until it answers ``/_bench/info`` from the expected code."""
    port = _free_port()
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environment |= {"PYTHONUNBUFFERED": "1", "BENCH_WIRING": wiring.store, **env}
    process = subprocess.Popen(  # noqa: ASYNC220 - started once per server, before measuring
        [*prefix, *server_command(wiring, port)], cwd=workdir, env=environment,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    server = Server(process, f"http://127.0.0.1:{port}", asyncio.get_running_loop())
    reader = threading.Thread(target=server.pump, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                try:
                    info = (await client.get(f"{server.base_url}/_bench/info")).json()
                    break
                except httpx.TransportError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"{wiring.label} did not start:\n{''.join(server.output)}"
                        ) from None
                    await asyncio.sleep(0.2)
        if wiring.library_root is not None and not Path(info["file"]).is_relative_to(
            wiring.library_root
        ):
            raise RuntimeError(f"{wiring.label} runs {info['file']}, not {wiring.library_root}")
        yield server
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 60)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)
        await asyncio.to_thread(reader.join, 10)  # the pipe reaches EOF once it is gone
        if process.stdout is not None:
            process.stdout.close()


# -- flows ----------------------------------------------------------------------------------

_addresses = itertools.count(1)


def next_address() -> str:
    """A loopback address no flow of this run has used (127.1.0.1, 127.1.0.2, ...)."""
    n = next(_addresses)
    return f"127.{1 + (n // 64516) % 254}.{1 + (n // 254) % 254}.{1 + n % 254}"


class FlowError(RuntimeError):
    """A step answered something other than 200; ``kind`` names the step, status and code."""

    def __init__(self, step: str, response: httpx.Response) -> None:
        try:
            code = response.json().get("code") or ""
        except ValueError:
            code = ""
        self.kind = f"{step} {response.status_code} {code}".strip()
        super().__init__(f"{self.kind}: {response.text[:200]}")


def _checked(step: str, response: httpx.Response) -> httpx.Response:
    if response.status_code != 200:
        raise FlowError(step, response)
    return response


async def flow(server: Server, tls: ssl.SSLContext) -> dict[str, float]:
    """One login flow from a new client on a new loopback address; seconds per step."""
    email = f"flow-{uuid.uuid4().hex[:16]}@example.com"
    times: dict[str, float] = {}
    transport = httpx.AsyncHTTPTransport(local_address=next_address(), verify=tls)
    async with httpx.AsyncClient(base_url=server.base_url, transport=transport, timeout=120) as c:
        code = server.expect(email)
        started = time.perf_counter()
        requested = _checked(
            "request-otp", await c.post("/auth/request-otp", json={"email": email})
        )
        now = time.perf_counter()
        times["request-otp"], started = now - started, now
        body = {"email": email, "code": await asyncio.wait_for(code, 120)}
        now = time.perf_counter()
        times["code"], started = now - started, now
        challenge = requested.json().get("challenge_id")
        if challenge:
            body["challenge_id"] = challenge
        login = _checked("verify-otp", await c.post("/auth/verify-otp", json=body)).json()
        now = time.perf_counter()
        times["verify-otp"], started = now - started, now
        bearer = {"Authorization": f"Bearer {login['access_token']}"}
        _checked("current-user", await c.get("/me", headers=bearer))
        now = time.perf_counter()
        times["current-user"], started = now - started, now
        refresh = {"refresh_token": login["refresh_token"]}
        renewed = _checked("refresh", await c.post("/auth/refresh", json=refresh)).json()
        now = time.perf_counter()
        times["refresh"], started = now - started, now
        # The reference does not rotate: its refresh answers an access token only.
        refresh = {"refresh_token": renewed.get("refresh_token") or login["refresh_token"]}
        bearer = {"Authorization": f"Bearer {renewed['access_token']}"}
        _checked("logout", await c.post("/auth/logout", json=refresh, headers=bearer))
        times["logout"] = time.perf_counter() - started
    return times


@dataclass(frozen=True, slots=True)
class Round:
    """One round on one server: wall time, every completed flow's step times, and the failed
    flows by step, status and error code (a 503 ``storage_unavailable`` is SQLite's busy
    timeout running out, say)."""

    flows: int
    seconds: float
    steps: Mapping[str, Sequence[float]]
    errors: Mapping[str, int] = field(default_factory=dict)
    #: CPU seconds the server's processes spent during the round (NaN if not measured).
    cpu: float = math.nan

    @property
    def rate(self) -> float:
        return self.flows / self.seconds


async def run_round(server: Server, flows: int, concurrency: int, tls: ssl.SSLContext) -> Round:
    """``flows`` flows, ``concurrency`` at a time; failed flows are counted, not timed, and
    flows/s counts completed flows only."""
    remaining = iter(range(flows))
    steps: dict[str, list[float]] = {step: [] for step in STEPS}
    errors: Counter[str] = Counter()

    async def worker() -> None:
        for _ in remaining:
            try:
                times = await flow(server, tls)
            except FlowError as exc:
                errors[exc.kind] += 1
                continue
            for step, seconds in times.items():
                steps[step].append(seconds)

    cpu = server.cpu_seconds()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    completed = flows - sum(errors.values())
    seconds = time.perf_counter() - started
    return Round(completed, seconds, steps, dict(errors), server.cpu_seconds() - cpu)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in (0, 1])."""
    ordered = sorted(values)
    if not ordered:  # every flow of the round failed
        return math.nan
    rank = math.ceil(fraction * len(ordered) - 1e-9)  # 0.95 * 100 is 95.00000000000001
    return ordered[max(0, min(len(ordered), rank) - 1)]


@dataclass(frozen=True, slots=True)
class Summary:
    """A wiring's results: median flows/s and range, median p50/p95 per step (ms)."""

    rate: float
    low: float
    high: float
    p50: Mapping[str, float]
    p95: Mapping[str, float]
    errors: Mapping[str, int] = field(default_factory=dict)
    #: The server's CPU milliseconds per completed flow (median of the rounds).
    cpu_ms: float = math.nan


def summarize(rounds: Sequence[Round]) -> Summary:
    """Medians over the rounds of flows/s and of each step's per-round p50 and p95."""
    rates = [r.rate for r in rounds]
    return Summary(
        rate=statistics.median(rates),
        low=min(rates),
        high=max(rates),
        p50={s: _median_ms(rounds, s, 0.50) for s in STEPS},
        p95={s: _median_ms(rounds, s, 0.95) for s in STEPS},
        errors=dict(sum((Counter(r.errors) for r in rounds), Counter())),
        cpu_ms=statistics.median(1000 * r.cpu / r.flows if r.flows else math.nan for r in rounds),
    )


def _median_ms(rounds: Sequence[Round], step: str, fraction: float) -> float:
    return 1000 * statistics.median(percentile(r.steps[step], fraction) for r in rounds)


# -- the run --------------------------------------------------------------------------------


@asynccontextmanager
async def databases(label: str, store: str, scratch: Path) -> AsyncIterator[dict[str, str]]:
    """The environment pointing a server at a new database for ``store`` (dropped after)."""
    if store == "none":
        yield {}
    elif store in ("readme-sqlite", "sqlite-wal"):
        yield {"BENCH_DATABASE_URL": f"sqlite+aiosqlite:///{scratch / (label + '.db')}"}
    elif store == "postgres":
        import asyncpg  # type: ignore[import-untyped]
        from sqlalchemy.engine import make_url

        server = make_url(os.environ["OTPCORE_POSTGRES_URL"]).set(drivername="postgresql")
        name = f"otpcore_flows_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(server.render_as_string(hide_password=False))
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
            url = server.set(drivername="postgresql+asyncpg", database=name)
            yield {"BENCH_DATABASE_URL": url.render_as_string(hide_password=False)}
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    else:
        from pymongo import AsyncMongoClient

        uri, name = os.environ["MONGODB_URI"], f"otpcore_flows_{uuid.uuid4().hex[:12]}"
        try:
            yield {"BENCH_DATABASE_URL": uri, "BENCH_MONGO_DB": name}
        finally:
            client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(uri)
            try:
                await client.drop_database(name)
            finally:
                await client.close()


def wirings(
    *,
    baseline: str | None,
    reference: bool,
    floor: bool = False,
    current: str | None = None,
    workers: int = 1,
    only: Sequence[str] | None = None,
) -> list[Wiring]:
    """What this run measures (PostgreSQL and MongoDB only when their servers are set;
    ``only`` these otpcore stores when given), each otpcore wiring with ``workers`` uvicorn
    workers (the reference and the floor keep one)."""
    stores = [
        s
        for s in OTPCORE_WIRINGS
        if (s != "postgres" or os.environ.get("OTPCORE_POSTGRES_URL"))
        and (s != "mongodb" or os.environ.get("MONGODB_URI"))
        and (only is None or s in only)
    ]
    python, root = Path(sys.executable), ROOT
    if current is not None:  # a commit instead of this checkout (with its uncommitted edits)
        python, root = ensure_worktree_venv(current), worktree_venv(current) / "src"
    chosen = [
        Wiring(f"otpcore {s}", python, "otpcore_app", s, "otpcore", root, workers) for s in stores
    ]
    if reference:
        chosen.append(
            Wiring(
                "reference",
                ensure_reference_venv(),
                "reference_app",
                "readme-sqlite",
                "fastapi_otp_authentication",
                REFERENCE_VENV,
            )
        )
    if floor:
        chosen.append(Wiring("floor", Path(sys.executable), "floor_app", "none", "fastapi"))
    if baseline is not None:
        base = ensure_worktree_venv(baseline)
        tree = worktree_venv(baseline) / "src"
        chosen += [
            Wiring(f"baseline {s}", base, "otpcore_app", s, "otpcore", tree, workers)
            for s in stores
        ]
    return chosen


async def measure(
    chosen: Sequence[Wiring], *, rounds: int, flows: int, concurrency: int, warmup: int
) -> dict[str, list[Round]]:
    """Every wiring's rounds, wirings taking turns within each round."""
    tls = httpx.create_ssl_context()
    results: dict[str, list[Round]] = {w.label: [] for w in chosen}
    secret = secrets.token_hex(32)
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="otpcore-flows-")))
        async with AsyncExitStack() as servers:
            envs = {
                w.label: await servers.enter_async_context(
                    databases(w.label.replace(" ", "-"), w.store, scratch)
                )
                for w in chosen
            }
            running = {}
            for w in chosen:
                env = {**envs[w.label], "BENCH_SECRET": secret}
                running[w.label] = await servers.enter_async_context(serve(w, env, scratch))
                await run_round(running[w.label], warmup, concurrency, tls)
            for number in range(rounds):
                for w in chosen:
                    results[w.label].append(
                        await run_round(running[w.label], flows, concurrency, tls)
                    )
                line = ", ".join(f"{label} {r[-1].rate:.1f}" for label, r in results.items())
                print(f"  round {number + 1}/{rounds} (flows/s): {line}", flush=True)
    return results


def table(summaries: Mapping[str, Summary]) -> list[str]:
    """The printed report: flows/s, then p50/p95 (ms) per step, and the worst p95/p50."""
    reference = summaries.get("reference")
    head = f"  {'wiring':<24} {'flows/s':>8} {'range':>13} {'x ref':>6}"
    lines = [
        head + "".join(f" {s:>15}" for s in STEPS) + f" {'worst p95/p50':>14} {'cpu ms/flow':>12}"
    ]
    for label, s in summaries.items():
        ratio = f"{s.rate / reference.rate:>6.2f}" if reference else f"{'':>6}"
        cells = "".join(f" {s.p50[step]:>7.1f}/{s.p95[step]:<7.1f}" for step in STEPS)
        worst = max(s.p95[step] / s.p50[step] for step in STEPS if step != "code")
        span = f"{s.low:.1f}-{s.high:.1f}"
        lines.append(
            f"  {label:<24} {s.rate:>8.1f} {span:>13} {ratio}{cells} {worst:>14.1f}"
            f" {s.cpu_ms:>12.1f}"
        )
    for label, s in summaries.items():
        if s.errors:
            failed = ", ".join(f"{kind} x{n}" for kind, n in sorted(s.errors.items()))
            lines.append(f"  failed flows, {label}: {failed}")
    return lines


def main(argv: list[str] | None = None) -> None:
    """Measure and print the table; then profile (unless ``--no-profile``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds (5)")
    parser.add_argument("--flows", type=int, default=300, help="flows per round (300)")
    parser.add_argument("--concurrency", type=int, default=10, help="flows at once (10)")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="commit to compare with")
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline")
    parser.add_argument(
        "--current", default=None, help="measure this commit as otpcore (default: this checkout)"
    )
    parser.add_argument("--no-reference", action="store_true", help="skip the reference")
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the floor (no authentication behind)"
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the profile")
    parser.add_argument("--profile-flows", type=int, default=100, help="flows profiled (100)")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 60 flows")
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn workers per otpcore server (1)"
    )
    parser.add_argument(
        "--stores", default=None, help="only these otpcore stores, comma-separated (all)"
    )
    # bench/run.py passes its own arguments after the suite names.
    args = parser.parse_args([] if argv is None else argv)
    if args.quick:
        args.rounds, args.flows, args.profile_flows = 2, 60, 30
    chosen = wirings(
        baseline=None if args.no_baseline else args.baseline,
        reference=not args.no_reference,
        floor=not args.no_floor,
        current=args.current,
        workers=args.workers,
        only=None if args.stores is None else args.stores.split(","),
    )
    print(
        f"Login flows over HTTP: {args.concurrency} concurrent flows, "
        f"{args.flows} flows x {args.rounds} rounds (wirings taking turns); "
        f"{args.workers} worker(s) per otpcore server; baseline "
        f"{'none' if args.no_baseline else args.baseline}; otpcore "
        f"{args.current or 'this checkout, uncommitted edits included'}",
        flush=True,
    )
    results = asyncio.run(
        measure(
            chosen,
            rounds=args.rounds,
            flows=args.flows,
            concurrency=args.concurrency,
            warmup=min(20, args.flows),
        )
    )
    print("flows/s: median of the rounds; per step: p50/p95 in ms (medians of the rounds)")
    print("\n".join(table({label: summarize(r) for label, r in results.items()})))
    if not args.no_profile:
        from bench.bench_flows_profile import profile_all

        asyncio.run(profile_all(chosen, flows=args.profile_flows, concurrency=args.concurrency))


if __name__ == "__main__":
    main(sys.argv[1:])
