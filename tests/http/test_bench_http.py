"""The HTTP benchmark's plumbing (server, login, routes) works; ``wrk`` itself is not run."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bench.bench_http import ROUTES, log_in, serve

pytestmark = pytest.mark.bench


def test_the_benchmark_server_serves_every_measured_route(tmp_path: Path) -> None:
    with serve(f"sqlite+aiosqlite:///{tmp_path / 'bench.db'}") as server:
        token = log_in(server)
        headers = {"Authorization": f"Bearer {token}"}
        for path in ROUTES.values():
            assert httpx.get(server.base_url + path, headers=headers, timeout=10).status_code == 200
        refused = httpx.get(server.base_url + ROUTES["claims-only"], timeout=10)
        assert refused.status_code == 401
