"""Session decisions (otpcore.domain.sessions): revocations (the mirror decides as the store
does), the refresh generation's one reuse rule, successor ids and lifetimes."""

from __future__ import annotations

import itertools
import string
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from otpcore.domain.policy import Policy
from otpcore.domain.records import (
    Claims,
    Revocation,
    RevocationKind,
    SessionRecord,
    TokenKind,
    session_key,
    user_key,
)
from otpcore.domain.sessions import (
    MAX_USER_AGENT_CHARS,
    Expired,
    Grace,
    Reused,
    RevocationMirror,
    Revoked,
    Valid,
    Verdict,
    absolute_end,
    new_session,
    refresh_verdict,
    revocation_keys,
    revocation_verdict,
    session_expiry,
    session_revocation,
    session_start,
    successor_jti,
    token_expiry,
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
        (("token",), "refresh", Revoked(by="token")),  # issue 10: no rotation markers
        (("session",), "refresh", Revoked(by="session")),
        (("token", "session"), "refresh", Revoked(by="session")),
        (("user-after",), "access", Revoked(by="user")),
    ],
)
def test_mirror_verdicts(names: tuple[str, ...], kind: TokenKind, expected: Verdict) -> None:
    assert mirror_of(names).verdict(claims_of(kind)) == expected


# --- a revoked token, and what outranks it ---------------------------------------------------


@pytest.mark.parametrize("kind", ["access", "refresh"])
def test_a_revoked_jti_revokes_the_token_of_either_kind(kind: TokenKind) -> None:
    """Issue 10: rotation writes no marker any more, so a refresh token's revoked jti means
    it was blacklisted (logout, the reference API), not rotated: it is revoked, not reuse."""
    claims = claims_of(kind)
    entry_kind = RevocationKind.REFRESH if kind == "refresh" else RevocationKind.ACCESS
    marker = Revocation(key=claims.jti, kind=entry_kind, revoked_at=NOW, expires_at=LATER)
    assert revocation_verdict(claims, [marker]) == Revoked(by="token")


@pytest.mark.parametrize("names", [("token", "session"), ("session", "token"), ("user-after",)])
def test_a_dead_session_outranks_a_revoked_token(names: tuple[str, ...]) -> None:
    found = [ENTRIES[name] for name in names]
    verdict = revocation_verdict(claims_of("access"), found)
    assert isinstance(verdict, Revoked)
    assert verdict.by in {"session", "user"}


def test_unrelated_entries_revoke_nothing() -> None:
    found = [ENTRIES[name] for name in ("other-token", "other-session", "user-before")]
    assert revocation_verdict(claims_of("refresh"), found) == Valid()


def test_the_mirror_keeps_only_what_can_refuse_an_access_token() -> None:
    """Issue 10: refresh-token entries never reach the mirror; no access token matches them."""
    refresh_entry = Revocation(
        key="refresh-jti", kind=RevocationKind.REFRESH, revoked_at=NOW, expires_at=LATER
    )
    mirror = RevocationMirror()
    kept = [ENTRIES[name] for name in ("token", "session", "user-after")]
    mirror.apply([refresh_entry, *kept], started_at=NOW)
    assert len(mirror) == len(kept)


def test_the_mirror_looks_back_past_the_leeway() -> None:
    """A revocation stamped by a host whose clock lags by up to the leeway is still read."""
    mirror = RevocationMirror(overlap=timedelta(seconds=10), leeway=timedelta(seconds=30))
    assert mirror.since() is None
    mirror.apply([], started_at=NOW)
    assert mirror.since() == NOW - timedelta(seconds=40)


# --- the session's refresh generation: the one reuse rule -------------------------------------

GRACE_POLICY = Policy(secret=b"s" * 32, refresh_grace=timedelta(seconds=10))


def refresh_claims(gen: int) -> Claims:
    return replace(claims_of("refresh"), gen=gen)


def session_of(
    *, generation: int, rotated_at: datetime = NOW, ended: bool = False, user_id: str = "user-1"
) -> SessionRecord:
    return SessionRecord(
        sid="sid-1",
        user_id=user_id,
        created_at=NOW - timedelta(hours=1),
        last_used_at=rotated_at,
        rotated_at=rotated_at,
        generation=generation,
        user_agent=None,
        ip=None,
        expires_at=LATER,
        ended_at=NOW if ended else None,
    )


@pytest.mark.parametrize("after", [0, 0.5, 9.999, 10])
def test_the_predecessor_inside_the_window_gets_the_same_successor(after: float) -> None:
    verdict = refresh_verdict(
        refresh_claims(3),
        session_of(generation=4),
        now=NOW + timedelta(seconds=after),
        policy=GRACE_POLICY,
    )
    assert verdict == Grace(generation=4, expires_at=LATER)


def test_a_rotation_stamped_by_a_fast_clock_is_inside_the_window() -> None:
    verdict = refresh_verdict(
        refresh_claims(3),
        session_of(generation=4, rotated_at=NOW + timedelta(seconds=5)),
        now=NOW,
        policy=GRACE_POLICY,
    )
    assert isinstance(verdict, Grace)


