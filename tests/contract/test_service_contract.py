"""The service's concurrency guarantees, run against every backend in ``tests/backends``."""

from otpcore.testing.contract import ServiceContract


class TestServiceContract(ServiceContract):
    """Inherits every case; the ``backend`` fixture supplies each store in turn."""
