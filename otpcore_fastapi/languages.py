"""The requester's languages: ``Accept-Language`` read by werkzeug's header parser.

The core never parses HTTP: the binding turns the header into an ordered list of language
tags (:attr:`otpcore.delivery.CodeMail.languages`) and the templates pick a locale from it.
"""

from __future__ import annotations

from typing import Final

from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

__all__ = ["MAX_LANGUAGES", "accept_languages"]

#: At most this many tags are kept: each waits in the outbox with its message.
MAX_LANGUAGES: Final = 16


def accept_languages(header: str | None) -> tuple[str, ...]:
    """The language tags an ``Accept-Language`` value asks for, most wanted first.

    werkzeug parses the value (RFC 9110 §12.5.4): ranges ordered by weight, ties in header
    order, a range with an invalid ``q`` skipped. Of those, ranges with ``q=0`` (refused),
    the ``*`` wildcard (the default locale answers it anyway), values that are not language
    tags and repeats are left out; tags are lowercased, and at most :data:`MAX_LANGUAGES`
    are kept. A malformed value never raises: what cannot be read is left out.

    Args:
        header: The ``Accept-Language`` value, or ``None`` when the request has none.

    Returns:
        The tags, e.g. ``("de-ch", "de", "en")`` for ``"de-CH, de;q=0.9, en;q=0.8"``.
    """
    tags: list[str] = []
    for value, quality in parse_accept_header(header, LanguageAccept):
        tag = value.lower()
        if quality > 0 and _is_tag(tag) and tag not in tags:
            tags.append(tag)
            if len(tags) == MAX_LANGUAGES:
                break
    return tuple(tags)


def _is_tag(value: str) -> bool:
    # RFC 5646's shape only (subtags of 1-8 ASCII letters or digits), so that nothing else
    # travels with the message; which tags exist is the templates' business.
    return all(
        0 < len(part) <= 8 and part.isascii() and part.isalnum() for part in value.split("-")
    )
