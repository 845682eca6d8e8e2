"""Every user-facing text exists in Russian and English with the same placeholders, and the code uses only those."""

from __future__ import annotations

import re
import string
from pathlib import Path

from bot.texts import Texts, all_keys, pick_language

BOT = Path(__file__).resolve().parents[2] / "bot"


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_both_languages_have_the_same_texts_and_placeholders() -> None:
    assert all_keys("en") == all_keys("ru")
    en, ru = Texts("en"), Texts("ru")
    for key in all_keys("en"):
        assert _fields(en._own[key]) == _fields(ru._own[key]), key


def test_every_text_the_code_asks_for_exists() -> None:
    used = set()
    for path in BOT.rglob("*.py"):
        used |= set(re.findall(r"\bt(?:\.plain)?\(\s*\"([a-z_]+)\"", path.read_text()))
        used |= set(re.findall(r"(?:DrawInputError|TrainRefused|ImageRefused|IntakeResult|Refusal\.__init__|super\(\)\.__init__)\([^\"\n)]*\"([a-z_]+)\"",
                               path.read_text()))
    assert used and used <= all_keys("en"), used - all_keys("en")


def test_language_follows_the_telegram_client() -> None:
    assert pick_language("ru") == "ru" and pick_language("ru-RU") == "ru"
    assert pick_language("de") == "en" and pick_language(None) == "en"
