"""The challenge transition table is total and matches the one documented in challenge.py.

In the style of h2's ``tests/test_state_machines.py``: for every :class:`Phase` and every
input, representative states in that phase are driven through the pure functions and the
outcome type must be one the module docstring's table allows. The table itself is parsed
from the docstring, so the documentation and the code cannot drift apart silently; the
docstring must also be exactly what :func:`render_table` makes of :data:`TRANSITIONS`, the
data the code dispatches through.
"""

from __future__ import annotations

import enum
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import pytest

import otpcore.domain.challenge as challenge
from otpcore.domain.challenge import (
    TRANSITIONS,
    Accepted,
    CodeSpent,
    Cooldown,
    Expired,
    Issued,
    LockedOut,
    NoChallenge,
    Phase,
    Rejected,
    Transition,
    WrongLink,
    phase,
    redeem_link,
    render_table,
    request_code,
    submit_guess,
    submit_unbound_guess,
)
from otpcore.domain.codes import hash_code
from otpcore.domain.policy import Policy
from otpcore.domain.records import ChallengeState

SECRET = b"transition-table-secret-0123456789ab"
EMAIL = "alice@example.com"
NOW = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
POLICY = Policy(
    secret=SECRET,
    code_length=6,
    code_lifetime=timedelta(minutes=5),
    max_attempts=3,
    resend_cooldown=timedelta(seconds=30),
    backoff=((0, timedelta(0)), (3, timedelta(minutes=10))),
    max_failures=7,
    lockout_duration=timedelta(hours=1),
)
CODE_HASH = hash_code(SECRET, EMAIL, "123456")
WRONG_HASH = hash_code(SECRET, EMAIL, "654321")
NEW_HASH = hash_code(SECRET, EMAIL, "111111")
# Keyed hashes of the pending code's magic link and of another one (issue 9).
LINK_HASH = "link-hash-of-the-pending-code-0123456789abc"
WRONG_LINK_HASH = "link-hash-of-some-other-link-0123456789abcd"


class Input(enum.Enum):
    REQUEST_CODE = "request_code"
    RIGHT_GUESS = "right guess"
    WRONG_GUESS = "wrong guess"
    RIGHT_UNBOUND = "right unbound guess"
    WRONG_UNBOUND = "wrong unbound guess"
    RIGHT_LINK = "right link"
    WRONG_LINK = "wrong link"


Outcome = (
    Issued
    | Cooldown
    | LockedOut
    | Accepted
    | Rejected
    | CodeSpent
    | Expired
    | NoChallenge
    | WrongLink
)
OUTCOME_TYPES: dict[str, type[Outcome]] = {
    t.__name__: t
    for t in (
        Issued,
        Cooldown,
        LockedOut,
        Accepted,
        Rejected,
        CodeSpent,
        Expired,
        NoChallenge,
        WrongLink,
    )
}
#: The table's column each of this test's inputs falls in.
COLUMN = {
    Input.REQUEST_CODE: challenge.Input.REQUEST_CODE,
    Input.RIGHT_GUESS: challenge.Input.SUBMIT_GUESS,
    Input.WRONG_GUESS: challenge.Input.SUBMIT_GUESS,
    Input.RIGHT_UNBOUND: challenge.Input.SUBMIT_UNBOUND,
    Input.WRONG_UNBOUND: challenge.Input.SUBMIT_UNBOUND,
    Input.RIGHT_LINK: challenge.Input.REDEEM_LINK,
    Input.WRONG_LINK: challenge.Input.REDEEM_LINK,
}
#: Each documented table's header (the code's inputs, then the link's).
HEADERS = (
    ["phase", "request_code", "submit_guess", "submit_unbound"],
    ["phase", "redeem_link"],
)


