"""The channel contract (issue 8): pending challenges and limit counters, run against every
backend in ``tests/backends`` (memory, SQLite, PostgreSQL, MongoDB through PyMongo and
Motor). The Redis limit store keeps its windows on the server's clock, so it has its own
real-time tests in ``test_redis_limits``.
"""

from otpcore.testing.channel import ChannelContract


class TestChannelContract(ChannelContract):
    """Inherits every case; the ``backend`` fixture supplies each store in turn."""
