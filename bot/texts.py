"""User-facing texts: Fluent files per language in bot/locales (`en.ftl`, `ru.ftl`), real plurals included.

Why Fluent (fluent.runtime, Mozilla's reference implementation) rather than gettext: a Fluent message carries its
own plural forms by CLDR category and may hold several counts at once ("3 models and 21 photos"), the translator
writes Russian's one/few/many without the code knowing there are three, and a message is looked up by a stable key
the code already uses — gettext's ngettext takes one count per call and keys messages by their English text.

A key may also arrive in `bot/locales/<lang>.json` (`{"key": "text with {name}"}`, or a list of lines): those are
read as they are, so a branch can add a text the simple way; `python -m tools.locales` moves them into the .ftl
files (where plurals are written by hand).
"""

from __future__ import annotations

import html
import json
import logging
import re
from functools import cache
from pathlib import Path

from fluent.runtime import FluentBundle, FluentResource
from fluent.runtime.types import FluentNumber, fluent_number
from fluent.syntax import FluentParser, ast

from bot.formatting import Markup, escape

log = logging.getLogger(__name__)

LOCALES_DIR = Path(__file__).parent / "locales"
DEFAULT_LANGUAGE = "en"
LANGUAGES = ("en", "ru")
# The language a client's `language_code` gets until the user picks one with /language: Russian for the clients
# whose speakers most often read it, English for everyone else.
RUSSIAN_READERS = {"ru", "uk", "be", "kk"}
LANGUAGE_NAMES = {"en": "English", "ru": "Русский"}


def pick_language(language_code: str | None, chosen: str | None = None) -> str:
    """The user's own choice (/language) if any, else from the Telegram client's language."""
    if chosen in LANGUAGES:
        return chosen  # type: ignore[return-value]
    if language_code and language_code.lower().split("-")[0] in RUSSIAN_READERS:
        return "ru"
    return DEFAULT_LANGUAGE


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([a-z_][a-z0-9_]*)\}|[{}]")


def json_text_to_ftl(key: str, value: str | list[str]) -> str:
    """One JSON-style text (`{name}` placeholders, a list of lines for a long one) as a Fluent message."""
    text = "\n".join(value) if isinstance(value, list) else value
    # Fluent drops a pattern's leading and trailing blank lines; kept ones are written as escaped newlines.
    lead, tail = len(text) - len(text.lstrip("\n")), len(text) - len(text.rstrip("\n"))
    text = text.strip("\n")

    def placeable(match: re.Match[str]) -> str:
        if match.group(1):
            return "{ $" + match.group(1) + " }"
        return '{ "' + match.group(0)[0] + '" }'

    lines = [_PLACEHOLDER.sub(placeable, line) for line in text.split("\n")]
    # Fluent trims a pattern's leading blanks and reads `[`, `*`, `.` opening an indented line as syntax.
    lines = [re.sub(r"^([\[*.\s])", lambda m: '{ "' + m.group(1) + '" }', line) if line else line for line in lines]
    lines[0] = '{ "\\u000A" }' * lead + lines[0]
    lines[-1] += '{ "\\u000A" }' * tail
    if len(lines) == 1:
        return f"{key} = {lines[0]}\n"
    return f"{key} =\n" + "".join(f"    {line}\n" if line else "\n" for line in lines)


def _inbox(language: str) -> dict[str, str | list[str]]:
    path = LOCALES_DIR / f"{language}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


@cache
def _source(language: str) -> str:
    """The language's Fluent text: its .ftl file, then whatever still waits in its JSON inbox."""
    path = LOCALES_DIR / f"{language}.ftl"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return text + "\n" + "".join(json_text_to_ftl(k, v) for k, v in _inbox(language).items())


@cache
def _bundle(language: str) -> FluentBundle:
    bundle = FluentBundle([language], use_isolating=False)
    bundle.add_resource(FluentResource(_source(language)))
    return bundle