def parse_documented_table() -> dict[tuple[Phase, Input], frozenset[type[Outcome]]]:
    """Read the reStructuredText tables in ``otpcore.domain.challenge.__doc__``."""
    doc = challenge.__doc__
    assert doc is not None
    lines = doc.splitlines()
    rules = [i for i, line in enumerate(lines) if re.fullmatch(r"=+( +=+)+", line)]
    assert len(rules) == 3 * len(HEADERS), "expected simple rST tables: top, header, bottom rule"

    def outcomes(cell: str) -> frozenset[type[Outcome]]:
        named = {w for w in re.findall(r"[A-Z][A-Za-z]+", cell) if w in OUTCOME_TYPES}
        assert named, f"no outcome named in {cell!r}"
        return frozenset(OUTCOME_TYPES[w] for w in named)

    table: dict[tuple[Phase, Input], frozenset[type[Outcome]]] = {}
    for number, expected_header in enumerate(HEADERS):
        top, head, bottom = rules[3 * number : 3 * number + 3]
        spans = [m.span() for m in re.finditer(r"=+", lines[top])]
        header = [lines[top + 1][a:b].strip() for a, b in spans]
        assert header == expected_header
        assert head == top + 2
        for line in lines[head + 1 : bottom]:
            last = len(spans) - 1
            cells = [
                line[a:b].strip() if i < last else line[a:].strip()
                for i, (a, b) in enumerate(spans)
            ]
            row_phase = Phase[cells[0]]
            for column, cell in zip(header[1:], cells[1:], strict=True):
                for inp in Input:
                    if COLUMN[inp].value == column:
                        table[(row_phase, inp)] = outcomes(cell)
    return table


DOCUMENTED = parse_documented_table()

#: The same table written out by hand: what the docstring must keep saying. A guess that is
#: evaluated is Accepted when right and Rejected when wrong, so the hand table splits them.
EXPECTED: dict[tuple[Phase, Input], frozenset[type[Outcome]]] = {
    (Phase.IDLE, Input.REQUEST_CODE): frozenset({Issued, Cooldown}),
    (Phase.IDLE, Input.RIGHT_GUESS): frozenset({NoChallenge}),
    (Phase.IDLE, Input.WRONG_GUESS): frozenset({NoChallenge}),
    (Phase.PENDING, Input.REQUEST_CODE): frozenset({Issued, Cooldown}),
    (Phase.PENDING, Input.RIGHT_GUESS): frozenset({Accepted}),
    (Phase.PENDING, Input.WRONG_GUESS): frozenset({Rejected}),
    (Phase.EXHAUSTED, Input.REQUEST_CODE): frozenset({Issued, Cooldown}),
    (Phase.EXHAUSTED, Input.RIGHT_GUESS): frozenset({CodeSpent}),
    (Phase.EXHAUSTED, Input.WRONG_GUESS): frozenset({CodeSpent}),
    (Phase.EXPIRED, Input.REQUEST_CODE): frozenset({Issued, Cooldown}),
    (Phase.EXPIRED, Input.RIGHT_GUESS): frozenset({Expired}),
    (Phase.EXPIRED, Input.WRONG_GUESS): frozenset({Expired}),
    (Phase.ACCOUNT_LOCKED, Input.REQUEST_CODE): frozenset({LockedOut}),
    (Phase.ACCOUNT_LOCKED, Input.RIGHT_GUESS): frozenset({LockedOut}),
    (Phase.ACCOUNT_LOCKED, Input.WRONG_GUESS): frozenset({LockedOut}),
    # The unbound lane (issue 8): its own budget, whatever is left of the bound one.
    (Phase.IDLE, Input.RIGHT_UNBOUND): frozenset({NoChallenge}),
    (Phase.IDLE, Input.WRONG_UNBOUND): frozenset({NoChallenge}),
    (Phase.PENDING, Input.RIGHT_UNBOUND): frozenset({Accepted, CodeSpent}),
    (Phase.PENDING, Input.WRONG_UNBOUND): frozenset({Rejected, CodeSpent}),
    (Phase.EXHAUSTED, Input.RIGHT_UNBOUND): frozenset({Accepted, CodeSpent, Expired}),
    (Phase.EXHAUSTED, Input.WRONG_UNBOUND): frozenset({Rejected, CodeSpent, Expired}),
    (Phase.EXPIRED, Input.RIGHT_UNBOUND): frozenset({Expired}),
    (Phase.EXPIRED, Input.WRONG_UNBOUND): frozenset({Expired}),
    (Phase.ACCOUNT_LOCKED, Input.RIGHT_UNBOUND): frozenset({LockedOut}),
    (Phase.ACCOUNT_LOCKED, Input.WRONG_UNBOUND): frozenset({LockedOut}),
    # The magic link (issue 9): a wrong one is WrongLink in every phase; the right one logs
    # in whatever is left of either guess budget, but not once the code expired or the
    # binding is locked (a locked state without a code has no link to match).
    (Phase.IDLE, Input.RIGHT_LINK): frozenset({WrongLink}),
    (Phase.IDLE, Input.WRONG_LINK): frozenset({WrongLink}),
    (Phase.PENDING, Input.RIGHT_LINK): frozenset({Accepted}),
    (Phase.PENDING, Input.WRONG_LINK): frozenset({WrongLink}),
    (Phase.EXHAUSTED, Input.RIGHT_LINK): frozenset({Accepted}),
    (Phase.EXHAUSTED, Input.WRONG_LINK): frozenset({WrongLink}),
    (Phase.EXPIRED, Input.RIGHT_LINK): frozenset({Expired}),
    (Phase.EXPIRED, Input.WRONG_LINK): frozenset({WrongLink}),
    (Phase.ACCOUNT_LOCKED, Input.RIGHT_LINK): frozenset({LockedOut, WrongLink}),
    (Phase.ACCOUNT_LOCKED, Input.WRONG_LINK): frozenset({WrongLink}),
}


