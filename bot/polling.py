"""Durable long polling: an update is acknowledged to Telegram only after its effect is committed."""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramAPIError, TelegramNetworkError, TelegramUnauthorizedError
from aiogram.methods import GetUpdates

from storage import Storage

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]


async def poll_updates(bot: Bot, dp: Dispatcher, store: Storage, timeout_s: int = 25) -> None:
    """Handles updates one after another until cancelled.

    aiogram's own polling moves the offset before handlers finish; ours feeds each update, records it in
    `store.updates`, and only then asks for the next batch with an offset past it. A bot killed at any
    moment therefore sees unfinished updates again, and skips the ones it already handled."""
    last = await store.updates.last_id()
    offset = last + 1 if last is not None else None
    backoff = 1.0
    while True:
        try:
            updates = await bot(GetUpdates(offset=offset, timeout=timeout_s, allowed_updates=ALLOWED_UPDATES),
                                request_timeout=timeout_s + 15)
            backoff = 1.0
        except TelegramUnauthorizedError:
            log.error("the Bot API server refused the token (BOT_TOKEN is wrong or revoked)")
            raise
        except (TelegramNetworkError, TelegramAPIError) as exc:
            log.warning("getUpdates failed (%s); retrying in %.0f s", type(exc).__name__, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
            continue
        for update in updates:
            if not await store.updates.seen(update.update_id):
                try:
                    await dp.feed_update(bot, update)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # The error handler has answered the user; a poisoned update must not come back forever.
                    log.exception("update %s was not handled", update.update_id)
                await store.updates.mark(update.update_id)
            offset = update.update_id + 1
