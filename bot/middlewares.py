"""Middlewares: who is asking (user record, language), per-user rate limits, and 429 retries on the session."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import TelegramMethod
from aiogram.methods.base import Response, TelegramType
from aiogram.types import CallbackQuery, Message, TelegramObject, User

from bot.config import RateLimit
from bot.texts import Texts
from storage import Storage

log = logging.getLogger(__name__)

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class UserContext(BaseMiddleware):
    """Records the user and chat, and hands handlers `t` (texts in the user's language)."""

    def __init__(self, store: Storage) -> None:
        self.store = store

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        if user is not None and not user.is_bot:
            # The language the user chose with /language wins over their client's.
            preferences = await self.store.preferences.get(user.id)
            data["t"] = Texts.for_user(user.language_code, preferences.language)
            await self.store.users.upsert(
                user.id, username=user.username, first_name=user.first_name, language=data["t"].language
            )
        else:
            data["t"] = Texts.for_user(user.language_code if user else None)
        chat = data.get("event_chat")
        if chat is not None:
            await self.store.chats.upsert(chat.id, type=chat.type, title=chat.title)
        return await handler(event, data)


class PerUserRateLimit(BaseMiddleware):
    """A sliding window per user; the first refusal in a window gets a polite reply, the rest are dropped.

    One instance may sit on messages and on button presses alike: both count against the same window. A refused
    press is answered (Telegram shows a spinner until it is) with the same words as an alert."""

    def __init__(
        self, limit: RateLimit, applies: Callable[[Message | CallbackQuery], bool],
        already_told: Callable[[int], bool] | None = None,
    ) -> None:
        self.limit = limit
        self.applies = applies
        # Another limit may have just told the user to wait (the pending-drawings one): one reply per burst.
        self.already_told = already_told or (lambda user_id: False)
        self._hits: dict[int, deque[float]] = {}
        self._warned_until: dict[int, float] = {}

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        if not isinstance(event, Message | CallbackQuery) or event.from_user is None or not self.applies(event):
            return await handler(event, data)
        now = time.monotonic()
        hits = self._hits.setdefault(event.from_user.id, deque())
        while hits and now - hits[0] >= self.limit.window_s:
            hits.popleft()
        if len(hits) < self.limit.count:
            hits.append(now)
            return await handler(event, data)
        wait = max(1, round(self.limit.window_s - (now - hits[0])))
        t: Texts = data.get("t") or Texts()
        if isinstance(event, CallbackQuery):
            await event.answer(t.plain("rate_limited", seconds=wait), show_alert=True)
        elif self._warned_until.get(event.from_user.id, 0.0) <= now:
            self._warned_until[event.from_user.id] = now + wait
            if not self.already_told(event.from_user.id):
                await event.reply(t("rate_limited", seconds=wait))
        return None


class RetryAfter(BaseRequestMiddleware):
    """Honours Telegram's 429 `retry_after` by waiting and sending the same request again."""

    def __init__(self, attempts: int = 5, max_wait_s: float = 120.0) -> None:
        self.attempts = attempts
        self.max_wait_s = max_wait_s

    async def __call__(
        self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot, method: TelegramMethod[TelegramType]
    ) -> Response[TelegramType]:
        for attempt in range(1, self.attempts + 1):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                if attempt == self.attempts or exc.retry_after > self.max_wait_s:
                    raise
                log.warning("Telegram asked to wait %ss before %s (attempt %d)", exc.retry_after,
                            type(method).__name__, attempt)
                await asyncio.sleep(exc.retry_after)
        raise AssertionError("unreachable")

