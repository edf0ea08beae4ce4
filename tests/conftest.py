"""Fixtures shared by every suite: the parametrized storage ``backend``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from otpcore.testing.contract import Backend
from tests.backends import BackendSpec, all_backends

_SPECS = all_backends()


@pytest.fixture(
    params=[pytest.param(spec, id=spec.name, marks=spec.marks) for spec in _SPECS],
)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """A backend over an empty database, torn down after the test."""
    spec: BackendSpec = request.param
    async with spec.open() as opened:
        yield opened
