"""Token issue+verify through otpcore against raw pyjwt encode+decode, side by side.

Run ``python bench/bench_tokens.py``; a bench runner can call :func:`run`. Both sides sign
the same claims with the same key and header. Target for HS256: otpcore ≤ 1.3x raw pyjwt.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from time import perf_counter
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519

from otpcore.domain.policy import Policy
from otpcore.domain.records import Claims
from otpcore.tokens import KeySet, SigningKey, TokenCodec

__all__ = ["TARGET_RATIO", "run"]

#: The ceiling for the HS256 ratio (otpcore time / raw pyjwt time).
TARGET_RATIO = 1.3
SECRET = b"b" * 32


def _per_op_us(operation: Callable[[], object], ops: int) -> float:
    start = perf_counter()
    for _ in range(ops):
        operation()
    return (perf_counter() - start) / ops * 1e6


def _compare(
    ours: Callable[[], object], raw: Callable[[], object], rounds: int, ops: int
) -> tuple[float, float]:
    """Median µs per operation of each side, rounds interleaved (order alternates)."""
    _per_op_us(ours, ops // 10 + 1)  # warm up both
    _per_op_us(raw, ops // 10 + 1)
    ours_us: list[float] = []
    raw_us: list[float] = []
    for round_ in range(rounds):
        sides = [(ours, ours_us), (raw, raw_us)]
        if round_ % 2:
            sides.reverse()
        for operation, results in sides:
            results.append(_per_op_us(operation, ops))
    return statistics.median(ours_us), statistics.median(raw_us)


def _pair(
    codec: TokenCodec, key: Any, public: Any, algorithm: str, now: datetime
) -> tuple[Callable[[], Claims], Callable[[], object]]:
    issued = int(now.timestamp())
    auth_time = round(now.timestamp(), 3)
    payload = {
        "sub": "user-1234",
        "iat": issued,
        "nbf": issued,
        "exp": issued + 3600,
        "jti": "3f1c2a9e8b7d4c6a5e4f3b2a1c0d9e8f",
        "type": "access",
        "sid": "9e8d7c6b5a4f3e2d1c0b",
        "auth_time": auth_time,
    }
    headers = {"typ": "at+jwt"}

    def ours() -> Claims:
        token = codec.issue(
            kind="access",
            subject="user-1234",
            sid="9e8d7c6b5a4f3e2d1c0b",
            jti="3f1c2a9e8b7d4c6a5e4f3b2a1c0d9e8f",
            auth_time=auth_time,
            now=now,
        )
        return codec.verify(token, kind="access", now=now)

    def raw() -> object:
        token = jwt.encode(payload, key, algorithm=algorithm, headers=headers)
        return jwt.decode(token, public, algorithms=[algorithm])

    assert ours().as_dict() == raw(), "both sides must produce the same claims"
    return ours, raw


def run(rounds: int = 7, ops: int = 2000) -> dict[str, float]:
    """Benchmark HS256 (the target) and EdDSA (informational).

    Args:
        rounds: Timed rounds per side; the median is reported.
        ops: Issue+verify pairs per round (half that for EdDSA).

    Returns:
        Median µs per issue+verify for each side and their ratio, keyed
        ``{alg}_otpcore_us``, ``{alg}_pyjwt_us``, ``{alg}_ratio``.
    """
    # Raw pyjwt checks exp against the real clock, so both sides use the real time.
    now = datetime.now(UTC)
    policy = Policy(secret=SECRET)
    results: dict[str, float] = {}

    hs = TokenCodec(KeySet.symmetric(SECRET), policy)
    ours_us, raw_us = _compare(*_pair(hs, SECRET, SECRET, "HS256", now), rounds, ops)
    results |= {"hs256_otpcore_us": ours_us, "hs256_pyjwt_us": raw_us}
    results["hs256_ratio"] = ours_us / raw_us

    private = ed25519.Ed25519PrivateKey.generate()
    ed = TokenCodec(KeySet(SigningKey(algorithm="EdDSA", key=private)), policy)
    pair = _pair(ed, private, private.public_key(), "EdDSA", now)
    ours_us, raw_us = _compare(*pair, rounds, max(ops // 2, 1))
    results |= {"eddsa_otpcore_us": ours_us, "eddsa_pyjwt_us": raw_us}
    results["eddsa_ratio"] = ours_us / raw_us
    return results


def main() -> int:
    """Print the medians and ratios; exit status 1 if HS256 misses the target."""
    results = run()
    for alg, note in (("hs256", f"target <= {TARGET_RATIO}"), ("eddsa", "informational")):
        print(
            f"{alg.upper():6} issue+verify  otpcore {results[f'{alg}_otpcore_us']:7.1f} µs"
            f"  pyjwt {results[f'{alg}_pyjwt_us']:7.1f} µs"
            f"  ratio {results[f'{alg}_ratio']:.2f}  ({note})"
        )
    return 0 if results["hs256_ratio"] <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
