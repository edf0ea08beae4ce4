"""Our protected routes beside the peers', same machine, same run: ratios to each app's own
unauthenticated route.

Run: python bench/run.py peers   or   python -m bench.bench_peers [--duration 5] [--rounds 5]

The peers run from their own venv, ``bench/.venv-peers`` (git-ignored), which this script
makes on first use and whenever the pins below change. They are never installed into the
project's ``test`` or ``dev`` extras: their dependency floors would change which versions the
lowest-versions CI run tests. The packages both sides share (FastAPI, Starlette, pydantic,
uvicorn, PyJWT, aiosqlite, ...) are pinned to the versions of the project's environment, so a
ratio compares the libraries, not two FastAPI releases. SQLAlchemy cannot be pinned alike:
``fastapi-users-db-sqlalchemy`` requires ``<2.1``.

The apps, each one uvicorn worker (default loop and HTTP implementation, no access log), each
with an unauthenticated ``/ping`` as the denominator of its own ratios:

- otpcore: the ``bench_http`` demo app on a SQLite file (``create_sqlite_engine``):
  ``/me`` (current user: one signature check, one query) and ``/claims`` (claims only,
  revocation enforced through the per-worker mirror);
- fastapi-users: its documented SQLAlchemy example (SQLite through ``aiosqlite``, the JWT
  strategy behind a bearer transport), ``/authenticated-route`` behind ``current_active_user``;
- AuthX stateless: ``/protected`` behind ``access_token_required`` (signature and expiry only,
  no revocation), and ``/protected-sync``, the same written as the docs write it (a plain
  ``def``, run in FastAPI's thread pool);
- AuthX with its documented in-memory token blocklist: ``/protected``.

``wrk`` measures every route of every app in turn, ``--rounds`` times; each app's ratios are
taken per round (the route against the same app's ``/ping`` measured seconds apart) and the
median printed. Targets: current user >= 1.5x fastapi-users' ratio, claims only >= 1.8x AuthX
stateless's.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.bench_http import (
    ROOT,
    Server,
    WrkSocketErrors,
    free_port,
    log_in,
    run_server,
    serve,
    uvicorn_command,
    wrk,
)

__all__ = ["APPS", "COMPARISONS", "main", "ratios", "run", "venv_commands"]

VENV = ROOT / "bench" / ".venv-peers"
#: What the peers' venv holds: the peers at the versions measured, and a profiler.
PEER_REQUIREMENTS: tuple[str, ...] = (
    "fastapi-users[sqlalchemy]==15.0.5",
    "authx==1.7.1",
    "uvicorn",
    "aiosqlite",
    "pyinstrument==5.1.3",
)
#: Installed on both sides: pinned to the project environment's versions.
SHARED = (
    "fastapi", "starlette", "pydantic", "pydantic-core", "uvicorn", "h11", "anyio", "pyjwt",
    "cryptography", "aiosqlite", "greenlet",
)  # fmt: skip
_STAMP = ".otpcore-bench-requirements"
#: Tries per measurement when wrk sees socket errors (non-2xx answers fail at once).
_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class App:
    """One app under test: how uvicorn finds it, and its routes by label.

    ``routes["unauthenticated"]`` is the denominator of the app's ratios.
    """

    name: str
    factory: str
    routes: Mapping[str, str]
    peer: bool = True


APPS: tuple[App, ...] = (
    App(
        "otpcore",
        "bench.bench_http:make_app",
        {"unauthenticated": "/ping", "current-user": "/me", "claims-only": "/claims"},
        peer=False,
    ),
    App(
        "fastapi-users",
        "bench.peer_apps.fastapi_users_app:make_app",
        {"unauthenticated": "/ping", "current-user": "/authenticated-route"},
    ),
    App(
        "authx-stateless",
        "bench.peer_apps.authx_app:make_stateless_app",
        {
            "unauthenticated": "/ping",
            "access-token": "/protected",
            "docs-sync-def": "/protected-sync",
        },
    ),
    App(
        "authx-blocklist",
        "bench.peer_apps.authx_app:make_blocklist_app",
        {"unauthenticated": "/ping", "access-token": "/protected"},
    ),
)


@dataclass(frozen=True, slots=True)
class Comparison:
    """One row of the table: our route's ratio against a peer route's, and the target."""

    route: str
    ours: tuple[str, str]
    peer: tuple[str, str]
    target: float | None


COMPARISONS: tuple[Comparison, ...] = (
    Comparison("current-user", ("otpcore", "current-user"), ("fastapi-users", "current-user"), 1.5),
    Comparison("claims-only", ("otpcore", "claims-only"), ("authx-stateless", "access-token"), 1.8),
    Comparison(
        "claims-only", ("otpcore", "claims-only"), ("authx-blocklist", "access-token"), None
    ),
    Comparison(
        "claims-only", ("otpcore", "claims-only"), ("authx-stateless", "docs-sync-def"), None
    ),
)

# -- the peers' venv ---------------------------------------------------------------------


def venv_python(venv: Path) -> Path:
    """The interpreter of ``venv``."""
    return venv / "bin" / "python"


def shared_pins() -> list[str]:
    """``name==version`` for each shared package the project's environment has."""
    pins = []
    for name in SHARED:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def venv_commands(
    venv: Path, constraints: Path, *, python: str = sys.executable
) -> list[list[str]]:
    """The commands that make ``venv`` and install the peers into it under ``constraints``."""
    return [
        [python, "-m", "venv", str(venv)],
        [
            str(venv_python(venv)), "-m", "pip", "install", "--quiet",
            "--disable-pip-version-check", "--constraint", str(constraints), *PEER_REQUIREMENTS,
        ],
    ]  # fmt: skip


