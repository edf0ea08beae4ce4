"""The order of issued codes: which of two codes asked for in the same instant is the newest.

Instants tie: a fake clock stands still, MongoDB keeps milliseconds, and two requests for
one address can land in the same one. :attr:`PendingChallenge.order
<otpcore.domain.records.PendingChallenge>` breaks the tie in
:meth:`~otpcore.ports.ChallengeStore.newest_challenge`, so an unbound guess meets the code
mailed last. Not a clock the rules read: only an order.
"""

from __future__ import annotations

import threading
import time

__all__ = ["next_order"]

_lock = threading.Lock()
_last = 0


def next_order() -> int:
    """A number greater than any this process returned before; across processes, the wall
    clock in nanoseconds (so a later issue elsewhere usually orders later too)."""
    global _last
    with _lock:
        _last = max(_last + 1, time.time_ns())
        return _last
