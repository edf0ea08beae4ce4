"""The current user read as its table's row, and the session's instance filled from it.

For user models that are their table's row and nothing more
(:attr:`~otpcore.stores.sqlalchemy.statements.Plan.principal_rows` is set), the adapter's
``load_principal`` reads the row through Core instead of an ORM query: the same persistent,
loaded instance, without the ORM's per-query work on every protected request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from otpcore.domain.records import Revocation
from otpcore.stores.sqlalchemy._aiosqlite import reading_inline
from otpcore.stores.sqlalchemy.statements import Plan, revocation_of
from otpcore.stores.sqlalchemy.units import has_pending

__all__ = ["persistent", "principal_row", "row_is_enough"]


def row_is_enough(plan: Plan, session: Session) -> bool:
    """Whether reading the user's row gives what the ORM query would: no ``load`` or
    ``refresh`` listeners on the model (a reconstructor is one), no session hooks that see
    or rewrite ORM queries (``do_orm_execute``: soft-delete or tenant criteria, say) or
    loaded instances, and nothing pending that the query's autoflush would have written."""
    model = plan.mapper.class_manager.dispatch
    hooks = session.dispatch
    return not (
        model.load
        or model.refresh
        or hooks.do_orm_execute
        or hooks.loaded_as_persistent
        or hooks.detached_to_persistent
        or has_pending(session)
    )


def principal_row(
    session: Session, plan: Plan, statement: Select[Any], params: Mapping[str, object]
) -> tuple[Sequence[Any] | None, dict[str, Revocation]]:
    """The user's column values (None if there is no such user) and the revocations found,
    by key, from one run of ``statement`` (:attr:`Plan.principal_rows` or its ``_many``)."""
    width = len(plan.row_attributes)
    values: Sequence[Any] | None = None
    found = {}
    connection = session.connection(bind_arguments={"mapper": plan.mapper})
    with reading_inline(connection):
        rows = connection.execute(statement, params).all()
    for row in rows:
        if values is None and row[plan.pk_index] is not None:
            values = row[:width]
        if row[width] is not None:
            found[row[width]] = revocation_of(row[width:])
    return values, found


def persistent(session: Session, plan: Plan, values: Sequence[Any]) -> Any:
    """The session's instance for this row, its attributes set from it (as
    ``populate_existing`` would), made persistent in ``session`` if it was not loaded."""
    identity = plan.mapper.identity_key_from_primary_key((values[plan.pk_index],))
    user = session.identity_map.get(identity)
    fresh = user is None
    if user is None:
        user = plan.mapper.class_manager.new_instance()
    for key, value in zip(plan.row_attributes, values, strict=True):
        set_committed_value(user, key, value)
    if fresh:
        make_transient_to_detached(user)
        session.add(user)
    return user
