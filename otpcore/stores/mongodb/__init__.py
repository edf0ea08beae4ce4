"""MongoDB storage: ``MongoDBAdapter`` and the Pydantic documents it reads and writes.

Works with a database from PyMongo's ``AsyncMongoClient`` or from Motor's
``AsyncIOMotorClient``. The package, one concern per module: ``documents`` (the stored
shapes and their conversions), ``indexes`` (the unique and TTL indexes, ensured once per
process) and ``adapter`` (the ports). The reference library's adapter methods come from
:mod:`otpcore.stores._reference`, written once for every store.

Requires the ``mongodb`` extra: ``pip install 'otpcore[mongodb]'``.
"""

try:
    import bson  # noqa: F401
    import pydantic  # noqa: F401
    import pymongo  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "otpcore.stores.mongodb needs PyMongo and Pydantic; "
        "install them with: pip install 'otpcore[mongodb]'"
    ) from exc

from otpcore.stores.mongodb.adapter import MongoDBAdapter
from otpcore.stores.mongodb.documents import BaseOTPUserDocument, TokenBlacklistDocument

__all__ = ["BaseOTPUserDocument", "MongoDBAdapter", "TokenBlacklistDocument"]
