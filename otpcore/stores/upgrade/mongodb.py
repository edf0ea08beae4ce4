"""Upgrade a MongoDB user collection written by ``fastapi-otp-authentication``.

``await upgrade(database)`` (or ``python -m otpcore.stores.upgrade.mongodb URI DATABASE``)
rewrites every e-mail to :func:`otpcore.domain.emails.normalize_email`'s form, IDNA domains
included, resolves collisions by :func:`otpcore.stores.upgrade.owner_order` (the others'
e-mails move aside to :func:`otpcore.stores.upgrade.duplicate_marker`; nothing is deleted),
and drops pending plain-text codes. Addresses that are not valid are left alone and
reported for review. Run it before the application starts with otpcore; it is idempotent.
"""

from __future__ import annotations

import asyncio
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from otpcore.domain.emails import InvalidEmail, normalize_email
from otpcore.stores.mongodb.documents import from_db
from otpcore.stores.upgrade import duplicate_marker, owner_order

__all__ = ["Duplicate", "UpgradeReport", "upgrade"]


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A user whose e-mail moved aside because another row owns its normalized form."""

    user_id: str
    email: str
    kept_user_id: str


@dataclass(slots=True)
class UpgradeReport:
    """What :func:`upgrade` changed and what needs a person.

    Attributes:
        normalized: Users whose e-mail was rewritten to its normalized form.
        duplicates: Users whose e-mail moved aside (merge or contact them by hand).
        review: ``(user_id, email)`` of addresses that are not valid; left as they are.
    """

    normalized: int = 0
    duplicates: list[Duplicate] = field(default_factory=list)
    review: list[tuple[str, str]] = field(default_factory=list)


async def upgrade(database: Any, users: str = "users") -> UpgradeReport:
    """Normalize every e-mail in ``database[users]`` and drop pending plain-text codes.

    Args:
        database: A PyMongo ``AsyncDatabase`` or a Motor database.
        users: The user collection's name.
    """
    collection = database[users]
    report = UpgradeReport()
    owners: dict[str, list[dict[str, Any]]] = defaultdict(list)
    projection = {"email": 1, "is_verified": 1, "last_otp_request_at": 1}
    async for doc in collection.find({}, projection):
        email = doc.get("email")
        if not isinstance(email, str) or email.startswith("otpcore-duplicate-"):
            continue
        try:
            owners[normalize_email(email)].append(doc)
        except InvalidEmail:
            report.review.append((str(doc["_id"]), email))
    renames: list[tuple[Any, str]] = []
    for normal, docs in owners.items():
        docs.sort(
            key=lambda d: owner_order(
                d["_id"], bool(d.get("is_verified")), from_db(d.get("last_otp_request_at"))
            )
        )
        kept, *others = docs
        for other in others:
            report.duplicates.append(
                Duplicate(
                    user_id=str(other["_id"]), email=other["email"], kept_user_id=str(kept["_id"])
                )
            )
            # Moved aside first, so that no rename meets the unique e-mail index halfway.
            await collection.update_one(
                {"_id": other["_id"]}, {"$set": {"email": duplicate_marker(other["_id"])}}
            )
        if kept["email"] != normal:
            renames.append((kept["_id"], normal))
    for user_id, normal in renames:
        await collection.update_one({"_id": user_id}, {"$set": {"email": normal}})
    report.normalized = len(renames)
    # Reference codes are plain text; otpcore compares HMACs.
    await collection.update_many(
        {"otp_code": {"$ne": None}},
        {"$set": {"otp_code": None, "otp_created_at": None, "otp_attempts": 0}},
    )
    return report


async def _main(uri: str, name: str, users: str) -> None:  # pragma: no cover - command line
    from pymongo import AsyncMongoClient

    client: Any = AsyncMongoClient(uri)
    try:
        report = await upgrade(client[name], users)
    finally:
        await client.close()
    print(f"normalized: {report.normalized}")
    for duplicate in report.duplicates:
        print(
            f"duplicate: user {duplicate.user_id} ({duplicate.email}) moved aside; "
            f"user {duplicate.kept_user_id} keeps the address"
        )
    for user_id, email in report.review:
        print(f"review: user {user_id} has an invalid address {email!r}; left as it is")


if __name__ == "__main__":  # pragma: no cover - command line
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: python -m otpcore.stores.upgrade.mongodb URI DATABASE [USERS]")
    asyncio.run(_main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) == 4 else "users"))
