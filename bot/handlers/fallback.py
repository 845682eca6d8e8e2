"""Whatever no other handler took: private messages get a pointer to /help; groups are left alone."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import Message

from bot.texts import Texts


async def anything_else(message: Message, t: Texts) -> None:
    if message.text and message.text.startswith("/"):
        await message.answer(t("unknown_command"))
    else:
        await message.answer(t("not_understood"))


def create_router() -> Router:
    # A new router per dispatcher: aiogram attaches a router to one parent only.
    router = Router(name=__name__)
    router.message.register(anything_else, F.chat.type == "private")
    return router
