"""Protected-route throughput over HTTP, side by side with an unauthenticated route.

Run: python bench/bench_http.py [--duration 5] [--connections 32] [--rounds 3]

Starts the demo app (one uvicorn worker, default loop and HTTP implementation, no access
log) on a fresh SQLite file, and on PostgreSQL too when ``OTPCORE_POSTGRES_URL`` is set; logs
a user in through the API, then measures with ``wrk`` (``apt-get install wrk``):

- ``/ping``: no authentication (the baseline);
- ``/me``: current user, one signature check and one database query;
- ``/claims``: claims only, one signature check against the revocation mirror (revocation
  enforced: the mirror is refreshed from the database at most once a second).

Targets on SQLite: current user >= 0.15 of the baseline, claims only >= 0.60.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
ROUTES = {"unauthenticated": "/ping", "current-user": "/me", "claims-only": "/claims"}
TARGETS = {"current-user": 0.15, "claims-only": 0.60}
_CODE_LINE = re.compile(r"code for (\S+): (\d+)")
_RATE = re.compile(r"Requests/sec:\s+([0-9.]+)")


def make_app() -> object:
    """The app the server process runs (``uvicorn --factory bench.bench_http:make_app``)."""
    from otpcore_fastapi.demo import create_app

    return create_app(database_url=os.environ["BENCH_DATABASE_URL"])


@dataclass
class Server:
    """A running uvicorn process and the lines it printed."""

    process: subprocess.Popen[str]
    base_url: str
    lines: queue.Queue[str]

    def code_for(self, email: str, timeout: float = 30) -> str:
        """The code the demo's console mailer printed for ``email``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            match = _CODE_LINE.search(line)
            if match and match.group(1) == email:
                return match.group(2)
        raise RuntimeError(f"the server printed no code for {email}")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def uvicorn_command(python: str | Path, factory: str, port: int) -> list[str]:
    """The command line that serves ``factory`` (``module:function``) on one uvicorn worker.

    The same for our app and for every peer: default loop and HTTP implementation, no
    access log, only warnings logged.
    """
    return [
        str(python), "-m", "uvicorn", factory, "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--no-access-log",
        "--log-level", "warning",
    ]  # fmt: skip


@contextmanager
def run_server(
    command: list[str], port: int, env: dict[str, str], health_path: str = "/ping"
) -> Iterator[Server]:
    """Run ``command`` (a server listening on ``port``) until ``health_path`` answers 2xx."""
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    server = Server(process, f"http://127.0.0.1:{port}", lines)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{server.base_url}{health_path}", timeout=1).raise_for_status()
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = "".join(_drain(lines))
                    raise RuntimeError(f"the server did not start: {command}\n{output}") from None
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=10)  # the pipe reaches EOF once the process is gone
        if process.stdout is not None:
            process.stdout.close()


def _drain(lines: queue.Queue[str]) -> list[str]:
    drained = []
    while True:
        try:
            drained.append(lines.get_nowait())
        except queue.Empty:
            return drained


