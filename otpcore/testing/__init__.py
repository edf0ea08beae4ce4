"""Public helpers for testing applications and stores built on otpcore."""

from otpcore.testing.clock import FakeClock

__all__ = ["FakeClock"]
