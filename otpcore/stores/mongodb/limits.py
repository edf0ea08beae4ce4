"""Limit counters in MongoDB: the :class:`otpcore.ports.LimitStore` method
:class:`MongoDBAdapter` mixes in, over the collection ``<blacklist collection>_limits``.

One document per key. Each fixed window's count is its own field, named after the window's
start in epoch milliseconds (``w1767268800000``), and ``top`` holds the latest window start
counted. So rolling to a new window moves nothing: the previous window's count is simply
the field of the previous start, and a hit is a plain ``$inc`` that every MongoDB-compatible
server supports (no update pipeline, which nx-27017, the test server, lacks)::

    find_one_and_update(
        {"$and": [{"_id": key}, {"top": {"$lte": S}},
                  {"$expr": {"$lte": [w<S - L> * weight + w<S> + 1, limit]}}]},  # missing: 0
        {"$inc": {"w<S>": 1}, "$max": {"top": S, "expires_ms": E},
         "$unset": {"w<S - 2L>": ""}},
        upsert=True, return_document=AFTER)

That statement is the whole hit whenever the hit is allowed, the key's first included (the
upsert inserts ``{_id: key, w<S>: 1, top: S, expires_ms: E}``); it is atomic on the
document, so concurrent hits on one key, from any number of processes, never exceed the
limit. When the key's document exists but the filter refuses it, the upsert's insert meets
the unique ``_id`` (``DuplicateKeyError``) and one ``find_one`` reads the counts the
refusal was decided on: a concurrent first hit that won the insert means trying again, and
a document whose ``top`` is after ``S`` (a host whose clock lags) is counted in that newer
window instead, as :meth:`otpcore.ports.LimitStore.hit` requires.

So an allowed hit costs one statement, a key's first hit too, a refusal two. Counts of
windows older than the previous one no longer matter; the hit drops the one before the
previous, and any older ones left by a key idle for longer are dropped by one more
``update_one`` when a hit returns them. ``purge_expired`` deletes documents whose
``expires_ms`` has passed (one ``delete_many``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from otpcore.domain.errors import ContentionError
from otpcore.domain.records import LimitHit, LimitWindow
from otpcore.stores._counter import allowed
from otpcore.stores.mongodb.sessions import to_ms

__all__ = ["MongoLimits", "ensure_limit_indexes"]

_RETRIES: Final = 10
_MS: Final = timedelta(milliseconds=1)
_PREFIX: Final = "w"


def _field(start_ms: int) -> str:
    return f"{_PREFIX}{start_ms}"


def _count(doc: Mapping[str, Any], start_ms: int) -> int:
    return int(doc.get(_field(start_ms)) or 0)


def _stale(doc: Mapping[str, Any], keep: tuple[int, int]) -> list[str]:
    kept = {_field(start) for start in keep}
    return [
        name for name in doc if name.startswith(_PREFIX) and name[1:].isdigit() and name not in kept
    ]


def _allowed_expr(start: int, previous: int, weight: float, limit: int) -> dict[str, Any]:
    """``w<previous> * weight + w<start> + 1 <= limit``, a missing field counting 0."""
    counted = [
        {"$multiply": [{"$ifNull": [f"${_field(previous)}", 0]}, weight]},
        {"$ifNull": [f"${_field(start)}", 0]},
        1,
    ]
    return {"$lte": [{"$add": counted}, limit]}


async def ensure_limit_indexes(limits: Any) -> None:
    """The ``expires_ms`` index the purge uses. Idempotent."""
    await limits.create_index("expires_ms")


class MongoLimits:
    """The :class:`otpcore.ports.LimitStore` method over ``limit_collection``."""

    limit_collection: Any

    async def hit(self, key: str, *, limit: int, window: LimitWindow) -> LimitHit:
        """See :meth:`otpcore.ports.LimitStore.hit` and the module's description.

        Raises:
            ContentionError: The document kept changing under this call (it was purged and
                recreated between statements, again and again).
        """
        length = window.length // _MS
        start = to_ms(window.start)
        expires = to_ms(window.expires_at)
        collection = self.limit_collection
        for _ in range(_RETRIES):
            previous = start - length
            try:
                # An upsert: a key's first hit is this one command too (the new document
                # takes ``_id`` from the filter and the update's fields). Where the document
                # exists but refuses the hit, the upsert's insert meets the unique ``_id``.
                doc = await collection.find_one_and_update(
                    # One ``$and`` rather than sibling fields: nx-27017 drops the siblings of
                    # an ``$expr`` it evaluates itself (``$ifNull``), ``_id`` included;
                    # MongoDB reads both forms alike.
                    {
                        "$and": [
                            {"_id": key},
                            {"top": {"$lte": start}},
                            {"$expr": _allowed_expr(start, previous, window.weight, limit)},
                        ]
                    },
                    {
                        "$inc": {_field(start): 1},
                        "$max": {"top": start, "expires_ms": expires},
                        "$unset": {_field(previous - length): ""},
                    },
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                doc = None
            if doc is not None:
                stale = _stale(doc, (start, previous))
                if stale:
                    await collection.update_one({"_id": key}, {"$unset": dict.fromkeys(stale, "")})
                return LimitHit(
                    allowed=True, count=_count(doc, start), previous_count=_count(doc, previous)
                )
            doc = await collection.find_one({"_id": key})
            if doc is None:
                continue  # purged between the statements: insert again
            top = int(doc.get("top") or 0)
            if top > start:
                # A host whose clock lags counts into the newer window.
                start = top
                continue
            count, previous_count = _count(doc, start), _count(doc, previous)
            if not allowed(count, previous_count, limit=limit, window=window):
                return LimitHit(allowed=False, count=count, previous_count=previous_count)
        raise ContentionError()

    async def _purge_limits(self, now: datetime) -> None:
        """Delete counters whose expiry has passed; one ``delete_many``."""
        await self.limit_collection.delete_many({"expires_ms": {"$lte": to_ms(now)}})
