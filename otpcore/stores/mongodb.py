"""MongoDB storage: ``MongoDBAdapter`` and the Pydantic documents it reads and writes.

Works with a database from PyMongo's ``AsyncMongoClient`` or from Motor's
``AsyncIOMotorClient``: only the async API the two share is used. Every state change is one
conditional write guarded on the integer ``otp_version``; uniqueness (one user per e-mail,
one entry per revoked identifier) comes from unique indexes, which the adapter creates
itself before its first write that relies on them.

Datetimes are written as aware UTC truncated to milliseconds (MongoDB's precision) and every
datetime read goes through one helper, so naive values (MongoDB without ``tz_aware``) and
the text some MongoDB-compatible servers return for ``$set`` dates both come back aware UTC.

Requires the ``mongodb`` extra: ``pip install 'otpcore[mongodb]'``.
"""

from __future__ import annotations

import inspect
import re
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

try:
    from bson import ObjectId
    from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError, field_validator
    from pymongo import ReturnDocument
    from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "otpcore.stores.mongodb needs PyMongo and Pydantic; "
        "install them with: pip install 'otpcore[mongodb]'"
    ) from exc

from otpcore.domain.errors import ConfigurationError, ContentionError, StorageError
from otpcore.domain.records import Account, ChallengeState, Revocation, RevocationKind, user_key
from otpcore.stores._record import challenge_of

__all__ = ["BaseOTPUserDocument", "MongoDBAdapter", "TokenBlacklistDocument"]

_HEX64 = re.compile(r"[0-9a-f]{64}")
_RETRIES = 10
# Index-creation failures that mean an index of the same name or keys exists with other
# options: a setup problem the application must fix, not an outage.
_INDEX_CONFLICTS = frozenset({85, 86})
_DATETIME_FIELDS = frozenset(
    {"otp_created_at", "otp_expires_at", "last_otp_request_at", "otp_last_failure_at"}
)
# What the reference methods copy back onto the caller's user object after a write.
_STATE_FIELDS = (
    "is_verified",
    "otp_code",
    "otp_created_at",
    "otp_expires_at",
    "otp_attempts",
    "last_otp_request_at",
    "otp_failures",
    "otp_last_failure_at",
    "otp_version",
)
_KEYS_FIELD = "_otpcore_keys"
_REVOKED_FIELD = "_otpcore_revocations"


class _Document(BaseModel):
    """What every document shares: ``_id`` read as text (an ObjectId's hex, or the string)."""

    id: str | None = Field(default=None, alias="_id")

    model_config = ConfigDict(
        populate_by_name=True, from_attributes=True, arbitrary_types_allowed=True
    )

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, ObjectId) else value


class BaseOTPUserDocument(_Document):
    """A user document with everything OTP authentication needs; subclass to add fields.

    Attributes:
        id: The document's ``_id`` as text (an ObjectId's hex, or the string stored).
        email: The normalized e-mail; unique in the collection.
        is_verified: Whether the user has ever completed a code verification.
        otp_code: HMAC-SHA256 of the pending code (64 hex characters), never the code.
        otp_created_at: When the pending code was issued.
        otp_expires_at: Kept for compatibility with existing documents; not used.
        otp_attempts: Guesses counted against the pending code.
        last_otp_request_at: When the last code was issued (for the resend cooldown).
        otp_failures: Consecutive wrong guesses across codes (for the account lock).
        otp_last_failure_at: When the last wrong guess was counted.
        otp_version: Incremented by every state change; the compare-and-set guard.
    """

    email: EmailStr
    is_verified: bool = False
    otp_code: str | None = Field(default=None, repr=False)
    otp_created_at: datetime | None = None
    otp_expires_at: datetime | None = None
    otp_attempts: int = 0
    last_otp_request_at: datetime | None = None
    otp_failures: int = 0
    otp_last_failure_at: datetime | None = None
    otp_version: int = 0