@dataclass(frozen=True)
class Example:
    """A representative state in one phase, and the exact outcome of each input on it."""

    name: str
    state: ChallengeState
    request: Outcome | type[Outcome]
    right: Outcome | type[Outcome]
    wrong: Outcome | type[Outcome]
    #: The unbound lane's outcomes; ``None``: the same as the bound lane's.
    right_unbound: Outcome | type[Outcome] | None = None
    wrong_unbound: Outcome | type[Outcome] | None = None
    #: The right link's outcome; ``None``: what the phase gives (:data:`RIGHT_LINK_BY_PHASE`).
    right_link: Outcome | type[Outcome] | None = None


def ago(**kwargs: float) -> datetime:
    return NOW - timedelta(**kwargs)


PENDING_BASE = ChallengeState(
    code_hash=CODE_HASH,
    issued_at=ago(seconds=10),
    last_request_at=ago(seconds=10),
    version=4,
    link_hash=LINK_HASH,
)


def pending(**overrides: Any) -> ChallengeState:
    """A state with ``CODE_HASH`` issued ten seconds ago, adjusted by ``overrides``."""
    return replace(PENDING_BASE, **overrides)


# Cooldown retry_after values below are computed by hand from POLICY.
EXAMPLES: dict[Phase, list[Example]] = {
    Phase.IDLE: [
        Example("never requested", ChallengeState(), Issued, NoChallenge(), NoChallenge()),
        Example(
            "just consumed, inside the resend cooldown",
            ChallengeState(attempts=1, last_request_at=ago(seconds=20), version=2),
            Cooldown(retry_after=10),
            NoChallenge(),
            NoChallenge(),
        ),
        Example(
            "consumed long ago",
            ChallengeState(attempts=1, last_request_at=ago(hours=2), version=2),
            Issued,
            NoChallenge(),
            NoChallenge(),
        ),
        Example(
            "lock lapsed at the cap, one code per lockout period",
            ChallengeState(
                failures=7,
                last_failure_at=ago(hours=1),
                last_request_at=ago(minutes=61),
                version=9,
            ),
            Issued,
            NoChallenge(),
            NoChallenge(),
        ),
    ],
    Phase.PENDING: [
        Example(
            "fresh code, inside the resend cooldown",
            pending(),
            Cooldown(retry_after=20),
            Accepted,
            Rejected,
        ),
        Example(
            "older code, resend allowed",
            pending(issued_at=ago(minutes=2), last_request_at=ago(minutes=2), attempts=2),
            Issued,
            Accepted,
            Rejected,
        ),
        Example(
            "one failure short of the cap",
            pending(failures=6, last_failure_at=ago(seconds=5)),
            Cooldown(retry_after=620),
            Accepted,
            Rejected,
        ),
        Example(
            "unbound budget spent, bound budget whole",
            pending(unbound_attempts=3),
            Cooldown(retry_after=20),
            Accepted,
            Rejected,
            CodeSpent(),
            CodeSpent(),
        ),
        Example(
            "expires in a microsecond",
            pending(
                issued_at=NOW - POLICY.code_lifetime + timedelta(microseconds=1),
                last_request_at=NOW - POLICY.code_lifetime + timedelta(microseconds=1),
            ),
            Issued,
            Accepted,
            Rejected,
        ),
    ],
    Phase.EXHAUSTED: [
        Example(
            "attempts spent, inside the backoff",
            pending(attempts=3, failures=3, last_failure_at=ago(seconds=1)),
            Cooldown(retry_after=620),
            CodeSpent(),
            CodeSpent(),
            Accepted,
            Rejected,
        ),
        Example(
            "both budgets spent",
            pending(attempts=3, unbound_attempts=3, failures=3, last_failure_at=ago(seconds=1)),
            Cooldown(retry_after=620),
            CodeSpent(),
            CodeSpent(),
            CodeSpent(),
            CodeSpent(),
        ),
        Example(
            "attempts spent, backoff over",
            pending(
                attempts=3,
                failures=3,
                issued_at=ago(minutes=11),
                last_request_at=ago(minutes=11),
                last_failure_at=ago(minutes=10),
            ),
            Issued,
            CodeSpent(),
            CodeSpent(),
            Expired(),
            Expired(),
        ),
    ],
    Phase.EXPIRED: [
        Example(
            "expired this instant",
            pending(issued_at=NOW - POLICY.code_lifetime, last_request_at=ago(minutes=5)),
            Issued,
            Expired(),
            Expired(),
        ),
        Example(
            "expired but the backoff is longer than the lifetime",
            pending(
                failures=4,
                issued_at=ago(minutes=6),
                last_request_at=ago(minutes=6),
                last_failure_at=ago(minutes=7),
            ),
            Cooldown(retry_after=270),
            Expired(),
            Expired(),
        ),
    ],
    Phase.ACCOUNT_LOCKED: [
        Example(
            "locked with a code pending",
            pending(failures=7, attempts=1, last_failure_at=ago(seconds=1)),
            LockedOut(retry_after=3599),
            LockedOut(retry_after=3599),
            LockedOut(retry_after=3599),
        ),
        Example(
            "locked, no code, a microsecond before the lock lapses",
            ChallengeState(
                failures=9,
                last_failure_at=NOW - POLICY.lockout_duration + timedelta(microseconds=1),
                last_request_at=ago(hours=2),
                version=30,
            ),
            LockedOut(retry_after=1),
            LockedOut(retry_after=1),
            LockedOut(retry_after=1),
            right_link=WrongLink(),
        ),
    ],
}

