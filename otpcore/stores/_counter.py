"""What a stored sliding-window counter holds at a given window, for the database stores.

The database stores decide a hit inside one statement; when a refused hit returns nothing,
they read the counter and report the counts the statement decided on, rolled here by the
same rule (:meth:`otpcore.ports.LimitStore.hit`, step 1).
"""

from __future__ import annotations

from datetime import datetime

from otpcore.domain.records import LimitHit, LimitWindow

__all__ = ["allowed", "refused"]


def allowed(count: int, previous_count: int, *, limit: int, window: LimitWindow) -> bool:
    """Whether one more hit keeps the sliding count within ``limit`` (step 2)."""
    return previous_count * window.weight + count + 1 <= limit


def refused(
    stored: tuple[datetime, int, int] | None, *, window: LimitWindow
) -> tuple[datetime, LimitHit]:
    """The window start and counts of ``stored`` ``(window_start, count, previous_count)``
    rolled to ``window``, as a refusal (``allowed=False``).

    The start is the stored one when it is at or after ``window.start`` (a host whose clock
    lags counts into the newer window), else ``window.start``.
    """
    if stored is None:
        return window.start, LimitHit(allowed=False, count=0, previous_count=0)
    start, count, previous = stored
    if start >= window.start:
        return start, LimitHit(allowed=False, count=count, previous_count=previous)
    if start == window.previous_start:
        return window.start, LimitHit(allowed=False, count=0, previous_count=count)
    return window.start, LimitHit(allowed=False, count=0, previous_count=0)
