"""Where a login flow's time goes: the flow benchmark's profiling pass (``bench_flows``).

Run: python -m bench.bench_flows_profile [--flows 100] [--concurrency 10] [--quick]
(``python bench/run.py flows`` runs it after the measured rounds).

Each wiring's server runs again, in profiling mode (``BENCH_PROFILE=1``, see
``bench/flow_apps/_instrument.py``) and under ``strace -f --seccomp-bpf`` (only the traced
calls stop the process, so the rest runs at full speed). After a warm-up, ``--flows`` flows
(``--concurrency`` at once) are counted, then as many more run under cProfile:

- per step: requests, statements (by kind), transactions begun / committed / rolled back,
  pool checkouts and new connections, aiosqlite thread hops and the time waiting on them,
  MongoDB commands, time inside the app;
- per flow: ``fsync`` / ``fdatasync`` calls and their time, and ``clock_nanosleep`` /
  ``nanosleep`` calls and their time in the server process: SQLite's busy handler sleeps
  this way while another connection holds the write lock (nothing else in these apps
  sleeps in a thread);
- per flow: the event loop thread's CPU time by package (cProfile's own time).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import re
import secrets
import signal
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from bench.bench_flows import (
    STEPS,
    Wiring,
    databases,
    run_round,
    serve,
    wirings,
)

__all__ = ["bucket", "parse_strace", "profile_all", "profile_one"]

TRACED = ("fsync", "fdatasync", "clock_nanosleep", "nanosleep")
_SYSCALL = re.compile(
    r"^(?:\[pid\s+)?\d+\]?\s+(?P<at>\d+\.\d+)\s+"
    r"(?:(?P<name>\w+)\(.*|<\.\.\. (?P<resumed>\w+) resumed>.*)<(?P<took>[\d.]+)>\s*$"
)
_IDLE = frozenset({"<method 'poll' of 'select.epoll' objects>"})
_SERVER_STEPS = tuple(step for step in STEPS if step != "code")


def parse_strace(text: str, start: float, end: float) -> dict[str, tuple[int, float]]:
    """Calls and seconds per traced syscall that ended within ``[start, end]``.

    Reads ``strace -f -ttt -T`` output: a call another thread interrupted is counted where it
    resumes (``<... name resumed>``), which carries its duration.
    """
    found: dict[str, tuple[int, float]] = {}
    for line in text.splitlines():
        match = _SYSCALL.match(line)
        if match is None or not start <= float(match["at"]) <= end:
            continue
        name = match["name"] or match["resumed"]
        calls, seconds = found.get(name, (0, 0.0))
        found[name] = (calls + 1, seconds + float(match["took"]))
    return found


_PACKAGE = re.compile(r"site-packages/([A-Za-z0-9_]+)")


def bucket(filename: str) -> str:
    """The package a cProfile entry's file belongs to (``builtins`` for C functions)."""
    if filename == "~" or filename.startswith("<"):
        return "builtins (C: sockets, queues, locks, re, ...)"
    for package in ("otpcore_fastapi", "otpcore", "flow_apps"):
        if f"/{package}/" in filename:
            return package
    match = _PACKAGE.search(filename)
    if match:
        return match.group(1)
    match = re.search(r"/lib/python3\.\d+/([A-Za-z0-9_]+)", filename)
    return f"stdlib {match.group(1)}" if match else filename


