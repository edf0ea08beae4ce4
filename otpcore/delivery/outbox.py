"""The outbox: codes leave the request path here, and are retried off it.

One :class:`Outbox` per process (per :class:`~otpcore.service.OTPAuth`). A request reserves a
slot before it looks the address up (:meth:`Outbox.reserve`); a full outbox refuses with
:class:`~otpcore.domain.errors.DeliveryBusy` whatever the address. The request then submits
the code, or, for an address that gets no mail, holds the slot for as long as a delivery
recently took, so a full outbox looks the same either way.

Submitting starts the first attempt as a task: the request yields once and answers, and a
mailer that does no I/O has delivered by then. Up to ``concurrency`` attempts run at once;
the rest wait in order. A transient failure is retried after an exponentially growing,
jittered delay; a permanent or unconfirmed one is logged (address masked) and reported as a
:class:`~otpcore.domain.events.DeliveryFailed` event. A message whose code expired, or that a
newer code for the same binding superseded, is dropped unsent. Delivery never touches the
challenge.

Everything is in memory: no code is written anywhere. A crash loses what was waiting; its
users get no mail and ask again. :meth:`Outbox.drain` waits for what is left (call it in the
application's shutdown, with a timeout).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email.utils import make_msgid
from types import TracebackType
from typing import Final

from otpcore.delivery.errors import PermanentFailure, TransientFailure, UnconfirmedDelivery
from otpcore.delivery.message import CodeMail
from otpcore.delivery.senders import Mailer
from otpcore.domain.errors import DeliveryBusy
from otpcore.domain.events import AuthEvent, CodeSent, DeliveryFailed
from otpcore.observability.audit_log import mask_email

__all__ = ["Outbox", "RetryPolicy", "Ticket"]

logger = logging.getLogger("otpcore")

#: Weight of the newest delivery in the running average a decoy slot is held for.
_SMOOTHING: Final = 0.2
_jitter = random.Random()  # noqa: S311 - spreads retries out; not a secret


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """When a transient failure is tried again: ``first_delay * 2**(n-1)`` after the n-th
    failure, at most ``max_delay``, each delay moved by up to ``jitter`` of itself so a
    recovered server is not hit by every message at once. Retries stop when the code expires.
    """

    first_delay: timedelta = timedelta(seconds=2)
    max_delay: timedelta = timedelta(seconds=60)
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.first_delay <= timedelta(0) or self.max_delay < self.first_delay:
            raise ValueError("retry delays: first_delay above 0 and max_delay >= first_delay")
        if not 0 <= self.jitter < 1:
            raise ValueError("retry jitter must be in [0, 1)")

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure."""
        base = min(
            self.max_delay.total_seconds(),
            self.first_delay.total_seconds() * 2.0 ** min(failures - 1, 32),
        )
        return base * (1 + self.jitter * (2 * _jitter.random() - 1))


@dataclass(slots=True, eq=False)
class _Item:
    mail: CodeMail
    seq: int
    submitted: float
    failures: int = 0
    timer: asyncio.TimerHandle | None = None


@dataclass(slots=True, eq=False)
class _State:
    # Everything bound to one event loop; replaced when the outbox is used on another
    # (what was waiting on a closed loop is lost, as in a crash).
    loop: asyncio.AbstractEventLoop
    ready: deque[_Item] = field(default_factory=deque)
    pending: int = 0
    decoys: int = 0
    running: int = 0
    starting: int = 0
    workers: set[asyncio.Task[None]] = field(default_factory=set)
    timers: set[asyncio.TimerHandle] = field(default_factory=set)
    idle: list[asyncio.Future[None]] = field(default_factory=list)
    latest: dict[str, int] = field(default_factory=dict)


class Ticket:
    """A reserved outbox slot: :meth:`submit` a code into it, or let it go.

    Used as a context manager: leaving the block without submitting after an exception frees
    the slot at once; leaving it normally (an address that gets no mail) holds the slot for
    as long as a delivery recently took, then frees it.
    """

    __slots__ = ("_done", "_outbox")

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._done = False

    def submit(self, mail: CodeMail) -> None:
        """Queue ``mail`` in this slot and start its first attempt as a task."""
        if self._done:
            raise RuntimeError("this ticket was used already")
        self._done = True
        self._outbox._submit(mail)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._done:
            return
        self._done = True
        self._outbox._release(hold=exc_type is None)