RIGHT_LINK_BY_PHASE: dict[Phase, Outcome | type[Outcome]] = {
    Phase.IDLE: WrongLink(),
    Phase.PENDING: Accepted,
    Phase.EXHAUSTED: Accepted,
    Phase.EXPIRED: Expired(),
    Phase.ACCOUNT_LOCKED: LockedOut,
}

CASES = [
    pytest.param(p, example, inp, id=f"{p.name}-{example.name}-{inp.name}")
    for p in Phase
    for example in EXAMPLES[p]
    for inp in Input
]


def run(state: ChallengeState, inp: Input) -> Outcome:
    if inp is Input.REQUEST_CODE:
        return request_code(state, code_hash=NEW_HASH, now=NOW, policy=POLICY)
    if inp in (Input.RIGHT_LINK, Input.WRONG_LINK):
        link = LINK_HASH if inp is Input.RIGHT_LINK else WRONG_LINK_HASH
        return redeem_link(state, presented_hash=link, now=NOW, policy=POLICY)
    presented = CODE_HASH if inp in (Input.RIGHT_GUESS, Input.RIGHT_UNBOUND) else WRONG_HASH
    if inp in (Input.RIGHT_UNBOUND, Input.WRONG_UNBOUND):
        return submit_unbound_guess(state, presented_hash=presented, now=NOW, policy=POLICY)
    return submit_guess(state, presented_hash=presented, now=NOW, policy=POLICY)


def test_documented_table_is_total() -> None:
    assert set(DOCUMENTED) == set(itertools.product(Phase, Input))


