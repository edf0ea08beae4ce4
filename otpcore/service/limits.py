"""Limits over the store: one counter hit per limit, a refusal turned into an error.

The rules (what is counted, under which key, how long to wait) are
:mod:`otpcore.domain.limits`'; this module only hits the counters through
:class:`otpcore.ports.LimitStore` in a fixed order and raises.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from otpcore.domain import limits as rules
from otpcore.domain.errors import AccountLocked, RateLimited
from otpcore.ports import LimitStore
from otpcore.service.context import Settings

__all__ = ["check_rate", "failure_lock", "send_limits"]


async def check_rate(
    s: Settings[Any], limiter: LimitStore, kind: str, value: str, rate: rules.Rate, now: datetime
) -> None:
    """Count one event of ``kind`` for ``value`` under ``rate``, or raise RateLimited."""
    window = rules.window_at(now, rate.per)
    hit = await limiter.hit(
        rules.limit_key(s.policy.secret, kind, value), limit=rate.limit, window=window
    )
    if not hit.allowed:
        wait = rules.retry_after(hit, limit=rate.limit, window=window, now=now)
        raise RateLimited(retry_after=wait, limit=kind.removeprefix("send-"))


async def send_limits(
    s: Settings[Any],
    limiter: LimitStore,
    *,
    email: str,
    subject: str,
    ip: str | None,
    device: str | None,
    now: datetime,
) -> None:
    """Hit the send limits in order (client, mailbox, global); the first refusal raises and
    later limits are not counted.

    A client holding a valid device allowance for the address is counted on its own copy
    of the mailbox budget, which strangers cannot spend.
    """
    limits = s.limits
    if ip is not None and limits.per_client is not None:
        await check_rate(s, limiter, "send-client", rules.client_scope(ip), limits.per_client, now)
    if limits.per_mailbox is not None:
        mailbox = rules.canonical_mailbox(email)
        nonce = rules.valid_device(s.policy.secret, subject, device)
        value = mailbox if nonce is None else rules.device_key(mailbox, nonce)
        await check_rate(s, limiter, "send-mailbox", value, limits.per_mailbox, now)
    if limits.global_per_hour is not None:
        budget = rules.Rate(limits.global_per_hour, rules.HOUR)
        await check_rate(s, limiter, "send-global", "all", budget, now)


async def failure_lock(s: Settings[Any], limiter: LimitStore, subject: str, now: datetime) -> None:
    """Count one bound guess from a client without an allowance against the address's cap
    of ``policy.max_failures`` per ``policy.lockout_duration``, or raise AccountLocked."""
    rate = rules.Rate(s.policy.max_failures, s.policy.lockout_duration)
    window = rules.window_at(now, rate.per)
    hit = await limiter.hit(
        rules.limit_key(s.policy.secret, "guess-subject", subject), limit=rate.limit, window=window
    )
    if not hit.allowed:
        wait = rules.retry_after(hit, limit=rate.limit, window=window, now=now)
        raise AccountLocked(retry_after=wait)
