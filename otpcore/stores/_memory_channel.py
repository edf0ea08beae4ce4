"""The memory store's pending challenges and limit counters (issue 8's ports).

A mixin of :class:`otpcore.stores.memory.MemoryStore`, kept apart so each file reads in
one sitting. Every method completes its check and its write without an ``await`` in
between, so each is atomic with respect to other tasks: the behaviour the database stores
are held to by :mod:`otpcore.testing.channel`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from otpcore.domain.records import ChallengeState, LimitHit, LimitWindow, PendingChallenge

__all__ = ["MemoryChannel"]


@dataclass(slots=True)
class _Counter:
    window_start: datetime
    count: int
    previous_count: int
    expires_at: datetime


class MemoryChannel:
    """Pending challenges by id and sliding-window counters by key, in dictionaries."""

    _challenges: dict[str, PendingChallenge]
    _counters: dict[str, _Counter]

    def _init_channel(self) -> None:
        self._challenges = {}
        self._counters = {}

    def _purge_channel(self, now: datetime) -> None:
        self._challenges = {k: c for k, c in self._challenges.items() if c.expires_at > now}
        self._counters = {k: c for k, c in self._counters.items() if c.expires_at > now}

    async def create_challenge(self, challenge: PendingChallenge) -> None:
        """See :meth:`otpcore.ports.ChallengeStore.create_challenge`."""
        if challenge.id in self._challenges:
            raise ValueError("a challenge with this id already exists")
        self._challenges[challenge.id] = challenge

    async def find_challenge(self, challenge_id: str) -> PendingChallenge | None:
        """See :meth:`otpcore.ports.ChallengeStore.find_challenge`."""
        return self._challenges.get(challenge_id)

    async def newest_challenge(self, subject: str) -> PendingChallenge | None:
        """See :meth:`otpcore.ports.ChallengeStore.newest_challenge`."""
        mine = [
            c
            for c in self._challenges.values()
            if c.subject == subject and c.state.code_hash is not None
        ]
        if not mine:
            return None
        return max(mine, key=lambda c: (c.state.last_request_at, c.order, c.id))

    async def update_challenge(
        self,
        challenge_id: str,
        *,
        expected_version: int,
        state: ChallengeState,
        expires_at: datetime,
        order: int | None = None,
    ) -> bool:
        """See :meth:`otpcore.ports.ChallengeStore.update_challenge`."""
        current = self._challenges.get(challenge_id)
        if current is None or current.state.version != expected_version:
            return False
        self._challenges[challenge_id] = replace(
            current,
            state=state,
            expires_at=expires_at,
            order=current.order if order is None else order,
        )
        return True

    async def hit(self, key: str, *, limit: int, window: LimitWindow) -> LimitHit:
        """See :meth:`otpcore.ports.LimitStore.hit`."""
        stored = self._counters.get(key)
        if stored is None:
            count, previous, start = 0, 0, window.start
        elif stored.window_start >= window.start:
            count, previous, start = stored.count, stored.previous_count, stored.window_start
        elif stored.window_start == window.previous_start:
            count, previous, start = 0, stored.count, window.start
        else:
            count, previous, start = 0, 0, window.start
        if previous * window.weight + count + 1 > limit:
            return LimitHit(allowed=False, count=count, previous_count=previous)
        self._counters[key] = _Counter(start, count + 1, previous, window.expires_at)
        return LimitHit(allowed=True, count=count + 1, previous_count=previous)
