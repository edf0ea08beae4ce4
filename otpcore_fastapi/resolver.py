"""Call an application's ``get_otp_db`` dependency outside FastAPI's dependency injection.

Claims-only dependencies receive only the config, yet the revocation mirror must now and then
read the store. The router records ``get_otp_db`` on the config; :class:`StoreResolver` calls
it the way FastAPI would for the simple shapes a store factory has: parameters that are
``Depends(...)`` (as defaults or in ``Annotated``) are resolved recursively, a ``Request``
parameter receives the current request, and generator dependencies are closed afterwards.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any, Final, get_args, get_origin

from fastapi import params
from starlette.requests import HTTPConnection

from otpcore.domain.errors import ConfigurationError

__all__ = ["StoreResolver", "current_request"]

#: The request a claims-only check is serving, so a mirror refresh it triggers resolves
#: ``get_otp_db`` with that app's ``dependency_overrides`` (set and reset per check).
current_request: Final[ContextVar[HTTPConnection | None]] = ContextVar(
    "otpcore_fastapi_request", default=None
)


@dataclass(frozen=True, slots=True)
class _Sub:
    name: str
    dependency: Callable[..., Any]
    use_cache: bool


@dataclass(frozen=True, slots=True)
class _Connection:
    name: str


_Param = _Sub | _Connection


def _depends_in(annotation: Any) -> params.Depends | None:
    if get_origin(annotation) is Annotated:
        for extra in get_args(annotation)[1:]:
            if isinstance(extra, params.Depends):
                return extra
    return None


def _is_connection(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return isinstance(annotation, type) and issubclass(annotation, HTTPConnection)


def _globals_of(fn: Callable[..., Any]) -> dict[str, Any]:
    target: Any = fn
    if inspect.isclass(fn):
        target = fn.__init__
    elif not inspect.isroutine(fn):
        target = type(fn).__call__
    namespace: dict[str, Any] = getattr(inspect.unwrap(target), "__globals__", {})
    return namespace


def _evaluated(annotation: Any, namespace: dict[str, Any]) -> Any:
    # String annotations (``from __future__ import annotations``) are evaluated one by one,
    # as FastAPI does, so one unresolvable name does not hide the others' Depends.
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, namespace)  # noqa: S307 - the application's own annotation
    except Exception:
        return annotation


def _label(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _plan(fn: Callable[..., Any]) -> tuple[_Param, ...]:
    if not callable(fn):
        raise ConfigurationError(f"get_otp_db must be callable, got {fn!r}")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"cannot read the parameters of {fn!r}: {exc}") from exc
    namespace = _globals_of(fn)
    plan: list[_Param] = []
    for name, raw in signature.parameters.items():
        param = raw.replace(annotation=_evaluated(raw.annotation, namespace))
        marker = param.default if isinstance(param.default, params.Depends) else None
        marker = marker or _depends_in(param.annotation)
        if marker is not None:
            dependency = marker.dependency
            if dependency is None:  # Depends() names its dependency by the annotation
                dependency = param.annotation
                if get_origin(dependency) is Annotated:
                    dependency = get_args(dependency)[0]
            if not callable(dependency):
                raise ConfigurationError(
                    f"{_label(fn)}: parameter {name!r} depends on {dependency!r}, which is not "
                    "callable"
                )
            plan.append(_Sub(name, dependency, marker.use_cache))
        elif _is_connection(param.annotation):
            plan.append(_Connection(name))
        elif param.default is inspect.Parameter.empty and param.kind not in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ):
            raise ConfigurationError(
                f"{_label(fn)}: parameter {name!r} has no default and is not Depends(...). "
                "Claims-only dependencies call get_otp_db outside a request, so each of its "
                "parameters (and its dependencies' parameters) must be Depends(...), a Request, "
                "or have a default."
            )
    return tuple(plan)


def _kind(fn: Callable[..., Any]) -> str:
    target = fn if inspect.isroutine(fn) or inspect.isclass(fn) else type(fn).__call__
    if inspect.isasyncgenfunction(target):
        return "asyncgen"
    if inspect.isgeneratorfunction(target):
        return "gen"
    return "call"


class StoreResolver:
    """Opens what ``get_otp_db`` yields, closing its generators when done.

    Construction checks the whole dependency tree, so a factory this resolver cannot call
    is reported when the router or dependency is built, not on the first request.

    Raises:
        ConfigurationError: A parameter somewhere in the tree cannot be supplied.
    """

    __slots__ = ("_plans", "dependency")

    def __init__(self, dependency: Callable[..., Any]) -> None:
        self.dependency = dependency
        self._plans: dict[Callable[..., Any], tuple[_Param, ...]] = {}
        self._check(dependency, set())

    def _check(self, fn: Callable[..., Any], seen: set[Callable[..., Any]]) -> None:
        if fn in seen:
            return
        seen.add(fn)
        for entry in self._plan(fn):
            if isinstance(entry, _Sub):
                self._check(entry.dependency, seen)

    def _plan(self, fn: Callable[..., Any]) -> tuple[_Param, ...]:
        plan = self._plans.get(fn)
        if plan is None:
            plan = self._plans[fn] = _plan(fn)
        return plan

    @asynccontextmanager
    async def open(self, connection: HTTPConnection | None = None) -> AsyncIterator[Any]:
        """Resolve the dependency; honours ``connection.app.dependency_overrides``."""
        app = connection.scope.get("app") if connection is not None else None
        overrides: Mapping[Callable[..., Any], Callable[..., Any]] = (
            getattr(app, "dependency_overrides", None) or {}
        )
        async with AsyncExitStack() as stack:
            yield await self._call(self.dependency, connection, overrides, stack, {})

    async def _call(
        self,
        fn: Callable[..., Any],
        connection: HTTPConnection | None,
        overrides: Mapping[Callable[..., Any], Callable[..., Any]],
        stack: AsyncExitStack,
        cache: dict[Callable[..., Any], Any],
    ) -> Any:
        fn = overrides.get(fn, fn)
        kwargs: dict[str, Any] = {}
        for entry in self._plan(fn):
            if isinstance(entry, _Connection):
                if connection is None:
                    raise ConfigurationError(
                        f"{_label(fn)} needs the request, and there is none outside a request"
                    )
                kwargs[entry.name] = connection
                continue
            target = overrides.get(entry.dependency, entry.dependency)
            if entry.use_cache and target in cache:
                kwargs[entry.name] = cache[target]
                continue
            value = await self._call(entry.dependency, connection, overrides, stack, cache)
            if entry.use_cache:
                cache[target] = value
            kwargs[entry.name] = value
        match _kind(fn):
            case "asyncgen":
                return await stack.enter_async_context(asynccontextmanager(fn)(**kwargs))
            case "gen":
                return stack.enter_context(contextmanager(fn)(**kwargs))
            case _:
                result = fn(**kwargs)
                if inspect.isawaitable(result):
                    result = await result
                return result
