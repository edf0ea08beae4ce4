"""The session contract, run against every backend in ``tests/backends``."""

from otpcore.testing.sessions import SessionContract


class TestSessionContract(SessionContract):
    """Inherits every case; the ``backend`` fixture supplies each store in turn."""
