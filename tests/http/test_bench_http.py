"""The HTTP benchmarks' plumbing works (server, login, routes; the peers' harness builds its
command lines and reads wrk's report); neither ``wrk`` nor ``pip`` is run."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
from pathlib import Path

import httpx
import pytest

from bench import bench_peers
from bench.bench_http import (
    ROOT,
    ROUTES,
    WrkSocketErrors,
    log_in,
    parse_wrk,
    serve,
    wrk_command,
)
from bench.bench_peers import (
    APPS,
    COMPARISONS,
    App,
    peer_command,
    ratios,
    shared_pins,
    venv_commands,
)

pytestmark = pytest.mark.bench


def test_the_benchmark_server_serves_every_measured_route(tmp_path: Path) -> None:
    with serve(f"sqlite+aiosqlite:///{tmp_path / 'bench.db'}") as server:
        token = log_in(server)
        headers = {"Authorization": f"Bearer {token}"}
        for path in ROUTES.values():
            assert httpx.get(server.base_url + path, headers=headers, timeout=10).status_code == 200
        refused = httpx.get(server.base_url + ROUTES["claims-only"], timeout=10)
        assert refused.status_code == 401


# -- the peers' harness (bench/bench_peers.py): command lines, wrk's report, ratios ----------

WRK_REPORT = """Running 5s test @ http://127.0.0.1:8000/me
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.01ms    2.10ms  40.00ms   90.00%
    Req/Sec     1.33k    100.00     1.50k    70.00%
  13300 requests in 5.00s, 2.10MB read
Requests/sec:   2660.52
Transfer/sec:    430.10KB
"""


def test_wrk_reports_parse_to_requests_per_second() -> None:
    assert parse_wrk(WRK_REPORT) == pytest.approx(2660.52)


@pytest.mark.parametrize(
    "trouble",
    ["  Non-2xx or 3xx responses: 13300\n", "  Socket errors: connect 0, read 3, write 0\n"],
)
def test_a_wrk_report_with_refusals_or_socket_errors_fails_the_run(trouble: str) -> None:
    with pytest.raises(RuntimeError, match="wrk saw errors"):
        parse_wrk(WRK_REPORT.replace("Requests/sec", trouble + "Requests/sec"))


def test_only_socket_errors_are_retryable() -> None:
    stalled = WRK_REPORT.replace(
        "Requests/sec", "  Socket errors: connect 0, read 0, write 0, timeout 32\nRequests/sec"
    )
    with pytest.raises(WrkSocketErrors):
        parse_wrk(stalled)
    refused = WRK_REPORT.replace("Requests/sec", "  Non-2xx or 3xx responses: 5\nRequests/sec")
    with pytest.raises(RuntimeError) as raised:
        parse_wrk(refused)
    assert not isinstance(raised.value, WrkSocketErrors)


def test_a_wrk_report_without_a_rate_fails_the_run() -> None:
    with pytest.raises(RuntimeError, match="unexpected wrk output"):
        parse_wrk("unable to connect to 127.0.0.1:8000 Connection refused\n")


def test_wrk_sends_the_bearer_token_only_when_there_is_one() -> None:
    with_token = wrk_command("http://h/me", "tok", duration=5, connections=32, threads=2)
    assert with_token == [
        "wrk", "-t2", "-c32", "-d5s", "-H", "Authorization: Bearer tok", "http://h/me"
    ]  # fmt: skip
    assert "-H" not in wrk_command("http://h/ping", None, duration=1, connections=8, threads=1)


def test_the_peers_venv_is_made_apart_from_the_project_and_pinned_to_its_shared_versions(
    tmp_path: Path,
) -> None:
    venv = tmp_path / ".venv-peers"
    constraints = tmp_path / "constraints.txt"
    make, install = venv_commands(venv, constraints, python="/usr/bin/python3")
    assert make == ["/usr/bin/python3", "-m", "venv", str(venv)]
    assert install[:4] == [str(venv / "bin" / "python"), "-m", "pip", "install"]
    assert install[install.index("--constraint") + 1] == str(constraints)
    assert any(item.startswith("fastapi-users[sqlalchemy]") for item in install)
    assert any(item.startswith("authx") for item in install)
    # The shared packages are pinned to what the project's environment runs.
    fastapi_version = importlib.metadata.version("fastapi")
    assert f"fastapi=={fastapi_version}" in shared_pins()
    # The venv lives under bench/ and git ignores it.
    assert bench_peers.VENV.parent == Path(bench_peers.__file__).parent
    ignored = (Path(bench_peers.__file__).parent / ".gitignore").read_text().splitlines()
    assert f"{bench_peers.VENV.name}/" in ignored


def test_each_peer_is_served_from_the_peers_venv_by_its_factory_on_one_worker() -> None:
    python = Path("/venv/bin/python")
    for app in APPS:
        if not app.peer:
            continue
        command = peer_command(python, app, 8123)
        assert command[:4] == [str(python), "-m", "uvicorn", app.factory]
        assert command[command.index("--port") + 1] == "8123"
        assert command[command.index("--workers") + 1] == "1"
        # The factory exists in the peer module (read, not imported: the peers are not
        # installed in the project's environment).
        module, function = app.factory.split(":")
        source = Path(ROOT, *module.split(".")).with_suffix(".py").read_text()
        names = {node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)}
        assert function in names


def test_every_app_has_an_unauthenticated_route_and_every_comparison_names_measured_routes() -> (
    None
):
    routes = {app.name: app.routes for app in APPS}
    assert all("unauthenticated" in app.routes for app in APPS)
    for row in COMPARISONS:
        assert row.ours[1] in routes[row.ours[0]]
        assert row.peer[1] in routes[row.peer[0]]
    targets = {(row.route, *row.peer): row.target for row in COMPARISONS}
    assert targets["current-user", "fastapi-users", "current-user"] == 1.5
    assert targets["claims-only", "authx-stateless", "access-token"] == 1.8


def test_ratios_are_medians_of_per_round_ratios_to_the_same_apps_unauthenticated_route() -> None:
    app = App("x", "m:f", {"unauthenticated": "/ping", "route": "/r"})
    samples = {
        ("x", "unauthenticated"): [1000.0, 2000.0, 4000.0],
        ("x", "route"): [500.0, 200.0, 1000.0],  # per round: 0.5, 0.1, 0.25
    }
    assert ratios(samples, app) == {"route": pytest.approx(0.25)}


def test_one_command_runs_the_peers_the_sessions_and_the_profile_suites() -> None:
    run_py = (Path(ROOT) / "bench" / "run.py").read_text()
    suites = next(
        ast.literal_eval(node.value)
        for node in ast.parse(run_py).body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "SUITES"
    )
    assert {"peers", "sessions", "profile"} <= set(suites)
    for name in ("peers", "sessions", "profile"):
        module = importlib.import_module(f"bench.bench_{name}")
        assert callable(module.main)
