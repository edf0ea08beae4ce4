"""What ``--app module:attr`` names, and how the CLI turns it into an :class:`AppTarget`.

``attr`` (after ``module:``; dotted paths such as ``module:obj.attr`` work) may be:

- an :class:`AppTarget`;
- an :class:`~otpcore.OTPAuth` (``cleanup`` needs one bound to a store);
- an object with an ``auth`` attribute holding an ``OTPAuth``, such as an
  ``otpcore_fastapi.OTPAuthConfig``: its cookie settings are checked too, and its
  ``revocation_source`` (if set) is the store ``cleanup`` purges;
- an async context manager yielding one of the above (opened for the command, closed after,
  so an app can dispose its engine);
- a zero-argument callable (plain or ``async``) returning any of the above.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from otpcore.ports import Store
from otpcore.service import OTPAuth

__all__ = ["AppTarget", "TargetError", "open_target"]

_MAX_UNWRAP = 4  # factory -> context manager -> target is the deepest useful nesting


class TargetError(Exception):
    """``--app`` could not be imported or does not name a usable object."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AppTarget:
    """Everything the CLI reads from an application.

    Attributes:
        auth: The service; its policy and keys are checked.
        store: Where ``cleanup`` purges; defaults to ``auth.store``.
        open_store: A zero-argument async generator function or async context manager
            factory yielding a store (e.g. a FastAPI ``get_otp_db`` without parameters);
            used when neither ``store`` nor ``auth.store`` is set.
        engine: The SQLAlchemy engine, for the pool-size check; found from a
            ``SQLAlchemyAdapter`` store's session when omitted.
        settings: The framework settings (``cookie_secure``, ``cookie_samesite``,
            ``refresh_token_delivery``), e.g. an ``OTPAuthConfig``.
    """

    auth: OTPAuth[Any]
    store: Store[Any] | None = None
    open_store: Callable[[], Any] | None = None
    engine: Any = None
    settings: Any = None


def _import(spec: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise TargetError(f"--app takes module:attr (e.g. myapp.auth:config), got {spec!r}")
    # Like uvicorn and celery: modules of the current directory are importable.
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        value: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise TargetError(f"cannot import {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise TargetError(f"{module_name!r} has no attribute {attr!r}") from None
    return value


def _as_target(value: Any) -> AppTarget | None:
    if isinstance(value, AppTarget):
        return value
    if isinstance(value, OTPAuth):
        return AppTarget(auth=value)
    auth = getattr(value, "auth", None)
    if isinstance(auth, OTPAuth):
        return AppTarget(auth=auth, settings=value, open_store=_revocation_source(value))
    return None


def _revocation_source(settings: object) -> Callable[[], Any] | None:
    # OTPAuthConfig.revocation_source opens the store outside any request: all cleanup needs.
    source = getattr(settings, "revocation_source", None)
    if getattr(source, "__self__", None) is settings:  # a plain function set on the class
        source = getattr(source, "__func__", source)
    return source if callable(source) else None


@asynccontextmanager
async def _store_of(target: AppTarget) -> AsyncIterator[Store[Any] | None]:
    if target.store is not None or target.auth.store is not None:
        yield target.store if target.store is not None else target.auth.store
        return
    if target.open_store is None:
        yield None
        return
    opened: Any = target.open_store()
    store: Any
    if inspect.isasyncgen(opened):
        try:
            store = await anext(opened)
        except StopAsyncIteration:
            raise TargetError("open_store yielded no store") from None
        try:
            yield store
        finally:
            await opened.aclose()
    elif isinstance(opened, AbstractAsyncContextManager):
        async with opened as store:
            yield store
    else:
        raise TargetError("open_store must be an async generator or async context manager")


@asynccontextmanager
async def open_target(spec: str) -> AsyncIterator[AppTarget]:
    """Import ``spec`` (``module:attr``), enter what it names, and yield the target with its
    store (if any) open; everything opened is closed on exit.

    Raises:
        TargetError: The module cannot be imported or the object is not one of the
            documented kinds.
    """
    value = _import(spec)
    async with AsyncExitStack() as stack:
        target: AppTarget | None = None
        for _ in range(_MAX_UNWRAP):
            target = _as_target(value)
            if target is not None:
                break
            if isinstance(value, AbstractAsyncContextManager):
                value = await stack.enter_async_context(value)
            elif callable(value):
                value = value()
                if inspect.isawaitable(value):
                    value = await value
            else:
                break
        if target is None:
            raise TargetError(
                f"{spec!r} is a {type(value).__name__}, not an OTPAuth, an object with an "
                "OTPAuth `auth` attribute (an OTPAuthConfig), an AppTarget, or a zero-argument "
                "factory or async context manager giving one (see `otpcore --help`)"
            )
        store = await stack.enter_async_context(_store_of(target))
        engine = target.engine
        if engine is None:
            # A SQLAlchemyAdapter's public session is bound to the application's engine.
            engine = getattr(getattr(store, "session", None), "bind", None)
        yield replace(target, store=store, engine=engine)
