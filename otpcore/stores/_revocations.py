"""What ``revoke_many`` answers, shared by the database stores."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from otpcore.domain.records import Revocation

__all__ = ["distinct", "inserted_answers"]


def distinct(revocations: Sequence[Revocation]) -> dict[str, Revocation]:
    """Each key's first entry, in order: the ones a multi-row insert writes."""
    first: dict[str, Revocation] = {}
    for revocation in revocations:
        first.setdefault(revocation.key, revocation)
    return first


def inserted_answers(revocations: Sequence[Revocation], inserted: Collection[str]) -> list[bool]:
    """Per entry, in order: whether this call inserted it (a repeated key's later entries
    did not)."""
    seen: set[str] = set()
    answers = []
    for revocation in revocations:
        answers.append(revocation.key in inserted and revocation.key not in seen)
        seen.add(revocation.key)
    return answers