@contextmanager
def serve(database_url: str, factory: str = "bench.bench_http:make_app") -> Iterator[Server]:
    """Run our app (``factory``) on ``database_url`` in a uvicorn subprocess."""
    port = free_port()
    env = {**os.environ, "BENCH_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    with run_server(uvicorn_command(sys.executable, factory, port), port, env) as server:
        yield server


def log_in(server: Server) -> str:
    """Create a user through the API and return an access token."""
    email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        client.post("/auth/request-otp", json={"email": email}).raise_for_status()
        code = server.code_for(email)
        verified = client.post("/auth/verify-otp", json={"email": email, "code": code})
        verified.raise_for_status()
        token: str = verified.json()["access_token"]
        for path in ROUTES.values():
            response = client.get(path, headers={"Authorization": f"Bearer {token}"})
            response.raise_for_status()
        return token


def wrk_command(
    url: str, token: str | None, *, duration: int, connections: int, threads: int
) -> list[str]:
    """The ``wrk`` command line for ``url``, with the bearer token when there is one."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s"]
    if token is not None:
        command += ["-H", f"Authorization: Bearer {token}"]
    return [*command, url]


class WrkSocketErrors(RuntimeError):
    """``wrk`` saw socket errors (often timeouts while a shared machine stalled): retryable."""


def parse_wrk(output: str) -> float:
    """Requests per second from ``wrk``'s report.

    Raises:
        RuntimeError: ``wrk`` saw non-2xx responses (a refused token must not pass for a
            fast route), or the report has no rate.
        WrkSocketErrors: ``wrk`` saw socket errors.
    """
    if "Non-2xx" in output:
        raise RuntimeError(f"wrk saw errors:\n{output}")
    if "Socket errors" in output:
        raise WrkSocketErrors(f"wrk saw errors:\n{output}")
    match = _RATE.search(output)
    if match is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    return float(match.group(1))


def wrk(url: str, token: str | None, *, duration: int, connections: int, threads: int) -> float:
    """Requests per second ``wrk`` measured for ``url`` (non-2xx responses fail the run)."""
    result = subprocess.run(
        wrk_command(url, token, duration=duration, connections=connections, threads=threads),
        capture_output=True, text=True, check=True, timeout=duration + 60,
    )  # fmt: skip
    try:
        return parse_wrk(result.stdout)
    except WrkSocketErrors as exc:
        raise WrkSocketErrors(f"{url}: {exc}") from None
    except RuntimeError as exc:
        raise RuntimeError(f"{url}: {exc}") from None


def measure(
    database_url: str, *, duration: int, connections: int, threads: int, rounds: int
) -> dict[str, float]:
    """Median requests per second per route, and median per-round ratios, on one database.

    Routes take turns, ``rounds`` times, so each ratio compares runs made seconds apart:
    on a shared machine, load that comes and goes then moves both sides of a ratio alike.
    """
    with serve(database_url) as server:
        token = log_in(server)
        samples: dict[str, list[float]] = {name: [] for name in ROUTES}
        for path in ROUTES.values():  # warm-up
            wrk(server.base_url + path, token, duration=1, connections=connections, threads=threads)
        for _ in range(rounds):
            for name, path in ROUTES.items():
                samples[name].append(
                    wrk(
                        server.base_url + path,
                        token,
                        duration=duration,
                        connections=connections,
                        threads=threads,
                    )
                )
        results = {f"{name} req/s": statistics.median(rates) for name, rates in samples.items()}
        base = samples["unauthenticated"]
        for name in TARGETS:
            ratios = [rate / b for rate, b in zip(samples[name], base, strict=True)]
            results[f"{name} ratio"] = statistics.median(ratios)
        return results


@contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server at ``server_url``, dropped afterwards."""
    import asyncio

    import asyncpg  # type: ignore[import-untyped]
    from sqlalchemy.engine import make_url

    url = make_url(server_url).set(drivername="postgresql")
    name = f"otpcore_bench_{uuid.uuid4().hex[:12]}"
    admin = url.render_as_string(hide_password=False)

    async def execute(statement: str) -> None:
        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(execute(f'CREATE DATABASE "{name}"'))
    try:
        bench_url = url.set(drivername="postgresql+asyncpg", database=name)
        yield bench_url.render_as_string(hide_password=False)
    finally:
        asyncio.run(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def run(
    *, duration: int = 5, connections: int = 32, threads: int = 2, rounds: int = 3
) -> dict[str, float]:
    """Requests per second and ratios to the unauthenticated route, per database."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    results: dict[str, float] = {}

    def record(label: str, url: str) -> None:
        measured = measure(
            url, duration=duration, connections=connections, threads=threads, rounds=rounds
        )
        results.update({f"{label} {key}": value for key, value in measured.items()})

    with tempfile.TemporaryDirectory(prefix="otpcore-bench-") as directory:
        record("sqlite", f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}")
    postgres = os.environ.get("OTPCORE_POSTGRES_URL")
    if postgres:
        with postgres_database(postgres) as url:
            record("postgres", url)
    return results


def main(argv: list[str] | None = None) -> None:
    """Print the side-by-side table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per route (5)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--rounds", type=int, default=3, help="turns per route (3)")
    # bench/run.py calls main() with its own argv still in sys.argv: no arguments then.
    args = parser.parse_args([] if argv is None else argv)
    results = run(
        duration=args.duration,
        connections=args.connections,
        threads=args.threads,
        rounds=args.rounds,
    )
    print(
        f"HTTP throughput: 1 uvicorn worker, wrk -t{args.threads} -c{args.connections} "
        f"-d{args.duration}s, routes taking turns {args.rounds} times (medians)"
    )
    print(f"  {'database':<10} {'route':<16} {'req/s':>10} {'ratio':>7} {'target':>7}")
    for label in dict.fromkeys(key.split()[0] for key in results):
        for name, path in ROUTES.items():
            rate = results[f"{label} {name} req/s"]
            ratio = results.get(f"{label} {name} ratio", 1.0)
            target = TARGETS.get(name) if label == "sqlite" else None
            mark = f">={target:.2f}" if target is not None else ""
            print(f"  {label:<10} {name + ' ' + path:<16} {rate:>10,.0f} {ratio:>7.2f} {mark:>7}")


if __name__ == "__main__":
    main(sys.argv[1:])
