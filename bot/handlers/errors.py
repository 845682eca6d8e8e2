"""The last line of defence (registered on the dispatcher): an unexpected error is logged and the user gets a polite word, never a traceback."""

from __future__ import annotations

import contextlib
import logging

from aiogram.exceptions import TelegramAPIError
from aiogram.types import ErrorEvent

from bot.texts import Texts

log = logging.getLogger(__name__)


async def on_error(event: ErrorEvent) -> bool:
    update = event.update
    log.error("update %s failed: %r", update.update_id, event.exception, exc_info=event.exception)
    user = update.event.from_user if update.event and hasattr(update.event, "from_user") else None
    t = Texts.for_user(user.language_code if user else None)
    with contextlib.suppress(TelegramAPIError):
        if update.message is not None:
            await update.message.reply(t("error_generic"))
        elif update.callback_query is not None:
            await update.callback_query.answer(t("error_generic"), show_alert=True)
    return True
