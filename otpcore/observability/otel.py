"""OpenTelemetry metrics and spans for otpcore (the ``otel`` extra).

:class:`OTelInstrumentation` is three things, each added without editing otpcore:

- an ``events=`` sink that counts the audit events (codes sent, failed guesses, locks,
  refreshes, refresh-token reuse, …) and adds each as an event to the current span;
- :meth:`~OTelInstrumentation.instrument_store`, a proxy around any store that times every
  call (histogram ``otpcore.store.duration``) inside a span ``otpcore.store.<method>``;
- :meth:`~OTelInstrumentation.instrument_sender`, a wrapper around the code sender that
  counts failed deliveries inside a span ``otpcore.deliver``.

Nothing recorded holds a code, a token or an e-mail address. Exceptions are recorded by
type only: a driver's message may quote the statement's parameters.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from otpcore.domain.events import (
    AuthEvent,
    CodeRequested,
    CodeSent,
    DeliveryFailed,
    GuessFailed,
    LoggedOut,
    LoggedOutEverywhere,
    LoginSucceeded,
    OTPLocked,
    RefreshReuseDetected,
    RefreshRotated,
)
from otpcore.observability.audit_log import event_name

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram, MeterProvider
    from opentelemetry.trace import Tracer, TracerProvider

__all__ = ["COUNTERS", "OTelInstrumentation"]

S = TypeVar("S")
Sender = Callable[[str, str], Awaitable[None]]
Attributes = dict[str, str | int]

#: Counter name, description and unit of each metric; events not listed are not counted.
COUNTERS: Final[Mapping[str, tuple[str, str]]] = {
    "otpcore.codes.requested": ("Code requests, by outcome", "{request}"),
    "otpcore.codes.sent": ("Codes the sender accepted", "{code}"),
    "otpcore.deliveries.failed": ("Codes the sender failed to deliver", "{code}"),
    "otpcore.deliveries.given_up": ("Codes the outbox gave up, by reason", "{code}"),
    "otpcore.guesses.failed": ("Refused code guesses, by reason", "{guess}"),
    "otpcore.locks": ("Codes or accounts locked by failed guesses", "{lock}"),
    "otpcore.logins": ("Successful code verifications", "{login}"),
    "otpcore.refreshes": ("Refresh-token rotations", "{refresh}"),
    "otpcore.refresh_reuse.detected": ("Rotated refresh tokens presented again", "{reuse}"),
    "otpcore.logouts": ("Sessions ended by logout, by scope", "{logout}"),
}


def _attributes(event: AuthEvent) -> tuple[str, Attributes] | None:
    """The counter an event increments and its attributes (outcome names only)."""
    if isinstance(event, CodeRequested):
        return "otpcore.codes.requested", {"outcome": event.outcome}
    if isinstance(event, CodeSent):
        return "otpcore.codes.sent", {}
    if isinstance(event, DeliveryFailed):
        return "otpcore.deliveries.given_up", {"reason": event.reason}
    if isinstance(event, GuessFailed):
        return "otpcore.guesses.failed", {"reason": event.reason}
    if isinstance(event, OTPLocked):
        return "otpcore.locks", {}
    if isinstance(event, LoginSucceeded):
        return "otpcore.logins", {}
    if isinstance(event, RefreshRotated):
        return "otpcore.refreshes", {}
    if isinstance(event, RefreshReuseDetected):
        return "otpcore.refresh_reuse.detected", {}
    if isinstance(event, LoggedOut):
        return "otpcore.logouts", {"scope": "session"}
    if isinstance(event, LoggedOutEverywhere):
        return "otpcore.logouts", {"scope": "all"}
    return None  # an event type added later: not counted until listed here


class OTelInstrumentation:
    """Counters from audit events, and spans and latency for store calls and deliveries.

    Create one per process and use it as the ``events=`` sink (combine it with others
    through :func:`otpcore.observability.combine_sinks`)::

        otel = OTelInstrumentation()
        auth = OTPAuth(policy=..., store=otel.instrument_store(store),
                       sender=otel.instrument_sender(send), events=otel)

    Args:
        meter_provider: Where metrics go (default: the global provider).
        tracer_provider: Where spans go (default: the global provider).

    Raises:
        ImportError: OpenTelemetry is not installed (``pip install 'otpcore[otel]'``).
    """

    __slots__ = ("_counters", "_store_duration", "_trace", "_tracer")

    def __init__(
        self,
        *,
        meter_provider: MeterProvider | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        try:
            from opentelemetry import metrics, trace
        except ImportError as exc:
            raise ImportError(
                f"OTelInstrumentation needs OpenTelemetry: pip install 'otpcore[otel]' ({exc})"
            ) from exc
        from otpcore import __version__

        meter = metrics.get_meter("otpcore", __version__, meter_provider=meter_provider)
        self._counters: dict[str, Counter] = {
            name: meter.create_counter(name, unit=unit, description=description)
            for name, (description, unit) in COUNTERS.items()
        }
        self._store_duration: Histogram = meter.create_histogram(
            "otpcore.store.duration", unit="s", description="Duration of otpcore store calls"
        )
        self._tracer: Tracer = trace.get_tracer(
            "otpcore", __version__, tracer_provider=tracer_provider
        )
        self._trace = trace

    def __call__(self, event: AuthEvent) -> None:
        """Count ``event`` and add it to the current span."""
        counted = _attributes(event)
        if counted is None:
            return
        name, attributes = counted
        self._counters[name].add(1, attributes)
        span = self._trace.get_current_span()
        if span.is_recording():
            span.add_event(f"otpcore.{event_name(event)}", attributes)

    def instrument_store(self, store: S) -> S:
        """``store`` behind a proxy that records a span and the duration of every async call.

        The proxy passes every other attribute through, so it stands wherever ``store`` did;
        wrap each per-request store handle the same way.
        """
        return cast(S, _InstrumentedStore(store, self))

    def instrument_sender(self, sender: Sender) -> Sender:
        """``sender`` wrapped in a span ``otpcore.deliver`` that counts failures."""
        failed = self._counters["otpcore.deliveries.failed"]
        tracer = self._tracer
        status = self._trace.Status
        error = self._trace.StatusCode.ERROR

        async def send(email: str, code: str) -> None:
            with tracer.start_as_current_span(
                "otpcore.deliver", record_exception=False, set_status_on_exception=False
            ) as span:
                try:
                    await sender(email, code)
                except Exception as exc:
                    failed.add(1, {"error.type": type(exc).__name__})
                    span.set_attribute("error.type", type(exc).__name__)
                    span.set_status(status(error, type(exc).__name__))
                    raise

        return send

    async def _timed(
        self, store_name: str, operation: str, call: Callable[[], Awaitable[Any]]
    ) -> Any:
        attributes: Attributes = {"otpcore.store": store_name, "otpcore.operation": operation}
        with self._tracer.start_as_current_span(
            f"otpcore.store.{operation}",
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            started = time.perf_counter()
            try:
                result = await call()
            except BaseException as exc:
                error = type(exc).__name__
                self._store_duration.record(
                    time.perf_counter() - started, {**attributes, "error.type": error}
                )
                span.set_attribute("error.type", error)
                span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, error))
                raise
            self._store_duration.record(time.perf_counter() - started, attributes)
            return result


class _InstrumentedStore:
    """Delegates everything to the wrapped store; async methods run through ``_timed``."""

    __slots__ = ("_otel_cache", "_otel_inner", "_otel_name", "_otel_owner")

    def __init__(self, inner: object, owner: OTelInstrumentation) -> None:
        self._otel_inner = inner
        self._otel_owner = owner
        self._otel_name = type(inner).__name__
        self._otel_cache: dict[str, Callable[..., Awaitable[Any]]] = {}

    def __getattr__(self, name: str) -> Any:
        cached = self._otel_cache.get(name)
        if cached is not None:
            return cached
        value = getattr(self._otel_inner, name)
        if not inspect.iscoroutinefunction(value):
            return value
        owner, store_name = self._otel_owner, self._otel_name

        async def timed(*args: Any, **kwargs: Any) -> Any:
            return await owner._timed(store_name, name, lambda: value(*args, **kwargs))

        self._otel_cache[name] = timed
        return timed

    def __repr__(self) -> str:
        return f"<instrumented {self._otel_inner!r}>"
