"""The indexes correctness rests on, and the per-process record of where they exist.

Uniqueness (one user per e-mail, one entry per revoked identifier) comes from unique
indexes, so the adapter creates them itself before its first write that relies on them,
once per process and database; the sessions collection's indexes come with them.
"""

from __future__ import annotations

import weakref
from typing import Any, Final

from pymongo.errors import OperationFailure

from otpcore.domain.errors import ConfigurationError

__all__ = ["IndexKey", "ensure_indexes", "ensured"]

#: (database, user collection, blacklist collection, with TTL index)
IndexKey = tuple[str, str, str, bool]

# Index-creation failures that mean an index of the same name or keys exists with other
# options: a setup problem the application must fix, not an outage.
_INDEX_CONFLICTS: Final = frozenset({85, 86})
# Databases whose indexes this process has ensured: client -> {IndexKey}.
_ENSURED: weakref.WeakKeyDictionary[Any, set[IndexKey]] = weakref.WeakKeyDictionary()


def ensured(client: Any, key: IndexKey) -> bool:
    """Whether this process has ensured the indexes ``key`` names through ``client``."""
    return key in _ENSURED.get(client, ())


async def ensure_indexes(
    client: Any, users: Any, blacklist: Any, sessions: Any, *, ttl_index: bool, key: IndexKey
) -> None:
    """Create the unique ``email`` and ``jti`` indexes, the TTL index on ``expires_at``
    (when ``ttl_index``) and the ``blacklisted_at`` index; on ``sessions``, the
    ``(user_id, expires_ms)`` and ``expires_ms`` indexes and (when ``ttl_index``) the TTL
    index on ``expires_at``.
    Idempotent.

    Raises:
        ConfigurationError: An index with the same keys but other options exists.
        PyMongoError: The server failed (the adapter turns it into ``StorageError``).
    """
    try:
        # Default index names, so indexes made by the reference's Quick Start match.
        await users.create_index("email", unique=True)
        await blacklist.create_index("jti", unique=True)
        if ttl_index:
            await blacklist.create_index("expires_at", expireAfterSeconds=0)
        await blacklist.create_index("blacklisted_at")
        # A user's active sessions (list, end) in one index range.
        await sessions.create_index([("user_id", 1), ("expires_ms", 1)])
        # purge_expired's range: ending a session sets its expiry, so this finds ended ones too.
        await sessions.create_index("expires_ms")
        if ttl_index:
            # Expired and ended sessions go on their own (where the server keeps dates).
            await sessions.create_index("expires_at", expireAfterSeconds=0)
    except OperationFailure as exc:
        if exc.code not in _INDEX_CONFLICTS:
            raise
        raise ConfigurationError(
            "An existing index on the OTP collections conflicts with the one otpcore "
            f"needs ({exc.details and exc.details.get('errmsg')}); drop it and retry."
        ) from exc
    # Some servers keep a conflicting older index silently instead of failing; the unique
    # ones are what correctness rests on, so confirm they are there.
    for collection, field in ((users, "email"), (blacklist, "jti")):
        indexes = await collection.index_information()
        if not any(
            spec.get("unique") and list(spec.get("key", ())) == [(field, 1)]
            for spec in indexes.values()
        ):
            raise ConfigurationError(
                f"{collection.name}.{field} must have a unique index, and an existing "
                "non-unique index on it stops otpcore creating one; drop it and retry."
            )
    _ENSURED.setdefault(client, set()).add(key)