def test_documented_table_says_what_we_expect() -> None:
    for key, allowed in EXPECTED.items():
        assert allowed <= DOCUMENTED[key], key
    # Only the evaluated-guess cells name outcomes of both the right and the wrong input.
    assert DOCUMENTED[(Phase.PENDING, Input.RIGHT_GUESS)] == frozenset({Accepted, Rejected})
    for evaluated in (Phase.PENDING, Phase.EXHAUSTED):
        assert DOCUMENTED[(evaluated, Input.RIGHT_UNBOUND)] == (
            EXPECTED[(evaluated, Input.RIGHT_UNBOUND)] | EXPECTED[(evaluated, Input.WRONG_UNBOUND)]
        )
    links = (Input.RIGHT_LINK, Input.WRONG_LINK)
    for p in Phase:
        assert DOCUMENTED[(p, Input.RIGHT_LINK)] == (
            EXPECTED[(p, Input.RIGHT_LINK)] | EXPECTED[(p, Input.WRONG_LINK)]
        )
    unbound = (Input.RIGHT_UNBOUND, Input.WRONG_UNBOUND)
    for key, allowed in DOCUMENTED.items():
        if key[1] in links:
            continue
        if key[1] in unbound and key[0] in (Phase.PENDING, Phase.EXHAUSTED):
            continue
        if key[0] is not Phase.PENDING or key[1] is Input.REQUEST_CODE or key[1] in unbound:
            assert allowed == EXPECTED[key], key


def test_every_phase_and_input_is_exercised() -> None:
    covered = {(p, inp) for p in Phase for _ in EXAMPLES[p] for inp in Input}
    assert covered == set(itertools.product(Phase, Input))


def test_every_allowed_outcome_is_witnessed() -> None:
    """Each "X, or Y" cell has a representative state that produces X and one for Y."""
    for (p, inp), allowed in EXPECTED.items():
        seen = {type(run(example.state, inp)) for example in EXAMPLES[p]}
        assert seen == allowed, (p, inp, seen)


@pytest.mark.parametrize(("expected_phase", "example", "inp"), CASES)
def test_transition(expected_phase: Phase, example: Example, inp: Input) -> None:
    state = example.state
    assert phase(state, now=NOW, policy=POLICY) is expected_phase

    outcome = run(state, inp)

    assert type(outcome) in DOCUMENTED[(expected_phase, inp)]
    assert type(outcome) in EXPECTED[(expected_phase, inp)]
    want = {
        Input.REQUEST_CODE: example.request,
        Input.RIGHT_GUESS: example.right,
        Input.WRONG_GUESS: example.wrong,
        Input.RIGHT_UNBOUND: example.right
        if example.right_unbound is None
        else example.right_unbound,
        Input.WRONG_UNBOUND: example.wrong
        if example.wrong_unbound is None
        else example.wrong_unbound,
        Input.RIGHT_LINK: RIGHT_LINK_BY_PHASE[expected_phase]
        if example.right_link is None
        else example.right_link,
        Input.WRONG_LINK: WrongLink(),
    }[inp]
    if isinstance(want, type):
        assert isinstance(outcome, want)
    else:
        assert outcome == want

    match outcome:
        case Issued(state=new) | Accepted(state=new) | Rejected(state=new):
            assert new.version == state.version + 1
            assert new.failures <= state.failures + 1
            if inp is Input.WRONG_UNBOUND:
                assert new.failures == state.failures  # unbound guesses count no failure
                assert new.attempts == state.attempts  # nor touch the bound budget
            if inp is Input.RIGHT_LINK:
                # A link is no guess: neither budget moves; code and link are consumed.
                assert (new.attempts, new.unbound_attempts) == (
                    state.attempts,
                    state.unbound_attempts,
                )
                assert (new.code_hash, new.link_hash, new.failures) == (None, None, 0)
        case Cooldown(retry_after=retry) | LockedOut(retry_after=retry):
            assert retry > 0
            assert not hasattr(outcome, "state")
        case CodeSpent() | Expired() | NoChallenge() | WrongLink():
            assert not hasattr(outcome, "state")


