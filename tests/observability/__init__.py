"""Audit logging and OpenTelemetry instrumentation, through real flows."""
