"""Banned users: told once that the bot no longer serves them, then every update of theirs is ignored."""

from __future__ import annotations

import logging
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Message, TelegramObject, Update, User

from bot.middlewares import Handler
from bot.texts import Texts
from storage import Storage

log = logging.getLogger(__name__)


class Banned(BaseMiddleware):
    """An outer update middleware, after UserContext (it needs `t`). Admins are never stopped here."""

    def __init__(self, store: Storage, admin_ids: frozenset[int]) -> None:
        self.store = store
        self.admin_ids = admin_ids

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        if user is None or user.id in self.admin_ids or not await self.store.admin.is_banned(user.id):
            return await handler(event, data)
        if await self.store.admin.tell_banned_once(user.id):
            await self._tell(event, data.get("t") or Texts())
        return None

    @staticmethod
    async def _tell(event: TelegramObject, t: Texts) -> None:
        inner = event.event if isinstance(event, Update) else event
        try:
            if isinstance(inner, Message):
                await inner.answer(t("banned"))
            elif isinstance(inner, CallbackQuery):
                await inner.answer(t.plain("banned"), show_alert=True)
        except Exception as exc:  # the user may have blocked the bot: being told is a courtesy, not a duty
            log.info("could not tell a banned user: %s", exc)
