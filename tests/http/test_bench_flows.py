"""The flow benchmark's plumbing (bench/bench_flows.py, bench/bench_flows_profile.py): flows run
over HTTP on the README wiring and the recommended engine, each from its own client address
(more flows than the per-client send limit allows from one address all pass), the profiling
mode counts per step, a server running other code than meant is refused, and the report's
arithmetic; no venv is built and no pip is run."""

from __future__ import annotations

import ast
import ipaddress
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from bench import bench_flows, run
from bench.bench_flows import (
    FLOW_APPS,
    ROOT,
    STEPS,
    FlowError,
    Round,
    Wiring,
    next_address,
    percentile,
    pins,
    run_round,
    serve,
    server_command,
    summarize,
    table,
)
from bench.bench_flows_profile import bucket, parse_strace, step_table

pytestmark = pytest.mark.bench

SECRET = "b" * 64


def otpcore(store: str, library_root: Path = ROOT) -> Wiring:
    python = Path(sys.executable)
    return Wiring(f"otpcore {store}", python, "otpcore_app", store, "otpcore", library_root)


def env(tmp_path: Path, **more: str) -> dict[str, str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'flows.db'}"
    return {"BENCH_DATABASE_URL": url, "BENCH_SECRET": SECRET, **more}


@pytest.mark.parametrize("store", ["readme-sqlite", "sqlite-wal"])
async def test_more_flows_than_one_clients_send_limit_all_log_in_and_out(
    tmp_path: Path, store: str
) -> None:
    # The per-client send limit is 25 codes per 5 minutes: 30 flows from one address would
    # meet a 429 (the round fails); each flow comes from its own loopback address instead.
    async with serve(otpcore(store), env(tmp_path), tmp_path) as server:
        result = await run_round(server, 30, 5, httpx.create_ssl_context())
    assert result.flows == 30
    assert result.rate > 0
    assert {step: len(times) for step, times in result.steps.items()} == dict.fromkeys(STEPS, 30)


async def test_the_profiling_mode_counts_statements_and_transactions_per_step(
    tmp_path: Path,
) -> None:
    async with serve(otpcore("sqlite-wal"), env(tmp_path, BENCH_PROFILE="1"), tmp_path) as server:
        await run_round(server, 2, 2, httpx.create_ssl_context())
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            stats = (await client.get("/_bench/stats")).json()
            assert (await client.post("/_bench/reset")).status_code == 200
            assert set((await client.get("/_bench/stats")).json()) <= {"other"}
    for step in STEPS[2:] + STEPS[:1]:  # every server step, not the code's delivery
        assert stats[step]["requests"] == 2
        assert stats[step]["statements"] >= 2
        assert stats[step]["checkouts"] >= 2
        # Fewer trips to aiosqlite's thread than SQLAlchemy's own cursors would make (four per
        # statement; here one, plus commits and the opening of new connections).
        assert stats[step].get("hops", 0) < 4 * stats[step]["statements"]
    assert "hops" not in stats["current-user"]  # the principal read runs on the loop's thread
    assert stats["verify-otp"]["hops"] >= 2
    assert stats["verify-otp"]["commits"] >= 2
    assert any(key.startswith("sql:") for key in stats["verify-otp"])
    lines = step_table(stats)
    assert lines[-1].split()[0] == "flow"


async def test_without_the_profiling_mode_there_are_no_counters(tmp_path: Path) -> None:
    async with (
        serve(otpcore("readme-sqlite"), env(tmp_path), tmp_path) as server,
        httpx.AsyncClient(base_url=server.base_url) as client,
    ):
        assert (await client.get("/_bench/stats")).status_code == 404
        info = (await client.get("/_bench/info")).json()
    assert Path(info["file"]).is_relative_to(ROOT / "otpcore")


async def test_a_server_running_another_checkouts_code_is_refused(tmp_path: Path) -> None:
    # The baseline's server must import the worktree's otpcore, never this checkout's.
    elsewhere = otpcore("readme-sqlite", library_root=tmp_path / "worktree")
    with pytest.raises(RuntimeError, match="not "):
        async with serve(elsewhere, env(tmp_path), tmp_path):
            pass


def test_the_server_imports_apps_from_flow_apps_only() -> None:
    command = server_command(otpcore("sqlite-wal"), 8000)
    assert command[command.index("--app-dir") + 1] == str(FLOW_APPS)
    assert "otpcore_app:make_app" in command
    assert command[command.index("--workers") + 1] == "1"


def test_workers_and_the_servers_cpu_per_flow() -> None:
    # Issue 13: CPU-seconds per flow with 4 workers against one (psutil, every process).
    command = server_command(replace(otpcore("postgres"), workers=4), 8000)
    assert command[command.index("--workers") + 1] == "4"
    rounds = [Round(10, 1.0, {s: [0.01] for s in STEPS}, cpu=cpu) for cpu in (0.4, 0.5, 0.9)]
    summary = summarize(rounds)
    assert summary.cpu_ms == pytest.approx(50.0)
    assert table({"x": summary})[1].split()[-1] == "50.0"


def test_every_flow_gets_its_own_loopback_address() -> None:
    addresses = [next_address() for _ in range(70_000)]
    assert len(set(addresses)) == len(addresses)
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network("127.0.0.0/8") for a in addresses)
    assert not any(a.endswith((".0", ".255")) for a in addresses)


