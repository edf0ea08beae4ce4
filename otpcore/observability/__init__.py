"""Observability for otpcore: audit events in standard logging, OpenTelemetry metrics and spans.

:class:`LoggingEventSink` needs nothing beyond the standard library. :class:`OTelInstrumentation`
needs the ``otel`` extra (``pip install 'otpcore[otel]'``); importing this package does not,
only constructing it does.
"""

from otpcore.observability.audit_log import (
    LoggingEventSink,
    combine_sinks,
    event_fields,
    event_name,
    mask_email,
)
from otpcore.observability.otel import OTelInstrumentation

__all__ = [
    "LoggingEventSink",
    "OTelInstrumentation",
    "combine_sinks",
    "event_fields",
    "event_name",
    "mask_email",
]
