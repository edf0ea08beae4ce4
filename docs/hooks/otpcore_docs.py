"""MkDocs hooks that keep the docs true to the code; every problem is a warning, which
``mkdocs build --strict`` (``scripts/docs.sh``) turns into a failed build.

- The configuration table is generated from ``OTPAuthConfig`` (see below).
- The error-codes page must name every ``otpcore_fastapi.ErrorCode``.
- Sphinx roles (``:meth:``, ``:class:``, …) left in docstrings are dropped from the HTML.
- Every test a page cites as ``path.py::test_name`` (or a test file path) must exist, so the
  security model cannot point at a renamed or deleted test.

A page containing the marker ``<!-- otpcore:config-table -->`` gets a table of every annotated
class attribute of ``otpcore_fastapi.config.OTPAuthConfig``, in source order: its name, type
(as written in the annotation), default (``required`` when it has none) and meaning. The
meaning is the attribute's ``#:`` comment, or the string literal right after it, or else the
entry in ``FALLBACK`` below. A setting with none of these is reported as a warning, which
``mkdocs build --strict`` turns into a failed build: a new setting cannot go undocumented.
"""

from __future__ import annotations

import ast
import inspect
import logging
import re
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

MARKER = "<!-- otpcore:config-table -->"
ERRORS_PAGE = "reference/errors.md"
ROOT = Path(__file__).resolve().parents[2]
# `tests/…/test_x.py::test_name`, `tests/…/test_x.py`, `otpcore/testing/contract.py::test_name`
# Sphinx roles some docstrings use (":meth:`x`"): Markdown renders the role name literally.
SPHINX_ROLE = re.compile(r":(?:meth|class|func|mod|data|attr|exc|obj):(?=<code>)")
TEST_REFERENCE = re.compile(r"`((?:tests/[\w/]+|otpcore/testing/\w+)\.py)(?:::(\w+))?`")

log = logging.getLogger("mkdocs.plugins.otpcore_docs")

# Meanings for the reference's settings, which carry no ``#:`` comment in the source.
FALLBACK: dict[str, str] = {
    "secret_key": (
        "HMAC key for codes, and for tokens with an `HS*` algorithm. Outside developer mode at "
        "least 32 bytes (48/64 for HS384/HS512) and not the reference README's placeholder; "
        "generate one with `openssl rand -hex 32` and read it from the environment."
    ),
    "developer_mode": (
        "Every code is zeros and short secrets are accepted; logs a warning, and refuses to "
        "start when `OTPCORE_ENV` or `ENVIRONMENT` is `production`/`prod`."
    ),
    "cookie_secure": "`Secure` attribute of the refresh cookie; keep it on behind https.",
    "refresh_token_delivery": (
        "Where the refresh token travels: an `HttpOnly` cookie, the JSON body, or both."
    ),
    "access_token_lifetime": "Lifetime of an access token.",
    "refresh_token_lifetime": (
        "Lifetime of a refresh token; every refresh issues a new one that lives this long."
    ),
    "otp_length": "Digits per code, 4 to 10 (NIST SP 800-63B: at least 6).",
    "otp_expiry": "How long a code can be redeemed (SP 800-63B: 10 minutes or less).",
    "max_otp_attempts": "Guesses evaluated per code, across all workers, before it is dead.",
    "auto_create_user": "Create an account for an unknown e-mail address.",
    "algorithm": (
        "Token signature algorithm: `HS256`/`HS384`/`HS512` over `secret_key`, or `RS256`, "
        "`ES256`, `EdDSA` with `private_key`."
    ),
    "issuer": "`iss` claim to set in every token and require on every token.",
    "audience": "`aud` claim to set in every token and require on every token.",
    "cookie_name": "Name of the refresh cookie.",
    "cookie_domain": "`Domain` attribute of the refresh cookie; `None` leaves it host-only.",
    "cookie_samesite": "`SameSite` of the refresh cookie; `none` requires `cookie_secure`.",
}


