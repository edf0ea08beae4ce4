"""Session records in MongoDB: the :class:`otpcore.ports.SessionStore` methods
:class:`MongoDBAdapter` mixes in, over the collection ``<blacklist collection>_sessions``.

One document per session, ``_id`` = the session id. Instants are stored as dates, and the
expiry also as integer milliseconds since the epoch (``expires_ms``), which is what every
filter compares: integers compare exactly on every server, while some MongoDB-compatible
servers store a date written by ``$set`` as text, which no date comparison matches again
(nx-27017, the test server, does). For a stored expiry truncated to the millisecond,
``expires_ms > floor(now in ms)`` is exactly ``expires_at > now``. The date ``expires_at`` is
kept for the TTL index and for people reading the collection.

Operations per call:

- ``open_session``: one ``insert_one``; ``find_session``: one ``find_one`` by ``_id``;
- ``rotate_session``: one conditional ``update_one`` (``$inc`` the generation), decided by
  its matched count;
- ``list_sessions``: one ``find`` on the ``(user_id, expires_ms)`` index;
- ``end_sessions``: with ``only``, one conditional ``update_one``. Otherwise one
  ``update_many`` that stamps what it ends with a random ``ended_by`` mark, then (only if it
  ended any) one ``find`` of that mark: the ids this call ended, exactly, whatever ran
  concurrently (a session already ended is not matched, so never re-marked). Ending also
  sets the expiry (``expires_at``, ``expires_ms``) to now;
- the purge: one ``delete_many`` of ``expires_ms <= now``, a range of the ``expires_ms``
  index (an ended session's expiry is its end, so no ``ended_at`` test is needed).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from otpcore.domain.errors import StorageError
from otpcore.domain.records import SessionRecord
from otpcore.stores.mongodb.documents import from_db, opt_to_db, to_db

__all__ = ["MongoSessions", "session_doc", "session_of", "to_ms"]

#: Longest ``user_agent`` / ``ip`` stored, as in the SQL store's columns.
USER_AGENT_LENGTH: Final = 256
IP_LENGTH: Final = 64

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


def to_ms(moment: datetime) -> int:
    """An instant as whole milliseconds since the epoch (truncated, like stored dates)."""
    return (to_db(moment) - _EPOCH) // _MS


def _clip(value: str | None, length: int) -> str | None:
    return None if value is None else value[:length]


def session_doc(session: SessionRecord) -> dict[str, Any]:
    """The document stored for ``session``."""
    return {
        "_id": session.sid,
        "user_id": session.user_id,
        "created_at": to_db(session.created_at),
        "last_used_at": to_db(session.last_used_at),
        "rotated_at": to_db(session.rotated_at),
        "generation": session.generation,
        "user_agent": _clip(session.user_agent, USER_AGENT_LENGTH),
        "ip": _clip(session.ip, IP_LENGTH),
        "expires_at": to_db(session.expires_at),
        "expires_ms": to_ms(session.expires_at),
        "ended_at": opt_to_db(session.ended_at),
    }


def _instant(doc: Mapping[str, Any], name: str) -> datetime:
    value = from_db(doc.get(name))
    if value is None:
        raise StorageError(f"A stored session is missing {name}.")
    return value


def session_of(doc: Mapping[str, Any]) -> SessionRecord:
    """The session a document holds."""
    return SessionRecord(
        sid=str(doc["_id"]),
        user_id=str(doc["user_id"]),
        created_at=_instant(doc, "created_at"),
        last_used_at=_instant(doc, "last_used_at"),
        rotated_at=_instant(doc, "rotated_at"),
        generation=int(doc["generation"]),
        user_agent=doc.get("user_agent"),
        ip=doc.get("ip"),
        expires_at=_EPOCH + int(doc["expires_ms"]) * _MS,
        ended_at=from_db(doc.get("ended_at")),
    )


class MongoSessions:
    """The :class:`otpcore.ports.SessionStore` methods over ``session_collection``."""

    session_collection: Any

    async def _indexed(self) -> None:
        """Provided by the adapter: ensure the indexes once per process."""
        raise NotImplementedError

    async def open_session(self, session: SessionRecord) -> None:
        """See :meth:`otpcore.ports.SessionStore.open_session`. One ``insert_one``."""
        await self._indexed()
        await self.session_collection.insert_one(session_doc(session))

    async def find_session(self, sid: str) -> SessionRecord | None:
        """See :meth:`otpcore.ports.SessionStore.find_session`. One ``find_one``."""
        doc = await self.session_collection.find_one({"_id": sid})
        return None if doc is None else session_of(doc)

    async def rotate_session(
        self, sid: str, *, expected_generation: int, now: datetime, expires_at: datetime
    ) -> bool:
        """See :meth:`otpcore.ports.SessionStore.rotate_session`. One conditional
        ``update_one``."""
        moment = to_db(now)
        result = await self.session_collection.update_one(
            {
                "_id": sid,
                "generation": expected_generation,
                "ended_at": None,
                "expires_ms": {"$gt": to_ms(now)},
            },
            {
                "$inc": {"generation": 1},
                "$set": {
                    "rotated_at": moment,
                    "last_used_at": moment,
                    "expires_at": to_db(expires_at),
                    "expires_ms": to_ms(expires_at),
                },
            },
        )
        return bool(result.matched_count)

    async def list_sessions(self, user_id: str, *, now: datetime) -> list[SessionRecord]:
        """See :meth:`otpcore.ports.SessionStore.list_sessions`. One ``find``."""
        query = {"user_id": user_id, "ended_at": None, "expires_ms": {"$gt": to_ms(now)}}
        found = [session_of(doc) async for doc in self.session_collection.find(query)]
        # Ordered here: a user has few sessions, and this holds whatever the server's
        # ordering of dates it stored as text.
        found.sort(key=lambda session: session.sid)
        found.sort(key=lambda session: session.created_at, reverse=True)
        return found

    async def end_sessions(
        self,
        user_id: str,
        *,
        now: datetime,
        only: str | None = None,
        keep: str | None = None,
    ) -> list[str]:
        """See :meth:`otpcore.ports.SessionStore.end_sessions` (both ``only`` and ``keep``
        given: ``only``, unless it is ``keep``). With ``only``, one ``update_one``; otherwise
        an ``update_many`` and, when it ended any, a ``find`` of what it ended."""
        ids: dict[str, Any] = {}
        if only is not None:
            ids["$in"] = [only]
        if keep is not None:
            ids["$ne"] = keep
        query: dict[str, Any] = {
            "user_id": user_id,
            "ended_at": None,
            "expires_ms": {"$gt": to_ms(now)},
        }
        if ids:
            query["_id"] = ids
        sessions = self.session_collection
        # Only active sessions (expiry after now) match, so an expiry of now is
        # min(expiry, now): the purge and the TTL index then find ended sessions by it alone.
        moment = to_db(now)
        ended = {"ended_at": moment, "expires_at": moment, "expires_ms": to_ms(now)}
        if only is not None:
            result = await sessions.update_one(query, {"$set": ended})
            return [only] if result.matched_count else []
        mark = secrets.token_hex(12)
        result = await sessions.update_many(query, {"$set": {**ended, "ended_by": mark}})
        if not result.matched_count:
            return []
        ended = sessions.find({"user_id": user_id, "ended_by": mark}, {"_id": 1})
        return [str(doc["_id"]) async for doc in ended]

    async def _purge_sessions(self, now: datetime) -> None:
        """Delete sessions whose expiry has passed (ended ones included: ending sets it);
        one ``delete_many`` on the ``expires_ms`` index."""
        await self.session_collection.delete_many({"expires_ms": {"$lte": to_ms(now)}})