@pytest.mark.parametrize("p", list(Phase))
def test_issue_from_any_phase_keeps_failures(p: Phase) -> None:
    for example in EXAMPLES[p]:
        outcome = run(example.state, Input.REQUEST_CODE)
        if isinstance(outcome, Issued):
            assert outcome.state.failures == example.state.failures
            assert outcome.state.last_failure_at == example.state.last_failure_at
            assert outcome.state.code_hash == NEW_HASH
            assert outcome.state.attempts == 0
            assert phase(outcome.state, now=NOW, policy=POLICY) is Phase.PENDING


def test_expired_guess_is_expired() -> None:
    state = pending(issued_at=ago(minutes=5))
    assert submit_guess(state, presented_hash=CODE_HASH, now=NOW, policy=POLICY) == Expired()


def test_exhausted_guess_is_code_spent_even_when_right() -> None:
    state = pending(attempts=3, failures=3, last_failure_at=ago(seconds=1))
    assert submit_guess(state, presented_hash=CODE_HASH, now=NOW, policy=POLICY) == CodeSpent()


def test_account_locked_request_is_locked_out_not_a_cooldown() -> None:
    state = pending(failures=7, last_failure_at=ago(minutes=30))
    outcome = request_code(state, code_hash=NEW_HASH, now=NOW, policy=POLICY)
    assert outcome == LockedOut(retry_after=1800)


def test_pending_right_guess_consumes_and_resets() -> None:
    state = pending(attempts=1, failures=5, last_failure_at=ago(seconds=3))
    outcome = submit_guess(state, presented_hash=CODE_HASH, now=NOW, policy=POLICY)
    assert isinstance(outcome, Accepted)
    assert outcome.state.code_hash is None
    assert outcome.state.attempts == 2
    assert outcome.state.failures == 0
    assert outcome.state.last_failure_at is None
    assert phase(outcome.state, now=NOW, policy=POLICY) is Phase.IDLE


def test_pending_wrong_guess_is_counted() -> None:
    state = pending(attempts=1, failures=5, last_failure_at=ago(seconds=3))
    outcome = submit_guess(state, presented_hash=WRONG_HASH, now=NOW, policy=POLICY)
    assert isinstance(outcome, Rejected)
    assert outcome.remaining_attempts == 1
    assert outcome.ends_guessing is False
    assert outcome.state.attempts == 2
    assert outcome.state.failures == 6
    assert outcome.state.last_failure_at == NOW
    assert outcome.state.code_hash == CODE_HASH


@pytest.mark.parametrize(
    "make",
    [
        lambda: ChallengeState(),
        lambda: pending(issued_at=ago(minutes=5)),
        lambda: pending(attempts=3),
        lambda: pending(failures=7, last_failure_at=ago(seconds=1)),
    ],
    ids=["idle", "expired", "exhausted", "account-locked"],
)
def test_refusals_are_repeatable_and_change_nothing(make: Callable[[], ChallengeState]) -> None:
    state = make()
    snapshot = make()
    first = run(state, Input.RIGHT_GUESS)
    assert not isinstance(first, Accepted | Rejected)
    assert run(state, Input.RIGHT_GUESS) == first
    assert run(state, Input.WRONG_GUESS) == first
    assert state == snapshot


# --- the table is data, and the code runs on it --------------------------------------------


def test_docstring_table_is_rendered_from_the_data() -> None:
    assert challenge.__doc__ is not None
    assert render_table() in challenge.__doc__


def test_data_table_is_total() -> None:
    assert set(TRANSITIONS) == set(itertools.product(Phase, challenge.Input))


def test_data_table_allows_what_we_expect() -> None:
    for p in Phase:
        for column in challenge.Input:
            expected = frozenset().union(
                *(EXPECTED[(p, inp)] for inp in Input if COLUMN[inp] is column)
            )
            assert frozenset(TRANSITIONS[(p, column)].outcomes) == expected, (p, column)


def _patched(
    monkeypatch: pytest.MonkeyPatch, key: tuple[Phase, challenge.Input], cell: Transition | None
) -> None:
    table = dict(TRANSITIONS)
    if cell is None:
        del table[key]
    else:
        table[key] = cell
    monkeypatch.setattr(challenge, "TRANSITIONS", MappingProxyType(table))


