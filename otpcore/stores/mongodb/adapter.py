"""``MongoDBAdapter``: the storage ports over three MongoDB collections.

Works with a database from PyMongo's ``AsyncMongoClient`` or from Motor's
``AsyncIOMotorClient``: only the async API the two share is used. Every state change is one
conditional write guarded on the integer ``otp_version``; uniqueness comes from the unique
indexes of :mod:`otpcore.stores.mongodb.indexes`. Sessions: :mod:`otpcore.stores.mongodb.sessions`.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from bson import ObjectId
from pydantic import ValidationError
from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from otpcore.domain.errors import ConfigurationError, ContentionError
from otpcore.domain.records import Account, ChallengeState, Revocation, RevocationKind, user_key
from otpcore.stores._base import StoreBase
from otpcore.stores._record import challenge_of
from otpcore.stores._reference import ReferenceAPI
from otpcore.stores._revocations import distinct, inserted_answers
from otpcore.stores.mongodb import indexes
from otpcore.stores.mongodb.challenges import MongoChallenges, ensure_challenge_indexes
from otpcore.stores.mongodb.documents import (
    DATETIME_FIELDS,
    BaseOTPUserDocument,
    challenge_fields,
    from_db,
    id_filter,
    revocation_doc,
    revocation_of,
    to_db,
)
from otpcore.stores.mongodb.limits import MongoLimits, ensure_limit_indexes
from otpcore.stores.mongodb.sessions import MongoSessions

__all__ = ["MongoDBAdapter"]

UserT = TypeVar("UserT", bound=BaseOTPUserDocument)

_RETRIES = 10
#: MongoDB's duplicate-key error codes (as pymongo's DuplicateKeyError reads them).
_DUPLICATE_KEY = frozenset({11000, 11001, 12582})
_KEYS_FIELD = "_otpcore_keys"
_REVOKED_FIELD = "_otpcore_revocations"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _version_guard(version: int) -> object:
    # Documents written before otp_version existed have no such field: they are version 0.
    return {"$in": [0, None]} if version == 0 else version


def _missing_fields(error: ValidationError) -> list[str]:
    return [
        ".".join(str(part) for part in item["loc"])
        for item in error.errors()
        if item["type"] == "missing"
    ]


def _missing_message(model: str, missing: list[str]) -> str:
    return (
        f"{model} has required field(s) without a default that otpcore cannot fill: "
        f"{', '.join(missing)}. Return values for them from the `new_user_fields` "
        "hook (called with the e-mail of each new user), pass them to "
        "create_user(email, **fields), or give the field(s) a default."
    )


async def _to_list(cursor_or_awaitable: Any) -> list[dict[str, Any]]:
    # PyMongo's aggregate() is a coroutine returning a cursor; Motor's returns the cursor.
    cursor = cursor_or_awaitable
    if inspect.isawaitable(cursor):
        cursor = await cursor
    result: list[dict[str, Any]] = await cursor.to_list(None)
    return result


class MongoDBAdapter(
    StoreBase, ReferenceAPI, MongoSessions, MongoChallenges, MongoLimits, Generic[UserT]
):
    """Users, revocations and sessions in MongoDB; implements :class:`otpcore.ports.Store`.

    Sessions live in the collection ``f"{blacklist_collection_name}_sessions"``, pending
    challenges and limit counters in ``…_challenges`` and ``…_limits``
    (:mod:`~otpcore.stores.mongodb.challenges`, :mod:`~otpcore.stores.mongodb.limits`).

    Also keeps the reference library's methods that applications call directly
    (``get_by_email``, ``create_user``, ``add_to_blacklist``, …).

    Args:
        database: A PyMongo ``AsyncDatabase`` or a Motor ``AsyncIOMotorDatabase``.
        user_collection_name: Collection holding ``user_model_class`` documents.
        blacklist_collection_name: Collection holding revocation entries.
        user_model_class: :class:`BaseOTPUserDocument` or a subclass of it.
        ttl_index: Whether :meth:`ensure_indexes` adds the TTL indexes that let the server
            delete revocations and sessions once ``expires_at`` passes on its own clock.
            Turn it off only when entries carry instants from another clock (tests with a
            fake clock).
        clock: Current time for the reference methods that stamp documents
            (``update_otp``, ``add_to_blacklist``, ``cleanup_blacklist``, …).
    """

    driver_errors: ClassVar[tuple[type[BaseException], ...]] = (PyMongoError, OSError)
    wrapped_methods: ClassVar[frozenset[str]] = frozenset({"ensure_indexes"})

    def __init__(
        self,
        database: Any,
        user_collection_name: str,
        blacklist_collection_name: str,
        user_model_class: type[UserT],
        *,
        ttl_index: bool = True,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.database = database
        self._clock = clock
        self.user_collection = database[user_collection_name]
        self.blacklist_collection = database[blacklist_collection_name]
        self.session_collection = database[f"{blacklist_collection_name}_sessions"]
        self.challenge_collection = database[f"{blacklist_collection_name}_challenges"]
        self.limit_collection = database[f"{blacklist_collection_name}_limits"]
        self.user_model_class = user_model_class
        self.ttl_index = ttl_index
        self._index_key = (
            database.name,
            user_collection_name,
            blacklist_collection_name,
            ttl_index,
        )

    # -- indexes ---------------------------------------------------------------------------

    async def ensure_indexes(self) -> None:
        """Create the unique ``email`` and ``jti`` indexes, the TTL indexes on ``expires_at``
        (unless disabled), the ``blacklisted_at`` index and the sessions' ``(user_id,
        expires_ms)`` index; the challenges' ``(subject, last_request_ms)`` and the
        challenges' and limit counters' ``expires_ms`` indexes. Idempotent.

        Raises:
            ConfigurationError: An index with the same keys but other options exists.
            StorageError: The server could not be reached.
        """
        await ensure_challenge_indexes(self.challenge_collection, ttl_index=self.ttl_index)
        await ensure_limit_indexes(self.limit_collection)
        await indexes.ensure_indexes(
            self.database.client,
            self.user_collection,
            self.blacklist_collection,
            self.session_collection,
            ttl_index=self.ttl_index,
            key=self._index_key,
        )

    async def _indexed(self) -> None:
        if not indexes.ensured(self.database.client, self._index_key):
            await self.ensure_indexes()

    # -- units of work ---------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self, *, atomic: bool = True) -> AsyncIterator[None]:
        """See :meth:`otpcore.ports.UnitOfWork.transaction`. Best effort: no multi-document
        transaction, since those need a replica set (a standalone server or the nx-27017
        wire server has none) and a session threaded through every call. Each call stays
        one atomic single-document write; nothing is undone when the block raises. A
        login writes the account (found or created), then the spent code, then the
        verified mark and the session, so the worst a crash between them leaves is an
        account without a session or a spent code without one (the user asks for a new
        code)."""
        yield

    # -- documents -------------------------------------------------------------------------

    def _model(self, doc: Mapping[str, Any]) -> UserT:
        data = dict(doc)
        for name, value in data.items():
            if name in DATETIME_FIELDS or isinstance(value, datetime):
                data[name] = from_db(value)
        try:
            return self.user_model_class.model_validate(data)
        except ValidationError as exc:
            raise ConfigurationError(
                f"A stored user does not fit {self.user_model_class.__name__}: "
                f"{exc.error_count()} field error(s) in "
                f"{sorted({str(item['loc'][0]) for item in exc.errors() if item['loc']})}."
            ) from None

    def _account(self, doc: Mapping[str, Any]) -> Account[UserT]:
        user = self._model(doc)
        return Account(
            user_id=str(doc["_id"]),
            email=str(doc["email"]),
            is_verified=bool(user.is_verified),
            challenge=challenge_of(user),
            user=user,
        )

    def check_auto_create(self) -> None:
        """Refuse a user model that a new user cannot be made of from its e-mail alone (what
        auto-creation without a ``new_user_fields`` hook does); no I/O. The FastAPI binding
        calls it at startup.

        Raises:
            ConfigurationError: The model has required fields without a default besides the
                base document's; the message names them and the ``new_user_fields`` hook.
        """
        try:
            self.user_model_class.model_validate({"email": "new-user@example.com"})
        except ValidationError as exc:
            missing = _missing_fields(exc)
            if missing:
                raise ConfigurationError(
                    _missing_message(self.user_model_class.__name__, missing)
                ) from None

    def _new_document(self, email: str, fields: Mapping[str, object]) -> dict[str, Any]:
        values: dict[str, object] = {**fields, "email": email}
        try:
            model = self.user_model_class.model_validate(values)
        except ValidationError as exc:
            missing = _missing_fields(exc)
            name = self.user_model_class.__name__
            if missing:
                raise ConfigurationError(_missing_message(name, missing)) from None
            bad = sorted({".".join(str(p) for p in item["loc"]) for item in exc.errors()})
            raise ConfigurationError(
                f"{name} rejected the values given for {', '.join(bad)}."
            ) from None
        doc = model.model_dump(by_alias=True)
        doc["email"] = email
        doc["is_verified"] = False
        doc.update(challenge_fields(ChallengeState()))
        doc["otp_expires_at"] = None
        user_id = doc.pop("_id", None)
        if user_id:
            doc["_id"] = ObjectId(user_id) if ObjectId.is_valid(user_id) else user_id
        return doc

    # -- AccountStore ----------------------------------------------------------------------

    async def find_by_email(self, email: str) -> Account[UserT] | None:
        """See :meth:`otpcore.ports.AccountStore.find_by_email`."""
        doc = await self.user_collection.find_one({"email": email})
        return None if doc is None else self._account(doc)

    async def find_by_id(self, user_id: str) -> Account[UserT] | None:
        """See :meth:`otpcore.ports.AccountStore.find_by_id`."""
        query = id_filter(user_id)
        if query is None:
            return None
        doc = await self.user_collection.find_one(query)
        return None if doc is None else self._account(doc)

    async def create(
        self, email: str, fields: Mapping[str, object], *, verified: bool = False
    ) -> Account[UserT]:
        """See :meth:`otpcore.ports.AccountStore.create`.

        Raises:
            ConfigurationError: The user model needs a field ``fields`` does not give.
        """
        doc = self._new_document(email, fields)
        doc["is_verified"] = verified
        await self._indexed()
        for _ in range(_RETRIES):
            try:
                result = await self.user_collection.insert_one(dict(doc))
            except DuplicateKeyError:
                existing = await self.user_collection.find_one({"email": email})
                if existing is not None:
                    return self._account(existing)
                if "_id" in doc:
                    raise ConfigurationError(
                        "another user already has the _id given for this new user"
                    ) from None
                continue  # deleted between the two calls: insert again
            return self._account({**doc, "_id": result.inserted_id})
        raise ContentionError()

    async def save_challenge(
        self,
        user_id: str,
        *,
        expected_version: int,
        state: ChallengeState,
        mark_verified: bool = False,
    ) -> bool:
        """See :meth:`otpcore.ports.AccountStore.save_challenge`."""
        query = id_filter(user_id)
        if query is None:
            return False
        changes = challenge_fields(state)
        if mark_verified:
            changes["is_verified"] = True
        result = await self.user_collection.update_one(
            {**query, "otp_version": _version_guard(expected_version)}, {"$set": changes}
        )
        return bool(result.matched_count)

    async def load_principal(
        self, user_id: str, keys: Sequence[str]
    ) -> tuple[Account[UserT] | None, list[Revocation]]:
        """See :meth:`otpcore.ports.AccountStore.load_principal`.

        One aggregation: the user joined (``$lookup``) with its revocation entries. Keys are
        passed as a plain array because nx-27017 ignores a ``$literal`` one there; a key
        starting with ``$`` would be read as a field path, so such keys (never produced by
        otpcore) take two queries instead. An unknown user costs one more query, so that the
        revocations are returned as the memory store returns them.
        """
        query = id_filter(user_id)
        if not keys or query is None or any(key.startswith("$") for key in keys):
            account = None if query is None else await self.find_by_id(user_id)
            return account, await self.find_revocations(keys)
        pipeline = [
            {"$match": query},
            {"$limit": 1},
            {"$addFields": {_KEYS_FIELD: list(keys)}},
            {
                "$lookup": {
                    "from": self.blacklist_collection.name,
                    "localField": _KEYS_FIELD,
                    "foreignField": "jti",
                    "as": _REVOKED_FIELD,
                }
            },
        ]
        docs = await _to_list(self.user_collection.aggregate(pipeline))
        if not docs:
            return None, await self.find_revocations(keys)
        doc = docs[0]
        doc.pop(_KEYS_FIELD, None)
        revoked = [revocation_of(entry) for entry in doc.pop(_REVOKED_FIELD, [])]
        return self._account(doc), revoked

    # -- RevocationStore -------------------------------------------------------------------

    async def revoke(self, revocation: Revocation) -> bool:
        """See :meth:`otpcore.ports.RevocationStore.revoke`."""
        await self._indexed()
        try:
            await self.blacklist_collection.insert_one(revocation_doc(revocation))
        except DuplicateKeyError:
            return False
        return True

    async def revoke_many(self, revocations: Sequence[Revocation]) -> list[bool]:
        """See :meth:`otpcore.ports.RevocationStore.revoke_many`. One unordered
        ``insert_many``: a duplicate key fails its own document only."""
        first = distinct(revocations)
        if not first:
            return []
        keys = list(first)
        await self._indexed()
        inserted = set(keys)
        try:
            await self.blacklist_collection.insert_many(
                [revocation_doc(entry) for entry in first.values()], ordered=False
            )
        except BulkWriteError as error:
            errors = error.details.get("writeErrors", [])
            if error.details.get("writeConcernErrors") or any(
                entry.get("code") not in _DUPLICATE_KEY for entry in errors
            ):
                raise
            inserted -= {keys[entry["index"]] for entry in errors}
        return inserted_answers(revocations, inserted)

    async def revoke_user(self, user_id: str, *, at: datetime, expires_at: datetime) -> None:
        """See :meth:`otpcore.ports.RevocationStore.revoke_user`.

        Insert, or raise both instants with ``$max``. Some MongoDB-compatible servers ignore
        ``$max`` on dates; when the returned document shows that, the raise is redone as a
        replacement guarded on the entry's integer ``revision``.
        """
        entry = revocation_doc(
            Revocation(
                key=user_key(user_id),
                kind=RevocationKind.USER,
                revoked_at=at,
                expires_at=expires_at,
            )
        )
        at, expires_at = entry["blacklisted_at"], entry["expires_at"]
        blacklist = self.blacklist_collection
        await self._indexed()
        for _ in range(_RETRIES):
            try:
                await blacklist.insert_one({**entry, "revision": 0})
                return
            except DuplicateKeyError:
                pass
            current = await blacklist.find_one_and_update(
                {"jti": entry["jti"]},
                {
                    "$max": {"blacklisted_at": at, "expires_at": expires_at},
                    "$inc": {"revision": 1},
                },
                return_document=ReturnDocument.AFTER,
            )
            if current is None:
                continue  # purged between the two calls: insert again
            stored = revocation_of(current)
            if stored.revoked_at >= at and stored.expires_at >= expires_at:
                return
            replaced = await blacklist.replace_one(
                {"_id": current["_id"], "revision": current.get("revision")},
                {
                    **entry,
                    "blacklisted_at": max(at, stored.revoked_at),
                    "expires_at": max(expires_at, stored.expires_at),
                    "revision": int(current.get("revision") or 0) + 1,
                },
            )
            if replaced.matched_count:
                return
        raise ContentionError()

    async def find_revocations(self, keys: Sequence[str]) -> list[Revocation]:
        """See :meth:`otpcore.ports.RevocationStore.find_revocations`."""
        if not keys:
            return []
        docs = await _to_list(self.blacklist_collection.find({"jti": {"$in": list(keys)}}))
        return [revocation_of(doc) for doc in docs]

    async def revocations_since(self, cursor: datetime, *, now: datetime) -> list[Revocation]:
        """See :meth:`otpcore.ports.RevocationStore.revocations_since`.

        Both bounds are sent inclusive and applied exactly here: a no-op on MongoDB, and exact
        results on servers that compare dates to the whole second only.
        """
        cursor, now = to_db(cursor), to_db(now)
        query = {"blacklisted_at": {"$gte": cursor}, "expires_at": {"$gte": now}}
        docs = await _to_list(self.blacklist_collection.find(query))
        found = (revocation_of(doc) for doc in docs)
        return [entry for entry in found if entry.revoked_at >= cursor and entry.expires_at > now]

    async def purge_expired(self, now: datetime) -> int:
        """See :meth:`otpcore.ports.RevocationStore.purge_expired`: one ``delete_many`` for
        the revocations, one each for the sessions, pending challenges and limit counters."""
        result = await self.blacklist_collection.delete_many({"expires_at": {"$lte": to_db(now)}})
        await self._purge_sessions(now)
        await self._purge_challenges(now)
        await self._purge_limits(now)
        return int(result.deleted_count)

    # -- what the reference methods need -------------------------------------------------

    def _reference_id(self, user: UserT) -> str:
        if not user.id:
            raise ValueError("the user has no id; load or create it through the adapter first")
        return user.id

    def _show(self, user: UserT, state: ChallengeState, verified: bool) -> None:
        # As stored: instants in UTC to the millisecond, so later comparisons hold.
        user.is_verified = verified
        for name, value in challenge_fields(state).items():
            setattr(user, name, value)
