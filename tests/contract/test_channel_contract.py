"""The channel contract (issue 8): pending challenges and limit counters.

Runs on the memory store until the SQL and MongoDB stores implement the ports; then this
module's ``backend`` override goes and the contract runs on every backend.
"""

import pytest

from otpcore.testing.channel import ChannelContract
from otpcore.testing.contract import Backend
from tests.backends.memory import MemoryBackend


@pytest.fixture
async def backend() -> Backend:
    """The memory store only, for now (see the module docstring)."""
    return MemoryBackend()


class TestChannelContract(ChannelContract):
    """Inherits every case; the ``backend`` fixture supplies each store in turn."""
