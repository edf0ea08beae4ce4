"""Revocation decisions (otpcore.domain.sessions): the mirror decides as the store does."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from otpcore.domain.policy import Policy
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
    rotation_marker,
    session_start,
    token_revocation,
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


# --- one reuse rule for the store path and the mirror path ---------------------------------


@pytest.mark.parametrize("kind", ["access", "refresh"])
def test_the_mirror_and_the_store_path_answer_reuse_alike(kind: TokenKind) -> None:
    """A refresh token's rotation marker, found by the store or mirrored from another worker,
    is reuse on both paths; so is losing the race to insert it on the store path."""
    claims = claims_of(kind)
    marker = Revocation(
        key=claims.jti,
        kind=RevocationKind.REFRESH if kind == "refresh" else RevocationKind.ACCESS,
        revoked_at=NOW,
        expires_at=LATER,
    )
    mirror = RevocationMirror()
    mirror.apply([marker], started_at=NOW)
    expected = Reused() if kind == "refresh" else Revoked(by="token")
    assert revocation_verdict(claims, [marker]) == expected
    assert mirror.verdict(claims) == expected


def test_losing_the_rotation_race_is_reuse() -> None:
    claims = claims_of("refresh")
    assert revocation_verdict(claims, []) == Valid()
    assert revocation_verdict(claims, [], rotation_won=True) == Valid()
    assert revocation_verdict(claims, [], rotation_won=False) == Reused()


@pytest.mark.parametrize("names", [("session",), ("user-after",), ("token", "session")])
def test_a_dead_session_outranks_a_lost_rotation_race(names: tuple[str, ...]) -> None:
    claims = claims_of("refresh")
    found = [ENTRIES[name] for name in names]
    verdict = revocation_verdict(claims, found, rotation_won=False)
    assert isinstance(verdict, Revoked)
    assert verdict == revocation_verdict(claims, found)


def test_a_lost_race_among_unrelated_entries_is_still_reuse() -> None:
    claims = claims_of("refresh")
    found = [ENTRIES[name] for name in ("other-token", "other-session", "user-before")]
    assert revocation_verdict(claims, found) == Valid()
    assert revocation_verdict(claims, found, rotation_won=False) == Reused()


# --- entries, and when a session starts ---------------------------------------------------

POLICY = Policy(secret=b"s" * 32, leeway=timedelta(seconds=5))


@pytest.mark.parametrize(
    ("kind", "revocation_kind"),
    [("access", RevocationKind.ACCESS), ("refresh", RevocationKind.REFRESH)],
)
def test_token_revocation_names_the_token_until_it_expires(
    kind: TokenKind, revocation_kind: RevocationKind
) -> None:
    claims = claims_of(kind)
    entry = token_revocation(claims, now=NOW, policy=POLICY)
    assert entry == Revocation(
        key=claims.jti,
        kind=revocation_kind,
        revoked_at=NOW,
        expires_at=datetime.fromtimestamp(claims.exp, tz=UTC) + timedelta(seconds=5),
    )
    # The store path and the mirror refuse the token it names.
    assert revocation_verdict(claims, [entry]) != Valid()


def test_only_a_refresh_token_is_rotated() -> None:
    marker = rotation_marker(claims_of("refresh"), now=NOW, policy=POLICY)
    assert marker.kind is RevocationKind.REFRESH
    with pytest.raises(ValueError, match="refresh"):
        rotation_marker(claims_of("access"), now=NOW, policy=POLICY)


@pytest.mark.parametrize(
    ("micros", "expected"),
    [(0, 0.0), (1, 0.0), (999, 0.0), (1_000, 0.001), (123_999, 0.123), (999_999, 0.999)],
)
def test_session_start_floors_to_the_millisecond(micros: int, expected: float) -> None:
    at = NOW + timedelta(microseconds=micros)
    assert session_start(at) == NOW.timestamp() + expected
    assert session_start(at) <= at.timestamp()


def test_a_cutoff_just_after_a_session_start_revokes_it() -> None:
    # A store keeps the cutoff floored to the ms too: the session must compare at or before.
    begun = NOW + timedelta(microseconds=600)
    cutoff = NOW + timedelta(microseconds=800)
    stored_cutoff = cutoff.replace(microsecond=cutoff.microsecond // 1000 * 1000)
    claims = Claims(
        sub="user-1",
        jti="jti-1",
        sid="sid-1",
        type="access",
        iat=int(NOW.timestamp()),
        nbf=int(NOW.timestamp()),
        exp=int(NOW.timestamp()) + 600,
        auth_time=session_start(begun),
    )
    entry = Revocation(
        key=user_key("user-1"), kind=RevocationKind.USER, revoked_at=stored_cutoff, expires_at=LATER
    )
    assert revocation_verdict(claims, [entry]) == Revoked(by="user")
