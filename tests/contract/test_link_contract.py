"""The magic-link contract (issue 9), run against every backend in ``tests/backends``
(memory, SQLite, PostgreSQL, MongoDB through PyMongo and Motor)."""

from otpcore.testing.links import LinkContract


class TestLinkContract(LinkContract):
    """Inherits every case; the ``backend`` fixture supplies each store in turn."""
