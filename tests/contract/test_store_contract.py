"""The store contract, run against every backend in ``tests/backends``."""

from otpcore.testing.contract import StoreContract


class TestStoreContract(StoreContract):
    """Inherits every case; the ``backend`` fixture supplies each store in turn."""
