"""FastAPI binding for otpcore: a drop-in for ``fastapi-otp-authentication``.

The store classes are importable from here too, loaded on first use so that only the extra
you use needs to be installed: ``SQLAlchemyAdapter``, ``BaseOTPUserTable``,
``TokenBlacklist`` (``otpcore[sqlalchemy]``) and ``MongoDBAdapter``, ``BaseOTPUserDocument``,
``TokenBlacklistDocument`` (``otpcore[mongodb]``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from otpcore_fastapi.config import OTPAuthConfig
from otpcore_fastapi.dependencies import (
    bearer_scheme,
    get_current_user_dependency,
    get_custom_claims_dependency,
    get_principal_dependency,
    get_verified_user_dependency,
)
from otpcore_fastapi.docs_ui import offline_docs
from otpcore_fastapi.http_errors import (
    ErrorCode,
    OTPAuthHTTPException,
    OTPAuthRoute,
    install_error_handlers,
)
from otpcore_fastapi.protocols import (
    DatabaseAdapter,
    OTPUserProtocol,
    PydanticOTPUserProtocol,
    SQLAlchemyUserModelProtocol,
)
from otpcore_fastapi.router import get_auth_router
from otpcore_fastapi.schemas import (
    ErrorResponse,
    LogoutRequest,
    MessageResponse,
    OTPRequest,
    OTPRequested,
    OTPVerify,
    RefreshRequest,
    TokenResponse,
)

__all__ = [
    "DatabaseAdapter",
    "ErrorCode",
    "ErrorResponse",
    "LogoutRequest",
    "MessageResponse",
    "OTPAuthConfig",
    "OTPAuthHTTPException",
    "OTPAuthRoute",
    "OTPRequest",
    "OTPRequested",
    "OTPUserProtocol",
    "OTPVerify",
    "PydanticOTPUserProtocol",
    "RefreshRequest",
    "SQLAlchemyUserModelProtocol",
    "TokenResponse",
    "bearer_scheme",
    "get_auth_router",
    "get_current_user_dependency",
    "get_custom_claims_dependency",
    "get_principal_dependency",
    "get_verified_user_dependency",
    "install_error_handlers",
    "offline_docs",
]

__version__ = "0.1.0"

# Not in __all__: a star import would load every store and fail without its extra.
if TYPE_CHECKING:  # the lazily loaded names, for type checkers
    from otpcore.stores.mongodb import BaseOTPUserDocument as BaseOTPUserDocument
    from otpcore.stores.mongodb import MongoDBAdapter as MongoDBAdapter
    from otpcore.stores.mongodb import TokenBlacklistDocument as TokenBlacklistDocument
    from otpcore.stores.sqlalchemy import BaseOTPUserTable as BaseOTPUserTable
    from otpcore.stores.sqlalchemy import SQLAlchemyAdapter as SQLAlchemyAdapter
    from otpcore.stores.sqlalchemy import TokenBlacklist as TokenBlacklist

# name -> (module, extra that installs its driver)
_LAZY: Final = {
    "SQLAlchemyAdapter": ("otpcore.stores.sqlalchemy", "sqlalchemy"),
    "BaseOTPUserTable": ("otpcore.stores.sqlalchemy", "sqlalchemy"),
    "TokenBlacklist": ("otpcore.stores.sqlalchemy", "sqlalchemy"),
    "MongoDBAdapter": ("otpcore.stores.mongodb", "mongodb"),
    "BaseOTPUserDocument": ("otpcore.stores.mongodb", "mongodb"),
    "TokenBlacklistDocument": ("otpcore.stores.mongodb", "mongodb"),
}


def __getattr__(name: str) -> Any:
    """Load a store class on first use, naming the extra to install if its driver is missing."""
    try:
        module_name, extra = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"otpcore_fastapi.{name} needs the {extra} extra: pip install 'otpcore[{extra}]' "
            f"({exc})"
        ) from exc
    value = getattr(module, name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
