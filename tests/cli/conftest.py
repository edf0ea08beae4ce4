"""Run the ``otpcore`` command as a subprocess from the repository root."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The console script pip installed next to this interpreter.
CONSOLE_SCRIPT = Path(sys.executable).with_name("otpcore")

Run = Callable[..., subprocess.CompletedProcess[str]]


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, script: bool = False
) -> subprocess.CompletedProcess[str]:
    """``python -m otpcore.cli ARGS`` (or the ``otpcore`` console script) in the repo root."""
    command = [str(CONSOLE_SCRIPT)] if script else [sys.executable, "-m", "otpcore.cli"]
    return subprocess.run(
        [*command, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def cli() -> Run:
    """The command runner."""
    return run_cli