class TokenBlacklistDocument(_Document):
    """One revoked identifier: a token ``jti``, a session or a user's logout-all cutoff.

    Attributes:
        id: The document's ``_id`` as text.
        jti: The revoked identifier; unique in the collection.
        token_type: ``"access"``, ``"refresh"``, ``"session"`` or ``"user"``.
        blacklisted_at: When it was revoked (for a user entry, the cutoff).
        expires_at: When the entry stops mattering; a TTL index deletes it after that.
    """

    jti: str = Field(max_length=255)
    token_type: str = Field(max_length=10)
    blacklisted_at: datetime
    expires_at: datetime


UserT = TypeVar("UserT", bound=BaseOTPUserDocument)

# Databases whose indexes this process has ensured: client -> {(db, users, blacklist, ttl)}.
_ENSURED: weakref.WeakKeyDictionary[Any, set[tuple[str, str, str, bool]]] = (
    weakref.WeakKeyDictionary()
)


def _to_db(moment: datetime) -> datetime:
    """An instant as MongoDB stores it: aware UTC, truncated to milliseconds."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _from_db(value: object) -> datetime | None:
    """The one reader of stored datetimes: naive, aware or ISO text in, aware UTC out."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise StorageError("A stored timestamp could not be read.") from exc
    if not isinstance(value, datetime):
        raise StorageError("A stored timestamp has an unexpected type.")
    return _to_db(value)


def _opt_to_db(moment: datetime | None) -> datetime | None:
    return None if moment is None else _to_db(moment)


def _id_filter(user_id: object) -> dict[str, Any] | None:
    """The ``_id`` condition for a port-level id, or ``None`` when nothing can match."""
    if not isinstance(user_id, str) or not user_id:
        return None
    # Ids that look like ObjectIds may still be stored as strings by the application. Always
    # ``$in``: nx-27017 (the test server) answers ``$lookup`` after an equality ``$match``
    # on ``_id`` wrongly, and after ``$in`` correctly; MongoDB treats both the same.
    if ObjectId.is_valid(user_id):
        return {"_id": {"$in": [ObjectId(user_id), user_id]}}
    return {"_id": {"$in": [user_id]}}


def _revocation(doc: Mapping[str, Any]) -> Revocation:
    revoked_at = _from_db(doc.get("blacklisted_at"))
    expires_at = _from_db(doc.get("expires_at"))
    if revoked_at is None or expires_at is None:
        raise StorageError("A revocation entry is missing its timestamps.")
    return Revocation(
        key=str(doc["jti"]),
        kind=RevocationKind.parse(doc.get("token_type")),
        revoked_at=revoked_at,
        expires_at=expires_at,
    )


def _revocation_doc(revocation: Revocation) -> dict[str, Any]:
    return {
        "jti": revocation.key,
        "token_type": revocation.kind,
        "blacklisted_at": _to_db(revocation.revoked_at),
        "expires_at": _to_db(revocation.expires_at),
    }


def _challenge_fields(state: ChallengeState) -> dict[str, Any]:
    return {
        "otp_code": state.code_hash,
        "otp_created_at": _opt_to_db(state.issued_at),
        "otp_attempts": state.attempts,
        "otp_failures": state.failures,
        "last_otp_request_at": _opt_to_db(state.last_request_at),
        "otp_last_failure_at": _opt_to_db(state.last_failure_at),
        "otp_version": state.version,
    }


def _version_guard(version: int) -> object:
    # Documents written before otp_version existed have no such field: they are version 0.
    return {"$in": [0, None]} if version == 0 else version


def _missing_fields(error: ValidationError) -> list[str]:
    return [
        ".".join(str(part) for part in item["loc"])
        for item in error.errors()
        if item["type"] == "missing"
    ]


@contextmanager
def _storage_errors() -> Iterator[None]:
    """Turn driver and network failures into :class:`StorageError`, keeping the cause."""
    try:
        yield
    except (PyMongoError, OSError) as exc:
        raise StorageError() from exc


async def _to_list(cursor_or_awaitable: Any) -> list[dict[str, Any]]:
    # PyMongo's aggregate() is a coroutine returning a cursor; Motor's returns the cursor.
    cursor = cursor_or_awaitable
    if inspect.isawaitable(cursor):
        cursor = await cursor
    result: list[dict[str, Any]] = await cursor.to_list(None)
    return result