def cprofile_summary(path: Path, flows: int) -> list[str]:
    """The loop thread's own time by package, ms per flow, and the top functions."""
    stats = pstats.Stats(str(path))
    by_package: dict[str, float] = defaultdict(float)
    functions: list[tuple[float, str]] = []
    idle = 0.0
    for (filename, line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if name in _IDLE or (filename.endswith("selectors.py") and name == "select"):
            idle += tottime  # the loop waiting for I/O: not work
            continue
        by_package[bucket(filename)] += tottime
        functions.append((tottime, f"{Path(filename).name}:{line} {name}"))
    total = sum(by_package.values())
    lines = [
        f"    loop thread (cProfile, own time): {1000 * total / flows:.2f} ms per flow busy, "
        f"{1000 * idle / flows:.2f} ms waiting in epoll"
    ]
    for package, seconds in sorted(by_package.items(), key=lambda item: -item[1])[:12]:
        share = 100 * seconds / total
        lines.append(f"      {package:<44} {1000 * seconds / flows:>6.2f} ms  {share:>4.1f}%")
    lines.append("    top functions (own time, ms per flow):")
    for seconds, where in sorted(functions, reverse=True)[:10]:
        lines.append(f"      {1000 * seconds / flows:>6.3f}  {where}")
    return lines


def step_table(stats: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Per step and per flow: what each request did (per request; the flow row sums them)."""
    columns = ("statements", "begins", "commits", "rollbacks", "checkouts", "connects", "hops",
               "hop_ms", "commands", "server_ms")  # fmt: skip
    lines = [
        "    " + f"{'step':<13}" + "".join(f" {c:>10}" for c in columns) + "  statements by kind"
    ]
    totals: dict[str, float] = defaultdict(float)
    for step in _SERVER_STEPS:
        values = stats.get(step, {})
        requests = values.get("requests", 0) or 1
        row = "".join(f" {values.get(c, 0) / requests:>10.2f}" for c in columns)
        kinds = sorted(
            (k.split(":", 1)[1], v / requests)
            for k, v in values.items()
            if k.startswith(("sql:", "mongo:"))
        )
        lines.append(f"    {step:<13}{row}  " + " ".join(f"{kind} {n:.2f}" for kind, n in kinds))
        for c in columns:
            totals[c] += values.get(c, 0) / requests
    lines.append("    " + f"{'flow':<13}" + "".join(f" {totals[c]:>10.2f}" for c in columns))
    return lines


async def profile_one(
    wiring: Wiring, env: Mapping[str, str], scratch: Path, *, flows: int, concurrency: int
) -> list[str]:
    """Profile ``flows`` flows on ``wiring``; the report's lines."""
    tls = httpx.create_ssl_context()
    name = wiring.label.replace(" ", "-")
    trace = scratch / f"{name}.strace"
    prefix = ["strace", "-f", "--seccomp-bpf", "-ttt", "-T", "-o", str(trace),
              "-e", "trace=" + ",".join(TRACED)]  # fmt: skip
    lines = [f"  {wiring.label}"]
    async with serve(wiring, {**env, "BENCH_PROFILE": "1"}, scratch, prefix) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
            info = (await client.get("/_bench/info")).json()
            await run_round(server, min(20, flows), concurrency, tls)
            await client.post("/_bench/reset")
            start = time.time()
            measured = await run_round(server, flows, concurrency, tls)
            end = time.time()
            stats = (await client.get("/_bench/stats")).json()
            await client.post("/_bench/cprofile/start")
            await run_round(server, flows, concurrency, tls)
            pstats_path = scratch / f"{name}.pstats"
            await client.post("/_bench/cprofile/stop", params={"path": str(pstats_path)})
        os.kill(info["pid"], signal.SIGTERM)  # uvicorn; strace exits after it
        await asyncio.to_thread(server.process.wait, 60)
    lines.append(f"    {flows} flows at {measured.rate:.1f} flows/s (profiling mode, strace)")
    if measured.errors:
        lines.append(f"    failed flows: {dict(measured.errors)}")
    lines += step_table(stats)
    calls = parse_strace(trace.read_text(), start, end)
    for group, names in (("fsync+fdatasync", ("fsync", "fdatasync")),
                         ("busy sleeps (clock_nanosleep+nanosleep)",
                          ("clock_nanosleep", "nanosleep"))):  # fmt: skip
        count = sum(calls.get(n, (0, 0.0))[0] for n in names)
        seconds = sum(calls.get(n, (0, 0.0))[1] for n in names)
        lines.append(
            f"    {group}: {count / flows:.2f} per flow, {1000 * seconds / flows:.2f} ms per flow"
        )
    if pstats_path.exists():
        lines += cprofile_summary(pstats_path, flows)
    return lines


async def profile_all(chosen: Sequence[Wiring], *, flows: int, concurrency: int) -> None:
    """Profile every wiring in turn and print the report."""
    print(f"\nWhere a flow's time goes ({flows} flows per wiring, {concurrency} concurrent)")
    secret = secrets.token_hex(32)
    with tempfile.TemporaryDirectory(prefix="otpcore-flows-profile-") as directory:
        scratch = Path(directory)
        for wiring in chosen:
            async with databases(wiring.label.replace(" ", "-"), wiring.store, scratch) as env:
                lines = await profile_one(
                    wiring, {**env, "BENCH_SECRET": secret}, scratch,
                    flows=flows, concurrency=concurrency,
                )  # fmt: skip
            print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> None:
    """Profile the wirings (no baseline unless ``--baseline``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=100, help="flows profiled (100)")
    parser.add_argument("--concurrency", type=int, default=10, help="flows at once (10)")
    parser.add_argument("--baseline", default=None, help="also profile this commit")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference")
    parser.add_argument("--quick", action="store_true", help="30 flows")
    args = parser.parse_args([] if argv is None else argv)
    chosen = wirings(baseline=args.baseline, reference=not args.no_reference)
    flows = 30 if args.quick else args.flows
    asyncio.run(profile_all(chosen, flows=flows, concurrency=args.concurrency))


if __name__ == "__main__":
    main(sys.argv[1:])