def test_decisions_are_looked_up_in_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    state = pending(issued_at=ago(minutes=5))
    assert phase(state, now=NOW, policy=POLICY) is Phase.EXPIRED
    key = (Phase.EXPIRED, challenge.Input.SUBMIT_GUESS)
    _patched(monkeypatch, key, Transition((NoChallenge,), lambda *_: NoChallenge()))
    assert submit_guess(state, presented_hash=CODE_HASH, now=NOW, policy=POLICY) == NoChallenge()


def test_a_pair_absent_from_the_table_is_illegal(monkeypatch: pytest.MonkeyPatch) -> None:
    _patched(monkeypatch, (Phase.IDLE, challenge.Input.REQUEST_CODE), None)
    with pytest.raises(LookupError, match="IDLE"):
        request_code(ChallengeState(), code_hash=NEW_HASH, now=NOW, policy=POLICY)


def test_an_outcome_the_cell_does_not_list_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    # A rule that would accept an expired code is stopped by its own cell of the table.
    key = (Phase.EXPIRED, challenge.Input.SUBMIT_GUESS)
    _patched(monkeypatch, key, Transition((Expired,), lambda state, *_: Accepted(state=state)))
    with pytest.raises(AssertionError, match="Accepted"):
        submit_guess(
            pending(issued_at=ago(minutes=5)), presented_hash=CODE_HASH, now=NOW, policy=POLICY
        )


# --- Rejected.ends_guessing: the "no further guess" rule the service reports --------------


@pytest.mark.parametrize(
    ("overrides", "remaining", "ends"),
    [
        ({"attempts": 0, "failures": 0}, 2, False),
        ({"attempts": 1, "failures": 5}, 1, False),
        ({"attempts": 2, "failures": 2}, 0, True),  # the code's last attempt
        ({"attempts": 0, "failures": 6}, 2, True),  # the account's failure cap
        ({"attempts": 2, "failures": 6}, 0, True),  # both at once
    ],
)
def test_rejected_says_whether_it_ends_guessing(
    overrides: dict[str, int], remaining: int, ends: bool
) -> None:
    state = pending(last_failure_at=ago(seconds=3), **overrides)
    outcome = submit_guess(state, presented_hash=WRONG_HASH, now=NOW, policy=POLICY)
    assert isinstance(outcome, Rejected)
    assert outcome.remaining_attempts == remaining
    assert outcome.ends_guessing is ends
    after = submit_guess(outcome.state, presented_hash=CODE_HASH, now=NOW, policy=POLICY)
    assert isinstance(after, CodeSpent | LockedOut) is ends


# --- the magic link (issue 9) ----------------------------------------------------------------


def test_a_new_code_replaces_the_link() -> None:
    state = pending(issued_at=ago(minutes=2), last_request_at=ago(minutes=2))
    with_link = request_code(state, code_hash=NEW_HASH, link_hash="new", now=NOW, policy=POLICY)
    assert isinstance(with_link, Issued)
    assert with_link.state.link_hash == "new"
    without = request_code(state, code_hash=NEW_HASH, now=NOW, policy=POLICY)
    assert isinstance(without, Issued)
    assert without.state.link_hash is None
    # The old link is dead on the new code.
    old = redeem_link(without.state, presented_hash=LINK_HASH, now=NOW, policy=POLICY)
    assert old == WrongLink()


@pytest.mark.parametrize("guess", [submit_guess, submit_unbound_guess])
def test_a_right_code_spends_the_link(guess: Callable[..., Any]) -> None:
    outcome = guess(pending(), presented_hash=CODE_HASH, now=NOW, policy=POLICY)
    assert isinstance(outcome, Accepted)
    assert outcome.state.link_hash is None
    after = redeem_link(outcome.state, presented_hash=LINK_HASH, now=NOW, policy=POLICY)
    assert after == WrongLink()


def test_a_used_link_spends_the_code() -> None:
    outcome = redeem_link(pending(), presented_hash=LINK_HASH, now=NOW, policy=POLICY)
    assert isinstance(outcome, Accepted)
    assert submit_guess(outcome.state, presented_hash=CODE_HASH, now=NOW, policy=POLICY) == (
        NoChallenge()
    )
    assert redeem_link(outcome.state, presented_hash=LINK_HASH, now=NOW, policy=POLICY) == (
        WrongLink()
    )