def _argument(value: object) -> object:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        # Numbers stay numbers, so a message can choose its plural form; seeds and ids read without separators.
        return fluent_number(value, useGrouping=False)
    if isinstance(value, FluentNumber):
        return value
    return str(value)


def _strip(value: object) -> object:
    """Plain text wants no escapes: a value rendered as markup is read back as its text."""
    return html.unescape(re.sub(r"<[^>]+>", "", value)) if isinstance(value, Markup) else value


class Texts:
    """The texts of one language: `t("photos_saved", n=3)`.

    Every value is escaped for Telegram HTML unless it is `Markup` (a rendered text, or a fragment built with
    bot/formatting.py), so a name, prompt or reason a user typed can never become markup; the result is Markup."""

    def __init__(self, language: str = DEFAULT_LANGUAGE) -> None:
        self.language = language if language in LANGUAGES else DEFAULT_LANGUAGE
        self._own = _bundle(self.language)
        self._fallback = _bundle(DEFAULT_LANGUAGE)

    def _format(self, key: str, values: dict[str, object]) -> str:
        bundle = self._own if self._own.has_message(key) else self._fallback
        message = bundle.get_message(key)  # KeyError for a key no language has: a bug the tests catch
        # fluent.runtime refuses a placeable over 2,500 characters (its guard against exploding messages); a long
        # list of models is legitimate here, so long values go in as markers and are put back afterwards.
        long_values = {f"\ue000{i}\ue001": str(v) for i, v in enumerate(values.values())
                       if isinstance(v, str) and len(v) > 200}
        markers = {v: k for k, v in long_values.items()}
        arguments = {k: markers.get(v, v) if isinstance(v, str) else _argument(v) for k, v in values.items()}
        text, errors = bundle.format_pattern(message.value, arguments)
        if errors:
            raise ValueError(f"text {key!r} in {self.language}: {errors}")
        for marker, value in long_values.items():
            text = text.replace(marker, value)
        return text

    def __call__(self, key: str, **values: object) -> Markup:
        return Markup(self._format(key, {name: self._value(v) for name, v in values.items()}))

    def _value(self, value: object) -> object:
        # A value that needs the reader's language (a list of options, a nested text) renders itself here.
        render = getattr(value, "render", None)
        if callable(render):
            return render(self)
        return escape(value) if isinstance(value, str) else value

    def plain(self, key: str, **values: object) -> str:
        """The text for places Telegram shows without parsing markup (button labels, callback alerts)."""
        return self._format(key, {name: _strip(self._value(v)) for name, v in values.items()})

    def has(self, key: str) -> bool:
        return self._own.has_message(key) or self._fallback.has_message(key)

    def failure(self, code: str | None, params: dict[str, object] | None = None) -> Markup:
        """Why a job failed, from its failure code (storage.contract.FailureCode) and parameters; a job failed
        before codes holds its reason as an English text, shown as it is."""
        key = f"failure_{code}"
        if code and self.has(key):
            try:
                return self(key, **(params or {}))
            except ValueError:  # a parameter the engine did not send: the text without it would be wrong
                return self("unknown_reason")
        return escape(code) if code else self("unknown_reason")

    @classmethod
    def for_user(cls, language_code: str | None, chosen: str | None = None) -> Texts:
        return cls(pick_language(language_code, chosen))


def messages(language: str) -> dict[str, ast.Message]:
    """Every message of a language as parsed Fluent (for the tests that compare languages)."""
    resource = FluentParser().parse(_source(language))
    junk = [entry for entry in resource.body if isinstance(entry, ast.Junk)]
    if junk:
        raise ValueError(f"{language}: Fluent syntax errors: {[j.annotations for j in junk]}")
    return {entry.id.name: entry for entry in resource.body if isinstance(entry, ast.Message)}


def all_keys(language: str) -> set[str]:
    return set(messages(language))