class MongoDBAdapter(Generic[UserT]):
    """Users and revocations in two MongoDB collections; implements :class:`otpcore.ports.Store`.

    Also keeps the reference library's methods that applications call directly
    (``get_by_email``, ``create_user``, ``add_to_blacklist``, …).

    Args:
        database: A PyMongo ``AsyncDatabase`` or a Motor ``AsyncIOMotorDatabase``.
        user_collection_name: Collection holding ``user_model_class`` documents.
        blacklist_collection_name: Collection holding revocation entries.
        user_model_class: :class:`BaseOTPUserDocument` or a subclass of it.
        ttl_index: Whether :meth:`ensure_indexes` adds the TTL index that lets the server
            delete entries once ``expires_at`` passes on its own clock. Turn it off only
            when entries carry instants from another clock (tests with a fake clock).
    """

    def __init__(
        self,
        database: Any,
        user_collection_name: str,
        blacklist_collection_name: str,
        user_model_class: type[UserT],
        *,
        ttl_index: bool = True,
    ) -> None:
        self.database = database
        self.user_collection = database[user_collection_name]
        self.blacklist_collection = database[blacklist_collection_name]
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
        """Create the unique ``email`` and ``jti`` indexes, the TTL index on ``expires_at``
        (unless disabled) and the ``blacklisted_at`` index. Idempotent.

        Raises:
            ConfigurationError: An index with the same keys but other options exists.
            StorageError: The server could not be reached.
        """
        users, blacklist = self.user_collection, self.blacklist_collection
        with _storage_errors():
            try:
                # Default index names, so indexes made by the reference's Quick Start match.
                await users.create_index("email", unique=True)
                await blacklist.create_index("jti", unique=True)
                if self.ttl_index:
                    await blacklist.create_index("expires_at", expireAfterSeconds=0)
                await blacklist.create_index("blacklisted_at")
            except OperationFailure as exc:
                if exc.code not in _INDEX_CONFLICTS:
                    raise
                raise ConfigurationError(
                    "An existing index on the OTP collections conflicts with the one otpcore "
                    f"needs ({exc.details and exc.details.get('errmsg')}); drop it and retry."
                ) from exc
            # Some servers keep a conflicting older index silently instead of failing; the
            # unique ones are what correctness rests on, so confirm they are there.
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
        _ENSURED.setdefault(self.database.client, set()).add(self._index_key)

    async def _indexed(self) -> None:
        if self._index_key not in _ENSURED.get(self.database.client, ()):
            await self.ensure_indexes()

    # -- documents -------------------------------------------------------------------------

    def _model(self, doc: Mapping[str, Any]) -> UserT:
        data = dict(doc)
        for name, value in data.items():
            if name in _DATETIME_FIELDS or isinstance(value, datetime):
                data[name] = _from_db(value)
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

    def _new_document(self, email: str, fields: Mapping[str, object]) -> dict[str, Any]:
        values: dict[str, object] = {**fields, "email": email}
        try:
            model = self.user_model_class.model_validate(values)
        except ValidationError as exc:
            missing = _missing_fields(exc)
            name = self.user_model_class.__name__
            if missing:
                raise ConfigurationError(
                    f"{name} has required field(s) without a default that otpcore cannot fill: "
                    f"{', '.join(missing)}. Return values for them from the `new_user_fields` "
                    "hook (called with the e-mail of each new user), pass them to "
                    "create_user(email, **fields), or give the field(s) a default."
                ) from None
            bad = sorted({".".join(str(p) for p in item["loc"]) for item in exc.errors()})
            raise ConfigurationError(
                f"{name} rejected the values given for {', '.join(bad)}."
            ) from None
        doc = model.model_dump(by_alias=True)
        doc["email"] = email
        doc["is_verified"] = False
        doc.update(_challenge_fields(ChallengeState()))
        doc["otp_expires_at"] = None
        user_id = doc.pop("_id", None)
        if user_id:
            doc["_id"] = ObjectId(user_id) if ObjectId.is_valid(user_id) else user_id
        return doc

    # -- AccountStore ----------------------------------------------------------------------

    async def find_by_email(self, email: str) -> Account[UserT] | None:
        """See :meth:`otpcore.ports.AccountStore.find_by_email`."""
        with _storage_errors():
            doc = await self.user_collection.find_one({"email": email})
        return None if doc is None else self._account(doc)

    async def find_by_id(self, user_id: str) -> Account[UserT] | None:
        """See :meth:`otpcore.ports.AccountStore.find_by_id`."""
        query = _id_filter(user_id)
        if query is None:
            return None
        with _storage_errors():
            doc = await self.user_collection.find_one(query)
        return None if doc is None else self._account(doc)

    async def create(self, email: str, fields: Mapping[str, object]) -> Account[UserT]:
        """See :meth:`otpcore.ports.AccountStore.create`.

        Raises:
            ConfigurationError: The user model needs a field ``fields`` does not give.
        """
        doc = self._new_document(email, fields)
        await self._indexed()
        for _ in range(_RETRIES):
            with _storage_errors():
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
        query = _id_filter(user_id)
        if query is None:
            return False
        changes = _challenge_fields(state)
        if mark_verified:
            changes["is_verified"] = True
        with _storage_errors():
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
        query = _id_filter(user_id)
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
        with _storage_errors():
            docs = await _to_list(self.user_collection.aggregate(pipeline))
        if not docs:
            return None, await self.find_revocations(keys)
        doc = docs[0]
        doc.pop(_KEYS_FIELD, None)
        revoked = [_revocation(entry) for entry in doc.pop(_REVOKED_FIELD, [])]
        return self._account(doc), revoked

    # -- RevocationStore -------------------------------------------------------------------

    async def revoke(self, revocation: Revocation) -> bool:
        """See :meth:`otpcore.ports.RevocationStore.revoke`."""
        await self._indexed()
        with _storage_errors():
            try:
                await self.blacklist_collection.insert_one(_revocation_doc(revocation))
            except DuplicateKeyError:
                return False
        return True

    async def revoke_user(self, user_id: str, *, at: datetime, expires_at: datetime) -> None:
        """See :meth:`otpcore.ports.RevocationStore.revoke_user`.

        Insert, or raise both instants with ``$max``. Some MongoDB-compatible servers ignore
        ``$max`` on dates; when the returned document shows that, the raise is redone as a
        replacement guarded on the entry's integer ``revision``.
        """
        entry = _revocation_doc(
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
            with _storage_errors():
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
                stored = _revocation(current)
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
        with _storage_errors():
            docs = await _to_list(self.blacklist_collection.find({"jti": {"$in": list(keys)}}))
        return [_revocation(doc) for doc in docs]

    async def revocations_since(self, cursor: datetime, *, now: datetime) -> list[Revocation]:
        """See :meth:`otpcore.ports.RevocationStore.revocations_since`.

        Both bounds are sent inclusive and applied exactly here: a no-op on MongoDB, and exact
        results on servers that compare dates to the whole second only.
        """
        cursor, now = _to_db(cursor), _to_db(now)
        query = {"blacklisted_at": {"$gte": cursor}, "expires_at": {"$gte": now}}
        with _storage_errors():
            docs = await _to_list(self.blacklist_collection.find(query))
        found = (_revocation(doc) for doc in docs)
        return [entry for entry in found if entry.revoked_at >= cursor and entry.expires_at > now]

    async def purge_expired(self, now: datetime) -> int:
        """See :meth:`otpcore.ports.RevocationStore.purge_expired`."""
        with _storage_errors():
            result = await self.blacklist_collection.delete_many(
                {"expires_at": {"$lte": _to_db(now)}}
            )
        return int(result.deleted_count)

    # -- the reference library's methods -------------------------------------------------

    async def get_by_email(self, email: str) -> UserT | None:
        """The user with this e-mail, or ``None``."""
        account = await self.find_by_email(email)
        return None if account is None else account.user

    async def get_by_id(self, user_id: int | str) -> UserT | None:
        """The user with this id (ObjectId hex or stored string), or ``None``."""
        account = await self.find_by_id(str(user_id))
        return None if account is None else account.user

    async def create_user(self, email: str, **kwargs: object) -> UserT:
        """Create a user with this e-mail and the model's extra fields; an existing user with
        the same e-mail is returned instead of a duplicate.
        """
        return (await self.create(email, kwargs)).user

    async def update_otp(self, user: UserT, code_hash: str) -> None:
        """Store a new pending code's hash, with a fresh attempt budget, on ``user`` too.

        Raises:
            ValueError: ``code_hash`` is not 64 lowercase hex characters (a plaintext code
                must never be stored).
            ContentionError: The user changed since ``user`` was read.
        """
        if not isinstance(code_hash, str) or not _HEX64.fullmatch(code_hash):
            raise ValueError("update_otp stores a code hash (64 lowercase hex), not a code")
        now = _to_db(datetime.now(UTC))
        await self._guarded_update(
            user,
            {
                "otp_code": code_hash,
                "otp_created_at": now,
                "otp_attempts": 0,
                "last_otp_request_at": now,
            },
        )

    async def increment_otp_attempts(self, user: UserT) -> None:
        """Count one wrong guess against ``user``'s pending code, on ``user`` too.

        An unconditional ``$inc``: a counted guess must never be dropped because another
        request changed the user first, which a version guard would do.
        """
        query = self._query_for(user)
        with _storage_errors():
            doc = await self.user_collection.find_one_and_update(
                query,
                {
                    "$inc": {"otp_attempts": 1, "otp_failures": 1, "otp_version": 1},
                    "$set": {"otp_last_failure_at": _to_db(datetime.now(UTC))},
                },
                return_document=ReturnDocument.AFTER,
            )
        if doc is not None:
            self._copy_into(user, doc)

    async def verify_user(self, user: UserT) -> None:
        """Mark ``user`` verified and consume its pending code, on ``user`` too.

        Raises:
            ContentionError: The user changed since ``user`` was read (for instance, a
                concurrent request consumed the code first).
        """
        await self._guarded_update(
            user,
            {
                "is_verified": True,
                "otp_code": None,
                "otp_created_at": None,
                "otp_expires_at": None,
                "otp_attempts": 0,
                "otp_failures": 0,
                "otp_last_failure_at": None,
            },
        )

    async def clear_otp(self, user: UserT) -> None:
        """Drop ``user``'s pending code without verifying, on ``user`` too.

        Raises:
            ContentionError: The user changed since ``user`` was read.
        """
        await self._guarded_update(
            user,
            {"otp_code": None, "otp_created_at": None, "otp_expires_at": None, "otp_attempts": 0},
        )

    async def add_to_blacklist(self, jti: str, token_type: str, expires_at: datetime) -> None:
        """Revoke ``jti`` until ``expires_at``; revoking it again changes nothing."""
        now = datetime.now(UTC)
        await self.revoke(
            Revocation(
                key=jti,
                kind=RevocationKind.parse(token_type),
                revoked_at=now,
                expires_at=expires_at,
            )
        )

    async def is_blacklisted(self, jti: str) -> bool:
        """Whether ``jti`` is revoked."""
        return bool(await self.find_revocations([jti]))

    async def cleanup_blacklist(self) -> int:
        """Delete entries whose ``expires_at`` has passed; the number removed."""
        return await self.purge_expired(datetime.now(UTC))

    def _query_for(self, user: UserT) -> dict[str, Any]:
        query = _id_filter(user.id)
        if query is None:
            raise ValueError("the user has no id; load or create it through the adapter first")
        return query

    async def _guarded_update(self, user: UserT, changes: dict[str, Any]) -> None:
        query = {**self._query_for(user), "otp_version": _version_guard(user.otp_version)}
        with _storage_errors():
            doc = await self.user_collection.find_one_and_update(
                query,
                {"$set": {**changes, "otp_version": user.otp_version + 1}},
                return_document=ReturnDocument.AFTER,
            )
        if doc is None:
            raise ContentionError()
        self._copy_into(user, doc)

    def _copy_into(self, user: UserT, doc: Mapping[str, Any]) -> None:
        fresh = self._model(doc)
        for name in _STATE_FIELDS:
            setattr(user, name, getattr(fresh, name))