def ensure_venv(venv: Path = VENV) -> Path:
    """Make (or bring up to date) the peers' venv; its interpreter.

    Nothing runs when the venv already holds what :data:`PEER_REQUIREMENTS` and the shared
    pins ask for (a stamp file records the last install).
    """
    pins = shared_pins()
    wanted = "\n".join([*PEER_REQUIREMENTS, *pins]) + "\n"
    stamp = venv / _STAMP
    if venv_python(venv).exists() and stamp.exists() and stamp.read_text() == wanted:
        return venv_python(venv)
    with tempfile.TemporaryDirectory(prefix="otpcore-bench-") as directory:
        constraints = Path(directory) / "constraints.txt"
        constraints.write_text("\n".join(pins) + "\n")
        for command in venv_commands(venv, constraints):
            print(f"  $ {' '.join(command)}", flush=True)
            subprocess.run(command, check=True)
    stamp.write_text(wanted)
    return venv_python(venv)


# -- serving and logging in ----------------------------------------------------------------


def peer_command(python: Path, app: App, port: int) -> list[str]:
    """The command that serves a peer ``app`` from the peers' venv on ``port``."""
    return uvicorn_command(python, app.factory, port)


def _log_in_fastapi_users(server: Server) -> str:
    email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
    password = uuid.uuid4().hex
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        client.post(
            "/auth/register", json={"email": email, "password": password}
        ).raise_for_status()
        login = client.post("/auth/jwt/login", data={"username": email, "password": password})
        login.raise_for_status()
        token: str = login.json()["access_token"]
        return token


def _log_in_authx(server: Server) -> str:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        login = client.post("/login", params={"username": "bench", "password": "bench"})
        login.raise_for_status()
        token: str = login.json()["access_token"]
        return token


_LOG_IN: dict[str, Callable[[Server], str]] = {
    "otpcore": log_in,
    "fastapi-users": _log_in_fastapi_users,
    "authx-stateless": _log_in_authx,
    "authx-blocklist": _log_in_authx,
}


def check_routes(server: Server, app: App, token: str) -> None:
    """Every route answers 200 with the token, and every protected one 401 without it.

    A protected route that let a request without a token through would measure nothing.
    """
    headers = {"Authorization": f"Bearer {token}"}
    for label, path in app.routes.items():
        with_token = httpx.get(server.base_url + path, headers=headers, timeout=30)
        if with_token.status_code != 200:
            raise RuntimeError(f"{app.name} {path}: {with_token.status_code} {with_token.text}")
        if label != "unauthenticated":
            without = httpx.get(server.base_url + path, timeout=30).status_code
            if without != 401:
                raise RuntimeError(f"{app.name} {path} answered {without} without a token")


