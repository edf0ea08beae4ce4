"""Revocation decisions (otpcore.domain.sessions): the mirror decides as the store does."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from otpcore.domain.records import (
    Claims,
    Revocation,
    RevocationKind,
    TokenKind,
    session_key,
    user_key,
)
from otpcore.domain.sessions import (
    Reused,
    RevocationMirror,
    Revoked,
    Valid,
    Verdict,
    revocation_keys,
    revocation_verdict,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=1)
AUTH_TIME = NOW.timestamp() - 30


def claims_of(kind: TokenKind) -> Claims:
    return Claims(
        sub="user-1",
        jti="jti-1",
        sid="sid-1",
        type=kind,
        iat=int(NOW.timestamp()),
        nbf=int(NOW.timestamp()),
        exp=int(NOW.timestamp()) + 600,
        auth_time=AUTH_TIME,
    )


def entry(key: str, kind: RevocationKind, revoked_at: datetime = NOW) -> Revocation:
    return Revocation(key=key, kind=kind, revoked_at=revoked_at, expires_at=LATER)


#: Every entry that can apply to claims_of(...), and some that must not.
ENTRIES = {
    "token": entry("jti-1", RevocationKind.ACCESS),
    "session": entry(session_key("sid-1"), RevocationKind.SESSION),
    "user-after": entry(user_key("user-1"), RevocationKind.USER),  # cutoff after the session began
    "user-before": entry(  # cutoff before the session began: does not apply
        user_key("user-1"), RevocationKind.USER, datetime.fromtimestamp(AUTH_TIME - 1, tz=UTC)
    ),
    "other-token": entry("jti-2", RevocationKind.ACCESS),
    "other-session": entry(session_key("sid-2"), RevocationKind.SESSION),
    "other-user": entry(user_key("user-2"), RevocationKind.USER),
}
COMBINATIONS = [
    combo
    for size in range(len(ENTRIES) + 1)
    for combo in itertools.combinations(ENTRIES, size)
    if not {"user-after", "user-before"} <= set(combo)  # one entry per key
]


def mirror_of(names: tuple[str, ...]) -> RevocationMirror:
    mirror = RevocationMirror()
    mirror.apply([ENTRIES[name] for name in names], started_at=NOW)
    return mirror


@pytest.mark.parametrize("kind", ["access", "refresh"])
def test_the_mirror_decides_as_the_store_lookup_does(kind: TokenKind) -> None:
    claims = claims_of(kind)
    for names in COMBINATIONS:
        entries = [ENTRIES[name] for name in names]
        # What a store answers for revocation_keys(claims): the entries under those keys.
        found = [e for e in entries if e.key in revocation_keys(claims)]
        assert mirror_of(names).verdict(claims) == revocation_verdict(claims, found), names


@pytest.mark.parametrize(
    ("names", "kind", "expected"),
    [
        ((), "access", Valid()),
        (("other-token", "other-session", "other-user", "user-before"), "access", Valid()),
        (("token",), "access", Revoked(by="token")),
        (("token",), "refresh", Reused()),
        (("session",), "refresh", Revoked(by="session")),
        (("token", "session"), "refresh", Revoked(by="session")),
        (("user-after",), "access", Revoked(by="user")),
    ],
)
def test_mirror_verdicts(names: tuple[str, ...], kind: TokenKind, expected: Verdict) -> None:
    assert mirror_of(names).verdict(claims_of(kind)) == expected