@pytest.mark.parametrize(
    ("gen", "stored", "after"),
    [
        (3, 4, 10.001),  # the predecessor, after the window
        (3, 4, 3600),
        (2, 4, 0),  # two generations behind, at once
        (0, 9, 1),
        (5, 4, 0),  # ahead of the store: never issued by us
    ],
)
def test_anything_else_is_reuse(gen: int, stored: int, after: float) -> None:
    verdict = refresh_verdict(
        refresh_claims(gen),
        session_of(generation=stored),
        now=NOW + timedelta(seconds=after),
        policy=GRACE_POLICY,
    )
    assert verdict == Reused()


def test_a_zero_window_is_strict() -> None:
    strict = Policy(secret=b"s" * 32, refresh_grace=timedelta(0))
    verdict = refresh_verdict(refresh_claims(3), session_of(generation=4), now=NOW, policy=strict)
    assert verdict == Reused()


@pytest.mark.parametrize(
    "session",
    [None, session_of(generation=4, ended=True), session_of(generation=4, user_id="user-2")],
    ids=["gone", "ended", "another-user"],
)
def test_a_gone_or_ended_session_is_revoked_even_inside_the_window(
    session: SessionRecord | None,
) -> None:
    verdict = refresh_verdict(refresh_claims(3), session, now=NOW, policy=GRACE_POLICY)
    assert verdict == Revoked(by="session")


def test_an_expired_session_is_expired_not_reuse() -> None:
    expired = replace(session_of(generation=4), expires_at=NOW)
    assert refresh_verdict(refresh_claims(3), expired, now=NOW, policy=GRACE_POLICY) == Expired()
    assert refresh_verdict(refresh_claims(4), expired, now=NOW, policy=GRACE_POLICY) == Expired()


# --- successor ids ----------------------------------------------------------------------------


def test_successor_jti_is_derived_and_names_one_generation() -> None:
    secret = b"s" * 32
    first = successor_jti(secret, "sid-1", 1)
    assert first == successor_jti(secret, "sid-1", 1)  # every process names the same one
    assert len(first) == 22
    assert set(first) <= set(string.ascii_letters + string.digits + "-_")
    others = {
        successor_jti(secret, "sid-1", 2),
        successor_jti(secret, "sid-2", 1),
        successor_jti(b"t" * 32, "sid-1", 1),
        successor_jti(secret, "sid-11", 1),  # no ambiguity between sid and generation
        successor_jti(secret, "sid-1", 11),
    }
    assert first not in others
    assert len(others) == 5


# --- lifetimes --------------------------------------------------------------------------------

LIFETIMES = Policy(
    secret=b"s" * 32,
    access_lifetime=timedelta(minutes=15),
    refresh_lifetime=timedelta(days=7),
    session_lifetime=timedelta(days=30),
    idle_timeout=timedelta(days=2),
)


def test_session_expiry_is_the_idle_end_until_the_absolute_end_is_nearer() -> None:
    start = session_start(NOW)
    assert session_expiry(start, now=NOW, policy=LIFETIMES) == NOW + timedelta(days=2)
    late = NOW + timedelta(days=29)
    assert session_expiry(start, now=late, policy=LIFETIMES) == NOW + timedelta(days=30)
    assert absolute_end(start, policy=LIFETIMES) == NOW + timedelta(days=30)


def test_tokens_never_outlive_their_session() -> None:
    end = NOW + timedelta(minutes=5)
    assert token_expiry(timedelta(hours=1), session_expires_at=end, now=NOW) == end
    assert token_expiry(timedelta(minutes=1), session_expires_at=end, now=NOW) == NOW + timedelta(
        minutes=1
    )


def test_a_new_session_is_generation_zero_with_its_client_truncated() -> None:
    session = new_session(
        sid="sid-1",
        user_id="user-1",
        now=NOW,
        policy=LIFETIMES,
        user_agent="A" * 1000,
        ip="2001:db8::1%" + "z" * 100,
    )
    assert session.generation == 0
    assert session.created_at == session.last_used_at == session.rotated_at == NOW
    assert session.expires_at == NOW + timedelta(days=2)
    assert session.user_agent == "A" * MAX_USER_AGENT_CHARS == "A" * 256
    assert session.ip is not None
    assert len(session.ip) == 64
    assert session.ended_at is None


def test_a_session_revocation_outlives_every_access_token_of_the_session() -> None:
    policy = Policy(secret=b"s" * 32, leeway=timedelta(seconds=30))
    entry = session_revocation("sid-1", now=NOW, policy=policy)
    assert entry.key == session_key("sid-1")
    assert entry.kind is RevocationKind.SESSION
    assert entry.expires_at == NOW + policy.access_lifetime + timedelta(seconds=60)


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
    # The store path refuses the token it names.
    assert revocation_verdict(claims, [entry]) != Valid()


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
