"""Pending challenges in MongoDB: the :class:`otpcore.ports.ChallengeStore` methods
:class:`MongoDBAdapter` mixes in, over the collection ``<blacklist collection>_challenges``.

One document per requester binding, ``_id`` = the record's id (a keyed hash). Instants are
stored as dates, and the two that filters and sorts use also as integer milliseconds since
the epoch (``last_request_ms``, ``expires_ms``): integers compare exactly on every server,
while some MongoDB-compatible servers keep a date written by ``$set`` as text, or compare
dates to the whole second (nx-27017, the test server, does both).

Operations per call:

- ``create_challenge``: one ``insert_one``; ``find_challenge``: one ``find_one`` by ``_id``;
- ``newest_challenge``: one ``find_one`` on the ``(subject, last_request_ms)`` index, sorted
  newest first (ties: the greatest ``issue_order``, then the greatest ``_id``), among
  documents holding a code;
- ``update_challenge``: one ``update_one`` guarded on ``version`` (setting ``issue_order``
  too when a code was issued), decided by its matched count.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from otpcore.domain.errors import StorageError
from otpcore.domain.records import ChallengeState, PendingChallenge
from otpcore.stores.mongodb.documents import from_db, opt_to_db, to_db
from otpcore.stores.mongodb.sessions import to_ms

__all__ = ["MongoChallenges", "challenge_doc", "challenge_of", "ensure_challenge_indexes"]

_COUNTS: Final = ("attempts", "unbound_attempts", "failures", "version")
_INSTANTS: Final = ("issued_at", "last_request_at", "last_failure_at")


def _state_fields(state: ChallengeState, expires_at: datetime) -> dict[str, Any]:
    if state.last_request_at is None:
        raise ValueError("a pending challenge needs state.last_request_at")
    fields: dict[str, Any] = {"code_hash": state.code_hash, "link_hash": state.link_hash}
    fields.update({name: getattr(state, name) for name in _COUNTS})
    fields.update({name: opt_to_db(getattr(state, name)) for name in _INSTANTS})
    fields["last_request_ms"] = to_ms(state.last_request_at)
    fields["expires_at"] = to_db(expires_at)
    fields["expires_ms"] = to_ms(expires_at)
    return fields


def challenge_doc(challenge: PendingChallenge) -> dict[str, Any]:
    """The document stored for ``challenge``.

    Raises:
        ValueError: ``challenge.state.last_request_at`` is not set (every record has it).
    """
    return {
        "_id": challenge.id,
        "subject": challenge.subject,
        **_state_fields(challenge.state, challenge.expires_at),
        "issue_order": challenge.order,
    }


def challenge_of(doc: Mapping[str, Any]) -> PendingChallenge:
    """The pending challenge a document holds."""
    expires_at = from_db(doc.get("expires_at"))
    if expires_at is None:
        raise StorageError("A stored challenge is missing expires_at.")
    values: dict[str, Any] = {name: int(doc.get(name) or 0) for name in _COUNTS}
    values.update({name: from_db(doc.get(name)) for name in _INSTANTS})
    state = ChallengeState(code_hash=doc.get("code_hash"), link_hash=doc.get("link_hash"), **values)
    return PendingChallenge(
        id=str(doc["_id"]),
        subject=str(doc["subject"]),
        state=state,
        expires_at=expires_at,
        order=int(doc.get("issue_order") or 0),
    )


async def ensure_challenge_indexes(challenges: Any, *, ttl_index: bool) -> None:
    """The ``(subject, last_request_ms)`` index (a subject's newest code), the
    ``expires_ms`` index (the purge) and, when ``ttl_index``, the TTL index on
    ``expires_at``. Idempotent."""
    # Walked backwards for the newest first; ties on the millisecond (rare, and few
    # records per subject) are ordered by ``issue_order``, then ``_id``, after it. Not
    # ``_id`` in the index: nx-27017 then fails every query on the collection.
    await challenges.create_index([("subject", 1), ("last_request_ms", 1)])
    await challenges.create_index("expires_ms")
    if ttl_index:
        await challenges.create_index("expires_at", expireAfterSeconds=0)


class MongoChallenges:
    """The :class:`otpcore.ports.ChallengeStore` methods over ``challenge_collection``."""

    challenge_collection: Any

    async def create_challenge(self, challenge: PendingChallenge) -> None:
        """See :meth:`otpcore.ports.ChallengeStore.create_challenge`. One ``insert_one``.

        Raises:
            ValueError: ``challenge.state.last_request_at`` is not set.
        """
        await self.challenge_collection.insert_one(challenge_doc(challenge))

    async def find_challenge(self, challenge_id: str) -> PendingChallenge | None:
        """See :meth:`otpcore.ports.ChallengeStore.find_challenge`. One ``find_one``."""
        doc = await self.challenge_collection.find_one({"_id": challenge_id})
        return None if doc is None else challenge_of(doc)

    async def newest_challenge(self, subject: str) -> PendingChallenge | None:
        """See :meth:`otpcore.ports.ChallengeStore.newest_challenge`. One ``find_one``."""
        doc = await self.challenge_collection.find_one(
            {"subject": subject, "code_hash": {"$ne": None}},
            sort=[("last_request_ms", -1), ("issue_order", -1), ("_id", -1)],
        )
        return None if doc is None else challenge_of(doc)

    async def update_challenge(
        self,
        challenge_id: str,
        *,
        expected_version: int,
        state: ChallengeState,
        expires_at: datetime,
        order: int | None = None,
    ) -> bool:
        """See :meth:`otpcore.ports.ChallengeStore.update_challenge`. One ``update_one``
        guarded on the stored ``version``."""
        fields = _state_fields(state, expires_at)
        if order is not None:
            fields["issue_order"] = order
        result = await self.challenge_collection.update_one(
            {"_id": challenge_id, "version": expected_version}, {"$set": fields}
        )
        return bool(result.matched_count)

    async def _purge_challenges(self, now: datetime) -> None:
        """Delete records whose expiry has passed; one ``delete_many``."""
        await self.challenge_collection.delete_many({"expires_ms": {"$lte": to_ms(now)}})
