"""Delivery off the request path: request-otp latency with a fast and a slow mailer, and
messages per second through the SMTP sender.

Run: python bench/run.py delivery   or   python -m bench.bench_delivery [--requests 200]
     [--messages 500]

1. request-otp over HTTP (the FastAPI app in-process through httpx's ``ASGITransport``, the
   memory store, limits off, one new address per request): p50 and p95 with a ``send_otp``
   that returns at once (0 ms) and one that takes 400 ms, and with ``smtp_url`` pointing at an
   aiosmtpd server that takes 400 ms per message. The outbox sends in the background; the
   time to drain it afterwards is reported too.
2. Messages per second through :class:`~otpcore.delivery.SMTPSender` into aiosmtpd on
   127.0.0.1 (rendering included: the outbox, ``TemplateMailer`` and the built-in templates),
   with 1 and 4 reused connections, and with a new connection per message for comparison.

Targets (issue 9): against a server taking 400 ms per message, request-otp's median under
100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from otpcore.delivery import CodeMail, Message, Outbox, SMTPSender, TemplateMailer
from otpcore.stores.memory import MemoryStore
from otpcore_fastapi import OTPAuthConfig, get_auth_router

__all__ = ["main", "run"]

SECRET = "bench-delivery-secret-0123456789abcdef"


class _Config(OTPAuthConfig):
    secret_key = SECRET
    cookie_secure = False
    mail_from = "Bench <login@example.com>"
    send_limit_per_client = None
    send_limit_per_mailbox = None
    verify_limit_per_client = None
    outbox_size = 100_000

    def __init__(self, **settings: Any) -> None:
        for name, value in settings.items():
            setattr(self, name, value)
        super().__init__()


def _callback_config(delay: float) -> _Config:
    class Slow(_Config):
        async def send_otp(self, email: str, code: str) -> None:
            if delay:
                await asyncio.sleep(delay)

    return Slow()


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def _request_latency(config: _Config, requests: int) -> dict[str, float]:
    store = MemoryStore()

    def get_otp_db() -> MemoryStore:
        return store

    app = FastAPI()
    app.include_router(get_auth_router(get_otp_db, config), prefix="/auth")
    durations = []
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://bench"
    ) as client:
        for index in range(requests):
            started = time.perf_counter()
            response = await client.post(
                "/auth/request-otp", json={"email": f"user{index}@example.com"}
            )
            durations.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
        started = time.perf_counter()
        left = await config.auth.outbox.drain(300)
        drained = time.perf_counter() - started
    await config.auth.outbox.aclose()
    assert left == 0
    return {
        "p50 ms": statistics.median(durations) * 1000,
        "p95 ms": _percentile(durations, 0.95) * 1000,
        "drain s": drained,
    }


def _message(index: int) -> CodeMail:
    return CodeMail(
        email=f"rcpt{index}@example.com",
        code=f"{index % 1_000_000:06d}",
        expires_at=datetime.now(UTC) + timedelta(minutes=10),
    )


async def _throughput(port: int, messages: int, connections: int, reuse: bool) -> float:
    sender = SMTPSender("127.0.0.1", port, tls="none", connections=connections)
    if reuse:
        mailer = TemplateMailer(sender, mail_from="login@example.com")
    else:
        mailer = TemplateMailer(_OneShot(sender), mail_from="login@example.com")
    outbox = Outbox(
        mailer, capacity=messages, concurrency=connections, clock=lambda: datetime.now(UTC)
    )
    started = time.perf_counter()
    for index in range(messages):
        with outbox.reserve() as ticket:
            ticket.submit(_message(index))
    left = await outbox.drain(300)
    elapsed = time.perf_counter() - started
    await outbox.aclose()
    assert left == 0
    return messages / elapsed


class _OneShot:
    """A sender that closes its connection after every message (no reuse)."""

    def __init__(self, sender: SMTPSender) -> None:
        self._sender = sender

    async def send(self, message: Message) -> None:
        await self._sender.send(message)
        await self._sender.aclose()

    async def aclose(self) -> None:
        await self._sender.aclose()


async def _run(requests: int, messages: int) -> dict[str, float]:
    from tests.delivery.smtp_server import SMTPServer

    results: dict[str, float] = {}
    for label, delay in (("0 ms mailer", 0.0), ("400 ms mailer", 0.4)):
        for key, value in (await _request_latency(_callback_config(delay), requests)).items():
            results[f"request-otp, {label}: {key}"] = value

    server = SMTPServer()
    server.start()
    try:
        server.recorder.behaviour.data_delay = 0.4
        config = _Config(smtp_url=f"smtp://127.0.0.1:{server.port}", outbox_concurrency=4)
        for key, value in (await _request_latency(config, requests)).items():
            results[f"request-otp, SMTP 400 ms/msg: {key}"] = value
        assert len(server.recorder.received) == requests
        server.recorder.behaviour.data_delay = 0.0
        server.recorder.received.clear()
        for connections in (1, 4):
            rate = await _throughput(server.port, messages, connections, reuse=True)
            results[f"SMTP msgs/s, {connections} reused connection(s)"] = rate
        rate = await _throughput(server.port, messages, 1, reuse=False)
        results["SMTP msgs/s, new connection per message"] = rate
        assert len(server.recorder.received) == 3 * messages
    finally:
        server.stop()
    return results


def run(requests: int = 200, messages: int = 500) -> dict[str, float]:
    """The measurements, by name."""
    return asyncio.run(_run(requests, messages))


def main(argv: list[str] | None = None) -> None:
    """Print the measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--messages", type=int, default=500)
    args = parser.parse_args(argv)
    for key, value in run(args.requests, args.messages).items():
        print(f"  {key:<52} {value:>10,.2f}")


if __name__ == "__main__":
    main()
