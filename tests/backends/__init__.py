"""Every storage backend the suites run against.

Each module here defines ``BACKENDS: list[BackendSpec]``; adding a backend is adding a
module. The ``backend`` fixture in ``tests/conftest.py`` is parametrized over all of them.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from otpcore.testing.contract import Backend

__all__ = ["BackendSpec", "all_backends"]


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """How to open a backend over a fresh, empty database for one test."""

    name: str
    open: Callable[[], AbstractAsyncContextManager[Backend]]
    marks: tuple[Any, ...] = field(default=())


def all_backends() -> list[BackendSpec]:
    """Collect ``BACKENDS`` from every module in this package, in module-name order."""
    specs: list[BackendSpec] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda item: item.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        specs.extend(module.BACKENDS)
    return specs
