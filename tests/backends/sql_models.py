"""Declarative models the SQL suites run on, one registry (and so one schema) per variant.

``User``/``Blacklist`` have an integer key and a nullable extra column, so a user can be
created from an e-mail alone. ``UuidUser``/``UuidBlacklist`` have a UUID key and a column
only the server fills. ``StrictUser``/``StrictBlacklist`` are the reference's README model
verbatim: ``username`` is NOT NULL without a default, so creating a user needs the
``new_user_fields`` hook.
"""

from __future__ import annotations

import uuid

from sqlalchemy import Integer, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from otpcore.stores.sqlalchemy import BaseOTPUserTable, TokenBlacklist
from tests.backends import BackendSpec

__all__ = [
    "Base",
    "Blacklist",
    "StrictBase",
    "StrictBlacklist",
    "StrictUser",
    "User",
    "UuidBase",
    "UuidBlacklist",
    "UuidUser",
]

#: Every module in ``tests.backends`` is scanned for backends; this one only holds models.
BACKENDS: list[BackendSpec] = []


class Base(DeclarativeBase):
    """Registry of the integer-key models."""


class User(BaseOTPUserTable[int], Base):
    """Integer primary key; ``username`` optional."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str | None] = mapped_column(String(50), unique=True)


class Blacklist(TokenBlacklist, Base):
    """Revocations next to :class:`User`."""


class UuidBase(DeclarativeBase):
    """Registry of the UUID-key models."""


class UuidUser(BaseOTPUserTable[uuid.UUID], UuidBase):
    """UUID primary key generated in Python; ``role`` filled by the server."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    role: Mapped[str] = mapped_column(String(20), server_default="member")


class UuidBlacklist(TokenBlacklist, UuidBase):
    """Revocations next to :class:`UuidUser`."""


class StrictBase(DeclarativeBase):
    """Registry of the reference README's models."""


class StrictUser(BaseOTPUserTable[int], StrictBase):
    """The reference README's user: ``username`` is required."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(50), unique=True)


class StrictBlacklist(TokenBlacklist, StrictBase):
    """Revocations next to :class:`StrictUser`."""
