"""Upgrading from ``fastapi-otp-authentication``: schema changes and e-mail normalization.

The reference stored addresses as typed (``Alice.Smith@Example.com``); otpcore finds
accounts by :func:`otpcore.domain.emails.normalize_email`. The upgrade rewrites every
address to that form, so no account is lost or duplicated on first login.

- SQLite and PostgreSQL: run :func:`sql_script` ``("sqlite")`` / ``("postgresql")`` once
  (also ``python -m otpcore.stores.upgrade sqlite``). SQL can lowercase ASCII only:
  addresses with other characters or IDNA labels are reported for review.
- MongoDB: :func:`otpcore.stores.upgrade.mongodb.upgrade` (also
  ``python -m otpcore.stores.upgrade.mongodb URI DATABASE``) normalizes every address.

Databases already on otpcore need only the sessions table (issue 10):
``sql_script(dialect, sessions_only=True)`` (``python -m otpcore.stores.upgrade sqlite
--sessions``), and the pending-challenge and limit-counter tables (issue 8):
``sql_script(dialect, abuse_only=True)`` (``--abuse``); both idempotent, and the full
upgrade ends with the same statements. MongoDB needs nothing: the adapter creates the new
collections' indexes itself (``ensure_indexes``).

Collisions (rows that normalize to one address) follow one rule, :func:`owner_order`: the
verified row keeps the address, then the one that requested a code last, then the lowest
id. The others keep everything but their e-mail, which moves aside to
:func:`duplicate_marker`, and are reported. Nothing is deleted.
"""

from __future__ import annotations

from datetime import datetime
from importlib import resources
from typing import Literal

__all__ = ["duplicate_marker", "owner_order", "sql_script"]


def sql_script(
    dialect: Literal["sqlite", "postgresql"],
    *,
    sessions_only: bool = False,
    abuse_only: bool = False,
) -> str:
    """The upgrade script for ``dialect``, as text.

    Args:
        dialect: ``"sqlite"`` or ``"postgresql"``.
        sessions_only: Only create the sessions table and its indexes (for databases
            already on otpcore); otherwise the whole upgrade from the reference, which
            ends with the same statements.
        abuse_only: Only create the pending-challenge and limit-counter tables and their
            indexes (issue 8; for databases already on otpcore).

    Raises:
        ValueError: ``dialect`` is neither ``"sqlite"`` nor ``"postgresql"``.
    """
    if dialect not in ("sqlite", "postgresql"):
        raise ValueError(f"no upgrade script for {dialect!r}; use 'sqlite' or 'postgresql'")
    files = resources.files(__name__)
    sessions = files.joinpath(f"{dialect}-sessions.sql").read_text(encoding="utf-8")
    abuse = files.joinpath(f"{dialect}-abuse.sql").read_text(encoding="utf-8")
    if sessions_only or abuse_only:
        return "\n".join(
            part for part, only in ((sessions, sessions_only), (abuse, abuse_only)) if only
        )
    reference = files.joinpath(f"{dialect}.sql").read_text(encoding="utf-8")
    return "\n".join((reference, sessions, abuse))


def duplicate_marker(user_id: object) -> str:
    """Where a duplicate's e-mail moves: unique, never deliverable (RFC 2606 ``.invalid``),
    never the normalized form of a real address."""
    return f"otpcore-duplicate-{user_id}@invalid"


def owner_order(
    user_id: object, is_verified: bool, last_request_at: datetime | None
) -> tuple[bool, bool, float, str]:
    """Sort key of the rows sharing one normalized address: the first keeps it."""
    last = last_request_at.timestamp() if last_request_at is not None else 0.0
    return (not is_verified, last_request_at is None, -last, str(user_id))