class Outbox:
    """A bounded, in-memory queue of codes with a lazily started pool of delivery tasks.

    Args:
        mailer: Delivers each code (:class:`~otpcore.delivery.TemplateMailer`, or
            :class:`~otpcore.delivery.CallbackMailer` around a ``send_otp``).
        capacity: Codes waiting, in flight or between retries, at most.
        concurrency: Attempts running at once (e.g. SMTP connections in use).
        retry: When transient failures are tried again.
        clock: The service clock (expiry is judged on it).
        emit: Receives ``CodeSent`` and ``DeliveryFailed`` events.
        busy_retry_after: ``retry_after`` of :class:`DeliveryBusy`, in seconds.

    Raises:
        ValueError: ``capacity`` or ``concurrency`` below 1.
    """

    __slots__ = (
        "_emit",
        "_seq",
        "_state",
        "_typical",
        "busy_retry_after",
        "capacity",
        "clock",
        "concurrency",
        "mailer",
        "retry",
    )

    def __init__(
        self,
        mailer: Mailer,
        *,
        capacity: int = 1000,
        concurrency: int = 4,
        retry: RetryPolicy | None = None,
        clock: Callable[[], datetime],
        emit: Callable[[AuthEvent], None] | None = None,
        busy_retry_after: int = 5,
    ) -> None:
        if capacity < 1 or concurrency < 1:
            raise ValueError("outbox capacity and concurrency must be at least 1")
        self.mailer = mailer
        self.capacity = capacity
        self.concurrency = concurrency
        self.retry = retry if retry is not None else RetryPolicy()
        self.clock = clock
        self.busy_retry_after = busy_retry_after
        self._emit = emit
        self._seq = 0
        self._typical = 0.0  # running average of submit-to-delivered seconds
        self._state: _State | None = None

    def __len__(self) -> int:
        """Slots in use: codes waiting, in flight or between retries, and held slots."""
        state = self._state
        return 0 if state is None else state.pending + state.decoys

    def reserve(self) -> Ticket:
        """A slot for one code, decided before the account lookup.

        Raises:
            DeliveryBusy: Every slot is taken (for any address).
        """
        state = self._current()
        if state.pending + state.decoys >= self.capacity:
            raise DeliveryBusy(retry_after=self.busy_retry_after)
        state.pending += 1
        return Ticket(self)

    async def drain(self, timeout: float | None = None) -> int:  # noqa: ASYNC109 - a lifespan one-liner
        """Wait until nothing waits, is in flight or between retries, or ``timeout`` seconds.

        Returns:
            How many codes were left undelivered (0 when drained).
        """
        state = self._current()
        if state.pending > 0:
            waiter = state.loop.create_future()
            state.idle.append(waiter)
            try:
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
            except TimeoutError:
                logger.warning(
                    "otpcore: %d code(s) not delivered at shutdown; their users will ask again",
                    state.pending,
                )
        return state.pending

    async def aclose(self) -> None:
        """Stop: cancel retries and attempts still running, close the mailer's connections.

        Call :meth:`drain` first to let them finish.
        """
        state, self._state = self._state, None
        if state is not None and state.loop is asyncio.get_running_loop():
            for timer in state.timers:
                timer.cancel()
            for task in state.workers:
                task.cancel()
            await asyncio.gather(*state.workers, return_exceptions=True)
            for waiter in state.idle:
                if not waiter.done():
                    waiter.set_result(None)
        await self.mailer.aclose()

    # -- internals -----------------------------------------------------------------------

    def _current(self) -> _State:
        loop = asyncio.get_running_loop()
        if self._state is None or self._state.loop is not loop:
            self._state = _State(loop=loop)
        return self._state

    def _submit(self, mail: CodeMail) -> None:
        state = self._current()
        self._seq += 1
        mail = replace(
            mail,
            message_id=mail.message_id or make_msgid(domain=self.mailer.domain),
            created_at=mail.created_at or self.clock(),
        )
        item = _Item(mail=mail, seq=self._seq, submitted=state.loop.time())
        if mail.binding is not None:
            state.latest[mail.binding] = item.seq
        state.ready.append(item)
        self._spawn(state)

    def _release(self, *, hold: bool) -> None:
        state = self._current()
        state.pending -= 1
        if hold and self._typical > 0:
            # An address that gets no mail keeps its slot as long as a delivery takes.
            state.decoys += 1
            state.loop.call_later(self._typical, self._unhold, state)
        self._wake(state)

    def _unhold(self, state: _State) -> None:
        state.decoys -= 1

    def _spawn(self, state: _State) -> None:
        # One new task per waiting message not yet claimed by a task about to start.
        while len(state.ready) > state.starting and state.running < self.concurrency:
            state.running += 1
            state.starting += 1
            task = state.loop.create_task(self._work(state))
            state.workers.add(task)
            task.add_done_callback(state.workers.discard)

    async def _work(self, state: _State) -> None:
        # ``running`` drops in the same step the loop sees ``ready`` empty, so a message
        # submitted after it always finds room to start another task.
        starting = True
        try:
            while state.ready:
                item = state.ready.popleft()
                if starting:
                    starting = False
                    state.starting -= 1
                await self._attempt(state, item)
        finally:
            if starting:
                state.starting -= 1
            state.running -= 1

    async def _attempt(self, state: _State, item: _Item) -> None:
        mail = item.mail
        if mail.binding is not None and state.latest.get(mail.binding) != item.seq:
            self._finish(state, item)  # superseded by a newer code for the same binding
            return
        now = self.clock()
        if now >= mail.expires_at:
            self._give_up(state, item, "expired", "the code expired before it could be sent")
            return
        try:
            await self.mailer.deliver(mail, now=now)
        except TransientFailure as failure:
            item.failures += 1
            delay = self.retry.delay(item.failures)
            if now + timedelta(seconds=delay) >= mail.expires_at:
                self._give_up(state, item, "expired", f"{failure.reason}; the code expires first")
                return
            logger.warning(
                "otpcore: delivering a code to %s failed (%s); retry %d in %.1f s",
                mask_email(mail.email),
                failure.reason,
                item.failures,
                delay,
            )
            item.timer = state.loop.call_later(delay, self._requeue, state, item)
            state.timers.add(item.timer)
            return
        except PermanentFailure as failure:
            self._give_up(state, item, "permanent", f"{failure.reason}; not retried")
            return
        except UnconfirmedDelivery as failure:
            self._give_up(state, item, "unconfirmed", f"{failure.reason}; never resent")
            return
        except Exception as exc:
            # A mailer's own bug: its text may quote the code, so only the type is logged.
            self._give_up(state, item, "error", f"{type(exc).__name__}; not retried")
            return
        elapsed = state.loop.time() - item.submitted
        self._typical += _SMOOTHING * (elapsed - self._typical)
        self._event(CodeSent(at=self.clock(), email=mail.email, user_id=mail.user_id))
        self._finish(state, item)

    def _requeue(self, state: _State, item: _Item) -> None:
        if item.timer is not None:
            state.timers.discard(item.timer)
            item.timer = None
        state.ready.append(item)
        self._spawn(state)

    def _give_up(self, state: _State, item: _Item, reason: str, detail: str) -> None:
        mail = item.mail
        logger.warning(
            "otpcore: delivering a code to %s failed (%s)", mask_email(mail.email), detail
        )
        self._event(
            DeliveryFailed(
                at=self.clock(),
                email=mail.email,
                user_id=mail.user_id,
                reason=reason,
                attempts=item.failures + (0 if reason == "expired" else 1),
            )
        )
        self._finish(state, item)

    def _finish(self, state: _State, item: _Item) -> None:
        binding = item.mail.binding
        if binding is not None and state.latest.get(binding) == item.seq:
            del state.latest[binding]
        state.pending -= 1
        self._wake(state)

    def _wake(self, state: _State) -> None:
        if state.pending > 0:
            return
        for waiter in state.idle:
            if not waiter.done():
                waiter.set_result(None)
        state.idle.clear()

    def _event(self, event: AuthEvent) -> None:
        if self._emit is not None:
            self._emit(event)
