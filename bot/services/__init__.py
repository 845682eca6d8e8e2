"""The bot's services: what a handler asks for, kept apart from Telegram's types where that is easy."""

from __future__ import annotations


class Refusal(Exception):
    """Something the user should change; `key` names the locale text that says what, `values` fill it in."""

    def __init__(self, key: str, **values: object) -> None:
        super().__init__(key)
        self.key = key
        self.values = values