@contextmanager
def serve_all(apps: Sequence[App], python: Path) -> Iterator[dict[str, tuple[Server, str]]]:
    """Every app running (each on its own SQLite file), with a logged-in user's token."""
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="otpcore-bench-")))
        running: dict[str, tuple[Server, str]] = {}
        for app in apps:
            url = f"sqlite+aiosqlite:///{directory / (app.name + '.db')}"
            if app.peer:
                port = free_port()
                env = {**os.environ, "BENCH_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
                env.pop("VIRTUAL_ENV", None)
                server = stack.enter_context(run_server(peer_command(python, app, port), port, env))
            else:
                server = stack.enter_context(serve(url, app.factory))
            token = _LOG_IN[app.name](server)
            check_routes(server, app, token)
            running[app.name] = (server, token)
        yield running


# -- measuring -----------------------------------------------------------------------------

Samples = dict[tuple[str, str], list[float]]


def ratios(samples: Samples, app: App) -> dict[str, float]:
    """Each route's median per-round ratio to the same app's unauthenticated route."""
    base = samples[app.name, "unauthenticated"]
    return {
        label: statistics.median(
            rate / b for rate, b in zip(samples[app.name, label], base, strict=True)
        )
        for label in app.routes
        if label != "unauthenticated"
    }


def measure(
    running: Mapping[str, tuple[Server, str]],
    apps: Sequence[App],
    *,
    duration: int,
    connections: int,
    threads: int,
    rounds: int,
) -> Samples:
    """Requests per second of every route of every app, route after route, ``rounds`` times."""

    def rate(app: App, path: str, seconds: int) -> float:
        server, token = running[app.name]
        for attempt in range(_ATTEMPTS):
            try:
                return wrk(
                    server.base_url + path,
                    token,
                    duration=seconds,
                    connections=connections,
                    threads=threads,
                )
            except WrkSocketErrors as exc:  # a stall of the shared machine: measure again
                if attempt == _ATTEMPTS - 1:
                    raise
                print(f"  retrying {app.name} {path}: {str(exc).splitlines()[0]}", flush=True)
        raise AssertionError("unreachable")

    for app in apps:  # warm-up: caches, statements, connection pools
        for path in app.routes.values():
            rate(app, path, 1)
    samples: Samples = {(app.name, label): [] for app in apps for label in app.routes}
    for round_ in range(rounds):
        for app in apps:
            for label, path in app.routes.items():
                samples[app.name, label].append(rate(app, path, duration))
        print(f"  round {round_ + 1}/{rounds} done", flush=True)
    return samples


def run(
    *, duration: int = 5, connections: int = 32, threads: int = 2, rounds: int = 5
) -> tuple[Samples, dict[str, dict[str, float]]]:
    """The samples, and each app's median ratios by route."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    python = ensure_venv()
    with serve_all(APPS, python) as running:
        samples = measure(
            running,
            APPS,
            duration=duration,
            connections=connections,
            threads=threads,
            rounds=rounds,
        )
    return samples, {app.name: ratios(samples, app) for app in APPS}


def table(samples: Samples, by_app: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The printed report: rates per route, then each comparison against its target."""
    lines = [f"  {'app':<16} {'route':<16} {'path':<22} {'req/s':>9} {'ratio':>7}"]
    for app in APPS:
        for label, path in app.routes.items():
            rate = statistics.median(samples[app.name, label])
            ratio = by_app[app.name].get(label, 1.0)
            lines.append(f"  {app.name:<16} {label:<16} {path:<22} {rate:>9,.0f} {ratio:>7.3f}")
    lines.append("")
    head = f"  {'route':<13} {'ratio':>6}  {'peer':<33} {'ratio':>6} {'otpcore/peer':>13} target"
    lines.append(head)
    for row in COMPARISONS:
        ours = by_app[row.ours[0]][row.ours[1]]
        theirs = by_app[row.peer[0]][row.peer[1]]
        factor = ours / theirs
        verdict = (
            ""
            if row.target is None
            else f">={row.target:.1f}x " + ("holds" if factor >= row.target else "MISSED")
        )
        peer = f"{row.peer[0]} {row.peer[1]}"
        lines.append(
            f"  {row.route:<13} {ours:>6.3f}  {peer:<33} {theirs:>6.3f} {factor:>12.2f}x {verdict}"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    """Run and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per route (5)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--rounds", type=int, default=5, help="turns per route (5)")
    args = parser.parse_args([] if argv is None else argv)
    samples, by_app = run(
        duration=args.duration,
        connections=args.connections,
        threads=args.threads,
        rounds=args.rounds,
    )
    print(
        f"HTTP throughput beside the peers: 1 uvicorn worker per app, wrk -t{args.threads} "
        f"-c{args.connections} -d{args.duration}s, routes taking turns {args.rounds} times "
        "(medians; ratio = route / the same app's /ping, per round)"
    )
    print("\n".join(table(samples, by_app)))


if __name__ == "__main__":
    main(sys.argv[1:])
