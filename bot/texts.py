"""User-facing texts: one JSON file per language in bot/locales, looked up by key."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from bot.formatting import Markup, escape

LOCALES_DIR = Path(__file__).parent / "locales"
DEFAULT_LANGUAGE = "en"
LANGUAGES = ("en", "ru")


def pick_language(language_code: str | None) -> str:
    """Russian for Russian-speaking Telegram clients, English for everyone else."""
    if language_code and language_code.lower().split("-")[0] in {"ru", "uk", "be", "kk"}:
        return "ru"
    return DEFAULT_LANGUAGE


@cache
def _catalog(language: str) -> dict[str, str]:
    data = json.loads((LOCALES_DIR / f"{language}.json").read_text(encoding="utf-8"))
    # Long texts are stored as lists of lines so the files stay readable.
    return {key: "\n".join(value) if isinstance(value, list) else value for key, value in data.items()}


class Texts:
    """The texts of one language: `t("photos_saved", n=3)`.

    Every value is escaped for Telegram HTML unless it is `Markup` (a rendered text, or a fragment built with
    bot/formatting.py), so a name, prompt or reason a user typed can never become markup; the result is Markup."""

    def __init__(self, language: str = DEFAULT_LANGUAGE) -> None:
        self.language = language if language in LANGUAGES else DEFAULT_LANGUAGE
        self._own = _catalog(self.language)
        self._fallback = _catalog(DEFAULT_LANGUAGE)

    def __call__(self, key: str, **values: object) -> Markup:
        template = self._own.get(key) or self._fallback[key]
        return Markup(template.format(**{name: escape(value) for name, value in values.items()}))

    def plain(self, key: str, **values: object) -> str:
        """The text for places Telegram shows without parsing markup (button labels, callback alerts)."""
        template = self._own.get(key) or self._fallback[key]
        return template.format(**values) if values else template

    def failure(self, code: str | None, params: dict[str, object] | None = None) -> Markup:
        """Why a job failed, from its failure code (storage.contract.FailureCode) and parameters; a job failed
        before codes holds its reason as an English text, shown as it is."""
        key = f"failure_{code}"
        if code and (key in self._own or key in self._fallback):
            try:
                return self(key, **(params or {}))
            except (KeyError, IndexError):  # a parameter the engine did not send: the text without it is wrong
                return self("unknown_reason")
        return escape(code) if code else self("unknown_reason")

    @classmethod
    def for_user(cls, language_code: str | None) -> Texts:
        return cls(pick_language(language_code))


def all_keys(language: str) -> set[str]:
    return set(_catalog(language))
