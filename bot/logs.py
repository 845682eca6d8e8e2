"""Logging set-up; the bot token never reaches a log line (it is part of every Bot API URL)."""

from __future__ import annotations

import logging


class HideToken(logging.Filter):
    def __init__(self, token: str | None) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if self.token:
            message = record.getMessage()
            if self.token in message:
                record.msg, record.args = message.replace(self.token, "<BOT_TOKEN>"), None
            if record.exc_info and record.exc_info[1] is not None and self.token in str(record.exc_info[1]):
                record.exc_text = logging.Formatter().formatException(record.exc_info).replace(
                    self.token, "<BOT_TOKEN>"
                )
                record.exc_info = None
        return True


def setup_logging(token: str | None, level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(HideToken(token))