def _meanings(source: str) -> dict[str, str]:
    """``#:`` comments and trailing string literals of the class body's annotated names."""
    tree = ast.parse(source)
    lines = source.splitlines()
    cls = next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.name == "OTPAuthConfig"
    )
    found: dict[str, str] = {}
    body = cls.body
    for index, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name = node.target.id
        comment: list[str] = []
        row = node.lineno - 2  # the line above, 0-based
        while row >= 0 and lines[row].strip().startswith("#:"):
            comment.insert(0, lines[row].strip()[2:].strip())
            row -= 1
        if comment:
            found[name] = " ".join(comment)
            continue
        following = body[index + 1] if index + 1 < len(body) else None
        if (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            found[name] = " ".join(inspect.cleandoc(following.value.value).split())
    return found


def _annotations_in_order(source: str) -> list[tuple[str, str]]:
    tree = ast.parse(source)
    cls = next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.name == "OTPAuthConfig"
    )
    return [
        (node.target.id, ast.unparse(node.annotation))
        for node in cls.body
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and not node.target.id.startswith("_")
    ]


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds and seconds % size == 0:
            count = seconds // size
            return f"{count} {'day' if unit == 'days' and count == 1 else unit}"
    return f"{value.total_seconds():g} s"


def _default(value: Any) -> str:
    if isinstance(value, timedelta):
        return _duration(value)
    if isinstance(value, MappingProxyType):
        value = dict(value)
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value!r}`"


def _cell(text: str) -> str:
    # Source comments use reST's double backticks; Markdown wants single ones. (A pipe inside
    # a code span needs no escape: the tables extension skips code spans.)
    return text.replace("``", "`").replace("|", "\\|").replace("\n", " ")


def config_table() -> str:
    """The Markdown table of every ``OTPAuthConfig`` setting."""
    from otpcore_fastapi import config as module

    source = inspect.getsource(module)
    meanings = {**FALLBACK, **_meanings(source)}
    rows = ["| setting | type | default | meaning |", "|---|---|---|---|"]
    missing = object()
    for name, annotation in _annotations_in_order(source):
        value = getattr(module.OTPAuthConfig, name, missing)
        default = "required" if value is missing else _default(value)
        meaning = meanings.get(name)
        if meaning is None:
            log.warning(
                "OTPAuthConfig.%s has no description: add a `#:` comment above it in "
                "otpcore_fastapi/config.py or an entry in docs/hooks/otpcore_docs.py",
                name,
            )
            meaning = ""
        rows.append(f"| `{name}` | `{annotation}` | {_cell(default)} | {_cell(meaning)} |")
    return "\n".join(rows)


def check_error_codes(markdown: str, page: str) -> None:
    """Warn about every ``ErrorCode`` the errors page misses, and every row that is none."""
    from otpcore_fastapi import ErrorCode

    for code in ErrorCode:
        if f"`{code.value}`" not in markdown:
            log.warning("%s does not document the error code %r", page, code.value)
    known = {code.value for code in ErrorCode}
    for listed in re.findall(r"^\| `(\w+)` \|", markdown, re.MULTILINE):
        if listed not in known:
            log.warning("%s lists %r, which is not an ErrorCode", page, listed)


def check_test_references(markdown: str, page: str) -> None:
    """Warn about every cited test file or test function that does not exist."""
    for match in TEST_REFERENCE.finditer(markdown):
        path, name = match.group(1), match.group(2)
        file = ROOT / path
        if not file.is_file():
            log.warning("%s cites %s, which does not exist", page, path)
            continue
        if name is not None and not re.search(
            rf"^\s*(?:async\s+)?def {re.escape(name)}\(", file.read_text(), re.MULTILINE
        ):
            log.warning("%s cites %s::%s, which does not exist", page, path, name)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Fill in the configuration table and check error codes and cited tests."""
    source = page.file.src_uri
    check_test_references(markdown, source)
    if source == ERRORS_PAGE:
        check_error_codes(markdown, source)
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, config_table())
    return markdown


def on_page_content(html: str, **_: Any) -> str:
    """Drop Sphinx role prefixes left in rendered docstrings, keeping the code span."""
    return SPHINX_ROLE.sub("", html)
