"""Claims-only authentication against the per-worker revocation mirror.

The mirror (:class:`otpcore.domain.sessions.RevocationMirror`) decides with the same
verdict as the store path; this module keeps it no older than ``mirror_interval`` with one
``revocations_since`` query per refresh.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from otpcore.domain import sessions as rules
from otpcore.domain.errors import ConfigurationError, TokenRevoked
from otpcore.domain.records import Claims
from otpcore.ports import Store
from otpcore.service.context import Settings

__all__ = ["authenticate_claims", "refresh_mirror"]

_EPOCH = datetime.fromtimestamp(0, tz=UTC)


async def authenticate_claims(
    s: Settings[Any], store: Store[Any] | None, access_token: str
) -> Claims:
    """Verify ``access_token`` against the mirror; see :meth:`OTPAuth.authenticate_claims`."""
    now = s.clock()
    claims = s.codec.verify(access_token, kind="access", now=now)
    if s.mirror.is_stale(now):
        await refresh_mirror(s, store)
    if not isinstance(s.mirror.verdict(claims), rules.Valid):
        raise TokenRevoked()
    return claims


async def refresh_mirror(
    s: Settings[Any], store: Store[Any] | None, *, force: bool = False
) -> None:
    """Bring the mirror up to date; see :meth:`OTPAuth.refresh_mirror`."""
    async with s.mirror_lock:
        started = s.clock()
        if not force and not s.mirror.is_stale(started):
            return  # another task refreshed it while this one waited
        since = s.mirror.since() or _EPOCH
        if store is not None:
            entries = await store.revocations_since(since, now=started)
        elif s.revocation_source is not None:
            async with s.revocation_source() as source:
                entries = await source.revocations_since(since, now=started)
        else:
            raise ConfigurationError(
                "claims-only authentication needs a store or a revocation_source"
            )
        s.mirror.apply(entries, started_at=started)
