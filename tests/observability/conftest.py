"""The backends these suites walk: the in-memory store and SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from otpcore.testing.contract import Backend
from tests.backends import BackendSpec, all_backends

_SPECS = [spec for spec in all_backends() if spec.name in ("memory", "sqlite")]


@pytest.fixture(params=[pytest.param(spec, id=spec.name) for spec in _SPECS])
async def local_backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """The memory store or a fresh SQLite file."""
    spec: BackendSpec = request.param
    async with spec.open() as opened:
        yield opened
