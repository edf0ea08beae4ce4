"""Token subjects (text) to primary keys: only the canonical spelling of a key matches.

``"007"``, ``" 7"`` or an upper-case UUID must not alias user 7 or the stored UUID, and
text of the wrong shape is no key at all (``None``), never a database error.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import BigInteger, SmallInteger, types

__all__ = ["parse_id"]


def parse_id(
    text: str, python_type: type, column_type: types.TypeEngine[Any], dialect: str | None
) -> object | None:
    """The primary key ``text`` spells canonically, or ``None``.

    Args:
        text: The id as tokens carry it.
        python_type: The key column's Python type (``int``, ``uuid.UUID``, ``str``, …).
        column_type: The key column's SQL type (its integer width bounds the value).
        dialect: The database's dialect name (SQLite integers are always 64-bit).
    """
    if python_type is str:
        return text
    if issubclass(python_type, int) and python_type is not bool:
        return _parse_int(text, _int_bits(column_type, dialect))
    if issubclass(python_type, uuid.UUID):
        return _parse_uuid(text)
    construct: Callable[[str], object] = python_type
    try:
        value = construct(text)
    except (TypeError, ValueError):
        return None
    return value if str(value) == text else None


def _parse_int(text: str, bits: int) -> int | None:
    if not 0 < len(text) <= 20:
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    # Only the canonical spelling: "007" or " 7" must not alias user 7.
    if str(value) != text or not -(2**bits) <= value < 2**bits:
        return None
    return value


def _parse_uuid(text: str) -> uuid.UUID | None:
    try:
        value = uuid.UUID(text)
    except ValueError:
        return None
    return value if str(value) == text else None


def _int_bits(column_type: types.TypeEngine[Any], dialect: str | None) -> int:
    if isinstance(column_type, BigInteger) or dialect == "sqlite":
        return 63
    if isinstance(column_type, SmallInteger):
        return 15
    return 31
