"""The channel contract (issue 8): pending challenges and limit counters on every backend.

:class:`ChannelContract` holds :class:`~otpcore.ports.ChallengeStore` and
:class:`~otpcore.ports.LimitStore` to their documented atomic behaviour (the
compare-and-set on a challenge's version; one atomic sliding-window hit, never over the
limit under concurrency) and proves the service's guarantees on top of them: at most
``max_attempts`` bound plus ``max_attempts`` unbound guesses are evaluated per code
under any concurrency, and a stranger's guesses and requests never cost the owner the
code they asked for. Subclass it in a pytest module with a ``backend`` fixture, as for
:class:`otpcore.testing.contract.StoreContract`.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from otpcore.domain import limits as rules
from otpcore.domain.errors import AccountLocked, CodeInvalid
from otpcore.domain.policy import Policy
from otpcore.domain.records import ChallengeState, PendingChallenge
from otpcore.ports import ChallengeStore, LimitStore
from otpcore.service import Login, OTPAuth
from otpcore.testing.clock import FakeClock
from otpcore.testing.contract import Backend

__all__ = ["ChannelContract"]

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
_SECRET = b"channel-contract-secret-0123456789"
_MINUTE = timedelta(minutes=1)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _challenge(key: str, subject: str = "subject-a", *, at: float = 0) -> PendingChallenge:
    state = ChallengeState(
        code_hash=f"hash-{key}", issued_at=_at(at), last_request_at=_at(at), version=1
    )
    return PendingChallenge(id=key, subject=subject, state=state, expires_at=_at(at + 600))


class _Inbox:
    def __init__(self) -> None:
        self.codes: dict[str, str] = {}

    async def __call__(self, email: str, code: str) -> None:
        self.codes[email] = code


def _wrong(code: str) -> str:
    return "0" * len(code) if code != "0" * len(code) else "1" * len(code)


class ChannelContract:
    """Pending challenges and limit counters, as every store must keep them."""

    # -- ChallengeStore --------------------------------------------------------------------

    async def test_challenges_are_found_by_id_and_newest_by_subject(self, backend: Backend) -> None:
        async with backend.store() as store:
            codes = cast(ChallengeStore, store)
            assert await codes.find_challenge("nope") is None
            assert await codes.newest_challenge("subject-a") is None
            await codes.create_challenge(_challenge("k1", at=0))
            await codes.create_challenge(_challenge("k2", at=30))
            await codes.create_challenge(_challenge("k3", "subject-b", at=60))
            found = await codes.find_challenge("k1")
            assert found == _challenge("k1", at=0)
            newest = await codes.newest_challenge("subject-a")
            assert newest is not None
            assert newest.id == "k2"
            # A consumed code (no hash) is never the newest code.
            consumed = replace(newest.state, code_hash=None, issued_at=None, version=2)
            assert await codes.update_challenge(
                "k2", expected_version=1, state=consumed, expires_at=_at(700)
            )
            newest = await codes.newest_challenge("subject-a")
            assert newest is not None
            assert newest.id == "k1"

    async def test_a_tie_in_one_instant_goes_to_the_later_issue(self, backend: Backend) -> None:
        """Two codes issued in the same instant: the greater ``order`` is the newest, whatever
        the ids; a guess's update keeps the order, a resend's sets it."""
        async with backend.store() as store:
            codes = cast(ChallengeStore, store)
            await codes.create_challenge(replace(_challenge("zz", at=5), order=10))
            await codes.create_challenge(replace(_challenge("aa", at=5), order=11))
            newest = await codes.newest_challenge("subject-a")
            assert newest is not None
            assert (newest.id, newest.order) == ("aa", 11)
            # A guess on the older code changes its state, not its order.
            guessed = replace(_challenge("zz", at=5).state, unbound_attempts=1, version=2)
            assert await codes.update_challenge(
                "zz", expected_version=1, state=guessed, expires_at=_at(605)
            )
            newest = await codes.newest_challenge("subject-a")
            assert newest is not None
            assert newest.id == "aa"
            # A resend on it in the same instant issues the newest code.
            resent = replace(guessed, code_hash="hash-zz-2", unbound_attempts=0, version=3)
            assert await codes.update_challenge(
                "zz", expected_version=2, state=resent, expires_at=_at(605), order=12
            )
            newest = await codes.newest_challenge("subject-a")
            assert newest is not None
            assert (newest.id, newest.order, newest.state) == ("zz", 12, resent)
            # The order is kept as given (a nanosecond count needs 64 bits).
            await codes.create_challenge(replace(_challenge("big", "subject-b"), order=2**62))
            found = await codes.find_challenge("big")
            assert found is not None
            assert found.order == 2**62

    async def test_update_is_a_compare_and_set_on_the_version(self, backend: Backend) -> None:
        async with backend.store() as store:
            codes = cast(ChallengeStore, store)
            await codes.create_challenge(_challenge("cas"))
            stale = _challenge("cas").state
            moved = replace(stale, attempts=1, unbound_attempts=2, failures=1, version=2)
            assert await codes.update_challenge(
                "cas", expected_version=1, state=moved, expires_at=_at(900)
            )
            assert not await codes.update_challenge(
                "cas", expected_version=1, state=replace(stale, version=2), expires_at=_at(1)
            )
            assert not await codes.update_challenge(
                "missing", expected_version=1, state=moved, expires_at=_at(1)
            )
            stored = await codes.find_challenge("cas")
            assert stored is not None
            assert stored.state == moved
            assert stored.expires_at == _at(900)

    async def test_concurrent_updates_of_one_version_have_one_winner(
        self, backend: Backend
    ) -> None:
        async with backend.store() as store:
            await cast(ChallengeStore, store).create_challenge(_challenge("race"))

        async def update(index: int) -> bool:
            state = replace(_challenge("race").state, attempts=index, version=2)
            async with backend.store() as store:
                return await cast(ChallengeStore, store).update_challenge(
                    "race", expected_version=1, state=state, expires_at=_at(600)
                )

        results = await asyncio.gather(*(update(i) for i in range(20)))
        assert sum(results) == 1

    # -- LimitStore ------------------------------------------------------------------------

    async def test_hits_are_counted_up_to_the_limit_and_refusals_change_nothing(
        self, backend: Backend
    ) -> None:
        window = rules.window_at(_at(10), _MINUTE)
        async with backend.store() as store:
            limiter = cast(LimitStore, store)
            seen = [await limiter.hit("send-client:k", limit=3, window=window) for _ in range(5)]
        assert [h.allowed for h in seen] == [True, True, True, False, False]
        assert [h.count for h in seen] == [1, 2, 3, 3, 3]
        assert all(h.previous_count == 0 for h in seen)

    async def test_the_previous_window_counts_by_its_weight(self, backend: Backend) -> None:
        async with backend.store() as store:
            limiter = cast(LimitStore, store)
            first = rules.window_at(T0, _MINUTE)
            for _ in range(4):
                assert (await limiter.hit("k", limit=4, window=first)).allowed
            # A quarter into the next window the previous one weighs 0.75: 3 of 4 used.
            later = rules.window_at(first.start + _MINUTE + _MINUTE / 4, _MINUTE)
            hit = await limiter.hit("k", limit=4, window=later)
            assert (hit.allowed, hit.count, hit.previous_count) == (True, 1, 4)
            refused = await limiter.hit("k", limit=4, window=later)
            assert (refused.allowed, refused.count, refused.previous_count) == (False, 1, 4)
            # Two windows on, the old counts are gone.
            gone = rules.window_at(first.start + 3 * _MINUTE, _MINUTE)
            fresh = await limiter.hit("k", limit=4, window=gone)
            assert (fresh.allowed, fresh.count, fresh.previous_count) == (True, 1, 0)
            # A host whose clock lags never moves the window back.
            lagging = await limiter.hit("k", limit=4, window=later)
            assert (lagging.allowed, lagging.count) == (True, 2)

    async def test_keys_are_counted_apart(self, backend: Backend) -> None:
        window = rules.window_at(T0, _MINUTE)
        async with backend.store() as store:
            limiter = cast(LimitStore, store)
            assert (await limiter.hit("a", limit=1, window=window)).allowed
            assert (await limiter.hit("b", limit=1, window=window)).allowed
            assert not (await limiter.hit("a", limit=1, window=window)).allowed

    async def test_concurrent_hits_never_exceed_the_limit(self, backend: Backend) -> None:
        window = rules.window_at(T0, timedelta(hours=1))

        async def hit(_: int) -> bool:
            async with backend.store() as store:
                result = await cast(LimitStore, store).hit("race", limit=7, window=window)
                return result.allowed

        results = await asyncio.gather(*(hit(i) for i in range(40)))
        assert sum(results) == 7

    async def test_purge_drops_expired_challenges_and_counters(self, backend: Backend) -> None:
        window = rules.window_at(T0, _MINUTE)
        async with backend.store() as store:
            await cast(ChallengeStore, store).create_challenge(_challenge("old", at=0))
            await cast(LimitStore, store).hit("old", limit=1, window=window)
            await cast(ChallengeStore, store).create_challenge(_challenge("kept", at=600))
            await store.purge_expired(_at(600))  # the challenge's expires_at, past the counter's
            assert await cast(ChallengeStore, store).find_challenge("old") is None
            assert await cast(ChallengeStore, store).find_challenge("kept") is not None
            again = await cast(LimitStore, store).hit("old", limit=1, window=window)
            assert again.allowed  # the counter was purged

    # -- the service on top ------------------------------------------------------------------

    def _service(self, clock: FakeClock, inbox: _Inbox, **overrides: Any) -> OTPAuth[Any]:
        settings: dict[str, Any] = {
            "policy": Policy(secret=_SECRET, max_attempts=5),
            "store": None,
            "sender": inbox,
            "clock": clock,
        }
        settings.update(overrides)
        return OTPAuth(**settings)

    async def test_concurrent_bound_and_unbound_guesses_evaluate_at_most_max_each(
        self, backend: Backend
    ) -> None:
        clock, inbox = FakeClock(T0), _Inbox()
        auth = self._service(clock, inbox)
        email = "race@example.com"
        async with backend.store() as store:
            request = await auth.with_store(store).request_code(email)
        wrong = _wrong(inbox.codes[email])

        async def guess(index: int) -> object:
            bound = request.challenge_id if index % 2 else None
            async with backend.store() as store:
                try:
                    return await auth.with_store(store).verify_code(
                        email, wrong, challenge_id=bound
                    )
                except (CodeInvalid, AccountLocked) as refused:
                    return refused

        outcomes = await asyncio.gather(*(guess(i) for i in range(120)))
        evaluated = [o for o in outcomes if isinstance(o, CodeInvalid)]
        assert len(evaluated) == 2 * auth.policy.max_attempts
        assert sorted(o.remaining_attempts or 0 for o in evaluated) == sorted(list(range(5)) * 2)
        async with backend.store() as store:
            pending = await cast(ChallengeStore, store).find_challenge(
                rules.challenge_key(_SECRET, request.challenge_id)
            )
            assert pending is not None
            assert (pending.state.attempts, pending.state.unbound_attempts) == (5, 5)
            assert pending.state.failures == 5  # only bound guesses count failures

    async def test_of_two_codes_asked_for_in_one_instant_the_later_is_the_newest(
        self, backend: Backend
    ) -> None:
        """Unbound guesses meet the code mailed last, also when two requests (or a resend)
        share an instant: the clock stands still here, so only the issue order tells."""
        clock, inbox = FakeClock(T0), _Inbox()
        # Five codes per address in one instant: more than the default mailbox limit allows.
        auth = self._service(
            clock,
            inbox,
            policy=Policy(secret=_SECRET, resend_cooldown=timedelta(0)),
            limits=rules.Limits(per_mailbox=None),
        )
        for n in range(8):  # a coin toss would pass all eight 1 time in 256
            email = f"twice{n}@example.com"
            async with backend.store() as store:
                first = await auth.with_store(store).request_code(email)
                await auth.with_store(store).request_code(email)
                second_code = inbox.codes[email]
                login = await auth.with_store(store).verify_code(email, second_code)
                assert isinstance(login, Login)
                # A resend on the first binding, in the same instant, is newer still.
                await auth.with_store(store).request_code(email, challenge_id=first.challenge_id)
                await auth.with_store(store).request_code(email)
                await auth.with_store(store).request_code(email, challenge_id=first.challenge_id)
                login = await auth.with_store(store).verify_code(email, inbox.codes[email])
                assert isinstance(login, Login)

    async def test_a_strangers_guesses_and_requests_never_cost_the_owner_the_code(
        self, backend: Backend
    ) -> None:
        """Issue 8's target: after a stranger's 20 wrong guesses and 3 code requests, the
        owner's code still logs in, 10 times out of 10."""
        clock, inbox = FakeClock(T0), _Inbox()
        auth = self._service(clock, inbox)
        logins = 0
        for round_no in range(10):
            email = f"owner{round_no}@example.com"
            async with backend.store() as store:
                owner = await auth.with_store(store).request_code(email, ip="198.51.100.7")
            code = inbox.codes[email]
            async with backend.store() as store:
                stranger = auth.with_store(store)
                bindings = [
                    (await stranger.request_code(email, ip=f"203.0.113.{round_no}")).challenge_id
                    for _ in range(3)
                ]
                for n in range(20):
                    # Odd guesses on the stranger's own bindings, even ones unbound.
                    bound = bindings[n % 3] if n % 2 else None
                    with pytest.raises((CodeInvalid, AccountLocked)):
                        await stranger.verify_code(
                            email, _wrong(code), challenge_id=bound, ip=f"192.0.2.{n}"
                        )
                login = await auth.with_store(store).verify_code(
                    email, code, challenge_id=owner.challenge_id, ip="198.51.100.7"
                )
            assert isinstance(login, Login)
            logins += 1
            clock.advance(1)
        assert logins == 10
