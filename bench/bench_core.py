"""Pure challenge decisions per second: the cost of deciding, with no I/O at all.

Run: python bench/bench_core.py
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from otpcore.domain import challenge, limits
from otpcore.domain.codes import hash_code
from otpcore.domain.policy import Policy

ROUNDS = 7
OPS = 20_000


def _decisions_per_second() -> dict[str, float]:
    policy = Policy(secret=b"bench-secret-bench-secret-bench!")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    right = hash_code(policy.secret, "bench@example.com", "123456")
    wrong = hash_code(policy.secret, "bench@example.com", "654321")
    pending = challenge.ChallengeState(
        code_hash=right, issued_at=now, last_request_at=now, version=1
    )
    idle = challenge.ChallengeState()
    later = now + timedelta(seconds=1)

    def guesses() -> None:
        for _ in range(OPS):
            challenge.submit_guess(pending, presented_hash=wrong, now=later, policy=policy)

    def accepts() -> None:
        for _ in range(OPS):
            challenge.submit_guess(pending, presented_hash=right, now=later, policy=policy)

    def issues() -> None:
        for _ in range(OPS):
            challenge.request_code(idle, code_hash=right, now=now, policy=policy)

    def cooldowns() -> None:
        state = replace(pending, last_request_at=later)
        for _ in range(OPS):
            challenge.request_code(state, code_hash=right, now=later, policy=policy)

    def unbound() -> None:
        for _ in range(OPS):
            challenge.submit_unbound_guess(pending, presented_hash=wrong, now=later, policy=policy)

    rate = limits.Limits().per_mailbox
    assert rate is not None

    def limit_keys() -> None:
        # What a send decides before its counter hit: mailbox, key, window (issue 8).
        for _ in range(OPS):
            mailbox = limits.canonical_mailbox("Some.One+tag@gmail.com")
            limits.limit_key(policy.secret, "send-mailbox", mailbox)
            limits.window_at(later, rate.per)

    cases = {
        "guess rejected": guesses,
        "unbound guess rejected": unbound,
        "send limit keys": limit_keys,
        "guess accepted": accepts,
        "code issued": issues,
        "cooldown refused": cooldowns,
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(ROUNDS):
        for name, case in cases.items():  # interleaved, so machine noise hits every case alike
            start = time.perf_counter()
            case()
            samples[name].append(OPS / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in samples.items()}


def run() -> dict[str, float]:
    """Median decisions per second for each kind of challenge decision."""
    return _decisions_per_second()


def main() -> None:
    results = run()
    print(f"pure challenge decisions (median of {ROUNDS} rounds x {OPS:,} ops)")
    for name, rate in results.items():
        print(f"  {name:<22} {rate:>12,.0f} /s")


if __name__ == "__main__":
    main()
