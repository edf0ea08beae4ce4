"""The e-mail's text: ``string.Template`` files, overridable per application and per locale.

A template set is five files: ``subject.txt``, ``body.txt``, ``body.html``, and the magic-link
snippets ``link.txt`` and ``link.html`` (rendered into ``$link_block`` when a message carries a
link, else ``$link_block`` is empty). The defaults ship in this package (English). An
application overrides any of them in a directory (``dir/body.html`` for every locale,
``dir/de/body.html`` for German) or in a mapping with the same relative names. Every
placeholder is checked when the set is built, so a typo fails at startup, not on a send.

Variables: ``$code``, ``$code_spelled`` (digits separated by spaces, for screen readers),
``$email``, ``$minutes`` (until the code expires), ``$app_name``, ``$lang``, ``$subject``
(HTML only), ``$link`` and ``$link_block``, plus any declared in ``variables``. Every value is
HTML-escaped in ``.html`` files (autoescape); ``$link_block`` is the rendered snippet.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from string import Template
from types import MappingProxyType
from typing import Final

from otpcore.delivery.message import CodeMail

__all__ = ["Rendered", "Templates"]

NAMES: Final = ("subject.txt", "body.txt", "body.html", "link.txt", "link.html")
BUILTIN_VARIABLES: Final = frozenset(
    {"code", "code_spelled", "email", "minutes", "app_name", "lang", "subject", "link"}
)
_DEFAULTS: Final = Path(__file__).with_name("templates")
_LOCALE: Final = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$")


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered message text: subject, text body, HTML body, and its locale."""

    subject: str
    text: str
    html: str
    locale: str


class Templates:
    """A template set with its per-locale overrides, checked at construction.

    Args:
        directory: Overrides on disk: ``<name>`` for every locale, ``<locale>/<name>`` for one
            (locale directory names are language tags, e.g. ``de`` or ``pt-br``).
        overrides: Overrides as text, keyed like the files (``"body.html"``,
            ``"de/subject.txt"``); they win over ``directory``.
        app_name: ``$app_name``: how the mail names the application.
        default_locale: The locale of the fallback set (``$lang`` when none matches).
        variables: Further variables the templates may use, with default values; a
            :class:`CodeMail` may give per-message values for them.

    Raises:
        ValueError: An override has an unknown name, a malformed locale, or a placeholder
            that is neither built in nor declared in ``variables``.
    """

    __slots__ = ("_app_name", "_default_locale", "_sets", "_variables")

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        overrides: Mapping[str, str] | None = None,
        app_name: str = "your account",
        default_locale: str = "en",
        variables: Mapping[str, str] | None = None,
    ) -> None:
        self._app_name = app_name
        self._default_locale = default_locale.lower()
        self._variables: Mapping[str, str] = MappingProxyType(dict(variables or {}))
        clash = (BUILTIN_VARIABLES | {"link_block"}).intersection(self._variables)
        if clash:
            raise ValueError(f"variables may not redefine {', '.join(sorted(clash))}")
        texts: dict[str, str] = {name: (_DEFAULTS / name).read_text("utf-8") for name in NAMES}
        found: dict[str, str] = {}
        if directory is not None:
            found.update(_read_directory(Path(directory)))
        found.update(overrides or {})
        # One complete set per locale: the root set, then each locale over the root.
        root = dict(texts)
        per_locale: dict[str, dict[str, str]] = {}
        for key, text in found.items():
            locale, _, name = key.rpartition("/")
            if name not in NAMES:
                raise ValueError(f"unknown template {key!r}; the names are {', '.join(NAMES)}")
            if not locale:
                root[name] = text
                continue
            if not _LOCALE.match(locale):
                raise ValueError(f"template {key!r}: {locale!r} is not a language tag")
            per_locale.setdefault(locale.lower(), {})[name] = text
        self._sets: dict[str, dict[str, Template]] = {
            self._default_locale: self._compile(root, self._default_locale)
        }
        for locale, names in per_locale.items():
            self._sets[locale] = self._compile({**root, **names}, locale)

    @property
    def locales(self) -> frozenset[str]:
        """The locales with a template set (the default locale included)."""
        return frozenset(self._sets)

    def negotiate(self, languages: Iterable[str]) -> str:
        """The best available locale for ``languages`` (tags, most wanted first, as
        :attr:`CodeMail.languages` holds them): for each tag in turn an exact match, else its
        primary language (``de-ch`` -> ``de``); else the default locale.

        Raises:
            TypeError: ``languages`` is a string (a header is read by the binding, not here).
        """
        if isinstance(languages, str):
            raise TypeError("languages is a sequence of tags, not a header string")
        for tag in languages:
            wanted = tag.lower()
            if wanted in self._sets:
                return wanted
            primary = wanted.split("-", 1)[0]
            if primary in self._sets:
                return primary
        return self._default_locale

    def render(self, mail: CodeMail, *, now: datetime, locale: str | None = None) -> Rendered:
        """Render ``mail`` in ``locale`` (or the one negotiated from its ``languages``).

        Raises:
            ValueError: ``mail.variables`` names a variable that was not declared.
        """
        chosen = locale.lower() if locale else self.negotiate(mail.languages)
        templates = self._sets.get(chosen) or self._sets[self._default_locale]
        undeclared = set(mail.variables) - set(self._variables)
        if undeclared:
            raise ValueError(f"undeclared template variables: {', '.join(sorted(undeclared))}")
        seconds = (mail.expires_at - now).total_seconds()
        values = {
            **self._variables,
            **mail.variables,
            "code": mail.code,
            "code_spelled": " ".join(mail.code),
            "email": mail.email,
            "minutes": str(max(1, math.ceil(seconds / 60))),
            "app_name": self._app_name,
            "lang": chosen,
            "link": mail.link or "",
        }
        # One line however the template is laid out: no header folding surprises.
        subject = " ".join(templates["subject.txt"].substitute(values).split())
        values["subject"] = subject
        escaped = {name: html.escape(value) for name, value in values.items()}
        text_link = templates["link.txt"].substitute(values) if mail.link else ""
        html_link = templates["link.html"].substitute(escaped) if mail.link else ""
        return Rendered(
            subject=subject,
            text=templates["body.txt"].substitute(values, link_block=text_link),
            html=templates["body.html"].substitute(escaped, link_block=html_link),
            locale=chosen,
        )

    def _compile(self, texts: Mapping[str, str], locale: str) -> dict[str, Template]:
        allowed = BUILTIN_VARIABLES | set(self._variables)
        compiled: dict[str, Template] = {}
        for name in NAMES:
            template = Template(texts[name])
            if not template.is_valid():
                raise ValueError(f"template {locale}/{name}: a '$' that starts no variable")
            permitted = set(allowed)
            if name == "subject.txt":
                permitted.discard("subject")  # the subject cannot quote itself
            if name.startswith("body"):
                permitted.add("link_block")
            extra = set(template.get_identifiers()) - permitted
            if extra:
                raise ValueError(
                    f"template {locale}/{name}: unknown variable(s) {', '.join(sorted(extra))}"
                )
            compiled[name] = template
        return compiled


def _read_directory(directory: Path) -> dict[str, str]:
    if not directory.is_dir():
        raise ValueError(f"templates directory {directory} does not exist")
    found: dict[str, str] = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name in NAMES:
            found[path.relative_to(directory).as_posix()] = path.read_text("utf-8")
    return found
