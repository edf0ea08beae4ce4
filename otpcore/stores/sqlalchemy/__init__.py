"""SQLAlchemy (asyncio) storage: the reference's models and adapter, with compare-and-set writes.

Define the tables by mixing the two bases into the application's declarative ``Base``::

    class User(BaseOTPUserTable[int], Base):
        __tablename__ = "users"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)

    class Blacklist(TokenBlacklist, Base):
        pass  # table "token_blacklist" and its id column come from the mixin

    store = SQLAlchemyAdapter(session, User, Blacklist)

The package, one concern per module: ``models`` (the mixins and their column type), ``ids``
(token subjects to primary keys), ``statements`` (every statement, built once per pair of
models), ``adapter`` (the ports over an ``AsyncSession``, one unit of work per call),
``units`` (units of work spanning calls, the SQLite writer lock) and ``sqlite`` (the
recommended SQLite engine). The reference library's adapter methods come
from :mod:`otpcore.stores._reference`, written once for every store.

Driver and connection failures surface as :class:`otpcore.domain.errors.StorageError` with
the driver's exception as ``__cause__``.

Upgrading from the reference's tables: see ``docs/stores.md`` and the scripts in
:mod:`otpcore.stores.upgrade`.
"""

from otpcore.stores.sqlalchemy.adapter import SQLAlchemyAdapter
from otpcore.stores.sqlalchemy.models import BaseOTPUserTable, TokenBlacklist, UTCDateTime
from otpcore.stores.sqlalchemy.sqlite import create_sqlite_engine

__all__ = [
    "BaseOTPUserTable",
    "SQLAlchemyAdapter",
    "TokenBlacklist",
    "UTCDateTime",
    "create_sqlite_engine",
]
