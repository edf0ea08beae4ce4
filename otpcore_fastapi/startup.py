"""The auth router's startup check: an app whose store cannot auto-create users fails to start.

With ``auto_create_user`` on and no ``new_user_fields`` hook, a user model with a required
column or field otpcore cannot fill (the reference README's ``username``) would only fail at
the first login of a new address. :func:`startup_check` is the lifespan
:func:`~otpcore_fastapi.router.get_auth_router` gives its router: at startup it opens
``get_otp_db`` once (with the app's ``dependency_overrides``), asks the adapter, and raises
:class:`~otpcore.domain.errors.ConfigurationError` naming the hook, so the server refuses to
start.

FastAPI runs an included router's lifespan inside the app's own (after it: tables the app
creates at startup exist by then) since 0.112.2, the floor of the ``fastapi`` extra. A
router mounted some other way, or an app served without lifespan events (e.g. tests through
``httpx.ASGITransport``), skips the check; the first right code of a new address then fails
with the same message before the code is spent.
"""

# No `from __future__ import annotations`: StoreSource reads get_otp_db's signature at runtime.

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, runtime_checkable

from starlette.requests import Request

from otpcore.domain.errors import ConfigurationError
from otpcore_fastapi.config import OTPAuthConfig
from otpcore_fastapi.store_source import StoreSource, bare_scope

__all__ = ["AutoCreateCheck", "check_auto_create", "startup_check"]

logger = logging.getLogger("otpcore_fastapi")


@runtime_checkable
class AutoCreateCheck(Protocol):
    """A store that can tell, without I/O, whether it can create a user from an e-mail alone
    (``SQLAlchemyAdapter``, ``MongoDBAdapter``); stores without the method are not checked."""

    def check_auto_create(self) -> None:
        """Raise ``ConfigurationError`` naming ``new_user_fields`` when it cannot."""
        ...


async def check_auto_create(
    get_otp_db: StoreSource | Callable[..., Any], config: OTPAuthConfig, app: Any = None
) -> None:
    """Refuse a store that auto-creation without a ``new_user_fields`` hook cannot fill.

    Does nothing unless ``config.auto_create_user`` is on and the hook is not set. Otherwise
    opens ``get_otp_db`` once (with ``app``'s ``dependency_overrides``) and asks the adapter.
    When ``get_otp_db`` cannot be opened outside a request (it needs a header or cookie, or
    its database is unreachable), the check is skipped with a warning on the
    ``otpcore_fastapi`` logger: the first right code of a new address still refuses before
    the code is spent.

    Raises:
        ConfigurationError: The user model has a required column or field without a default
            that otpcore cannot fill; the message names the ``new_user_fields`` hook.
    """
    if not config.auto_create_user or config._hook("new_user_fields") is not None:
        return
    source = get_otp_db if isinstance(get_otp_db, StoreSource) else StoreSource(get_otp_db)
    request = Request({**bare_scope(), "app": app}) if app is not None else None
    try:
        async with source.open(request) as store:
            if isinstance(store, AutoCreateCheck):
                store.check_auto_create()
    except ConfigurationError:
        raise
    except Exception as exc:  # a header or cookie missing, an unreachable database
        # Only the type: a driver's message may carry a connection URL.
        logger.warning(
            "startup check of auto_create_user skipped: get_otp_db could not be opened "
            "outside a request (%s)",
            type(exc).__name__,
        )


def startup_check(
    get_otp_db: Callable[..., Any], config: OTPAuthConfig
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """The lifespan that runs :func:`check_auto_create` once at startup.

    Raises:
        ConfigurationError: ``get_otp_db`` cannot be solved outside its own routes.
    """
    source = StoreSource(get_otp_db)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await check_auto_create(source, config, app)
        yield

    return lifespan