def test_percentiles_and_medians_of_rounds() -> None:
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5) == 3.0
    assert percentile([float(n) for n in range(1, 101)], 0.95) == 95.0
    steps = {step: [0.010] * 19 + [0.100] for step in STEPS}
    rounds = [Round(10, seconds, steps) for seconds in (1.0, 2.0, 4.0)]
    summary = summarize(rounds)
    assert summary.rate == 5.0
    assert (summary.low, summary.high) == (2.5, 10.0)
    assert summary.p50["verify-otp"] == pytest.approx(10.0)
    assert summary.p95["verify-otp"] == pytest.approx(10.0)  # 19 of 20 at 10 ms
    row = table({"reference": summary, "otpcore x": summarize(rounds[:1])})[2]
    assert row.split()[:5] == ["otpcore", "x", "10.0", "10.0-10.0", "2.00"]


def test_a_failed_step_is_named_by_step_status_and_code() -> None:
    answer = httpx.Response(503, json={"detail": "x", "code": "storage_unavailable"})
    assert FlowError("logout", answer).kind == "logout 503 storage_unavailable"
    assert FlowError("me", httpx.Response(500, text="Internal Server Error")).kind == "me 500"
    rounds = [Round(9, 1.0, {s: [0.01] for s in STEPS}, {"logout 503 storage_unavailable": 1})]
    summary = summarize(rounds * 2)
    assert summary.errors == {"logout 503 storage_unavailable": 2}
    assert table({"x": summary})[-1] == "  failed flows, x: logout 503 storage_unavailable x2"


def test_strace_output_is_counted_within_the_window() -> None:
    text = "\n".join(
        [
            "101 1000.500000 fdatasync(5) = 0 <0.002000>",
            "[pid   102] 1001.000000 fsync(6) = 0 <0.001000>",
            "103 1001.100000 clock_nanosleep(CLOCK_REALTIME, 0, {tv_sec=0}, <unfinished ...>",
            "103 1001.200000 <... clock_nanosleep resumed>NULL) = 0 <0.010000>",
            "101 1003.000000 fsync(5) = 0 <0.004000>",  # after the window
        ]
    )
    found = parse_strace(text, 1000.0, 1002.0)
    assert {name: calls for name, (calls, _) in found.items()} == {
        "fdatasync": 1,
        "fsync": 1,
        "clock_nanosleep": 1,
    }
    assert found["fdatasync"][1] == pytest.approx(0.002)
    assert found["clock_nanosleep"][1] == pytest.approx(0.010)


def test_profile_buckets_by_package() -> None:
    site = "/x/lib/python3.11/site-packages"
    assert bucket(f"{site}/sqlalchemy/orm/session.py") == "sqlalchemy"
    assert bucket("/work/otpcore/service/auth.py") == "otpcore"
    assert bucket("/work/otpcore_fastapi/router.py") == "otpcore_fastapi"
    assert bucket("/usr/lib/python3.11/asyncio/base_events.py") == "stdlib asyncio"
    assert bucket("~").startswith("builtins")


def test_the_venvs_pin_the_projects_versions_but_never_otpcore_itself() -> None:
    pinned = dict(pin.split("==") for pin in pins())
    assert "otpcore" not in pinned
    assert {"fastapi", "sqlalchemy", "uvicorn"} <= pinned.keys()
    assert [pin.split("==")[0] for pin in pins(["FastAPI", "no-such-package"])] == ["fastapi"]


def test_one_command_runs_the_flows_suite_and_passes_it_its_options() -> None:
    run_py = Path(run.__file__).read_text()
    suites = next(
        ast.literal_eval(node.value)
        for node in ast.parse(run_py).body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "SUITES"
    )
    assert "flows" in suites
    assert run.main(["core", "flows", "--quick"]) == 2  # options for two suites: refused


def test_each_commit_gets_a_worktree_venv_of_its_own() -> None:
    # Two runs at once with different baselines must not re-point each other's worktree.
    first, second = bench_flows.DEFAULT_BASELINE, f"{bench_flows.DEFAULT_BASELINE}~1"
    assert bench_flows.worktree_venv(first) == bench_flows.worktree_venv(first[:7])
    assert bench_flows.worktree_venv(first) != bench_flows.worktree_venv(second)
    assert bench_flows.worktree_venv(first).name.startswith(".venv-")  # git-ignored


async def test_the_floor_serves_whole_flows_with_no_store(tmp_path: Path) -> None:
    (floor,) = bench_flows.wirings(baseline=None, reference=False, floor=True, only=[])
    assert (floor.label, floor.module, floor.store) == ("floor", "floor_app", "none")
    async with bench_flows.databases("floor", floor.store, tmp_path) as database:
        assert database == {}  # nothing to make, nothing to drop
    async with serve(floor, {"BENCH_SECRET": SECRET}, tmp_path) as server:
        result = await run_round(server, 12, 4, httpx.create_ssl_context())
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            refused = await client.post("/auth/request-otp", json={"email": "not-an-address"})
            anonymous = await client.get("/me")
    assert (result.flows, result.errors) == (12, {})
    assert {step: len(times) for step, times in result.steps.items()} == dict.fromkeys(STEPS, 12)
    # The same validation and refusal as the real routes, so the floor is not doing less HTTP.
    assert (refused.status_code, anonymous.status_code) == (422, 401)
    assert [w.label for w in bench_flows.wirings(baseline=None, reference=False, only=[])] == []
