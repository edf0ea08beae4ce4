"""The one error-translation mechanism every store shares.

Like ``limits``' ``storage/base.py``: a base class whose ``__init_subclass__`` wraps every
port method of each adapter once, so that no adapter can forget to. A driver or network
failure (an exception in the adapter's :attr:`StoreBase.driver_errors`) becomes
:class:`otpcore.domain.errors.StorageError` with the driver's exception as ``__cause__``;
before any failure leaves the call, :meth:`StoreBase._recover` undoes what the call began
(the SQL store rolls its session back). Arguments refused before any I/O
(:class:`~otpcore.domain.errors.ConfigurationError`, ``ValueError``) pass through and
leave everything untouched.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, Final

from otpcore import ports
from otpcore.domain.errors import ConfigurationError, StorageError

__all__ = ["PORT_METHODS", "StoreBase"]

#: Every coroutine method of :class:`otpcore.ports.Store`: what each adapter's calls go
#: through. Read off the ports, so a new port method is wrapped without a list to update
#: (``transaction`` returns a context manager, is no coroutine and is not wrapped).
PORT_METHODS: Final = frozenset(
    name
    for port in ports.Store.__mro__
    if port.__module__ == ports.__name__
    for name, member in vars(port).items()
    if inspect.iscoroutinefunction(member)
)

_WRAPPED = "__otpcore_wrapped__"


class StoreBase:
    """Base of every store: its port methods translate driver failures, once.

    Subclasses set :attr:`driver_errors` (what their driver raises when the database is
    broken or unreachable), may name more methods to wrap in :attr:`wrapped_methods`, and
    may override :meth:`_recover`.
    """

    #: Exceptions that mean the store failed (not the caller): become ``StorageError``.
    driver_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    #: Methods wrapped besides :data:`PORT_METHODS` (e.g. ``ensure_indexes``).
    wrapped_methods: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in PORT_METHODS | cls.wrapped_methods:
            method = getattr(cls, name, None)
            if method is None or getattr(method, _WRAPPED, False):
                continue
            setattr(cls, name, _translating(method))

    async def _recover(self) -> None:
        """Undo what a failed call began; the failure itself is raised afterwards."""


def _translating(
    method: Callable[..., Coroutine[Any, Any, Any]],
) -> Callable[..., Coroutine[Any, Any, Any]]:
    @functools.wraps(method)
    async def translated(self: StoreBase, /, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except (ConfigurationError, ValueError):
            raise  # refused before any I/O: nothing to undo
        except self.driver_errors as error:
            await self._recover()
            raise StorageError() from error
        except Exception:
            await self._recover()
            raise

    setattr(translated, _WRAPPED, True)
    return translated
