"""``otpcore check``: is this configuration fit for production?

Each finding has a stable ``id`` (for scripts and ``--ignore``), a level and a message that
says what to change. Errors make the command fail; warnings only with ``--strict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from otpcore.cli.target import AppTarget
from otpcore.domain.policy import check_secret

__all__ = ["DEFAULT_MAX_CONNECTIONS", "Finding", "check_target"]

#: PostgreSQL's default ``max_connections`` (100) less ``superuser_reserved_connections`` (3).
DEFAULT_MAX_CONNECTIONS: Final = 97
# A generated secret (``openssl rand -hex 32``) uses all 16 hex digits; a secret built from
# a handful of characters ("aaaa…", "abcabc…") is guessable whatever its length.
_MIN_DISTINCT_BYTES: Final = 10

Level = Literal["error", "warning", "ok"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One result of the check: ``level``, a stable ``id``, and what to do."""

    level: Level
    id: str
    message: str


def check_target(
    target: AppTarget, *, workers: int, max_connections: int = DEFAULT_MAX_CONNECTIONS
) -> list[Finding]:
    """Every finding for ``target`` deployed as ``workers`` processes (across all hosts)
    against a database that accepts ``max_connections``."""
    return [
        *_secret(target),
        *_tokens(target),
        *_cookies(target.settings),
        *_pool(target.engine, workers=workers, max_connections=max_connections),
    ]


def _secret(target: AppTarget) -> list[Finding]:
    policy = target.auth.policy
    findings: list[Finding] = []
    if policy.developer_mode:
        findings.append(
            Finding("error", "developer-mode", "developer mode is on: every code is zeros")
        )
    try:
        check_secret(policy.secret, developer_mode=False)
    except ValueError as exc:
        findings.append(Finding("error", "secret", f"the secret is unfit: {exc}"))
    else:
        if len(set(policy.secret)) < _MIN_DISTINCT_BYTES:
            findings.append(
                Finding(
                    "error",
                    "secret-low-entropy",
                    f"the secret uses only {len(set(policy.secret))} distinct characters; "
                    "generate one with: openssl rand -hex 32",
                )
            )
        else:
            findings.append(Finding("ok", "secret", "the secret is long and not a placeholder"))
    return findings


def _tokens(target: AppTarget) -> list[Finding]:
    policy = target.auth.policy
    findings: list[Finding] = []
    for name, value in (("issuer", policy.issuer), ("audience", policy.audience)):
        if value:
            findings.append(Finding("ok", name, f"tokens carry and require {name} {value!r}"))
        else:
            findings.append(
                Finding(
                    "error",
                    f"{name}-missing",
                    f"no {name}: set it so that tokens of another service or environment "
                    "signed with the same key are refused",
                )
            )
    return findings


def _cookies(settings: Any) -> list[Finding]:
    delivery = getattr(settings, "refresh_token_delivery", None)
    if delivery is None:
        return []
    findings: list[Finding] = []
    if delivery in ("body", "both"):
        findings.append(
            Finding(
                "warning",
                "refresh-token-in-body",
                f"refresh_token_delivery={delivery!r}: page scripts can read the refresh "
                "token; 'cookie' keeps it in an HttpOnly cookie",
            )
        )
    if delivery in ("cookie", "both"):
        before = len(findings)
        if getattr(settings, "cookie_secure", True) is not True:
            findings.append(
                Finding(
                    "error",
                    "cookie-insecure",
                    "cookie_secure is off: the refresh cookie would travel over plain http",
                )
            )
        samesite = getattr(settings, "cookie_samesite", "lax")
        if samesite == "none":
            findings.append(
                Finding(
                    "warning",
                    "cookie-samesite-none",
                    "cookie_samesite='none': browsers send the refresh cookie on cross-site "
                    "requests; use 'lax' or 'strict' unless the API is on another site",
                )
            )
        if len(findings) == before:
            findings.append(
                Finding("ok", "cookie", f"refresh cookie is Secure, HttpOnly, SameSite={samesite}")
            )
    return findings


def _pool(engine: Any, *, workers: int, max_connections: int) -> list[Finding]:
    if engine is None:
        return []
    dialect = engine.dialect.name
    if dialect == "sqlite":
        return [
            Finding(
                "warning",
                "sqlite-single-host",
                "SQLite: every worker must run on this one host (the file is not shared "
                "across machines); use PostgreSQL to run on several hosts",
            )
        ]
    pool = engine.pool
    kind = type(pool).__name__
    if kind == "NullPool":
        return [
            Finding(
                "warning",
                "pool-unbounded",
                "NullPool opens one connection per concurrent request, without a bound; "
                "put PgBouncer in front of the database or use a sized pool",
            )
        ]
    if not hasattr(pool, "size"):
        return [Finding("warning", "pool-unknown", f"cannot size a {kind}; check it by hand")]
    size = pool.size()
    # SQLAlchemy's QueuePool has no public accessor for its max_overflow argument.
    overflow = getattr(pool, "_max_overflow", 0)
    if not isinstance(overflow, int):
        return [Finding("warning", "pool-unknown", f"cannot read the {kind}'s max_overflow")]
    if overflow < 0:
        return [
            Finding(
                "error",
                "pool-unbounded",
                "max_overflow=-1 lets each worker open connections without a bound",
            )
        ]
    per_worker = size + overflow
    total = per_worker * workers
    numbers = (
        f"{workers} worker(s) x (pool_size {size} + max_overflow {overflow}) = {total} "
        f"{dialect} connections; the server accepts {max_connections}"
    )
    if total > max_connections:
        return [
            Finding(
                "error",
                "pool-exhaustion",
                f"{numbers}: under load requests wait and fail with 503. Lower pool_size and "
                "max_overflow, run fewer workers, or put PgBouncer in front",
            )
        ]
    return [Finding("ok", "pool", numbers)]
