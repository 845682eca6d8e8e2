"""The last line of defence (registered on the dispatcher): an unexpected error is logged and the user gets a polite word, never a traceback."""

from __future__ import annotations

import contextlib
import logging

from aiogram.exceptions import TelegramAPIError
from aiogram.types import ErrorEvent

from bot.texts import Texts
from storage import StorageUnavailable
from storage.logs import report_storage_trouble

log = logging.getLogger(__name__)


async def on_error(event: ErrorEvent) -> bool:
    update = event.update
    if isinstance(event.exception, StorageUnavailable):
        # A full disk or a read-only database: one clear line for the operator (at most once a minute), and
        # the user is asked to try again later; nothing half-saved stays behind.
        report_storage_trouble(event.exception, log)
        key = "cant_save"
    else:
        log.error("update %s failed: %r", update.update_id, event.exception, exc_info=event.exception)
        key = "error_generic"
    user = update.event.from_user if update.event and hasattr(update.event, "from_user") else None
    t = Texts.for_user(user.language_code if user else None)
    with contextlib.suppress(TelegramAPIError):
        if update.message is not None:
            await update.message.reply(t(key))
        elif update.callback_query is not None:
            await update.callback_query.answer(t(key), show_alert=True)
    return True
