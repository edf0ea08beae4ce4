"""The reference library's adapter API, run against every backend in ``tests/backends``."""

from otpcore.testing.reference import ReferenceContract


class TestReferenceContract(ReferenceContract):
    """Inherits every case; the ``backend`` fixture supplies each store in turn."""
