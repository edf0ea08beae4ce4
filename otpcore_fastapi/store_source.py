"""Open the application's ``get_otp_db`` for a revocation-mirror refresh, with FastAPI's DI.

Claims-only dependencies receive only the config, yet the revocation mirror must now and then
read the store. The router records ``get_otp_db`` on the config; :class:`StoreSource` solves
it with FastAPI's own dependency machinery (``get_dependant`` and ``solve_dependencies``)
against the request being served, so sub-dependencies, ``Request`` parameters, the app's
``dependency_overrides`` and generator clean-up behave exactly as on a route. It runs only
when the mirror is stale: a fresh mirror costs no store session at all.
"""

# No `from __future__ import annotations`: FastAPI reads the root dependency's signature at
# runtime; it names the application's get_otp_db, a closure variable.

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from contextvars import ContextVar
from typing import Any, Final

from fastapi import Depends
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_dependant, solve_dependencies
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request

from otpcore.domain.errors import ConfigurationError

__all__ = ["StoreSource", "bare_scope", "current_request"]

#: The request a claims-only check is serving, so a mirror refresh it triggers solves
#: ``get_otp_db`` with that app's ``dependency_overrides`` (set and reset per check).
current_request: Final[ContextVar[Request | None]] = ContextVar(
    "otpcore_fastapi_request", default=None
)

# FastAPI 0.115 added embed_body_fields; every release since 0.110 takes the rest.
_SOLVE_OPTIONS: Final[dict[str, Any]] = (
    {"embed_body_fields": False}
    if "embed_body_fields" in inspect.signature(solve_dependencies).parameters
    else {}
)
# For a refresh outside any request (e.g. a background task): no app, so no overrides.
_BARE_SCOPE: Final[dict[str, Any]] = {
    "type": "http",
    "method": "GET",
    "scheme": "http",
    "path": "/",
    "raw_path": b"/",
    "root_path": "",
    "query_string": b"",
    "headers": [],
    "server": None,
    "client": None,
}


def bare_scope() -> dict[str, Any]:
    """A copy of the HTTP scope a store is opened with outside any request."""
    return dict(_BARE_SCOPE)


def _label(call: Callable[..., Any] | None) -> str:
    return getattr(call, "__qualname__", None) or repr(call)


def _check(dependant: Dependant, where: str) -> None:
    # Path, query and body values belong to the route being served, not to get_otp_db: a
    # claims route would not carry them. Headers and cookies come from the request itself.
    if dependant.body_params:
        raise ConfigurationError(
            f"{where} reads the request body ({dependant.body_params[0].name!r}); "
            "get_otp_db and its dependencies must not"
        )
    for field in (*dependant.path_params, *dependant.query_params):
        if field.field_info.is_required():
            raise ConfigurationError(
                f"{where}: parameter {field.name!r} has no default and is not Depends(...). "
                "Claims-only dependencies open get_otp_db for the revocation mirror on any "
                "route, so each of its parameters (and its dependencies' parameters) must be "
                "Depends(...), a Request, a header or cookie, or have a default."
            )
    for sub in dependant.dependencies:
        _check(sub, _label(sub.call))


class StoreSource:
    """Opens what ``get_otp_db`` yields for the current request, closing it when done.

    Construction reads the whole dependency tree, so a factory that cannot be solved on an
    arbitrary route is reported when the router or dependency is built, not on a request.

    Args:
        dependency: The application's ``get_otp_db``.

    Raises:
        ConfigurationError: ``dependency`` is not callable, or a parameter somewhere in its
            tree is a required path, query or body value.
    """

    __slots__ = ("_dependant", "dependency")

    def __init__(self, dependency: Callable[..., Any]) -> None:
        if not callable(dependency):
            raise ConfigurationError(f"get_otp_db must be callable, got {dependency!r}")

        def root(store: Any = Depends(dependency)) -> Any:  # noqa: B008 - FastAPI's DI marker
            return store

        try:
            self._dependant = get_dependant(path="", call=root)
        except (TypeError, ValueError, AssertionError) as exc:
            raise ConfigurationError(
                f"cannot read the parameters of {dependency!r}: {exc}"
            ) from exc
        _check(self._dependant.dependencies[0], _label(dependency))
        self.dependency = dependency

    @asynccontextmanager
    async def open(self, request: Request | None = None) -> AsyncIterator[Any]:
        """Solve ``get_otp_db`` for ``request`` (its app's overrides apply); yield the store.

        Generator dependencies are closed when the block ends, not with the request.

        Raises:
            RequestValidationError: A header or cookie the tree requires is missing.
        """
        source = request.scope if request is not None else _BARE_SCOPE
        async with AsyncExitStack() as stack:
            # Releases since 0.121 close dependencies through these scope entries (and ignore
            # async_exit_stack); pointing both at our stack closes the store with this block.
            scope = {**source, "fastapi_inner_astack": stack, "fastapi_function_astack": stack}
            own = Request(scope, request.receive) if request is not None else Request(scope)
            solved: Any = await solve_dependencies(
                request=own,
                dependant=self._dependant,
                dependency_overrides_provider=scope.get("app"),
                async_exit_stack=stack,
                **_SOLVE_OPTIONS,
            )
            # A tuple (values, errors, …) before FastAPI 0.115, a SolvedDependency since.
            values, errors = (
                (solved[0], solved[1])
                if isinstance(solved, tuple)
                else (solved.values, solved.errors)
            )
            if errors:
                raise RequestValidationError(errors)
            yield values["store"]
