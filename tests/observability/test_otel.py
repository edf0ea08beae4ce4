"""OTelInstrumentation through a real flow, read back with the SDK's in-memory exporters."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from otpcore import OTPAuth, Policy
from otpcore.observability import OTelInstrumentation
from otpcore.stores.memory import MemoryStore
from otpcore.testing import FakeClock
from otpcore.testing.contract import Backend
from tests.observability.flow import SECRET, Inbox, walk

Points = dict[tuple[str, frozenset[tuple[str, Any]]], Any]


@pytest.fixture
def telemetry() -> Iterator[tuple[OTelInstrumentation, InMemoryMetricReader, InMemorySpanExporter]]:
    """Instrumentation over private SDK providers with in-memory exporters."""
    reader = InMemoryMetricReader()
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[reader])
    yield (
        OTelInstrumentation(meter_provider=meter_provider, tracer_provider=tracer_provider),
        reader,
        spans,
    )
    meter_provider.shutdown()
    tracer_provider.shutdown()


def _points(reader: InMemoryMetricReader) -> Points:
    """Every data point by (metric name, attributes)."""
    data = reader.get_metrics_data()
    assert data is not None
    return {
        (metric.name, frozenset((point.attributes or {}).items())): point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
    }


def _count(points: Points, name: str, **attributes: str) -> int:
    point = points.get((name, frozenset(attributes.items())))
    return 0 if point is None else int(point.value)


async def test_flow_counts_events_and_times_every_store_call(
    local_backend: Backend,
    telemetry: tuple[OTelInstrumentation, InMemoryMetricReader, InMemorySpanExporter],
) -> None:
    otel, reader, exporter = telemetry
    inbox = Inbox()
    auth: OTPAuth[Any] = OTPAuth(
        # Strict refresh (issue 10): the flow's replayed refresh token comes back at once.
        policy=Policy(secret=SECRET, max_attempts=2, refresh_grace=timedelta(0)),
        store=None,
        sender=otel.instrument_sender(inbox),
        clock=FakeClock(),
        events=otel,
    )
    secrets = await walk(local_backend, auth, inbox, otel.instrument_store)

    points = _points(reader)
    assert _count(points, "otpcore.codes.requested", outcome="issued") == 4
    assert _count(points, "otpcore.codes.sent") == 3
    assert _count(points, "otpcore.deliveries.failed", **{"error.type": "ConnectionError"}) == 1
    # Issue 9: the outbox gives that delivery up (not retried) and the event is counted.
    assert _count(points, "otpcore.deliveries.given_up", reason="permanent") == 1
    assert _count(points, "otpcore.guesses.failed", reason="otp_invalid") == 3
    assert _count(points, "otpcore.locks") == 1
    assert _count(points, "otpcore.logins") == 2
    assert _count(points, "otpcore.refreshes") == 1
    assert _count(points, "otpcore.refresh_reuse.detected") == 1
    assert _count(points, "otpcore.logouts", scope="session") == 1

    store_name = type(await _a_store(local_backend)).__name__
    durations = {
        dict(attributes)["otpcore.operation"]: point
        for (name, attributes), point in points.items()
        if name == "otpcore.store.duration"
    }
    assert {"find_by_email", "create", "revoke", "revoke_many"} <= set(durations)
    for point in durations.values():
        assert isinstance(point, HistogramDataPoint)
        assert point.count >= 1
        assert 0 < point.sum < 5
    assert all(
        dict(attributes)["otpcore.store"] == store_name
        for (name, attributes) in points
        if name == "otpcore.store.duration"
    )

    finished = exporter.get_finished_spans()
    store_spans = [s for s in finished if s.name.startswith("otpcore.store.")]
    assert len(store_spans) == sum(p.count for p in durations.values())
    assert all(s.end_time is not None and s.start_time is not None for s in store_spans)
    assert all(s.end_time >= s.start_time for s in store_spans if s.end_time and s.start_time)
    [failed] = [
        s
        for s in finished
        if s.name == "otpcore.deliver" and s.status.status_code is StatusCode.ERROR
    ]
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "ConnectionError"
    assert failed.events == (), "the exception (its message quotes the code) is not recorded"

    recorded = repr([(s.name, s.attributes, s.events, s.status.description) for s in finished])
    recorded += repr(points)
    leaked = [secret for secret in secrets.all() if secret in recorded]
    assert leaked == []


async def _a_store(backend: Backend) -> Any:
    async with backend.store() as store:
        return store


async def test_store_errors_are_timed_and_marked_by_type_only(
    telemetry: tuple[OTelInstrumentation, InMemoryMetricReader, InMemorySpanExporter],
) -> None:
    otel, reader, exporter = telemetry

    class Failing(MemoryStore):
        async def find_by_email(self, email: str) -> Any:
            raise RuntimeError(f"driver said: no row for {email}")

    store = otel.instrument_store(Failing())
    with pytest.raises(RuntimeError):
        await store.find_by_email("secret.person@example.com")
    [span] = exporter.get_finished_spans()
    assert (span.name, span.status.status_code) == ("otpcore.store.find_by_email", StatusCode.ERROR)
    assert "secret.person" not in repr((span.attributes, span.events, span.status.description))
    points = _points(reader)
    key = (
        "otpcore.store.duration",
        frozenset(
            {
                ("otpcore.store", "Failing"),
                ("otpcore.operation", "find_by_email"),
                ("error.type", "RuntimeError"),
            }
        ),
    )
    assert points[key].count == 1


def test_the_proxy_passes_other_attributes_through(
    telemetry: tuple[OTelInstrumentation, InMemoryMetricReader, InMemorySpanExporter],
) -> None:
    otel, _, _ = telemetry
    inner = MemoryStore()
    proxy = otel.instrument_store(inner)
    assert proxy.__class__ is not MemoryStore
    assert proxy._users is inner._users  # plain attributes are the store's own
    assert proxy.find_by_id is proxy.find_by_id  # one wrapper per method, built once


def test_importable_without_opentelemetry_and_clear_error_when_used() -> None:
    script = """
import builtins
real = builtins.__import__
def blocked(name, *args, **kwargs):
    if name == "opentelemetry" or name.startswith("opentelemetry."):
        raise ModuleNotFoundError(f"No module named {name!r}")
    return real(name, *args, **kwargs)
builtins.__import__ = blocked
from otpcore.observability import LoggingEventSink, OTelInstrumentation
LoggingEventSink()
try:
    OTelInstrumentation()
except ImportError as exc:
    print(exc)
else:
    raise SystemExit("no error")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'otpcore[otel]'" in result.stdout
