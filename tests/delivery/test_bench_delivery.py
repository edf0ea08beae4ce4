"""The delivery benchmark's plumbing, on a handful of requests and messages."""

from __future__ import annotations

import pytest

from bench import run as bench_run
from bench.bench_delivery import _run

pytestmark = pytest.mark.bench


async def test_the_delivery_benchmark_measures_every_case() -> None:
    results = await _run(requests=6, messages=12)
    for mailer in ("0 ms mailer", "400 ms mailer", "SMTP 400 ms/msg"):
        assert results[f"request-otp, {mailer}: p50 ms"] > 0
        assert (
            results[f"request-otp, {mailer}: p95 ms"] >= results[f"request-otp, {mailer}: p50 ms"]
        )
    # The slow mailers are waited for only by the drain, never by the requests.
    assert results["request-otp, 400 ms mailer: drain s"] >= 0.3
    assert results["request-otp, 400 ms mailer: p50 ms"] < 100
    for case in ("1 reused connection(s)", "4 reused connection(s)", "new connection per message"):
        assert results[f"SMTP msgs/s, {case}"] > 0


def test_run_py_lists_the_delivery_suite() -> None:
    assert "delivery" in bench_run.SUITES
