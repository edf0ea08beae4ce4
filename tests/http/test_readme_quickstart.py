"""The README's FastAPI Quick Start runs as written: served by uvicorn, it logs a user in.

The code block under "Quick start (FastAPI)" is copied verbatim into ``app.py`` in a
temporary directory and served with the README's own command (``uvicorn app:app``) in a
subprocess, so its SQLite file is created there and its lifespan has to create the tables.
The login goes over real HTTP: request-otp, the code read from what the Quick Start's
``send_otp`` prints, verify-otp, then ``/protected`` with the access token.
"""

from __future__ import annotations

import ast
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.net import free_port

README = Path(__file__).resolve().parents[2] / "README.md"
EMAIL = "alice@example.com"
STARTUP_SECONDS = 30


def quickstart_code() -> str:
    """The first Python code block after the README's "Quick start (FastAPI)" heading."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quick start (FastAPI)", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the Quick Start section has no Python code block"
    return match.group(1)


def unused_imports(source: str) -> list[str]:
    """Names a module imports and never mentions again."""
    tree = ast.parse(source)
    imported: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                name = alias.asname or alias.name.split(".")[0]
                imported[name] = node.lineno
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    return sorted(name for name in imported if name not in used)


def test_the_quickstart_has_no_unused_import() -> None:
    assert unused_imports(quickstart_code()) == []


def test_the_unused_import_check_can_fail() -> None:
    assert unused_imports("import os\nfrom typing import Any\nx: Any = 1\n") == ["os"]


@dataclass
class Served:
    """The Quick Start served by uvicorn: its base URL, its output file, its directory."""

    url: str
    output: Path
    directory: Path

    def printed_code(self) -> str:
        """The code the Quick Start's ``send_otp`` printed for ``EMAIL``, waiting for it."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = re.findall(rf"OTP for {re.escape(EMAIL)}: (\d+)", self.output.read_text())
            if found:
                code: str = found[-1]
                return code
            time.sleep(0.05)
        raise AssertionError(f"no code printed; server output:\n{self.output.read_text()}")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """``uvicorn app:app --port N`` in a temporary directory holding the README's ``app.py``."""
    (tmp_path / "app.py").write_text(quickstart_code(), encoding="utf-8")
    port = free_port()
    output = tmp_path / "server.log"
    env = {
        **os.environ,
        "OTP_SECRET_KEY": secrets.token_hex(32),
        "PYTHONUNBUFFERED": "1",  # the printed code reaches the file at once
    }
    with output.open("w") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert process.poll() is None, f"uvicorn exited:\n{output.read_text()}"
            try:
                if httpx.get(f"{url}/openapi.json", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"not serving after {STARTUP_SECONDS} s"
            time.sleep(0.1)
        yield Served(url=url, output=output, directory=tmp_path)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_quickstart_logs_a_user_in_over_http(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=10) as client:
        assert client.get("/protected").status_code == 401

        requested = client.post("/auth/request-otp", json={"email": EMAIL})
        assert requested.status_code == 200, requested.text
        assert (served.directory / "app.db").exists()

        verified = client.post(
            "/auth/verify-otp", json={"email": EMAIL, "code": served.printed_code()}
        )
        assert verified.status_code == 200, verified.text
        token = verified.json()["access_token"]

        protected = client.get("/protected", headers={"Authorization": f"Bearer {token}"})
        assert protected.status_code == 200, protected.text
        assert protected.json() == {"user_id": 1, "email": EMAIL}
